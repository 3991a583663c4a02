package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"ordercore"
	"ordercore/postgres"
)

func ev(n int) ordercore.Event {
	return ordercore.Event{ID: fmt.Sprintf("evt-%d", n), Type: "order.placed", AggregateType: "order", AggregateID: "o",
		Time: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Data: []byte(`{}`)}
}

// held is a write transaction kept open by the test: it runs steps in order, each after
// the test lets it go on, and commits after the last. When the test ends first (it
// failed), the transaction rolls back, so that closing the pool does not wait for it.
type held struct {
	next chan struct{} // the test sends one per step and one to commit (buffered)
	did  chan error    // the transaction reports each step, then Write's result
}

var errTestEnded = errors.New("test ended")

func hold(t *testing.T, db *postgres.DB, steps ...*ordercore.Changeset) *held {
	h := &held{next: make(chan struct{}, len(steps)+1), did: make(chan error, len(steps)+2)}
	ended := make(chan struct{})
	finished := make(chan struct{})
	t.Cleanup(func() { close(ended); <-finished })
	wait := func() error {
		select {
		case <-h.next:
			return nil
		case <-ended:
			return errTestEnded
		}
	}
	go func() {
		defer close(finished)
		h.did <- db.Write(context.Background(), func(tx ordercore.WriteTx) error {
			for _, c := range steps {
				if err := wait(); err != nil {
					return err
				}
				err := tx.Apply(context.Background(), c)
				if err == nil {
					// The store holds Apply's batch back until the next statement or the
					// commit; a load sends it, so the step has run when it is reported.
					_, err = tx.Orders(context.Background(), []string{"none"})
				}
				h.did <- err
				if err != nil {
					return err
				}
			}
			return wait() // then commit
		})
	}()
	return h
}

// let lets h run its next step (or commit) without waiting for it.
func (h *held) let(t *testing.T) {
	t.Helper()
	select {
	case h.next <- struct{}{}:
	default:
		t.Fatal("the transaction has no step left to let go")
	}
}

// step lets h run its next step and waits for it.
func (h *held) step(t *testing.T) {
	t.Helper()
	h.let(t)
	h.done(t)
}

// done waits for h's next report: a step's result, or Write's after the commit.
func (h *held) done(t *testing.T) {
	t.Helper()
	select {
	case err := <-h.did:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("transaction did not finish")
	}
}

func feed(t *testing.T, db *postgres.DB) []string {
	t.Helper()
	evs, err := db.Events(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, e := range evs {
		if i > 0 && e.Seq <= evs[i-1].Seq {
			t.Fatalf("feed out of order: %+v", evs)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// settle gives a transaction the test let go time to append and commit, if the store
// lets it. The assertions after it are that something must not have happened, so a slow
// machine can only make them weaker, never flaky.
func settle() { time.Sleep(300 * time.Millisecond) }

func events(ns ...int) *ordercore.Changeset {
	c := &ordercore.Changeset{}
	for _, n := range ns {
		c.Events = append(c.Events, ev(n))
	}
	return c
}

// TestEventsInFlightGap: transaction A appended an event (sequence number n) and is still
// open; transaction B appends one (n+1) and commits as soon as the store lets it. While A
// is open Events(after=0) must not return B's event: a reader would move its cursor past
// n and lose A's event when A commits. Once A commits, both are returned, A's first.
func TestEventsInFlightGap(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	a := hold(t, db, events(1))
	a.step(t) // A drew its sequence number and is open
	b := hold(t, db, events(2))
	b.let(t) // B appends ...
	b.let(t) // ... and commits, unless the store makes it wait
	settle()
	if got := feed(t, db); len(got) != 0 {
		t.Fatalf("Events while A is open = %v, want none", got)
	}
	a.let(t) // A commits
	a.done(t)
	b.done(t) // B's append
	b.done(t) // B's commit
	if got, want := feed(t, db), []string{"evt-1", "evt-2"}; !equal(got, want) {
		t.Fatalf("Events after both committed = %v, want %v", got, want)
	}
}

// TestEventsXidOrderGap is the case that filtering rows by transaction id alone (only rows
// whose xid is below the snapshot's xmin) gets wrong: T0 writes first, so it has the lower
// xid; T1 then appends an event and stays open; then T0 appends and commits. T0's event,
// numbered after T1's, must not be returned while T1 is open.
func TestEventsXidOrderGap(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	sku := ordercore.SKU{ID: "a", Name: "a", Price: ordercore.Money{Amount: 1, Currency: "USD"}, Total: 1, Version: 1}
	t0 := hold(t, db, &ordercore.Changeset{NewSKUs: []ordercore.SKU{sku}}, events(1))
	t0.step(t) // T0 wrote a row: it has its transaction id
	t1 := hold(t, db, events(2))
	t1.step(t) // T1 drew its sequence number and is open
	t0.let(t)  // T0 appends ...
	t0.let(t)  // ... and commits, unless the store makes it wait
	settle()
	if got := feed(t, db); len(got) != 0 {
		t.Fatalf("Events while T1 is open = %v, want none", got)
	}
	t1.let(t) // T1 commits
	t1.done(t)
	t0.done(t) // T0's append
	t0.done(t) // T0's commit
	if got, want := feed(t, db), []string{"evt-2", "evt-1"}; !equal(got, want) {
		t.Fatalf("Events after both committed = %v, want %v", got, want)
	}
}
