// Package order is the order state machine: a pure table from (status, command) to the next
// status. It does no I/O and knows nothing of storage; the engine asks it before every
// change, and `ordercore verify` replays events through it.
//
// It imports only the root package and internal/limit.
package order

import (
	"time"

	"ordercore"
	"ordercore/internal/limit"
)

// Command is something that may move an order.
type Command string

// Commands. Pay, Expire and FailPayment come from the system (payments, the expiry
// sweeper) and may arrive late or twice; the rest come from users and merchants.
const (
	Pay             Command = "pay"
	Cancel          Command = "cancel"
	Expire          Command = "expire"
	FailPayment     Command = "fail_payment"
	StartFulfilment Command = "start_fulfilment"
	Ship            Command = "ship"
	Complete        Command = "complete"
	RequestRefund   Command = "request_refund"
	RefundAll       Command = "refund_all"
	RefundPart      Command = "refund_part"
	// Revive is late money: a payment that succeeded at the channel after the order was
	// cancelled (the shopper paid as it expired). It sells the released stock again
	// directly; the payments layer issues it only when that stock is available, and
	// refunds the money otherwise. Nothing but money moves a cancelled order.
	Revive Command = "revive"
)

// Commands lists every command.
var Commands = []Command{Pay, Cancel, Expire, FailPayment, StartFulfilment, Ship, Complete, RequestRefund, RefundAll, RefundPart, Revive}

// rule is one cell of the table: either a move to a status, or stale (the command has
// already taken effect or been overtaken, so it is acknowledged and ignored).
type rule struct {
	to    ordercore.OrderStatus
	stale bool
}

func to(s ordercore.OrderStatus) rule { return rule{to: s} }

var stale = rule{stale: true}

// table is the single source of truth for order transitions. A missing cell is an illegal
// transition. Stale cells exist so that duplicates and late system events (a second
// payment notification, an expiry that lost the race with a payment) are harmless.
var table = map[ordercore.OrderStatus]map[Command]rule{
	ordercore.OrderPendingPayment: {
		Pay: to(ordercore.OrderPaid), Cancel: to(ordercore.OrderCancelled),
		Expire: to(ordercore.OrderCancelled), FailPayment: to(ordercore.OrderCancelled),
	},
	ordercore.OrderPaid: {
		Pay: stale, Revive: stale, Expire: stale, FailPayment: stale,
		StartFulfilment: to(ordercore.OrderFulfilling), Ship: to(ordercore.OrderShipped),
		RequestRefund: to(ordercore.OrderRefunding),
	},
	ordercore.OrderFulfilling: {
		Pay: stale, Revive: stale, Expire: stale, FailPayment: stale, StartFulfilment: stale,
		Ship: to(ordercore.OrderShipped), RequestRefund: to(ordercore.OrderRefunding),
	},
	ordercore.OrderShipped: {
		Pay: stale, Revive: stale, Expire: stale, FailPayment: stale, StartFulfilment: stale, Ship: stale,
		Complete: to(ordercore.OrderCompleted),
	},
	ordercore.OrderCompleted: {
		Pay: stale, Revive: stale, Expire: stale, FailPayment: stale, StartFulfilment: stale, Ship: stale,
		Complete: stale,
	},
	ordercore.OrderCancelled: {
		Cancel: stale, Expire: stale, FailPayment: stale,
		Revive: to(ordercore.OrderPaid),
	},
	ordercore.OrderRefunding: {
		Pay: stale, Revive: stale, Expire: stale, FailPayment: stale, RequestRefund: stale,
		RefundAll: to(ordercore.OrderRefunded), RefundPart: to(ordercore.OrderPartiallyRefunded),
	},
	ordercore.OrderRefunded: {
		Pay: stale, Revive: stale, Expire: stale, FailPayment: stale, RequestRefund: stale, RefundAll: stale, RefundPart: stale,
	},
	ordercore.OrderPartiallyRefunded: {
		Pay: stale, Revive: stale, Expire: stale, FailPayment: stale,
		RequestRefund: to(ordercore.OrderRefunding),
	},
}

// Transition returns the status command c moves an order in status from to. Stale is true
// when c must be acknowledged without any change; err is an EIllegalTransition error when
// c may not be applied to an order in that status at all.
func Transition(from ordercore.OrderStatus, c Command) (next ordercore.OrderStatus, isStale bool, err error) {
	r, ok := table[from][c]
	if !ok {
		return from, false, ordercore.Errorf(ordercore.EIllegalTransition, "cannot %s an order that is %s", verb(c), from)
	}
	if r.stale {
		return from, true, nil
	}
	return r.to, false, nil
}

// Reservation returns what a transition into to does to the order's stock reservations:
// commit them (paid), release them (cancelled), or nothing.
func Reservation(to ordercore.OrderStatus) (move ordercore.StockMovement, ok bool) {
	switch to {
	case ordercore.OrderPaid:
		return ordercore.MoveCommit, true
	case ordercore.OrderCancelled:
		return ordercore.MoveRelease, true
	}
	return "", false
}

func verb(c Command) string {
	switch c {
	case StartFulfilment:
		return "start fulfilling"
	case RequestRefund:
		return "refund"
	case RefundAll, RefundPart:
		return "finish refunding"
	case FailPayment:
		return "fail the payment of"
	}
	return string(c)
}

// Apply runs c on o and returns the changed order (version+1, UpdatedAt = at). Stale
// commands return o unchanged with stale=true.
func Apply(o ordercore.Order, c Command, reason string, at time.Time) (ordercore.Order, bool, error) {
	next, isStale, err := Transition(o.Status, c)
	if err != nil || isStale {
		return o, isStale, err
	}
	o.Status = next
	o.Version++
	o.UpdatedAt = at
	if next == ordercore.OrderCancelled {
		o.CancelReason = reason
	}
	if c == Revive {
		o.Lines = revive(o.Lines)
		o.CancelReason = ""
	} else if move, ok := Reservation(next); ok {
		o.Lines = resolve(o.Lines, move)
	}
	return o, false, nil
}

// revive returns a copy of released lines sold again (ordercore.MoveRevive).
func revive(lines []ordercore.Line) []ordercore.Line {
	out := make([]ordercore.Line, len(lines))
	for i, l := range lines {
		limit.Assert(l.Reservation == ordercore.ReservationReleased, "line %d of a revived order is %s, want released", i, l.Reservation)
		l.Reservation = ordercore.ReservationCommitted
		out[i] = l
	}
	return out
}

// resolve returns a copy of lines with every reserved line moved to the final state.
func resolve(lines []ordercore.Line, move ordercore.StockMovement) []ordercore.Line {
	out := make([]ordercore.Line, len(lines))
	for i, l := range lines {
		if l.Reservation != ordercore.ReservationReserved {
			limit.Assert(false, "line %d of a %s order is %s, want reserved", i, move, l.Reservation)
		}
		if move == ordercore.MoveCommit {
			l.Reservation = ordercore.ReservationCommitted
		} else {
			l.Reservation = ordercore.ReservationReleased
		}
		out[i] = l
	}
	return out
}
