package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"ordercore/internal/engine"
	"ordercore/internal/limit"
	"ordercore/sqlite"
)

// manualClock is a clock the test sets; the committer reads it once per batch.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// clockedEngine is an engine on a fresh SQLite database whose clock the test sets,
// starting at t0.
func clockedEngine(t *testing.T, t0 time.Time) (*sqlite.DB, *manualClock, *engine.Engine) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "o.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := &manualClock{now: t0}
	eng := engine.New(db, clock, engine.Config{})
	t.Cleanup(func() { eng.Close(); db.Close() })
	return db, clock, eng
}

// TestIdempotencyKeysKeptThenPruned: a stored response replays for as long as it is kept
// (well past 24 hours), and once pruned the same key runs the request anew.
func TestIdempotencyKeysKeptThenPruned(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	db, clock, eng := clockedEngine(t, t0)
	mustSKU(t, eng, "a", 10)
	place := func() engine.Result {
		t.Helper()
		res, err := eng.Submit(context.Background(), engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: "a", Quantity: 1}}},
			&engine.Idem{Key: "k1", Hash: "h1", Status: 201})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := place()
	if first.Replayed != nil {
		t.Fatal("the first request was replayed")
	}
	prune := func(now time.Time) {
		clock.set(now)
		if _, err := eng.Submit(context.Background(), engine.PruneIdempotency{Before: now.Add(-limit.IdemKeyTTL)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	prune(t0.Add(25 * time.Hour)) // past Stripe's 24 h minimum, within our TTL
	if r := place(); r.Replayed == nil || r.Replayed.Status != 201 {
		t.Fatalf("25 h later the key did not replay: %+v", r)
	}
	prune(t0.Add(limit.IdemKeyTTL + time.Minute))
	if r := place(); r.Replayed != nil {
		t.Fatal("after the TTL and a prune the key still replayed")
	}
	s, _ := db.SKU(context.Background(), "a")
	if s.Reserved != 2 {
		t.Fatalf("reserved = %d, want 2 (the first order and the one after pruning)", s.Reserved)
	}
}

// TestPrunerKeepsUp: keys stored faster than one prune command deletes them (at most
// limit.IdemPruneMax) are all pruned in one pass, which submits commands until none is
// left, not one command per interval.
func TestPrunerKeepsUp(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	db, clock, eng := clockedEngine(t, t0)
	mustSKU(t, eng, "a", 10_000)
	const keys = 2*limit.IdemPruneMax + limit.IdemPruneMax/2
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < keys; i += 16 {
				_, err := eng.Submit(context.Background(), engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: "a", Quantity: 1}}},
					&engine.Idem{Key: fmt.Sprintf("k%d", i), Hash: "h", Status: 201})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	clock.set(t0.Add(time.Hour)) // one key stored later, and kept
	mustSKU(t, eng, "b", 1)
	if _, err := eng.Submit(context.Background(), engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: "b", Quantity: 1}}},
		&engine.Idem{Key: "late", Hash: "h", Status: 201}); err != nil {
		t.Fatal(err)
	}
	clock.set(t0.Add(limit.IdemKeyTTL + time.Minute))
	p := &engine.Pruner{Engine: eng, Reader: db, Clock: clock}
	n, err := p.Prune(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("%d prune commands for %d keys, want 3", n, keys)
	}
	oldest, ok, err := db.OldestIdempotencyKey(context.Background())
	if err != nil || !ok || !oldest.Equal(t0.Add(time.Hour)) {
		t.Errorf("oldest key left: %v %v %v, want only the late one, stored at %v", oldest, ok, err, t0.Add(time.Hour))
	}
}
