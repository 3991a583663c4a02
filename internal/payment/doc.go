// Package payment holds the payment attempt and refund state machines as pure tables:
// what a channel's report (a notification, a query, the answer to our own call) does to
// an attempt or a refund in a given status. It does no I/O; the engine asks it before
// every change, so a report applies once whatever brought it (P2: idempotent on
// (payment, target status), not only on the event id).
//
// It imports only the root package.
package payment
