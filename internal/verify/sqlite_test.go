package verify_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/order"
	"ordercore/internal/verify"
	"ordercore/sqlite"
)

// TestCheckRealDatabase drives the engine over a real SQLite store through every command it
// has (create, restock, place, cancel, pay, ship, complete, expire) and checks that what
// the engine and the store actually wrote passes every rule. The hand-built fixture of
// verify_test.go claims to mirror the engine; this test keeps that claim honest.
func TestCheckRealDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "o.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(db, ordercore.SystemClock{}, engine.Config{})
	t.Cleanup(func() { eng.Close(); db.Close() })

	submit := func(cmd engine.Command) any {
		t.Helper()
		res, err := eng.Submit(ctx, cmd, nil)
		if err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
		return res.Value
	}
	place := func(expiresIn time.Duration, lines ...engine.LineRequest) ordercore.Order {
		t.Helper()
		return submit(engine.PlaceOrder{UserID: "u1", Lines: lines, ExpiresIn: expiresIn}).(ordercore.Order)
	}

	submit(engine.CreateSKU{ID: "apple", Name: "Apple", Price: usd(250), Stock: 100})
	submit(engine.CreateSKU{ID: "pear", Name: "Pear", Price: usd(120)})
	submit(engine.Restock{SKU: "pear", Quantity: 40})
	submit(engine.Restock{SKU: "apple", Quantity: 5})

	// The expiring order first, so the wait below overlaps the other commands.
	expiring := place(time.Second, engine.LineRequest{SKU: "pear", Quantity: 3})
	place(0, engine.LineRequest{SKU: "apple", Quantity: 2}, engine.LineRequest{SKU: "pear", Quantity: 1}) // stays pending
	cancelled := place(0, engine.LineRequest{SKU: "apple", Quantity: 4})
	shipped := place(0, engine.LineRequest{SKU: "apple", Quantity: 1}, engine.LineRequest{SKU: "apple", Quantity: 2}, engine.LineRequest{SKU: "pear", Quantity: 5})

	submit(engine.Transition{OrderID: cancelled.ID, Command: order.Cancel})
	submit(engine.ApplyPayment{OrderID: shipped.ID, Payment: ordercore.PaymentApplied{Channel: "manual", Reference: "r1", Amount: shipped.Amount}})
	submit(engine.Transition{OrderID: shipped.ID, Command: order.Ship})
	submit(engine.Transition{OrderID: shipped.ID, Command: order.Complete})
	// Stale commands write nothing, and must leave nothing to report.
	submit(engine.Transition{OrderID: cancelled.ID, Command: order.Cancel})
	submit(engine.ApplyPayment{OrderID: shipped.ID, Payment: ordercore.PaymentApplied{Channel: "manual", Reference: "r1", Amount: shipped.Amount}})

	time.Sleep(time.Until(expiring.ExpiresAt) + 100*time.Millisecond)
	due, err := db.ExpiredOrders(ctx, ordercore.SystemClock{}.Now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if n := submit(engine.ExpireOrders{OrderIDs: due}).(int); n != 1 || len(due) != 1 || due[0] != expiring.ID {
		t.Fatalf("expired %d of due orders %v, want exactly %s", n, due, expiring.ID)
	}

	snap, err := db.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.SKUs) != 2 || len(snap.Orders) != 4 || len(snap.Ledger) == 0 || len(snap.Events) == 0 {
		t.Fatalf("dump has %d skus, %d orders, %d ledger rows, %d events; want 2 skus and 4 orders with history",
			len(snap.SKUs), len(snap.Orders), len(snap.Ledger), len(snap.Events))
	}
	statuses := map[ordercore.OrderStatus]int{}
	for _, o := range snap.Orders {
		statuses[o.Status]++
	}
	if statuses[ordercore.OrderPendingPayment] != 1 || statuses[ordercore.OrderCancelled] != 2 || statuses[ordercore.OrderCompleted] != 1 {
		t.Fatalf("order statuses = %v, want 1 pending_payment, 2 cancelled, 1 completed", statuses)
	}
	if vs := verify.Check(snap, time.Now()); len(vs) != 0 {
		t.Fatalf("the engine wrote a database with violations:\n%s", report(vs, snap))
	}
	t.Log("\n" + report(nil, snap))

	// And the check is not vacuous on real data: one unit of stock appearing from nowhere
	// disagrees with both histories.
	snap.SKUs[0].Total++
	if got, want := rules(verify.Check(snap, time.Now())), []string{verify.RuleEventReplay, verify.RuleStockConservation}; !slices.Equal(got, want) {
		t.Fatalf("after corrupting a total, rules = %v, want %v", got, want)
	}
}
