// Package sim is the ordercore.Channel of paysim, the payment channel simulator, and the
// owner of the protocol both sides speak: the wire types (wire.go), the notification
// signature (sign.go) and the daily statement format (statement.go). paysim imports this
// package for them; this package never imports paysim, so the adapter is built exactly
// as one for a real channel and cannot lean on the simulator's internals.
//
// The protocol, in short:
//
//	Authorization: Bearer <api key>, Paysim-Merchant: <merchant id> on every API call
//	POST /v1/trades                                create, idempotent by out_trade_no
//	GET  /v1/trades/{out_trade_no}                 query
//	POST /v1/trades/{out_trade_no}/close           close (paid: 409 trade_paid)
//	POST /v1/trades/{out_trade_no}/refunds         refund, idempotent by out_refund_no
//	GET  /v1/trades/{out_trade_no}/refunds/{no}    query a refund
//	GET  /v1/trades?status=&cursor=&limit=         list, oldest first
//	GET  /v1/statements/{YYYY-MM-DD}               the day's statement (CSV, UTC)
//	GET|POST /pay/{out_trade_no}                   the shopper's hosted page
//
// Notifications are POSTed to the notify_url as an Event, signed Stripe-style in
// Paysim-Signature over the raw body; any 2xx acknowledges one.
//
// Every outbound call goes through channel/internal/outbound, so that a timeout, a lost
// connection or a 5xx is ordercore.ErrOutcomeUnknown and never taken for a refusal.
//
// It imports only the standard library, the root package and channel/internal/outbound;
// like every channel adapter it must not import another adapter.
package sim
