package verify

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"ordercore"
	"ordercore/internal/order"
)

// replayedOrder is an order rebuilt from its events alone.
type replayedOrder struct {
	firstSeq int64
	userID   string
	status   ordercore.OrderStatus
	version  int64
	amount   ordercore.Money
	lines    []ordercore.Line // Reservation follows the replayed transitions
	reason   string           // the cancel reason of the order.cancelled event
}

// replayedSKU is a SKU rebuilt from events alone: total from its own events, reserved and
// sold from the order events that move its stock.
type replayedSKU struct {
	created bool
	name    string
	price   ordercore.Money
	balance
}

// replay is the projection state while events are applied in Seq order.
type replay struct {
	c      *checker
	orders map[string]*replayedOrder
	skus   map[string]*replayedSKU
	holds  map[string]*replayedHold
}

// eventReplay: the events table alone rebuilds the orders and skus tables (DESIGN "Events
// are the history"), so the feed, the audit timeline and any consumer see what really
// happened.
//
// Orders: order.placed (ordercore.OrderPlaced, version 1) creates the order with every line
// reserved; each later order.<status> event (ordercore.OrderTransitioned) must name the
// replayed status as From and <status> as To, be a legal one-step move of the transition
// table of internal/order (some command leads From to To without being stale), and carry
// the replayed version + 1. The final status, version, user, amount, cancel reason and lines
// (SKU, quantity, unit price) must equal the orders row. Every order row has an order.placed
// event and every order event has an order row.
//
// SKUs: sku.created (ordercore.SKUCreated) sets total to its stock and sku.restocked
// (ordercore.SKURestocked) adds its quantity (and its Total must be the running total);
// order.placed reserves each line's quantity, a transition into paid commits every line
// (reserved to sold) and a transition into cancelled releases every line (reserved back to
// available), exactly as internal/order.Reservation says. Total, reserved, sold, name and
// price must equal the skus row, and every sku event has a skus row.
//
// Stock holds: the stock.* events of each hold rebuild it and move its SKUs' stock as its
// ledger rows do (holdEvent in holds.go); every holds row equals its replay. Saga events
// are the sagas' audit and are not replayed.
//
// Events whose data is not valid JSON are skipped here; event_sequence reports them.
func (c *checker) eventReplay() {
	r := &replay{c: c, orders: map[string]*replayedOrder{}, skus: map[string]*replayedSKU{}, holds: map[string]*replayedHold{}}
	for _, e := range c.snap.Events {
		if !json.Valid(e.Data) {
			continue
		}
		switch e.AggregateType {
		case ordercore.AggregateSKU:
			r.skuEvent(e)
		case ordercore.AggregateOrder:
			if e.Type == ordercore.EventRefundSucceeded {
				r.refunded(e) // its restocked lines went back on the shelf
				continue
			}
			if strings.HasPrefix(e.Type, "payment.") || strings.HasPrefix(e.Type, "refund.") || strings.HasPrefix(e.Type, "review.") ||
				e.Type == ordercore.EventOrderFulfilment {
				continue // money (and fulfilment sagas) on the order's timeline; the money rules check payments
			}
			r.orderEvent(e)
		case ordercore.AggregateReview:
			continue // the review queue's audit
		case ordercore.AggregateWebhook:
			continue // webhook endpoints' audit: deliveries move no stock and no money
		case ordercore.AggregateSaga:
			continue // the sagas' audit: a saga's effects are its participants' own events
		case ordercore.AggregateReconciliation:
			continue // reconciliations' reports: what they repaired is on the orders' timelines
		case ordercore.AggregateHold:
			r.holdEvent(e) // stock reserved for an outside TCC branch (holds.go)
		default:
			r.bad(e, "unknown aggregate type %q (type %s): verify cannot replay it", e.AggregateType, e.Type)
		}
	}
	r.compareOrders()
	r.compareSKUs()
	r.compareHolds()
}

// refunded replays the stock side of a succeeded refund: each restocked line's units go
// from sold back to available, once.
func (r *replay) refunded(e ordercore.Event) {
	var d ordercore.RefundEvent
	if !r.decode(e, &d) || len(d.RestockLines) == 0 {
		return
	}
	o := r.orders[e.AggregateID]
	if o == nil {
		r.bad(e, "refund.succeeded restocks order %s before its order.placed", e.AggregateID)
		return
	}
	for _, n := range d.RestockLines {
		if n < 1 || n > len(o.lines) {
			r.bad(e, "refund.succeeded restocks line %d of order %s, which has %d lines", n, e.AggregateID, len(o.lines))
			continue
		}
		l := o.lines[n-1]
		if l.Reservation != ordercore.ReservationCommitted {
			r.bad(e, "refund.succeeded restocks line %d of order %s, which is %s", n, e.AggregateID, l.Reservation)
			continue
		}
		r.sku(l.SKU).sold -= l.Quantity
	}
}

func (r *replay) bad(e ordercore.Event, format string, args ...any) {
	r.c.add(RuleEventReplay, eventSubject(e.Seq), format, args...)
}

// decode unmarshals e's data into v, reporting a failure.
func (r *replay) decode(e ordercore.Event, v any) bool {
	if err := json.Unmarshal(e.Data, v); err != nil {
		r.bad(e, "%s data does not decode as %T: %v", e.Type, v, err)
		return false
	}
	return true
}

func (r *replay) sku(id string) *replayedSKU {
	s := r.skus[id]
	if s == nil {
		s = &replayedSKU{}
		r.skus[id] = s
	}
	return s
}

func (r *replay) skuEvent(e ordercore.Event) {
	s := r.sku(e.AggregateID)
	switch e.Type {
	case ordercore.EventSKUCreated:
		var d ordercore.SKUCreated
		if !r.decode(e, &d) {
			return
		}
		if s.created {
			r.bad(e, "second sku.created for sku %s", e.AggregateID)
		}
		if d.Stock < 0 {
			r.bad(e, "sku.created for sku %s with negative stock %d", e.AggregateID, d.Stock)
		}
		s.created, s.name, s.price = true, d.Name, d.Price
		s.total += d.Stock
	case ordercore.EventSKURestocked:
		var d ordercore.SKURestocked
		if !r.decode(e, &d) {
			return
		}
		if !s.created {
			r.bad(e, "sku.restocked before sku.created for sku %s", e.AggregateID)
		}
		if d.Quantity < 1 {
			r.bad(e, "sku.restocked for sku %s with quantity %d, want >= 1", e.AggregateID, d.Quantity)
		}
		s.total += d.Quantity
		if d.Total != s.total {
			r.bad(e, "sku.restocked for sku %s says total %d, replay has %d", e.AggregateID, d.Total, s.total)
		}
	default:
		r.bad(e, "unknown sku event type %q", e.Type)
	}
}

func (r *replay) orderEvent(e ordercore.Event) {
	if e.Type == ordercore.EventOrderPlaced {
		r.placed(e)
		return
	}
	to, ok := strings.CutPrefix(e.Type, "order.")
	if !ok || !ordercore.OrderStatus(to).Valid() {
		r.bad(e, "unknown order event type %q", e.Type)
		return
	}
	var d ordercore.OrderTransitioned
	if !r.decode(e, &d) {
		return
	}
	o := r.orders[e.AggregateID]
	if o == nil {
		r.bad(e, "%s for order %s before its order.placed", e.Type, e.AggregateID)
		return
	}
	r.transitioned(e, o, ordercore.OrderStatus(to), d)
}

func (r *replay) placed(e ordercore.Event) {
	var d ordercore.OrderPlaced
	if !r.decode(e, &d) {
		return
	}
	if _, dup := r.orders[e.AggregateID]; dup {
		r.bad(e, "second order.placed for order %s", e.AggregateID)
		return
	}
	if d.Version != 1 {
		r.bad(e, "order.placed for order %s at version %d, want 1", e.AggregateID, d.Version)
	}
	o := &replayedOrder{firstSeq: e.Seq, userID: d.UserID, status: ordercore.OrderPendingPayment,
		version: d.Version, amount: d.Amount, lines: make([]ordercore.Line, len(d.Lines))}
	for i, l := range d.Lines {
		l.Reservation = ordercore.ReservationReserved
		o.lines[i] = l
		s := r.sku(l.SKU)
		if !s.created {
			r.bad(e, "order.placed for order %s reserves sku %s before its sku.created", e.AggregateID, l.SKU)
		}
		s.reserved += l.Quantity
	}
	r.orders[e.AggregateID] = o
}

func (r *replay) transitioned(e ordercore.Event, o *replayedOrder, to ordercore.OrderStatus, d ordercore.OrderTransitioned) {
	id := e.AggregateID
	if d.To != to {
		r.bad(e, "%s event for order %s says to %q", e.Type, id, d.To)
	}
	if d.From != o.status {
		r.bad(e, "%s for order %s says from %s, replay has it %s", e.Type, id, d.From, o.status)
	}
	if !legal(d.From, to) {
		r.bad(e, "illegal transition %s -> %s for order %s: no command of the transition table leads there", d.From, to, id)
	}
	if d.Version != o.version+1 {
		r.bad(e, "%s for order %s has version %d, want %d (replayed %d + 1)", e.Type, id, d.Version, o.version+1, o.version)
	}
	// Carry on with what the event says, so one bad event is reported once rather than
	// again for every event after it.
	o.status, o.version = to, d.Version
	if to == ordercore.OrderCancelled {
		o.reason = d.Reason
	}
	if d.From == ordercore.OrderCancelled && to == ordercore.OrderPaid {
		for i := range o.lines { // revived by late money: released units sold again
			if l := &o.lines[i]; l.Reservation == ordercore.ReservationReleased {
				r.sku(l.SKU).sold += l.Quantity
				l.Reservation = ordercore.ReservationCommitted
			}
		}
		return
	}
	move, ok := order.Reservation(to)
	if !ok {
		return
	}
	for i := range o.lines {
		l := &o.lines[i]
		if l.Reservation != ordercore.ReservationReserved {
			continue // an illegal repeat, reported above; its units moved already
		}
		s := r.sku(l.SKU)
		s.reserved -= l.Quantity
		if move == ordercore.MoveCommit {
			s.sold += l.Quantity
			l.Reservation = ordercore.ReservationCommitted
		} else {
			l.Reservation = ordercore.ReservationReleased
		}
	}
}

// legal reports whether some command of the order table moves an order from from to to in
// one step (a stale cell does not move it, so it does not count).
func legal(from, to ordercore.OrderStatus) bool {
	for _, cmd := range order.Commands {
		next, stale, err := order.Transition(from, cmd)
		if err == nil && !stale && next == to {
			return true
		}
	}
	return false
}

func (r *replay) compareOrders() {
	for i := range r.c.snap.Orders {
		row := &r.c.snap.Orders[i]
		if r.c.orders[row.ID] != row {
			continue // a duplicate row, already reported
		}
		o := r.orders[row.ID]
		if o == nil {
			r.c.add(RuleEventReplay, orderSubject(row.ID), "has no order.placed event")
			continue
		}
		r.compareOrder(row, o)
	}
	var orphans []string
	for id := range r.orders {
		if _, ok := r.c.orders[id]; !ok {
			orphans = append(orphans, id)
		}
	}
	slices.Sort(orphans)
	for _, id := range orphans {
		r.c.add(RuleEventReplay, orderSubject(id), "has events from seq %d but no row in the orders table", r.orders[id].firstSeq)
	}
}

func (r *replay) compareOrder(row *ordercore.Order, o *replayedOrder) {
	subj := orderSubject(row.ID)
	diff := func(field string, got, want any) {
		r.c.add(RuleEventReplay, subj, "%s is %v in the orders table, %v by replaying its events", field, got, want)
	}
	if row.Status != o.status {
		diff("status", row.Status, o.status)
	}
	if row.Version != o.version {
		diff("version", row.Version, o.version)
	}
	if row.UserID != o.userID {
		diff("user_id", row.UserID, o.userID)
	}
	if row.Amount != o.amount {
		diff("amount", row.Amount, o.amount)
	}
	if row.Status == ordercore.OrderCancelled && row.CancelReason != o.reason {
		diff("cancel_reason", fmt.Sprintf("%q", row.CancelReason), fmt.Sprintf("%q", o.reason))
	}
	if len(row.Lines) != len(o.lines) {
		diff("the number of lines", len(row.Lines), len(o.lines))
		return
	}
	for j, l := range row.Lines {
		w := o.lines[j]
		if l.SKU != w.SKU || l.Quantity != w.Quantity || l.UnitPrice != w.UnitPrice {
			diff(fmt.Sprintf("line %d", j+1), lineText(l), lineText(w))
		}
	}
}

func lineText(l ordercore.Line) string {
	return fmt.Sprintf("%d x %s at %s", l.Quantity, l.SKU, l.UnitPrice)
}

func (r *replay) compareSKUs() {
	for i := range r.c.snap.SKUs {
		row := &r.c.snap.SKUs[i]
		if r.c.skus[row.ID] != row {
			continue // a duplicate row, already reported
		}
		s := r.skus[row.ID]
		if s == nil || !s.created {
			r.c.add(RuleEventReplay, skuSubject(row.ID), "has no sku.created event")
			continue
		}
		if row.Name != s.name || row.Price != s.price {
			r.c.add(RuleEventReplay, skuSubject(row.ID), "is %q at %s in the skus table, %q at %s by its sku.created event", row.Name, row.Price, s.name, s.price)
		}
		r.c.compareBalance(RuleEventReplay, *row, s.balance, "replaying the events gives")
	}
	var orphans []string
	for id, s := range r.skus {
		if _, ok := r.c.skus[id]; !ok && s.created {
			orphans = append(orphans, id)
		}
	}
	slices.Sort(orphans)
	for _, id := range orphans {
		r.c.add(RuleEventReplay, skuSubject(id), "has a sku.created event but no row in the skus table")
	}
}

// eventSequence: the feed is well formed for the relay, the HTTP feed and webhook
// consumers. Seq strictly increases (a cursor never skips or repeats an event); event IDs
// are unique canonical UUIDs (consumers deduplicate on them, so a repeated ID makes a
// consumer drop a real event); Data is valid JSON (a consumer that cannot parse an event
// stalls on it).
func (c *checker) eventSequence() {
	seen := make(map[string]int64, len(c.snap.Events))
	for i, e := range c.snap.Events {
		subj := eventSubject(e.Seq)
		if i > 0 && e.Seq <= c.snap.Events[i-1].Seq {
			c.add(RuleEventSequence, subj, "follows seq %d: sequence numbers must strictly increase", c.snap.Events[i-1].Seq)
		}
		if !ordercore.ValidID(e.ID) {
			c.add(RuleEventSequence, subj, "id %q is not a canonical lower-case UUID", e.ID)
		} else if prev, dup := seen[e.ID]; dup {
			c.add(RuleEventSequence, subj, "id %s is also the id of event seq %d", e.ID, prev)
		} else {
			seen[e.ID] = e.Seq
		}
		if !json.Valid(e.Data) {
			c.add(RuleEventSequence, subj, "%s data is not valid JSON", e.Type)
		}
	}
}
