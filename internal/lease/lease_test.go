package lease_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"ordercore/internal/lease"
)

// memStore is a lease store in memory whose calls can be cut off per holder (a partition
// between that instance and the database). It records when each holder's work ran.
type memStore struct {
	mu      sync.Mutex
	holder  string
	expires time.Time
	cut     map[string]bool
	calls   int
}

var errCut = errors.New("connection refused")

func (m *memStore) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.cut[holder] {
		return false, errCut
	}
	now := time.Now()
	if m.holder == holder || m.holder == "" || m.expires.Before(now) {
		m.holder, m.expires = holder, now.Add(ttl)
		return true, nil
	}
	return false, nil
}

func (m *memStore) ReleaseLease(ctx context.Context, name, holder string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cut[holder] {
		return errCut
	}
	if m.holder == holder {
		m.holder = ""
	}
	return nil
}

func (m *memStore) setCut(holder string, v bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cut == nil {
		m.cut = map[string]bool{}
	}
	m.cut[holder] = v
}

// timeline records which holder's work runs, and fails on two at once.
type timeline struct {
	t       *testing.T
	mu      sync.Mutex
	running string
	starts  []string
	at      []time.Time
}

func (tl *timeline) work(holder string) func(ctx context.Context) {
	return func(ctx context.Context) {
		tl.mu.Lock()
		if tl.running != "" {
			tl.t.Errorf("%s started work at %v while %s was still running it", holder, time.Now(), tl.running)
		}
		tl.running = holder
		tl.starts = append(tl.starts, holder)
		tl.at = append(tl.at, time.Now())
		tl.mu.Unlock()
		<-ctx.Done()
		tl.mu.Lock()
		tl.running = ""
		tl.mu.Unlock()
	}
}

func (tl *timeline) snapshot() ([]string, []time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return append([]string(nil), tl.starts...), append([]time.Time(nil), tl.at...)
}

type instance struct {
	l      *lease.Leader
	cancel context.CancelFunc
	done   chan struct{}
}

func start(store lease.Store, tl *timeline, holder string) *instance {
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{cancel: cancel, done: make(chan struct{})}
	in.l = &lease.Leader{Store: store, Name: "background", Holder: holder, TTL: 3 * time.Second, Retry: time.Second, Work: tl.work(holder)}
	go func() {
		defer close(in.done)
		in.l.Run(ctx)
	}()
	return in
}

func (in *instance) stop() {
	in.cancel()
	<-in.done
}

func leaders(ins ...*instance) []string {
	var out []string
	for i, in := range ins {
		if in.l.Leading() {
			out = append(out, fmt.Sprint(i))
		}
	}
	return out
}

// One of three instances leads, and goes on leading while it renews.
func TestOneLeaderAmongThree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &memStore{}
		tl := &timeline{t: t}
		a, b, c := start(store, tl, "a"), start(store, tl, "b"), start(store, tl, "c")
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := leaders(a, b, c); len(got) != 1 {
			t.Fatalf("leaders after 30 s: %v, want exactly one", got)
		}
		if starts, _ := tl.snapshot(); len(starts) != 1 {
			t.Fatalf("work started %d times (%v), want once: renewals must keep the term", len(starts), starts)
		}
		a.stop()
		b.stop()
		c.stop()
		if store.holder != "" {
			t.Fatalf("the lease is still held by %q after every instance stopped", store.holder)
		}
	})
}

// A clean stop gives the lease back: the successor takes over within one retry interval.
func TestCleanStopHandsOverAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &memStore{}
		tl := &timeline{t: t}
		a := start(store, tl, "a")
		synctest.Wait()
		b := start(store, tl, "b")
		time.Sleep(5 * time.Second)
		if !a.l.Leading() || b.l.Leading() {
			t.Fatalf("a leads %v, b leads %v; want a", a.l.Leading(), b.l.Leading())
		}
		stopped := time.Now()
		a.stop()
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if !b.l.Leading() {
			t.Fatal("b does not lead 1.5 s after a stopped cleanly")
		}
		_, at := tl.snapshot()
		if d := at[1].Sub(stopped); d > time.Second {
			t.Fatalf("b took over %v after a stopped, want within the 1 s retry", d)
		}
		b.stop()
	})
}

// A holder cut off from the store stops its work before its lease can expire in the store,
// and another instance takes over within TTL + retry. The timeline fails the test if the
// two ever run at once.
func TestCutOffHolderStopsBeforeSuccessorStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &memStore{}
		tl := &timeline{t: t}
		a := start(store, tl, "a")
		synctest.Wait()
		b := start(store, tl, "b")
		time.Sleep(10 * time.Second)
		cutAt := time.Now()
		store.setCut("a", true)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if a.l.Leading() {
			t.Fatal("a still leads 5 s after it lost the store, with a 3 s TTL")
		}
		if !b.l.Leading() {
			t.Fatal("b does not lead 5 s after a lost the store (TTL 3 s + retry 1 s)")
		}
		starts, at := tl.snapshot()
		if len(starts) != 2 || starts[1] != "b" {
			t.Fatalf("work starts %v, want [a b]", starts)
		}
		if d := at[1].Sub(cutAt); d > 4*time.Second {
			t.Fatalf("b took over %v after a was cut off, want at most TTL + retry = 4 s", d)
		}
		// a comes back: it must follow, not lead again, while b renews.
		store.setCut("a", false)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := leaders(a, b); len(got) != 1 || got[0] != "1" {
			t.Fatalf("leaders after a's return: %v, want only b", got)
		}
		a.stop()
		b.stop()
	})
}

// A holder whose renewal is answered "held by another" stops at once.
func TestRenewalRefusedStopsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &memStore{}
		tl := &timeline{t: t}
		a := start(store, tl, "a")
		synctest.Wait()
		// An operator (or a paused holder's successor) takes the lease in the store.
		store.mu.Lock()
		store.holder, store.expires = "z", time.Now().Add(time.Hour)
		store.mu.Unlock()
		time.Sleep(1100 * time.Millisecond) // one renewal tick (TTL/3 = 1 s) and its answer
		synctest.Wait()
		if a.l.Leading() {
			t.Fatal("a still leads after its renewal was refused")
		}
		a.stop()
	})
}

// Work that returns by itself ends the term; the lease is retaken on the next try.
func TestWorkThatReturnsEndsTheTerm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &memStore{}
		runs := 0
		ctx, cancel := context.WithCancel(context.Background())
		l := &lease.Leader{Store: store, Name: "background", Holder: "a", TTL: 3 * time.Second, Retry: time.Second,
			Work: func(ctx context.Context) { runs++ }}
		done := make(chan struct{})
		go func() { defer close(done); l.Run(ctx) }()
		time.Sleep(3500 * time.Millisecond)
		cancel()
		<-done
		if runs < 3 || l.Terms() != runs {
			t.Fatalf("work ran %d times in %d terms over 3.5 s with a 1 s retry, want one per term and at least 3", runs, l.Terms())
		}
	})
}
