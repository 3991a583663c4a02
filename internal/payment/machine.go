package payment

import "ordercore"

// rule is one cell: a move, or stale (acknowledged, nothing changes).
type rule struct {
	to    ordercore.PaymentStatus
	stale bool
}

func to(s ordercore.PaymentStatus) rule { return rule{to: s} }

var stale = rule{stale: true}

// table maps (status, reported status) to the result. Every reported status has a cell
// in every row: a report is never an error, because channels repeat, reorder and contradict
// themselves; the table decides which reports still mean something.
//
//   - succeeded is final, and money is never undone by a later report: a closed or failed
//     attempt that the channel reports paid is succeeded (the shopper paid as it closed,
//     or retried the card), and what that money does to the order is the engine's call.
//   - pending only moves an attempt whose state was not known (created, unknown).
//   - failed and closed end an open attempt; closed also follows failed, when ordercore
//     closes a failed trade so that it cannot be paid any more.
//   - unknown (our own call timed out) only marks an attempt that was waiting.
var table = map[ordercore.PaymentStatus]map[ordercore.PaymentStatus]rule{
	ordercore.PaymentCreated: {
		ordercore.PaymentPending: to(ordercore.PaymentPending), ordercore.PaymentSucceeded: to(ordercore.PaymentSucceeded),
		ordercore.PaymentFailed: to(ordercore.PaymentFailed), ordercore.PaymentClosed: to(ordercore.PaymentClosed),
		ordercore.PaymentUnknown: to(ordercore.PaymentUnknown),
	},
	ordercore.PaymentPending: {
		ordercore.PaymentPending: stale, ordercore.PaymentSucceeded: to(ordercore.PaymentSucceeded),
		ordercore.PaymentFailed: to(ordercore.PaymentFailed), ordercore.PaymentClosed: to(ordercore.PaymentClosed),
		ordercore.PaymentUnknown: to(ordercore.PaymentUnknown),
	},
	ordercore.PaymentUnknown: {
		ordercore.PaymentPending: to(ordercore.PaymentPending), ordercore.PaymentSucceeded: to(ordercore.PaymentSucceeded),
		ordercore.PaymentFailed: to(ordercore.PaymentFailed), ordercore.PaymentClosed: to(ordercore.PaymentClosed),
		ordercore.PaymentUnknown: stale,
	},
	ordercore.PaymentFailed: {
		ordercore.PaymentPending: stale, ordercore.PaymentSucceeded: to(ordercore.PaymentSucceeded),
		ordercore.PaymentFailed: stale, ordercore.PaymentClosed: to(ordercore.PaymentClosed),
		ordercore.PaymentUnknown: stale,
	},
	ordercore.PaymentClosed: {
		ordercore.PaymentPending: stale, ordercore.PaymentSucceeded: to(ordercore.PaymentSucceeded),
		ordercore.PaymentFailed: stale, ordercore.PaymentClosed: stale, ordercore.PaymentUnknown: stale,
	},
	ordercore.PaymentSucceeded: {
		ordercore.PaymentPending: stale, ordercore.PaymentSucceeded: stale, ordercore.PaymentFailed: stale,
		ordercore.PaymentClosed: stale, ordercore.PaymentUnknown: stale,
	},
}

// Reports lists the statuses a report can carry (created is only ever ordercore's own).
var Reports = []ordercore.PaymentStatus{ordercore.PaymentPending, ordercore.PaymentSucceeded, ordercore.PaymentFailed,
	ordercore.PaymentClosed, ordercore.PaymentUnknown}

// Statuses lists every attempt status.
var Statuses = []ordercore.PaymentStatus{ordercore.PaymentCreated, ordercore.PaymentPending, ordercore.PaymentUnknown,
	ordercore.PaymentFailed, ordercore.PaymentClosed, ordercore.PaymentSucceeded}

// Next returns the status an attempt in from moves to on a report of reported, or
// stale=true when the report changes nothing. A report of a status the table does not
// know is stale.
func Next(from, reported ordercore.PaymentStatus) (next ordercore.PaymentStatus, isStale bool) {
	r, ok := table[from][reported]
	if !ok || r.stale {
		return from, true
	}
	return r.to, false
}

// NextRefund returns the status a refund in from moves to on a report of reported: a
// pending refund ends as the channel says (succeeded, failed or abnormal); an ended one
// never moves again, and "still pending" changes nothing.
func NextRefund(from, reported ordercore.RefundStatus) (next ordercore.RefundStatus, isStale bool) {
	if from != ordercore.RefundPending || !reported.Terminal() || !validRefund(reported) {
		return from, true
	}
	return reported, false
}

func validRefund(s ordercore.RefundStatus) bool {
	switch s {
	case ordercore.RefundPending, ordercore.RefundSucceeded, ordercore.RefundFailed, ordercore.RefundAbnormal:
		return true
	}
	return false
}
