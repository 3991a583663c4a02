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
	AggregateOrder = "order"
	AggregateSKU   = "sku"
)

// Event types. Order transitions are named "order." + the target status.
const (
	EventSKUCreated   = "sku.created"
	EventSKURestocked = "sku.restocked"
	EventOrderPlaced  = "order.placed"
)

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
