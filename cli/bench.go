package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"ordercore/app"
	"ordercore/bench"
)

func benchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure ordercore on this machine",
	}
	c.AddCommand(benchPlaceOrderCmd(), benchNotifyCmd(), benchSagaCmd())
	return c
}

// benchRun is what every bench command shares: a scratch directory, an optional CPU
// profile, and the report printed and optionally written to a markdown file.
type benchRun struct {
	dir                        *string
	keep                       bool
	write, section, cpuProfile string
}

type benchReport interface {
	WriteText(io.Writer)
	UpdateMarkdownFile(path, section string) error
}

func (b *benchRun) flags(f *pflag.FlagSet, what string) {
	f.StringVar(b.dir, "dir", "", "scratch directory for the data (default a temporary one, removed after)")
	keep := "keep the temporary scratch directory"
	if what == "place-order" {
		keep += " (and, with --db, the PostgreSQL schemas)"
	}
	f.BoolVar(&b.keep, "keep", false, keep)
	f.StringVar(&b.write, "write", "", "update the "+what+" section of this markdown file, e.g. BENCHMARKS.md")
	f.StringVar(&b.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof reads it)")
	f.StringVar(&b.section, "section", "", "name of the section --write replaces, so runs with other settings keep their own")
}

// run prepares the scratch directory and the profile, runs fn, and prints and writes its
// report.
func (b *benchRun) run(cmd *cobra.Command, prefix string, fn func() (benchReport, error)) (benchReport, error) {
	if *b.dir == "" {
		dir, err := os.MkdirTemp("", prefix)
		if err != nil {
			return nil, err
		}
		*b.dir = dir
		if !b.keep {
			defer os.RemoveAll(dir)
		}
	}
	if b.cpuProfile != "" {
		f, err := os.Create(b.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := fn()
	if err != nil {
		return nil, err
	}
	rep.WriteText(cmd.OutOrStdout())
	if b.write != "" {
		if err := rep.UpdateMarkdownFile(b.write, b.section); err != nil {
			return nil, err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "\nwrote %s\n", b.write)
	}
	return rep, nil
}

func benchPlaceOrderCmd() *cobra.Command {
	var cfg bench.Config
	b := benchRun{dir: &cfg.Dir}
	c := &cobra.Command{
		Use:   "place-order",
		Short: "Orders per second and latency: engine, naive, storage ceiling, HTTP, HTTP ceiling, trivial handler; or on PostgreSQL (--db)",
		Long: `Measure placing orders, every path in the same run on the same machine:

  engine    in-process engine.Submit, group commit with serve's defaults (the product)
  naive     the same engine with one transaction per order (batch max 1)
  ceiling   a hand-written loop writing the same rows in batches of the engine's size
            straight to SQLite: the best the storage can do
  http      POST /v1/orders over real HTTP against an in-process ordercore server
  http-ceiling
            the same HTTP client against a server that decodes JSON as trivial does,
            writes the ceiling's rows in group commits and answers once they are
            durable: the least any server writing these rows durably spends
  trivial   the same HTTP client against a handler that only decodes JSON and answers

on two scenarios: one hot SKU ("hot") and orders spread over many SKUs ("many"). On the
hot SKU the http-ceiling server and the trivial handler run right after the http path,
and --rounds rounds of the three run back to back (default 3): the machine's pace
drifts within minutes, so the HTTP targets are judged on the medians over the rounds.
http-ceiling and trivial run on the hot SKU only.
SQLite runs with synchronous=FULL, as ordercore serve does. Prints the machine, the
settings, orders/s, latency percentiles and batch sizes; --write updates the
place-order section of a markdown file (BENCHMARKS.md).

With --db postgres://... the paths run on that PostgreSQL instead, each in a fresh
schema (bench_<random>_<path>_<scenario>) created for it and dropped after it, even on
an error or Ctrl-C (--keep keeps them):

  engine      in-process engine.Submit, group commit with serve's defaults, on one
              store (pool)
  naive       the same engine with batch max 1: one transaction per order, each
              locking the SKU row (SELECT ... FOR UPDATE), one at a time
  naive-pool  16 such committers on one store's pool of 16 connections: 16 one-order
              transactions in flight, as a naive server with a pool runs them
  engine-3    three engines, each with its own pool, on one schema and the same SKUs,
              the clients spread round-robin over them: three serve instances

ceiling, http, http-ceiling and trivial are SQLite only: with --db they are skipped,
and the report says so. The report adds the server's version and synchronous_commit,
fsync and shared_buffers, what the sessions were doing (pg_stat_activity), how busy
the cores were, and checks that each schema holds exactly the orders counted; --write
updates the place-order:postgres section.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			cfg.HTTP = serveForBench
			cfg.KeepSchemas = b.keep
			_, err := b.run(cmd, "ordercore-bench-", func() (benchReport, error) { return bench.Run(cmd.Context(), cfg) })
			return err
		},
	}
	f := c.Flags()
	f.DurationVar(&cfg.Duration, "duration", bench.DurationDefault, "measured time per path")
	f.IntVar(&cfg.Clients, "clients", bench.ClientsDefault, "concurrent submitters or HTTP connections")
	f.IntVar(&cfg.SKUs, "skus", bench.SKUsDefault, "SKUs of the many-SKU scenario")
	f.StringSliceVar(&cfg.Paths, "paths", nil, fmt.Sprintf("paths to run (default all of %v; with --db all of %v)", bench.Paths, bench.PGPaths))
	f.StringVar(&cfg.DB, "db", "", "measure on PostgreSQL at this postgres:// URL instead of SQLite (paths engine, naive, naive-pool, engine-3; ceiling, http, http-ceiling and trivial are SQLite only and skipped)")
	f.StringSliceVar(&cfg.Scenarios, "scenarios", nil, "scenarios to run: hot, many (default both)")
	f.IntVar(&cfg.Rounds, "rounds", bench.RoundsDefault, fmt.Sprintf("rounds of the http path, the http-ceiling server and the trivial handler on the hot SKU, run back to back (1..%d)", bench.RoundsMax))
	b.flags(f, "place-order")
	return c
}

// serveForBench runs a real ordercore server on a fresh data directory and loopback port.
func serveForBench(ctx context.Context, dir string) (bench.HTTPServer, error) {
	a, err := app.Open(ctx, app.Config{Addr: "127.0.0.1:0", DataDir: dir, Version: Version})
	if err != nil {
		return bench.HTTPServer{}, err
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
	return bench.HTTPServer{Base: "http://" + a.Addr(), Stop: stop, Stats: a.Engine.Stats}, nil
}
