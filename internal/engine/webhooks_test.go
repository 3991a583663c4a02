package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
	"ordercore/sqlite"
)

// failingStore rolls back every write while fail is set, after the batch ran: a crash
// between the commands and the commit, as far as the database can tell.
type failingStore struct {
	*sqlite.DB
	fail atomic.Bool
}

var errCrash = errors.New("crash before commit")

func (f *failingStore) Write(ctx context.Context, fn func(ordercore.WriteTx) error) error {
	return f.DB.Write(ctx, func(tx ordercore.WriteTx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if f.fail.Load() {
			return errCrash
		}
		return nil
	})
}

type hookBundle struct {
	db    *sqlite.DB
	store *failingStore
	eng   *engine.Engine
}

func setupHooks(t *testing.T, schedule ...time.Duration) *hookBundle {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fs := &failingStore{DB: db}
	eng := engine.New(fs, ordercore.SystemClock{}, engine.Config{WebhookSchedule: schedule})
	t.Cleanup(func() { eng.Close(); db.Close() })
	return &hookBundle{db: db, store: fs, eng: eng}
}

func (b *hookBundle) submit(t *testing.T, cmd engine.Command) any {
	t.Helper()
	res, err := b.eng.Submit(context.Background(), cmd, nil)
	if err != nil {
		t.Fatalf("%T: %v", cmd, err)
	}
	return res.Value
}

func (b *hookBundle) endpoint(t *testing.T, types ...string) ordercore.WebhookEndpoint {
	t.Helper()
	return b.submit(t, engine.CreateWebhookEndpoint{ID: ordercore.NewID(time.Now()), URL: "https://hooks.example/in",
		EventTypes: types, Secret: ordercore.NewWebhookSecret()}).(ordercore.WebhookEndpoint)
}

func (b *hookBundle) read(t *testing.T, id string) ordercore.WebhookEndpoint {
	t.Helper()
	e, err := b.db.WebhookEndpoint(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (b *hookBundle) events(t *testing.T, after int64) []ordercore.Event {
	t.Helper()
	evs, err := b.db.Events(context.Background(), after, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func (b *hookBundle) deliveries(t *testing.T, endpointID string) []ordercore.WebhookDelivery {
	t.Helper()
	ds, err := b.db.ListWebhookDeliveries(context.Background(), endpointID, "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(ds) // oldest first
	return ds
}

// eventIDs lists the ids of the events with the types, in order.
func eventIDs(evs []ordercore.Event, keep func(ordercore.Event) bool) []string {
	var out []string
	for _, e := range evs {
		if keep(e) {
			out = append(out, e.ID)
		}
	}
	return out
}

func deliveredEvents(ds []ordercore.WebhookDelivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.EventID)
	}
	return out
}

func isOrderEvent(e ordercore.Event) bool { return e.AggregateType == ordercore.AggregateOrder }

// activity makes events: a SKU (sku.created) and n orders (order.placed each).
func (b *hookBundle) activity(t *testing.T, sku string, n int) {
	t.Helper()
	mustSKU(t, b.eng, sku, 100)
	for range n {
		b.submit(t, engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: sku, Quantity: 1}}})
	}
}

func last(evs []ordercore.Event) int64 { return evs[len(evs)-1].Seq }

// TestScheduleWebhooksIsAtomic: the deliveries and the cursor commit together. A batch
// that fails before its commit leaves neither (the cursor does not move past events that
// got no delivery); the same command afterwards schedules each matching event once, and
// only matching ones (not sku.*, never the webhook's own events).
func TestScheduleWebhooksIsAtomic(t *testing.T) {
	t.Parallel()
	b := setupHooks(t)
	ep := b.endpoint(t, "order.*")
	b.activity(t, "a", 3)
	evs := b.events(t, 0)
	cmd := engine.ScheduleWebhooks{EndpointID: ep.ID, After: 0, Through: last(evs), Events: evs}

	b.store.fail.Store(true)
	if _, err := b.eng.Submit(context.Background(), cmd, nil); !errors.Is(err, errCrash) {
		t.Fatalf("schedule in a failing batch: %v, want the crash", err)
	}
	b.store.fail.Store(false)
	if got := b.read(t, ep.ID); got.Cursor != 0 || got.Version != ep.Version {
		t.Errorf("after the failed batch the endpoint moved: cursor %d version %d", got.Cursor, got.Version)
	}
	if ds := b.deliveries(t, ep.ID); len(ds) != 0 {
		t.Errorf("the failed batch left %d deliveries", len(ds))
	}

	res := b.submit(t, cmd).(engine.ScheduledWebhooks)
	want := eventIDs(evs, isOrderEvent)
	if res.Scheduled != 3 || res.Cursor != last(evs) {
		t.Errorf("ScheduleWebhooks = %+v, want 3 scheduled and cursor %d", res, last(evs))
	}
	ds := b.deliveries(t, ep.ID)
	if diff := cmp.Diff(want, deliveredEvents(ds)); diff != "" {
		t.Errorf("deliveries, one per order event (-want +got):\n%s", diff)
	}
	for _, d := range ds {
		if d.Status != ordercore.WebhookPending || d.Attempts != 0 || d.NextAttemptAt.IsZero() || d.EventType != ordercore.EventOrderPlaced {
			t.Errorf("a new delivery: %+v", d)
		}
	}
	if got := b.read(t, ep.ID); got.Cursor != last(evs) {
		t.Errorf("cursor %d, want %d", got.Cursor, last(evs))
	}
}

// TestScheduleWebhooksNeverTwice: a deliverer that crashed after reading the feed, one
// that lagged behind another, or the same command submitted twice at once schedules no
// event twice and skips none.
func TestScheduleWebhooksNeverTwice(t *testing.T) {
	t.Parallel()
	b := setupHooks(t)
	ep := b.endpoint(t, "*")
	b.activity(t, "a", 2)
	first := b.events(t, 0)
	// One read, scheduled twice: again after the cursor moved, and twice in one batch.
	cmd := engine.ScheduleWebhooks{EndpointID: ep.ID, Through: last(first), Events: first}
	var wg sync.WaitGroup
	results := make([]engine.ScheduledWebhooks, 4)
	for i := range results {
		wg.Go(func() { results[i] = b.submit(t, cmd).(engine.ScheduledWebhooks) })
	}
	wg.Wait()
	total := 0
	for _, r := range results {
		total += r.Scheduled
	}
	notWebhook := func(e ordercore.Event) bool { return e.AggregateType != ordercore.AggregateWebhook }
	if want := len(eventIDs(first, notWebhook)); total != want {
		t.Errorf("four submissions of one read scheduled %d deliveries, want %d once", total, want)
	}
	if again := b.submit(t, cmd).(engine.ScheduledWebhooks); again.Scheduled != 0 || again.Cursor != last(first) {
		t.Errorf("the same events after the cursor moved: %+v, want nothing scheduled", again)
	}

	// A deliverer read more events and crashed before submitting; more events came. The
	// next pass reads from the cursor, which did not move: everything once.
	b.activity(t, "b", 2)
	_ = b.events(t, last(first)) // read, then the crash: nothing submitted
	b.activity(t, "c", 1)
	second := b.events(t, last(first))
	b.submit(t, engine.ScheduleWebhooks{EndpointID: ep.ID, After: last(first), Through: last(second), Events: second})

	// A lagging reader's overlapping page schedules only what is past the cursor, and a
	// page that starts past the cursor (events between would be skipped) is refused.
	b.activity(t, "d", 1)
	third := b.events(t, last(second))
	overlap := append(slices.Clone(second), third...)
	if r := b.submit(t, engine.ScheduleWebhooks{EndpointID: ep.ID, After: last(first), Through: last(third), Events: overlap}).(engine.ScheduledWebhooks); r.Scheduled != len(third) {
		t.Errorf("overlapping page scheduled %d, want only the %d new events", r.Scheduled, len(third))
	}
	b.activity(t, "e", 1)
	fourth := b.events(t, last(third))
	_, err := b.eng.Submit(context.Background(), engine.ScheduleWebhooks{EndpointID: ep.ID, After: last(fourth) - 1, Through: last(fourth), Events: fourth[len(fourth)-1:]}, nil)
	if ordercore.ErrorCode(err) != ordercore.ECONFLICT {
		t.Errorf("a page starting past the cursor: %v, want conflict", err)
	}

	all := b.events(t, 0)
	want := eventIDs(all[:len(all)-len(fourth)], func(e ordercore.Event) bool { return notWebhook(e) && e.Seq > ep.Cursor })
	if diff := cmp.Diff(want, deliveredEvents(b.deliveries(t, ep.ID))); diff != "" {
		t.Errorf("every event once, in order (-want +got):\n%s", diff)
	}
}

// TestScheduleWebhooksLeavesDisabledEndpoints: a disabled endpoint gets nothing scheduled
// and its cursor stays; enabled again, the same events are scheduled (nothing skipped).
func TestScheduleWebhooksLeavesDisabledEndpoints(t *testing.T) {
	t.Parallel()
	b := setupHooks(t)
	ep := b.endpoint(t, "order.placed")
	off, on := false, true
	b.submit(t, engine.UpdateWebhookEndpoint{ID: ep.ID, Enabled: &off})
	b.activity(t, "a", 2)
	evs := b.events(t, 0)
	cmd := engine.ScheduleWebhooks{EndpointID: ep.ID, Through: last(evs), Events: evs}
	if r := b.submit(t, cmd).(engine.ScheduledWebhooks); r.Scheduled != 0 || r.Cursor != 0 {
		t.Errorf("disabled: %+v, want nothing", r)
	}
	b.submit(t, engine.UpdateWebhookEndpoint{ID: ep.ID, Enabled: &on})
	if r := b.submit(t, cmd).(engine.ScheduledWebhooks); r.Scheduled != 2 {
		t.Errorf("enabled again: %+v, want the 2 orders", r)
	}
}

// TestWebhookAttempts: a failing delivery is retried on the schedule, then dead (with a
// webhook.delivery_dead event); an attempt recorded with a stale version is dropped; a
// redelivery gives a dead delivery a fresh schedule, audited; a success delivers.
func TestWebhookAttempts(t *testing.T) {
	t.Parallel()
	schedule := []time.Duration{0, time.Hour, 2 * time.Hour}
	b := setupHooks(t, schedule...)
	ep := b.endpoint(t, "sku.created")
	mustSKU(t, b.eng, "a", 1)
	evs := b.events(t, 0)
	b.submit(t, engine.ScheduleWebhooks{EndpointID: ep.ID, Through: last(evs), Events: evs})
	d := b.deliveries(t, ep.ID)[0]

	claim := func(d ordercore.WebhookDelivery) []ordercore.WebhookDelivery {
		return b.submit(t, engine.ClaimWebhooks{Due: []ordercore.WebhookDelivery{d}, For: time.Minute}).([]ordercore.WebhookDelivery)
	}
	got := claim(d)
	if len(got) != 1 || got[0].Version != d.Version+1 || !got[0].NextAttemptAt.After(d.NextAttemptAt) {
		t.Fatalf("claim of a due delivery: %+v", got)
	}
	if again := claim(d); len(again) != 0 {
		t.Errorf("a claim from the stale read took it again: %+v", again)
	}
	if again := claim(got[0]); len(again) != 0 {
		t.Errorf("a claim of a delivery not due took it: %+v", again)
	}
	d = got[0]
	for attempt := 1; attempt <= len(schedule); attempt++ {
		before := time.Now()
		rec := b.submit(t, engine.WebhookAttempted{DeliveryID: d.ID, Version: d.Version, Status: 503, Err: "HTTP 503: busy", Jitter: 0.5}).(engine.WebhookRecorded)
		if !rec.Applied || rec.Delivery.Attempts != attempt || rec.Delivery.LastStatus != 503 {
			t.Fatalf("attempt %d: %+v", attempt, rec)
		}
		if stale := b.submit(t, engine.WebhookAttempted{DeliveryID: d.ID, Version: d.Version, OK: true}).(engine.WebhookRecorded); stale.Applied {
			t.Fatalf("attempt %d recorded twice", attempt)
		}
		d = rec.Delivery
		if attempt < len(schedule) {
			wait := d.NextAttemptAt.Sub(before)
			if d.Status != ordercore.WebhookPending || wait < schedule[attempt]-time.Second || wait > schedule[attempt]+time.Second {
				t.Fatalf("after attempt %d: %s, next in %s, want pending in %s (jitter 0.5 is none)", attempt, d.Status, wait, schedule[attempt])
			}
		}
	}
	if d.Status != ordercore.WebhookDead || !d.NextAttemptAt.IsZero() {
		t.Fatalf("after the last step: %+v, want dead", d)
	}
	timeline, err := b.db.AggregateEvents(context.Background(), ep.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if types := typesOf(timeline); !slices.Equal(types, []string{ordercore.EventWebhookCreated, ordercore.EventWebhookDeliveryDead}) {
		t.Errorf("endpoint timeline %v", types)
	}

	if _, err := b.eng.Submit(context.Background(), engine.RedeliverWebhook{DeliveryID: d.ID}, nil); ordercore.ErrorCode(err) != ordercore.EINVALID {
		t.Errorf("an unaudited redelivery: %v, want invalid_request", err)
	}
	re := b.submit(t, engine.RedeliverWebhook{DeliveryID: d.ID, By: "ops", Note: "receiver fixed"}).(ordercore.WebhookDelivery)
	if re.Status != ordercore.WebhookPending || re.Attempts != 0 || re.NextAttemptAt.After(time.Now()) || re.LastStatus != 503 {
		t.Fatalf("redelivered: %+v, want pending, a fresh schedule, due now, the last outcome kept", re)
	}
	timeline, _ = b.db.AggregateEvents(context.Background(), ep.ID, 10)
	var audit ordercore.WebhookDeliveryEvent
	if err := json.Unmarshal(timeline[len(timeline)-1].Data, &audit); err != nil || audit.By != "ops" || audit.Note != "receiver fixed" || audit.DeliveryID != d.ID {
		t.Errorf("audit of the redelivery: %+v %v", audit, err)
	}
	ok := b.submit(t, engine.WebhookAttempted{DeliveryID: re.ID, Version: re.Version, OK: true, Status: 204}).(engine.WebhookRecorded)
	if !ok.Applied || ok.Delivery.Status != ordercore.WebhookDelivered || ok.Delivery.DeliveredAt.IsZero() || ok.Delivery.LastError != "" || ok.Delivery.Attempts != 1 {
		t.Errorf("delivered: %+v", ok.Delivery)
	}
	if _, err := b.eng.Submit(context.Background(), engine.WebhookAttempted{DeliveryID: ordercore.NewID(time.Now()), Version: 1}, nil); ordercore.ErrorCode(err) != ordercore.ENOTFOUND {
		t.Errorf("attempt of no delivery: %v", err)
	}
}

// TestWebhookEndpointValidation: the commands refuse what no store should see, with
// stable codes, and an update that changes nothing writes nothing.
func TestWebhookEndpointValidation(t *testing.T) {
	t.Parallel()
	b := setupHooks(t)
	for _, bad := range []struct {
		url   string
		types []string
		code  string
	}{
		{"ftp://x.example/", []string{"*"}, ordercore.EInvalidWebhookURL},
		{"/relative", []string{"*"}, ordercore.EInvalidWebhookURL},
		{"https://user:pw@x.example/", []string{"*"}, ordercore.EInvalidWebhookURL},
		{"https:///nohost", []string{"*"}, ordercore.EInvalidWebhookURL},
		{"https://x.example/#frag", []string{"*"}, ordercore.EInvalidWebhookURL},
		{"https://x.example:99999/", []string{"*"}, ordercore.EInvalidWebhookURL},
		{"http://127.0.0.1:8080/v1/orders", []string{"*"}, ordercore.EWebhookURLNotAllowed},
		{"http://169.254.169.254/latest/meta-data/", []string{"*"}, ordercore.EWebhookURLNotAllowed},
		{"http://[::1]/", []string{"*"}, ordercore.EWebhookURLNotAllowed},
		{"http://localhost/", []string{"*"}, ordercore.EWebhookURLNotAllowed},
		{"https://x.example/", nil, ordercore.EInvalidEventTypes},
		{"https://x.example/", []string{"Order.Paid"}, ordercore.EInvalidEventTypes},
		{"https://x.example/", []string{"order.*.paid"}, ordercore.EInvalidEventTypes},
		{"https://x.example/", []string{"order*"}, ordercore.EInvalidEventTypes},
		{"https://x.example/", []string{""}, ordercore.EInvalidEventTypes},
		{"https://x.example/", []string{"order.payed"}, ordercore.EUnknownEventType},
		{"https://x.example/", []string{"order.paid", "ordercore.order.placed"}, ordercore.EUnknownEventType},
		{"https://x.example/", []string{"orders.*"}, ordercore.EUnknownEventType},
		{"https://x.example/", []string{"order.placed.*"}, ordercore.EUnknownEventType},
		{"https://x.example/", []string{"order.pending_payment"}, ordercore.EUnknownEventType},
		{"https://x.example/", []string{"webhook.*"}, ordercore.EUnknownEventType},
	} {
		_, err := b.eng.Submit(context.Background(), engine.CreateWebhookEndpoint{ID: ordercore.NewID(time.Now()), URL: bad.url,
			EventTypes: bad.types, Secret: ordercore.NewWebhookSecret()}, nil)
		if ordercore.ErrorCode(err) != bad.code {
			t.Errorf("create %q %q: %v, want %s", bad.url, bad.types, err, bad.code)
		}
	}
	ep := b.endpoint(t, "order.paid", "order.paid", "refund.*")
	if !slices.Equal(ep.EventTypes, []string{"order.paid", "refund.*"}) {
		t.Errorf("event types kept as %v, want repeats dropped", ep.EventTypes)
	}
	b.endpoint(t, "*", "stock.*", "saga.step", "order.fulfilment", "payment.amount_mismatch", "review.*", "sku.restocked")
	_, err := b.eng.Submit(context.Background(), engine.UpdateWebhookEndpoint{ID: ep.ID, EventTypes: []string{"ordercore.order.paid"}}, nil)
	if ordercore.ErrorCode(err) != ordercore.EUnknownEventType || !strings.Contains(ordercore.ErrorMessage(err), "order.paid") ||
		!strings.Contains(ordercore.ErrorMessage(err), "order.*") {
		t.Errorf("update to a CloudEvents type: %v, want unknown_event_type naming the known types and prefixes", err)
	}
	same := b.submit(t, engine.UpdateWebhookEndpoint{ID: ep.ID, EventTypes: []string{"order.paid", "refund.*"}}).(ordercore.WebhookEndpoint)
	if same.Version != ep.Version {
		t.Errorf("an update that changes nothing raised the version to %d", same.Version)
	}
	private := "http://10.0.0.1:8080/hook"
	if _, err := b.eng.Submit(context.Background(), engine.UpdateWebhookEndpoint{ID: ep.ID, URL: &private}, nil); ordercore.ErrorCode(err) != ordercore.EWebhookURLNotAllowed {
		t.Errorf("moving to a private address: %v", err)
	}
	url := "http://erp.example:8080/hook"
	moved := b.submit(t, engine.UpdateWebhookEndpoint{ID: ep.ID, URL: &url}).(ordercore.WebhookEndpoint)
	if moved.URL != url || moved.Version != ep.Version+1 || moved.Secret != ep.Secret {
		t.Errorf("after moving: %+v", moved)
	}
	if _, err := b.eng.Submit(context.Background(), engine.UpdateWebhookEndpoint{ID: ep.ID}, nil); ordercore.ErrorCode(err) != ordercore.EINVALID {
		t.Errorf("an empty update: %v", err)
	}
	if _, err := b.eng.Submit(context.Background(), engine.UpdateWebhookEndpoint{ID: "nope", URL: &url}, nil); ordercore.ErrorCode(err) != ordercore.ENOTFOUND {
		t.Errorf("an update of no endpoint: %v", err)
	}
}

func TestEndpointMatches(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		types []string
		typ   string
		want  bool
	}{
		{[]string{"*"}, "order.paid", true},
		{[]string{"order.paid"}, "order.paid", true},
		{[]string{"order.paid"}, "order.paid_twice", false},
		{[]string{"order.*"}, "order.paid", true},
		{[]string{"order.*"}, "orders.paid", false},
		{[]string{"order.*"}, "order", false},
		{[]string{"payment.*", "order.cancelled"}, "order.cancelled", true},
		{[]string{"payment.*", "order.cancelled"}, "refund.succeeded", false},
	} {
		e := ordercore.WebhookEndpoint{EventTypes: tt.types}
		if got := e.Matches(tt.typ); got != tt.want {
			t.Errorf("%v matches %s = %v, want %v", tt.types, tt.typ, got, tt.want)
		}
	}
}

func typesOf(evs []ordercore.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// TestWebhookEndpointBoundIsExact: creations submitted at once, more than the bound
// allows, store exactly limit.WebhookEndpointsMax endpoints; the rest are refused with
// too_many_webhook_endpoints, whichever batches they share.
func TestWebhookEndpointBoundIsExact(t *testing.T) {
	t.Parallel()
	b := setupHooks(t)
	const tries = limit.WebhookEndpointsMax + 20
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for range tries {
		wg.Go(func() {
			_, err := b.eng.Submit(context.Background(), engine.CreateWebhookEndpoint{ID: ordercore.NewID(time.Now()), URL: "https://hooks.example/in",
				EventTypes: []string{"*"}, Secret: ordercore.NewWebhookSecret()}, nil)
			switch ordercore.ErrorCode(err) {
			case "":
				ok.Add(1)
			case ordercore.ETooManyWebhooks:
				refused.Add(1)
			default:
				t.Errorf("create: %v", err)
			}
		})
	}
	wg.Wait()
	stored, err := b.db.ListWebhookEndpoints(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != limit.WebhookEndpointsMax || refused.Load() != tries-limit.WebhookEndpointsMax || len(stored) != limit.WebhookEndpointsMax {
		t.Errorf("%d created, %d refused, %d stored; want %d, %d, %d", ok.Load(), refused.Load(), len(stored),
			limit.WebhookEndpointsMax, tries-limit.WebhookEndpointsMax, limit.WebhookEndpointsMax)
	}
}
