package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"ordercore"
	"ordercore/app"
	"ordercore/bench"
)

func benchNotifyCmd() *cobra.Command {
	var cfg bench.NotifyConfig
	b := benchRun{dir: &cfg.Dir}
	c := &cobra.Command{
		Use:   "notify",
		Short: "Channel notifications per second over HTTP: verified, durably applied, acknowledged",
		Long: `Measure the ingestion of payment channel notifications, every path against its own
fresh in-process ordercore server with the sim channel configured:

  notify         signed trade.succeeded notifications to POST /v1/channels/sim/notify,
                 each for a different open payment attempt: verified from the raw bytes,
                 applied through the committer (the order becomes paid), acknowledged
                 after the commit
  notify-dup     every notification sent twice: the second is a duplicate event,
                 verified, deduplicated by the inbox and acknowledged
  notify-forged  notifications signed with a wrong secret: rejected 401 before any state
                 is read
  place-order    POST /v1/orders on one hot SKU: the reference, in the same run

Before each path, --orders orders (half for notify-dup) are placed and given an open
payment attempt directly through the engine, so no channel is called. After each path the
read side must show exactly the acknowledged first deliveries as paid orders, and the
server's counters must match what the clients were answered. Prints the machine, the
settings, notifications/s and latency percentiles; --write updates the notify section of a
markdown file (BENCHMARKS.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			cfg.Serve = serveNotifyForBench
			cfg.HTTP = serveForBench
			rep, err := b.run(cmd, "ordercore-bench-notify-", func() (benchReport, error) { return bench.RunNotify(cmd.Context(), cfg) })
			if err != nil {
				return err
			}
			if !rep.(*bench.NotifyReport).Holds() {
				return &ExitError{Code: 1, Err: fmt.Errorf("a check after the run does not hold (see \"what must hold\")")}
			}
			return nil
		},
	}
	f := c.Flags()
	f.DurationVar(&cfg.Duration, "duration", bench.DurationDefault, "measured time per path")
	f.IntVar(&cfg.Clients, "clients", bench.ClientsDefault, "concurrent HTTP connections")
	f.IntVar(&cfg.Orders, "orders", bench.NotifyOrdersDefault, "orders with an open payment attempt prepared for the notify path (half for notify-dup)")
	f.StringSliceVar(&cfg.Paths, "paths", nil, fmt.Sprintf("paths to run (default all of %v)", bench.NotifyPaths))
	b.flags(f, "notify")
	return c
}

// serveNotifyForBench runs a real ordercore server with the benchmark's payment channel on
// a fresh data directory and loopback port.
func serveNotifyForBench(ctx context.Context, sc bench.NotifyServerConfig) (bench.NotifyServer, error) {
	a, err := app.Open(ctx, app.Config{Addr: "127.0.0.1:0", DataDir: sc.Dir, Version: Version,
		Channels: []ordercore.Channel{sc.Channel}, PaymentSync: sc.PaymentSync})
	if err != nil {
		return bench.NotifyServer{}, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(rctx); close(done) }()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}
	return bench.NotifyServer{BaseURL: "http://" + a.Addr(), Engine: a.Engine, Stop: stop}, nil
}
