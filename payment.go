package ordercore

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// PaymentStatus is the state of one payment attempt: the shopper's try to pay an order at
// one channel, identified at the channel by our OutTradeNo (the attempt's id).
//
//	created -> pending -> succeeded | failed | closed
//	unknown: a call's outcome is not known (a timeout); only a query resolves it
//
// succeeded, failed and closed are terminal at the channel, with one exception that
// channels really produce: a closed or failed trade that is paid after all (the shopper
// paid in the last second, a second successful payment) is recorded as succeeded, because
// the money moved. What happens to that money is the order's business (revive or refund).
type PaymentStatus string

// Payment attempt statuses.
const (
	PaymentCreated   PaymentStatus = "created"
	PaymentPending   PaymentStatus = "pending"
	PaymentSucceeded PaymentStatus = "succeeded"
	PaymentFailed    PaymentStatus = "failed"
	PaymentClosed    PaymentStatus = "closed"
	PaymentUnknown   PaymentStatus = "unknown"
)

// Open reports whether the attempt may still turn into money: it has not ended at the
// channel, so it must be closed there before another attempt is issued.
func (s PaymentStatus) Open() bool {
	return s == PaymentCreated || s == PaymentPending || s == PaymentUnknown
}

// RefundStatus is the state of one refund, identified at the channel by our OutRefundNo.
// pending covers "sent, answer not yet known"; abnormal is the channel's word for a refund
// it could not pay out (a closed bank card): an operator must act.
type RefundStatus string

// Refund statuses.
const (
	RefundPending   RefundStatus = "pending"
	RefundSucceeded RefundStatus = "succeeded"
	RefundFailed    RefundStatus = "failed"
	RefundAbnormal  RefundStatus = "abnormal"
)

// Terminal reports whether the refund has ended.
func (s RefundStatus) Terminal() bool { return s != RefundPending }

// Channel is a payment channel (Stripe, Alipay, WeChat Pay, the simulator). Every call that
// changes something carries our own idempotency key (OutTradeNo, OutRefundNo), so
// repeating a call after an unknown outcome is safe, and goes through a timeout.
//
// Errors are control signals:
//   - an error wrapping ErrOutcomeUnknown (a timeout, a lost connection, a 5xx) means the
//     call may or may not have taken effect: the caller records UNKNOWN and asks again
//     with a query, never with a new key;
//   - ErrTradeNotFound and ErrTradePaid are definite answers of the channel;
//   - a *ChannelError is any other definite refusal.
//
// Implementations are safe for concurrent use.
type Channel interface {
	// Name is the channel's path segment: /v1/channels/{name}/notify.
	Name() string
	// CreatePayment opens a trade for req.Amount under req.OutTradeNo and returns what the
	// shopper needs to pay it. Calling it again with the same OutTradeNo returns the same
	// trade.
	CreatePayment(ctx context.Context, req PaymentRequest) (PaymentInstructions, error)
	// QueryPayment returns the channel's view of the trade. A trade the channel does not
	// know (never created, or created by a call whose answer was lost and that never took
	// effect) is ErrTradeNotFound.
	QueryPayment(ctx context.Context, outTradeNo string) (ChannelPayment, error)
	// ClosePayment closes an unpaid trade so that it can no longer be paid. Closing a
	// closed trade succeeds; a trade the channel does not know is ErrTradeNotFound; a paid
	// trade is ErrTradePaid, and the caller must then treat the attempt as paid.
	ClosePayment(ctx context.Context, outTradeNo string) error
	// Refund asks the channel to pay req.Amount back. The same OutRefundNo is one refund.
	Refund(ctx context.Context, req RefundRequest) (ChannelRefund, error)
	// QueryRefund returns the channel's view of a refund. A refund the channel does not
	// know (its request never arrived) is ErrTradeNotFound: the caller sends it again
	// under the same OutRefundNo.
	QueryRefund(ctx context.Context, outTradeNo, outRefundNo string) (ChannelRefund, error)
	// ParseNotification authenticates an asynchronous notification from its raw bytes
	// before reading anything out of it: a forged, unsigned, stale or foreign notification
	// is an *Error (4xx) and nothing else happens.
	ParseNotification(h http.Header, body []byte, now time.Time) (Notification, error)
	// Ack writes the acknowledgement the channel expects once a notification is durably
	// recorded (Alipay: the body "success"; WeChat Pay: 204; Stripe and the simulator: 200).
	Ack(w http.ResponseWriter)
}

// Channel errors that callers act on.
var (
	ErrOutcomeUnknown = errors.New("channel: outcome unknown")
	ErrTradeNotFound  = errors.New("channel: trade not found")
	ErrTradePaid      = errors.New("channel: trade already paid")
)

// ChannelError is a definite refusal by a channel, with the channel's own code.
type ChannelError struct {
	Channel string
	Code    string
	Message string
}

func (e *ChannelError) Error() string {
	return "channel " + e.Channel + ": " + e.Code + ": " + e.Message
}

// PaymentRequest opens a trade at a channel.
type PaymentRequest struct {
	OutTradeNo  string // our payment attempt id: the channel's idempotency key
	OrderID     string
	Amount      Money
	Description string
	ExpiresAt   time.Time // the channel stops accepting payment after this
	NotifyURL   string
}

// PaymentInstructions is what the shopper needs to pay: a page to open, or parameters for
// a client SDK (a Stripe client secret, a WeChat prepay id).
type PaymentInstructions struct {
	TxnID       string            `json:"txn_id,omitempty"`
	RedirectURL string            `json:"redirect_url,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
}

// ChannelPayment is a channel's statement about a trade, from a query or a notification.
type ChannelPayment struct {
	OutTradeNo string        `json:"out_trade_no"`
	TxnID      string        `json:"txn_id,omitempty"` // the channel's transaction id, when it has one
	Status     PaymentStatus `json:"status"`           // pending, succeeded, failed or closed
	Amount     Money         `json:"amount"`           // the amount the channel says was (or is to be) paid
	PaidAt     time.Time     `json:"paid_at,omitzero"`
}

// RefundRequest asks a channel to pay money back.
type RefundRequest struct {
	OutTradeNo  string
	OutRefundNo string // our refund id: the channel's idempotency key
	Amount      Money  // this refund
	Total       Money  // the payment's amount (WeChat Pay wants both)
	Reason      string
	NotifyURL   string
}

// ChannelRefund is a channel's statement about a refund.
type ChannelRefund struct {
	OutTradeNo  string       `json:"out_trade_no"`
	OutRefundNo string       `json:"out_refund_no"`
	RefundID    string       `json:"refund_id,omitempty"`
	Status      RefundStatus `json:"status"`
	Amount      Money        `json:"amount"`
}

// Notification is an authenticated asynchronous notification: at most one of Payment and
// Refund is set; neither means an event type that moves no payment or refund, which is
// acknowledged and ignored. EventID is the channel's id of the event (the dedupe key with the
// channel's name); adapters of channels without one derive it from the signed content.
type Notification struct {
	EventID string
	Payment *ChannelPayment
	Refund  *ChannelRefund
}

// Payment is one payment attempt as ordercore records it.
type Payment struct {
	ID      string        `json:"id"` // also the OutTradeNo at the channel
	OrderID string        `json:"order_id"`
	Channel string        `json:"channel"`
	Status  PaymentStatus `json:"status"`
	Amount  Money         `json:"amount"` // the order's amount when the attempt was made
	TxnID   string        `json:"txn_id,omitempty"`
	// Accepted is set on the one successful payment that paid its order. Any other
	// successful payment of the order (a duplicate, money after close that could not revive
	// it, a wrong amount) is refunded in full.
	Accepted bool `json:"accepted"`
	// Money balances in Amount's currency, moved only by MoneyEntry rows: Captured is what
	// the channel took; Refunding is held by pending refunds; Refunded has been paid back.
	// Refunding + Refunded <= Captured, checked by the engine and by the database.
	Captured  int64 `json:"captured"`
	Refunding int64 `json:"refunding"`
	Refunded  int64 `json:"refunded"`
	// Instructions returned by the channel for the shopper.
	Instructions PaymentInstructions `json:"instructions"`
	// SyncAttempts counts the payment sync's queries in the attempt's current phase: while
	// it is open, then from zero again for the confirming step once it has ended (closed
	// or failed); NextSyncAt is when the next is due (zero when the attempt needs none).
	SyncAttempts int       `json:"sync_attempts"`
	NextSyncAt   time.Time `json:"next_sync_at"`
	Version      int64     `json:"version"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// RefundKind says why a refund exists.
type RefundKind string

// Refund kinds: requested by the merchant, or automatic for money that must not be kept.
const (
	RefundRequested RefundKind = "requested"
	RefundDuplicate RefundKind = "duplicate" // a second successful payment of a paid order
	RefundLate      RefundKind = "late"      // money after close that could not revive the order
	RefundMismatch  RefundKind = "mismatch"  // paid amount or currency differs from the order's
)

// Refund is money paid back on a payment.
type Refund struct {
	ID        string       `json:"id"` // also the OutRefundNo at the channel
	OrderID   string       `json:"order_id"`
	PaymentID string       `json:"payment_id"`
	Kind      RefundKind   `json:"kind"`
	Amount    Money        `json:"amount"`
	Reason    string       `json:"reason,omitempty"`
	Status    RefundStatus `json:"status"`
	RefundID  string       `json:"refund_id,omitempty"` // the channel's id
	// RestockLines are the order's line numbers (1-based) whose units go back on the
	// shelf when the refund succeeds: goods that never left, or came back.
	RestockLines []int     `json:"restock_lines,omitempty"`
	SyncAttempts int       `json:"sync_attempts"`
	NextSyncAt   time.Time `json:"next_sync_at"`
	Version      int64     `json:"version"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// MoneyMovement is the kind of a money ledger entry.
type MoneyMovement string

// Money movements on a payment: capture adds to Captured; a refund holds part of it
// (Refunding), then either commits it (Refunded) or releases it back.
const (
	MoneyCapture       MoneyMovement = "capture"
	MoneyRefundHold    MoneyMovement = "refund_hold"
	MoneyRefundCommit  MoneyMovement = "refund_commit"
	MoneyRefundRelease MoneyMovement = "refund_release"
)

// MoneyEntry is one immutable movement of a payment's money.
type MoneyEntry struct {
	Seq       int64
	PaymentID string
	OrderID   string
	RefundID  string // empty for captures
	Movement  MoneyMovement
	Amount    int64 // > 0, in Currency's minor units
	Currency  Currency
	At        time.Time
}

// ChannelEvent is the inbox row of one channel notification: the (channel, event id) pair
// is unique, so a notification delivered twice is applied once.
type ChannelEvent struct {
	Channel    string
	EventID    string
	PaymentID  string
	RefundID   string
	Outcome    string // what applying it did: applied, stale, orphan, ...
	ReceivedAt time.Time
}

// ReviewStatus is the state of a review item.
type ReviewStatus string

// Review item statuses.
const (
	ReviewOpen     ReviewStatus = "open"
	ReviewResolved ReviewStatus = "resolved"
)

// Review item kinds: situations only an operator can settle.
const (
	ReviewAmountMismatch  = "amount_mismatch"
	ReviewSyncExhausted   = "payment_sync_exhausted"
	ReviewRefundFailed    = "refund_failed"
	ReviewRefundAbnormal  = "refund_abnormal"
	ReviewRefundExhausted = "refund_sync_exhausted"
	ReviewOrphan          = "orphan_notification"
)

// ReviewItem is a case for an operator, with the evidence that opened it and an audit of
// who resolved it, when and why.
type ReviewItem struct {
	ID         string          `json:"id"`
	Kind       string          `json:"kind"`
	OrderID    string          `json:"order_id,omitempty"`
	PaymentID  string          `json:"payment_id,omitempty"`
	RefundID   string          `json:"refund_id,omitempty"`
	Evidence   json.RawMessage `json:"evidence"`
	Status     ReviewStatus    `json:"status"`
	Resolution string          `json:"resolution,omitempty"`
	Note       string          `json:"note,omitempty"`
	ResolvedBy string          `json:"resolved_by,omitempty"`
	ResolvedAt time.Time       `json:"resolved_at"`
	Version    int64           `json:"version"`
	CreatedAt  time.Time       `json:"created_at"`
}
