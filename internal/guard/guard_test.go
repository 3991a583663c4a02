package guard_test

import (
	"testing"
	"time"

	"ordercore/internal/guard"
)

// TestBreakers: a key's breaker opens after its consecutive failures, refuses calls while
// open, lets a probe through after OpenFor and closes on its success; other keys are not
// affected.
func TestBreakers(t *testing.T) {
	b := &guard.Breakers{Failures: 3, OpenFor: 50 * time.Millisecond, Max: 2}
	for range 3 {
		if !b.Allow("dead") {
			t.Fatal("refused before the failures")
		}
		b.Record("dead", false)
	}
	if b.Allow("dead") || !b.Open("dead") {
		t.Fatal("still lets calls through after 3 consecutive failures")
	}
	if !b.Allow("alive") {
		t.Fatal("another key was refused")
	}
	b.Record("alive", true)
	time.Sleep(60 * time.Millisecond)
	if !b.Allow("dead") {
		t.Fatal("no probe after OpenFor")
	}
	b.Record("dead", true)
	if !b.Allow("dead") || b.Open("dead") {
		t.Fatal("a successful probe did not close the breaker")
	}
	b.Record("dead", true)
	b.Allow("third") // Max 2: the oldest key's breaker is dropped, not the table grown
	b.Record("third", true)
}
