package engine

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"ordercore"
	"ordercore/internal/limit"
	"ordercore/internal/order"
	"ordercore/internal/payment"
)

// The payment side of the committer: payment attempts, the money they take and give back,
// the inbox of channel notifications and the operators' review queue. Every command here
// runs in a batch like an order command, so a notification, the order it pays, the stock
// it commits, the refund it schedules and their events are one transaction (P2).

type paymentState struct {
	origVersion int64
	cur         ordercore.Payment
	isNew       bool
}

type refundState struct {
	origVersion int64
	cur         ordercore.Refund
	isNew       bool
}

type reviewState struct {
	origVersion int64
	cur         ordercore.ReviewItem
	isNew       bool
}

// schedule returns the delay before sync step n (0-based) of s, or false past its end.
func schedule(s []time.Duration, n int) (time.Duration, bool) {
	if n < 0 || n >= len(s) {
		return 0, false
	}
	return s[n], true
}

// paymentsOf returns the loaded attempts of an order, oldest first.
func (b *batch) paymentsOf(orderID string) []*paymentState { return b.orderPays[orderID] }

// refundsOf returns the loaded refunds of a payment, oldest first.
func (b *batch) refundsOf(paymentID string) []*refundState { return b.payRefunds[paymentID] }

// addPayment and addRefund put a row in the working state and its per-order or
// per-payment index (kept in id order, so oldest first).
func (b *batch) addPayment(p *paymentState) {
	b.payments[p.cur.ID] = p
	list := append(b.orderPays[p.cur.OrderID], p)
	slices.SortFunc(list, func(x, y *paymentState) int { return strings.Compare(x.cur.ID, y.cur.ID) })
	b.orderPays[p.cur.OrderID] = list
}

func (b *batch) addRefund(r *refundState) {
	b.refunds[r.cur.ID] = r
	list := append(b.payRefunds[r.cur.PaymentID], r)
	slices.SortFunc(list, func(x, y *refundState) int { return strings.Compare(x.cur.ID, y.cur.ID) })
	b.payRefunds[r.cur.PaymentID] = list
}

// touch marks a payment changed in this batch: its version rises once per batch.
func (b *batch) touchPayment(p *paymentState) {
	if !p.isNew && p.cur.Version == p.origVersion {
		p.cur.Version++
	}
	p.cur.UpdatedAt = b.now
}

func (b *batch) touchRefund(r *refundState) {
	if !r.isNew && r.cur.Version == r.origVersion {
		r.cur.Version++
	}
	r.cur.UpdatedAt = b.now
}

func (b *batch) paymentEvent(p *paymentState, typ, source, note string, paid *ordercore.Money) {
	b.event(ordercore.AggregateOrder, p.cur.OrderID, typ, ordercore.PaymentEvent{PaymentID: p.cur.ID, Channel: p.cur.Channel,
		Status: p.cur.Status, Amount: p.cur.Amount, Paid: paid, TxnID: p.cur.TxnID, Source: source, Note: note})
}

func (b *batch) refundEvent(r *refundState, typ string) {
	ev := ordercore.RefundEvent{RefundID: r.cur.ID, PaymentID: r.cur.PaymentID,
		Kind: r.cur.Kind, Amount: r.cur.Amount, Status: r.cur.Status, Reason: r.cur.Reason}
	if typ == ordercore.EventRefundSucceeded || typ == ordercore.EventRefundRequested {
		ev.RestockLines = r.cur.RestockLines
	}
	b.event(ordercore.AggregateOrder, r.cur.OrderID, typ, ev)
}

// restock puts a succeeded refund's returned lines back on the shelf.
func (b *batch) restock(r *refundState) {
	if len(r.cur.RestockLines) == 0 {
		return
	}
	o, ok := b.orders[r.cur.OrderID]
	limit.Assert(ok, "order %s of refund %s not loaded", r.cur.OrderID, r.cur.ID)
	for _, n := range r.cur.RestockLines {
		l := o.cur.Lines[n-1]
		s, ok := b.skus[l.SKU]
		limit.Assert(ok, "sku %s of order %s not loaded", l.SKU, o.cur.ID)
		b.move(s, ordercore.MoveReturn, l.Quantity, o.cur.ID, n)
	}
}

// money appends a money ledger entry and moves the payment's balances by it, asserting
// the rule the database's CHECK also holds: refunds never exceed the capture.
func (b *batch) money(p *paymentState, m ordercore.MoneyMovement, amount int64, refundID string) {
	limit.Assert(amount > 0, "money movement %s of %d on payment %s", m, amount, p.cur.ID)
	switch m {
	case ordercore.MoneyCapture:
		p.cur.Captured += amount
	case ordercore.MoneyRefundHold:
		p.cur.Refunding += amount
	case ordercore.MoneyRefundCommit:
		p.cur.Refunding -= amount
		p.cur.Refunded += amount
	case ordercore.MoneyRefundRelease:
		p.cur.Refunding -= amount
	}
	limit.Assert(p.cur.Refunding >= 0 && p.cur.Refunding+p.cur.Refunded <= p.cur.Captured,
		"%s of %d breaks payment %s's balance: %+v", m, amount, p.cur.ID, p.cur)
	b.touchPayment(p)
	b.cs.MoneyLedger = append(b.cs.MoneyLedger, ordercore.MoneyEntry{PaymentID: p.cur.ID, OrderID: p.cur.OrderID,
		RefundID: refundID, Movement: m, Amount: amount, Currency: p.cur.Amount.Currency, At: b.now})
}

// review opens an item in the operators' queue.
func (b *batch) review(kind, orderID, paymentID, refundID string, evidence any) *reviewState {
	raw, err := json.Marshal(evidence)
	limit.Assert(err == nil, "marshal review evidence: %v", err)
	r := &reviewState{isNew: true, cur: ordercore.ReviewItem{ID: ordercore.NewID(b.now), Kind: kind, OrderID: orderID,
		PaymentID: paymentID, RefundID: refundID, Evidence: raw, Status: ordercore.ReviewOpen, Version: 1, CreatedAt: b.now}}
	b.reviews[r.cur.ID] = r
	b.event(ordercore.AggregateReview, r.cur.ID, ordercore.EventReviewOpened, ordercore.ReviewEvent{Kind: kind, OrderID: orderID,
		PaymentID: paymentID, RefundID: refundID})
	if orderID != "" {
		b.event(ordercore.AggregateOrder, orderID, ordercore.EventReviewOpened, ordercore.ReviewEvent{Kind: kind, OrderID: orderID,
			PaymentID: paymentID, RefundID: refundID, Note: r.cur.ID})
	}
	return r
}

// refund holds amount of p's capture for a new pending refund, due to be sent at once.
func (b *batch) refund(p *paymentState, kind ordercore.RefundKind, amount int64, reason string) *refundState {
	r := &refundState{isNew: true, cur: ordercore.Refund{ID: ordercore.NewID(b.now), OrderID: p.cur.OrderID, PaymentID: p.cur.ID,
		Kind: kind, Amount: ordercore.Money{Amount: amount, Currency: p.cur.Amount.Currency}, Reason: reason,
		Status: ordercore.RefundPending, NextSyncAt: b.now, Version: 1, CreatedAt: b.now, UpdatedAt: b.now}}
	if d, ok := schedule(b.cfg.RefundSync, 0); ok {
		r.cur.NextSyncAt = b.now.Add(d)
	}
	b.money(p, ordercore.MoneyRefundHold, amount, r.cur.ID)
	b.addRefund(r)
	b.refundEvent(r, ordercore.EventRefundRequested)
	return r
}

// refundRest refunds what remains of p's capture: money ordercore must not keep.
func (b *batch) refundRest(p *paymentState, kind ordercore.RefundKind, reason string) {
	if rest := p.cur.Captured - p.cur.Refunding - p.cur.Refunded; rest > 0 {
		b.refund(p, kind, rest, reason)
	}
}

// StartPayment opens a payment attempt for a pending order, before the channel is asked
// for the trade: the attempt's id is the channel's idempotency key (out_trade_no), so it
// must exist first. An order may have one open attempt; the caller closes the old one at
// the channel before starting another. Result: ordercore.Payment.
type StartPayment struct {
	OrderID string
	Channel string
}

func (c StartPayment) keys(k *keySet) { k.order(c.OrderID); k.payOrder(c.OrderID) }

func (c StartPayment) execute(b *batch) (any, error) {
	o, ok := b.orders[c.OrderID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "order %q not found", c.OrderID)
	}
	if o.cur.Status != ordercore.OrderPendingPayment {
		return nil, ordercore.Errorf(ordercore.EIllegalTransition, "cannot pay an order that is %s", o.cur.Status)
	}
	if !o.cur.ExpiresAt.After(b.now) {
		return nil, ordercore.Errorf(ordercore.EIllegalTransition, "cannot pay an order past its expiry")
	}
	if o.cur.Amount.Amount == 0 {
		// Channels take positive amounts only: they would refuse the trade.
		return nil, ordercore.Errorf(ordercore.ENothingToPay, "order %s costs nothing: there is no money to collect at a channel; record it as paid with a manual payment of 0", c.OrderID)
	}
	for _, p := range b.paymentsOf(c.OrderID) {
		if p.cur.Status.Open() {
			return nil, ordercore.Errorf(ordercore.EPaymentInProgress, "payment %s of order %s is still %s at %s; it must be closed first", p.cur.ID, c.OrderID, p.cur.Status, p.cur.Channel)
		}
	}
	p := &paymentState{isNew: true, cur: ordercore.Payment{ID: ordercore.NewID(b.now), OrderID: c.OrderID, Channel: c.Channel,
		Status: ordercore.PaymentCreated, Amount: o.cur.Amount, Version: 1, CreatedAt: b.now, UpdatedAt: b.now}}
	b.scheduleSync(p)
	b.addPayment(p)
	b.paymentEvent(p, ordercore.EventPaymentStarted, "", "", nil)
	return p.cur, nil
}

// scheduleSync sets when the payment sync next queries p: the schedule's step for its
// attempts so far, or never once p has ended.
func (b *batch) scheduleSync(p *paymentState) {
	p.cur.NextSyncAt = time.Time{}
	if !p.cur.Status.Open() {
		return
	}
	if d, ok := schedule(b.cfg.paymentSync(p.cur.Channel), p.cur.SyncAttempts); ok {
		p.cur.NextSyncAt = b.now.Add(d)
	}
}

// scheduleConfirm schedules the confirming step of an attempt that just ended (closed or
// failed): after the first step of the schedule the trade is closed at the channel (a
// failed trade could still be paid: the shopper retries the card) and queried, and if
// the channel took money for it after all (paid in the same second as the close), that
// money is applied; its notification may never come. The confirming step has the whole
// schedule to get an answer: its query counts from zero, not on from the queries the
// open attempt already made, so a channel that fails one query late in an attempt's life
// does not hand the check to an operator at once.
func (b *batch) scheduleConfirm(p *paymentState) {
	p.cur.SyncAttempts, p.cur.NextSyncAt = 0, time.Time{}
	if d, ok := schedule(b.cfg.paymentSync(p.cur.Channel), 0); ok {
		p.cur.NextSyncAt = b.now.Add(d)
	}
}

// OpenedPayment records the channel's answer to CreatePayment: the trade exists and
// waits for the shopper. Result: ordercore.Payment.
type OpenedPayment struct {
	PaymentID    string
	Instructions ordercore.PaymentInstructions
}

func (c OpenedPayment) keys(k *keySet) { k.payment(c.PaymentID) }

func (c OpenedPayment) execute(b *batch) (any, error) {
	p, ok := b.payments[c.PaymentID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "payment %q not found", c.PaymentID)
	}
	p.cur.Instructions = c.Instructions
	if c.Instructions.TxnID != "" && p.cur.TxnID == "" {
		p.cur.TxnID = c.Instructions.TxnID
	}
	if next, stale := payment.Next(p.cur.Status, ordercore.PaymentPending); !stale {
		p.cur.Status = next
		b.paymentEvent(p, ordercore.EventPaymentPending, "create", "", nil)
	}
	b.touchPayment(p)
	return p.cur, nil
}

// UnknownPayment records a channel call whose outcome is unknown (a timeout): only a
// query resolves it, so the attempt is queried on the sync schedule and never re-issued
// under a new key meanwhile. Result: ordercore.Payment.
type UnknownPayment struct {
	PaymentID string
	Source    string
}

func (c UnknownPayment) keys(k *keySet) { k.payment(c.PaymentID) }

func (c UnknownPayment) execute(b *batch) (any, error) {
	p, ok := b.payments[c.PaymentID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "payment %q not found", c.PaymentID)
	}
	if next, stale := payment.Next(p.cur.Status, ordercore.PaymentUnknown); !stale {
		p.cur.Status = next
		if c.Source == "close" {
			// Whether the close took effect (or the trade was paid first) is a question of
			// its own, and the order waits on it: it gets the whole schedule, counted from
			// zero, not what the open attempt left of it.
			p.cur.SyncAttempts = 0
			b.scheduleSync(p)
		}
		b.touchPayment(p)
		b.paymentEvent(p, ordercore.EventPaymentUnknown, c.Source, "", nil)
	}
	return p.cur, nil
}

// PaymentSyncMissed records a sync query that did not settle the attempt (still pending,
// or the query itself timed out): the next query moves one step down the schedule, and
// past its end the attempt goes to the review queue. For a closed or failed attempt it
// records that the confirming query found it still so: no more queries. Result:
// ordercore.Payment.
type PaymentSyncMissed struct {
	PaymentID string
	Evidence  string
	// Seen is the status the sync's conclusion is about: what the attempt was when the
	// sync read it (or moved it to, before this report). An attempt that has moved since,
	// by a notification that arrived while the query was out, is not this report's to
	// schedule: a stale report would end the new status's own step (a failed attempt's
	// confirming close). Empty applies to whatever the status.
	Seen ordercore.PaymentStatus
	// Keep moves a closed or failed attempt along the schedule like an open one: its
	// confirming close did not get an answer.
	Keep bool
}

func (c PaymentSyncMissed) keys(k *keySet) { k.payment(c.PaymentID) }

func (c PaymentSyncMissed) execute(b *batch) (any, error) {
	p, ok := b.payments[c.PaymentID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "payment %q not found", c.PaymentID)
	}
	if p.cur.NextSyncAt.IsZero() {
		return p.cur, nil // already escalated
	}
	if c.Seen != "" && c.Seen != p.cur.Status {
		return p.cur, nil // moved on while the query was out: the next sync reads it again
	}
	if !p.cur.Status.Open() && !c.Keep {
		p.cur.NextSyncAt = time.Time{} // the confirming close of a closed or failed trade: done
		b.touchPayment(p)
		return p.cur, nil
	}
	p.cur.SyncAttempts++
	p.cur.NextSyncAt = time.Time{}
	if d, ok := schedule(b.cfg.paymentSync(p.cur.Channel), p.cur.SyncAttempts); ok {
		p.cur.NextSyncAt = b.now.Add(d)
	}
	b.touchPayment(p)
	if p.cur.NextSyncAt.IsZero() {
		b.review(ordercore.ReviewSyncExhausted, p.cur.OrderID, p.cur.ID, "", map[string]any{
			"status": p.cur.Status, "queries": p.cur.SyncAttempts, "last_answer": c.Evidence, "channel": p.cur.Channel})
	}
	return p.cur, nil
}

// ChannelPayment applies what a channel said about a trade (a notification, a query, the
// answer to a close) through one idempotent path: the inbox makes a notification count
// once by its (channel, event id); the payment's status makes the same fact count once
// whatever told it (payment, target status). Result: string, the outcome recorded.
type ChannelPayment struct {
	Channel string
	EventID string // empty for answers to our own calls
	Source  string // notify, query, close
	Payment ordercore.ChannelPayment
}

// Outcomes of ChannelPayment and ChannelRefund.
const (
	OutcomeApplied   = "applied"
	OutcomeStale     = "stale"
	OutcomeDuplicate = "duplicate_event"
	OutcomeOrphan    = "orphan"
)

func (c ChannelPayment) keys(k *keySet) {
	k.payment(c.Payment.OutTradeNo)
	if c.EventID != "" {
		k.inbox(ordercore.ChannelEventKey{Channel: c.Channel, EventID: c.EventID})
	}
}

func (c ChannelPayment) execute(b *batch) (any, error) {
	key := ordercore.ChannelEventKey{Channel: c.Channel, EventID: c.EventID}
	if c.EventID != "" && b.inbox[key] {
		return OutcomeDuplicate, nil
	}
	p, ok := b.payments[c.Payment.OutTradeNo]
	if ok && p.cur.Channel != c.Channel {
		ok = false // another channel's trade number: not ours to apply
	}
	outcome := OutcomeOrphan
	if !ok {
		b.review(ordercore.ReviewOrphan, "", c.Payment.OutTradeNo, "", map[string]any{"channel": c.Channel, "event_id": c.EventID,
			"source": c.Source, "payment": c.Payment})
	} else {
		outcome = b.applyChannelPayment(p, c)
	}
	if c.EventID != "" {
		b.inbox[key] = true
		b.cs.ChannelEvents = append(b.cs.ChannelEvents, ordercore.ChannelEvent{Channel: c.Channel, EventID: c.EventID,
			PaymentID: c.Payment.OutTradeNo, Outcome: outcome, ReceivedAt: b.now})
	}
	return outcome, nil
}

func (b *batch) applyChannelPayment(p *paymentState, c ChannelPayment) string {
	cp := c.Payment
	if cp.TxnID != "" && p.cur.TxnID == "" {
		p.cur.TxnID = cp.TxnID
		b.touchPayment(p)
	}
	next, stale := payment.Next(p.cur.Status, cp.Status)
	if stale || cp.Status == ordercore.PaymentUnknown {
		return OutcomeStale // unknown is never a channel's report; only our own timeouts
	}
	switch next {
	case ordercore.PaymentSucceeded:
		b.succeeded(p, c)
	case ordercore.PaymentFailed, ordercore.PaymentClosed:
		p.cur.Status = next
		b.scheduleConfirm(p)
		b.touchPayment(p)
		typ := ordercore.EventPaymentFailed
		if next == ordercore.PaymentClosed {
			typ = ordercore.EventPaymentClosed
		}
		b.paymentEvent(p, typ, c.Source, "", nil)
	case ordercore.PaymentPending:
		p.cur.Status = next
		b.touchPayment(p)
		b.paymentEvent(p, ordercore.EventPaymentPending, c.Source, "", nil)
	}
	return OutcomeApplied
}

// succeeded records money taken by the channel, then decides what it does to the order:
// pay it; revive it if it was closed and its stock is still there; or, when the order was
// paid by another attempt, the stock is gone, or the amount is wrong, refund it.
func (b *batch) succeeded(p *paymentState, c ChannelPayment) {
	paid := c.Payment.Amount
	p.cur.Status = ordercore.PaymentSucceeded
	b.scheduleSync(p)
	b.touchPayment(p)
	if paid.Currency != p.cur.Amount.Currency {
		// Money in another currency cannot sit on this payment's balance: it is recorded
		// as evidence only, and an operator returns it.
		b.paymentEvent(p, ordercore.EventPaymentMismatch, c.Source, "mismatch", &paid)
		b.review(ordercore.ReviewAmountMismatch, p.cur.OrderID, p.cur.ID, "", map[string]any{"expected": p.cur.Amount, "paid": paid, "channel": p.cur.Channel})
		return
	}
	if paid.Amount > 0 {
		b.money(p, ordercore.MoneyCapture, paid.Amount, "")
	}
	if paid != p.cur.Amount {
		b.paymentEvent(p, ordercore.EventPaymentMismatch, c.Source, "mismatch", &paid)
		b.review(ordercore.ReviewAmountMismatch, p.cur.OrderID, p.cur.ID, "", map[string]any{"expected": p.cur.Amount, "paid": paid, "channel": p.cur.Channel})
		b.refundRest(p, ordercore.RefundMismatch, "paid amount differs from the order's")
		return
	}
	o, ok := b.orders[p.cur.OrderID]
	limit.Assert(ok, "order %s of payment %s not loaded", p.cur.OrderID, p.cur.ID)
	applied := ordercore.PaymentApplied{Channel: p.cur.Channel, Reference: p.cur.ID, Amount: paid}
	switch {
	case o.cur.Status == ordercore.OrderPendingPayment:
		err := b.transition(o, order.Pay, "", &applied)
		limit.Assert(err == nil, "pay pending order %s: %v", o.cur.ID, err)
		p.cur.Accepted = true
		b.paymentEvent(p, ordercore.EventPaymentSucceeded, c.Source, "paid", &paid)
		b.closeOthers(p)
	case o.cur.Status == ordercore.OrderCancelled && b.canRevive(o):
		err := b.transition(o, order.Revive, "", &applied)
		limit.Assert(err == nil, "revive order %s: %v", o.cur.ID, err)
		p.cur.Accepted = true
		b.paymentEvent(p, ordercore.EventPaymentSucceeded, c.Source, "revived", &paid)
		b.closeOthers(p)
	case o.cur.Status == ordercore.OrderCancelled:
		b.paymentEvent(p, ordercore.EventPaymentSucceeded, c.Source, "late", &paid)
		b.refundRest(p, ordercore.RefundLate, "paid after the order closed; its stock is gone")
	default:
		b.paymentEvent(p, ordercore.EventPaymentSucceeded, c.Source, "duplicate", &paid)
		b.refundRest(p, ordercore.RefundDuplicate, "the order was already paid by another payment")
	}
}

// closeOthers makes the order's other open attempts due for the sync now: their order is
// paid, so the sync closes them at their channels (and refunds any that were paid too)
// instead of waiting for them on the schedule.
func (b *batch) closeOthers(paid *paymentState) {
	for _, q := range b.paymentsOf(paid.cur.OrderID) {
		if q != paid && q.cur.Status.Open() {
			q.cur.NextSyncAt = b.now
			b.touchPayment(q)
		}
	}
}

// canRevive reports whether every line of a cancelled order can be sold again now.
func (b *batch) canRevive(o *orderState) bool {
	need := map[string]int64{}
	for _, l := range o.cur.Lines {
		if l.Reservation != ordercore.ReservationReleased {
			return false
		}
		need[l.SKU] += l.Quantity
	}
	for sku, n := range need {
		s, ok := b.skus[sku]
		if !ok || s.cur.Available() < n {
			return false
		}
	}
	return true
}

// RequestRefund refunds part or all of an order's payment: the amount is held on the
// payment at once, so concurrent refunds can never sum past the capture (they run one at a
// time in the committer, and the database checks the balance again), and the refund is
// sent to the channel by the refund sync. Result: ordercore.Refund.
type RequestRefund struct {
	OrderID string
	Amount  ordercore.Money
	Reason  string
	// RestockLines are line numbers (1-based) whose units go back on the shelf when the
	// refund succeeds; each line at most once over all of an order's refunds.
	RestockLines []int
}

func (c RequestRefund) keys(k *keySet) { k.order(c.OrderID); k.payOrder(c.OrderID) }

// Validate checks what needs no database.
func (c RequestRefund) Validate() error {
	switch {
	case c.Amount.Amount < 1:
		return ordercore.Errorf(ordercore.EINVALID, "amount must be at least 1 minor unit")
	case !c.Amount.Currency.Valid():
		return ordercore.Errorf(ordercore.EInvalidCurrency, "unsupported currency %q", c.Amount.Currency)
	case len(c.Reason) > limit.ReasonBytesMax || !ordercore.ValidText(c.Reason):
		return ordercore.Errorf(ordercore.EINVALID, "reason must be at most %d bytes of text without control characters", limit.ReasonBytesMax)
	case len(c.RestockLines) > limit.LinesPerOrderMax:
		return ordercore.Errorf(ordercore.EINVALID, "restock_lines names at most %d lines", limit.LinesPerOrderMax)
	}
	seen := map[int]bool{}
	for _, n := range c.RestockLines {
		if n < 1 || n > limit.LinesPerOrderMax || seen[n] {
			return ordercore.Errorf(ordercore.EINVALID, "restock_lines must be distinct line numbers from 1")
		}
		seen[n] = true
	}
	return nil
}

// unrestocked returns the lines of refund r that no other refund of p returns or may
// still return (every refund but a failed one).
func (b *batch) unrestocked(p *paymentState, r *refundState) []int {
	var lines []int
	for _, n := range r.cur.RestockLines {
		taken := false
		for _, other := range b.refundsOf(p.cur.ID) {
			if other != r && other.cur.Status != ordercore.RefundFailed && slices.Contains(other.cur.RestockLines, n) {
				taken = true
			}
		}
		if !taken {
			lines = append(lines, n)
		}
	}
	return lines
}

// checkRestock refuses lines the order does not have, or that a refund already returns.
func (b *batch) checkRestock(o *orderState, p *paymentState, lines []int) error {
	for _, n := range lines {
		if n > len(o.cur.Lines) {
			return ordercore.Errorf(ordercore.EINVALID, "order %s has no line %d", o.cur.ID, n)
		}
		if l := o.cur.Lines[n-1]; l.Reservation != ordercore.ReservationCommitted {
			return ordercore.Errorf(ordercore.EINVALID, "line %d of order %s was never sold", n, o.cur.ID)
		}
		for _, r := range b.refundsOf(p.cur.ID) {
			if r.cur.Status != ordercore.RefundFailed && slices.Contains(r.cur.RestockLines, n) {
				return ordercore.Errorf(ordercore.EINVALID, "line %d of order %s is already restocked by refund %s", n, o.cur.ID, r.cur.ID)
			}
		}
	}
	return nil
}

func (c RequestRefund) execute(b *batch) (any, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	o, ok := b.orders[c.OrderID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "order %q not found", c.OrderID)
	}
	var p *paymentState
	for _, q := range b.paymentsOf(c.OrderID) {
		if q.cur.Accepted {
			p = q
		}
	}
	if p == nil {
		return nil, ordercore.Errorf(ordercore.ENotPaid, "order %s has no captured payment to refund", c.OrderID)
	}
	if c.Amount.Currency != p.cur.Amount.Currency {
		return nil, ordercore.Errorf(ordercore.ECurrencyMismatch, "the payment is in %s, the refund in %s", p.cur.Amount.Currency, c.Amount.Currency)
	}
	if _, _, err := order.Transition(o.cur.Status, order.RequestRefund); err != nil {
		return nil, err
	}
	if rest := p.cur.Captured - p.cur.Refunding - p.cur.Refunded; c.Amount.Amount > rest {
		return nil, ordercore.Errorf(ordercore.ERefundExceeds, "refund of %s exceeds the %s that remains refundable", c.Amount,
			ordercore.Money{Amount: rest, Currency: p.cur.Amount.Currency})
	}
	if err := b.checkRestock(o, p, c.RestockLines); err != nil {
		return nil, err
	}
	err := b.transition(o, order.RequestRefund, "", nil)
	limit.Assert(err == nil, "request refund of order %s: %v", o.cur.ID, err)
	r := b.refund(p, ordercore.RefundRequested, c.Amount.Amount, c.Reason)
	r.cur.RestockLines = slices.Clone(c.RestockLines)
	return r.cur, nil
}

// ChannelRefund applies what a channel said about a refund. Result: string, the outcome.
type ChannelRefund struct {
	Channel string
	EventID string
	Source  string
	Refund  ordercore.ChannelRefund
}

func (c ChannelRefund) keys(k *keySet) {
	k.refund(c.Refund.OutRefundNo)
	if c.Refund.OutTradeNo != "" {
		k.payment(c.Refund.OutTradeNo) // names the trade in an orphan's review item
	}
	if c.EventID != "" {
		k.inbox(ordercore.ChannelEventKey{Channel: c.Channel, EventID: c.EventID})
	}
}

func (c ChannelRefund) execute(b *batch) (any, error) {
	key := ordercore.ChannelEventKey{Channel: c.Channel, EventID: c.EventID}
	if c.EventID != "" && b.inbox[key] {
		return OutcomeDuplicate, nil
	}
	outcome := OutcomeOrphan
	r, ok := b.refunds[c.Refund.OutRefundNo]
	if ok {
		if p, found := b.payments[r.cur.PaymentID]; !found || p.cur.Channel != c.Channel {
			ok = false
		}
	}
	if !ok {
		// A refund ordercore never asked for (made at the channel's own portal, say):
		// the item names the trade and its order when they are this channel's.
		orderID, paymentID := "", ""
		if p, known := b.payments[c.Refund.OutTradeNo]; known && p.cur.Channel == c.Channel {
			orderID, paymentID = p.cur.OrderID, p.cur.ID
		}
		b.review(ordercore.ReviewOrphan, orderID, paymentID, c.Refund.OutRefundNo, map[string]any{"channel": c.Channel, "event_id": c.EventID,
			"source": c.Source, "refund": c.Refund})
	} else {
		outcome = b.applyChannelRefund(r, c.Refund)
	}
	if c.EventID != "" {
		b.inbox[key] = true
		b.cs.ChannelEvents = append(b.cs.ChannelEvents, ordercore.ChannelEvent{Channel: c.Channel, EventID: c.EventID,
			RefundID: c.Refund.OutRefundNo, Outcome: outcome, ReceivedAt: b.now})
	}
	return outcome, nil
}

func (b *batch) applyChannelRefund(r *refundState, cr ordercore.ChannelRefund) string {
	if cr.RefundID != "" && r.cur.RefundID == "" {
		r.cur.RefundID = cr.RefundID
		b.touchRefund(r)
	}
	next, stale := payment.NextRefund(r.cur.Status, cr.Status)
	if stale {
		return OutcomeStale
	}
	p := b.payments[r.cur.PaymentID]
	r.cur.Status, r.cur.NextSyncAt = next, time.Time{}
	b.touchRefund(r)
	switch cr.Status {
	case ordercore.RefundSucceeded:
		b.money(p, ordercore.MoneyRefundCommit, r.cur.Amount.Amount, r.cur.ID)
		b.restock(r)
		b.refundEvent(r, ordercore.EventRefundSucceeded)
	case ordercore.RefundFailed:
		b.money(p, ordercore.MoneyRefundRelease, r.cur.Amount.Amount, r.cur.ID)
		b.refundEvent(r, ordercore.EventRefundFailed)
		b.review(ordercore.ReviewRefundFailed, r.cur.OrderID, r.cur.PaymentID, r.cur.ID, map[string]any{"refund": cr})
	case ordercore.RefundAbnormal:
		// The channel took the refund but could not pay it out: the money stays held
		// until an operator settles it with the shopper.
		b.refundEvent(r, ordercore.EventRefundAbnormal)
		b.review(ordercore.ReviewRefundAbnormal, r.cur.OrderID, r.cur.PaymentID, r.cur.ID, map[string]any{"refund": cr})
	}
	if r.cur.Kind == ordercore.RefundRequested {
		b.settleRefunding(p, false)
	}
	return OutcomeApplied
}

// settleRefunding finishes a refunding order once none of its refunds is pending: all of
// the capture returned makes it refunded, part of it partially refunded. With nothing
// returned (every refund failed) it stays refunding, and the failure is in the review
// queue, until an operator gives the refund up (abandoned): then it is partially
// refunded too, by nothing, and may be refunded again.
func (b *batch) settleRefunding(p *paymentState, abandoned bool) {
	o, ok := b.orders[p.cur.OrderID]
	if !ok || o.cur.Status != ordercore.OrderRefunding {
		return
	}
	for _, r := range b.refundsOf(p.cur.ID) {
		if r.cur.Kind == ordercore.RefundRequested && !r.cur.Status.Terminal() {
			return
		}
	}
	cmd := order.RefundPart
	switch {
	case p.cur.Refunded == p.cur.Captured:
		cmd = order.RefundAll
	case p.cur.Refunded == 0 && !abandoned:
		return
	}
	err := b.transition(o, cmd, "", nil)
	limit.Assert(err == nil, "settle refunding order %s: %v", o.cur.ID, err)
}

// RefundSyncMissed records a send or query of a refund that did not settle it: the next
// moves one step down the schedule; past its end the refund goes to the review queue.
// Sent marks that the refund reached the channel at least once. Result: ordercore.Refund.
type RefundSyncMissed struct {
	RefundID string
	RefundNo string // the channel's refund id, when it answered with one
	Evidence string
}

func (c RefundSyncMissed) keys(k *keySet) { k.refund(c.RefundID) }

func (c RefundSyncMissed) execute(b *batch) (any, error) {
	r, ok := b.refunds[c.RefundID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "refund %q not found", c.RefundID)
	}
	if r.cur.Status.Terminal() || r.cur.NextSyncAt.IsZero() {
		return r.cur, nil
	}
	if c.RefundNo != "" && r.cur.RefundID == "" {
		r.cur.RefundID = c.RefundNo
	}
	r.cur.SyncAttempts++
	r.cur.NextSyncAt = time.Time{}
	if d, ok := schedule(b.cfg.RefundSync, r.cur.SyncAttempts); ok {
		r.cur.NextSyncAt = b.now.Add(d)
	}
	b.touchRefund(r)
	if r.cur.NextSyncAt.IsZero() {
		b.review(ordercore.ReviewRefundExhausted, r.cur.OrderID, r.cur.PaymentID, r.cur.ID, map[string]any{
			"attempts": r.cur.SyncAttempts, "last_answer": c.Evidence})
	}
	return r.cur, nil
}

// Review actions.
const (
	// ReviewDismiss closes an item with a note: the operator settled it outside.
	ReviewDismiss = "dismiss"
	// ReviewRetry closes an item and puts its payment or refund back on the sync
	// schedule from the first step.
	ReviewRetry = "retry"
)

// ResolveReview closes a review item with an action, audited: who, when, why.
// Result: ordercore.ReviewItem.
type ResolveReview struct {
	ID     string
	Action string
	Note   string
	By     string
}

func (c ResolveReview) keys(k *keySet) { k.reviewItem(c.ID) }

// Validate checks what needs no database.
func (c ResolveReview) Validate() error {
	switch {
	case c.Action != ReviewDismiss && c.Action != ReviewRetry:
		return ordercore.Errorf(ordercore.EINVALID, "action must be %q or %q", ReviewDismiss, ReviewRetry)
	}
	return validateAudit(c.By, c.Note)
}

// validateAudit checks the operator and the reason an audited action records.
func validateAudit(by, note string) error {
	switch {
	case strings.TrimSpace(by) == "" || len(by) > limit.IDBytesMax || !ordercore.ValidText(by):
		return ordercore.Errorf(ordercore.EINVALID, "by must name the operator (1..%d bytes of text without control characters)", limit.IDBytesMax)
	case strings.TrimSpace(note) == "" || len(note) > limit.ReasonBytesMax || !ordercore.ValidText(note):
		return ordercore.Errorf(ordercore.EINVALID, "note must say why (1..%d bytes of text without control characters)", limit.ReasonBytesMax)
	}
	return nil
}

func (c ResolveReview) execute(b *batch) (any, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	r, ok := b.reviews[c.ID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "review item %q not found", c.ID)
	}
	if r.cur.Status != ordercore.ReviewOpen {
		return nil, ordercore.Errorf(ordercore.EReviewResolved, "review item %s was resolved by %s", c.ID, r.cur.ResolvedBy)
	}
	if c.Action == ReviewRetry {
		if err := b.retry(r.cur); err != nil {
			return nil, err
		}
	} else if err := b.dismissible(r.cur); err != nil {
		return nil, err
	} else {
		b.settledOutside(r.cur)
	}
	r.cur.Status, r.cur.Resolution, r.cur.Note, r.cur.ResolvedBy, r.cur.ResolvedAt = ordercore.ReviewResolved, c.Action, c.Note, c.By, b.now
	r.cur.Version++
	ev := ordercore.ReviewEvent{Kind: r.cur.Kind, OrderID: r.cur.OrderID, PaymentID: r.cur.PaymentID, RefundID: r.cur.RefundID,
		Resolution: c.Action, Note: c.Note, By: c.By}
	b.event(ordercore.AggregateReview, r.cur.ID, ordercore.EventReviewResolved, ev)
	if r.cur.OrderID != "" {
		b.event(ordercore.AggregateOrder, r.cur.OrderID, ordercore.EventReviewResolved, ev)
	}
	return r.cur, nil
}

// dismissible refuses to dismiss an item whose payment or refund still waits on the
// channel: dismissing it would leave it with no next step (P3); retry it instead.
func (b *batch) dismissible(item ordercore.ReviewItem) error {
	if r, ok := b.refunds[item.RefundID]; ok && item.RefundID != "" && r.cur.Status == ordercore.RefundPending {
		return ordercore.Errorf(ordercore.ECONFLICT, "refund %s is still pending at the channel; retry it instead", r.cur.ID)
	}
	if p, ok := b.payments[item.PaymentID]; ok && item.RefundID == "" && p.cur.Status.Open() {
		return ordercore.Errorf(ordercore.ECONFLICT, "payment %s is still %s at the channel; retry it instead", p.cur.ID, p.cur.Status)
	}
	return nil
}

// settledOutside applies an operator's dismissal of an abnormal refund: the channel
// could not pay it out, and the operator settled it with the shopper outside ordercore,
// so it counts as paid back: its held money is committed, its lines restocked, and a
// refunding order settles.
func (b *batch) settledOutside(item ordercore.ReviewItem) {
	r, ok := b.refunds[item.RefundID]
	if item.RefundID == "" || !ok {
		return
	}
	if r.cur.Status == ordercore.RefundFailed && r.cur.Kind == ordercore.RefundRequested {
		// The operator gives up a refund the channel refused (the money stayed with the
		// merchant): the order must not wait in refunding for a refund nobody will send.
		b.settleRefunding(b.payments[r.cur.PaymentID], true)
		return
	}
	if r.cur.Status != ordercore.RefundAbnormal {
		return
	}
	p := b.payments[r.cur.PaymentID]
	r.cur.Status = ordercore.RefundSucceeded
	b.touchRefund(r)
	b.money(p, ordercore.MoneyRefundCommit, r.cur.Amount.Amount, r.cur.ID)
	b.restock(r)
	b.refundEvent(r, ordercore.EventRefundSucceeded)
	if r.cur.Kind == ordercore.RefundRequested {
		b.settleRefunding(p, false)
	}
}

// retry puts an item's payment or refund back on its sync schedule. A failed refund is
// issued again under a new refund number (the channel closed the old one), for what the
// payment still has to give back; an abnormal one is not (the channel holds its money).
// The new refund restocks the old one's lines that no other refund has restocked or may
// still restock since.
func (b *batch) retry(item ordercore.ReviewItem) error {
	if strings.HasPrefix(item.Kind, "recon_") {
		// The channel and ordercore disagree about money already moved: sending a refund
		// or a query again cannot settle it, and re-issuing a refund the channel paid
		// out would pay it twice.
		return ordercore.Errorf(ordercore.ECONFLICT, "review item %s is a reconciliation discrepancy: settle it with the channel, then dismiss it", item.ID)
	}
	if item.RefundID != "" {
		r, ok := b.refunds[item.RefundID]
		switch {
		case ok && r.cur.Status == ordercore.RefundPending:
			r.cur.SyncAttempts, r.cur.NextSyncAt = 1, b.now
			b.touchRefund(r)
			return nil
		case ok && r.cur.Status == ordercore.RefundAbnormal:
			// The channel holds an abnormal refund's money (WeChat Pay: the shopper's card
			// was frozen or closed) and counts it against the payment: a new refund under a
			// new number would be refused for want of money, or pay the shopper twice once
			// the first is settled. It is paid out at the channel (its abnormal-refund
			// handling) or to the shopper another way, and then dismissed.
			return ordercore.Errorf(ordercore.ECONFLICT, "refund %s is abnormal: the channel holds its money; pay it out at the channel or another way, then dismiss this item to record it settled", r.cur.ID)
		case ok && r.cur.Status == ordercore.RefundFailed:
			p := b.payments[r.cur.PaymentID]
			rest := p.cur.Captured - p.cur.Refunding - p.cur.Refunded
			o, loaded := b.orders[r.cur.OrderID]
			reopen := r.cur.Kind == ordercore.RefundRequested && loaded && o.cur.Status != ordercore.OrderRefunding
			if reopen {
				// A refund of the order settled it meanwhile (partially refunded): the
				// order is refunding again until this one ends.
				if _, _, err := order.Transition(o.cur.Status, order.RequestRefund); err != nil {
					return err
				}
			}
			if rest >= r.cur.Amount.Amount {
				if reopen {
					err := b.transition(o, order.RequestRefund, "", nil)
					limit.Assert(err == nil, "reopen refunding of order %s: %v", o.cur.ID, err)
				}
				lines := b.unrestocked(p, r)
				again := b.refund(p, r.cur.Kind, r.cur.Amount.Amount, r.cur.Reason)
				again.cur.RestockLines = lines
				return nil
			}
		}
	} else if p, ok := b.payments[item.PaymentID]; ok && p.cur.Status.Open() {
		p.cur.SyncAttempts, p.cur.NextSyncAt = 0, b.now
		b.touchPayment(p)
		return nil
	} else if ok && item.Kind == ordercore.ReviewSyncExhausted && (p.cur.Status == ordercore.PaymentClosed || p.cur.Status == ordercore.PaymentFailed) {
		// The confirming step of an ended attempt never got an answer: ask again.
		p.cur.SyncAttempts, p.cur.NextSyncAt = 0, b.now
		b.touchPayment(p)
		return nil
	}
	return ordercore.Errorf(ordercore.ECONFLICT, "review item %s has no pending payment or refund to retry; dismiss it instead", item.ID)
}
