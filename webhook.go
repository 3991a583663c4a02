package ordercore

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"
)

// A WebhookEndpoint is a URL that receives ordercore's events as signed HTTP POSTs. Its
// deliveries are driven from the events table, never fired from a request: the deliverer
// reads the feed after the endpoint's Cursor, and one transaction records a delivery for
// each matching event and moves the Cursor past them, so a crash never skips an event or
// schedules one twice.
type WebhookEndpoint struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// EventTypes selects the events: an exact type ("order.paid"), a prefix ending in
	// ".*" ("order.*": every order event) or "*" (every event). The webhook.* events of
	// endpoints themselves are never delivered.
	EventTypes []string `json:"event_types"`
	// Secret signs every delivery (HMAC-SHA256, package webhook). It is 32 random bytes in
	// hex, generated at creation; the API shows it to the endpoint's owner.
	Secret string `json:"secret"`
	// Enabled endpoints get deliveries. A disabled one gets none scheduled or sent; enabled
	// again, it catches up from its Cursor (nothing in between is skipped).
	Enabled bool `json:"enabled"`
	// Cursor is the Seq of the last event this endpoint has been scheduled for. Zero: not
	// positioned yet; the deliverer starts it at the endpoint's own creation event, so an
	// endpoint gets the events that happen after it was created.
	Cursor    int64     `json:"cursor"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Matches reports whether the endpoint subscribes to events of type typ.
func (e *WebhookEndpoint) Matches(typ string) bool {
	for _, t := range e.EventTypes {
		switch {
		case t == "*":
			return true
		case strings.HasSuffix(t, ".*"):
			if strings.HasPrefix(typ, t[:len(t)-1]) {
				return true
			}
		case t == typ:
			return true
		}
	}
	return false
}

// WebhookEventTypes lists the types of the events webhooks deliver, which an endpoint's
// EventTypes must name or prefix: the types, as the feed and EventTypes name them,
// without the "ordercore." that a delivery's CloudEvents type carries. It is every
// event type but the webhook aggregate's own (never delivered) and order.pending_payment
// (no transition leads there; an order starts with order.placed).
func WebhookEventTypes() []string {
	out := []string{EventSKUCreated, EventSKURestocked, EventOrderPlaced}
	for _, s := range OrderStatuses {
		if s != OrderPendingPayment {
			out = append(out, OrderEventType(s))
		}
	}
	return append(out, EventOrderFulfilment,
		EventPaymentStarted, EventPaymentPending, EventPaymentUnknown, EventPaymentSucceeded, EventPaymentFailed,
		EventPaymentClosed, EventPaymentMismatch,
		EventRefundRequested, EventRefundSucceeded, EventRefundFailed, EventRefundAbnormal,
		EventReviewOpened, EventReviewResolved,
		EventStockHeld, EventHoldCommitted, EventHoldReleased,
		EventSagaSubmitted, EventSagaStep, EventSagaStatus, EventSagaOperator, EventSagaBranchAdded, EventSagaNotify,
		EventReconciliationCompleted)
}

// Delivers reports whether an event may go to endpoints at all: the webhook aggregate's
// own events (an endpoint created, a delivery redelivered or dead) never do, so that
// delivering can never feed itself.
func (e Event) Delivers() bool { return e.AggregateType != AggregateWebhook }

// NewWebhookSecret returns a fresh endpoint secret: 32 random bytes in hex.
func NewWebhookSecret() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// WebhookStatus is where a delivery is.
type WebhookStatus string

// Delivery statuses: pending (waiting for its next attempt), delivered (a 2xx answered)
// and dead (every step of the retry schedule failed: the endpoint's dead-letter list,
// until an operator redelivers it).
const (
	WebhookPending   WebhookStatus = "pending"
	WebhookDelivered WebhookStatus = "delivered"
	WebhookDead      WebhookStatus = "dead"
)

// Valid reports whether s is a delivery status.
func (s WebhookStatus) Valid() bool {
	return s == WebhookPending || s == WebhookDelivered || s == WebhookDead
}

// WebhookDelivery is one event owed to one endpoint, and what its attempts did.
type WebhookDelivery struct {
	ID         string        `json:"id"`
	EndpointID string        `json:"endpoint_id"`
	EventID    string        `json:"event_id"`
	EventSeq   int64         `json:"event_seq"`
	EventType  string        `json:"event_type"`
	Status     WebhookStatus `json:"status"`
	// Attempts counts the POSTs made since the delivery was scheduled or redelivered.
	Attempts int `json:"attempts"`
	// NextAttemptAt is when the delivery is due (only while pending; while an attempt is
	// in flight it is the end of the deliverer's claim).
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	// LastStatus is the HTTP status of the last attempt (0: no answer); LastError says
	// what failed.
	LastStatus  int       `json:"last_status,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"` // the last 2xx
}

// WebhookDue asks DueWebhookDeliveries for at most Max due deliveries of one endpoint.
type WebhookDue struct {
	EndpointID string
	Max        int
}

// WebhookEndpointChange rewrites an endpoint if its stored version is still FromVersion.
type WebhookEndpointChange struct {
	Endpoint    WebhookEndpoint
	FromVersion int64
}

// WebhookEndpointDeletion deletes an endpoint and its deliveries if the endpoint's stored
// version is still FromVersion.
type WebhookEndpointDeletion struct {
	ID          string
	FromVersion int64
}

// WebhookDeliveryChange rewrites a delivery if its stored version is still FromVersion.
type WebhookDeliveryChange struct {
	Delivery    WebhookDelivery
	FromVersion int64
}

// Webhook events: the audit of endpoints and of operators' redeliveries, on the
// endpoint's timeline (aggregate id = endpoint id). They are never delivered as webhooks.
const (
	AggregateWebhook         = "webhook"
	EventWebhookCreated      = "webhook.endpoint_created"
	EventWebhookUpdated      = "webhook.endpoint_updated"
	EventWebhookDeleted      = "webhook.endpoint_deleted"
	EventWebhookRedelivered  = "webhook.redelivered"
	EventWebhookDeliveryDead = "webhook.delivery_dead"
)

// WebhookEndpointEvent is the data of webhook.endpoint_created and endpoint_updated (the
// secret is never in an event).
type WebhookEndpointEvent struct {
	URL        string   `json:"url"`
	EventTypes []string `json:"event_types"`
	Enabled    bool     `json:"enabled"`
}

// WebhookDeliveryEvent is the data of webhook.redelivered and webhook.delivery_dead.
type WebhookDeliveryEvent struct {
	DeliveryID string `json:"delivery_id"`
	EventID    string `json:"event_id"`
	EventType  string `json:"event_type"`
	Attempts   int    `json:"attempts"`
	LastStatus int    `json:"last_status,omitempty"`
	LastError  string `json:"last_error,omitempty"`
	By         string `json:"by,omitempty"`
	Note       string `json:"note,omitempty"`
}
