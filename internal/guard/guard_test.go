package guard_test

import (
	"context"
	"fmt"
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

// TestBreakersWait: a caller refused by an open breaker can wait for it instead of
// failing: Wait ends when the open period has passed, or, while a probe is out, when the
// probe's result closes (or reopens) the breaker; it gives up after max.
func TestBreakersWait(t *testing.T) {
	b := &guard.Breakers{Failures: 2, OpenFor: 100 * time.Millisecond}
	ctx := context.Background()
	if !b.Wait(ctx, "t", time.Millisecond) {
		t.Fatal("Wait on a closed breaker did not return at once")
	}
	for range 2 {
		b.Allow("t")
		b.Record("t", false)
	}
	if b.Wait(ctx, "t", 10*time.Millisecond) {
		t.Fatal("Wait on a breaker open for 100ms ended early")
	}
	start := time.Now()
	if !b.Wait(ctx, "t", time.Second) || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("Wait returned %v after %v, want after the open period", b.Open("t"), time.Since(start))
	}
	if !b.Allow("t") {
		t.Fatal("no probe after the open period")
	}
	// While the probe is out, others are refused and wait for its result.
	if b.Allow("t") {
		t.Fatal("a second call went out while the probe was out")
	}
	waited := make(chan bool)
	go func() { waited <- b.Wait(ctx, "t", 5*time.Second) }()
	select {
	case <-waited:
		t.Fatal("Wait ended while the probe was still out")
	case <-time.After(30 * time.Millisecond):
	}
	b.Record("t", true)
	select {
	case ok := <-waited:
		if !ok || !b.Allow("t") {
			t.Fatal("the probe's success did not release the waiter to a closed breaker")
		}
		b.Record("t", true)
	case <-time.After(time.Second):
		t.Fatal("Wait did not end when the probe succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for range 2 {
		b.Allow("t")
		b.Record("t", false)
	}
	if b.Wait(cancelled, "t", time.Second) {
		t.Fatal("Wait with an ended context reported the breaker ready")
	}
}

// TestKeyLimiter: a key gets its burst at once, then one more per refill interval, and
// is told how long to wait; other keys have their own buckets.
func TestKeyLimiter(t *testing.T) {
	l := &guard.KeyLimiter{Rate: 2, Burst: 3, Max: 100} // 2 per second, 3 at once
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for i := range 3 {
		if ok, _ := l.Allow("u1", t0); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow("u1", t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: allowed %v, wait %s; want refused, 500ms", ok, wait)
	}
	if ok, _ := l.Allow("u2", t0); !ok {
		t.Error("another key was refused")
	}
	// A refusal takes no token: at +500ms exactly one is there.
	if ok, _ := l.Allow("u1", t0.Add(500*time.Millisecond)); !ok {
		t.Error("refused after the refill interval")
	}
	if ok, wait := l.Allow("u1", t0.Add(500*time.Millisecond)); ok || wait != 500*time.Millisecond {
		t.Errorf("second request at +500ms: allowed %v, wait %s", ok, wait)
	}
}

// TestKeyLimiterIsBounded: a flood of distinct keys never holds more than Max buckets;
// when full, the buckets that refilled are dropped first, and a key still waiting for
// its token keeps its bucket (it is not handed a fresh burst).
func TestKeyLimiterIsBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	l := &guard.KeyLimiter{Rate: 1, Burst: 1, Max: 4}
	for _, k := range []string{"a", "b", "c"} {
		l.Allow(k, t0)
	}
	l.Allow("busy", t0.Add(900*time.Millisecond))
	at := t0.Add(time.Second) // a, b and c have refilled; busy has a tenth of a token
	if ok, _ := l.Allow("d", at); !ok {
		t.Fatal("a new key was refused")
	}
	if n := l.Len(); n != 2 {
		t.Errorf("%d keys held after the sweep, want busy and d", n)
	}
	if ok, wait := l.Allow("busy", at); ok || wait != 900*time.Millisecond {
		t.Errorf("busy after the sweep: allowed %v, wait %s; want refused, 900ms", ok, wait)
	}

	flood := &guard.KeyLimiter{Rate: 1, Burst: 2, Max: 8}
	for i := range 1000 {
		flood.Allow(fmt.Sprint("k", i), t0.Add(time.Duration(i)*time.Millisecond))
		if n := flood.Len(); n > 8 {
			t.Fatalf("%d keys held, Max is 8", n)
		}
	}
}

// TestKeyLimiterGiveBack: a token given back is spent by the key's next request, never
// more than the burst.
func TestKeyLimiterGiveBack(t *testing.T) {
	l := &guard.KeyLimiter{Rate: 1.0 / 3600, Burst: 2, Max: 10}
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ok, _, back := l.Take("u", t0)
	if !ok {
		t.Fatal("first request refused")
	}
	back() // a replay: cost nothing
	for i := range 2 {
		if ok, _, _ := l.Take("u", t0); !ok {
			t.Fatalf("request %d after a give-back refused", i+1)
		}
	}
	if ok, _, _ := l.Take("u", t0); ok {
		t.Fatal("a third request within the burst of 2 let through")
	}
}
