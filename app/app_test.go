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

// The committer's batch delay: what is asked for, none when asked for none, or the
// default when nothing is.
func TestBatchDelayDefault(t *testing.T) {
	for _, tc := range []struct {
		asked, got time.Duration
	}{
		{0, limit.BatchDelayDefault},
		{-1, 0},
		{3 * time.Millisecond, 3 * time.Millisecond},
	} {
		if got := app.BatchDelay(tc.asked); got != tc.got {
			t.Errorf("BatchDelay(%s) = %s; want %s", tc.asked, got, tc.got)
		}
	}
	if limit.BatchDelayDefault <= 0 {
		t.Error("the committer has no batch delay by default")
	}
}
