package httpapi_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"ordercore"
	"ordercore/httpapi"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
)

type endpointsPage struct {
	Endpoints  []httpapi.WebhookEndpointView `json:"endpoints"`
	NextCursor string                        `json:"next_cursor"`
}

type deliveriesPage struct {
	Deliveries []ordercore.WebhookDelivery `json:"deliveries"`
	NextCursor string                      `json:"next_cursor"`
}

func (b *bundle) mustEndpoint(t *testing.T, body string, headers ...string) (httpapi.WebhookEndpointView, response) {
	t.Helper()
	r := b.do(t, "POST", "/v1/webhook-endpoints", body, headers...)
	if r.status != http.StatusCreated {
		t.Fatalf("create webhook endpoint: %d %s", r.status, r.body)
	}
	var v httpapi.WebhookEndpointView
	r.json(t, &v)
	return v, r
}

// webhookDigest hashes the webhook tables, the events and the stored responses through a
// separate connection: a rejected request must change none of them.
func webhookDigest(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := sha256.New()
	for _, table := range []string{"webhook_endpoints", "webhook_deliveries", "events", "idempotency_keys"} {
		rows, err := db.Query("SELECT * FROM " + table + " ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals, ptrs := make([]any, len(cols)), make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(h, "%s|%v\n", table, vals)
		}
		rows.Close()
	}
	return hex.EncodeToString(h.Sum(nil))
}

var hexSecret = regexp.MustCompile(`^[0-9a-f]{64}$`)

// TestWebhookEndpointsAPI: an endpoint is created with a fresh secret (shown at creation
// and by GET, not in the list), a keyed retry returns the same endpoint and secret, and
// an update disables it or changes its event types.
func TestWebhookEndpointsAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	body := `{"url":"https://shop.example/hooks","event_types":["order.paid","refund.*"]}`
	ep, r := b.mustEndpoint(t, body, "Idempotency-Key", "hook-1")
	if !hexSecret.MatchString(ep.Secret) || !ep.Enabled || ep.Version != 1 || ep.URL != "https://shop.example/hooks" ||
		strings.Join(ep.EventTypes, ",") != "order.paid,refund.*" {
		t.Errorf("created %+v", ep)
	}
	if loc := r.header.Get("Location"); loc != "/v1/webhook-endpoints/"+ep.ID {
		t.Errorf("Location = %q", loc)
	}
	replay, r := b.mustEndpoint(t, `{"event_types":["order.paid","refund.*"], "url":"https://shop.example/hooks"}`, "Idempotency-Key", "hook-1")
	if replay.ID != ep.ID || replay.Secret != ep.Secret || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("a keyed retry made %+v (replayed %q), want the first endpoint", replay, r.header.Get("Idempotent-Replayed"))
	}
	if r := b.do(t, "POST", "/v1/webhook-endpoints", `{"url":"https://other.example/","event_types":["*"]}`, "Idempotency-Key", "hook-1"); r.status != 422 || r.code(t) != ordercore.EIdemKeyReused {
		t.Errorf("the key with another body: %d %s", r.status, r.body)
	}
	other, _ := b.mustEndpoint(t, `{"url":"http://erp.example:9000/in","event_types":["*"]}`)
	if other.Secret == ep.Secret || other.ID == ep.ID {
		t.Error("two endpoints share an id or a secret")
	}

	var got httpapi.WebhookEndpointView
	r = b.do(t, "GET", "/v1/webhook-endpoints/"+ep.ID, "")
	r.json(t, &got)
	if r.status != 200 || got.Secret != ep.Secret || got.ID != ep.ID {
		t.Errorf("GET: %d %+v", r.status, got)
	}
	var page endpointsPage
	r = b.do(t, "GET", "/v1/webhook-endpoints?limit=1", "")
	r.json(t, &page)
	if r.status != 200 || len(page.Endpoints) != 1 || page.Endpoints[0].ID != ep.ID || page.Endpoints[0].Secret != "" || page.NextCursor != ep.ID {
		t.Errorf("first page: %d %s", r.status, r.body)
	}
	r = b.do(t, "GET", "/v1/webhook-endpoints?limit=1&cursor="+page.NextCursor, "")
	page = endpointsPage{}
	r.json(t, &page)
	if len(page.Endpoints) != 1 || page.Endpoints[0].ID != other.ID || page.NextCursor != "" {
		t.Errorf("second page: %s", r.body)
	}

	r = b.do(t, "POST", "/v1/webhook-endpoints/"+ep.ID, `{"enabled":false}`, "Idempotency-Key", "off-1")
	got = httpapi.WebhookEndpointView{}
	r.json(t, &got)
	if r.status != 200 || got.Enabled || got.Version != 2 || got.Secret != ep.Secret {
		t.Errorf("disable: %d %s", r.status, r.body)
	}
	if r := b.do(t, "POST", "/v1/webhook-endpoints/"+ep.ID, `{"enabled":false}`, "Idempotency-Key", "off-1"); r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("keyed retry of the update: %d %v", r.status, r.header)
	}
	r = b.do(t, "POST", "/v1/webhook-endpoints/"+ep.ID, `{"enabled":true,"event_types":["*"]}`)
	got = httpapi.WebhookEndpointView{}
	r.json(t, &got)
	if r.status != 200 || !got.Enabled || got.Version != 3 || strings.Join(got.EventTypes, ",") != "*" {
		t.Errorf("enable with all events: %d %s", r.status, r.body)
	}
	var timeline []ordercore.Event
	timeline, err := b.db.AggregateEvents(context.Background(), ep.ID, 10)
	if err != nil || len(timeline) != 3 || timeline[0].Type != ordercore.EventWebhookCreated || strings.Contains(string(timeline[0].Data), ep.Secret) {
		t.Errorf("endpoint timeline %+v %v: want created and two updates, and never the secret", timeline, err)
	}
}

// TestWebhookDeliveriesAPI: an endpoint's deliveries page newest first, by status; its
// dead letters are the dead ones; a redelivery (audited, keyed) makes a dead one pending.
func TestWebhookDeliveriesAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{WebhookSchedule: []time.Duration{0}}) // one attempt, then dead
	ep, _ := b.mustEndpoint(t, `{"url":"https://shop.example/hooks","event_types":["sku.created"]}`)
	for _, id := range []string{"a", "b", "c"} {
		b.mustSKU(t, id, "USD", 1)
	}
	ctx := context.Background()
	b.scheduleAll(t, ep.ID)
	list := func(query string) deliveriesPage {
		t.Helper()
		r := b.do(t, "GET", "/v1/webhook-endpoints/"+ep.ID+"/deliveries"+query, "")
		if r.status != 200 {
			t.Fatalf("list %s: %d %s", query, r.status, r.body)
		}
		var p deliveriesPage
		r.json(t, &p)
		return p
	}
	all := list("?status=pending")
	if len(all.Deliveries) != 3 || all.NextCursor != "" {
		t.Fatalf("pending: %+v", all)
	}
	first := list("?limit=2")
	second := list("?limit=2&cursor=" + first.NextCursor)
	if len(first.Deliveries) != 2 || len(second.Deliveries) != 1 || second.NextCursor != "" ||
		first.Deliveries[0].ID != all.Deliveries[0].ID || second.Deliveries[0].ID != all.Deliveries[2].ID {
		t.Errorf("pages %+v then %+v, want the pending list in two", first, second)
	}
	// The oldest fails its one attempt: dead.
	oldest := all.Deliveries[2]
	if _, err := b.eng.Submit(ctx, engine.WebhookAttempted{DeliveryID: oldest.ID, Version: oldest.Version, Status: 410, Err: "HTTP 410: gone"}, nil); err != nil {
		t.Fatal(err)
	}
	dead := list("?status=dead")
	if len(dead.Deliveries) != 1 || dead.Deliveries[0].ID != oldest.ID || dead.Deliveries[0].LastStatus != 410 {
		t.Fatalf("dead letters: %+v", dead)
	}
	path := "/v1/webhook-deliveries/" + oldest.ID + "/redeliver"
	note := `{"by":"ops","note":"receiver is back"}`
	r := b.do(t, "POST", path, note, "Idempotency-Key", "redo-1")
	var d ordercore.WebhookDelivery
	r.json(t, &d)
	if r.status != 200 || d.Status != ordercore.WebhookPending || d.Attempts != 0 || d.NextAttemptAt.IsZero() {
		t.Errorf("redeliver: %d %s", r.status, r.body)
	}
	if r := b.do(t, "POST", path, note, "Idempotency-Key", "redo-1"); r.status != 200 || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("keyed retry of the redelivery: %d %s", r.status, r.body)
	}
	if dead := list("?status=dead"); len(dead.Deliveries) != 0 {
		t.Errorf("dead letters after the redelivery: %+v", dead)
	}
	timeline, _ := b.db.AggregateEvents(ctx, ep.ID, 10)
	if n := len(timeline); n == 0 || timeline[n-1].Type != ordercore.EventWebhookRedelivered || !strings.Contains(string(timeline[n-1].Data), `"by":"ops"`) {
		t.Errorf("no audited redelivery on the endpoint's timeline: %+v", timeline)
	}
}

// TestWebhookBadInputChangesNothing: malformed, invalid or unknown input gets a 4xx
// problem with a stable code and leaves every table as it was.
func TestWebhookBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	ep, _ := b.mustEndpoint(t, `{"url":"https://shop.example/hooks","event_types":["*"]}`)
	missing := "01900000-0000-7000-8000-000000000099"
	types40 := `"a` + strings.Repeat(`","a`, 39) + `"`
	endpoints, deliveries := "/v1/webhook-endpoints", "/v1/webhook-endpoints/"+ep.ID
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"NotHTTP", "POST", endpoints, `{"url":"ftp://shop.example/","event_types":["*"]}`, 422, ordercore.EInvalidWebhookURL},
		{"Relative", "POST", endpoints, `{"url":"/hooks","event_types":["*"]}`, 422, ordercore.EInvalidWebhookURL},
		{"NoHost", "POST", endpoints, `{"url":"https://","event_types":["*"]}`, 422, ordercore.EInvalidWebhookURL},
		{"NotAURL", "POST", endpoints, `{"url":"not a url","event_types":["*"]}`, 422, ordercore.EInvalidWebhookURL},
		{"Credentials", "POST", endpoints, `{"url":"https://u:p@shop.example/","event_types":["*"]}`, 422, ordercore.EInvalidWebhookURL},
		{"URLTooLong", "POST", endpoints, `{"url":"https://shop.example/` + strings.Repeat("x", 3000) + `","event_types":["*"]}`, 422, ordercore.EInvalidWebhookURL},
		{"EmptyURL", "POST", endpoints, `{"url":"","event_types":["*"]}`, 422, ordercore.EInvalidWebhookURL},
		{"NoEventTypes", "POST", endpoints, `{"url":"https://shop.example/","event_types":[]}`, 422, ordercore.EInvalidEventTypes},
		{"BadEventType", "POST", endpoints, `{"url":"https://shop.example/","event_types":["Order Paid"]}`, 422, ordercore.EInvalidEventTypes},
		{"UnknownEventType", "POST", endpoints, `{"url":"https://shop.example/","event_types":["order.payed"]}`, 422, ordercore.EUnknownEventType},
		{"CloudEventsType", "POST", endpoints, `{"url":"https://shop.example/","event_types":["ordercore.order.placed"]}`, 422, ordercore.EUnknownEventType},
		{"UpdateUnknownEventType", "POST", deliveries, `{"event_types":["order.*","orders.*"]}`, 422, ordercore.EUnknownEventType},
		{"EventTypeTooLong", "POST", endpoints, `{"url":"https://shop.example/","event_types":["` + strings.Repeat("a", 65) + `"]}`, 422, ordercore.EInvalidEventTypes},
		{"TooManyEventTypes", "POST", endpoints, `{"url":"https://shop.example/","event_types":[` + types40 + `]}`, 422, ordercore.EInvalidEventTypes},
		{"EventTypesNotStrings", "POST", endpoints, `{"url":"https://shop.example/","event_types":[1]}`, 422, ordercore.EInvalidEventTypes},
		{"MissingEventTypes", "POST", endpoints, `{"url":"https://shop.example/"}`, 422, ordercore.EINVALID},
		{"UnknownField", "POST", endpoints, `{"url":"https://shop.example/","event_types":["*"],"secret":"mine"}`, 422, ordercore.EUnknownField},
		{"MalformedJSON", "POST", endpoints, `{"url":`, 400, ordercore.EMalformedJSON},
		{"BodyTooLarge", "POST", endpoints, `{"url":"` + strings.Repeat("x", 1<<20) + `"}`, 413, ordercore.EBodyTooLarge},
		{"UpdateNothing", "POST", deliveries, `{}`, 422, ordercore.EINVALID},
		{"UpdateEmptyTypes", "POST", deliveries, `{"event_types":[]}`, 422, ordercore.EInvalidEventTypes},
		{"UpdateBadURL", "POST", deliveries, `{"url":"mailto:ops@shop.example"}`, 422, ordercore.EInvalidWebhookURL},
		{"UpdateEnabledNotBool", "POST", deliveries, `{"enabled":"yes"}`, 422, ordercore.EINVALID},
		{"UpdateUnknownField", "POST", deliveries, `{"enabled":true,"cursor":0}`, 422, ordercore.EUnknownField},
		{"UpdateUnknown", "POST", endpoints + "/" + missing, `{"enabled":false}`, 404, ordercore.ENOTFOUND},
		{"GetUnknown", "GET", endpoints + "/" + missing, ``, 404, ordercore.ENOTFOUND},
		{"DeliveriesOfUnknown", "GET", endpoints + "/" + missing + "/deliveries", ``, 404, ordercore.ENOTFOUND},
		{"DeliveriesBadStatus", "GET", deliveries + "/deliveries?status=lost", ``, 422, ordercore.EINVALID},
		{"DeliveriesBadCursor", "GET", deliveries + "/deliveries?cursor=" + missing, ``, 400, ordercore.EInvalidCursor},
		{"RedeliverUnknown", "POST", "/v1/webhook-deliveries/" + missing + "/redeliver", `{"by":"ops","note":"n"}`, 404, ordercore.ENOTFOUND},
		{"RedeliverUnaudited", "POST", "/v1/webhook-deliveries/" + missing + "/redeliver", `{"by":"ops"}`, 422, ordercore.EINVALID},
	}
	before := webhookDigest(t, b.path)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkProblem(t, b.do(t, tt.method, tt.path, tt.body), tt.status, tt.code)
		})
	}
	if after := webhookDigest(t, b.path); after != before {
		t.Error("rejected requests changed the database")
	}
}

func TestOpenAPIDocumentsWebhooks(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	r := b.do(t, "GET", "/openapi.json", "")
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Parameters  []struct {
				Name string `json:"name"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	r.json(t, &doc)
	for _, op := range []struct {
		path, method, id string
		idem             bool
	}{
		{"/v1/webhook-endpoints", "post", "create-webhook-endpoint", true},
		{"/v1/webhook-endpoints", "get", "list-webhook-endpoints", false},
		{"/v1/webhook-endpoints/{id}", "get", "get-webhook-endpoint", false},
		{"/v1/webhook-endpoints/{id}", "post", "update-webhook-endpoint", true},
		{"/v1/webhook-endpoints/{id}", "delete", "delete-webhook-endpoint", true},
		{"/v1/webhook-endpoints/{id}/deliveries", "get", "list-webhook-deliveries", false},
		{"/v1/webhook-deliveries/{id}/redeliver", "post", "redeliver-webhook", true},
	} {
		o, ok := doc.Paths[op.path][op.method]
		if !ok || o.OperationID != op.id {
			t.Errorf("OpenAPI document lacks %s %s (%s)", op.method, op.path, op.id)
			continue
		}
		hasKey := false
		for _, p := range o.Parameters {
			hasKey = hasKey || p.Name == "Idempotency-Key"
		}
		if hasKey != op.idem {
			t.Errorf("%s %s documents Idempotency-Key: %v, want %v", op.method, op.path, hasKey, op.idem)
		}
	}
}

// TestWebhookURLPolicy: by default an endpoint may not name a loopback, private,
// link-local, unspecified or multicast address, nor localhost, nor this API itself
// (422 webhook_url_not_allowed, nothing stored), on creation or update; a port must be
// 1..65535. --webhook-allow-private (engine.Config.WebhookAllowPrivate) lets loopback and
// private receivers through, never link-local ones such as the metadata service.
func TestWebhookURLPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	ep, _ := b.mustEndpoint(t, `{"url":"https://93.184.216.34:8443/hooks","event_types":["*"]}`)
	refused := []string{
		b.url + "/v1/orders/0190/cancel", // this API
		"http://127.0.0.1:8080/", "http://127.1.2.3/", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
		"http://localhost:8080/", "http://LOCALHOST./", "http://api.localhost/",
		"http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/",
		"http://10.0.0.5/", "http://172.16.0.1/", "http://192.168.1.1/", "http://100.64.0.1/", "http://[fd00::1]/",
		"http://0.0.0.0:8080/", "http://0.1.2.3/", "http://[::]/", "http://224.0.0.1/", "http://255.255.255.255/",
	}
	before := webhookDigest(t, b.path)
	for _, u := range refused {
		checkProblem(t, b.do(t, "POST", "/v1/webhook-endpoints", `{"url":"`+u+`","event_types":["*"]}`), 422, ordercore.EWebhookURLNotAllowed)
		checkProblem(t, b.do(t, "POST", "/v1/webhook-endpoints/"+ep.ID, `{"url":"`+u+`"}`), 422, ordercore.EWebhookURLNotAllowed)
	}
	// An endpoint that does not exist is not found, whatever the update says.
	checkProblem(t, b.do(t, "POST", "/v1/webhook-endpoints/"+ordercore.NewID(time.Now()), `{"url":"http://169.254.169.254/"}`), 404, ordercore.ENOTFOUND)
	for _, u := range []string{"http://shop.example:99999/", "http://shop.example:0/"} {
		checkProblem(t, b.do(t, "POST", "/v1/webhook-endpoints", `{"url":"`+u+`","event_types":["*"]}`), 422, ordercore.EInvalidWebhookURL)
	}
	if after := webhookDigest(t, b.path); after != before {
		t.Error("refused endpoints changed the database")
	}

	onPrem := setup(t, engine.Config{WebhookAllowPrivate: true})
	for _, u := range []string{"http://127.0.0.1:8080/in", "http://localhost:9000/in", "http://10.0.0.5/in", "http://[fd00::1]/in"} {
		onPrem.mustEndpoint(t, `{"url":"`+u+`","event_types":["*"]}`)
	}
	for _, u := range []string{"http://169.254.169.254/", "http://0.0.0.0/", "http://224.0.0.1/"} {
		checkProblem(t, onPrem.do(t, "POST", "/v1/webhook-endpoints", `{"url":"`+u+`","event_types":["*"]}`), 422, ordercore.EWebhookURLNotAllowed)
	}
}

// TestWebhookEndpointCapAfterIdempotencyKey: the bound on endpoints is checked after the
// Idempotency-Key: once it is reached, a keyed retry of an earlier creation still replays
// its 201, and only a new creation is refused.
func TestWebhookEndpointCapAfterIdempotencyKey(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	body := `{"url":"https://shop.example/hooks","event_types":["*"]}`
	first, _ := b.mustEndpoint(t, body, "Idempotency-Key", "cap-1")
	for range limit.WebhookEndpointsMax - 1 {
		b.mustEndpoint(t, body)
	}
	checkProblem(t, b.do(t, "POST", "/v1/webhook-endpoints", body), 422, ordercore.ETooManyWebhooks)
	replay, r := b.mustEndpoint(t, body, "Idempotency-Key", "cap-1")
	if replay.ID != first.ID || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("keyed retry at the bound: %d %s, want the first endpoint replayed", r.status, r.body)
	}
	checkProblem(t, b.do(t, "POST", "/v1/webhook-endpoints", body, "Idempotency-Key", "cap-2"), 422, ordercore.ETooManyWebhooks)
}

// TestDeleteWebhookEndpoint: DELETE removes an endpoint and its deliveries (audited on
// its timeline), a keyed retry replays the 200, and the place it held under the bound is
// free again.
func TestDeleteWebhookEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	body := `{"url":"https://shop.example/hooks","event_types":["sku.created"]}`
	ep, _ := b.mustEndpoint(t, body)
	b.mustSKU(t, "a", "USD", 1)
	ctx := context.Background()
	b.scheduleAll(t, ep.ID)
	if ds, _ := b.db.ListWebhookDeliveries(ctx, ep.ID, "", "", 10); len(ds) != 1 {
		t.Fatalf("deliveries before the delete: %v", ds)
	}
	path := "/v1/webhook-endpoints/" + ep.ID
	r := b.do(t, "DELETE", path, "", "Idempotency-Key", "del-1")
	var got httpapi.WebhookEndpointView
	r.json(t, &got)
	if r.status != 200 || got.ID != ep.ID || got.Secret != "" {
		t.Errorf("delete: %d %s", r.status, r.body)
	}
	if r := b.do(t, "DELETE", path, "", "Idempotency-Key", "del-1"); r.status != 200 || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("keyed retry of the delete: %d %s", r.status, r.body)
	}
	checkProblem(t, b.do(t, "DELETE", path, ""), 404, ordercore.ENOTFOUND)
	checkProblem(t, b.do(t, "GET", path, ""), 404, ordercore.ENOTFOUND)
	checkProblem(t, b.do(t, "GET", path+"/deliveries", ""), 404, ordercore.ENOTFOUND)
	if ds, _ := b.db.ListWebhookDeliveries(ctx, ep.ID, "", "", 10); len(ds) != 0 {
		t.Errorf("deliveries after the delete: %v", ds)
	}
	timeline, _ := b.db.AggregateEvents(ctx, ep.ID, 10)
	if n := len(timeline); n != 2 || timeline[1].Type != ordercore.EventWebhookDeleted {
		t.Errorf("endpoint timeline %+v, want created then deleted", timeline)
	}

	for range limit.WebhookEndpointsMax {
		b.mustEndpoint(t, body)
	}
	checkProblem(t, b.do(t, "POST", "/v1/webhook-endpoints", body), 422, ordercore.ETooManyWebhooks)
	var page endpointsPage
	b.do(t, "GET", "/v1/webhook-endpoints?limit=1", "").json(t, &page)
	if r := b.do(t, "DELETE", "/v1/webhook-endpoints/"+page.Endpoints[0].ID, ""); r.status != 200 {
		t.Fatalf("delete at the bound: %d %s", r.status, r.body)
	}
	b.mustEndpoint(t, body)
}

// scheduleAll records the endpoint's deliveries of every event so far, as the deliverer's
// scheduling pass would.
func (b *bundle) scheduleAll(t *testing.T, endpointID string) {
	t.Helper()
	ctx := context.Background()
	evs, err := b.db.Events(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.eng.Submit(ctx, engine.ScheduleWebhooks{EndpointID: endpointID, Through: evs[len(evs)-1].Seq, Events: evs}, nil); err != nil {
		t.Fatal(err)
	}
}
