package verify_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
	"ordercore/internal/limit"
	"ordercore/internal/verify"
)

// The payment side of the fixture: each method writes exactly the rows the commands of
// internal/engine/payments.go write (payment and refund rows, money ledger rows, review
// items and their events), one batch per method.

func (f *fixture) payment(id string) *ordercore.Payment {
	i, ok := f.pays[id]
	if !ok {
		f.t.Fatalf("no payment %s in the fixture", id)
	}
	return &f.snap.Payments[i]
}

func (f *fixture) refund(id string) *ordercore.Refund {
	i, ok := f.rfs[id]
	if !ok {
		f.t.Fatalf("no refund %s in the fixture", id)
	}
	return &f.snap.Refunds[i]
}

// refundsOf returns the ids of a payment's refunds, oldest first.
func (f *fixture) refundsOf(paymentID string) []string {
	var out []string
	for _, r := range f.snap.Refunds {
		if r.PaymentID == paymentID {
			out = append(out, r.ID)
		}
	}
	return out
}

// onlyRefund returns the id of the payment's one refund.
func (f *fixture) onlyRefund(paymentID string) string {
	ids := f.refundsOf(paymentID)
	if len(ids) != 1 {
		f.t.Fatalf("payment %s has refunds %v, want exactly one", paymentID, ids)
	}
	return ids[0]
}

func (f *fixture) orderByID(id string) *ordercore.Order { return &f.snap.Orders[f.orders[id]] }

// touchPayment mirrors batch.touchPayment: the version rises once per batch, and not for a
// row the batch inserts.
func (f *fixture) touchPayment(p *ordercore.Payment) {
	if p.CreatedAt != f.now && p.UpdatedAt != f.now {
		p.Version++
	}
	p.UpdatedAt = f.now
}

func (f *fixture) touchRefund(r *ordercore.Refund) {
	if r.CreatedAt != f.now && r.UpdatedAt != f.now {
		r.Version++
	}
	r.UpdatedAt = f.now
}

func (f *fixture) paymentEvent(p *ordercore.Payment, typ, source, note string, paid *ordercore.Money) {
	f.event(ordercore.AggregateOrder, p.OrderID, typ, ordercore.PaymentEvent{PaymentID: p.ID, Channel: p.Channel,
		Status: p.Status, Amount: p.Amount, Paid: paid, TxnID: p.TxnID, Source: source, Note: note})
}

func (f *fixture) refundEvent(r *ordercore.Refund, typ string) {
	f.event(ordercore.AggregateOrder, r.OrderID, typ, ordercore.RefundEvent{RefundID: r.ID, PaymentID: r.PaymentID,
		Kind: r.Kind, Amount: r.Amount, Status: r.Status, Reason: r.Reason})
}

// money mirrors batch.money.
func (f *fixture) money(p *ordercore.Payment, m ordercore.MoneyMovement, amount int64, refundID string) {
	switch m {
	case ordercore.MoneyCapture:
		p.Captured += amount
	case ordercore.MoneyRefundHold:
		p.Refunding += amount
	case ordercore.MoneyRefundCommit:
		p.Refunding -= amount
		p.Refunded += amount
	case ordercore.MoneyRefundRelease:
		p.Refunding -= amount
	}
	f.touchPayment(p)
	f.mseq++
	f.snap.MoneyLedger = append(f.snap.MoneyLedger, ordercore.MoneyEntry{Seq: f.mseq, PaymentID: p.ID, OrderID: p.OrderID,
		RefundID: refundID, Movement: m, Amount: amount, Currency: p.Amount.Currency, At: f.now})
}

// review mirrors batch.review.
func (f *fixture) review(kind, orderID, paymentID, refundID string) {
	it := ordercore.ReviewItem{ID: ordercore.NewID(f.now), Kind: kind, OrderID: orderID, PaymentID: paymentID, RefundID: refundID,
		Evidence: json.RawMessage(`{}`), Status: ordercore.ReviewOpen, Version: 1, CreatedAt: f.now}
	f.snap.Reviews = append(f.snap.Reviews, it)
	ev := ordercore.ReviewEvent{Kind: kind, OrderID: orderID, PaymentID: paymentID, RefundID: refundID}
	f.event(ordercore.AggregateReview, it.ID, ordercore.EventReviewOpened, ev)
	if orderID != "" {
		ev.Note = it.ID
		f.event(ordercore.AggregateOrder, orderID, ordercore.EventReviewOpened, ev)
	}
}

// startPayment mirrors StartPayment and returns the attempt's id.
func (f *fixture) startPayment(name, channel string) string {
	f.tick()
	o := f.order(name)
	p := ordercore.Payment{ID: ordercore.NewID(f.now), OrderID: o.ID, Channel: channel, Status: ordercore.PaymentCreated,
		Amount: o.Amount, NextSyncAt: f.now.Add(limit.PaymentSyncSchedule[0]), Version: 1, CreatedAt: f.now, UpdatedAt: f.now}
	f.pays[p.ID] = len(f.snap.Payments)
	f.snap.Payments = append(f.snap.Payments, p)
	f.paymentEvent(&p, ordercore.EventPaymentStarted, "", "", nil)
	return p.ID
}

// openedPayment mirrors OpenedPayment.
func (f *fixture) openedPayment(id string) {
	f.tick()
	p := f.payment(id)
	p.TxnID = "txn-" + id
	p.Status = ordercore.PaymentPending
	f.paymentEvent(p, ordercore.EventPaymentPending, "create", "", nil)
	f.touchPayment(p)
}

// unknownPayment mirrors UnknownPayment.
func (f *fixture) unknownPayment(id string) {
	f.tick()
	p := f.payment(id)
	p.Status = ordercore.PaymentUnknown
	f.touchPayment(p)
	f.paymentEvent(p, ordercore.EventPaymentUnknown, "create", "", nil)
}

// syncExhausted mirrors the last PaymentSyncMissed of the schedule: no next sync, and
// the attempt in the review queue.
func (f *fixture) syncExhausted(id string) {
	f.tick()
	p := f.payment(id)
	p.SyncAttempts, p.NextSyncAt = len(limit.PaymentSyncSchedule), time.Time{}
	f.touchPayment(p)
	f.review(ordercore.ReviewSyncExhausted, p.OrderID, p.ID, "")
}

// closedPayment mirrors ChannelPayment with status closed (the answer to a close).
func (f *fixture) closedPayment(id string) {
	f.tick()
	p := f.payment(id)
	p.Status, p.NextSyncAt = ordercore.PaymentClosed, time.Time{}
	f.touchPayment(p)
	f.paymentEvent(p, ordercore.EventPaymentClosed, "close", "", nil)
}

// succeeded mirrors ChannelPayment with status succeeded (batch.succeeded): the money is
// captured, then pays the order, revives it, or is refunded.
func (f *fixture) succeeded(id string, paid ordercore.Money) {
	f.tick()
	p := f.payment(id)
	p.Status, p.NextSyncAt = ordercore.PaymentSucceeded, time.Time{}
	f.touchPayment(p)
	if paid.Currency != p.Amount.Currency {
		f.paymentEvent(p, ordercore.EventPaymentMismatch, "notify", "mismatch", &paid)
		f.review(ordercore.ReviewAmountMismatch, p.OrderID, p.ID, "")
		return
	}
	if paid.Amount > 0 {
		f.money(p, ordercore.MoneyCapture, paid.Amount, "")
	}
	if paid != p.Amount {
		f.paymentEvent(p, ordercore.EventPaymentMismatch, "notify", "mismatch", &paid)
		f.review(ordercore.ReviewAmountMismatch, p.OrderID, p.ID, "")
		f.refundRest(p, ordercore.RefundMismatch)
		return
	}
	o := f.orderByID(p.OrderID)
	applied := &ordercore.PaymentApplied{Channel: p.Channel, Reference: p.ID, Amount: paid}
	switch {
	case o.Status == ordercore.OrderPendingPayment:
		f.transitionIn(o, ordercore.OrderPaid, "", applied)
		p.Accepted = true
		f.paymentEvent(p, ordercore.EventPaymentSucceeded, "notify", "paid", &paid)
	case o.Status == ordercore.OrderCancelled && f.canRevive(o):
		f.transitionIn(o, ordercore.OrderPaid, "", applied)
		p.Accepted = true
		f.paymentEvent(p, ordercore.EventPaymentSucceeded, "notify", "revived", &paid)
	case o.Status == ordercore.OrderCancelled:
		f.paymentEvent(p, ordercore.EventPaymentSucceeded, "notify", "late", &paid)
		f.refundRest(p, ordercore.RefundLate)
	default:
		f.paymentEvent(p, ordercore.EventPaymentSucceeded, "notify", "duplicate", &paid)
		f.refundRest(p, ordercore.RefundDuplicate)
	}
}

func (f *fixture) canRevive(o *ordercore.Order) bool {
	need := map[string]int64{}
	for _, l := range o.Lines {
		if l.Reservation != ordercore.ReservationReleased {
			return false
		}
		need[l.SKU] += l.Quantity
	}
	for sku, n := range need {
		if f.sku(sku).Available() < n {
			return false
		}
	}
	return true
}

// newRefund mirrors batch.refund: the amount is held at once, and the refund is due.
func (f *fixture) newRefund(p *ordercore.Payment, kind ordercore.RefundKind, amount int64) *ordercore.Refund {
	r := ordercore.Refund{ID: ordercore.NewID(f.now), OrderID: p.OrderID, PaymentID: p.ID, Kind: kind,
		Amount: ordercore.Money{Amount: amount, Currency: p.Amount.Currency}, Reason: "because " + string(kind),
		Status: ordercore.RefundPending, NextSyncAt: f.now.Add(limit.RefundSyncSchedule[0]), Version: 1, CreatedAt: f.now, UpdatedAt: f.now}
	f.money(p, ordercore.MoneyRefundHold, amount, r.ID)
	f.rfs[r.ID] = len(f.snap.Refunds)
	f.snap.Refunds = append(f.snap.Refunds, r)
	f.refundEvent(&r, ordercore.EventRefundRequested)
	return f.refund(r.ID)
}

func (f *fixture) refundRest(p *ordercore.Payment, kind ordercore.RefundKind) {
	if rest := p.Captured - p.Refunding - p.Refunded; rest > 0 {
		f.newRefund(p, kind, rest)
	}
}

// acceptedPayment returns the named order's accepted payment.
func (f *fixture) acceptedPayment(name string) *ordercore.Payment {
	id := f.order(name).ID
	for i, p := range f.snap.Payments {
		if p.OrderID == id && p.Accepted {
			return &f.snap.Payments[i]
		}
	}
	f.t.Fatalf("order %s has no accepted payment", name)
	return nil
}

// requestRefund mirrors RequestRefund and returns the refund's id.
func (f *fixture) requestRefund(name string, amount int64) string {
	f.tick()
	o := f.order(name)
	p := f.acceptedPayment(name)
	if o.Status != ordercore.OrderRefunding {
		f.transitionIn(o, ordercore.OrderRefunding, "", nil)
	}
	return f.newRefund(p, ordercore.RefundRequested, amount).ID
}

// refundResult mirrors ChannelRefund with a terminal status.
func (f *fixture) refundResult(id string, status ordercore.RefundStatus) {
	f.tick()
	r := f.refund(id)
	p := f.payment(r.PaymentID)
	r.RefundID = "re-" + id
	r.Status, r.NextSyncAt = status, time.Time{}
	f.touchRefund(r)
	switch status {
	case ordercore.RefundSucceeded:
		f.money(p, ordercore.MoneyRefundCommit, r.Amount.Amount, r.ID)
		f.refundEvent(r, ordercore.EventRefundSucceeded)
	case ordercore.RefundFailed:
		f.money(p, ordercore.MoneyRefundRelease, r.Amount.Amount, r.ID)
		f.refundEvent(r, ordercore.EventRefundFailed)
		f.review(ordercore.ReviewRefundFailed, r.OrderID, r.PaymentID, r.ID)
	case ordercore.RefundAbnormal:
		f.refundEvent(r, ordercore.EventRefundAbnormal)
		f.review(ordercore.ReviewRefundAbnormal, r.OrderID, r.PaymentID, r.ID)
	}
	if r.Kind == ordercore.RefundRequested {
		f.settleRefunding(p)
	}
}

// settleRefunding mirrors batch.settleRefunding.
func (f *fixture) settleRefunding(p *ordercore.Payment) {
	o := f.orderByID(p.OrderID)
	if o.Status != ordercore.OrderRefunding {
		return
	}
	for _, id := range f.refundsOf(p.ID) {
		if r := f.refund(id); r.Kind == ordercore.RefundRequested && !r.Status.Terminal() {
			return
		}
	}
	switch {
	case p.Refunded == p.Captured:
		f.transitionIn(o, ordercore.OrderRefunded, "", nil)
	case p.Refunded > 0:
		f.transitionIn(o, ordercore.OrderPartiallyRefunded, "", nil)
	}
}

// payByChannel opens an attempt at the sim channel and has it succeed with the order's
// amount; it returns the attempt's id.
func (f *fixture) payByChannel(name string) string {
	id := f.startPayment(name, "sim")
	f.openedPayment(id)
	f.succeeded(id, f.order(name).Amount)
	return id
}

// withPayments adds orders paid, refunded and repaid through a channel, each the way the
// engine leaves it: a paid order, a duplicate payment refunded, a partially and a fully
// refunded order (after a failed refund), a refund still pending, late money that revived
// its order and late money that could not, money in another currency and a short payment
// (both in the review queue), and an attempt whose outcome is unknown after the whole sync
// schedule (in the review queue).
func withPayments(f *fixture) {
	f.createSKU("plum", usd(300), 1)

	f.place("card", "u6", lineReq{"apple", 1})
	f.payByChannel("card")
	f.transition("card", ordercore.OrderFulfilling, "", nil)

	// The shopper leaves the first attempt, pays a second, and the first turns out paid
	// after all: a duplicate, refunded in full.
	f.place("dup", "u6", lineReq{"pear", 2})
	first := f.startPayment("dup", "sim")
	f.openedPayment(first)
	f.closedPayment(first)
	f.payByChannel("dup")
	f.succeeded(first, f.order("dup").Amount)
	f.refundResult(f.onlyRefund(first), ordercore.RefundSucceeded)

	f.place("card-partial", "u7", lineReq{"apple", 2})
	f.payByChannel("card-partial")
	f.transition("card-partial", ordercore.OrderFulfilling, "", nil)
	f.refundResult(f.requestRefund("card-partial", 250), ordercore.RefundSucceeded)

	f.place("card-refunded", "u7", lineReq{"pear", 1})
	f.payByChannel("card-refunded")
	f.refundResult(f.requestRefund("card-refunded", 120), ordercore.RefundFailed)
	f.refundResult(f.requestRefund("card-refunded", 120), ordercore.RefundSucceeded)

	f.place("card-refunding", "u7", lineReq{"apple", 1})
	f.payByChannel("card-refunding")
	f.requestRefund("card-refunding", 100)

	// Late money: the expirer closed the attempt and cancelled the order, then the
	// channel says it was paid. The stock is still there, so the order is revived.
	f.place("revived", "u8", lineReq{"apple", 1})
	rev := f.startPayment("revived", "sim")
	f.openedPayment(rev)
	f.closedPayment(rev)
	f.transition("revived", ordercore.OrderCancelled, ordercore.CancelTimeout, nil)
	f.succeeded(rev, f.order("revived").Amount)

	// The same, but the only plum was sold meanwhile: the money is refunded.
	f.place("late", "u8", lineReq{"plum", 1})
	late := f.startPayment("late", "sim")
	f.openedPayment(late)
	f.closedPayment(late)
	f.transition("late", ordercore.OrderCancelled, ordercore.CancelTimeout, nil)
	f.place("plum-buyer", "u9", lineReq{"plum", 1})
	f.pay("plum-buyer")
	f.succeeded(late, f.order("late").Amount)

	f.place("eur", "u10", lineReq{"pear", 1})
	eur := f.startPayment("eur", "sim")
	f.openedPayment(eur)
	f.succeeded(eur, ordercore.Money{Amount: 110, Currency: "EUR"})

	f.place("short", "u10", lineReq{"pear", 1})
	short := f.startPayment("short", "sim")
	f.openedPayment(short)
	f.succeeded(short, usd(100))

	f.place("unknown", "u11", lineReq{"apple", 1})
	unknown := f.startPayment("unknown", "sim")
	f.unknownPayment(unknown)
	f.syncExhausted(unknown)
}

func TestCheckConsistentPayments(t *testing.T) {
	t.Parallel()
	f := consistent(t)
	if vs := verify.Check(&f.snap, f.now); len(vs) != 0 {
		t.Fatalf("a consistent snapshot has violations:\n%s", report(vs, &f.snap))
	}
	// The fixture must exercise what it claims to.
	want := map[string]int{
		"accepted":         6, // card, dup, card-partial, card-refunded, card-refunding, revived
		"refunds":          7,
		"refund failed":    1,
		"refund pending":   3, // card-refunding's, late's, short's
		"reviews open":     4, // eur, short, unknown, card-refunded's failed refund
		"duplicate":        1,
		"late":             1,
		"mismatch":         1,
		"open attempts":    1,
		"payments of dup":  2,
		"revive rows":      1,
		"partial refunded": 1,
	}
	got := map[string]int{}
	for _, p := range f.snap.Payments {
		if p.Accepted {
			got["accepted"]++
		}
		if p.Status.Open() {
			got["open attempts"]++
		}
		if p.OrderID == f.order("dup").ID {
			got["payments of dup"]++
		}
	}
	for _, r := range f.snap.Refunds {
		got["refunds"]++
		switch r.Status {
		case ordercore.RefundFailed:
			got["refund failed"]++
		case ordercore.RefundPending:
			got["refund pending"]++
		}
		switch r.Kind {
		case ordercore.RefundDuplicate, ordercore.RefundLate, ordercore.RefundMismatch:
			got[string(r.Kind)]++
		}
	}
	for _, it := range f.snap.Reviews {
		if it.Status == ordercore.ReviewOpen {
			got["reviews open"]++
		}
	}
	for _, e := range f.snap.Ledger {
		if e.Movement == ordercore.MoveRevive {
			got["revive rows"]++
		}
	}
	for _, o := range f.snap.Orders {
		if o.Status == ordercore.OrderPartiallyRefunded && o.ID == f.order("card-partial").ID {
			got["partial refunded"]++
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fixture coverage (-want +got):\n%s", diff)
	}
	if o := f.order("revived"); o.Status != ordercore.OrderPaid {
		t.Errorf("revived order is %s, want paid", o.Status)
	}
	if o := f.order("card-refunded"); o.Status != ordercore.OrderRefunded {
		t.Errorf("card-refunded order is %s, want refunded", o.Status)
	}
}

// corruption is one case of a corruption table: corrupt a consistent snapshot, expect
// exactly the listed rules to fire.
type corruption struct {
	name    string
	corrupt func(t *testing.T, f *fixture)
	now     func(f *fixture) time.Time // default: the fixture's last batch
	want    []string
}

func runCorruptions(t *testing.T, tests []corruption) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := consistent(t)
			tc.corrupt(t, f)
			now := f.now
			if tc.now != nil {
				now = tc.now(f)
			}
			vs := verify.Check(&f.snap, now)
			if diff := cmp.Diff(tc.want, rules(vs)); diff != "" {
				t.Errorf("rules that fired (-want +got):\n%s\n%s", diff, report(vs, &f.snap))
			}
			t.Log("\n" + report(vs, &f.snap))
			for _, v := range vs {
				if v.Subject == "" || v.Detail == "" {
					t.Errorf("violation %+v lacks a subject or detail", v)
				}
			}
		})
	}
}

// TestCheckMoneyCorruption corrupts one thing about money in a consistent snapshot and
// expects exactly the listed rules to fire; where one corruption breaks two promises, both
// are listed, with the reason.
func TestCheckMoneyCorruption(t *testing.T) {
	t.Parallel()
	runCorruptions(t, []corruption{{
		name:    "refunded balance off by one",
		corrupt: func(t *testing.T, f *fixture) { f.acceptedPayment("card-partial").Refunded-- },
		want:    []string{verify.RuleMoneyConservation},
	}, {
		name: "money ledger row for an unknown payment",
		corrupt: func(t *testing.T, f *fixture) {
			f.snap.MoneyLedger = append(f.snap.MoneyLedger, ordercore.MoneyEntry{Seq: f.mseq + 1, PaymentID: "ghost", OrderID: f.order("card").ID,
				Movement: ordercore.MoneyCapture, Amount: 250, Currency: "USD", At: f.now})
		},
		want: []string{verify.RuleMoneyConservation},
	}, {
		// Recorded consistently on the ledger and the row: only the status gives it away.
		name: "capture on an attempt that has not succeeded",
		corrupt: func(t *testing.T, f *fixture) {
			f.tick()
			f.money(f.payment(f.openAttemptOf("unknown")), ordercore.MoneyCapture, 250, "")
		},
		want: []string{verify.RuleMoneyConservation},
	}, {
		name: "capture row in another currency",
		corrupt: func(t *testing.T, f *fixture) {
			f.snap.MoneyLedger[f.moneyRow(f.acceptedPayment("card").ID, ordercore.MoneyCapture)].Currency = "EUR"
		},
		want: []string{verify.RuleMoneyConservation},
	}, {
		// A second requested refund that the engine should have refused, recorded
		// consistently everywhere: held on the payment, with its ledger row and a schedule.
		name: "refund beyond the capture",
		corrupt: func(t *testing.T, f *fixture) {
			f.tick()
			f.newRefund(f.acceptedPayment("card-refunded"), ordercore.RefundRequested, 1)
		},
		want: []string{verify.RuleRefundBound},
	}, {
		name: "negative refunding",
		corrupt: func(t *testing.T, f *fixture) {
			// A release row that the refund never had, so the ledger agrees with the row.
			p := f.acceptedPayment("card-refunding")
			p.Refunding -= 200
			f.mseq++
			f.snap.MoneyLedger = append(f.snap.MoneyLedger, ordercore.MoneyEntry{Seq: f.mseq, PaymentID: p.ID, OrderID: p.OrderID,
				RefundID: f.onlyRefund(p.ID), Movement: ordercore.MoneyRefundRelease, Amount: 200, Currency: "USD", At: f.now})
		},
		// The refund is pending, so a release row is one settlement too many.
		want: []string{verify.RuleRefundBound, verify.RuleRefundOnce},
	}, {
		name:    "succeeded refund without its commit row",
		corrupt: func(t *testing.T, f *fixture) { f.refund(f.lateRefund()).Status = ordercore.RefundSucceeded },
		want:    []string{verify.RuleRefundOnce},
	}, {
		name: "refund amount differs from its hold",
		corrupt: func(t *testing.T, f *fixture) {
			f.refund(f.lateRefund()).Amount.Amount--
		},
		want: []string{verify.RuleRefundOnce},
	}, {
		name:    "refund names another order",
		corrupt: func(t *testing.T, f *fixture) { f.refund(f.lateRefund()).OrderID = f.order("card").ID },
		want:    []string{verify.RuleRefundOnce},
	}, {
		name: "requested refund on a duplicate payment",
		corrupt: func(t *testing.T, f *fixture) {
			f.refund(f.onlyRefund(f.duplicateOf("dup"))).Kind = ordercore.RefundRequested
		},
		want: []string{verify.RuleRefundOnce},
	}, {
		name: "money ledger row for an unknown refund",
		corrupt: func(t *testing.T, f *fixture) {
			i := f.moneyRow(f.payment(f.duplicateOf("dup")).ID, ordercore.MoneyRefundCommit)
			e := f.snap.MoneyLedger[i]
			e.Seq, e.RefundID = f.mseq+1, "ghost"
			f.snap.MoneyLedger = append(f.snap.MoneyLedger, e)
			p := f.payment(e.PaymentID)
			p.Refunded += e.Amount // the balance follows the ledger; the refund does not exist
			p.Refunding -= e.Amount
		},
		// refunded now exceeds the capture, and refunding is negative.
		want: []string{verify.RuleRefundBound, verify.RuleRefundOnce},
	}, {
		name:    "accepted payment of a pending order",
		corrupt: func(t *testing.T, f *fixture) { f.payment(f.eurPayment()).Accepted = true },
		want:    []string{verify.RulePaymentOrder},
	}, {
		name:    "payment for another amount than its order",
		corrupt: func(t *testing.T, f *fixture) { f.payment(f.openAttemptOf("unknown")).Amount.Amount++ },
		want:    []string{verify.RulePaymentOrder},
	}, {
		// Its money, no longer accepted, is then kept without a refund as well.
		name:    "order paid through a channel without an accepted payment",
		corrupt: func(t *testing.T, f *fixture) { f.acceptedPayment("card").Accepted = false },
		want:    []string{verify.RulePaymentOrder, verify.RuleUnrefundedMoney},
	}, {
		// The duplicate's refund is then on the order's accepted payment as well.
		name:    "two accepted payments",
		corrupt: func(t *testing.T, f *fixture) { f.payment(f.duplicateOf("dup")).Accepted = true },
		want:    []string{verify.RulePaymentOrder, verify.RuleRefundOnce},
	}, {
		name: "order paid manually with an accepted payment",
		corrupt: func(t *testing.T, f *fixture) {
			editEvent(t, f.orderEvent("card", ordercore.OrderEventType(ordercore.OrderPaid)), func(d *ordercore.OrderTransitioned) {
				d.Payment.Channel = verify.ManualChannel
			})
		},
		want: []string{verify.RulePaymentOrder},
	}, {
		name: "payment of an order that does not exist",
		corrupt: func(t *testing.T, f *fixture) {
			p := *f.payment(f.openAttemptOf("unknown"))
			p.ID, p.OrderID, p.Status, p.NextSyncAt = ordercore.NewID(f.now), "ghost", ordercore.PaymentFailed, time.Time{}
			f.snap.Payments = append(f.snap.Payments, p)
		},
		want: []string{verify.RulePaymentOrder},
	}, {
		// The refund row and its hold vanish together, and the balance with them: a late
		// payment kept.
		name: "late payment never refunded",
		corrupt: func(t *testing.T, f *fixture) {
			id := f.lateRefund()
			r := f.refund(id)
			f.payment(r.PaymentID).Refunding -= r.Amount.Amount
			f.snap.Refunds = slices.DeleteFunc(f.snap.Refunds, func(x ordercore.Refund) bool { return x.ID == id })
			f.snap.MoneyLedger = slices.DeleteFunc(f.snap.MoneyLedger, func(e ordercore.MoneyEntry) bool { return e.RefundID == id })
		},
		want: []string{verify.RuleUnrefundedMoney},
	}, {
		name: "money in another currency with no review item",
		corrupt: func(t *testing.T, f *fixture) {
			id := f.eurPayment()
			f.snap.Reviews = slices.DeleteFunc(f.snap.Reviews, func(it ordercore.ReviewItem) bool { return it.PaymentID == id })
		},
		want: []string{verify.RuleUnrefundedMoney},
	}, {
		name: "failed refund of a duplicate, review dismissed",
		corrupt: func(t *testing.T, f *fixture) {
			// The duplicate's refund failed instead, and an operator dismissed the item.
			dup := f.duplicateOf("dup")
			rid := f.onlyRefund(dup)
			r, p := f.refund(rid), f.payment(dup)
			r.Status = ordercore.RefundFailed
			f.snap.MoneyLedger[f.moneyRow(dup, ordercore.MoneyRefundCommit)].Movement = ordercore.MoneyRefundRelease
			p.Refunded -= r.Amount.Amount
			f.snap.Reviews = append(f.snap.Reviews, ordercore.ReviewItem{ID: ordercore.NewID(f.now), Kind: ordercore.ReviewRefundFailed,
				OrderID: r.OrderID, PaymentID: dup, RefundID: rid, Evidence: json.RawMessage(`{}`), Status: ordercore.ReviewResolved,
				Resolution: "dismiss", Note: "n", ResolvedBy: "op", ResolvedAt: f.now, Version: 2, CreatedAt: f.now})
		},
		want: []string{verify.RuleUnrefundedMoney},
	}, {
		name: "unknown attempt whose review was resolved",
		corrupt: func(t *testing.T, f *fixture) {
			id := f.openAttemptOf("unknown")
			for i, it := range f.snap.Reviews {
				if it.PaymentID == id {
					f.snap.Reviews[i].Status = ordercore.ReviewResolved
				}
			}
		},
		want: []string{verify.RuleStuckPayment},
	}, {
		name: "open attempt without a next sync",
		corrupt: func(t *testing.T, f *fixture) {
			f.place("paying", "u12", lineReq{"pear", 1})
			id := f.startPayment("paying", "sim")
			f.payment(id).NextSyncAt = time.Time{}
		},
		want: []string{verify.RuleStuckPayment},
	}, {
		name:    "pending refund without a next sync",
		corrupt: func(t *testing.T, f *fixture) { f.refund(f.lateRefund()).NextSyncAt = time.Time{} },
		want:    []string{verify.RuleStuckPayment},
	}, {
		// Its refund failed and the operator dismissed the item without the order
		// settling: nothing will ever move it out of refunding.
		name: "refunding order with nothing pending",
		corrupt: func(t *testing.T, f *fixture) {
			f.place("given-up", "u13", lineReq{"pear", 1})
			f.payByChannel("given-up")
			id := f.requestRefund("given-up", 50)
			f.refundResult(id, ordercore.RefundFailed)
			for i, it := range f.snap.Reviews {
				if it.RefundID == id {
					f.snap.Reviews[i].Status, f.snap.Reviews[i].ResolvedAt = ordercore.ReviewResolved, f.now
				}
			}
		},
		want: []string{verify.RuleStuckPayment},
	}, {
		name:    "payment at version zero",
		corrupt: func(t *testing.T, f *fixture) { f.acceptedPayment("card").Version = 0 },
		want:    []string{verify.RuleVersion},
	}, {
		name:    "refund at version zero",
		corrupt: func(t *testing.T, f *fixture) { f.refund(f.lateRefund()).Version = 0 },
		want:    []string{verify.RuleVersion},
	}})
}

// TestStuckOrderWaitsForOpenAttempt: an unpaid order past its deadline is overdue, unless
// an attempt of it is still open at its channel: the expiry waits for the attempt to be
// closed there, and stuck_payment judges the attempt.
func TestStuckOrderWaitsForOpenAttempt(t *testing.T) {
	t.Parallel()
	f := consistent(t)
	now := f.order("unknown").ExpiresAt.Add(verify.ExpiryGrace + time.Second)
	var got []string
	for _, v := range verify.Check(&f.snap, now) {
		if v.Rule != verify.RuleStuckOrder {
			t.Errorf("unexpected violation %s", v)
			continue
		}
		got = append(got, v.Subject)
	}
	var want []string
	for _, name := range []string{"pending", "eur", "short"} {
		want = append(want, "order "+f.order(name).ID)
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stuck_order subjects (-want +got):\n%s", diff)
	}
}

// openAttemptOf returns the id of the named order's one open attempt.
func (f *fixture) openAttemptOf(name string) string {
	id := f.order(name).ID
	for _, p := range f.snap.Payments {
		if p.OrderID == id && p.Status.Open() {
			return p.ID
		}
	}
	f.t.Fatalf("order %s has no open attempt", name)
	return ""
}

// duplicateOf returns the id of the named order's succeeded payment that is not accepted.
func (f *fixture) duplicateOf(name string) string {
	id := f.order(name).ID
	for _, p := range f.snap.Payments {
		if p.OrderID == id && p.Status == ordercore.PaymentSucceeded && !p.Accepted {
			return p.ID
		}
	}
	f.t.Fatalf("order %s has no unaccepted succeeded payment", name)
	return ""
}

func (f *fixture) lateRefund() string { return f.onlyRefund(f.duplicateOf("late")) }
func (f *fixture) eurPayment() string { return f.duplicateOf("eur") }

// moneyRow returns the index of the payment's money ledger row of movement m.
func (f *fixture) moneyRow(paymentID string, m ordercore.MoneyMovement) int {
	for i, e := range f.snap.MoneyLedger {
		if e.PaymentID == paymentID && e.Movement == m {
			return i
		}
	}
	f.t.Fatalf("payment %s has no %s row", paymentID, m)
	return -1
}
