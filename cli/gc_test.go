package cli

import (
	"runtime/debug"
	"testing"

	"ordercore/internal/limit"
)

// serve runs the collector at limit.GCPercent, and a GOGC in the environment keeps the
// say (the runtime has applied it at start).
func TestServeGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	if got := setGCPercent(func(string) string { return "" }); got != limit.GCPercent {
		t.Errorf("without GOGC: %d in force, want %d", got, limit.GCPercent)
	}
	if now := debug.SetGCPercent(77); now != limit.GCPercent {
		t.Errorf("without GOGC the collector runs at %d, want %d", now, limit.GCPercent)
	}
	env := func(k string) string {
		if k == "GOGC" {
			return "77"
		}
		return ""
	}
	if got := setGCPercent(env); got != 77 {
		t.Errorf("with GOGC=77: %d in force, want 77", got)
	}
	if now := debug.SetGCPercent(100); now != 77 {
		t.Errorf("with GOGC=77 the collector runs at %d, want 77", now)
	}
}
