// Package guard is ordercore's home of failsafe-go: the resilience policies that protect
// outbound calls. Breakers keeps one circuit breaker per target (a participant's host), so
// a dead participant fails fast instead of tying up workers, while calls to the others go
// on.
//
// It imports internal/limit, failsafe-go and the standard library.
package guard

import (
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

	mu    sync.Mutex
	byKey map[string]circuitbreaker.CircuitBreaker[any]
	order []string
}

// Allow reports whether a call to key may go out now; when it may, the caller must report
// the call's result with Record.
func (b *Breakers) Allow(key string) bool { return b.get(key).TryAcquirePermit() }

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

func (b *Breakers) get(key string) circuitbreaker.CircuitBreaker[any] {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cb, ok := b.byKey[key]; ok {
		return cb
	}
	if b.byKey == nil {
		b.byKey = map[string]circuitbreaker.CircuitBreaker[any]{}
	}
	if b.Max > 0 && len(b.order) >= b.Max {
		delete(b.byKey, b.order[0])
		b.order = b.order[1:]
	}
	cb := circuitbreaker.NewBuilder[any]().
		WithFailureThreshold(b.Failures).
		WithDelay(b.OpenFor).
		WithSuccessThreshold(1).
		Build()
	b.byKey[key] = cb
	b.order = append(b.order, key)
	return cb
}
