package verify

import (
	"fmt"
	"strings"
	"time"

	"ordercore"
	"ordercore/internal/limit"
)

// ExpiryGrace is how long past its ExpiresAt an unpaid order may still be pending_payment
// before stuck_order reports it. The sweeper sleeps at most limit.ExpirySweepInterval (1 s)
// between sweeps and a sweep commits in milliseconds, so a healthy system closes an order
// within about a second of its deadline. The rest of the minute absorbs what is not a fault:
// a backlog of many full sweep batches after downtime, a snapshot taken by one machine and
// judged against another's clock, and a check run just as the sweeper restarts. An order a
// minute overdue means the sweeper is not running or its commands fail.
const ExpiryGrace = time.Minute

// orderLinesStatus: an order's reservations agree with its status. pending_payment orders
// hold their stock (every line reserved); every status reached through payment (paid,
// fulfilling, shipped, completed, refunding, refunded, partially_refunded) has sold it
// (every line committed); cancelled orders have given it back (every line released). A
// paid order with a reserved line would let the sweeper or a cancel release stock that was
// sold; a cancelled order with a reserved line keeps units off sale forever.
func (c *checker) orderLinesStatus() {
	for _, o := range c.snap.Orders {
		want, ok := wantReservation(o.Status)
		if !ok {
			c.add(RuleOrderLinesStatus, orderSubject(o.ID), "unknown status %q", o.Status)
			continue
		}
		var bad []string
		for j, l := range o.Lines {
			if l.Reservation != want {
				bad = append(bad, fmt.Sprintf("line %d is %s", j+1, l.Reservation))
			}
		}
		if len(bad) > 0 {
			c.add(RuleOrderLinesStatus, orderSubject(o.ID), "order is %s, so every line must be %s, but %s", o.Status, want, strings.Join(bad, ", "))
		}
	}
}

// wantReservation is the reservation state every line of an order in status s must be in.
func wantReservation(s ordercore.OrderStatus) (ordercore.ReservationStatus, bool) {
	switch s {
	case ordercore.OrderPendingPayment:
		return ordercore.ReservationReserved, true
	case ordercore.OrderPaid, ordercore.OrderFulfilling, ordercore.OrderShipped, ordercore.OrderCompleted,
		ordercore.OrderRefunding, ordercore.OrderRefunded, ordercore.OrderPartiallyRefunded:
		return ordercore.ReservationCommitted, true
	case ordercore.OrderCancelled:
		return ordercore.ReservationReleased, true
	}
	return "", false
}

// orderTotal: the amount a shopper is charged is exactly what they ordered. The order has
// 1..limit.LinesPerOrderMax lines, each of quantity 1..limit.QuantityMax; every line amount
// is unit_price * quantity; the order amount is the sum of the line amounts; every amount is
// in the order's (supported) currency and none is negative.
func (c *checker) orderTotal() {
	for _, o := range c.snap.Orders {
		subj := orderSubject(o.ID)
		if n := len(o.Lines); n < 1 || n > limit.LinesPerOrderMax {
			c.add(RuleOrderTotal, subj, "has %d lines, want 1..%d", n, limit.LinesPerOrderMax)
		}
		cur := o.Amount.Currency
		if !cur.Valid() {
			c.add(RuleOrderTotal, subj, "currency %q is not supported", cur)
		}
		if o.Amount.Amount < 0 {
			c.add(RuleOrderTotal, subj, "amount %s is negative", o.Amount)
		}
		sum := ordercore.Money{Currency: cur}
		sumOK := true
		for j, l := range o.Lines {
			if !c.checkLineAmount(o.ID, j+1, cur, l) {
				sumOK = false
				continue
			}
			var err error
			if sum, err = sum.Add(l.Amount); err != nil {
				c.add(RuleOrderTotal, subj, "sum of line amounts: %s", ordercore.ErrorMessage(err))
				sumOK = false
				break
			}
		}
		if sumOK && sum != o.Amount {
			c.add(RuleOrderTotal, subj, "amount is %s, its lines sum to %s", o.Amount, sum)
		}
	}
}

// checkLineAmount checks one line; it reports whether the line's amount may be summed.
func (c *checker) checkLineAmount(orderID string, no int, cur ordercore.Currency, l ordercore.Line) bool {
	subj := lineSubject(orderID, no)
	if l.Quantity < 1 || l.Quantity > limit.QuantityMax {
		c.add(RuleOrderTotal, subj, "quantity %d is outside 1..%d", l.Quantity, limit.QuantityMax)
	}
	if l.UnitPrice.Currency != cur || l.Amount.Currency != cur {
		c.add(RuleOrderTotal, subj, "unit price %s and amount %s must be in the order's currency %s", l.UnitPrice, l.Amount, cur)
		return false
	}
	if l.UnitPrice.Amount < 0 || l.Amount.Amount < 0 {
		c.add(RuleOrderTotal, subj, "unit price %s or amount %s is negative", l.UnitPrice, l.Amount)
	}
	want, err := l.UnitPrice.Mul(l.Quantity)
	if err != nil {
		c.add(RuleOrderTotal, subj, "unit price %s * quantity %d overflows", l.UnitPrice, l.Quantity)
	} else if want != l.Amount {
		c.add(RuleOrderTotal, subj, "amount is %s, unit price %s * quantity %d is %s", l.Amount, l.UnitPrice, l.Quantity, want)
	}
	return true
}

// stuckOrder: no order stays unpaid without a scheduled next action (P3). The next action
// of a pending_payment order is its expiry, so it must have an ExpiresAt (an order without
// one would hold its stock forever), and the sweeper must have cancelled it by ExpiresAt +
// ExpiryGrace: an order still pending after that is overdue. The exception is an order
// with a payment attempt still open at its channel: the expiry waits until the attempt is
// closed there (the shopper may have paid it), so such an order is not overdue here, and
// stuck_payment checks that the attempt itself has a next action.
func (c *checker) stuckOrder() {
	for _, o := range c.snap.Orders {
		if o.Status != ordercore.OrderPendingPayment {
			continue
		}
		switch {
		case o.ExpiresAt.IsZero():
			c.add(RuleStuckOrder, orderSubject(o.ID), "pending_payment with no expires_at: nothing will ever close it and release its stock")
		case o.ExpiresAt.Add(ExpiryGrace).Before(c.now) && !c.openAttempt(o.ID):
			c.add(RuleStuckOrder, orderSubject(o.ID), "pending_payment but expired at %s, %s before now (grace %s): the expiry sweeper should have cancelled it",
				o.ExpiresAt.UTC().Format(time.RFC3339), c.now.Sub(o.ExpiresAt).Round(time.Second), ExpiryGrace)
		}
	}
}

// version: every order, SKU, payment, refund and review item has version >= 1 (a row is
// written at version 1 and every change adds one). Conditional updates compare versions; a
// row at version 0 or below was not written by the engine.
func (c *checker) version() {
	for _, o := range c.snap.Orders {
		if o.Version < 1 {
			c.add(RuleVersion, orderSubject(o.ID), "version %d, want >= 1", o.Version)
		}
	}
	for _, s := range c.snap.SKUs {
		if s.Version < 1 {
			c.add(RuleVersion, skuSubject(s.ID), "version %d, want >= 1", s.Version)
		}
	}
	for _, p := range c.snap.Payments {
		if p.Version < 1 {
			c.add(RuleVersion, paymentSubject(p.ID), "version %d, want >= 1", p.Version)
		}
	}
	for _, r := range c.snap.Refunds {
		if r.Version < 1 {
			c.add(RuleVersion, refundSubject(r.ID), "version %d, want >= 1", r.Version)
		}
	}
	for _, it := range c.snap.Reviews {
		if it.Version < 1 {
			c.add(RuleVersion, "review "+it.ID, "version %d, want >= 1", it.Version)
		}
	}
}
