package cli

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"ordercore/app"
	"ordercore/bench"
)

func benchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure ordercore on this machine",
	}
	c.AddCommand(benchPlaceOrderCmd(), benchNotifyCmd())
	return c
}

func benchPlaceOrderCmd() *cobra.Command {
	var cfg bench.Config
	var write, section, cpuProfile string
	var keep bool
	c := &cobra.Command{
		Use:   "place-order",
		Short: "Orders per second and latency: engine, naive, storage ceiling, HTTP, trivial handler",
		Long: `Measure placing orders, every path in the same run on the same machine:

  engine    in-process engine.Submit, group commit (the product)
  naive     the same engine with one transaction per order (batch max 1)
  ceiling   a hand-written loop writing the same rows in batches of the engine's size
            straight to SQLite: the best the storage can do
  http      POST /v1/orders over real HTTP against an in-process ordercore server
  trivial   the same HTTP client against a handler that only decodes JSON and answers

on two scenarios: one hot SKU ("hot") and orders spread over many SKUs ("many").
SQLite runs with synchronous=FULL, as ordercore serve does. Prints the machine, the
settings, orders/s, latency percentiles and batch sizes; --write updates the
place-order section of a markdown file (BENCHMARKS.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Dir == "" {
				dir, err := os.MkdirTemp("", "ordercore-bench-")
				if err != nil {
					return err
				}
				cfg.Dir = dir
				if !keep {
					defer os.RemoveAll(dir)
				}
			}
			cfg.Progress = cmd.ErrOrStderr()
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
			rep, err := bench.Run(cmd.Context(), cfg)
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
			return nil
		},
	}
	f := c.Flags()
	f.DurationVar(&cfg.Duration, "duration", bench.DurationDefault, "measured time per path")
	f.IntVar(&cfg.Clients, "clients", bench.ClientsDefault, "concurrent submitters or HTTP connections")
	f.IntVar(&cfg.SKUs, "skus", bench.SKUsDefault, "SKUs of the many-SKU scenario")
	f.StringSliceVar(&cfg.Paths, "paths", nil, fmt.Sprintf("paths to run (default all of %v)", bench.Paths))
	f.StringSliceVar(&cfg.Scenarios, "scenarios", nil, "scenarios to run: hot, many (default both)")
	f.StringVar(&cfg.Dir, "dir", "", "scratch directory for the databases (default a temporary one, removed after)")
	f.BoolVar(&keep, "keep", false, "keep the temporary scratch directory")
	f.StringVar(&write, "write", "", "update the place-order section of this markdown file, e.g. BENCHMARKS.md")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof reads it)")
	f.StringVar(&section, "section", "", "name of the section --write replaces, so runs with other settings keep their own")
	return c
}

// serveForBench runs a real ordercore server on a fresh data directory and loopback port.
func serveForBench(ctx context.Context, dir string) (string, func(), error) {
	a, err := app.Open(ctx, app.Config{Addr: "127.0.0.1:0", DataDir: dir, Version: Version})
	if err != nil {
		return "", nil, err
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
	return "http://" + a.Addr(), stop, nil
}
