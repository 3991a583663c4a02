package httpapi

import (
	"context"
	"net/http"
	"time"

	"ordercore"
	"ordercore/internal/engine"
)

// WebhookEndpointView is an endpoint on the wire. Secret is shown when the endpoint is
// created and when it is read by id, to whoever may call the API (which, like the rest of
// ordercore's operator API, is meant for the shop's own network); listings leave it out.
type WebhookEndpointView struct {
	ID         string    `json:"id"`
	URL        string    `json:"url"`
	EventTypes []string  `json:"event_types"`
	Secret     string    `json:"secret,omitempty" doc:"Signs every delivery: Ordercore-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + \".\" + body)>; the Go package ordercore/webhook verifies it"`
	Enabled    bool      `json:"enabled"`
	Cursor     int64     `json:"cursor" doc:"Sequence number of the last event scheduled for this endpoint (0: none yet)"`
	Version    int64     `json:"version"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func endpointView(e ordercore.WebhookEndpoint, withSecret bool) WebhookEndpointView {
	v := WebhookEndpointView{ID: e.ID, URL: e.URL, EventTypes: e.EventTypes, Enabled: e.Enabled, Cursor: e.Cursor,
		Version: e.Version, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
	if withSecret {
		v.Secret = e.Secret
	}
	return v
}

type createWebhookInput struct {
	IdemKey string `header:"Idempotency-Key" maxLength:"255" doc:"A retry with the same key returns the same endpoint (and secret)"`
	Body    struct {
		URL        string   `json:"url" minLength:"1" maxLength:"2048" doc:"Absolute http:// or https:// URL the events are POSTed to"`
		EventTypes []string `json:"event_types" minItems:"1" maxItems:"32" doc:"Event types (order.paid), prefixes (order.*) or * for every event; each must match an event ordercore delivers (422 unknown_event_type lists them). Types are named as in the event feed, without the ordercore. of the CloudEvents type"`
	}
}

type webhookEndpointOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Location string `header:"Location"`
	Body     WebhookEndpointView
}

// createWebhook stores a new endpoint with a fresh secret. The bound on endpoints is the
// engine's (CreateWebhookEndpoint): checked after a keyed retry was matched, and exact.
func (s *Server) createWebhook(ctx context.Context, in *createWebhookInput) (*webhookEndpointOutput, error) {
	now := s.cfg.Clock.Now()
	cmd := engine.CreateWebhookEndpoint{ID: ordercore.NewID(now), URL: in.Body.URL, EventTypes: in.Body.EventTypes, Secret: ordercore.NewWebhookSecret()}
	if err := cmd.Validate(); err != nil {
		return nil, problemOf(err)
	}
	status, out, replayed, err := submit[ordercore.WebhookEndpoint](ctx, s, cmd, "create-webhook-endpoint", in.IdemKey, in.Body, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	return &webhookEndpointOutput{Status: status, Replayed: replayedHeader(replayed), Location: "/v1/webhook-endpoints/" + out.ID,
		Body: endpointView(out, true)}, nil
}

type webhookIDInput struct {
	ID string `path:"id" maxLength:"64"`
}

func (s *Server) getWebhook(ctx context.Context, in *webhookIDInput) (*webhookEndpointOutput, error) {
	e, err := s.cfg.Reader.WebhookEndpoint(ctx, in.ID)
	if err != nil {
		return nil, problemOf(err)
	}
	return &webhookEndpointOutput{Status: http.StatusOK, Body: endpointView(e, true)}, nil
}

type listWebhooksInput struct {
	Cursor string `query:"cursor" maxLength:"64" doc:"next_cursor of the previous page"`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50"`
}

type listWebhooksOutput struct {
	Body struct {
		Endpoints  []WebhookEndpointView `json:"endpoints" doc:"Oldest first; secrets are shown only by GET /v1/webhook-endpoints/{id}"`
		NextCursor string                `json:"next_cursor,omitempty"`
	}
}

func (s *Server) listWebhooks(ctx context.Context, in *listWebhooksInput) (*listWebhooksOutput, error) {
	if in.Cursor != "" && !ordercore.ValidID(in.Cursor) { // endpoint ids are ordercore's own
		return nil, problemOf(ordercore.Errorf(ordercore.EInvalidCursor, "cursor %q is not an endpoint id", in.Cursor))
	}
	es, err := s.cfg.Reader.ListWebhookEndpoints(ctx, in.Cursor, in.Limit+1)
	if err != nil {
		return nil, problemOf(err)
	}
	out := &listWebhooksOutput{}
	if len(es) > in.Limit {
		es = es[:in.Limit]
		out.Body.NextCursor = es[len(es)-1].ID
	}
	out.Body.Endpoints = make([]WebhookEndpointView, len(es))
	for i, e := range es {
		out.Body.Endpoints[i] = endpointView(e, false)
	}
	return out, nil
}

type updateWebhookInput struct {
	ID      string `path:"id" maxLength:"64"`
	IdemKey string `header:"Idempotency-Key" maxLength:"255"`
	Body    struct {
		URL        *string  `json:"url,omitempty" maxLength:"2048" doc:"A new absolute http(s) URL"`
		EventTypes []string `json:"event_types,omitempty" maxItems:"32" doc:"The new selection (replaces the old one), checked as at creation"`
		Enabled    *bool    `json:"enabled,omitempty" doc:"false: nothing is scheduled or sent until it is true again; then it catches up from where it stopped"`
	}
}

func (s *Server) updateWebhook(ctx context.Context, in *updateWebhookInput) (*webhookEndpointOutput, error) {
	cmd := engine.UpdateWebhookEndpoint{ID: in.ID, URL: in.Body.URL, EventTypes: in.Body.EventTypes, Enabled: in.Body.Enabled}
	if err := cmd.Validate(); err != nil {
		return nil, problemOf(err)
	}
	status, out, replayed, err := submit[ordercore.WebhookEndpoint](ctx, s, cmd, "update-webhook-endpoint "+in.ID, in.IdemKey, in.Body, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return &webhookEndpointOutput{Status: status, Replayed: replayedHeader(replayed), Body: endpointView(out, true)}, nil
}

type deleteWebhookInput struct {
	ID      string `path:"id" maxLength:"64"`
	IdemKey string `header:"Idempotency-Key" maxLength:"255" doc:"A retry with the same key answers the same 200 instead of 404"`
}

// deleteWebhook deletes an endpoint and its deliveries; the answer is the endpoint as it
// was, without its secret.
func (s *Server) deleteWebhook(ctx context.Context, in *deleteWebhookInput) (*webhookEndpointOutput, error) {
	cmd := engine.DeleteWebhookEndpoint{ID: in.ID}
	status, out, replayed, err := submit[ordercore.WebhookEndpoint](ctx, s, cmd, "delete-webhook-endpoint "+in.ID, in.IdemKey, struct{}{}, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return &webhookEndpointOutput{Status: status, Replayed: replayedHeader(replayed), Body: endpointView(out, false)}, nil
}

type listDeliveriesInput struct {
	ID     string `path:"id" maxLength:"64"`
	Status string `query:"status" enum:"pending,delivered,dead," doc:"Only deliveries in this status; dead is the endpoint's dead-letter list"`
	Cursor string `query:"cursor" maxLength:"64" doc:"next_cursor of the previous page"`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50"`
}

type listDeliveriesOutput struct {
	Body struct {
		Deliveries []ordercore.WebhookDelivery `json:"deliveries" doc:"Newest first"`
		NextCursor string                      `json:"next_cursor,omitempty"`
	}
}

func (s *Server) listDeliveries(ctx context.Context, in *listDeliveriesInput) (*listDeliveriesOutput, error) {
	if in.Cursor != "" && !ordercore.ValidID(in.Cursor) { // delivery ids are ordercore's own
		return nil, problemOf(ordercore.Errorf(ordercore.EInvalidCursor, "cursor %q is not a delivery id", in.Cursor))
	}
	if _, err := s.cfg.Reader.WebhookEndpoint(ctx, in.ID); err != nil {
		return nil, problemOf(err)
	}
	ds, err := s.cfg.Reader.ListWebhookDeliveries(ctx, in.ID, ordercore.WebhookStatus(in.Status), in.Cursor, in.Limit+1)
	if err != nil {
		return nil, problemOf(err)
	}
	out := &listDeliveriesOutput{}
	if len(ds) > in.Limit {
		ds = ds[:in.Limit]
		out.Body.NextCursor = ds[len(ds)-1].ID
	}
	out.Body.Deliveries = ds
	return out, nil
}

type redeliverInput struct {
	ID      string `path:"id" maxLength:"64"`
	IdemKey string `header:"Idempotency-Key" maxLength:"255"`
	Body    struct {
		By   string `json:"by" minLength:"1" maxLength:"64" doc:"The operator: kept in the audit (a webhook.redelivered event)"`
		Note string `json:"note" minLength:"1" maxLength:"500" doc:"Why: kept in the audit"`
	}
}

type deliveryOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Body     ordercore.WebhookDelivery
}

// redeliver sends a delivery again: a dead or delivered one gets a fresh schedule, a
// pending one is made due now. The deliverer sends it within its poll interval.
func (s *Server) redeliver(ctx context.Context, in *redeliverInput) (*deliveryOutput, error) {
	cmd := engine.RedeliverWebhook{DeliveryID: in.ID, By: in.Body.By, Note: in.Body.Note}
	if err := cmd.Validate(); err != nil {
		return nil, problemOf(err)
	}
	status, out, replayed, err := submit[ordercore.WebhookDelivery](ctx, s, cmd, "redeliver-webhook "+in.ID, in.IdemKey, in.Body, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return &deliveryOutput{Status: status, Replayed: replayedHeader(replayed), Body: out}, nil
}
