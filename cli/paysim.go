package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"ordercore/paysim"
)

func paysimCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "paysim",
		Short: "Run the payment channel simulator, or pay one of its trades",
	}
	c.AddCommand(paysimServeCmd(), paysimPayCmd())
	return c
}

func paysimServeCmd() *cobra.Command {
	var cfg paysim.Config
	var merchant, apiKey, secret, previous, level string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve a simulated payment channel (state in memory)",
		Long: `Serve paysim, a payment channel that keeps its trades in memory: the API the "sim"
channel adapter calls, a hosted pay page at /pay/{out_trade_no}, signed notifications
retried on WeChat Pay's schedule (15 retries over 24h4m, times --time-scale), and daily
statements at /v1/statements/{YYYY-MM-DD}.

The fault flags make it misbehave the way real channels do; --seed makes the same run
make the same decisions. All faults are off by default. SIGINT or SIGTERM stops it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := logger(cmd.ErrOrStderr(), level)
			if err != nil {
				return err
			}
			if merchant == "" || apiKey == "" || secret == "" {
				return errors.New("--merchant, --api-key and --secret are required")
			}
			cfg.Merchants = map[string]paysim.Merchant{merchant: {APIKey: apiKey, Secret: secret, PreviousSecret: previous}}
			cfg.Logger = l
			srv, err := paysim.New(cfg)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", cfg.Addr)
			if err != nil {
				srv.Close()
				return err
			}
			printPaysim(cmd, ln.Addr().String(), merchant, cfg)
			return srv.Serve(cmd.Context(), ln)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Addr, "addr", "127.0.0.1:8090", "listen address HOST:PORT")
	f.StringVar(&merchant, "merchant", "", "merchant id")
	f.StringVar(&apiKey, "api-key", "", "the merchant's API key")
	f.StringVar(&secret, "secret", "", "the merchant's notification signing secret")
	f.StringVar(&previous, "previous-secret", "", "during a rotation, the old secret: notifications carry a signature by each")
	f.Int64Var(&cfg.Seed, "seed", 1, "seed of every fault decision")
	f.Float64Var(&cfg.TimeScale, "time-scale", 1, "multiplies the retry schedule and settle delays (0.001: the 24-hour schedule in about 90 s)")
	ft := &cfg.Faults
	f.Float64Var(&ft.DupRate, "dup-rate", 0, "share of notifications delivered twice, sometimes concurrently")
	f.DurationVar(&ft.DelayMax, "delay-max", 0, "random delay before a first delivery, up to this (reorders notifications)")
	f.Float64Var(&ft.DropRate, "drop-rate", 0, "share of notifications never delivered, nor retried")
	f.Float64Var(&ft.ForgeRate, "forge-rate", 0, "share of notifications also sent signed with a wrong key")
	f.Float64Var(&ft.TamperRate, "tamper-rate", 0, "share of notifications also sent with the amount changed after signing")
	f.Float64Var(&ft.UnderpayRate, "underpay-rate", 0, "share of payments where the shopper pays less than the amount")
	f.Float64Var(&ft.TimeoutRate, "timeout-rate", 0, "share of create/close/refund calls that take effect but whose answer is held")
	f.DurationVar(&ft.Hang, "hang", paysim.HangDefault, "how long a held answer is held (or until the client gives up)")
	f.Float64Var(&ft.PayAfterCloseRate, "pay-after-close-rate", 0, "share of closed trades paid anyway a moment later")
	f.Float64Var(&ft.DoublePayRate, "double-pay-rate", 0, "share of payments that also pay another open trade of the same order")
	f.Float64Var(&ft.RefundAbnormalRate, "refund-abnormal-rate", 0, "share of refunds that end abnormal")
	f.Float64Var(&ft.ErrorRate, "error-rate", 0, "share of API calls answered 500 without doing anything")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return c
}

// printPaysim prints the settings, so that a run's output says what it simulated.
func printPaysim(cmd *cobra.Command, addr, merchant string, cfg paysim.Config) {
	w := cmd.OutOrStdout()
	ft := cfg.Faults
	fmt.Fprintf(w, "paysim listening on http://%s (state in memory)\n", addr)
	fmt.Fprintf(w, "merchant %s; seed %d; time scale %g\n", merchant, cfg.Seed, cfg.TimeScale)
	fmt.Fprintf(w, "faults: dup %g, delay-max %s, drop %g, forge %g, tamper %g, underpay %g\n",
		ft.DupRate, ft.DelayMax, ft.DropRate, ft.ForgeRate, ft.TamperRate, ft.UnderpayRate)
	fmt.Fprintf(w, "        timeout %g (hang %s), pay-after-close %g, double-pay %g, refund-abnormal %g, error %g\n",
		ft.TimeoutRate, ft.Hang, ft.PayAfterCloseRate, ft.DoublePayRate, ft.RefundAbnormalRate, ft.ErrorRate)
}

func paysimPayCmd() *cobra.Command {
	var base, trade string
	var fail bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "pay",
		Short: "Act as the shopper: pay (or fail) a trade on paysim's hosted page",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if base == "" || trade == "" {
				return errors.New("--url and --trade are required")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			tr, err := paysim.Pay(ctx, nil, base, trade, !fail)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trade %s: %s, paid %s of %s\n", tr.OutTradeNo, tr.Status, tr.PaidAmount, tr.Amount)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&base, "url", "http://127.0.0.1:8090", "paysim's base URL")
	f.StringVar(&trade, "trade", "", "the trade's out_trade_no")
	f.BoolVar(&fail, "fail", false, "fail the payment instead of paying")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "give up after this long")
	return c
}
