package verify

import (
	"fmt"
	"time"

	"ordercore"
	"ordercore/internal/limit"
)

// Violation is one broken invariant.
type Violation struct {
	// Rule is the stable short name of the invariant (one of Rules); scripts match on it.
	Rule string
	// Subject names what is broken: "sku apple", "order <id>", "order <id> line 2",
	// "event seq 17", "ledger row 5" (1-based position in the snapshot's ledger),
	// "payment <id>", "refund <id>", "review <id>" or "money ledger seq 9".
	Subject string
	// Detail says how, with the values that disagree.
	Detail string
}

func (v Violation) String() string { return v.Rule + ": " + v.Subject + ": " + v.Detail }

// The rules. Each names a promise a user relies on; the function that checks it documents
// exactly what it compares.
const (
	// RuleStockConservation: a SKU's balances are the sums of its ledger rows (P1's
	// bookkeeping: stock is never created or lost outside the ledger).
	RuleStockConservation = "stock_conservation"
	// RuleNegativeBalance: no SKU is oversold or has a negative balance (P1).
	RuleNegativeBalance = "negative_balance"
	// RuleReservationOnce: every order line is reserved exactly once and resolved at most
	// once, by ledger rows that move exactly its quantity.
	RuleReservationOnce = "reservation_once"
	// RuleOrderLinesStatus: an order's reservations agree with its status (an unpaid order
	// holds stock, a paid one has sold it, a cancelled one has given it back).
	RuleOrderLinesStatus = "order_lines_status"
	// RuleOrderTotal: what the shopper is charged is the sum of what they ordered.
	RuleOrderTotal = "order_total"
	// RuleEventReplay: the events alone rebuild the orders and SKUs tables, and every
	// order transition in them is legal.
	RuleEventReplay = "event_replay"
	// RuleEventSequence: the event feed is well formed for its consumers.
	RuleEventSequence = "event_sequence"
	// RuleStuckOrder: no unpaid order lives past its deadline (P3), unless a payment
	// attempt of it is still open at its channel (stuck_payment judges the attempt).
	RuleStuckOrder = "stuck_order"
	// RuleMoneyConservation: a payment's captured, refunding and refunded balances are the
	// sums of its money ledger rows (P2's bookkeeping: money is never created or lost
	// outside the ledger).
	RuleMoneyConservation = "money_conservation"
	// RuleRefundBound: no payment or order refunds more than it captured (P2).
	RuleRefundBound = "refund_bound"
	// RuleRefundOnce: every refund holds its amount exactly once and settles at most once,
	// as its status says.
	RuleRefundOnce = "refund_once"
	// RulePaymentOrder: one accepted payment pays an order, and an order paid through a
	// channel has it (P2: a success is never lost and never applied twice).
	RulePaymentOrder = "payment_order"
	// RuleUnrefundedMoney: every duplicate or late payment is refunded, or in front of an
	// operator.
	RuleUnrefundedMoney = "unrefunded_money"
	// RuleStuckPayment: no open payment attempt, pending refund or refunding order lacks a
	// scheduled next action or an open review item (P3).
	RuleStuckPayment = "stuck_payment"
	// RuleVersion: every row has a positive version, so optimistic updates can work.
	RuleVersion = "version"
)

// Rules lists every rule in the order Check runs them and Report prints them.
var Rules = []string{
	RuleStockConservation, RuleNegativeBalance, RuleReservationOnce, RuleHoldOnce, RuleHoldBarrier, RuleOrderLinesStatus,
	RuleOrderTotal, RuleEventReplay, RuleEventSequence, RuleStuckOrder, RuleMoneyConservation,
	RuleRefundBound, RuleRefundOnce, RulePaymentOrder, RuleUnrefundedMoney, RuleStuckPayment, RuleVersion,
}

// Check returns every invariant violation found in snap; an empty result means the database is sound.
// now is the time the snapshot was taken, for the deadline rule (stuck_order). The
// result is deterministic: rules in the order of Rules, subjects in snapshot order.
func Check(snap *ordercore.Snapshot, now time.Time) []Violation {
	limit.Assert(snap != nil, "verify.Check of a nil snapshot")
	c := newChecker(snap, now)
	c.stockConservation()
	c.negativeBalance()
	c.reservationOnce()
	c.holdOnce()
	c.holdBarrier()
	c.orderLinesStatus()
	c.orderTotal()
	c.eventReplay()
	c.eventSequence()
	c.stuckOrder()
	c.moneyConservation()
	c.refundBound()
	c.refundOnce()
	c.paymentOrder()
	c.unrefundedMoney()
	c.stuckPayment()
	c.version()
	c.holdVersions()
	return c.vs
}

// checker holds the snapshot, its rows indexed by id, and the violations found so far.
type checker struct {
	snap   *ordercore.Snapshot
	now    time.Time
	skus   map[string]*ordercore.SKU
	orders map[string]*ordercore.Order
	money  moneyIndex
	vs     []Violation
}

func newChecker(snap *ordercore.Snapshot, now time.Time) *checker {
	c := &checker{snap: snap, now: now,
		skus:   make(map[string]*ordercore.SKU, len(snap.SKUs)),
		orders: make(map[string]*ordercore.Order, len(snap.Orders))}
	for i := range snap.SKUs {
		s := &snap.SKUs[i]
		if _, dup := c.skus[s.ID]; dup {
			c.add(RuleStockConservation, skuSubject(s.ID), "appears twice in the skus table")
			continue
		}
		c.skus[s.ID] = s
	}
	for i := range snap.Orders {
		o := &snap.Orders[i]
		if _, dup := c.orders[o.ID]; dup {
			c.add(RuleEventReplay, orderSubject(o.ID), "appears twice in the orders table")
			continue
		}
		c.orders[o.ID] = o
	}
	c.indexMoney()
	return c
}

func (c *checker) add(rule, subject, format string, args ...any) {
	c.vs = append(c.vs, Violation{Rule: rule, Subject: subject, Detail: fmt.Sprintf(format, args...)})
}

func skuSubject(id string) string          { return "sku " + id }
func orderSubject(id string) string        { return "order " + id }
func lineSubject(id string, no int) string { return fmt.Sprintf("order %s line %d", id, no) }
func eventSubject(seq int64) string        { return fmt.Sprintf("event seq %d", seq) }
func ledgerSubject(i int) string           { return fmt.Sprintf("ledger row %d", i+1) }
