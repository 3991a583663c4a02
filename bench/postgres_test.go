package bench_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"ordercore/bench"
	"ordercore/internal/pgtest"
	"ordercore/postgres"
)

// connectPG connects to the test PostgreSQL. An unreachable server fails the test: these
// tests exist to measure a real one.
func connectPG(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.DSN())
	if err != nil {
		t.Fatalf("PostgreSQL at %s (ORDERCORE_TEST_PG) is unreachable: %v", pgtest.DSN(), err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// newPrefix is a schema prefix no other test run uses.
func newPrefix() string {
	var b [4]byte
	rand.Read(b[:])
	return "bench_test_" + hex.EncodeToString(b[:])
}

// schemas lists the schemas whose names start with prefix.
func schemas(t *testing.T, conn *pgx.Conn, prefix string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY 1", prefix)
	if err != nil {
		t.Fatalf("list schemas: %v", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("list schemas: %v", err)
	}
	return names
}

// TestRunPostgresWritesWhatItCounts runs every PostgreSQL path briefly on both scenarios,
// keeping the schemas, and checks what must hold whatever the machine: every path placed
// orders without errors, the report's own row count agrees, and each schema, read back
// through the postgres store, holds exactly the orders the run counted, with the rows the
// engine writes for each. Timing is never asserted (STYLE.md).
func TestRunPostgresWritesWhatItCounts(t *testing.T) {
	t.Parallel()
	conn := connectPG(t)
	prefix := newPrefix()
	t.Cleanup(func() {
		for _, s := range schemas(t, conn, prefix) {
			conn.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{s}.Sanitize()+" CASCADE")
		}
	})
	const skus = 50
	var progress bytes.Buffer
	rep, err := bench.Run(context.Background(), bench.Config{Dir: t.TempDir(), DB: pgtest.DSN(), SchemaPrefix: prefix, KeepSchemas: true,
		Duration: 200 * time.Millisecond, Clients: 8, SKUs: skus, Progress: &progress})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	engines := map[string]int{bench.PathEngine: 1, bench.PathNaive: 1, bench.PathNaivePool: postgres.PoolConnsMax, bench.PathEngine3: 3}
	for _, path := range bench.PGPaths {
		for _, sc := range []string{bench.ScenarioHot, "50"} {
			name := path + "/" + sc
			res, ok := rep.Result(path, sc)
			if !ok {
				t.Errorf("no result for %s; results: %+v", name, rep.Results)
				continue
			}
			if res.Orders <= 0 || res.Errors != 0 {
				t.Errorf("%s placed %d orders with %d errors (%s), want some and none", name, res.Orders, res.Errors, res.Note)
			}
			if res.Engines != engines[path] {
				t.Errorf("%s ran %d engines, want %d", name, res.Engines, engines[path])
			}
			if want := (bench.Stored{Orders: res.OrdersTotal, Placed: res.OrdersTotal, Reserved: res.OrdersTotal}); res.Stored == nil || *res.Stored != want {
				t.Errorf("%s: the run counted stored rows %+v, want %+v", name, res.Stored, want)
			}
			if !strings.HasPrefix(res.Schema, prefix) {
				t.Fatalf("%s wrote schema %q, want a name starting %q", name, res.Schema, prefix)
			}
			db, err := postgres.Open(context.Background(), pgtest.DSN(), postgres.Options{Schema: res.Schema})
			if err != nil {
				t.Fatalf("%s: open schema %s: %v", name, res.Schema, err)
			}
			checkRows(t, name, db, res.OrdersTotal, sc == bench.ScenarioHot, skus)
			db.Close()
		}
	}
	for _, path := range []string{bench.PathNaive, bench.PathNaivePool} {
		if res, _ := rep.Result(path, bench.ScenarioHot); res.BatchMax != 1 {
			t.Errorf("%s batch max = %d, want 1 (one transaction per order)", path, res.BatchMax)
		}
	}
	if got, want := len(schemas(t, conn, prefix)), 2*len(bench.PGPaths); got != want {
		t.Errorf("%d schemas kept, want %d (one per path and scenario)", got, want)
	}

	var text bytes.Buffer
	rep.WriteText(&text)
	md := rep.Markdown()
	wants := append([]string{"PostgreSQL", "synchronous_commit=", "fsync=", "shared_buffers=", "ceiling, http, http-ceiling, trivial: SQLite only",
		"row lock", "engine / naive, hot", rep.Machine.GoVersion}, bench.PGPaths...)
	for _, want := range wants {
		if !strings.Contains(text.String(), want) || !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s\n%s", want, text.String(), md)
		}
	}
}

// TestRunPostgresDropsItsSchemas checks that a run leaves no schema behind, whether it
// ends normally or is cancelled (Ctrl-C) while a path runs.
func TestRunPostgresDropsItsSchemas(t *testing.T) {
	t.Parallel()
	cfg := func(prefix string, d time.Duration) bench.Config {
		return bench.Config{Dir: t.TempDir(), DB: pgtest.DSN(), SchemaPrefix: prefix, Duration: d, Clients: 4,
			Paths: []string{bench.PathEngine}, Scenarios: []string{bench.ScenarioHot}}
	}
	t.Run("after a run", func(t *testing.T) {
		t.Parallel()
		conn := connectPG(t)
		prefix := newPrefix()
		rep, err := bench.Run(context.Background(), cfg(prefix, 100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if res, _ := rep.Result(bench.PathEngine, bench.ScenarioHot); !strings.HasPrefix(res.Schema, prefix) || res.Orders == 0 {
			t.Fatalf("engine/hot = %+v, want orders in a schema starting %q", res, prefix)
		}
		if left := schemas(t, conn, prefix); len(left) > 0 {
			t.Errorf("schemas left behind: %v", left)
		}
	})
	t.Run("after a cancel", func(t *testing.T) {
		t.Parallel()
		conn := connectPG(t)
		prefix := newPrefix()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var during []string
		c := cfg(prefix, time.Minute)
		// The path announces its run once its schema and SKUs exist: cancel there.
		c.Progress = writerFunc(func(p []byte) {
			if during == nil && strings.Contains(string(p), ": running") {
				during = schemas(t, conn, prefix)
				cancel()
			}
		})
		_, err := bench.Run(ctx, c)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want it cancelled", err)
		}
		if len(during) != 1 || !slices.ContainsFunc(during, func(s string) bool { return strings.HasPrefix(s, prefix) }) {
			t.Fatalf("schemas while the path ran: %v, want its one", during)
		}
		if left := schemas(t, conn, prefix); len(left) > 0 {
			t.Errorf("schemas left behind after the cancel: %v", left)
		}
	})
}

type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }
