// Package lease runs work on one instance at a time: the holder of a named lease kept in
// the shared database.
//
// When several `ordercore serve` instances share one PostgreSQL database, every instance
// serves the API, but the background work (the expiry sweep, payment and refund sync,
// idempotency pruning and the event relay) runs on the lease holder only. A lease is a row
// with a holder and an expiry on the database's clock; the holder renews it every TTL/3 and
// stops its work as soon as it cannot prove, on its own monotonic clock, that the lease is
// still its own. Another instance takes over when the lease expires: at most TTL plus one
// retry interval after its holder dies, paused or cut off, and at once when the holder
// shuts down cleanly (it gives the lease back).
//
// Correctness never rests on the lease. Two holders can overlap for a moment (a paused
// holder resumes after its lease passed to another and before it notices), and everything
// the background work writes is guarded in the database (version-guarded updates,
// conditional stock updates, the relay's expected-sequence publish), so an overlap costs
// duplicate work, never a double effect. The lease is there so that N instances do not do
// the same sweep N times and the relay publishes from one place, in order.
//
// It imports the standard library only.
package lease

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Store keeps leases. Times are measured on the store's clock, so instances with skewed
// clocks agree on who holds a lease.
type Store interface {
	// AcquireLease takes the lease name for holder until ttl from now when it is free,
	// expired or already holder's (a renewal), and reports whether holder has it.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives the lease back if holder has it, so another instance can take it
	// at once.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Defaults for Leader.
const (
	DefaultTTL   = 5 * time.Second
	DefaultRetry = time.Second
)

// Leader runs Work while it holds the lease Name.
type Leader struct {
	Store  Store
	Name   string // the lease, e.g. "background"
	Holder string // this instance, unique among instances
	// TTL is how long an acquisition or renewal holds (DefaultTTL); the holder renews
	// every TTL/3. Retry is how often a follower tries to take the lease (DefaultRetry).
	TTL, Retry time.Duration
	// Work runs from the moment the lease is taken; its context ends when the lease may
	// be lost or Run's context ends, and Run waits for it to return before trying again.
	Work   func(ctx context.Context)
	Logger *slog.Logger

	mu      sync.Mutex
	leading bool
	terms   int
}

// Leading reports whether this instance holds the lease now.
func (l *Leader) Leading() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leading
}

// Terms is how many times this instance has taken the lease.
func (l *Leader) Terms() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.terms
}

func (l *Leader) setLeading(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leading = v
	if v {
		l.terms++
	}
}

func (l *Leader) ttl() time.Duration {
	if l.TTL > 0 {
		return l.TTL
	}
	return DefaultTTL
}

func (l *Leader) retry() time.Duration {
	if l.Retry > 0 {
		return l.Retry
	}
	return DefaultRetry
}

func (l *Leader) logger() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Run follows and leads until ctx ends, then stops the work and gives the lease back.
func (l *Leader) Run(ctx context.Context) {
	for {
		// A call gets at most one TTL: an answer later than that could not be relied on.
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, l.ttl())
		ok, err := l.Store.AcquireLease(actx, l.Name, l.Holder, l.ttl())
		cancel()
		if err != nil && ctx.Err() == nil {
			l.logger().Warn("lease: acquire failed", "lease", l.Name, "err", err)
		}
		if ok {
			l.lead(ctx, start)
		}
		if ctx.Err() != nil {
			return
		}
		if !sleep(ctx, l.retry()) {
			return
		}
	}
}

// lead runs the work from a lease taken at start (before the call that took it went out)
// until the lease cannot be renewed in time or ctx ends.
func (l *Leader) lead(ctx context.Context, start time.Time) {
	ttl := l.ttl()
	// The lease is ours until start+ttl at the latest on the store's clock; measured from
	// before the call that took or renewed it, our own clock cannot place that moment
	// later than it is.
	until := start.Add(ttl)
	expiry := time.NewTimer(time.Until(until))
	defer expiry.Stop()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	l.setLeading(true)
	l.logger().Info("lease: leading", "lease", l.Name, "holder", l.Holder)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Work(wctx)
	}()
	type renewal struct {
		at time.Time
		ok bool
	}
	renewed := make(chan renewal, 3)
	var renewing sync.WaitGroup
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	why := ""
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-done:
			why = "work returned" // give the lease up so another instance can run it
			break loop
		case <-expiry.C:
			why = "lease not renewed in time"
			break loop
		case r := <-renewed:
			if !r.ok {
				why = "lease taken by another instance"
				break loop
			}
			if next := r.at.Add(ttl); next.After(until) { // answers may arrive out of order
				until = next
				expiry.Reset(time.Until(until))
			}
		case <-tick.C:
			renewing.Go(func() {
				at := time.Now()
				rctx, cancel := context.WithTimeout(wctx, ttl)
				defer cancel()
				ok, err := l.Store.AcquireLease(rctx, l.Name, l.Holder, ttl)
				if err != nil && wctx.Err() == nil {
					l.logger().Warn("lease: renew failed", "lease", l.Name, "err", err)
				}
				if err == nil {
					select {
					case renewed <- renewal{at, ok}:
					default:
					}
				}
			})
		}
	}
	stop()
	<-done
	renewing.Wait()
	l.setLeading(false)
	if why != "" {
		l.logger().Warn("lease: stopped leading", "lease", l.Name, "holder", l.Holder, "why", why)
	}
	// Give the lease back so a successor need not wait out the TTL.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttl)
	defer cancel()
	if err := l.Store.ReleaseLease(rctx, l.Name, l.Holder); err != nil {
		l.logger().Warn("lease: release failed", "lease", l.Name, "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
