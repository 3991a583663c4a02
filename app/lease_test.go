package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"ordercore/app"
	"ordercore/internal/pgtest"
)

// pgSchemaURL names a fresh schema of the test database (the first instance that opens it
// creates it) and drops it when the test ends.
func pgSchemaURL(t *testing.T) string { return pgtest.URL(t, "apptest_") }

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
