package engine

import (
	"math"
	"testing"
	"testing/synctest"
	"time"
)

// The committer's batch filling under a fake clock: with a batch delay it goes on taking
// commands while they keep coming (each within the gap), never longer than the delay,
// and no longer once as many have come back as the last commit answered; a lone command
// waits only the gap.
func TestFillTakesCommandsWhileTheyArrive(t *testing.T) {
	const delay, gap = time.Millisecond, 100 * time.Microsecond
	newEngine := func(cfg Config) *Engine {
		return &Engine{cfg: cfg.withDefaults(), queue: make(chan *call, 100)}
	}
	// send puts a command on e's queue after each of the waits, in turn.
	send := func(e *Engine, waits ...time.Duration) {
		go func() {
			for _, w := range waits {
				time.Sleep(w)
				e.queue <- &call{}
			}
		}()
	}
	every := func(d time.Duration, n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = d
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		queued  int             // commands already queued when the batch starts
		waits   []time.Duration // arrivals after it started, each after the one before
		want    int             // commands in the batch, the first included
		took    time.Duration   // how long filling took
		pending int             // commands left queued, once all have arrived
		// back, if set, is how many commands fill takes (the first not counted) before
		// the callers the last commit answered are taken as back; otherwise never.
		back int64
	}{
		{name: "no delay takes what queued", cfg: Config{}, queued: 3, waits: []time.Duration{10 * time.Microsecond},
			want: 4, took: 0, pending: 1},
		{name: "a lone command waits the gap", cfg: Config{BatchDelay: delay, BatchGap: gap},
			want: 1, took: gap},
		{name: "arrivals within the gap join until the delay", cfg: Config{BatchDelay: delay, BatchGap: gap},
			queued: 2, waits: every(60*time.Microsecond, 30),
			// 60, 120, ..., 960 µs arrive before the delay ends at 1 ms.
			want: 1 + 2 + 16, took: delay, pending: 30 - 16},
		{name: "a pause longer than the gap ends the batch", cfg: Config{BatchDelay: delay, BatchGap: gap},
			waits: []time.Duration{50 * time.Microsecond, 80 * time.Microsecond, 150 * time.Microsecond},
			want:  3, took: 230 * time.Microsecond, pending: 1},
		{name: "a full batch ends it", cfg: Config{BatchDelay: delay, BatchGap: gap, BatchMax: 5},
			queued: 1, waits: every(10*time.Microsecond, 10),
			want: 5, took: 30 * time.Microsecond, pending: 11 - 4},
		{name: "the callers the last commit answered are back", cfg: Config{BatchDelay: delay, BatchGap: gap},
			// 2 were queued before the commit ended, and it answered 3.
			queued: 2, waits: every(20*time.Microsecond, 10), back: 2 + 3,
			want: 1 + 2 + 3, took: 60 * time.Microsecond, pending: 10 - 3},
		{name: "no delay takes what queued, even with callers to come back", cfg: Config{}, queued: 3,
			waits: []time.Duration{10 * time.Microsecond}, back: 10,
			want: 4, took: 0, pending: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEngine(tc.cfg)
				e.lingerUntil = math.MaxInt64
				if tc.back > 0 {
					e.lingerUntil = tc.back
				}
				for range tc.queued {
					e.queue <- &call{}
				}
				send(e, tc.waits...)
				start := time.Now()
				batch := e.fill([]*call{{}})
				took := time.Since(start)
				if len(batch) != tc.want || took != tc.took {
					t.Errorf("batch of %d after %s; want %d after %s", len(batch), took, tc.want, tc.took)
				}
				time.Sleep(time.Second) // the sender finishes: what fill left is queued
				if got := len(e.queue); got != tc.pending {
					t.Errorf("%d commands left queued; want %d", got, tc.pending)
				}
			})
		})
	}
}
