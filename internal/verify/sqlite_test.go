package verify_test

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
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
	db, submit, place := realEngine(t)

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
	// Stale commands write nothing, and must leave nothing to report (a repeated payment
	// notice; an operator's second manual payment is refused instead).
	submit(engine.Transition{OrderID: cancelled.ID, Command: order.Cancel})
	submit(engine.ApplyPayment{OrderID: shipped.ID, Payment: ordercore.PaymentApplied{Channel: "notice", Reference: "r1", Amount: shipped.Amount}})

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

// TestCheckRealDatabasePayments drives the engine's payment commands over a real SQLite
// store: a channel payment, a duplicate refunded, partial, full and pending refunds (one
// after a failed refund), late money that revives its order and late money that cannot,
// money in another currency, a short payment, an attempt unknown past the whole sync
// schedule, a notification for a trade nobody knows, and a channel success for an order the
// operator had already paid by hand. What the engine and the store wrote must pass every
// rule: the money rules are judged on real rows, not only on the fixture's copy of them.
func TestCheckRealDatabasePayments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, submit, place := realEngine(t)
	const sim = "sim"
	start := func(o ordercore.Order) string {
		t.Helper()
		p := submit(engine.StartPayment{OrderID: o.ID, Channel: sim}).(ordercore.Payment)
		submit(engine.OpenedPayment{PaymentID: p.ID, Instructions: ordercore.PaymentInstructions{TxnID: "txn-" + p.ID}})
		return p.ID
	}
	events := 0
	notify := func(paymentID string, status ordercore.PaymentStatus, paid ordercore.Money, want string) {
		t.Helper()
		events++
		cmd := engine.ChannelPayment{Channel: sim, EventID: fmt.Sprintf("evt-%d", events), Source: "notify",
			Payment: ordercore.ChannelPayment{OutTradeNo: paymentID, TxnID: "txn-" + paymentID, Status: status, Amount: paid}}
		if got := submit(cmd).(string); got != want {
			t.Fatalf("%s of payment %s: outcome %q, want %q", status, paymentID, got, want)
		}
	}
	closed := func(paymentID string) {
		t.Helper()
		submit(engine.ChannelPayment{Channel: sim, Source: "close", Payment: ordercore.ChannelPayment{OutTradeNo: paymentID, Status: ordercore.PaymentClosed}})
	}
	refunds := func(orderID string) []ordercore.Refund {
		t.Helper()
		_, rs, err := db.OrderPayments(ctx, orderID)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	// settle answers the refund's channel result for every pending refund of the order.
	settle := func(orderID string, status ordercore.RefundStatus) {
		t.Helper()
		n := 0
		for _, r := range refunds(orderID) {
			if r.Status != ordercore.RefundPending {
				continue
			}
			n++
			events++
			if got := submit(engine.ChannelRefund{Channel: sim, EventID: fmt.Sprintf("evt-%d", events), Source: "notify",
				Refund: ordercore.ChannelRefund{OutTradeNo: r.PaymentID, OutRefundNo: r.ID, RefundID: "re-" + r.ID, Status: status, Amount: r.Amount}}).(string); got != engine.OutcomeApplied {
				t.Fatalf("refund %s %s: outcome %q", r.ID, status, got)
			}
		}
		if n != 1 {
			t.Fatalf("order %s had %d pending refunds, want 1", orderID, n)
		}
	}
	refund := func(o ordercore.Order, amount int64) {
		t.Helper()
		submit(engine.RequestRefund{OrderID: o.ID, Amount: usd(amount), Reason: "customer asked"})
	}

	submit(engine.CreateSKU{ID: "apple", Name: "Apple", Price: usd(250), Stock: 100})
	submit(engine.CreateSKU{ID: "plum", Name: "Plum", Price: usd(300), Stock: 1})

	// The expiring orders first, so the wait below overlaps the other commands.
	revived := place(time.Second, engine.LineRequest{SKU: "apple", Quantity: 1})
	late := place(time.Second, engine.LineRequest{SKU: "plum", Quantity: 1})
	revivedPay, latePay := start(revived), start(late)

	card := place(0, engine.LineRequest{SKU: "apple", Quantity: 1})
	cardPay := start(card)
	notify(cardPay, ordercore.PaymentSucceeded, card.Amount, engine.OutcomeApplied)
	events-- // the same notification delivered again
	notify(cardPay, ordercore.PaymentSucceeded, card.Amount, engine.OutcomeDuplicate)
	submit(engine.ChannelPayment{Channel: sim, Source: "query", Payment: ordercore.ChannelPayment{OutTradeNo: cardPay, Status: ordercore.PaymentSucceeded, Amount: card.Amount}})
	submit(engine.Transition{OrderID: card.ID, Command: order.StartFulfilment})

	// The shopper leaves the first attempt and pays a second; the first was paid after all.
	dup := place(0, engine.LineRequest{SKU: "apple", Quantity: 2})
	first := start(dup)
	closed(first)
	notify(start(dup), ordercore.PaymentSucceeded, dup.Amount, engine.OutcomeApplied)
	notify(first, ordercore.PaymentSucceeded, dup.Amount, engine.OutcomeApplied)
	settle(dup.ID, ordercore.RefundSucceeded)

	partial := place(0, engine.LineRequest{SKU: "apple", Quantity: 2})
	notify(start(partial), ordercore.PaymentSucceeded, partial.Amount, engine.OutcomeApplied)
	refund(partial, 200)
	settle(partial.ID, ordercore.RefundSucceeded)

	full := place(0, engine.LineRequest{SKU: "apple", Quantity: 1})
	notify(start(full), ordercore.PaymentSucceeded, full.Amount, engine.OutcomeApplied)
	refund(full, 250)
	settle(full.ID, ordercore.RefundFailed)
	refund(full, 250)
	settle(full.ID, ordercore.RefundSucceeded)

	refunding := place(0, engine.LineRequest{SKU: "apple", Quantity: 3})
	notify(start(refunding), ordercore.PaymentSucceeded, refunding.Amount, engine.OutcomeApplied)
	refund(refunding, 100)

	eur := place(0, engine.LineRequest{SKU: "apple", Quantity: 1})
	notify(start(eur), ordercore.PaymentSucceeded, ordercore.Money{Amount: 230, Currency: "EUR"}, engine.OutcomeApplied)

	short := place(0, engine.LineRequest{SKU: "apple", Quantity: 1})
	notify(start(short), ordercore.PaymentSucceeded, usd(200), engine.OutcomeApplied)

	unknown := place(0, engine.LineRequest{SKU: "apple", Quantity: 1})
	unknownPay := submit(engine.StartPayment{OrderID: unknown.ID, Channel: sim}).(ordercore.Payment).ID
	submit(engine.UnknownPayment{PaymentID: unknownPay, Source: "create"})
	for range limit.PaymentSyncSchedule {
		submit(engine.PaymentSyncMissed{PaymentID: unknownPay, Evidence: "timeout"})
	}

	notify(ordercore.NewID(time.Now()), ordercore.PaymentSucceeded, usd(100), engine.OutcomeOrphan)

	// Paid by the operator once its open attempt was closed at the channel (as the API
	// does first); the channel then takes the money on that trade anyway.
	manual := place(0, engine.LineRequest{SKU: "apple", Quantity: 1})
	manualPay := start(manual)
	closed(manualPay)
	submit(engine.ApplyPayment{OrderID: manual.ID, Payment: ordercore.PaymentApplied{Channel: "manual", Reference: "r1", Amount: manual.Amount}})
	notify(manualPay, ordercore.PaymentSucceeded, manual.Amount, engine.OutcomeApplied)

	// The expirer closes the open attempts at the channel, then expires the orders.
	time.Sleep(time.Until(late.ExpiresAt) + 100*time.Millisecond)
	closed(revivedPay)
	closed(latePay)
	if n := submit(engine.ExpireOrders{OrderIDs: []string{revived.ID, late.ID}}).(int); n != 2 {
		t.Fatalf("expired %d orders, want 2", n)
	}
	// The only plum is sold to someone else; then both late payments arrive.
	buyer := place(0, engine.LineRequest{SKU: "plum", Quantity: 1})
	submit(engine.ApplyPayment{OrderID: buyer.ID, Payment: ordercore.PaymentApplied{Channel: "manual", Reference: "r2", Amount: buyer.Amount}})
	notify(revivedPay, ordercore.PaymentSucceeded, revived.Amount, engine.OutcomeApplied)
	notify(latePay, ordercore.PaymentSucceeded, late.Amount, engine.OutcomeApplied)

	snap, err := db.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]ordercore.OrderStatus{
		"card": ordercore.OrderFulfilling, "dup": ordercore.OrderPaid, "partial": ordercore.OrderPartiallyRefunded,
		"full": ordercore.OrderRefunded, "refunding": ordercore.OrderRefunding, "eur": ordercore.OrderPendingPayment,
		"short": ordercore.OrderPendingPayment, "unknown": ordercore.OrderPendingPayment, "manual": ordercore.OrderPaid,
		"revived": ordercore.OrderPaid, "late": ordercore.OrderCancelled, "buyer": ordercore.OrderPaid,
	}
	ids := map[string]string{"card": card.ID, "dup": dup.ID, "partial": partial.ID, "full": full.ID, "refunding": refunding.ID,
		"eur": eur.ID, "short": short.ID, "unknown": unknown.ID, "manual": manual.ID, "revived": revived.ID, "late": late.ID, "buyer": buyer.ID}
	got := map[string]ordercore.OrderStatus{}
	for name, id := range ids {
		for _, o := range snap.Orders {
			if o.ID == id {
				got[name] = o.Status
			}
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("order statuses = %v, want %v", got, want)
	}
	kinds := map[ordercore.RefundKind]int{}
	for _, r := range snap.Refunds {
		kinds[r.Kind]++
	}
	if wantKinds := map[ordercore.RefundKind]int{ordercore.RefundDuplicate: 2, ordercore.RefundLate: 1, ordercore.RefundMismatch: 1, ordercore.RefundRequested: 4}; !maps.Equal(kinds, wantKinds) {
		t.Fatalf("refund kinds = %v, want %v", kinds, wantKinds)
	}
	if len(snap.Payments) != 12 || len(snap.MoneyLedger) == 0 || len(snap.Reviews) < 4 {
		t.Fatalf("dump has %d payments, %d money ledger rows, %d review items; want 12 payments with money and reviews",
			len(snap.Payments), len(snap.MoneyLedger), len(snap.Reviews))
	}
	if vs := verify.Check(snap, time.Now()); len(vs) != 0 {
		t.Fatalf("the engine wrote a database with violations:\n%s", report(vs, snap))
	}
	t.Log("\n" + report(nil, snap))

	// And the money rules are not vacuous on real data: a capture changed on the row
	// alone disagrees with the ledger and with the order it paid.
	for i := range snap.Payments {
		if snap.Payments[i].ID == cardPay {
			snap.Payments[i].Captured++
		}
	}
	if got, want := rules(verify.Check(snap, time.Now())), []string{verify.RuleMoneyConservation, verify.RulePaymentOrder}; !slices.Equal(got, want) {
		t.Fatalf("after corrupting a capture, rules = %v, want %v", got, want)
	}
}

// realEngine opens a real SQLite store with the real engine over it, and returns helpers
// that submit a command (failing the test on an error) and place an order of user u1.
func realEngine(t *testing.T) (*sqlite.DB, func(engine.Command) any, func(time.Duration, ...engine.LineRequest) ordercore.Order) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "o.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(db, ordercore.SystemClock{}, engine.Config{})
	t.Cleanup(func() { eng.Close(); db.Close() })
	submit := func(cmd engine.Command) any {
		t.Helper()
		res, err := eng.Submit(context.Background(), cmd, nil)
		if err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
		return res.Value
	}
	place := func(expiresIn time.Duration, lines ...engine.LineRequest) ordercore.Order {
		t.Helper()
		return submit(engine.PlaceOrder{UserID: "u1", Lines: lines, ExpiresIn: expiresIn}).(ordercore.Order)
	}
	return db, submit, place
}
