package cli

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"ordercore"
	"ordercore/app"
	"ordercore/bench"
)

func benchNotifyCmd() *cobra.Command {
	var cfg bench.NotifyConfig
	var write, section, cpuProfile string
	var keep bool
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
			if cfg.Dir == "" {
				dir, err := os.MkdirTemp("", "ordercore-bench-notify-")
				if err != nil {
					return err
				}
				cfg.Dir = dir
				if !keep {
					defer os.RemoveAll(dir)
				}
			}
			cfg.Progress = cmd.ErrOrStderr()
			cfg.Serve = serveNotifyForBench
			cfg.HTTP = serveForBench
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			rep, err := bench.RunNotify(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			rep.WriteText(cmd.OutOrStdout())
			if write != "" {
				if err := rep.UpdateMarkdownFile(write, section); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "\nwrote %s\n", write)
			}
			if !rep.Holds() {
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
	f.StringVar(&cfg.Dir, "dir", "", "scratch directory for the data directories (default a temporary one, removed after)")
	f.BoolVar(&keep, "keep", false, "keep the temporary scratch directory")
	f.StringVar(&write, "write", "", "update the notify section of this markdown file, e.g. BENCHMARKS.md")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof reads it)")
	f.StringVar(&section, "section", "", "name of the section --write replaces, so runs with other settings keep their own")
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
