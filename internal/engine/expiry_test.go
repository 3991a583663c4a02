package engine_test

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/sqlite"
)

func place(t testing.TB, e *engine.Engine, sku string, qty int64, expiresIn time.Duration) ordercore.Order {
	t.Helper()
	res, err := e.Submit(context.Background(), engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: sku, Quantity: qty}}, ExpiresIn: expiresIn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Value.(ordercore.Order)
}

func status(t testing.TB, db *sqlite.DB, id string) ordercore.OrderStatus {
	t.Helper()
	o, err := db.Order(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return o.Status
}

// TestExpiryFakeClock runs the real engine, store and sweeper inside a synctest bubble,
// where time only moves when every goroutine waits: 15 minutes pass in milliseconds, and
// the test sees exactly when each order is closed.
func TestExpiryFakeClock(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "o.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		clock := ordercore.SystemClock{} // faked by the bubble
		eng := engine.New(db, clock, engine.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		x := &engine.Expirer{Engine: eng, Reader: db, Clock: clock, OnErr: func(err error) { t.Error(err) }}
		done := make(chan struct{})
		go func() { x.Run(ctx); close(done) }()

		mustSKU(t, eng, "a", 10)
		byDefault := place(t, eng, "a", 2, 0)         // 15 minutes
		short := place(t, eng, "a", 3, 5*time.Minute) // 5 minutes
		paid := place(t, eng, "a", 1, 5*time.Minute)  // paid in time
		if _, err := eng.Submit(ctx, engine.ApplyPayment{OrderID: paid.ID, Payment: ordercore.PaymentApplied{Channel: "manual", Reference: "r", Amount: paid.Amount}}, nil); err != nil {
			t.Fatal(err)
		}

		time.Sleep(5*time.Minute - time.Second)
		synctest.Wait()
		if got := status(t, db, short.ID); got != ordercore.OrderPendingPayment {
			t.Fatalf("1 s before its deadline the order is %s", got)
		}
		time.Sleep(2 * time.Second) // the sweeper sleeps until the next deadline, then sweeps
		synctest.Wait()
		if got := status(t, db, short.ID); got != ordercore.OrderCancelled {
			t.Fatalf("1 s after its deadline the order is %s, want cancelled", got)
		}
		if got := status(t, db, byDefault.ID); got != ordercore.OrderPendingPayment {
			t.Fatalf("the 15-minute order is %s after 5 minutes", got)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if got := status(t, db, byDefault.ID); got != ordercore.OrderCancelled {
			t.Fatalf("the default expiry did not close the order: %s", got)
		}
		if got := status(t, db, paid.ID); got != ordercore.OrderPaid {
			t.Fatalf("a paid order was touched by expiry: %s", got)
		}
		o, _ := db.Order(context.Background(), short.ID)
		if o.CancelReason != ordercore.CancelTimeout || o.Lines[0].Reservation != ordercore.ReservationReleased {
			t.Errorf("expired order: reason %q, reservation %s", o.CancelReason, o.Lines[0].Reservation)
		}
		s, _ := db.SKU(context.Background(), "a")
		if s.Reserved != 0 || s.Sold != 1 || s.Available() != 9 {
			t.Errorf("stock after expiry: %+v, want 0 reserved, 1 sold, 9 available", s)
		}
		cancel()
		<-done
		eng.Close()
		db.Close()
	})
}

// TestExpiryRealTime runs the sweeper on the wall clock with a one-second TTL, and more
// due orders than one sweep takes, so several batches are needed.
func TestExpiryRealTime(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	mustSKU(t, b.eng, "a", 2000)
	ids := make([]string, 1200)
	for i := range ids {
		ids[i] = place(t, b.eng, "a", 1, time.Second).ID
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	x := &engine.Expirer{Engine: b.eng, Reader: b.db, Clock: ordercore.SystemClock{}, OnErr: func(err error) { t.Error(err) }}
	go x.Run(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := b.db.SKU(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if s.Reserved == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after a 1 s TTL, %d units are still reserved", s.Reserved)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, id := range []string{ids[0], ids[599], ids[1199]} {
		if got := status(t, b.db, id); got != ordercore.OrderCancelled {
			t.Errorf("order %s is %s, want cancelled", id, got)
		}
	}
}

// TestExpireIgnoresOrdersNotDue: an ExpireOrders naming orders that are not due, or
// already paid, changes nothing (the sweeper's list may be stale by the time it commits).
func TestExpireIgnoresOrdersNotDue(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	mustSKU(t, b.eng, "a", 10)
	notDue := place(t, b.eng, "a", 1, time.Hour)
	res, err := b.eng.Submit(context.Background(), engine.ExpireOrders{OrderIDs: []string{notDue.ID, "01890000-0000-7000-8000-000000000000"}}, nil)
	if err != nil || res.Value.(int) != 0 {
		t.Fatalf("expire: %v %v, want 0 expired", res.Value, err)
	}
	if got := status(t, b.db, notDue.ID); got != ordercore.OrderPendingPayment {
		t.Fatalf("order not due is %s", got)
	}
}
