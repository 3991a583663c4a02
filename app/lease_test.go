package app_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"ordercore/app"
)

// pgSchemaURL names a fresh schema of the test database (the first instance that opens it
// creates it) and drops it when the test ends.
func pgSchemaURL(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("ORDERCORE_TEST_PG")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at %s is not reachable under CI: %v", dsn, err)
		}
		t.Skipf("no PostgreSQL at %s (set ORDERCORE_TEST_PG): %v", dsn, err)
	}
	conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	schema := "apptest_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "schema=" + schema
}

func role(t *testing.T, a *app.App) string {
	t.Helper()
	resp, err := http.Get("http://" + a.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ Status, Role string }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h.Role
}

type running struct {
	a      *app.App
	cancel context.CancelFunc
	done   chan struct{}
}

func runApp(t *testing.T, cfg app.Config) *running {
	t.Helper()
	a, err := app.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, cancel: cancel, done: make(chan struct{})}
	go func() { a.Run(ctx); close(r.done) }()
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.cancel()
	<-r.done
}

// TestInstancesShareBackgroundWork: two instances on one PostgreSQL database both serve,
// exactly one leads the background work, and a graceful stop of the leader hands the
// lease to the other within a retry interval, not a TTL. On SQLite the one instance is
// "single".
func TestInstancesShareBackgroundWork(t *testing.T) {
	t.Parallel()
	db := pgSchemaURL(t)
	cfg := app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), DB: db, LeaseTTL: time.Minute, LeaseRetry: 100 * time.Millisecond}
	a := runApp(t, cfg)
	b := runApp(t, cfg)
	deadline := time.Now().Add(10 * time.Second)
	var ra, rb string
	for time.Now().Before(deadline) {
		if ra, rb = role(t, a.a), role(t, b.a); (ra == "leader") != (rb == "leader") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if (ra == "leader") == (rb == "leader") {
		t.Fatalf("roles %q and %q: want exactly one leader", ra, rb)
	}
	leader, standby := a, b
	if rb == "leader" {
		leader, standby = b, a
	}
	if r := role(t, standby.a); r != "standby" {
		t.Fatalf("the other instance is %q, want standby", r)
	}
	stopped := time.Now()
	leader.stop()
	for role(t, standby.a) != "leader" {
		if time.Since(stopped) > 5*time.Second {
			t.Fatalf("the standby did not take over within 5 s of a graceful stop (the TTL is a minute: the lease was not given back)")
		}
		time.Sleep(20 * time.Millisecond)
	}

	single := runApp(t, app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()})
	if r := role(t, single.a); r != "single" {
		t.Fatalf("a SQLite instance is %q, want single", r)
	}
}
