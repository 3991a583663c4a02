package bench_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ordercore/app"
	"ordercore/bench"
	"ordercore/internal/pgtest"
)

func mustResult(t *testing.T, rep *bench.SagaReport, path string) bench.SagaResult {
	t.Helper()
	r, ok := rep.Result(path)
	if !ok {
		t.Fatalf("no %s result", path)
	}
	return r
}

// TestRunSaga runs every path of the saga bench briefly, with the coordinator in this
// process, and checks what a report relies on: each path completed sagas without
// errors (the one-client pair included), the coordinator's CPU was read, and the whole
// backlog drained.
func TestRunSaga(t *testing.T) {
	connectPG(t) // the participants need PostgreSQL
	dir := t.TempDir()
	serve := func(ctx context.Context, dir string) (bench.SagaServer, error) {
		a, err := app.Open(ctx, app.Config{Addr: "127.0.0.1:0", DataDir: dir})
		if err != nil {
			return bench.SagaServer{}, err
		}
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { a.Run(rctx); close(done) }()
		return bench.SagaServer{Base: "http://" + a.Addr(), PID: os.Getpid(), Stop: func() error { cancel(); <-done; return nil }}, nil
	}
	rep, err := bench.RunSaga(context.Background(), bench.SagaConfig{Clients: 8, Duration: time.Second, Backlog: 200,
		PG: pgtest.DSN(), Dir: filepath.Join(dir, "scratch"), Serve: serve})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{bench.SagaPathDirect, bench.SagaPathSaga, bench.SagaPathDirect1, bench.SagaPathSaga1, bench.SagaPathInProcess} {
		r, ok := rep.Result(p)
		if !ok || r.Sagas == 0 || r.Errors != 0 {
			t.Errorf("path %s: %+v", p, r)
		}
	}
	if r, _ := rep.Result(bench.SagaPathSaga); r.CPUPerSaga <= 0 {
		t.Error("the coordinator's CPU per saga was not read")
	}
	for _, p := range []string{bench.SagaPathDirect, bench.SagaPathSaga} {
		r, _ := rep.Result(p)
		// The per-process counters and the machine's are read apart, in 10 ms ticks, and
		// every PostgreSQL process's count is rounded down to its tick: allow them a tenth
		// of slack against each other, and a few ticks for each source over the window's
		// sagas (on a loaded machine a 300 ms window read 21% over, 12 ticks in 93 sagas).
		c := r.CPU
		if c == nil || r.Sagas <= 0 {
			t.Errorf("path %s: no CPU split (%d sagas)", p, r.Sagas)
			continue
		}
		ticks := 16 * (10 * time.Millisecond) / time.Duration(r.Sagas)
		if c.Busy <= 0 || c.Bench <= 0 || 10*(c.Bench+c.Postgres+c.Others) > 11*(c.Busy+c.Idle)+10*ticks {
			t.Errorf("path %s: CPU split %+v over %d sagas", p, c, r.Sagas)
		}
	}
	if r, _ := rep.Result(bench.SagaPathSaga); r.CPU != nil && !r.CPU.CoordinatorInBench {
		t.Error("the coordinator runs in this process, but the split counts it apart")
	}
	// The pairs: the first is the table's; the targets take the medians.
	if len(rep.Rounds) != bench.RoundsDefault || rep.Rounds[0].Saga.Sagas != mustResult(t, rep, bench.SagaPathSaga).Sagas {
		t.Fatalf("%d direct/saga pairs; want %d, the first the table's", len(rep.Rounds), bench.RoundsDefault)
	}
	for i, x := range rep.Rounds {
		if x.Direct.Sagas == 0 || x.Saga.Sagas == 0 || x.Direct.Errors+x.Saga.Errors != 0 || x.Saga.CPUPerSaga <= 0 {
			t.Errorf("pair %d: direct %+v, saga %+v", i+1, x.Direct, x.Saga)
		}
	}
	if t0 := rep.Targets(); len(t0) == 0 || !strings.Contains(t0[0], fmt.Sprintf("(median of %d pairs)", bench.RoundsDefault)) {
		t.Errorf("targets: %q; want the ratio as the median over the pairs", t0)
	}
	if rep.Backlog != 200 || rep.DrainRate <= 0 {
		t.Errorf("drain: backlog %d at %.0f/s", rep.Backlog, rep.DrainRate)
	}
	if md := rep.Markdown(); len(md) == 0 || len(rep.Targets()) != 5 {
		t.Errorf("report: %d targets, markdown %d bytes", len(rep.Targets()), len(md))
	}
}
