package verify

import (
	"encoding/json"
	"fmt"
	"slices"

	"ordercore"
)

// The money rules judge the payments, refunds, money ledger and review queue of a snapshot
// (P2, P3 and DESIGN "Late or duplicate money"). Like the stock rules they restate what the
// engine must have done rather than reuse its code: a checker that called the code it
// checks would pass whatever that code got wrong.

// ManualChannel is the channel an operator's ApplyPayment records on order.paid: money
// received outside ordercore's payment channels, so the order has no payment row.
const ManualChannel = "manual"

// moneyIndex is the payment side of the snapshot, indexed once for every money rule.
type moneyIndex struct {
	payments       map[string]*ordercore.Payment
	refunds        map[string]*ordercore.Refund
	paymentsOf     map[string][]*ordercore.Payment // order id -> its payments, in snapshot order
	refundsOf      map[string][]*ordercore.Refund  // payment id -> its refunds, in snapshot order
	openReviewPay  map[string]bool                 // payment ids named by an open review item
	openReviewRef  map[string]bool                 // refund ids named by an open review item
	anyReviewPay   map[string]bool                 // payment ids named by any review item
	paidEvents     map[string]paidEvent            // order id -> its order.paid event
	refundsOfOrder map[string][]*ordercore.Refund  // order id -> its refunds, in snapshot order
	dupPayments    []string                        // ids of repeated payment rows, reported by moneyConservation
	dupRefunds     []string                        // ids of repeated refund rows, reported by refundOnce
}

// paidEvent is what an order.paid event says about the money that paid the order.
type paidEvent struct {
	seq     int64
	payment *ordercore.PaymentApplied
}

// indexMoney fills c.money. Payment and refund ids are primary keys: only the first row of
// a repeated id is used, and the repeat is reported (money_conservation, refund_once).
func (c *checker) indexMoney() {
	m := moneyIndex{payments: map[string]*ordercore.Payment{}, refunds: map[string]*ordercore.Refund{},
		paymentsOf: map[string][]*ordercore.Payment{}, refundsOf: map[string][]*ordercore.Refund{},
		openReviewPay: map[string]bool{}, openReviewRef: map[string]bool{}, anyReviewPay: map[string]bool{},
		paidEvents: map[string]paidEvent{}, refundsOfOrder: map[string][]*ordercore.Refund{}}
	for i := range c.snap.Payments {
		p := &c.snap.Payments[i]
		if _, dup := m.payments[p.ID]; dup {
			m.dupPayments = append(m.dupPayments, p.ID)
			continue
		}
		m.payments[p.ID] = p
		m.paymentsOf[p.OrderID] = append(m.paymentsOf[p.OrderID], p)
	}
	for i := range c.snap.Refunds {
		r := &c.snap.Refunds[i]
		if _, dup := m.refunds[r.ID]; dup {
			m.dupRefunds = append(m.dupRefunds, r.ID)
			continue
		}
		m.refunds[r.ID] = r
		m.refundsOf[r.PaymentID] = append(m.refundsOf[r.PaymentID], r)
		m.refundsOfOrder[r.OrderID] = append(m.refundsOfOrder[r.OrderID], r)
	}
	for _, it := range c.snap.Reviews {
		if it.PaymentID != "" {
			m.anyReviewPay[it.PaymentID] = true
		}
		if it.Status != ordercore.ReviewOpen {
			continue
		}
		if it.PaymentID != "" {
			m.openReviewPay[it.PaymentID] = true
		}
		if it.RefundID != "" {
			m.openReviewRef[it.RefundID] = true
		}
	}
	paidType := ordercore.OrderEventType(ordercore.OrderPaid)
	for _, e := range c.snap.Events {
		if e.AggregateType != ordercore.AggregateOrder || e.Type != paidType {
			continue
		}
		var d ordercore.OrderTransitioned
		if err := json.Unmarshal(e.Data, &d); err != nil {
			continue // event_replay and event_sequence report it
		}
		m.paidEvents[e.AggregateID] = paidEvent{seq: e.Seq, payment: d.Payment}
	}
	c.money = m
}

// movement sums of one payment's ledger rows.
type moneySums struct {
	capture, hold, commit, release int64
	captures                       int
}

// moneyConservation: for every payment, Captured, Refunding and Refunded equal the sums of
// its money ledger rows (DESIGN "Ledgers, not counters"): capture adds to captured;
// refund_hold adds to refunding; refund_commit moves from refunding to refunded;
// refund_release takes from refunding. Each row is > 0, in its payment's currency, for its
// payment's order; a capture names no refund and a refund movement names one; a payment
// is captured at most once, and only a succeeded payment holds captured money. Rows of an
// unknown movement, and rows naming a payment that is not in the payments table, are
// violations too: money nobody can account for.
func (c *checker) moneyConservation() {
	for _, id := range c.money.dupPayments {
		c.add(RuleMoneyConservation, paymentSubject(id), "appears twice in the payments table")
	}
	sums := map[string]*moneySums{}
	unknown := map[string]int{}
	for _, e := range c.snap.MoneyLedger {
		subj := moneyLedgerSubject(e.Seq)
		switch e.Movement {
		case ordercore.MoneyCapture:
			if e.RefundID != "" {
				c.add(RuleMoneyConservation, subj, "capture of payment %s names refund %s; a capture belongs to no refund", e.PaymentID, e.RefundID)
			}
		case ordercore.MoneyRefundHold, ordercore.MoneyRefundCommit, ordercore.MoneyRefundRelease:
			// refundOnce checks the refund they name.
		default:
			c.add(RuleMoneyConservation, subj, "unknown movement %q on payment %s", e.Movement, e.PaymentID)
			continue
		}
		if e.Amount <= 0 {
			c.add(RuleMoneyConservation, subj, "%s of payment %s moves %d, want > 0", e.Movement, e.PaymentID, e.Amount)
		}
		p, ok := c.money.payments[e.PaymentID]
		if !ok {
			unknown[e.PaymentID]++
			continue
		}
		if e.Currency != p.Amount.Currency {
			c.add(RuleMoneyConservation, subj, "%s of payment %s is in %s, the payment is in %s", e.Movement, p.ID, e.Currency, p.Amount.Currency)
		}
		if e.OrderID != p.OrderID {
			c.add(RuleMoneyConservation, subj, "%s of payment %s names order %s, the payment is for order %s", e.Movement, p.ID, e.OrderID, p.OrderID)
		}
		s := sums[p.ID]
		if s == nil {
			s = &moneySums{}
			sums[p.ID] = s
		}
		switch e.Movement {
		case ordercore.MoneyCapture:
			s.capture += e.Amount
			s.captures++
		case ordercore.MoneyRefundHold:
			s.hold += e.Amount
		case ordercore.MoneyRefundCommit:
			s.commit += e.Amount
		case ordercore.MoneyRefundRelease:
			s.release += e.Amount
		}
	}
	for i := range c.snap.Payments {
		p := &c.snap.Payments[i]
		if c.money.payments[p.ID] != p {
			continue // a duplicate row, already reported
		}
		s := sums[p.ID]
		if s == nil {
			s = &moneySums{}
		}
		subj := paymentSubject(p.ID)
		if s.captures > 1 {
			c.add(RuleMoneyConservation, subj, "is captured by %d ledger rows, want at most 1", s.captures)
		}
		for _, f := range []struct {
			name      string
			got, want int64
		}{
			{"captured", p.Captured, s.capture},
			{"refunding", p.Refunding, s.hold - s.commit - s.release},
			{"refunded", p.Refunded, s.commit},
		} {
			if f.got != f.want {
				c.add(RuleMoneyConservation, subj, "%s is %d, its money ledger rows sum to %d", f.name, f.got, f.want)
			}
		}
		if p.Status != ordercore.PaymentSucceeded && (p.Captured != 0 || s.capture != 0) {
			c.add(RuleMoneyConservation, subj, "is %s but holds captured money (captured %d, ledger captures %d): only a succeeded payment took money", p.Status, p.Captured, s.capture)
		}
	}
	for _, id := range sortedKeys(unknown) {
		c.add(RuleMoneyConservation, paymentSubject(id), "%d money ledger rows move this payment, which is not in the payments table", unknown[id])
	}
}

// refundBound: no refund pays back more than was taken (P2's money half, DESIGN "Sum of
// refunds <= captured"). Per payment, captured, refunding and refunded are >= 0 and
// refunding + refunded <= captured; the refunds recorded against the payment that hold or
// returned money (pending, succeeded, abnormal; a failed one released its hold) sum to at
// most its capture as well. Per order, paid >= refunded: the refunds the merchant requested
// on the order (which return the order's own money) sum to at most what its accepted
// payment captured.
func (c *checker) refundBound() {
	for i := range c.snap.Payments {
		p := &c.snap.Payments[i]
		if c.money.payments[p.ID] != p {
			continue
		}
		subj := paymentSubject(p.ID)
		if p.Captured < 0 || p.Refunding < 0 || p.Refunded < 0 {
			c.add(RuleRefundBound, subj, "negative balance: captured %d, refunding %d, refunded %d", p.Captured, p.Refunding, p.Refunded)
		}
		if p.Refunding+p.Refunded > p.Captured {
			c.add(RuleRefundBound, subj, "refunding %d + refunded %d = %d exceeds captured %d", p.Refunding, p.Refunded, p.Refunding+p.Refunded, p.Captured)
		}
		cur := p.Amount.Currency
		if held := heldBy(c.money.refundsOf[p.ID], cur, func(*ordercore.Refund) bool { return true }); held > p.Captured {
			c.add(RuleRefundBound, subj, "its refunds hold or returned %s, more than its capture of %s", money(held, cur), money(p.Captured, cur))
		}
	}
	for i := range c.snap.Orders {
		o := &c.snap.Orders[i]
		if c.orders[o.ID] != o {
			continue // a duplicate row, already reported
		}
		refunds := c.money.refundsOfOrder[o.ID]
		if len(refunds) == 0 {
			continue
		}
		var paid int64
		cur := o.Amount.Currency
		for _, p := range c.money.paymentsOf[o.ID] {
			if p.Accepted {
				paid += p.Captured
				cur = p.Amount.Currency
			}
		}
		requested := heldBy(refunds, cur, func(r *ordercore.Refund) bool { return r.Kind == ordercore.RefundRequested })
		if requested > paid {
			c.add(RuleRefundBound, orderSubject(o.ID), "requested refunds hold or returned %s, more than the %s its accepted payment captured",
				money(requested, cur), money(paid, cur))
		}
	}
}

// heldBy sums the amounts of the refunds in currency cur that keep their money out of the
// payment (every status but failed) and that pass keep.
func heldBy(refunds []*ordercore.Refund, cur ordercore.Currency, keep func(*ordercore.Refund) bool) int64 {
	var n int64
	for _, r := range refunds {
		if r.Status != ordercore.RefundFailed && r.Amount.Currency == cur && keep(r) {
			n += r.Amount.Amount
		}
	}
	return n
}

// refundRows are the money ledger rows (by Seq) of one refund.
type refundRows struct{ hold, commit, release []ordercore.MoneyEntry }

// refundOnce: every refund moves its money exactly once (DESIGN "Idempotent at every
// boundary"; a refund settled twice pays the shopper twice). It has exactly one
// refund_hold row and at most one settling row (refund_commit or refund_release), each of
// its amount, on its own payment; its status says which: succeeded has a commit, failed a
// release, pending and abnormal (the money is still held) neither. The refund is > 0 and
// points at an existing payment of the same order and currency; a requested refund is on
// the order's accepted payment and an automatic one (duplicate, late, mismatch) on a
// payment that was not accepted. Ledger rows naming a refund that does not exist are
// violations too.
func (c *checker) refundOnce() {
	for _, id := range c.money.dupRefunds {
		c.add(RuleRefundOnce, refundSubject(id), "appears twice in the refunds table")
	}
	rows := map[string]*refundRows{}
	for _, e := range c.snap.MoneyLedger {
		if e.Movement != ordercore.MoneyRefundHold && e.Movement != ordercore.MoneyRefundCommit && e.Movement != ordercore.MoneyRefundRelease {
			continue
		}
		if e.RefundID == "" {
			c.add(RuleRefundOnce, moneyLedgerSubject(e.Seq), "%s of payment %s names no refund", e.Movement, e.PaymentID)
			continue
		}
		r := rows[e.RefundID]
		if r == nil {
			r = &refundRows{}
			rows[e.RefundID] = r
		}
		switch e.Movement {
		case ordercore.MoneyRefundHold:
			r.hold = append(r.hold, e)
		case ordercore.MoneyRefundCommit:
			r.commit = append(r.commit, e)
		default:
			r.release = append(r.release, e)
		}
	}
	for i := range c.snap.Refunds {
		r := &c.snap.Refunds[i]
		if c.money.refunds[r.ID] != r {
			continue
		}
		rr := rows[r.ID]
		if rr == nil {
			rr = &refundRows{}
		}
		delete(rows, r.ID)
		c.checkRefund(r, rr)
	}
	for _, id := range sortedKeys(rows) {
		r := rows[id]
		c.add(RuleRefundOnce, refundSubject(id), "%d money ledger rows move a refund that is not in the refunds table", len(r.hold)+len(r.commit)+len(r.release))
	}
}

func (c *checker) checkRefund(r *ordercore.Refund, rows *refundRows) {
	subj := refundSubject(r.ID)
	if r.Amount.Amount <= 0 {
		c.add(RuleRefundOnce, subj, "amount %s, want > 0", r.Amount)
	}
	p, ok := c.money.payments[r.PaymentID]
	switch {
	case !ok:
		c.add(RuleRefundOnce, subj, "refunds payment %s, which is not in the payments table", r.PaymentID)
	case p.OrderID != r.OrderID:
		c.add(RuleRefundOnce, subj, "is for order %s, its payment %s is for order %s", r.OrderID, p.ID, p.OrderID)
	}
	if ok && r.Amount.Currency != p.Amount.Currency {
		c.add(RuleRefundOnce, subj, "is in %s, its payment %s is in %s", r.Amount.Currency, p.ID, p.Amount.Currency)
	}
	if ok {
		switch r.Kind {
		case ordercore.RefundRequested:
			if !p.Accepted {
				c.add(RuleRefundOnce, subj, "a requested refund on payment %s, which did not pay the order (not accepted)", p.ID)
			}
		case ordercore.RefundDuplicate, ordercore.RefundLate, ordercore.RefundMismatch:
			if p.Accepted {
				c.add(RuleRefundOnce, subj, "a %s refund on payment %s, which is the order's accepted payment", r.Kind, p.ID)
			}
		default:
			c.add(RuleRefundOnce, subj, "unknown kind %q", r.Kind)
		}
	}
	if len(rows.hold) != 1 {
		c.add(RuleRefundOnce, subj, "has %d refund_hold rows in the money ledger, want exactly 1", len(rows.hold))
	}
	var want [2]int // commit, release rows the status implies
	switch r.Status {
	case ordercore.RefundPending, ordercore.RefundAbnormal:
	case ordercore.RefundSucceeded:
		want = [2]int{1, 0}
	case ordercore.RefundFailed:
		want = [2]int{0, 1}
	default:
		c.add(RuleRefundOnce, subj, "has unknown status %q", r.Status)
		want = [2]int{len(rows.commit), len(rows.release)}
	}
	if got := [2]int{len(rows.commit), len(rows.release)}; got != want {
		if got[0]+got[1] > 1 {
			c.add(RuleRefundOnce, subj, "is settled %d times (%d refund_commit, %d refund_release rows), want at most once", got[0]+got[1], got[0], got[1])
		} else {
			c.add(RuleRefundOnce, subj, "is %s but the money ledger has %d refund_commit and %d refund_release rows for it", r.Status, got[0], got[1])
		}
	}
	for _, e := range slices.Concat(rows.hold, rows.commit, rows.release) {
		if e.Amount != r.Amount.Amount {
			c.add(RuleRefundOnce, subj, "%s row (money ledger seq %d) moves %s, the refund is of %s", e.Movement, e.Seq, money(e.Amount, e.Currency), r.Amount)
		}
		if e.PaymentID != r.PaymentID {
			c.add(RuleRefundOnce, subj, "%s row (money ledger seq %d) moves payment %s, the refund is on payment %s", e.Movement, e.Seq, e.PaymentID, r.PaymentID)
		}
	}
}

// paymentOrder: one successful payment pays an order, and it pays exactly that order
// (DESIGN "Late or duplicate money", P2's "never applied twice"). Every payment is for an
// order in the orders table, for the order's amount, in a known status. An order has at
// most one accepted payment; an accepted payment has succeeded and captured exactly its
// amount, and its order is not pending_payment or cancelled. An order in a status reached
// by payment (paid, fulfilling, shipped, completed, refunding, refunded,
// partially_refunded) is judged by its order.paid event: paid through a channel, it has
// exactly one accepted payment, the one the event names; paid by an operator (channel
// "manual", engine.ApplyPayment) it has no payment row that claims it, so none is
// accepted. An order without an order.paid event is left to event_replay.
func (c *checker) paymentOrder() {
	for i := range c.snap.Payments {
		p := &c.snap.Payments[i]
		if c.money.payments[p.ID] != p {
			continue
		}
		subj := paymentSubject(p.ID)
		switch p.Status {
		case ordercore.PaymentCreated, ordercore.PaymentPending, ordercore.PaymentSucceeded, ordercore.PaymentFailed,
			ordercore.PaymentClosed, ordercore.PaymentUnknown:
		default:
			c.add(RulePaymentOrder, subj, "has unknown status %q", p.Status)
		}
		o, ok := c.orders[p.OrderID]
		if !ok {
			c.add(RulePaymentOrder, subj, "pays order %s, which is not in the orders table", p.OrderID)
			continue
		}
		if p.Amount != o.Amount {
			c.add(RulePaymentOrder, subj, "is for %s, its order %s is for %s", p.Amount, o.ID, o.Amount)
		}
		if !p.Accepted {
			continue
		}
		if p.Status != ordercore.PaymentSucceeded {
			c.add(RulePaymentOrder, subj, "is accepted but %s: only a succeeded payment pays its order", p.Status)
		}
		if p.Captured != p.Amount.Amount {
			c.add(RulePaymentOrder, subj, "is accepted but captured %s of its %s", money(p.Captured, p.Amount.Currency), p.Amount)
		}
		if o.Status == ordercore.OrderPendingPayment || o.Status == ordercore.OrderCancelled {
			c.add(RulePaymentOrder, subj, "is accepted but its order %s is %s", o.ID, o.Status)
		}
	}
	for i := range c.snap.Orders {
		o := &c.snap.Orders[i]
		if c.orders[o.ID] != o {
			continue
		}
		var accepted []*ordercore.Payment
		for _, p := range c.money.paymentsOf[o.ID] {
			if p.Accepted {
				accepted = append(accepted, p)
			}
		}
		subj := orderSubject(o.ID)
		if len(accepted) > 1 {
			c.add(RulePaymentOrder, subj, "has %d accepted payments (%s), want at most 1", len(accepted), paymentIDs(accepted))
		}
		if !paidStatus(o.Status) {
			continue
		}
		ev, ok := c.money.paidEvents[o.ID]
		switch {
		case !ok:
			continue
		case ev.payment == nil:
			c.add(RulePaymentOrder, subj, "is %s but its order.paid event (seq %d) records no payment", o.Status, ev.seq)
		case ev.payment.Channel == ManualChannel:
			if len(accepted) > 0 {
				c.add(RulePaymentOrder, subj, "was paid manually (order.paid seq %d) but payment %s is accepted as well", ev.seq, paymentIDs(accepted))
			}
		case len(accepted) != 1:
			c.add(RulePaymentOrder, subj, "is %s, paid through channel %s (order.paid seq %d), but has %d accepted payments, want exactly 1",
				o.Status, ev.payment.Channel, ev.seq, len(accepted))
		default:
			p := accepted[0]
			if ev.payment.Reference != p.ID || ev.payment.Channel != p.Channel {
				c.add(RulePaymentOrder, subj, "order.paid (seq %d) names payment %s at %s, the accepted payment is %s at %s",
					ev.seq, ev.payment.Reference, ev.payment.Channel, p.ID, p.Channel)
			}
		}
	}
}

// paidStatus reports whether an order in status s has been paid.
func paidStatus(s ordercore.OrderStatus) bool {
	switch s {
	case ordercore.OrderPaid, ordercore.OrderFulfilling, ordercore.OrderShipped, ordercore.OrderCompleted,
		ordercore.OrderRefunding, ordercore.OrderRefunded, ordercore.OrderPartiallyRefunded:
		return true
	}
	return false
}

// unrefundedMoney: every duplicate or late payment is refunded (DESIGN "Late or duplicate
// money": money that paid nothing is never kept). A succeeded payment that is not accepted
// has its whole capture refunded or being refunded (refunding + refunded = captured), or an
// open review item naming it (an operator must act: its refund failed). Money the ledger
// cannot hold (paid in another currency, so nothing was captured) must have a review item
// naming the payment, open or resolved: the operator who settles it is the only record.
func (c *checker) unrefundedMoney() {
	for i := range c.snap.Payments {
		p := &c.snap.Payments[i]
		if c.money.payments[p.ID] != p || p.Status != ordercore.PaymentSucceeded || p.Accepted {
			continue
		}
		subj := paymentSubject(p.ID)
		if p.Captured == 0 {
			if p.Amount.Amount > 0 && !c.money.anyReviewPay[p.ID] {
				c.add(RuleUnrefundedMoney, subj, "succeeded without capturing anything and paid no order, but no review item names it: the money the channel took is unaccounted for")
			}
			continue
		}
		if back := p.Refunding + p.Refunded; back != p.Captured && !c.money.openReviewPay[p.ID] {
			cur := p.Amount.Currency
			c.add(RuleUnrefundedMoney, subj, "succeeded but paid no order, and only %s of its capture of %s is refunded or refunding (refunding %s, refunded %s), with no open review item naming it",
				money(back, cur), money(p.Captured, cur), money(p.Refunding, cur), money(p.Refunded, cur))
		}
	}
}

// stuckPayment: no payment or refund waits without a scheduled next action (P3). An open
// payment attempt (created, pending, unknown) has a next sync time (the payment sync will
// query it) or an open review item naming it (an operator will); so does a pending refund.
// Without either, nothing will ever find out what the channel did with the money.
func (c *checker) stuckPayment() {
	for i := range c.snap.Payments {
		p := &c.snap.Payments[i]
		if c.money.payments[p.ID] != p || !p.Status.Open() {
			continue
		}
		if p.NextSyncAt.IsZero() && !c.money.openReviewPay[p.ID] {
			c.add(RuleStuckPayment, paymentSubject(p.ID), "is %s with no next sync time and no open review item: nothing will ever ask %s what became of it", p.Status, p.Channel)
		}
	}
	for i := range c.snap.Refunds {
		r := &c.snap.Refunds[i]
		if c.money.refunds[r.ID] != r || r.Status != ordercore.RefundPending {
			continue
		}
		if r.NextSyncAt.IsZero() && !c.money.openReviewRef[r.ID] {
			c.add(RuleStuckPayment, refundSubject(r.ID), "is pending with no next sync time and no open review item: nothing will ever send or query it")
		}
	}
	// A refunding order waits for a refund of its own still at the channel, or for an
	// operator; with neither, nothing will ever settle it.
	for i := range c.snap.Orders {
		o := &c.snap.Orders[i]
		if o.Status != ordercore.OrderRefunding {
			continue
		}
		waits := slices.ContainsFunc(c.money.refundsOfOrder[o.ID], func(r *ordercore.Refund) bool {
			return !r.Status.Terminal() || c.money.openReviewRef[r.ID]
		}) || slices.ContainsFunc(c.money.paymentsOf[o.ID], func(p *ordercore.Payment) bool { return c.money.openReviewPay[p.ID] })
		if !waits {
			c.add(RuleStuckPayment, orderSubject(o.ID), "is refunding with no refund pending at the channel and no open review item: nothing will ever settle it")
		}
	}
}

// openAttempt reports whether an order has a payment attempt still open at its channel.
func (c *checker) openAttempt(orderID string) bool {
	return slices.ContainsFunc(c.money.paymentsOf[orderID], func(p *ordercore.Payment) bool { return p.Status.Open() })
}

func paymentIDs(ps []*ordercore.Payment) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.ID
	}
	return s
}

func money(n int64, cur ordercore.Currency) ordercore.Money {
	return ordercore.Money{Amount: n, Currency: cur}
}

func paymentSubject(id string) string     { return "payment " + id }
func refundSubject(id string) string      { return "refund " + id }
func moneyLedgerSubject(seq int64) string { return fmt.Sprintf("money ledger seq %d", seq) }
