package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ordercore/internal/lease"
	"ordercore/postgres"
)

var _ lease.Store = (*postgres.DB)(nil)

// TestLeaseRow: one holder at a time, renewals keep the term, expiry and release hand the
// lease over and raise the term.
func TestLeaseRow(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	must := func(ok bool, err error) bool {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !must(db.AcquireLease(ctx, "bg", "a", time.Hour)) {
		t.Fatal("a free lease was refused")
	}
	if must(db.AcquireLease(ctx, "bg", "b", time.Hour)) {
		t.Fatal("b took a lease a holds")
	}
	if !must(db.AcquireLease(ctx, "bg", "a", time.Hour)) {
		t.Fatal("a could not renew its own lease")
	}
	if !must(db.AcquireLease(ctx, "other", "b", time.Hour)) {
		t.Fatal("another lease name is independent")
	}
	term := func(name string) (postgres.Lease, int64) {
		t.Helper()
		ls, err := db.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if l.Name == name {
				return l, l.Term
			}
		}
		t.Fatalf("no lease %s", name)
		return postgres.Lease{}, 0
	}
	if l, n := term("bg"); n != 1 || l.Holder != "a" || !l.Held {
		t.Fatalf("after renewals: %+v, want a holding term 1", l)
	}
	// Release hands over at once.
	if err := db.ReleaseLease(ctx, "bg", "b"); err != nil { // not b's: no effect
		t.Fatal(err)
	}
	if must(db.AcquireLease(ctx, "bg", "b", time.Hour)) {
		t.Fatal("a release by a non-holder freed the lease")
	}
	if err := db.ReleaseLease(ctx, "bg", "a"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if !must(db.AcquireLease(ctx, "bg", "b", 200*time.Millisecond)) {
		t.Fatal("b could not take a released lease")
	}
	if l, n := term("bg"); n != 2 || l.Holder != "b" {
		t.Fatalf("after hand-over: %+v, want b holding term 2", l)
	}
	// Expiry hands over without a release.
	if must(db.AcquireLease(ctx, "bg", "a", time.Hour)) {
		t.Fatal("a took b's unexpired lease")
	}
	time.Sleep(300 * time.Millisecond)
	if !must(db.AcquireLease(ctx, "bg", "a", time.Hour)) {
		t.Fatal("a could not take b's expired lease")
	}
	if l, n := term("bg"); n != 3 || l.Holder != "a" {
		t.Fatalf("after expiry: %+v, want a holding term 3", l)
	}
}

// TestLeaseRace: many instances racing for a free lease at once: exactly one gets it.
func TestLeaseRace(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			ok, err := db.AcquireLease(context.Background(), "bg", string(rune('a'+i)), time.Hour)
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d instances took one lease at once, want 1", won.Load())
	}
}

// TestLeaderFailover runs lease.Leader on real PostgreSQL: when the leader stops without
// giving the lease back (its process died), another takes over after the TTL.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	var running atomic.Int32
	var overlap atomic.Bool
	started := make(chan string, 8)
	mk := func(holder string, store lease.Store) (*lease.Leader, context.CancelFunc, chan struct{}) {
		ctx, cancel := context.WithCancel(context.Background())
		l := &lease.Leader{Store: store, Name: "bg", Holder: holder, TTL: 600 * time.Millisecond, Retry: 100 * time.Millisecond,
			Work: func(ctx context.Context) {
				if running.Add(1) > 1 {
					overlap.Store(true)
				}
				started <- holder
				<-ctx.Done()
				running.Add(-1)
			}}
		done := make(chan struct{})
		go func() { defer close(done); l.Run(ctx) }()
		return l, cancel, done
	}
	dead := &dyingStore{DB: db}
	_, cancelA, doneA := mk("a", dead)
	if h := <-started; h != "a" {
		t.Fatalf("%s led first, want a", h)
	}
	_, cancelB, doneB := mk("b", db)
	time.Sleep(time.Second)
	// a's process "dies": its store calls fail from now on, so it neither renews nor
	// releases; its work stops by its own deadline, b takes over after the TTL.
	died := time.Now()
	dead.dead.Store(true)
	select {
	case h := <-started:
		if h != "b" {
			t.Fatalf("%s took over, want b", h)
		}
		if d := time.Since(died); d > 2*time.Second {
			t.Errorf("b took over %v after a died, want about TTL + retry (0.7 s)", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b did not take over within 5 s of a's death")
	}
	if overlap.Load() {
		t.Error("a and b ran the work at the same time")
	}
	cancelA()
	<-doneA
	cancelB()
	<-doneB
}

// dyingStore is a store whose connection dies on demand.
type dyingStore struct {
	*postgres.DB
	dead atomic.Bool
}

func (d *dyingStore) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if d.dead.Load() {
		return false, context.DeadlineExceeded
	}
	return d.DB.AcquireLease(ctx, name, holder, ttl)
}

func (d *dyingStore) ReleaseLease(ctx context.Context, name, holder string) error {
	if d.dead.Load() {
		return context.DeadlineExceeded
	}
	return d.DB.ReleaseLease(ctx, name, holder)
}

// TestLockKey: a key held by one session makes another wait until it is unlocked; other
// keys and other schemas do not wait; a wait ends with its context.
func TestLockKey(t *testing.T) {
	t.Parallel()
	a, b := newDB(t), newDB(t)
	ctx := context.Background()
	unlock, err := a.LockKey(ctx, "sim/2026-01-02")
	if err != nil {
		t.Fatal(err)
	}
	other, err := a.LockKey(ctx, "sim/2026-01-03")
	if err != nil {
		t.Fatalf("another key: %v", err)
	}
	other()
	elsewhere, err := b.LockKey(ctx, "sim/2026-01-02")
	if err != nil {
		t.Fatalf("the same key in another schema: %v", err)
	}
	elsewhere()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := a.LockKey(short, "sim/2026-01-02"); err == nil {
		t.Fatal("a held key was locked again before its unlock")
	}
	got := make(chan error, 1)
	go func() {
		u, err := a.LockKey(ctx, "sim/2026-01-02")
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("the second lock did not wait for the first: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second lock was not granted after the unlock")
	}
}
