package engine

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"ordercore"
	"ordercore/internal/limit"
)

// Webhook commands: endpoints are created and changed, events are scheduled to them, and
// every attempt of a delivery is recorded, all through the committer. Scheduling is the
// part that must never skip or repeat: one ScheduleWebhooks writes an endpoint's
// deliveries and moves its cursor past them in one transaction, and refuses to schedule
// an event at or below the cursor, so a deliverer that crashes between reading the feed
// and committing, or that runs twice, schedules each event exactly once (the store's
// unique (endpoint, event) index is the other half of that pair).

type webhookKeys struct {
	endpoints  map[string]struct{}
	deliveries map[string]struct{}
	count      bool // the batch creates endpoints: count those stored
}

func (k *webhookKeys) wanted() bool { return len(k.endpoints)+len(k.deliveries) > 0 || k.count }

func (k *webhookKeys) endpoint(id string) {
	if k.endpoints == nil {
		k.endpoints = map[string]struct{}{}
	}
	k.endpoints[id] = struct{}{}
}

func (k *webhookKeys) delivery(id string) {
	if k.deliveries == nil {
		k.deliveries = map[string]struct{}{}
	}
	k.deliveries[id] = struct{}{}
}

type endpointState struct {
	origVersion int64
	cur         ordercore.WebhookEndpoint
	isNew       bool
	deleted     bool // by DeleteWebhookEndpoint: the rest of the batch sees no endpoint
}

// liveEndpoint is the batch's endpoint id, unless there is none or it was deleted.
func (b *batch) liveEndpoint(id string) (*endpointState, bool) {
	e, ok := b.webhookEndpoints[id]
	return e, ok && !e.deleted
}

type deliveryState struct {
	origVersion int64
	cur         ordercore.WebhookDelivery
	isNew       bool
}

// webhookState is the batch's working state of webhook rows.
type webhookState struct {
	webhookEndpoints  map[string]*endpointState
	webhookDeliveries map[string]*deliveryState
	storedEndpoints   int // endpoints in the store when the batch began (counted if it creates one)
}

func (b *batch) loadWebhooks(ctx context.Context, tx ordercore.WriteTx, k *keySet) error {
	b.webhookEndpoints, b.webhookDeliveries = map[string]*endpointState{}, map[string]*deliveryState{}
	if len(k.webhooks.deliveries) > 0 {
		got, err := tx.WebhookDeliveries(ctx, list(k.webhooks.deliveries))
		if err != nil {
			return fmt.Errorf("load webhook deliveries: %w", err)
		}
		for id, d := range got {
			b.webhookDeliveries[id] = &deliveryState{origVersion: d.Version, cur: d}
		}
	}
	if len(k.webhooks.endpoints) > 0 {
		got, err := tx.WebhookEndpoints(ctx, list(k.webhooks.endpoints))
		if err != nil {
			return fmt.Errorf("load webhook endpoints: %w", err)
		}
		for id, e := range got {
			b.webhookEndpoints[id] = &endpointState{origVersion: e.Version, cur: e}
		}
	}
	if k.webhooks.count {
		n, err := tx.WebhookEndpointCount(ctx)
		if err != nil {
			return fmt.Errorf("count webhook endpoints: %w", err)
		}
		b.storedEndpoints = n
	}
	return nil
}

func (b *batch) webhookChanges(cs *ordercore.Changeset) {
	for _, id := range sortedKeys(b.webhookEndpoints) {
		e := b.webhookEndpoints[id]
		if e.deleted {
			if !e.isNew {
				cs.DeletedWebhookEndpoints = append(cs.DeletedWebhookEndpoints, ordercore.WebhookEndpointDeletion{ID: id, FromVersion: e.origVersion})
			}
			continue
		}
		if e.isNew {
			cs.NewWebhookEndpoints = append(cs.NewWebhookEndpoints, e.cur)
		} else if e.cur.Version != e.origVersion {
			limit.Assert(e.cur.Version > e.origVersion, "webhook endpoint %s version went back", id)
			cs.WebhookEndpointChanges = append(cs.WebhookEndpointChanges, ordercore.WebhookEndpointChange{Endpoint: e.cur, FromVersion: e.origVersion})
		}
	}
	for _, id := range sortedKeys(b.webhookDeliveries) {
		d := b.webhookDeliveries[id]
		if e, ok := b.webhookEndpoints[d.cur.EndpointID]; ok && e.deleted {
			continue // deleted with its endpoint
		}
		if d.isNew {
			cs.NewWebhookDeliveries = append(cs.NewWebhookDeliveries, d.cur)
		} else if d.cur.Version != d.origVersion {
			limit.Assert(d.cur.Version > d.origVersion, "webhook delivery %s version went back", id)
			cs.WebhookDeliveryChanges = append(cs.WebhookDeliveryChanges, ordercore.WebhookDeliveryChange{Delivery: d.cur, FromVersion: d.origVersion})
		}
	}
}

// touch marks a row changed in this batch: its version rises once per batch.
func (e *endpointState) touch(now time.Time) {
	if !e.isNew && e.cur.Version == e.origVersion {
		e.cur.Version++
	}
	e.cur.UpdatedAt = now
}

func (d *deliveryState) touch(now time.Time) {
	if !d.isNew && d.cur.Version == d.origVersion {
		d.cur.Version++
	}
	d.cur.UpdatedAt = now
}

func (b *batch) endpointEvent(e *ordercore.WebhookEndpoint, typ string) {
	b.event(ordercore.AggregateWebhook, e.ID, typ, ordercore.WebhookEndpointEvent{URL: e.URL, EventTypes: e.EventTypes, Enabled: e.Enabled})
}

func (b *batch) deliveryEvent(d *ordercore.WebhookDelivery, typ, by, note string) {
	b.event(ordercore.AggregateWebhook, d.EndpointID, typ, ordercore.WebhookDeliveryEvent{DeliveryID: d.ID, EventID: d.EventID,
		EventType: d.EventType, Attempts: d.Attempts, LastStatus: d.LastStatus, LastError: d.LastError, By: by, Note: note})
}

// ValidWebhookURL checks an endpoint URL: absolute http or https with a host, no
// credentials (they would sit in logs and in the console), no fragment, at most
// limit.WebhookURLBytesMax bytes.
func ValidWebhookURL(raw string) error {
	if raw == "" || len(raw) > limit.WebhookURLBytesMax {
		return ordercore.Errorf(ordercore.EInvalidWebhookURL, "url must be 1..%d bytes", limit.WebhookURLBytesMax)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return ordercore.Errorf(ordercore.EInvalidWebhookURL, "url %q does not parse", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return ordercore.Errorf(ordercore.EInvalidWebhookURL, "url must be absolute http:// or https://, not %q", raw)
	case u.Host == "" || u.Hostname() == "":
		return ordercore.Errorf(ordercore.EInvalidWebhookURL, "url %q names no host", raw)
	case u.User != nil:
		return ordercore.Errorf(ordercore.EInvalidWebhookURL, "url must not carry credentials; receivers check the signature instead")
	case u.Fragment != "" || u.RawFragment != "":
		return ordercore.Errorf(ordercore.EInvalidWebhookURL, "url must not have a fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return ordercore.Errorf(ordercore.EInvalidWebhookURL, "url port %q is not 1..65535", p)
		}
	}
	return nil
}

// WebhookAddrRefused says why deliveries may not go to the address ip, or "" if they
// may. Loopback, link-local (169.254.169.254, the cloud metadata service, among them),
// private (RFC 1918, 100.64.0.0/10, fc00::/7), unspecified (0.0.0.0/8, ::), broadcast and
// multicast addresses are refused: an endpoint is a URL anyone who may call the API can
// set, and must not make ordercore call into its own host or network. allowPrivate lets
// loopback and private addresses through, for receivers on the premises; the others are
// never a receiver.
func WebhookAddrRefused(ip netip.Addr, allowPrivate bool) string {
	ip = ip.Unmap().WithZone("")
	switch {
	case !ip.IsValid():
		return "not an address"
	case ip.IsUnspecified() || ip.Is4() && ip.As4()[0] == 0:
		return "unspecified"
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast():
		return "link-local"
	case ip.IsMulticast() || ip.IsInterfaceLocalMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "multicast or broadcast"
	case allowPrivate:
		return ""
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate() || sharedAddressSpace.Contains(ip):
		return "private"
	}
	return ""
}

// sharedAddressSpace is RFC 6598's carrier-grade NAT range, private in all but name.
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// CheckWebhookTarget refuses, when the endpoint is created or changed, a URL whose host
// is an address WebhookAddrRefused refuses or is localhost: names are resolved only when
// a delivery dials, and are checked there (so a name that later resolves elsewhere is
// caught too); this reports the plain cases at once.
func CheckWebhookTarget(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return ordercore.Errorf(ordercore.EInvalidWebhookURL, "url %q does not parse", raw)
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	why := ""
	if ip, err := netip.ParseAddr(host); err == nil {
		why = WebhookAddrRefused(ip, allowPrivate)
	} else if (host == "localhost" || strings.HasSuffix(host, ".localhost")) && !allowPrivate {
		why = "loopback"
	}
	if why != "" {
		return ordercore.Errorf(ordercore.EWebhookURLNotAllowed, "url host %s is %s; webhooks go only to public addresses%s", u.Hostname(), why, privateHint(allowPrivate, why))
	}
	return nil
}

func privateHint(allowPrivate bool, why string) string {
	if allowPrivate || (why != "loopback" && why != "private") {
		return ""
	}
	return " (serve --webhook-allow-private allows private and loopback receivers)"
}

// eventTypePattern is an event type ("order.paid"), a prefix of them ("order.*"), or "*".
var eventTypePattern = regexp.MustCompile(`^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$`)

// ValidEventTypes checks an endpoint's selection and returns it without repeats: each is
// "*", a type of ordercore.WebhookEventTypes, or a prefix ("order.*") of at least one of
// them; anything else could never match, and is refused (unknown_event_type, listing
// what may be given).
func ValidEventTypes(types []string) ([]string, error) {
	if len(types) == 0 || len(types) > limit.WebhookEventTypesMax {
		return nil, ordercore.Errorf(ordercore.EInvalidEventTypes, "event_types must name 1..%d types (\"*\" for all)", limit.WebhookEventTypesMax)
	}
	out := make([]string, 0, len(types))
	for _, t := range types {
		if len(t) > limit.WebhookEventTypeBytesMax || !eventTypePattern.MatchString(t) {
			return nil, ordercore.Errorf(ordercore.EInvalidEventTypes,
				"event type %.80q is not a type (order.paid), a prefix (order.*) or * (at most %d bytes)", t, limit.WebhookEventTypeBytesMax)
		}
		if !knownEventType(t) {
			hint := ""
			if strings.HasPrefix(t, "ordercore.") {
				hint = ` (name types without the "ordercore." of the CloudEvents type, e.g. ` + strings.TrimPrefix(t, "ordercore.") + ")"
			}
			return nil, ordercore.Errorf(ordercore.EUnknownEventType, "event type %.80q matches no event ordercore delivers%s; give * or one of %s, or a prefix of them: %s",
				t, hint, strings.Join(ordercore.WebhookEventTypes(), ", "), strings.Join(eventTypePrefixes(), ", "))
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// knownEventType reports whether the selection t matches at least one event type
// webhooks deliver.
func knownEventType(t string) bool {
	e := ordercore.WebhookEndpoint{EventTypes: []string{t}}
	return slices.ContainsFunc(ordercore.WebhookEventTypes(), e.Matches)
}

// eventTypePrefixes lists the prefixes ("order.*") of the delivered event types.
func eventTypePrefixes() []string {
	var out []string
	for _, t := range ordercore.WebhookEventTypes() {
		if i := strings.Index(t, "."); i > 0 && !slices.Contains(out, t[:i]+".*") {
			out = append(out, t[:i]+".*")
		}
	}
	return out
}

var secretPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// CreateWebhookEndpoint stores a new, enabled endpoint, unless limit.WebhookEndpointsMax
// are stored already (counted in the batch, after an Idempotency-Key was matched: a keyed
// retry replays its endpoint however many there are now). The caller draws ID and Secret
// (ordercore.NewID, ordercore.NewWebhookSecret), so that a keyed retry replays the first
// endpoint. Result: ordercore.WebhookEndpoint, secret included.
type CreateWebhookEndpoint struct {
	ID         string
	URL        string
	EventTypes []string
	Secret     string
}

func (c CreateWebhookEndpoint) keys(k *keySet) {
	k.webhooks.endpoint(c.ID)
	k.webhooks.count = true
}

// Validate checks what needs no database.
func (c CreateWebhookEndpoint) Validate() error {
	if err := ValidWebhookURL(c.URL); err != nil {
		return err
	}
	if _, err := ValidEventTypes(c.EventTypes); err != nil {
		return err
	}
	limit.Assert(c.ID != "" && len(c.ID) <= limit.IDBytesMax, "webhook endpoint id %q", c.ID)
	limit.Assert(secretPattern.MatchString(c.Secret), "webhook secret is not 32 bytes of hex")
	return nil
}

func (c CreateWebhookEndpoint) execute(b *batch) (any, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := CheckWebhookTarget(c.URL, b.cfg.WebhookAllowPrivate); err != nil {
		return nil, err
	}
	if _, ok := b.webhookEndpoints[c.ID]; ok {
		return nil, ordercore.Errorf(ordercore.ECONFLICT, "webhook endpoint %q exists", c.ID)
	}
	n := b.storedEndpoints
	for _, e := range b.webhookEndpoints {
		switch {
		case e.isNew && !e.deleted:
			n++ // created earlier in this batch
		case !e.isNew && e.deleted:
			n-- // deleted earlier in this batch
		}
	}
	if n >= limit.WebhookEndpointsMax {
		return nil, ordercore.Errorf(ordercore.ETooManyWebhooks, "at most %d webhook endpoints; disable or reuse one", limit.WebhookEndpointsMax)
	}
	types, _ := ValidEventTypes(c.EventTypes)
	e := ordercore.WebhookEndpoint{ID: c.ID, URL: c.URL, EventTypes: types, Secret: c.Secret, Enabled: true,
		Version: 1, CreatedAt: b.now, UpdatedAt: b.now}
	b.webhookEndpoints[e.ID] = &endpointState{cur: e, isNew: true}
	b.endpointEvent(&e, ordercore.EventWebhookCreated)
	return e, nil
}

// UpdateWebhookEndpoint changes what is set: the URL, the event types, enabled. Nothing
// that differs from the stored endpoint changes nothing. Result: ordercore.WebhookEndpoint.
type UpdateWebhookEndpoint struct {
	ID         string
	URL        *string
	EventTypes []string // nil: unchanged
	Enabled    *bool
}

func (c UpdateWebhookEndpoint) keys(k *keySet) { k.webhooks.endpoint(c.ID) }

// Validate checks what needs no database.
func (c UpdateWebhookEndpoint) Validate() error {
	if c.URL == nil && c.EventTypes == nil && c.Enabled == nil {
		return ordercore.Errorf(ordercore.EINVALID, "nothing to change: give url, event_types or enabled")
	}
	if c.URL != nil {
		if err := ValidWebhookURL(*c.URL); err != nil {
			return err
		}
	}
	if c.EventTypes != nil {
		if _, err := ValidEventTypes(c.EventTypes); err != nil {
			return err
		}
	}
	return nil
}

func (c UpdateWebhookEndpoint) execute(b *batch) (any, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	e, ok := b.liveEndpoint(c.ID)
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "webhook endpoint %q not found", c.ID)
	}
	if c.URL != nil {
		if err := CheckWebhookTarget(*c.URL, b.cfg.WebhookAllowPrivate); err != nil {
			return nil, err
		}
	}
	next := e.cur
	if c.URL != nil {
		next.URL = *c.URL
	}
	if c.EventTypes != nil {
		next.EventTypes, _ = ValidEventTypes(c.EventTypes)
	}
	if c.Enabled != nil {
		next.Enabled = *c.Enabled
	}
	if next.URL == e.cur.URL && next.Enabled == e.cur.Enabled && slices.Equal(next.EventTypes, e.cur.EventTypes) {
		return e.cur, nil
	}
	e.cur = next
	e.touch(b.now)
	b.endpointEvent(&e.cur, ordercore.EventWebhookUpdated)
	return e.cur, nil
}

// DeleteWebhookEndpoint deletes an endpoint with all its deliveries, audited as a
// webhook.endpoint_deleted event on its timeline (which stays). Its pending deliveries
// are never sent; a call already in flight may still arrive, and its outcome is dropped.
// It frees a place under limit.WebhookEndpointsMax. Result: ordercore.WebhookEndpoint, as
// it was.
type DeleteWebhookEndpoint struct {
	ID string
}

func (c DeleteWebhookEndpoint) keys(k *keySet) { k.webhooks.endpoint(c.ID) }

func (c DeleteWebhookEndpoint) execute(b *batch) (any, error) {
	e, ok := b.liveEndpoint(c.ID)
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "webhook endpoint %q not found", c.ID)
	}
	e.deleted = true
	b.endpointEvent(&e.cur, ordercore.EventWebhookDeleted)
	return e.cur, nil
}

// ScheduleWebhooks records a delivery to an endpoint for each event it selects, among
// events the caller read from the feed after After up to Through (Events: every event of
// that range it read, matching or not; only Seq, ID, Type and AggregateType are used), and
// moves the endpoint's cursor to Through, in one transaction. Events at or below the
// cursor are skipped, so repeating a command, or one whose reader lagged, schedules
// nothing twice; a cursor below After (events between would be skipped) refuses it. A
// disabled endpoint is left alone. Result: ScheduledWebhooks.
type ScheduleWebhooks struct {
	EndpointID string
	After      int64
	Through    int64
	Events     []ordercore.Event
}

// ScheduledWebhooks is what ScheduleWebhooks did.
type ScheduledWebhooks struct {
	Scheduled int
	Cursor    int64
}

func (c ScheduleWebhooks) keys(k *keySet) { k.webhooks.endpoint(c.EndpointID) }

func (c ScheduleWebhooks) execute(b *batch) (any, error) {
	limit.Assert(c.After <= c.Through, "schedule webhooks after %d through %d", c.After, c.Through)
	for _, ev := range c.Events {
		limit.Assert(ev.Seq > c.After && ev.Seq <= c.Through, "event %d outside (%d, %d]", ev.Seq, c.After, c.Through)
	}
	e, ok := b.liveEndpoint(c.EndpointID)
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "webhook endpoint %q not found", c.EndpointID)
	}
	if !e.cur.Enabled || e.cur.Cursor >= c.Through {
		return ScheduledWebhooks{Cursor: e.cur.Cursor}, nil
	}
	if e.cur.Cursor < c.After {
		return nil, ordercore.Errorf(ordercore.ECONFLICT, "webhook endpoint %s is at event %d, behind the events read after %d", c.EndpointID, e.cur.Cursor, c.After)
	}
	n := 0
	for _, ev := range c.Events {
		if ev.Seq <= e.cur.Cursor || !ev.Delivers() || !e.cur.Matches(ev.Type) {
			continue
		}
		d := ordercore.WebhookDelivery{ID: ordercore.NewID(b.now), EndpointID: e.cur.ID, EventID: ev.ID, EventSeq: ev.Seq,
			EventType: ev.Type, Status: ordercore.WebhookPending, NextAttemptAt: b.now.Add(b.cfg.WebhookSchedule[0]),
			Version: 1, CreatedAt: b.now, UpdatedAt: b.now}
		b.webhookDeliveries[d.ID] = &deliveryState{cur: d, isNew: true}
		n++
	}
	e.cur.Cursor = c.Through
	e.touch(b.now)
	return ScheduledWebhooks{Scheduled: n, Cursor: e.cur.Cursor}, nil
}

// ClaimWebhooks takes deliveries the caller read as due, for For: each one still at the
// version read, pending and due has its NextAttemptAt moved to now+For and its version
// raised, so neither a second pass nor a second instance sends it meanwhile; if the
// attempt is never recorded (a crash), it is due again when the claim ends. Result: the
// claimed deliveries ([]ordercore.WebhookDelivery), in the order given.
type ClaimWebhooks struct {
	Due []ordercore.WebhookDelivery
	For time.Duration
}

func (c ClaimWebhooks) keys(k *keySet) {
	for _, d := range c.Due {
		k.webhooks.delivery(d.ID)
	}
}

func (c ClaimWebhooks) execute(b *batch) (any, error) {
	limit.Assert(c.For > 0, "webhook claim for %s", c.For)
	out := make([]ordercore.WebhookDelivery, 0, len(c.Due))
	for _, read := range c.Due {
		d, ok := b.webhookDeliveries[read.ID]
		if !ok || d.cur.Version != read.Version || d.cur.Status != ordercore.WebhookPending || d.cur.NextAttemptAt.After(b.now) {
			continue
		}
		d.cur.NextAttemptAt = b.now.Add(c.For)
		d.touch(b.now)
		out = append(out, d.cur)
	}
	return out, nil
}

// WebhookAttempted records how one attempt of a delivery ended, if the delivery is still
// at Version (the claim's): OK delivers it; a failure schedules the next attempt on the
// retry schedule (Jitter, in [0,1), drawn by the caller, spreads it), or, after the last
// step, makes it dead. Status is the HTTP status (0: no answer). Result: WebhookRecorded.
type WebhookAttempted struct {
	DeliveryID string
	Version    int64
	OK         bool
	Status     int
	Err        string
	Jitter     float64
}

// WebhookRecorded is a delivery after an attempt was recorded; Applied is false when the
// delivery had moved on (another claim, a redelivery) and the attempt was dropped.
type WebhookRecorded struct {
	Delivery ordercore.WebhookDelivery
	Applied  bool
}

func (c WebhookAttempted) keys(k *keySet) { k.webhooks.delivery(c.DeliveryID) }

func (c WebhookAttempted) execute(b *batch) (any, error) {
	d, ok := b.webhookDeliveries[c.DeliveryID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "webhook delivery %q not found", c.DeliveryID)
	}
	if d.cur.Version != c.Version || d.cur.Status != ordercore.WebhookPending {
		return WebhookRecorded{Delivery: d.cur}, nil
	}
	d.cur.Attempts++
	d.cur.LastStatus, d.cur.LastError = c.Status, truncate(c.Err, limit.WebhookErrorBytesMax)
	switch wait, more := webhookWait(b.cfg.WebhookSchedule, d.cur.Attempts, c.Jitter); {
	case c.OK:
		d.cur.Status, d.cur.NextAttemptAt, d.cur.DeliveredAt, d.cur.LastError = ordercore.WebhookDelivered, time.Time{}, b.now, ""
	case more:
		d.cur.NextAttemptAt = b.now.Add(wait)
	default:
		d.cur.Status, d.cur.NextAttemptAt = ordercore.WebhookDead, time.Time{}
		b.deliveryEvent(&d.cur, ordercore.EventWebhookDeliveryDead, "", "")
	}
	d.touch(b.now)
	return WebhookRecorded{Delivery: d.cur, Applied: true}, nil
}

// DeferWebhook puts off a delivery that was claimed but not sent, because the call was
// not made (its host's circuit breaker is open), if the delivery is still at Version (the
// claim's): it is due again after For, with Reason as its last error, and no attempt is
// counted, so a host that is down does not use up the retry schedule of deliveries that
// never reached it. Result: WebhookRecorded.
type DeferWebhook struct {
	DeliveryID string
	Version    int64
	For        time.Duration
	Reason     string
}

func (c DeferWebhook) keys(k *keySet) { k.webhooks.delivery(c.DeliveryID) }

func (c DeferWebhook) execute(b *batch) (any, error) {
	limit.Assert(c.For > 0, "defer a webhook delivery for %s", c.For)
	d, ok := b.webhookDeliveries[c.DeliveryID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "webhook delivery %q not found", c.DeliveryID)
	}
	if d.cur.Version != c.Version || d.cur.Status != ordercore.WebhookPending {
		return WebhookRecorded{Delivery: d.cur}, nil
	}
	d.cur.NextAttemptAt, d.cur.LastError = b.now.Add(c.For), truncate(c.Reason, limit.WebhookErrorBytesMax)
	d.touch(b.now)
	return WebhookRecorded{Delivery: d.cur, Applied: true}, nil
}

// webhookWait is the wait before the attempt after attempts failed ones, jittered by up to
// limit.WebhookJitterFraction either way; false past the schedule's end.
func webhookWait(s []time.Duration, attempts int, jitter float64) (time.Duration, bool) {
	if attempts < 0 || attempts >= len(s) {
		return 0, false
	}
	jitter = min(max(jitter, 0), 1)
	return time.Duration(float64(s[attempts]) * (1 + limit.WebhookJitterFraction*(2*jitter-1))), true
}

func truncate(s string, n int) string { return ordercore.CleanText(s, n) }

// RedeliverWebhook is an operator's redelivery, audited (By and Note become a
// webhook.redelivered event on the endpoint's timeline): a dead or delivered delivery
// goes back to pending with a fresh schedule, due now; a pending one is made due now.
// Result: ordercore.WebhookDelivery.
type RedeliverWebhook struct {
	DeliveryID string
	By         string
	Note       string
}

func (c RedeliverWebhook) keys(k *keySet) { k.webhooks.delivery(c.DeliveryID) }

// Validate checks what needs no database.
func (c RedeliverWebhook) Validate() error { return validateAudit(c.By, c.Note) }

func (c RedeliverWebhook) execute(b *batch) (any, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d, ok := b.webhookDeliveries[c.DeliveryID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "webhook delivery %q not found", c.DeliveryID)
	}
	if d.cur.Status != ordercore.WebhookPending {
		d.cur.Status, d.cur.Attempts = ordercore.WebhookPending, 0
	}
	d.cur.NextAttemptAt = b.now
	d.touch(b.now)
	b.deliveryEvent(&d.cur, ordercore.EventWebhookRedelivered, c.By, c.Note)
	return d.cur, nil
}
