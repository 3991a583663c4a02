package cli

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"

	"time"

	"github.com/spf13/cobra"

	"ordercore/bench"
)

// pgBenchDefault is the participants' PostgreSQL when --pg is not given: the one the test
// machines run.
const pgBenchDefault = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func benchSagaCmd() *cobra.Command {
	var cfg bench.SagaConfig
	b := benchRun{dir: &cfg.Dir}
	c := &cobra.Command{
		Use:   "saga",
		Short: "Sagas per second through the coordinator, against the same participant calls made directly",
		Long: `Measure the saga coordinator, all paths in one run:

  direct      the floor: each client calls two participants in turn; each call is one
              PostgreSQL transaction with a barrier insert and one write (a stock UPDATE,
              an order INSERT), as in DTM's published figure
  saga        the same two calls as a 2-branch saga submitted to an ordercore serve child
              process (POST /v1/sagas?wait_seconds=30, answered when the saga completed);
              the child's CPU time per saga is read from /proc
  (direct and saga run in --rounds pairs, back to back, default 3: the machine's pace
  drifts within minutes, so the ratio and CPU targets take the medians over the pairs)
  single      direct and saga again with one client (results direct-1 and saga-1): the
              latency a saga adds to its two calls when nothing else runs
  in-process  sagas of two in-process steps (ordercore.notify), submitted to an engine and
              coordinator in this process
  drain       --backlog sagas submitted while the participants refuse connections, then
              timed from their return until the last one completed

The participants run in this process on PostgreSQL (--pg; a schema of their own is
created and dropped). Prints the machine, the settings, sagas/s, latency percentiles,
where the machine's CPU went per saga in the direct and saga paths (the coordinator, this
process's participants and clients, PostgreSQL, others, idle; from /proc) and the
targets; --write updates the saga section of a markdown file (BENCHMARKS.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			cfg.Serve = serveSagaChild
			_, err := b.run(cmd, "ordercore-bench-saga-", func() (benchReport, error) { return bench.RunSaga(cmd.Context(), cfg) })
			return err
		},
	}
	f := c.Flags()
	f.DurationVar(&cfg.Duration, "duration", bench.DurationDefault, "measured time per path")
	f.IntVar(&cfg.Clients, "clients", bench.ClientsDefault, "concurrent clients of the direct and saga paths")
	f.IntVar(&cfg.Backlog, "backlog", bench.SagaBacklogDefault, "sagas submitted while the participants are down (drain path)")
	f.IntVar(&cfg.Rounds, "rounds", bench.RoundsDefault, fmt.Sprintf("pairs of the direct and saga paths, run back to back (1..%d)", bench.RoundsMax))
	f.StringVar(&cfg.PG, "pg", pgBenchDefault, "PostgreSQL URL of the participants' database")
	f.StringSliceVar(&cfg.Paths, "paths", nil, fmt.Sprintf("paths to run (default all of %v)", bench.SagaPaths))
	b.flags(f, "saga")
	return c
}

// serveSagaChild starts `ordercore serve` (this executable) on a free loopback port and
// dir, and waits until it answers /healthz.
func serveSagaChild(ctx context.Context, dir string) (bench.SagaServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return bench.SagaServer{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return bench.SagaServer{}, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(exe, "serve", "--addr", addr, "--data", dir, "--log-level", "error")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return bench.SagaServer{}, err
	}
	stop := func() error {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			return <-done
		}
	}
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return bench.SagaServer{Base: base, PID: cmd.Process.Pid, Stop: stop}, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return bench.SagaServer{}, fmt.Errorf("ordercore serve on %s did not answer /healthz within 30 s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
