package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"ordercore/app"
	"ordercore/internal/limit"
)

// TestOneServerPerDataDirectory: a second server on the same data directory is refused
// with a clear message while the first runs, and starts once the first has stopped.
func TestOneServerPerDataDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := app.Open(context.Background(), app.Config{Addr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.Open(context.Background(), app.Config{Addr: "127.0.0.1:0", DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "another ordercore serve is using the data directory") {
		t.Fatalf("second server on the same directory: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := app.Open(context.Background(), app.Config{Addr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	second.Close()
}

// The committer's batch delay: what is asked for, or each store's own default when
// nothing is (none on SQLite, where a commit is CPU work; a short one on PostgreSQL,
// where it is round trips and the WAL flush).
func TestBatchDelayDefaultsByStore(t *testing.T) {
	const pg = "postgres://postgres@127.0.0.1:5432/test"
	for _, tc := range []struct {
		dsn        string
		asked, got time.Duration
	}{
		{"", 0, limit.BatchDelayDefault},
		{pg, 0, limit.BatchDelayPostgres},
		{"", -1, 0},
		{pg, -1, 0},
		{"", 3 * time.Millisecond, 3 * time.Millisecond},
		{pg, 3 * time.Millisecond, 3 * time.Millisecond},
	} {
		if got := app.BatchDelay(tc.dsn, tc.asked); got != tc.got {
			t.Errorf("BatchDelay(%q, %s) = %s; want %s", tc.dsn, tc.asked, got, tc.got)
		}
	}
	if limit.BatchDelayPostgres <= 0 {
		t.Error("PostgreSQL has no batch delay by default")
	}
}
