package ordercore

import (
	"encoding/json"
	"time"
)

// Event is one row of the events table: the outbox, the audit timeline and the source for
// rebuilding projections. Seq is the global order of commits; it is assigned by the store.
type Event struct {
	Seq           int64           `json:"seq"`
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	AggregateType string          `json:"aggregate_type"`
	AggregateID   string          `json:"aggregate_id"`
	Time          time.Time       `json:"time"`
	Data          json.RawMessage `json:"data"`
}

// Aggregate types.
const (
	AggregateOrder  = "order"
	AggregateSKU    = "sku"
	AggregateReview = "review"
)

// Event types. Order transitions are named "order." + the target status.
const (
	EventSKUCreated   = "sku.created"
	EventSKURestocked = "sku.restocked"
	EventOrderPlaced  = "order.placed"

	// Payment and refund events are on the order's timeline (aggregate "order", the
	// order's id); they do not move the order themselves: the order.* event does.
	EventPaymentStarted   = "payment.started"
	EventPaymentPending   = "payment.pending"
	EventPaymentUnknown   = "payment.unknown"
	EventPaymentSucceeded = "payment.succeeded" // money taken; see Note for duplicates and late money
	EventPaymentFailed    = "payment.failed"
	EventPaymentClosed    = "payment.closed"
	EventPaymentMismatch  = "payment.amount_mismatch"
	EventRefundRequested  = "refund.requested"
	EventRefundSucceeded  = "refund.succeeded"
	EventRefundFailed     = "refund.failed"
	EventRefundAbnormal   = "refund.abnormal"
	EventReviewOpened     = "review.opened"
	EventReviewResolved   = "review.resolved"
)

// PaymentEvent is the data of the payment.* events.
type PaymentEvent struct {
	PaymentID string        `json:"payment_id"`
	Channel   string        `json:"channel"`
	Status    PaymentStatus `json:"status"`
	Amount    Money         `json:"amount"`
	Paid      *Money        `json:"paid,omitempty"` // what the channel reported paid
	TxnID     string        `json:"txn_id,omitempty"`
	// Source is what told us: notify, query, close, create.
	Source string `json:"source,omitempty"`
	// Note says what the money did to the order: paid, revived, duplicate, late, mismatch.
	Note string `json:"note,omitempty"`
}

// RefundEvent is the data of the refund.* events.
type RefundEvent struct {
	RefundID  string       `json:"refund_id"`
	PaymentID string       `json:"payment_id"`
	Kind      RefundKind   `json:"kind"`
	Amount    Money        `json:"amount"`
	Status    RefundStatus `json:"status"`
	Reason    string       `json:"reason,omitempty"`
	// RestockLines, on refund.succeeded, are the lines whose units went back on the shelf.
	RestockLines []int `json:"restock_lines,omitempty"`
}

// ReviewEvent is the data of the review.* events, the audit of the review queue.
type ReviewEvent struct {
	Kind       string `json:"kind"`
	OrderID    string `json:"order_id,omitempty"`
	PaymentID  string `json:"payment_id,omitempty"`
	RefundID   string `json:"refund_id,omitempty"`
	Resolution string `json:"resolution,omitempty"`
	Note       string `json:"note,omitempty"`
	By         string `json:"by,omitempty"`
}

// OrderEventType returns the event type of a transition into s.
func OrderEventType(s OrderStatus) string { return "order." + string(s) }

// SKUCreated is the data of a sku.created event.
type SKUCreated struct {
	Name  string `json:"name"`
	Price Money  `json:"price"`
	Stock int64  `json:"stock"`
}

// SKURestocked is the data of a sku.restocked event.
type SKURestocked struct {
	Quantity int64 `json:"quantity"`
	Total    int64 `json:"total"`
}

// OrderPlaced is the data of an order.placed event: everything needed to rebuild the order.
type OrderPlaced struct {
	UserID    string    `json:"user_id"`
	Amount    Money     `json:"amount"`
	Lines     []Line    `json:"lines"`
	ExpiresAt time.Time `json:"expires_at"`
	Version   int64     `json:"version"`
}

// OrderTransitioned is the data of every order event after order.placed.
type OrderTransitioned struct {
	From    OrderStatus     `json:"from"`
	To      OrderStatus     `json:"to"`
	Version int64           `json:"version"`
	Reason  string          `json:"reason,omitempty"`
	Payment *PaymentApplied `json:"payment,omitempty"`
}

// PaymentApplied records the money that moved an order to paid.
type PaymentApplied struct {
	Channel   string `json:"channel"`
	Reference string `json:"reference"`
	Amount    Money  `json:"amount"`
}

// CloudEvent is the CloudEvents 1.0 JSON envelope in which events leave ordercore (feed,
// broker, webhooks). Sequence is an extension attribute carrying the global position.
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Sequence        int64           `json:"sequence"`
	Data            json.RawMessage `json:"data"`
}

// EventSource is the CloudEvents source attribute of every ordercore event.
const EventSource = "/ordercore"

// Envelope wraps e in its CloudEvents form. Types get the reverse-DNS prefix CloudEvents
// recommends ("ordercore.order.paid").
func (e Event) Envelope() CloudEvent {
	return CloudEvent{
		SpecVersion: "1.0", ID: e.ID, Source: EventSource + "/" + e.AggregateType + "s",
		Type: "ordercore." + e.Type, Subject: e.AggregateID, Time: e.Time,
		DataContentType: "application/json", Sequence: e.Seq, Data: e.Data,
	}
}
