package storetest

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
)

// The webhook half of the suite: endpoints and deliveries come back from every read
// exactly as written; the due list holds only pending, due deliveries of enabled
// endpoints, earliest first; listings page newest first; and the database refuses a
// second delivery of one event to one endpoint, a delivery to no endpoint, a cursor that
// goes back, a stale version and a row that breaks the tables' rules, keeping nothing of
// the batch.

func webhookTests() []storeTest {
	return []storeTest{
		{"WebhookRoundTrip", testWebhookRoundTrip},
		{"WebhookDuplicatesRefused", testWebhookDuplicates},
		{"WebhookVersionGuard", testWebhookVersionGuard},
		{"WebhookCheckConstraints", testWebhookChecks},
		{"WebhookDue", testWebhookDue},
		{"WebhookLists", testWebhookLists},
		{"WebhookDelete", testWebhookDelete},
	}
}

func secret(n int) string { return strings.Repeat(string(rune('a'+n%6)), 64) }

func endpoint(n int, types ...string) ordercore.WebhookEndpoint {
	if len(types) == 0 {
		types = []string{"*"}
	}
	return ordercore.WebhookEndpoint{ID: id(n), URL: "https://hooks.example/" + id(n), EventTypes: types, Secret: secret(n),
		Enabled: true, Version: 1, CreatedAt: t0, UpdatedAt: t0}
}

// delivery returns a pending delivery of event seq to endpoint ep, due at next.
func delivery(n int, ep string, seq int64, next time.Time) ordercore.WebhookDelivery {
	return ordercore.WebhookDelivery{ID: id(n), EndpointID: ep, EventID: id(100000 + int(seq)), EventSeq: seq, EventType: "order.paid",
		Status: ordercore.WebhookPending, NextAttemptAt: next, Version: 1, CreatedAt: t0, UpdatedAt: t0}
}

// requireFields fails the test unless each field of T is set in one of rows: a field
// added to the type must be added to the fixtures (and so to the stores' columns).
func requireFields[T any](t *testing.T, rows []T) {
	t.Helper()
	typ := reflect.TypeFor[T]()
	for i := range typ.NumField() {
		if !slices.ContainsFunc(rows, func(r T) bool { return !reflect.ValueOf(r).Field(i).IsZero() }) {
			t.Errorf("no fixture sets %s.%s: set it, and store it", typ.Name(), typ.Field(i).Name)
		}
	}
}

func loadWebhooks(t *testing.T, s Store, endpoints, deliveries []string) (map[string]ordercore.WebhookEndpoint, map[string]ordercore.WebhookDelivery) {
	t.Helper()
	var es map[string]ordercore.WebhookEndpoint
	var ds map[string]ordercore.WebhookDelivery
	inTx(t, s, func(tx ordercore.WriteTx) error {
		var err error
		if es, err = tx.WebhookEndpoints(context.Background(), endpoints); err != nil {
			return err
		}
		ds, err = tx.WebhookDeliveries(context.Background(), deliveries)
		return err
	})
	return es, ds
}

// fullWebhooks returns endpoints and deliveries that between them set every field.
func fullWebhooks() ([]ordercore.WebhookEndpoint, []ordercore.WebhookDelivery) {
	a := endpoint(1, "order.paid", "order.*", "refund.succeeded")
	a.Cursor, a.Version, a.UpdatedAt = 42, 3, t0.Add(time.Minute)
	b := endpoint(2)
	b.URL, b.Enabled = "http://127.0.0.1:9/hook?x=1&y=%20", false
	pending := delivery(11, a.ID, 40, t0.Add(time.Hour))
	pending.Attempts, pending.LastStatus, pending.LastError, pending.Version = 3, 503, `HTTP 503: "busy"`, 4
	delivered := delivery(12, a.ID, 41, time.Time{})
	delivered.Status, delivered.Attempts, delivered.LastStatus, delivered.DeliveredAt = ordercore.WebhookDelivered, 1, 204, t0.Add(time.Second)
	delivered.UpdatedAt = t0.Add(time.Second)
	dead := delivery(13, b.ID, 41, time.Time{})
	dead.Status, dead.Attempts, dead.LastError = ordercore.WebhookDead, 8, "dial tcp: connection refused"
	return []ordercore.WebhookEndpoint{a, b}, []ordercore.WebhookDelivery{pending, delivered, dead}
}

func endpointIDs(es []ordercore.WebhookEndpoint) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func deliveryIDs(ds []ordercore.WebhookDelivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// testWebhookRoundTrip: endpoints and deliveries come back identical through the write
// transaction's loads, the reader and the dump, before and after a change.
func testWebhookRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	es, ds := fullWebhooks()
	requireFields(t, es)
	requireFields(t, ds)
	mustWrite(t, s, &ordercore.Changeset{NewWebhookEndpoints: es, NewWebhookDeliveries: ds})
	check := func(when string, es []ordercore.WebhookEndpoint, ds []ordercore.WebhookDelivery) {
		t.Helper()
		wantE, wantD := map[string]ordercore.WebhookEndpoint{}, map[string]ordercore.WebhookDelivery{}
		for _, e := range es {
			wantE[e.ID] = e
			got, err := s.WebhookEndpoint(ctx, e.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(e, got); diff != "" {
				t.Errorf("%s: WebhookEndpoint(%s) (-wrote +read):\n%s", when, e.ID, diff)
			}
		}
		for _, d := range ds {
			wantD[d.ID] = d
		}
		gotE, gotD := loadWebhooks(t, s, append(endpointIDs(es), id(99)), append(deliveryIDs(ds), id(98)))
		if diff := cmp.Diff(wantE, gotE); diff != "" {
			t.Errorf("%s: tx.WebhookEndpoints (-wrote +loaded):\n%s", when, diff)
		}
		if diff := cmp.Diff(wantD, gotD); diff != "" {
			t.Errorf("%s: tx.WebhookDeliveries (-wrote +loaded):\n%s", when, diff)
		}
		snap := dump(t, s)
		if diff := cmp.Diff(es, snap.WebhookEndpoints); diff != "" {
			t.Errorf("%s: Dump's endpoints, by id (-wrote +dumped):\n%s", when, diff)
		}
		if diff := cmp.Diff(ds, snap.WebhookDeliveries); diff != "" {
			t.Errorf("%s: Dump's deliveries, by id (-wrote +dumped):\n%s", when, diff)
		}
	}
	check("after insert", es, ds)
	if _, err := s.WebhookEndpoint(ctx, id(99)); ordercore.ErrorCode(err) != ordercore.ENOTFOUND {
		t.Errorf("missing endpoint: %v, want not_found", err)
	}
	if gotE, gotD := loadWebhooks(t, s, nil, nil); len(gotE)+len(gotD) != 0 {
		t.Errorf("loads of no ids = %v %v", gotE, gotD)
	}

	// Every column that may change does.
	at := t0.Add(2 * time.Hour)
	a := es[0]
	a.URL, a.EventTypes, a.Enabled, a.Cursor, a.Version, a.UpdatedAt = "http://a.example:8080/new", []string{"*"}, false, 99, 4, at
	pending, dead := ds[0], ds[2]
	pending.Status, pending.NextAttemptAt, pending.Attempts, pending.LastStatus, pending.LastError = ordercore.WebhookDead, time.Time{}, 8, 0, "timeout"
	pending.Version, pending.UpdatedAt = 5, at
	dead.Status, dead.NextAttemptAt, dead.Attempts, dead.LastStatus, dead.LastError, dead.DeliveredAt = ordercore.WebhookDelivered, time.Time{}, 1, 200, "", at
	dead.Version, dead.UpdatedAt = 2, at
	mustWrite(t, s, &ordercore.Changeset{
		WebhookEndpointChanges: []ordercore.WebhookEndpointChange{{Endpoint: a, FromVersion: 3}},
		WebhookDeliveryChanges: []ordercore.WebhookDeliveryChange{{Delivery: pending, FromVersion: 4}, {Delivery: dead, FromVersion: 1}}})
	check("after change", []ordercore.WebhookEndpoint{a, es[1]}, []ordercore.WebhookDelivery{pending, ds[1], dead})
}

// testWebhookDuplicates: an endpoint or delivery id that exists, a second delivery of
// one event to one endpoint (in another batch or the same one) and a delivery to an
// endpoint that does not exist each refuse the whole batch.
func testWebhookDuplicates(t *testing.T, s Store) {
	a, b := endpoint(1), endpoint(2)
	first := delivery(11, a.ID, 5, t0)
	mustWrite(t, s, &ordercore.Changeset{NewWebhookEndpoints: []ordercore.WebhookEndpoint{a, b}, NewWebhookDeliveries: []ordercore.WebhookDelivery{first}})
	again := delivery(12, a.ID, 5, t0) // same endpoint, same event, new id
	sameID := delivery(11, b.ID, 6, t0)
	orphan := delivery(13, id(77), 5, t0)
	other := delivery(14, b.ID, 5, t0) // the same event to another endpoint is fine
	refuses(t, s, "an endpoint whose id exists", ordercore.Changeset{NewWebhookEndpoints: []ordercore.WebhookEndpoint{endpoint(3), endpoint(1)}})
	refuses(t, s, "a second delivery of an event to an endpoint", ordercore.Changeset{NewWebhookDeliveries: []ordercore.WebhookDelivery{other, again}})
	refuses(t, s, "a delivery whose id exists", ordercore.Changeset{NewWebhookDeliveries: []ordercore.WebhookDelivery{other, sameID}})
	twice := delivery(15, b.ID, 9, t0)
	twiceAgain := delivery(16, b.ID, 9, t0)
	refuses(t, s, "one event twice to one endpoint in a batch", ordercore.Changeset{NewWebhookDeliveries: []ordercore.WebhookDelivery{twice, twiceAgain}})
	refuses(t, s, "a delivery to no endpoint", ordercore.Changeset{NewWebhookDeliveries: []ordercore.WebhookDelivery{other, orphan}})
	mustWrite(t, s, &ordercore.Changeset{NewWebhookDeliveries: []ordercore.WebhookDelivery{other}})
	// An endpoint and its first deliveries may come in one batch.
	c := endpoint(4)
	mustWrite(t, s, &ordercore.Changeset{NewWebhookEndpoints: []ordercore.WebhookEndpoint{c}, NewWebhookDeliveries: []ordercore.WebhookDelivery{delivery(17, c.ID, 5, t0)}})
	if got := dump(t, s); len(got.WebhookEndpoints) != 3 || len(got.WebhookDeliveries) != 3 {
		t.Errorf("stored %d endpoints and %d deliveries, want 3 and 3", len(got.WebhookEndpoints), len(got.WebhookDeliveries))
	}
}

// testWebhookVersionGuard: a change from a stale version, of a row that does not exist,
// that moves a cursor back or rewrites what never changes refuses the batch.
func testWebhookVersionGuard(t *testing.T, s Store) {
	e := endpoint(1)
	e.Cursor = 10
	d := delivery(11, e.ID, 7, t0)
	mustWrite(t, s, &ordercore.Changeset{NewWebhookEndpoints: []ordercore.WebhookEndpoint{e}, NewWebhookDeliveries: []ordercore.WebhookDelivery{d}})
	next := e
	next.Cursor, next.Version, next.UpdatedAt = 20, 2, t0.Add(time.Minute)
	back, otherSecret, otherCreation, missing := next, next, next, next
	back.Cursor = 9
	otherSecret.Secret = secret(5)
	otherCreation.CreatedAt = t0.Add(time.Second)
	missing.ID = id(99)
	for _, bad := range []struct {
		what string
		ch   ordercore.WebhookEndpointChange
	}{
		{"an endpoint change from a stale version", ordercore.WebhookEndpointChange{Endpoint: next, FromVersion: 7}},
		{"an endpoint change that moves the cursor back", ordercore.WebhookEndpointChange{Endpoint: back, FromVersion: 1}},
		{"an endpoint change of the secret", ordercore.WebhookEndpointChange{Endpoint: otherSecret, FromVersion: 1}},
		{"an endpoint change of the creation time", ordercore.WebhookEndpointChange{Endpoint: otherCreation, FromVersion: 1}},
		{"a change of an endpoint that does not exist", ordercore.WebhookEndpointChange{Endpoint: missing, FromVersion: 1}},
	} {
		refuses(t, s, bad.what, ordercore.Changeset{WebhookEndpointChanges: []ordercore.WebhookEndpointChange{bad.ch}})
	}
	nd := d
	nd.Attempts, nd.NextAttemptAt, nd.Version, nd.UpdatedAt = 1, t0.Add(time.Minute), 2, t0.Add(time.Second)
	otherEvent, otherEndpoint := nd, nd
	otherEvent.EventID = id(555)
	otherEndpoint.EndpointID = id(2)
	for _, bad := range []struct {
		what string
		ch   ordercore.WebhookDeliveryChange
	}{
		{"a delivery change from a stale version", ordercore.WebhookDeliveryChange{Delivery: nd, FromVersion: 3}},
		{"a delivery change of its event", ordercore.WebhookDeliveryChange{Delivery: otherEvent, FromVersion: 1}},
		{"a delivery change of its endpoint", ordercore.WebhookDeliveryChange{Delivery: otherEndpoint, FromVersion: 1}},
	} {
		refuses(t, s, bad.what, ordercore.Changeset{WebhookDeliveryChanges: []ordercore.WebhookDeliveryChange{bad.ch}})
	}
	mustWrite(t, s, &ordercore.Changeset{WebhookEndpointChanges: []ordercore.WebhookEndpointChange{{Endpoint: next, FromVersion: 1}},
		WebhookDeliveryChanges: []ordercore.WebhookDeliveryChange{{Delivery: nd, FromVersion: 1}}})
	refuses(t, s, "the same delivery change applied twice", ordercore.Changeset{WebhookDeliveryChanges: []ordercore.WebhookDeliveryChange{{Delivery: nd, FromVersion: 1}}})
	// A cursor that stays put is not a cursor going back (an update of the event types).
	same := next
	same.EventTypes, same.Version = []string{"order.*"}, 3
	mustWrite(t, s, &ordercore.Changeset{WebhookEndpointChanges: []ordercore.WebhookEndpointChange{{Endpoint: same, FromVersion: 2}}})
	got, _ := s.WebhookEndpoint(context.Background(), e.ID)
	if diff := cmp.Diff(same, got); diff != "" {
		t.Errorf("after the valid changes (-want +got):\n%s", diff)
	}
}

// testWebhookChecks: rows that break the tables' rules are refused even if the code
// above the store let them through.
func testWebhookChecks(t *testing.T, s Store) {
	ep := func(f func(*ordercore.WebhookEndpoint)) ordercore.WebhookEndpoint {
		e := endpoint(50)
		f(&e)
		return e
	}
	for _, bad := range []struct {
		what string
		e    ordercore.WebhookEndpoint
	}{
		{"an ftp url", ep(func(e *ordercore.WebhookEndpoint) { e.URL = "ftp://x.example/" })},
		{"a url with no host", ep(func(e *ordercore.WebhookEndpoint) { e.URL = "https://" })},
		{"no event types", ep(func(e *ordercore.WebhookEndpoint) { e.EventTypes = []string{} })},
		{"nil event types", ep(func(e *ordercore.WebhookEndpoint) { e.EventTypes = nil })},
		{"a short secret", ep(func(e *ordercore.WebhookEndpoint) { e.Secret = "abc" })},
		{"a negative cursor", ep(func(e *ordercore.WebhookEndpoint) { e.Cursor = -1 })},
		{"version 0", ep(func(e *ordercore.WebhookEndpoint) { e.Version = 0 })},
	} {
		refuses(t, s, "an endpoint with "+bad.what, ordercore.Changeset{NewWebhookEndpoints: []ordercore.WebhookEndpoint{bad.e}})
	}
	e := endpoint(1)
	mustWrite(t, s, &ordercore.Changeset{NewWebhookEndpoints: []ordercore.WebhookEndpoint{e}})
	dv := func(f func(*ordercore.WebhookDelivery)) ordercore.WebhookDelivery {
		d := delivery(60, e.ID, 3, t0)
		f(&d)
		return d
	}
	for _, bad := range []struct {
		what string
		d    ordercore.WebhookDelivery
	}{
		{"an unknown status", dv(func(d *ordercore.WebhookDelivery) { d.Status = "lost" })},
		{"pending but never due", dv(func(d *ordercore.WebhookDelivery) { d.NextAttemptAt = time.Time{} })},
		{"dead but due", dv(func(d *ordercore.WebhookDelivery) { d.Status = ordercore.WebhookDead })},
		{"delivered but due", dv(func(d *ordercore.WebhookDelivery) {
			d.Status, d.DeliveredAt = ordercore.WebhookDelivered, t0
		})},
		{"delivered at no time", dv(func(d *ordercore.WebhookDelivery) {
			d.Status, d.NextAttemptAt = ordercore.WebhookDelivered, time.Time{}
		})},
		{"negative attempts", dv(func(d *ordercore.WebhookDelivery) { d.Attempts = -1 })},
		{"event seq 0", dv(func(d *ordercore.WebhookDelivery) { d.EventSeq = 0 })},
	} {
		refuses(t, s, "a delivery "+bad.what, ordercore.Changeset{NewWebhookDeliveries: []ordercore.WebhookDelivery{bad.d}})
	}
	// The same rules hold for a change.
	ok := dv(func(*ordercore.WebhookDelivery) {})
	mustWrite(t, s, &ordercore.Changeset{NewWebhookDeliveries: []ordercore.WebhookDelivery{ok}})
	done := ok
	done.Status, done.Version, done.Attempts = ordercore.WebhookDead, 2, 8
	refuses(t, s, "a change to dead that stays due", ordercore.Changeset{WebhookDeliveryChanges: []ordercore.WebhookDeliveryChange{{Delivery: done, FromVersion: 1}}})
	done.NextAttemptAt = time.Time{}
	mustWrite(t, s, &ordercore.Changeset{WebhookDeliveryChanges: []ordercore.WebhookDeliveryChange{{Delivery: done, FromVersion: 1}}})
}

// testWebhookDue: the due list holds pending deliveries due at now, of the enabled
// endpoints asked for only, each endpoint's earliest first (ties by id) and at most its
// Max, endpoint after endpoint in the order asked; an endpoint with a backlog of earlier
// deliveries does not crowd out another's.
func testWebhookDue(t *testing.T, s Store) {
	ctx := context.Background()
	on, off, busy := endpoint(1), endpoint(2), endpoint(3)
	off.Enabled = false
	now := t0.Add(time.Hour)
	early := delivery(11, on.ID, 1, now.Add(-time.Hour))
	tieA := delivery(12, on.ID, 2, now.Add(-time.Minute))
	tieB := delivery(13, on.ID, 3, now.Add(-time.Minute))
	atNow := delivery(14, on.ID, 4, now)
	later := delivery(15, on.ID, 5, now.Add(time.Microsecond))
	ofDisabled := delivery(16, off.ID, 1, now.Add(-2*time.Hour))
	dead := delivery(17, on.ID, 6, time.Time{})
	dead.Status = ordercore.WebhookDead
	rows := []ordercore.WebhookDelivery{later, tieB, atNow, dead, ofDisabled, tieA, early}
	var backlog []string // busy's deliveries, all due before any of on's
	for n := range 20 {
		d := delivery(30+n, busy.ID, int64(10+n), now.Add(-3*time.Hour+time.Duration(n)*time.Second))
		rows, backlog = append(rows, d), append(backlog, d.ID)
	}
	mustWrite(t, s, &ordercore.Changeset{NewWebhookEndpoints: []ordercore.WebhookEndpoint{on, off, busy}, NewWebhookDeliveries: rows})
	all := []ordercore.WebhookDue{{EndpointID: on.ID, Max: 10}, {EndpointID: off.ID, Max: 10}}
	due, err := s.DueWebhookDeliveries(ctx, now, all)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{early.ID, tieA.ID, tieB.ID, atNow.ID}, deliveryIDs(due)); diff != "" {
		t.Errorf("due deliveries, earliest first (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(early, due[0]); diff != "" {
		t.Errorf("a due delivery as read (-wrote +read):\n%s", diff)
	}
	if due, _ := s.DueWebhookDeliveries(ctx, now, []ordercore.WebhookDue{{EndpointID: on.ID, Max: 2}}); len(due) != 2 || due[1].ID != tieA.ID {
		t.Errorf("at most 2: %v", deliveryIDs(due))
	}
	// The busy endpoint's backlog is all earlier, and still the other endpoint gets its
	// share; endpoints come in the order asked.
	due, err = s.DueWebhookDeliveries(ctx, now, []ordercore.WebhookDue{{EndpointID: busy.ID, Max: 3}, {EndpointID: on.ID, Max: 1}, {EndpointID: id(99), Max: 5}})
	if diff := cmp.Diff(append(backlog[:3:3], early.ID), deliveryIDs(due)); err != nil || diff != "" {
		t.Errorf("a busy endpoint and another (-want +got):\n%s %v", diff, err)
	}
	if due, err := s.DueWebhookDeliveries(ctx, now, []ordercore.WebhookDue{{EndpointID: on.ID, Max: 0}}); err != nil || len(due) != 0 {
		t.Errorf("at most 0: %v %v", deliveryIDs(due), err)
	}
	// Enabled again, its due deliveries are due again.
	on2 := off
	on2.Enabled, on2.Version = true, 2
	mustWrite(t, s, &ordercore.Changeset{WebhookEndpointChanges: []ordercore.WebhookEndpointChange{{Endpoint: on2, FromVersion: 1}}})
	if due, _ := s.DueWebhookDeliveries(ctx, now, all); len(due) != 5 || due[4].ID != ofDisabled.ID {
		t.Errorf("after enabling: %v, want the formerly disabled endpoint's last", deliveryIDs(due))
	}
	if due, err := s.DueWebhookDeliveries(ctx, t0.Add(-4*time.Hour), all); err != nil || len(due) != 0 {
		t.Errorf("nothing due before the earliest: %v %v", deliveryIDs(due), err)
	}
}

// testWebhookLists: endpoints are counted, and page oldest first; an endpoint's deliveries page newest
// first, all or of one status; a cursor that names no delivery of the endpoint is refused.
func testWebhookLists(t *testing.T, s Store) {
	ctx := context.Background()
	var es []ordercore.WebhookEndpoint
	for n := 1; n <= 5; n++ {
		es = append(es, endpoint(n))
	}
	var ds []ordercore.WebhookDelivery
	for n := 1; n <= 7; n++ {
		d := delivery(100+n, es[0].ID, int64(n), t0)
		if n%2 == 0 {
			d.Status, d.NextAttemptAt = ordercore.WebhookDead, time.Time{}
		}
		ds = append(ds, d)
	}
	ds = append(ds, delivery(200, es[1].ID, 1, t0))
	mustWrite(t, s, &ordercore.Changeset{NewWebhookEndpoints: es, NewWebhookDeliveries: ds})
	inTx(t, s, func(tx ordercore.WriteTx) error {
		n, err := tx.WebhookEndpointCount(ctx)
		if err == nil && n != len(es) {
			t.Errorf("WebhookEndpointCount = %d, want %d", n, len(es))
		}
		return err
	})

	var gotE []string
	after := ""
	for range 10 {
		page, err := s.ListWebhookEndpoints(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		gotE = append(gotE, endpointIDs(page)...)
		after = page[len(page)-1].ID
	}
	if diff := cmp.Diff(endpointIDs(es), gotE); diff != "" {
		t.Errorf("endpoints, oldest first (-want +got):\n%s", diff)
	}

	pages := func(status ordercore.WebhookStatus) []string {
		var got []string
		after := ""
		for range 10 {
			page, err := s.ListWebhookDeliveries(ctx, es[0].ID, status, after, 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, deliveryIDs(page)...)
			after = page[len(page)-1].ID
		}
		return got
	}
	if diff := cmp.Diff([]string{id(107), id(106), id(105), id(104), id(103), id(102), id(101)}, pages("")); diff != "" {
		t.Errorf("all deliveries, newest first (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{id(106), id(104), id(102)}, pages(ordercore.WebhookDead)); diff != "" {
		t.Errorf("dead letters, newest first (-want +got):\n%s", diff)
	}
	if got, err := s.ListWebhookDeliveries(ctx, id(99), "", "", 10); err != nil || len(got) != 0 {
		t.Errorf("deliveries of no endpoint: %v %v", got, err)
	}
	for _, cursor := range []string{id(999), id(200)} { // no delivery; another endpoint's
		if _, err := s.ListWebhookDeliveries(ctx, es[0].ID, "", cursor, 3); ordercore.ErrorCode(err) != ordercore.EInvalidCursor {
			t.Errorf("cursor %s: %v, want invalid_cursor", cursor, err)
		}
	}
}

// testWebhookDelete: deleting an endpoint removes it and every delivery of it, leaving
// other endpoints' alone; a stale version refuses the batch and keeps everything.
func testWebhookDelete(t *testing.T, s Store) {
	ctx := context.Background()
	gone, kept := endpoint(1), endpoint(2)
	pending := delivery(11, gone.ID, 1, t0)
	dead := delivery(12, gone.ID, 2, time.Time{})
	dead.Status = ordercore.WebhookDead
	other := delivery(13, kept.ID, 1, t0)
	mustWrite(t, s, &ordercore.Changeset{NewWebhookEndpoints: []ordercore.WebhookEndpoint{gone, kept},
		NewWebhookDeliveries: []ordercore.WebhookDelivery{pending, dead, other}})
	err := s.Write(ctx, func(tx ordercore.WriteTx) error {
		return tx.Apply(ctx, &ordercore.Changeset{DeletedWebhookEndpoints: []ordercore.WebhookEndpointDeletion{{ID: gone.ID, FromVersion: 2}}})
	})
	if err == nil {
		t.Error("a delete at a stale version was applied")
	}
	if ds, _ := s.ListWebhookDeliveries(ctx, gone.ID, "", "", 10); len(ds) != 2 {
		t.Errorf("after a refused delete: %d deliveries, want 2", len(ds))
	}
	mustWrite(t, s, &ordercore.Changeset{DeletedWebhookEndpoints: []ordercore.WebhookEndpointDeletion{{ID: gone.ID, FromVersion: 1}}})
	if _, err := s.WebhookEndpoint(ctx, gone.ID); ordercore.ErrorCode(err) != ordercore.ENOTFOUND {
		t.Errorf("deleted endpoint: %v, want not_found", err)
	}
	if ds, err := s.ListWebhookDeliveries(ctx, gone.ID, "", "", 10); err != nil || len(ds) != 0 {
		t.Errorf("deleted endpoint's deliveries: %v %v, want none", deliveryIDs(ds), err)
	}
	if ds, _ := s.ListWebhookDeliveries(ctx, kept.ID, "", "", 10); len(ds) != 1 || ds[0].ID != other.ID {
		t.Errorf("the other endpoint's deliveries: %v", deliveryIDs(ds))
	}
	if due, _ := s.DueWebhookDeliveries(ctx, t0, []ordercore.WebhookDue{{EndpointID: gone.ID, Max: 5}, {EndpointID: kept.ID, Max: 5}}); len(due) != 1 || due[0].ID != other.ID {
		t.Errorf("due after the delete: %v", deliveryIDs(due))
	}
}
