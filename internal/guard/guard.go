// Package guard is ordercore's home of failsafe-go: the resilience policies that protect
// outbound calls. Breakers keeps one circuit breaker per target (a participant's host), so
// a dead participant fails fast instead of tying up workers, while calls to the others go
// on.
//
// KeyLimiter limits the rate of requests per key (a shopper placing orders).
//
// It imports internal/limit, failsafe-go, golang.org/x/time/rate and the standard library.
package guard

import (
	"context"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
)

// Breakers holds a circuit breaker per key, created on first use. A breaker opens after
// Failures consecutive failures, lets one probe through after OpenFor, and closes again on
// its success. At most Max keys are kept; past that, the least recently created key's
// breaker is dropped (it is rebuilt closed if that target is called again).
type Breakers struct {
	Failures uint
	OpenFor  time.Duration
	Max      int
	// OnClose, if set, is called with a key whose breaker closed again (its probe
	// succeeded), from the call that reported that success; it must not block.
	OnClose func(key string)

	mu    sync.Mutex
	byKey map[string]*breaker
	order []string
}

// breaker is one key's circuit breaker and a channel closed (and replaced) whenever its
// state changes, which Wait listens to.
type breaker struct {
	cb      circuitbreaker.CircuitBreaker[any]
	mu      sync.Mutex
	changed chan struct{}
}

func (e *breaker) changes() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

func (e *breaker) stateChanged() {
	e.mu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

// Allow reports whether a call to key may go out now; when it may, the caller must report
// the call's result with Record.
func (b *Breakers) Allow(key string) bool { return b.get(key).TryAcquirePermit() }

// Wait waits, at most max or until ctx ends, for key's breaker to be worth asking again:
// closed, past its open period (the next Allow may be the probe), or done with the probe
// that was in flight. It takes no permit (Allow does) and reports whether the wait ended
// that way rather than by max or ctx.
func (b *Breakers) Wait(ctx context.Context, key string, max time.Duration) bool {
	e := b.entry(key)
	limit := time.NewTimer(max)
	defer limit.Stop()
	for {
		changed := e.changes()
		var open <-chan time.Time // nil (never) while a probe is out
		var stop func() bool
		switch {
		case e.cb.IsClosed():
			return true
		case e.cb.IsOpen():
			d := e.cb.RemainingDelay()
			if d <= 0 {
				return true
			}
			t := time.NewTimer(d)
			open, stop = t.C, t.Stop
		}
		select {
		case <-open:
			return true
		case <-changed:
		case <-limit.C:
			return false
		case <-ctx.Done():
			return false
		}
		if stop != nil {
			stop()
		}
	}
}

// Record reports the result of a call Allow let through: ok is false for a failure of the
// target (a timeout, a refused connection, a 5xx), not for a definite business refusal.
func (b *Breakers) Record(key string, ok bool) {
	cb := b.get(key)
	if ok {
		cb.RecordSuccess()
	} else {
		cb.RecordFailure()
	}
}

// Open reports whether key's breaker is open (for metrics and the console).
func (b *Breakers) Open(key string) bool { return b.get(key).IsOpen() }

// RemainingDelay is how long key's breaker stays open before it lets a probe through;
// zero when it is not open.
func (b *Breakers) RemainingDelay(key string) time.Duration {
	cb := b.get(key)
	if !cb.IsOpen() {
		return 0
	}
	return max(cb.RemainingDelay(), 0)
}

// Closed reports whether key's breaker is closed (neither open nor letting a probe through).
func (b *Breakers) Closed(key string) bool { return b.get(key).IsClosed() }

func (b *Breakers) get(key string) circuitbreaker.CircuitBreaker[any] { return b.entry(key).cb }

func (b *Breakers) entry(key string) *breaker {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.byKey[key]; ok {
		return e
	}
	if b.byKey == nil {
		b.byKey = map[string]*breaker{}
	}
	if b.Max > 0 && len(b.order) >= b.Max {
		delete(b.byKey, b.order[0])
		b.order = b.order[1:]
	}
	e := &breaker{changed: make(chan struct{})}
	e.cb = circuitbreaker.NewBuilder[any]().
		WithFailureThreshold(b.Failures).
		WithDelay(b.OpenFor).
		WithSuccessThreshold(1).
		OnStateChanged(func(ev circuitbreaker.StateChangedEvent) {
			e.stateChanged()
			if ev.NewState == circuitbreaker.ClosedState && b.OnClose != nil {
				b.OnClose(key)
			}
		}).
		Build()
	b.byKey[key] = e
	b.order = append(b.order, key)
	return e
}
