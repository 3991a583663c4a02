package sim

import (
	"encoding/json"
	"time"

	"ordercore"
)

// Header names of the protocol.
const (
	// HeaderMerchant names the calling merchant on every API request; the API key in
	// Authorization must be that merchant's.
	HeaderMerchant = "Paysim-Merchant"
	// HeaderSignature carries the signature of a notification:
	// t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>[,v1=...].
	HeaderSignature = "Paysim-Signature"
)

// TradeStatus is the state of a trade at the simulator.
type TradeStatus string

// Trade statuses. They are the channel's words; ChannelPayment carries them as
// ordercore.PaymentStatus values of the same spelling.
const (
	TradePending   TradeStatus = "pending"
	TradeSucceeded TradeStatus = "succeeded"
	TradeFailed    TradeStatus = "failed"
	TradeClosed    TradeStatus = "closed"
)

// Event types of notifications.
const (
	EventTradeSucceeded  = "trade.succeeded"
	EventTradeFailed     = "trade.failed"
	EventTradeClosed     = "trade.closed"
	EventRefundSucceeded = "refund.succeeded"
	EventRefundFailed    = "refund.failed"
	EventRefundAbnormal  = "refund.abnormal"
)

// Error codes in the body of a refusal: {"code": ..., "message": ...}.
const (
	CodeTradeNotFound    = "trade_not_found"      // 404
	CodeRefundNotFound   = "refund_not_found"     // 404
	CodeTradePaid        = "trade_paid"           // 409: close or pay of a paid trade
	CodeTradeClosed      = "trade_closed"         // 409: pay of a closed or expired trade
	CodeTradeFailed      = "trade_failed"         // 409: a second "fail" of a failed trade
	CodeTradeNotPaid     = "trade_not_paid"       // 409: refund of an unpaid trade
	CodeOutTradeNoReused = "out_trade_no_reused"  // 409: same out_trade_no, other parameters
	CodeOutRefundReused  = "out_refund_no_reused" // 409: same out_refund_no, other parameters
	CodeAmbiguousTrade   = "ambiguous_trade"      // 409: a pay page whose number two merchants use
	CodeRefundExceeds    = "refund_exceeds"       // 422: more than the unrefunded paid amount
	CodeCurrencyMismatch = "currency_mismatch"    // 422
	CodeInvalidRequest   = "invalid_request"      // 422
	CodeInvalidCursor    = "invalid_cursor"       // 400
	CodeMalformedJSON    = "malformed_json"       // 400
	CodeBodyTooLarge     = "body_too_large"       // 413
	CodeInvalidAPIKey    = "invalid_api_key"      // 401
	CodeUnknownMerchant  = "unknown_merchant"     // 401
	CodeCapacity         = "capacity_exceeded"    // 507: the simulator's bounds are reached
	CodeInternal         = "internal"             // 500: the error-rate fault
)

// CreateTradeRequest is the body of POST /v1/trades. A zero ExpiresAt lets the simulator
// choose (two hours).
type CreateTradeRequest struct {
	MerchantID  string          `json:"merchant_id"`
	OutTradeNo  string          `json:"out_trade_no"`
	OrderID     string          `json:"order_id"`
	Amount      ordercore.Money `json:"amount"`
	Description string          `json:"description"`
	ExpiresAt   time.Time       `json:"expires_at,omitzero"`
	NotifyURL   string          `json:"notify_url"`
}

// Trade is the simulator's view of a trade: the answer of create, query, close and pay,
// and the data of trade.* notifications. PaidAmount is what the shopper actually paid,
// which a faulty channel may make less than Amount; Refunded counts succeeded refunds.
type Trade struct {
	MerchantID  string          `json:"merchant_id"`
	OutTradeNo  string          `json:"out_trade_no"`
	OrderID     string          `json:"order_id"`
	TxnID       string          `json:"txn_id"`
	Status      TradeStatus     `json:"status"`
	Amount      ordercore.Money `json:"amount"`
	PaidAmount  ordercore.Money `json:"paid_amount"`
	PaidAt      time.Time       `json:"paid_at,omitzero"`
	Refunded    ordercore.Money `json:"refunded"`
	Description string          `json:"description"`
	CreatedAt   time.Time       `json:"created_at"`
	ExpiresAt   time.Time       `json:"expires_at"`
}

// RefundReasonBytesMax bounds RefundRequest.Reason: the simulator refuses a longer one.
const RefundReasonBytesMax = 256

// RefundRequest is the body of POST /v1/trades/{out_trade_no}/refunds. An empty NotifyURL
// sends the refund's notification to the trade's notify_url.
type RefundRequest struct {
	OutRefundNo string          `json:"out_refund_no"`
	Amount      ordercore.Money `json:"amount"`
	Reason      string          `json:"reason"`
	NotifyURL   string          `json:"notify_url"`
}

// RefundStatus is the state of a refund at the simulator.
type RefundStatus string

// Refund statuses. The simulator never produces failed (there is no knob for it); the
// word is part of the protocol so that an adapter handles it.
const (
	RefundPending   RefundStatus = "pending"
	RefundSucceeded RefundStatus = "succeeded"
	RefundFailed    RefundStatus = "failed"
	RefundAbnormal  RefundStatus = "abnormal"
)

// Refund is the simulator's view of a refund, and the data of refund.* notifications.
type Refund struct {
	MerchantID  string          `json:"merchant_id"`
	OutTradeNo  string          `json:"out_trade_no"`
	OutRefundNo string          `json:"out_refund_no"`
	RefundID    string          `json:"refund_id"`
	Status      RefundStatus    `json:"status"`
	Amount      ordercore.Money `json:"amount"`
	Reason      string          `json:"reason"`
	CreatedAt   time.Time       `json:"created_at"`
	SettledAt   time.Time       `json:"settled_at,omitzero"`
}

// TradePage is the answer of GET /v1/trades: NextCursor is empty on the last page.
type TradePage struct {
	Trades     []Trade `json:"trades"`
	NextCursor string  `json:"next_cursor"`
}

// PayRequest is the JSON body of POST /pay/{out_trade_no}: what the shopper did.
type PayRequest struct {
	Result string `json:"result"` // PayResultSuccess or PayResultFail
}

// Shopper results on the hosted page.
const (
	PayResultSuccess = "success"
	PayResultFail    = "fail"
)

// Event is a notification's body. Data is a Trade for trade.* and a Refund for refund.*;
// it stays raw so that a receiver decodes it only after the signature is checked.
type Event struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Created time.Time       `json:"created"`
	Data    json.RawMessage `json:"data"`
}

// ErrorBody is the body of every refusal.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
