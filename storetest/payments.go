package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"ordercore"
)

// The payment half of the suite: attempts, refunds, the money ledger, the inbox of channel
// notifications and the review queue come back from every read exactly as written, and each
// of their database guards refuses a bad batch and keeps nothing of it.

type storeTest = struct {
	name string
	fn   func(*testing.T, Store)
}

// paymentTests are registered by Run beside the order and stock tests.
func paymentTests() []storeTest {
	tests := []storeTest{
		{"PaymentRoundTrip", testPaymentRoundTrip},
		{"PaymentChangesRoundTrip", testPaymentChanges},
		{"PaymentSyncQueues", testPaymentQueues},
		{"ReviewQueue", testReviewQueue},
		{"PaymentCloseThenOpenInOneBatch", testCloseThenOpen},
		{"MoneyMovements", testMoneyMovements},
	}
	for _, g := range paymentGuards() {
		tests = append(tests, storeTest{"PaymentGuard" + g.name, g.run})
	}
	return tests
}

// equateEmpty: a refund without restock lines may come back with a nil or an empty list;
// both mean "nothing goes back on the shelf".
var equateEmpty = cmpopts.EquateEmpty()

func payment(n int, orderID string, status ordercore.PaymentStatus) ordercore.Payment {
	return ordercore.Payment{ID: id(n), OrderID: orderID, Channel: "sim", Status: status, Amount: usd(1000),
		Version: 1, CreatedAt: t0, UpdatedAt: t0}
}

// capturedPayment returns a succeeded attempt of order that paid it in full.
func capturedPayment(n int, orderID string) ordercore.Payment {
	p := payment(n, orderID, ordercore.PaymentSucceeded)
	p.Accepted, p.Captured, p.TxnID = true, p.Amount.Amount, fmt.Sprintf("txn-%d", n)
	return p
}

func refund(n int, p ordercore.Payment, amount int64) ordercore.Refund {
	return ordercore.Refund{ID: id(n), OrderID: p.OrderID, PaymentID: p.ID, Kind: ordercore.RefundRequested,
		Amount: ordercore.Money{Amount: amount, Currency: p.Amount.Currency}, Status: ordercore.RefundPending,
		Version: 1, CreatedAt: t0, UpdatedAt: t0}
}

func money(p ordercore.Payment, refundID string, m ordercore.MoneyMovement, amount int64) ordercore.MoneyEntry {
	return ordercore.MoneyEntry{PaymentID: p.ID, OrderID: p.OrderID, RefundID: refundID, Movement: m, Amount: amount,
		Currency: p.Amount.Currency, At: t0}
}

func review(n int, kind string) ordercore.ReviewItem {
	return ordercore.ReviewItem{ID: id(n), Kind: kind, Evidence: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
		Status: ordercore.ReviewOpen, Version: 1, CreatedAt: t0}
}

func resolved(r ordercore.ReviewItem, at time.Time) ordercore.ReviewItem {
	r.Status, r.Resolution, r.Note, r.ResolvedBy, r.ResolvedAt = ordercore.ReviewResolved, "refunded", "paid back by hand", "ops@example.com", at
	r.Version++
	return r
}

func inbox(channel, eventID, paymentID, refundID string) ordercore.ChannelEvent {
	return ordercore.ChannelEvent{Channel: channel, EventID: eventID, PaymentID: paymentID, RefundID: refundID, Outcome: "applied", ReceivedAt: t0}
}

// withLines returns o with its lines' reservations set to rs, in order.
func withLines(o ordercore.Order, status ordercore.OrderStatus, rs ...ordercore.ReservationStatus) ordercore.Order {
	o.Status = status
	o.Lines = slices.Clone(o.Lines)
	for i := range o.Lines {
		o.Lines[i].Reservation = rs[i]
	}
	return o
}

func dump(t *testing.T, s Store) *ordercore.Snapshot {
	t.Helper()
	snap, err := s.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// inTx runs fn in a write transaction that applies nothing, for the WriteTx loads.
func inTx(t *testing.T, s Store, fn func(tx ordercore.WriteTx) error) {
	t.Helper()
	if err := s.Write(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func key(channel, eventID string) ordercore.ChannelEventKey {
	return ordercore.ChannelEventKey{Channel: channel, EventID: eventID}
}

func inboxHas(t *testing.T, s Store, keys ...ordercore.ChannelEventKey) map[ordercore.ChannelEventKey]bool {
	t.Helper()
	var got map[ordercore.ChannelEventKey]bool
	inTx(t, s, func(tx ordercore.WriteTx) error {
		var err error
		got, err = tx.ChannelEvents(context.Background(), keys)
		return err
	})
	return got
}

var sideEffects atomic.Int64

// refuses applies c together with valid rows of every kind, and fails the test unless the
// store refuses the whole batch and its database is exactly what it was before. The extra
// rows are new each call, so a bad batch that slipped through cannot make the next one fail
// for the wrong reason.
func refuses(t *testing.T, s Store, what string, c ordercore.Changeset) {
	t.Helper()
	before := dump(t, s)
	n := int(sideEffects.Add(1))
	side := fmt.Sprintf("side-%d", n)
	sp := capturedPayment(900000+n, side)
	sideInbox := inbox("side", side, sp.ID, "")
	c.NewSKUs = append(slices.Clip(c.NewSKUs), sku(side, 1))
	c.NewOrders = append(slices.Clip(c.NewOrders), order(side, "u", t0, side, 1))
	c.Ledger = append(slices.Clip(c.Ledger), ordercore.NewStockEntry(side, ordercore.MoveReserve, 1, side, 1, t0))
	c.NewPayments = append(slices.Clip(c.NewPayments), sp)
	c.MoneyLedger = append(slices.Clip(c.MoneyLedger), money(sp, "", ordercore.MoneyCapture, sp.Captured))
	c.ChannelEvents = append(slices.Clip(c.ChannelEvents), sideInbox)
	c.NewReviews = append(slices.Clip(c.NewReviews), review(900000+n, ordercore.ReviewOrphan))
	c.Events = append(slices.Clip(c.Events), event(900000+n, side))
	if err := write(t, s, &c); err == nil {
		t.Errorf("%s was accepted", what)
		return
	}
	if diff := cmp.Diff(before, dump(t, s), equateEmpty); diff != "" {
		t.Errorf("refused %s left rows behind (-before +after):\n%s", what, diff)
	}
	if got := inboxHas(t, s, key(sideInbox.Channel, sideInbox.EventID)); len(got) != 0 {
		t.Errorf("refused %s left its inbox row: %v", what, got)
	}
}

// testPaymentRoundTrip: rows of every payment table come back identical through the write
// transaction's loads, the reader and the dump.
func testPaymentRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	paidA := capturedPayment(101, id(1))
	paidA.Refunding, paidA.Refunded, paidA.SyncAttempts = 300, 200, 2
	paidA.Instructions = ordercore.PaymentInstructions{TxnID: "txn-101", RedirectURL: "https://pay.example/101", Params: map[string]string{"client_secret": "cs_101"}}
	paidA.UpdatedAt = t0.Add(time.Minute)
	closedA := payment(102, id(1), ordercore.PaymentClosed)
	closedA.Channel = "stripe"
	pendingB := payment(103, id(2), ordercore.PaymentPending)
	pendingB.Amount = ordercore.Money{Amount: 1500, Currency: "EUR"}
	pendingB.SyncAttempts, pendingB.NextSyncAt = 1, t0.Add(2*time.Minute)
	payments := []ordercore.Payment{paidA, closedA, pendingB}

	held := refund(201, paidA, 300)
	held.Reason, held.RestockLines, held.NextSyncAt = "damaged", []int{1, 3}, t0.Add(3*time.Minute)
	done := refund(202, paidA, 200)
	done.Kind, done.Status, done.RefundID, done.SyncAttempts, done.UpdatedAt = ordercore.RefundDuplicate, ordercore.RefundSucceeded, "re_202", 4, t0.Add(time.Hour)
	refunds := []ordercore.Refund{held, done}

	ledger := []ordercore.MoneyEntry{
		money(paidA, "", ordercore.MoneyCapture, 1000),
		money(paidA, held.ID, ordercore.MoneyRefundHold, 300),
		money(paidA, done.ID, ordercore.MoneyRefundHold, 200),
		money(paidA, done.ID, ordercore.MoneyRefundCommit, 200),
	}
	ledger[3].At = t0.Add(time.Hour)
	events := []ordercore.ChannelEvent{
		inbox("sim", "evt-1", paidA.ID, ""),
		inbox("sim", "evt-2", "", done.ID),
		inbox("stripe", "evt-1", "", ""),
	}
	events[2].Outcome = "orphan"
	open := review(301, ordercore.ReviewAmountMismatch)
	open.OrderID, open.PaymentID = id(2), pendingB.ID
	closed := resolved(review(302, ordercore.ReviewRefundFailed), t0.Add(time.Hour))
	closed.OrderID, closed.PaymentID, closed.RefundID = id(1), paidA.ID, done.ID
	reviews := []ordercore.ReviewItem{open, closed}

	mustWrite(t, s, &ordercore.Changeset{NewPayments: payments, NewRefunds: refunds, MoneyLedger: ledger,
		ChannelEvents: events, NewReviews: reviews})

	inTx(t, s, func(tx ordercore.WriteTx) error {
		ps, err := tx.Payments(ctx, []string{paidA.ID, id(199)}, []string{id(2), id(9)})
		if err != nil {
			return err
		}
		if diff := cmp.Diff(map[string]ordercore.Payment{paidA.ID: paidA, pendingB.ID: pendingB}, ps); diff != "" {
			t.Errorf("tx.Payments by id and by order (-want +got):\n%s", diff)
		}
		ps, err = tx.Payments(ctx, nil, []string{id(1)})
		if err != nil {
			return err
		}
		if diff := cmp.Diff(map[string]ordercore.Payment{paidA.ID: paidA, closedA.ID: closedA}, ps); diff != "" {
			t.Errorf("tx.Payments of order 1 (-want +got):\n%s", diff)
		}
		// The orders of attempts and refunds named by id: each once, none for an id
		// that names nothing.
		orders, err := tx.PaymentOrders(ctx, []string{paidA.ID, closedA.ID, pendingB.ID, id(199)}, []string{done.ID, id(299)})
		if err != nil {
			return err
		}
		slices.Sort(orders)
		if diff := cmp.Diff([]string{id(1), id(2)}, orders); diff != "" {
			t.Errorf("tx.PaymentOrders (-want +got):\n%s", diff)
		}
		if orders, err := tx.PaymentOrders(ctx, nil, nil); err != nil || len(orders) != 0 {
			t.Errorf("tx.PaymentOrders of nothing: %v, %v", orders, err)
		}
		rs, err := tx.Refunds(ctx, []string{done.ID, id(299)}, []string{id(1)})
		if err != nil {
			return err
		}
		if diff := cmp.Diff(map[string]ordercore.Refund{held.ID: held, done.ID: done}, rs, equateEmpty); diff != "" {
			t.Errorf("tx.Refunds (-want +got):\n%s", diff)
		}
		seen, err := tx.ChannelEvents(ctx, []ordercore.ChannelEventKey{key("sim", "evt-1"), key("sim", "evt-2"), key("stripe", "evt-1"), key("stripe", "evt-2"), key("alipay", "evt-1")})
		if err != nil {
			return err
		}
		want := map[ordercore.ChannelEventKey]bool{key("sim", "evt-1"): true, key("sim", "evt-2"): true, key("stripe", "evt-1"): true}
		if diff := cmp.Diff(want, seen); diff != "" {
			t.Errorf("tx.ChannelEvents (-want +got):\n%s", diff)
		}
		items, err := tx.ReviewItems(ctx, []string{open.ID, closed.ID, id(399)})
		if err != nil {
			return err
		}
		if diff := cmp.Diff(map[string]ordercore.ReviewItem{open.ID: open, closed.ID: closed}, items); diff != "" {
			t.Errorf("tx.ReviewItems (-want +got):\n%s", diff)
		}
		return nil
	})

	got, err := s.Payment(ctx, paidA.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(paidA, got); diff != "" {
		t.Errorf("Payment (-wrote +read):\n%s", diff)
	}
	if _, err := s.Payment(ctx, id(199)); ordercore.ErrorCode(err) != ordercore.ENOTFOUND {
		t.Errorf("missing payment: %v, want not_found", err)
	}
	ps, rs, err := s.OrderPayments(ctx, id(1))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ordercore.Payment{paidA, closedA}, ps); diff != "" {
		t.Errorf("OrderPayments' attempts, oldest first (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(refunds, rs, equateEmpty); diff != "" {
		t.Errorf("OrderPayments' refunds, oldest first (-want +got):\n%s", diff)
	}
	if ps, rs, err := s.OrderPayments(ctx, id(9)); err != nil || len(ps)+len(rs) != 0 {
		t.Errorf("OrderPayments of an order without any = %v %v %v, want none", ps, rs, err)
	}
	item, err := s.Review(ctx, closed.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(closed, item); diff != "" {
		t.Errorf("Review (-wrote +read):\n%s", diff)
	}
	if _, err := s.Review(ctx, id(399)); ordercore.ErrorCode(err) != ordercore.ENOTFOUND {
		t.Errorf("missing review item: %v, want not_found", err)
	}

	snap := dump(t, s)
	for i := 1; i < len(snap.MoneyLedger); i++ {
		if snap.MoneyLedger[i].Seq <= snap.MoneyLedger[i-1].Seq {
			t.Errorf("money ledger out of order at %d: %+v", i, snap.MoneyLedger)
		}
	}
	gotLedger := slices.Clone(snap.MoneyLedger)
	for i := range gotLedger {
		gotLedger[i].Seq = 0 // the store numbers entries
	}
	slices.SortFunc(snap.Payments, func(a, b ordercore.Payment) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(snap.Refunds, func(a, b ordercore.Refund) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(snap.Reviews, func(a, b ordercore.ReviewItem) int { return strings.Compare(a.ID, b.ID) })
	want := ordercore.Snapshot{Payments: payments, Refunds: refunds, MoneyLedger: ledger, Reviews: reviews}
	gotSnap := ordercore.Snapshot{Payments: snap.Payments, Refunds: snap.Refunds, MoneyLedger: gotLedger, Reviews: snap.Reviews}
	if diff := cmp.Diff(want, gotSnap, equateEmpty); diff != "" {
		t.Errorf("Dump (-wrote +dumped):\n%s", diff)
	}
}

// testPaymentChanges: a change rewrites what may change about a payment, a refund or a
// review item, and the reads return the new row.
func testPaymentChanges(t *testing.T, s Store) {
	ctx := context.Background()
	p := payment(101, id(1), ordercore.PaymentPending)
	p.NextSyncAt = t0.Add(time.Minute)
	prior := capturedPayment(100, id(2))
	r := refund(201, prior, 400)
	r.RestockLines = []int{2}
	item := review(301, ordercore.ReviewSyncExhausted)
	mustWrite(t, s, &ordercore.Changeset{NewPayments: []ordercore.Payment{p, prior}, NewRefunds: []ordercore.Refund{r}, NewReviews: []ordercore.ReviewItem{item}})

	at := t0.Add(5 * time.Minute)
	p2 := p
	p2.Status, p2.TxnID, p2.Accepted, p2.Captured, p2.SyncAttempts, p2.NextSyncAt = ordercore.PaymentSucceeded, "txn-101", true, 1000, 3, time.Time{}
	p2.Instructions = ordercore.PaymentInstructions{TxnID: "txn-101", Params: map[string]string{"prepay_id": "wx101"}}
	p2.Version, p2.UpdatedAt = 2, at
	prior2 := prior
	prior2.Refunding, prior2.Version, prior2.UpdatedAt = 400, 2, at
	r2 := r
	r2.Status, r2.RefundID, r2.SyncAttempts, r2.NextSyncAt, r2.Version, r2.UpdatedAt = ordercore.RefundAbnormal, "re_201", 2, time.Time{}, 2, at
	item2 := resolved(item, at)
	mustWrite(t, s, &ordercore.Changeset{
		PaymentChanges: []ordercore.PaymentChange{{Payment: p2, FromVersion: 1}, {Payment: prior2, FromVersion: 1}},
		RefundChanges:  []ordercore.RefundChange{{Refund: r2, FromVersion: 1}},
		ReviewChanges:  []ordercore.ReviewChange{{Item: item2, FromVersion: 1}},
	})

	for _, want := range []ordercore.Payment{p2, prior2} {
		got, err := s.Payment(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("payment after its change (-want +got):\n%s", diff)
		}
	}
	_, rs, err := s.OrderPayments(ctx, id(2))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ordercore.Refund{r2}, rs, equateEmpty); diff != "" {
		t.Errorf("refund after its change (-want +got):\n%s", diff)
	}
	got, err := s.Review(ctx, item.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(item2, got); diff != "" {
		t.Errorf("review item after its change (-want +got):\n%s", diff)
	}
}

// testPaymentQueues: the payment sync reads only due attempts and refunds, earliest first,
// and the open attempts of the orders it asks about.
func testPaymentQueues(t *testing.T, s Store) {
	ctx := context.Background()
	now := t0.Add(5 * time.Minute)
	due := func(n int, order string, status ordercore.PaymentStatus, next time.Duration) ordercore.Payment {
		p := payment(n, order, status)
		p.NextSyncAt = t0.Add(next)
		return p
	}
	late := due(101, id(1), ordercore.PaymentPending, 3*time.Minute)
	atNow := due(102, id(2), ordercore.PaymentUnknown, 5*time.Minute)
	early := due(103, id(3), ordercore.PaymentCreated, time.Minute)
	future := due(104, id(4), ordercore.PaymentPending, 5*time.Minute+time.Microsecond)
	settled := capturedPayment(105, id(5))
	closing := due(106, id(5), ordercore.PaymentClosed, 4*time.Minute) // an ended attempt awaiting its confirming query
	rLate := refund(201, settled, 100)
	rLate.NextSyncAt = t0.Add(4 * time.Minute)
	rEarly := refund(202, settled, 100)
	rEarly.NextSyncAt = t0.Add(-time.Hour)
	rFuture := refund(203, settled, 100)
	rFuture.NextSyncAt = now.Add(time.Second)
	rDone := refund(204, settled, 100)
	rDone.Status = ordercore.RefundSucceeded
	mustWrite(t, s, &ordercore.Changeset{
		NewPayments: []ordercore.Payment{late, atNow, early, future, settled, closing},
		NewRefunds:  []ordercore.Refund{rLate, rEarly, rFuture, rDone},
	})

	ps, err := s.DuePayments(ctx, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ordercore.Payment{early, late, closing, atNow}, ps); diff != "" {
		t.Errorf("DuePayments, earliest first, due ones only (-want +got):\n%s", diff)
	}
	if ps, err := s.DuePayments(ctx, now, 2); err != nil || len(ps) != 2 || ps[0].ID != early.ID || ps[1].ID != late.ID {
		t.Errorf("DuePayments limit 2 = %v %v, want the two earliest", ps, err)
	}
	if ps, err := s.DuePayments(ctx, t0, 10); err != nil || len(ps) != 0 {
		t.Errorf("DuePayments before any is due = %v %v", ps, err)
	}
	rs, err := s.DueRefunds(ctx, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ordercore.Refund{rEarly, rLate}, rs, equateEmpty); diff != "" {
		t.Errorf("DueRefunds, earliest first, due ones only (-want +got):\n%s", diff)
	}
	if rs, err := s.DueRefunds(ctx, now, 1); err != nil || len(rs) != 1 || rs[0].ID != rEarly.ID {
		t.Errorf("DueRefunds limit 1 = %v %v, want the earliest", rs, err)
	}

	open, err := s.OpenPayments(ctx, []string{id(1), id(2), id(3), id(5), id(9)})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(open, func(a, b ordercore.Payment) int { return strings.Compare(a.ID, b.ID) })
	if diff := cmp.Diff([]ordercore.Payment{late, atNow, early}, open); diff != "" {
		t.Errorf("OpenPayments of orders 1, 2, 3, 5, 9 (-want +got):\n%s", diff)
	}
	if open, err := s.OpenPayments(ctx, nil); err != nil || len(open) != 0 {
		t.Errorf("OpenPayments of no orders = %v %v", open, err)
	}
}

// testReviewQueue: operators page through review items newest first, all or by status.
func testReviewQueue(t *testing.T, s Store) {
	ctx := context.Background()
	var items []ordercore.ReviewItem
	for n := 301; n <= 305; n++ {
		it := review(n, ordercore.ReviewOrphan)
		it.CreatedAt = t0.Add(time.Duration(n-300) * time.Minute)
		if n%2 == 0 {
			it = resolved(it, it.CreatedAt.Add(time.Hour))
		}
		items = append(items, it)
	}
	mustWrite(t, s, &ordercore.Changeset{NewReviews: items})
	page := func(status ordercore.ReviewStatus, limit int) []ordercore.ReviewItem {
		var all []ordercore.ReviewItem
		after := ""
		for range 10 {
			got, err := s.Reviews(ctx, status, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > limit {
				t.Fatalf("Reviews(%q, %q, %d) returned %d items", status, after, limit, len(got))
			}
			if len(got) == 0 {
				break
			}
			all = append(all, got...)
			after = got[len(got)-1].ID
		}
		return all
	}
	for _, tc := range []struct {
		status ordercore.ReviewStatus
		want   []ordercore.ReviewItem
	}{
		{"", []ordercore.ReviewItem{items[4], items[3], items[2], items[1], items[0]}},
		{ordercore.ReviewOpen, []ordercore.ReviewItem{items[4], items[2], items[0]}},
		{ordercore.ReviewResolved, []ordercore.ReviewItem{items[3], items[1]}},
	} {
		if diff := cmp.Diff(tc.want, page(tc.status, 2)); diff != "" {
			t.Errorf("Reviews %q, newest first, in pages of 2 (-want +got):\n%s", tc.status, diff)
		}
	}
	// The open ones per kind, for the metrics: 301, 303 and 305 are open orphans; one
	// open item of another kind and a resolved one of a third are added.
	more := []ordercore.ReviewItem{review(306, ordercore.ReviewAmountMismatch), resolved(review(307, ordercore.ReviewSyncExhausted), t0.Add(time.Hour))}
	mustWrite(t, s, &ordercore.Changeset{NewReviews: more})
	counts, err := s.OpenReviewCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int64{ordercore.ReviewOrphan: 3, ordercore.ReviewAmountMismatch: 1}, counts); diff != "" {
		t.Errorf("OpenReviewCounts (-want +got):\n%s", diff)
	}
}

// testCloseThenOpen: one batch may close an order's open attempt and open its next one,
// though the database allows one open attempt per order: the change is applied first.
func testCloseThenOpen(t *testing.T, s Store) {
	ctx := context.Background()
	first := payment(101, id(1), ordercore.PaymentPending)
	mustWrite(t, s, &ordercore.Changeset{NewPayments: []ordercore.Payment{first}})
	closed := first
	closed.Status, closed.Version, closed.UpdatedAt = ordercore.PaymentClosed, 2, t0.Add(time.Minute)
	next := payment(102, id(1), ordercore.PaymentCreated)
	next.CreatedAt, next.UpdatedAt = t0.Add(time.Minute), t0.Add(time.Minute)
	mustWrite(t, s, &ordercore.Changeset{NewPayments: []ordercore.Payment{next},
		PaymentChanges: []ordercore.PaymentChange{{Payment: closed, FromVersion: 1}}})
	ps, _, err := s.OrderPayments(ctx, id(1))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ordercore.Payment{closed, next}, ps); diff != "" {
		t.Errorf("attempts after close-and-reopen (-want +got):\n%s", diff)
	}
	open, err := s.OpenPayments(ctx, []string{id(1)})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ordercore.Payment{next}, open); diff != "" {
		t.Errorf("open attempts (-want +got):\n%s", diff)
	}
}

// testMoneyMovements: statement reconciliation reads one channel's captures and refund
// commits of a window [from, to), in ledger order, page by page; holds, releases, other
// channels' money and money outside the window are not in it.
func testMoneyMovements(t *testing.T, s Store) {
	ctx := context.Background()
	from := time.Date(2030, 3, 4, 0, 0, 0, 0, time.UTC)
	to := from.Add(24 * time.Hour)
	at := func(e ordercore.MoneyEntry, when time.Time) ordercore.MoneyEntry { e.At = when; return e }

	before := capturedPayment(101, id(1)) // captured the instant before the window
	first := capturedPayment(102, id(2))  // captured at its first instant
	last := capturedPayment(103, id(3))   // captured at its last instant
	last.Amount = ordercore.Money{Amount: 1000, Currency: "EUR"}
	after := capturedPayment(104, id(4)) // captured at to, the first instant after it
	other := capturedPayment(105, id(5))
	other.Channel = "stripe"
	committed := refund(201, before, 300) // committed in the window
	released := refund(202, before, 200)  // held and released in the window
	lateCommit := refund(203, first, 400) // committed in the window, written after later money
	afterCommit := refund(204, after, 100)
	otherCommit := refund(205, other, 500)

	// Three batches, so that the ledger's order (Seq) is not the order of At.
	batches := [][]ordercore.MoneyEntry{
		{
			at(money(before, "", ordercore.MoneyCapture, 1000), from.Add(-time.Microsecond)),
			at(money(first, "", ordercore.MoneyCapture, 1000), from),
			at(money(other, "", ordercore.MoneyCapture, 1000), from.Add(time.Hour)),
		},
		{
			at(money(before, committed.ID, ordercore.MoneyRefundHold, 300), from.Add(2*time.Hour)),
			at(money(before, committed.ID, ordercore.MoneyRefundCommit, 300), from.Add(3*time.Hour)),
			at(money(before, released.ID, ordercore.MoneyRefundHold, 200), from.Add(4*time.Hour)),
			at(money(before, released.ID, ordercore.MoneyRefundRelease, 200), from.Add(5*time.Hour)),
			at(money(other, otherCommit.ID, ordercore.MoneyRefundHold, 500), from.Add(2*time.Hour)),
			at(money(other, otherCommit.ID, ordercore.MoneyRefundCommit, 500), from.Add(6*time.Hour)),
		},
		{
			at(money(last, "", ordercore.MoneyCapture, 1000), to.Add(-time.Microsecond)),
			at(money(after, "", ordercore.MoneyCapture, 1000), to),
			at(money(first, lateCommit.ID, ordercore.MoneyRefundHold, 400), from.Add(30*time.Minute)),
			at(money(first, lateCommit.ID, ordercore.MoneyRefundCommit, 400), from.Add(time.Hour)),
			at(money(after, afterCommit.ID, ordercore.MoneyRefundHold, 100), to),
			at(money(after, afterCommit.ID, ordercore.MoneyRefundCommit, 100), to.Add(time.Hour)),
		},
	}
	mustWrite(t, s, &ordercore.Changeset{
		NewPayments: []ordercore.Payment{before, first, last, after, other},
		NewRefunds:  []ordercore.Refund{committed, released, lateCommit, afterCommit, otherCommit},
		MoneyLedger: batches[0],
	})
	mustWrite(t, s, &ordercore.Changeset{MoneyLedger: batches[1]})
	mustWrite(t, s, &ordercore.Changeset{MoneyLedger: batches[2]})

	// The store numbers entries; take each one's Seq from the dump.
	type entryKey struct {
		payment, refund string
		movement        ordercore.MoneyMovement
	}
	seqs := map[entryKey]int64{}
	for _, e := range dump(t, s).MoneyLedger {
		seqs[entryKey{e.PaymentID, e.RefundID, e.Movement}] = e.Seq
	}
	numbered := func(e ordercore.MoneyEntry) ordercore.MoneyEntry {
		seq, ok := seqs[entryKey{e.PaymentID, e.RefundID, e.Movement}]
		if !ok {
			t.Fatalf("entry %+v is not in the dump", e)
		}
		e.Seq = seq
		return e
	}
	var all []ordercore.MoneyEntry
	for _, b := range batches {
		for _, e := range b {
			all = append(all, numbered(e))
		}
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Fatalf("the ledger does not number entries in the order written: %+v", all)
		}
	}
	// all, by index: 0 before's capture, 1 first's, 2 other's; 3-4 committed's hold and
	// commit, 5-6 released's hold and release, 7-8 otherCommit's; 9 last's capture,
	// 10 after's; 11-12 lateCommit's hold and commit; 13-14 afterCommit's.
	pick := func(is ...int) []ordercore.MoneyEntry {
		out := []ordercore.MoneyEntry{}
		for _, i := range is {
			out = append(out, all[i])
		}
		return out
	}

	read := func(channel string, from, to time.Time, afterSeq int64, limit int) []ordercore.MoneyEntry {
		t.Helper()
		got, err := s.MoneyMovements(ctx, channel, from, to, afterSeq, limit)
		if err != nil {
			t.Fatalf("MoneyMovements(%q, %v, %v, %d, %d): %v", channel, from, to, afterSeq, limit, err)
		}
		if len(got) > limit {
			t.Fatalf("MoneyMovements(%q, %v, %v, %d, %d) returned %d entries", channel, from, to, afterSeq, limit, len(got))
		}
		return got
	}
	for _, tc := range []struct {
		what     string
		channel  string
		from, to time.Time
		afterSeq int64
		want     []ordercore.MoneyEntry
	}{
		{"a day of sim", "sim", from, to, 0, pick(1, 4, 9, 12)},
		{"a day of stripe", "stripe", from, to, 0, pick(2, 8)},
		{"sim from the commit at 03:00 to the capture at the day's last instant, exclusive", "sim", from.Add(3 * time.Hour), to.Add(-time.Microsecond), 0, pick(4)},
		{"sim from the day's last instant", "sim", to.Add(-time.Microsecond), to.Add(2 * time.Hour), 0, pick(9, 10, 14)},
		{"sim after the first capture", "sim", from, to, all[1].Seq, pick(4, 9, 12)},
		{"sim after an entry not in the result (a hold)", "sim", from, to, all[5].Seq, pick(9, 12)},
		{"sim after its last entry", "sim", from, to, all[12].Seq, nil},
		{"an empty window", "sim", from.Add(time.Hour), from.Add(time.Hour), 0, nil},
		{"a window without money", "sim", to.Add(2 * time.Hour), to.Add(48 * time.Hour), 0, nil},
		{"a window before any money", "sim", from.Add(-48 * time.Hour), from.Add(-time.Microsecond), 0, nil},
		{"a channel without money", "alipay", from, to, 0, nil},
	} {
		if diff := cmp.Diff(tc.want, read(tc.channel, tc.from, tc.to, tc.afterSeq, 100), equateEmpty); diff != "" {
			t.Errorf("MoneyMovements, %s (-want +got):\n%s", tc.what, diff)
		}
	}

	// Paging: every page size reads every entry of the window exactly once, in Seq order.
	want := pick(1, 4, 9, 12)
	for limit := 1; limit <= len(want)+1; limit++ {
		var got []ordercore.MoneyEntry
		afterSeq := int64(0)
		for range len(want) + 2 {
			page := read("sim", from, to, afterSeq, limit)
			got = append(got, page...)
			if len(page) < limit {
				break
			}
			afterSeq = page[len(page)-1].Seq
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("MoneyMovements in pages of %d (-want +got):\n%s", limit, diff)
		}
	}
}

// paymentGuard is one database guard: after base and setup, every changeset of bad is
// refused and leaves nothing, and good, its valid twin, is then accepted, which shows that
// bad was refused for the guard's reason and not for a mistake of the test.
type paymentGuard struct {
	name  string
	setup []ordercore.Changeset
	bad   []ordercore.Changeset
	good  *ordercore.Changeset
	check func(t *testing.T, s Store) // after good, when the accepted row needs a look
}

// The guard tests' common state: order 1 is paid by a captured attempt with a pending
// refund holding part of it, order 2 has an open attempt, a review item is open, one
// notification is in the inbox.
var (
	guardPaid = func() ordercore.Payment {
		p := capturedPayment(101, id(1))
		p.Refunding = 300
		return p
	}()
	guardOpen   = payment(102, id(2), ordercore.PaymentPending)
	guardRefund = refund(201, guardPaid, guardPaid.Refunding)
	guardReview = review(301, ordercore.ReviewAmountMismatch)
	guardInbox  = inbox("sim", "evt-1", guardPaid.ID, "")
)

func guardBase() *ordercore.Changeset {
	return &ordercore.Changeset{
		NewSKUs:     []ordercore.SKU{sku("a", 10)},
		NewOrders:   []ordercore.Order{paid(order(id(1), "u1", t0, "a", 1, "a", 3), t0)},
		NewPayments: []ordercore.Payment{guardPaid, guardOpen},
		NewRefunds:  []ordercore.Refund{guardRefund},
		MoneyLedger: []ordercore.MoneyEntry{
			money(guardPaid, "", ordercore.MoneyCapture, guardPaid.Captured),
			money(guardPaid, guardRefund.ID, ordercore.MoneyRefundHold, guardRefund.Amount.Amount),
		},
		ChannelEvents: []ordercore.ChannelEvent{guardInbox},
		NewReviews:    []ordercore.ReviewItem{guardReview},
	}
}

func (g paymentGuard) run(t *testing.T, s Store) {
	mustWrite(t, s, guardBase())
	for i := range g.setup {
		mustWrite(t, s, &g.setup[i])
	}
	for i, c := range g.bad {
		refuses(t, s, fmt.Sprintf("bad batch %d", i), c)
	}
	if g.good != nil {
		if err := write(t, s, g.good); err != nil {
			t.Fatalf("the valid twin of the refused batches was refused too: %v", err)
		}
	}
	if g.check != nil {
		g.check(t, s)
	}
}

func paymentGuards() []paymentGuard {
	at := t0.Add(time.Minute)
	bumped := func(p ordercore.Payment, v int64) ordercore.Payment {
		p.SyncAttempts, p.Version, p.UpdatedAt = int(v), v, at
		return p
	}
	bumpedRefund := func(v int64) ordercore.Refund {
		r := guardRefund
		r.SyncAttempts, r.NextSyncAt, r.Version, r.UpdatedAt = int(v), at, v, at
		return r
	}
	payChange := func(p ordercore.Payment, from int64) ordercore.Changeset {
		return ordercore.Changeset{PaymentChanges: []ordercore.PaymentChange{{Payment: p, FromVersion: from}}}
	}
	newPayments := func(ps ...ordercore.Payment) ordercore.Changeset {
		return ordercore.Changeset{NewPayments: ps}
	}
	moneyRows := func(es ...ordercore.MoneyEntry) ordercore.Changeset {
		return ordercore.Changeset{MoneyLedger: es}
	}
	noted := guardReview
	noted.Note, noted.Version = "asked the channel", 2
	otherRefund := refund(202, guardPaid, 100)

	refundedBeyond := guardPaid
	refundedBeyond.Refunding, refundedBeyond.Refunded, refundedBeyond.Version = 300, 701, 2
	holdingBeyond := guardPaid
	holdingBeyond.Refunding, holdingBeyond.Version = 1001, 2
	newBeyond := capturedPayment(103, id(6))
	newBeyond.Captured, newBeyond.Refunding = 100, 101
	refundedAll := guardPaid
	refundedAll.Refunding, refundedAll.Refunded, refundedAll.Version = 300, 700, 2

	acceptedPending := guardOpen
	acceptedPending.Accepted, acceptedPending.Version = true, 2
	acceptedClosed := payment(103, id(6), ordercore.PaymentClosed)
	acceptedClosed.Accepted = true
	acceptedFailed := payment(103, id(6), ordercore.PaymentFailed)
	acceptedFailed.Accepted = true
	acceptedPaid := guardOpen
	acceptedPaid.Status, acceptedPaid.Accepted, acceptedPaid.Captured, acceptedPaid.Version = ordercore.PaymentSucceeded, true, 1000, 2

	// order 1 was also paid by a second attempt, which is to be refunded, not accepted
	duplicatePaid := capturedPayment(103, id(1))
	duplicatePaid.Accepted = false
	acceptedDuplicate := duplicatePaid
	acceptedDuplicate.Accepted, acceptedDuplicate.Version = true, 2
	// order 2 has an ended attempt beside its open one
	endedB := payment(103, id(2), ordercore.PaymentFailed)
	reopenedB := endedB
	reopenedB.Status, reopenedB.Version = ordercore.PaymentUnknown, 2

	resolvedNoTime := resolved(guardReview, time.Time{})
	newResolvedNoTime := resolved(review(302, ordercore.ReviewOrphan), time.Time{})
	newResolvedNoTime.Version = 1
	newOpenWithTime := review(303, ordercore.ReviewOrphan)
	newOpenWithTime.ResolvedAt = at

	released := withLines(order(id(3), "u1", t0, "a", 1, "a", 2), ordercore.OrderCancelled, ordercore.ReservationReleased, ordercore.ReservationReleased)
	mixed := withLines(order(id(4), "u1", t0, "a", 1, "a", 2), ordercore.OrderCancelled, ordercore.ReservationReleased, ordercore.ReservationCommitted)
	pending := order(id(5), "u1", t0, "a", 1, "a", 2)
	revivedBefore := withLines(order(id(8), "u1", t0, "a", 1), ordercore.OrderCancelled, ordercore.ReservationReleased)
	revive := func(o ordercore.Order) ordercore.Changeset {
		return ordercore.Changeset{OrderChanges: []ordercore.OrderChange{{Order: paid(o, at), FromVersion: o.Version, Revive: true}}}
	}
	stock := func(m ordercore.StockMovement, orderID string, line int) ordercore.StockEntry {
		return ordercore.NewStockEntry("a", m, 1, orderID, line, t0)
	}
	ledgerRows := func(es ...ordercore.StockEntry) ordercore.Changeset { return ordercore.Changeset{Ledger: es} }

	return []paymentGuard{
		{
			name:  "StalePaymentVersion",
			setup: []ordercore.Changeset{payChange(bumped(guardOpen, 2), 1)},
			bad: []ordercore.Changeset{
				payChange(bumped(guardOpen, 3), 1),
				payChange(bumped(guardOpen, 3), 3),
				payChange(bumped(payment(199, id(9), ordercore.PaymentPending), 2), 1), // never written
			},
			good: ptr(payChange(bumped(guardOpen, 3), 2)),
		},
		{
			name:  "StaleRefundVersion",
			setup: []ordercore.Changeset{{RefundChanges: []ordercore.RefundChange{{Refund: bumpedRefund(2), FromVersion: 1}}}},
			bad: []ordercore.Changeset{
				{RefundChanges: []ordercore.RefundChange{{Refund: bumpedRefund(3), FromVersion: 1}}},
				{RefundChanges: []ordercore.RefundChange{{Refund: refund(299, guardPaid, 1), FromVersion: 1}}},
			},
			good: &ordercore.Changeset{RefundChanges: []ordercore.RefundChange{{Refund: bumpedRefund(3), FromVersion: 2}}},
		},
		{
			name:  "StaleReviewVersion",
			setup: []ordercore.Changeset{{ReviewChanges: []ordercore.ReviewChange{{Item: noted, FromVersion: 1}}}},
			bad: []ordercore.Changeset{
				{ReviewChanges: []ordercore.ReviewChange{{Item: resolved(noted, at), FromVersion: 1}}},
				{ReviewChanges: []ordercore.ReviewChange{{Item: resolved(review(399, ordercore.ReviewOrphan), at), FromVersion: 1}}},
			},
			good: &ordercore.Changeset{ReviewChanges: []ordercore.ReviewChange{{Item: resolved(noted, at), FromVersion: 2}}},
		},
		{
			name: "RefundsWithinCapture",
			bad: []ordercore.Changeset{
				payChange(refundedBeyond, 1),
				payChange(holdingBeyond, 1),
				newPayments(newBeyond),
			},
			good: ptr(payChange(refundedAll, 1)),
		},
		{
			name: "AcceptedOnlyWhenSucceeded",
			bad: []ordercore.Changeset{
				payChange(acceptedPending, 1),
				newPayments(acceptedClosed),
				newPayments(acceptedFailed),
			},
			good: ptr(payChange(acceptedPaid, 1)),
		},
		{
			name:  "OneOpenAttemptPerOrder",
			setup: []ordercore.Changeset{newPayments(endedB)},
			bad: []ordercore.Changeset{
				newPayments(payment(104, id(2), ordercore.PaymentCreated)),
				newPayments(payment(104, id(2), ordercore.PaymentUnknown)),
				newPayments(payment(104, id(6), ordercore.PaymentCreated), payment(105, id(6), ordercore.PaymentPending)),
				payChange(reopenedB, 1), // an ended attempt open again beside the open one
			},
			good: ptr(newPayments(payment(104, id(2), ordercore.PaymentFailed), payment(105, id(2), ordercore.PaymentClosed))),
		},
		{
			name:  "OneAcceptedPaymentPerOrder",
			setup: []ordercore.Changeset{newPayments(duplicatePaid)},
			bad: []ordercore.Changeset{
				newPayments(capturedPayment(104, id(1))),
				newPayments(capturedPayment(104, id(6)), capturedPayment(105, id(6))),
				payChange(acceptedDuplicate, 1),
			},
			good: ptr(newPayments(func() ordercore.Payment { p := capturedPayment(104, id(1)); p.Accepted = false; return p }())),
		},
		{
			name: "CaptureOnce",
			bad: []ordercore.Changeset{
				moneyRows(money(guardPaid, "", ordercore.MoneyCapture, guardPaid.Captured)),
				moneyRows(money(guardPaid, "", ordercore.MoneyCapture, 1)),
				moneyRows(money(guardOpen, "", ordercore.MoneyCapture, 500), money(guardOpen, "", ordercore.MoneyCapture, 500)),
			},
			good: ptr(moneyRows(money(guardOpen, "", ordercore.MoneyCapture, 1000))),
		},
		{
			name: "RefundHoldOnce",
			bad: []ordercore.Changeset{
				moneyRows(money(guardPaid, guardRefund.ID, ordercore.MoneyRefundHold, guardRefund.Amount.Amount)),
				moneyRows(money(guardPaid, otherRefund.ID, ordercore.MoneyRefundHold, 100), money(guardPaid, otherRefund.ID, ordercore.MoneyRefundHold, 100)),
			},
			good: ptr(moneyRows(money(guardPaid, otherRefund.ID, ordercore.MoneyRefundHold, 100))),
		},
		{
			name:  "RefundSettlesOnce",
			setup: []ordercore.Changeset{moneyRows(money(guardPaid, guardRefund.ID, ordercore.MoneyRefundRelease, guardRefund.Amount.Amount))},
			bad: []ordercore.Changeset{
				moneyRows(money(guardPaid, guardRefund.ID, ordercore.MoneyRefundCommit, guardRefund.Amount.Amount)),
				moneyRows(money(guardPaid, guardRefund.ID, ordercore.MoneyRefundRelease, guardRefund.Amount.Amount)),
				moneyRows(
					money(guardPaid, otherRefund.ID, ordercore.MoneyRefundHold, 100),
					money(guardPaid, otherRefund.ID, ordercore.MoneyRefundCommit, 100),
					money(guardPaid, otherRefund.ID, ordercore.MoneyRefundRelease, 100)),
			},
			good: ptr(moneyRows(
				money(guardPaid, otherRefund.ID, ordercore.MoneyRefundHold, 100),
				money(guardPaid, otherRefund.ID, ordercore.MoneyRefundCommit, 100))),
		},
		{
			name: "InboxOnce",
			bad: []ordercore.Changeset{
				{ChannelEvents: []ordercore.ChannelEvent{func() ordercore.ChannelEvent { e := guardInbox; e.Outcome = "stale"; return e }()}},
				{ChannelEvents: []ordercore.ChannelEvent{inbox("sim", "evt-2", "", ""), inbox("sim", "evt-2", guardPaid.ID, "")}},
			},
			good: &ordercore.Changeset{ChannelEvents: []ordercore.ChannelEvent{inbox("stripe", "evt-1", "", ""), inbox("sim", "evt-2", "", "")}},
			check: func(t *testing.T, s Store) {
				got := inboxHas(t, s, key("sim", "evt-1"), key("stripe", "evt-1"), key("sim", "evt-2"))
				if len(got) != 3 {
					t.Errorf("inbox after the valid batch: %v, want all three", got)
				}
			},
		},
		{
			name: "ResolvedIffResolvedAt",
			bad: []ordercore.Changeset{
				{ReviewChanges: []ordercore.ReviewChange{{Item: resolvedNoTime, FromVersion: 1}}},
				{NewReviews: []ordercore.ReviewItem{newResolvedNoTime}},
				{NewReviews: []ordercore.ReviewItem{newOpenWithTime}},
			},
			good: &ordercore.Changeset{ReviewChanges: []ordercore.ReviewChange{{Item: resolved(guardReview, at), FromVersion: 1}}},
			check: func(t *testing.T, s Store) {
				got, err := s.Review(context.Background(), guardReview.ID)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(resolved(guardReview, at), got); diff != "" {
					t.Errorf("resolved item (-want +got):\n%s", diff)
				}
			},
		},
		{
			name:  "ReviveOnlyReleasedLines",
			setup: []ordercore.Changeset{{NewOrders: []ordercore.Order{released, mixed, pending, revivedBefore}}, revive(revivedBefore)},
			bad: []ordercore.Changeset{
				revive(mixed),
				revive(pending),
				revive(paid(revivedBefore, at)), // revived already: its lines are committed
			},
			good: ptr(revive(released)),
			check: func(t *testing.T, s Store) {
				got, err := s.Order(context.Background(), released.ID)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(paid(released, at), got); diff != "" {
					t.Errorf("revived order (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "StockPhasesOnce",
			setup: []ordercore.Changeset{
				// reserve, resolve, revive and return are four phases of one line: all may be written
				ledgerRows(stock(ordercore.MoveReserve, id(3), 1), stock(ordercore.MoveRelease, id(3), 1), stock(ordercore.MoveReserve, id(3), 2), stock(ordercore.MoveRelease, id(3), 2)),
				ledgerRows(stock(ordercore.MoveRevive, id(3), 1), stock(ordercore.MoveReturn, id(3), 1)),
			},
			bad: []ordercore.Changeset{
				ledgerRows(stock(ordercore.MoveRevive, id(3), 1)),
				ledgerRows(stock(ordercore.MoveReturn, id(3), 1)),
				ledgerRows(stock(ordercore.MoveRevive, id(3), 2), stock(ordercore.MoveRevive, id(3), 2)),
				ledgerRows(stock(ordercore.MoveReturn, id(3), 2), stock(ordercore.MoveReturn, id(3), 2)),
			},
			good: ptr(ledgerRows(stock(ordercore.MoveRevive, id(3), 2), stock(ordercore.MoveReturn, id(3), 2))),
		},
	}
}

func ptr[T any](v T) *T { return &v }
