package ordercore

import (
	"errors"
	"fmt"
)

// Error codes that a client may see. They are stable: clients switch on them, so a code is
// never renamed; new situations get new codes. Each maps to one HTTP status in httpapi.
const (
	ECONFLICT          = "conflict"               // 409, generic state conflict
	EINTERNAL          = "internal"               // 500, never carries internal detail
	EINVALID           = "invalid_request"        // 422, generic validation failure
	ENOTFOUND          = "not_found"              // 404
	EOVERLOADED        = "overloaded"             // 503 with Retry-After
	ERateLimited       = "rate_limited"           // 429 with Retry-After: the caller's rate is over its limit
	EInsufficientStock = "insufficient_stock"     // 409
	EIllegalTransition = "illegal_transition"     // 409
	EUnknownSKU        = "unknown_sku"            // 422
	ESKUExists         = "sku_exists"             // 409
	ECurrencyMismatch  = "currency_mismatch"      // 422
	EAmountMismatch    = "amount_mismatch"        // 422
	EInvalidQuantity   = "invalid_quantity"       // 422
	ETooManyLines      = "too_many_lines"         // 422
	EInvalidCurrency   = "invalid_currency"       // 422
	EUnknownField      = "unknown_field"          // 422
	EMalformedJSON     = "malformed_json"         // 400
	EBodyTooLarge      = "body_too_large"         // 413
	EIdemKeyReused     = "idempotency_key_reused" // 422
	EIdemKeyInUse      = "idempotency_key_in_use" // 409
	EInvalidIdemKey    = "invalid_idempotency_key"
	EStockOverflow     = "stock_overflow"     // 422
	EInvalidCursor     = "invalid_cursor"     // 400
	EUnavailable       = "unavailable"        // 503, storage failed; nothing was acknowledged
	EMethodNotAllowed  = "method_not_allowed" // 405, with Allow: the path takes other methods
	// 415: a body declared as another media type than JSON
	EUnsupportedMediaType = "unsupported_media_type"

	// Payment notifications: each is rejected before any state is read.
	EInvalidSignature      = "invalid_signature"      // 401: missing, forged or probe signature
	EStaleNotification     = "stale_notification"     // 401: timestamp outside the channel's window
	EMerchantMismatch      = "merchant_mismatch"      // 403: another merchant's or app's notification
	EMalformedNotification = "malformed_notification" // 400: authentic bytes we cannot read
	EUnknownChannel        = "unknown_channel"        // 404

	// Payments and refunds.
	EChannelUnavailable = "channel_unavailable"    // 503: the channel did not answer; retry later
	EChannelRefused     = "channel_refused"        // 502: the channel refused the call
	EPaymentInProgress  = "payment_in_progress"    // 409: an attempt's outcome is still unknown
	ERefundExceeds      = "refund_exceeds_payment" // 422: more than what remains refundable
	ENotPaid            = "order_not_paid"         // 409: refund of an order with no capture
	ENothingToPay       = "nothing_to_pay"         // 422: a channel payment of an order that costs nothing
	EReviewResolved     = "review_item_resolved"   // 409
	// 422: reconciliation of a channel that publishes no daily statement
	ENoStatements = "statements_unsupported"

	// Sagas and TCC.
	ESagaExists = "saga_exists" // 409: a saga with this gid was submitted already
	ESagaState  = "saga_state"  // 409: the operation does not apply in the saga's status
	// 422: the gid begins with a prefix only ordercore gives its own sagas (fulfilment-)
	ESagaGIDReserved = "saga_gid_reserved"

	// Stock as a TCC participant: the branches answer every refusal as 409 with
	// dtm_result FAILURE, the way DTM reads it (httpapi/tcc.go).
	EInvalidBranch = "invalid_branch" // gid, branch_id, trans_type or op unusable
	EHangingTry    = "hanging_try"    // 409: the branch was cancelled before its try came
	EHoldState     = "hold_state"     // 409: the hold's status forbids the operation

	// Webhooks.
	EInvalidWebhookURL = "invalid_webhook_url"        // 422: not an absolute http(s) URL
	EInvalidEventTypes = "invalid_event_types"        // 422: empty, malformed or too many
	ETooManyWebhooks   = "too_many_webhook_endpoints" // 422: limit.WebhookEndpointsMax reached
	// 422: the URL names a host deliveries may not go to (loopback, private, link-local...)
	EWebhookURLNotAllowed = "webhook_url_not_allowed"
	// 422: an event type or prefix that matches none of WebhookEventTypes
	EUnknownEventType = "unknown_event_type"
)

// Error is an application error: its Code and Message are safe to show to a client.
// Anything that is not an *Error is internal and reaches clients only as EINTERNAL.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("ordercore error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an application error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of an application error, or EINTERNAL for anything else.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of an application error, or "internal error".
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
