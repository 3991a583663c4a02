// Package stripe is the Stripe payment channel: it implements ordercore.Channel over
// Stripe's REST API (PaymentIntents, Refunds, the PaymentIntent Search API) and verifies
// Stripe's signed webhook events.
//
// It owns the translation between ordercore and Stripe: our OutTradeNo and OutRefundNo
// travel as Stripe Idempotency-Keys and as metadata (out_trade_no, out_refund_no), because
// Stripe names its objects itself (pi_..., re_...) and a timed-out create never tells us
// that name; amounts are converted between ordercore's ISO 4217 minor units and Stripe's
// (they differ for ISK); Stripe's statuses are mapped onto ordercore's payment and refund
// machines; and the Stripe-Signature header is checked over the raw bytes before anything
// in a notification is read.
//
// It imports only the standard library, the root package ordercore and
// ordercore/channel/internal/outbound, through which every call to Stripe goes (deadline,
// unknown-outcome mapping). In particular it does not import stripe-go: the signature
// check is a few lines of crypto/hmac, and owning it keeps the rules (several active
// secrets, a window in both directions) ours. stripe-go is used by the tests only, as an
// independent signer and verifier of test payloads.
package stripe
