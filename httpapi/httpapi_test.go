package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
	"ordercore/httpapi"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
	"ordercore/sqlite"
)

type bundle struct {
	url  string
	path string
	db   *sqlite.DB
	eng  *engine.Engine
}

// setup runs the real API over real HTTP on a fresh SQLite file.
func setup(t testing.TB, cfg engine.Config) *bundle {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ordercore.db")
	return start(t, path, cfg)
}

func start(t testing.TB, path string, cfg engine.Config) *bundle {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, path, db, db, cfg)
}

// serveOn serves the API from an engine that writes to store and reads from db.
func serveOn(t testing.TB, path string, db *sqlite.DB, store ordercore.Store, cfg engine.Config) *bundle {
	eng := engine.New(store, ordercore.SystemClock{}, cfg)
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Engine: eng, Reader: db, Clock: ordercore.SystemClock{}, ManualPayments: true}))
	b := &bundle{url: srv.URL, path: path, db: db, eng: eng}
	t.Cleanup(func() { srv.Close(); eng.Close(); db.Close() })
	return b
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) code(t testing.TB) string {
	t.Helper()
	var p struct{ Code string }
	r.json(t, &p)
	return p.Code
}

func (b *bundle) do(t testing.TB, method, path, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, b.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: raw}
}

func (b *bundle) mustSKU(t testing.TB, id, currency string, stock int) {
	t.Helper()
	r := b.do(t, "POST", "/v1/skus", fmt.Sprintf(`{"id":%q,"name":"Item %s","price":{"amount":1250,"currency":%q},"stock":%d}`, id, id, currency, stock))
	if r.status != http.StatusCreated {
		t.Fatalf("create sku %s: %d %s", id, r.status, r.body)
	}
}

func (b *bundle) mustOrder(t *testing.T, body string) ordercore.Order {
	t.Helper()
	r := b.do(t, "POST", "/v1/orders", body)
	if r.status != http.StatusCreated {
		t.Fatalf("place order: %d %s", r.status, r.body)
	}
	var o ordercore.Order
	r.json(t, &o)
	return o
}

// digest hashes every row of every table through a separate connection, so a test can
// show that a rejected request changed nothing at all.
func digest(t testing.TB, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := sha256.New()
	for _, table := range []string{"skus", "orders", "order_lines", "stock_ledger", "events", "idempotency_keys",
		"payments", "refunds", "money_ledger", "channel_events", "review_items"} {
		rows, err := db.Query("SELECT * FROM " + table + " ORDER BY 1, 2")
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		n := 0
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(h, "%s|%v\n", table, vals)
			n++
		}
		rows.Close()
		fmt.Fprintf(h, "%s rows=%d\n", table, n)
	}
	return hex.EncodeToString(h.Sum(nil))
}

const orderBody = `{"user_id":"u1","lines":[{"sku":"a","quantity":2}]}`

func TestIdempotencyReplay(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	b.mustSKU(t, "a", "USD", 10)
	first := b.do(t, "POST", "/v1/orders", orderBody, "Idempotency-Key", "key-1")
	// A retry with the same body in another layout is the same request.
	second := b.do(t, "POST", "/v1/orders", "{ \"lines\": [{\"quantity\": 2, \"sku\": \"a\"}],\n \"user_id\": \"u1\" }", "Idempotency-Key", "key-1")
	if first.status != 201 || second.status != 201 {
		t.Fatalf("statuses %d, %d; want 201 twice: %s", first.status, second.status, second.body)
	}
	if got := second.header.Get("Idempotent-Replayed"); got != "true" {
		t.Errorf("Idempotent-Replayed = %q on the retry, want true", got)
	}
	if got := first.header.Get("Idempotent-Replayed"); got != "" {
		t.Errorf("Idempotent-Replayed = %q on the first request, want none", got)
	}
	var o1, o2 ordercore.Order
	first.json(t, &o1)
	second.json(t, &o2)
	if diff := cmp.Diff(o1, o2); diff != "" {
		t.Errorf("replayed order differs (-first +retry):\n%s", diff)
	}
	s, _ := b.db.SKU(context.Background(), "a")
	if s.Reserved != 2 {
		t.Errorf("reserved = %d after a request and its retry, want 2 (one order)", s.Reserved)
	}
	// The stored response survives a restart of the whole stack.
	b.eng.Close()
	b.db.Close()
	b2 := start(t, b.path, engine.Config{})
	third := b2.do(t, "POST", "/v1/orders", orderBody, "Idempotency-Key", "key-1")
	var o3 ordercore.Order
	third.json(t, &o3)
	if third.status != 201 || o3.ID != o1.ID {
		t.Errorf("after restart: %d order %s, want 201 and the stored order %s", third.status, o3.ID, o1.ID)
	}
}

func TestIdempotencyMismatch(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	b.mustSKU(t, "a", "USD", 10)
	if r := b.do(t, "POST", "/v1/orders", orderBody, "Idempotency-Key", "key-1"); r.status != 201 {
		t.Fatalf("first: %d %s", r.status, r.body)
	}
	before := digest(t, b.path)
	r := b.do(t, "POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"a","quantity":3}]}`, "Idempotency-Key", "key-1")
	if r.status != 422 || r.code(t) != ordercore.EIdemKeyReused {
		t.Fatalf("same key, other body: %d %s; want 422 %s", r.status, r.body, ordercore.EIdemKeyReused)
	}
	// The same key on another operation is another request too.
	r = b.do(t, "POST", "/v1/skus/a/restock", `{"quantity":1}`, "Idempotency-Key", "key-1")
	if r.status != 422 || r.code(t) != ordercore.EIdemKeyReused {
		t.Fatalf("same key, other operation: %d %s; want 422", r.status, r.body)
	}
	if after := digest(t, b.path); after != before {
		t.Error("a reused key changed the database")
	}
}

func TestIdempotencyConcurrent(t *testing.T) {
	t.Parallel()
	// The committer is held at the store's gate (gatedStore) with the SKU's creation
	// while the first request waits in its queue, so the first is certainly still
	// executing when its retry arrives.
	b, g := setupGated(t, engine.Config{})
	eng := b.eng
	var wg sync.WaitGroup
	var sku response
	wg.Go(func() {
		sku = b.do(t, "POST", "/v1/skus", `{"id":"a","name":"A","price":{"amount":1250,"currency":"USD"},"stock":10}`)
	})
	<-g.entered
	var first response
	wg.Go(func() { first = b.do(t, "POST", "/v1/orders", orderBody, "Idempotency-Key", "key-c") })
	for eng.QueueLen() != 1 { // the first request waits behind the held transaction
		time.Sleep(time.Millisecond)
	}
	second := b.do(t, "POST", "/v1/orders", orderBody, "Idempotency-Key", "key-c")
	close(g.gate)
	wg.Wait()
	if sku.status != http.StatusCreated {
		t.Fatalf("create sku: %d %s", sku.status, sku.body)
	}
	if second.status != 409 || second.code(t) != ordercore.EIdemKeyInUse {
		t.Fatalf("concurrent retry: %d %s; want 409 %s", second.status, second.body, ordercore.EIdemKeyInUse)
	}
	if first.status != 201 {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	// Once the first is done, the retry replays it.
	third := b.do(t, "POST", "/v1/orders", orderBody, "Idempotency-Key", "key-c")
	var o1, o3 ordercore.Order
	first.json(t, &o1)
	third.json(t, &o3)
	if third.status != 201 || o3.ID != o1.ID {
		t.Fatalf("retry after completion: %d %s; want the first order %s", third.status, o3.ID, o1.ID)
	}
}

// TestBadInputChangesNothing sends every kind of bad request and checks each gets its
// 4xx problem with a stable code, and that the database is byte-for-byte unchanged.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	b.mustSKU(t, "a", "USD", 10)
	b.mustSKU(t, "e", "EUR", 10)
	shipped := b.mustOrder(t, orderBody)
	for _, step := range []struct{ path, body string }{
		{"/v1/orders/" + shipped.ID + "/payments/manual", `{"amount":{"amount":2500,"currency":"USD"},"reference":"bank-1"}`},
		{"/v1/orders/" + shipped.ID + "/ship", ``},
	} {
		if r := b.do(t, "POST", step.path, step.body); r.status != 200 {
			t.Fatalf("%s: %d %s", step.path, r.status, r.body)
		}
	}
	pending := b.mustOrder(t, orderBody)
	lines101 := strings.TrimSuffix(strings.Repeat(`{"sku":"a","quantity":1},`, 101), ",")
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code                     string
	}{
		{"MalformedJSON", "POST", "/v1/orders", `{"user_id":"u1","lines":[`, nil, 400, ordercore.EMalformedJSON},
		{"DuplicateName", "POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"a","quantity":1}],"user_id":"u2"}`, nil, 400, ordercore.EMalformedJSON},
		{"DuplicateNameInALine", "POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"a","quantity":1,"quantity":2}]}`, nil, 400, ordercore.EMalformedJSON},
		{"NotAnObject", "POST", "/v1/orders", `[1,2]`, nil, 422, ordercore.EINVALID},
		{"UnknownField", "POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"a","quantity":1}],"price":1}`, nil, 422, ordercore.EUnknownField},
		{"UnknownLineField", "POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"a","quantity":1,"unit_price":1}]}`, nil, 422, ordercore.EUnknownField},
		{"QuantityZero", "POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"a","quantity":0}]}`, nil, 422, ordercore.EInvalidQuantity},
		{"QuantityTooLarge", "POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"a","quantity":1000}]}`, nil, 422, ordercore.EInvalidQuantity},
		{"TooManyLines", "POST", "/v1/orders", `{"user_id":"u1","lines":[` + lines101 + `]}`, nil, 422, ordercore.ETooManyLines},
		{"NoLines", "POST", "/v1/orders", `{"user_id":"u1","lines":[]}`, nil, 422, ordercore.EINVALID},
		{"UnknownSKU", "POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"nope","quantity":1}]}`, nil, 422, ordercore.EUnknownSKU},
		{"CurrencyMismatchOrder", "POST", "/v1/orders", `{"user_id":"u1","currency":"EUR","lines":[{"sku":"a","quantity":1}]}`, nil, 422, ordercore.ECurrencyMismatch},
		{"CurrencyMismatchLines", "POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"a","quantity":1},{"sku":"e","quantity":1}]}`, nil, 422, ordercore.ECurrencyMismatch},
		{"InsufficientStock", "POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"a","quantity":7}]}`, nil, 409, ordercore.EInsufficientStock},
		{"BodyTooLarge", "POST", "/v1/orders", `{"user_id":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413, ordercore.EBodyTooLarge},
		{"ExpiryOutOfRange", "POST", "/v1/orders", `{"user_id":"u1","expires_in_seconds":0,"lines":[{"sku":"a","quantity":1}]}`, nil, 422, ordercore.EINVALID},
		{"CancelShipped", "POST", "/v1/orders/" + shipped.ID + "/cancel", ``, nil, 409, ordercore.EIllegalTransition},
		{"ShipUnpaid", "POST", "/v1/orders/" + pending.ID + "/ship", ``, nil, 409, ordercore.EIllegalTransition},
		{"CompleteUnshipped", "POST", "/v1/orders/" + pending.ID + "/complete", ``, nil, 409, ordercore.EIllegalTransition},
		{"UnknownOrder", "POST", "/v1/orders/01890000-0000-7000-8000-000000000000/cancel", ``, nil, 404, ordercore.ENOTFOUND},
		{"MalformedOrderID", "GET", "/v1/orders/not-an-id", ``, nil, 404, ordercore.ENOTFOUND},
		{"PaymentWrongAmount", "POST", "/v1/orders/" + pending.ID + "/payments/manual", `{"amount":{"amount":1,"currency":"USD"},"reference":"r"}`, nil, 422, ordercore.EAmountMismatch},
		{"PaymentWrongCurrency", "POST", "/v1/orders/" + pending.ID + "/payments/manual", `{"amount":{"amount":2500,"currency":"EUR"},"reference":"r"}`, nil, 422, ordercore.EAmountMismatch},
		{"DuplicateSKU", "POST", "/v1/skus", `{"id":"a","name":"A","price":{"amount":1,"currency":"USD"},"stock":1}`, nil, 409, ordercore.ESKUExists},
		{"BadCurrency", "POST", "/v1/skus", `{"id":"z","name":"Z","price":{"amount":1,"currency":"usd"},"stock":1}`, nil, 422, ordercore.EInvalidCurrency},
		{"UnsupportedCurrency", "POST", "/v1/skus", `{"id":"z","name":"Z","price":{"amount":1,"currency":"XXX"},"stock":1}`, nil, 422, ordercore.EInvalidCurrency},
		{"NegativePrice", "POST", "/v1/skus", `{"id":"z","name":"Z","price":{"amount":-1,"currency":"USD"},"stock":1}`, nil, 422, ordercore.EINVALID},
		{"RestockUnknown", "POST", "/v1/skus/nope/restock", `{"quantity":1}`, nil, 404, ordercore.ENOTFOUND},
		{"RestockZero", "POST", "/v1/skus/a/restock", `{"quantity":0}`, nil, 422, ordercore.EInvalidQuantity},
		{"BadIdempotencyKey", "POST", "/v1/orders", orderBody, []string{"Idempotency-Key", "has space"}, 400, ordercore.EInvalidIdemKey},
		{"BadCursor", "GET", "/v1/orders?user_id=u1&cursor=zzz", ``, nil, 400, ordercore.EInvalidCursor},
		{"MissingUser", "GET", "/v1/orders", ``, nil, 422, ordercore.EINVALID},
		{"NullLines", "POST", "/v1/orders", `{"user_id":"u1","lines":null}`, nil, 422, ordercore.EINVALID},
		{"FractionalQuantity", "POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"a","quantity":1.0}]}`, nil, 422, ordercore.EInvalidQuantity},
		{"EmptyBody", "POST", "/v1/skus", ``, nil, 400, ordercore.EMalformedJSON},
		{"NameWithNUL", "POST", "/v1/skus", `{"id":"z","name":"Z\u0000","price":{"amount":1,"currency":"USD"},"stock":1}`, nil, 422, ordercore.EINVALID},
		{"NameWithControl", "POST", "/v1/skus", `{"id":"z","name":"Z\u0007","price":{"amount":1,"currency":"USD"},"stock":1}`, nil, 422, ordercore.EINVALID},
		{"ReferenceWithNUL", "POST", "/v1/orders/" + pending.ID + "/payments/manual", `{"amount":{"amount":2500,"currency":"USD"},"reference":"r\u0000"}`, nil, 422, ordercore.EINVALID},
		{"PaidOrderOtherAmount", "POST", "/v1/orders/" + shipped.ID + "/payments/manual", `{"amount":{"amount":1,"currency":"JPY"},"reference":"other"}`, nil, 422, ordercore.EAmountMismatch},
		{"NameNotUTF8", "POST", "/v1/skus", "{\"id\":\"u8\",\"name\":\"a\xff\xfeb\",\"price\":{\"amount\":1,\"currency\":\"USD\"},\"stock\":1}", nil, 400, ordercore.EMalformedJSON},
		{"OrderIDTooLong", "GET", "/v1/orders/" + strings.Repeat("a", 37), "", nil, 404, ordercore.ENOTFOUND},
		{"SKUIDTooLong", "POST", "/v1/skus/" + strings.Repeat("a", 65) + "/restock", `{"quantity":1}`, nil, 404, ordercore.ENOTFOUND},
		{"SecondManualPayment", "POST", "/v1/orders/" + shipped.ID + "/payments/manual", `{"amount":{"amount":2500,"currency":"USD"},"reference":"bank-2"}`, nil, 409, ordercore.EIllegalTransition},
		{"CancelMalformedBody", "POST", "/v1/orders/" + pending.ID + "/cancel", `{"this is": not json`, nil, 400, ordercore.EMalformedJSON},
		{"CancelUnknownField", "POST", "/v1/orders/" + pending.ID + "/cancel", `{"reason":"x"}`, nil, 422, ordercore.EUnknownField},
		{"CancelBodyTooLarge", "POST", "/v1/orders/" + pending.ID + "/cancel", `{"a":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413, ordercore.EBodyTooLarge},
		{"CancelOtherMediaType", "POST", "/v1/orders/" + pending.ID + "/cancel", `{}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"IdempotencyKeyTooLong", "POST", "/v1/orders", orderBody, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, ordercore.EInvalidIdemKey},
		{"IdempotencyKeyEmpty", "POST", "/v1/orders", orderBody, []string{"Idempotency-Key", ""}, 400, ordercore.EInvalidIdemKey},
		{"FieldCaseVariant", "POST", "/v1/skus", `{"ID":"z","name":"Z","price":{"amount":1,"currency":"USD"},"stock":1}`, nil, 422, ordercore.EUnknownField},
		{"AuditBlank", "POST", "/v1/review-items/01890000-0000-7000-8000-000000000000/resolve", `{"action":"dismiss","by":"   ","note":"   "}`, nil, 422, ordercore.EINVALID},
		{"UnknownRoute", "GET", "/v1/nope", ``, nil, 404, ordercore.ENOTFOUND},
		{"WrongMethod", "DELETE", "/v1/orders/" + pending.ID, ``, nil, 405, ordercore.EMethodNotAllowed},
	}
	before := digest(t, b.path)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do(t, tt.method, tt.path, tt.body, tt.headers...)
			if r.status != tt.status || r.code(t) != tt.code {
				t.Errorf("got %d %s, want %d %s: %s", r.status, r.code(t), tt.status, tt.code, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q, want application/problem+json", ct)
			}
			var p httpapi.Problem
			r.json(t, &p)
			if p.Status != tt.status || p.Title == "" || !strings.HasPrefix(p.Type, "urn:ordercore:problem:") {
				t.Errorf("problem %+v is not a complete RFC 9457 object", p)
			}
		})
	}
	if after := digest(t, b.path); after != before {
		t.Error("rejected requests changed the database")
	}
}

func TestOrderLifecycleTimeline(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	b.mustSKU(t, "a", "USD", 10)
	o := b.mustOrder(t, `{"user_id":"u1","lines":[{"sku":"a","quantity":3}]}`)
	if o.Status != ordercore.OrderPendingPayment || o.Amount != (ordercore.Money{Amount: 3750, Currency: "USD"}) || o.Version != 1 {
		t.Fatalf("placed order %+v", o)
	}
	for _, step := range []struct{ path, body, status string }{
		{"/payments/manual", `{"amount":{"amount":3750,"currency":"USD"},"reference":"bank-1"}`, "paid"},
		{"/ship", ``, "shipped"},
		{"/complete", ``, "completed"},
	} {
		r := b.do(t, "POST", "/v1/orders/"+o.ID+step.path, step.body)
		var got ordercore.Order
		r.json(t, &got)
		if r.status != 200 || string(got.Status) != step.status {
			t.Fatalf("%s: %d %s", step.path, r.status, r.body)
		}
	}
	r := b.do(t, "GET", "/v1/orders/"+o.ID, "")
	var d httpapi.OrderDetail
	r.json(t, &d)
	var types []string
	var versions []int64
	for _, e := range d.Timeline {
		types = append(types, e.Type)
		var v struct{ Version int64 }
		raw, _ := json.Marshal(e.Data)
		json.Unmarshal(raw, &v)
		versions = append(versions, v.Version)
	}
	if diff := cmp.Diff([]string{"order.placed", "order.paid", "order.shipped", "order.completed"}, types); diff != "" {
		t.Errorf("timeline (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{1, 2, 3, 4}, versions); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	s, _ := b.db.SKU(context.Background(), "a")
	if s.Sold != 3 || s.Reserved != 0 || s.Available() != 7 {
		t.Errorf("sku after a completed order: %+v", s)
	}
	// Cancelling an unpaid order releases its stock; cancelling again changes nothing.
	p := b.mustOrder(t, `{"user_id":"u1","lines":[{"sku":"a","quantity":5}]}`)
	for i := 0; i < 2; i++ {
		r := b.do(t, "POST", "/v1/orders/"+p.ID+"/cancel", "")
		var got ordercore.Order
		r.json(t, &got)
		if r.status != 200 || got.Status != ordercore.OrderCancelled || got.Version != 2 || got.CancelReason != "user" {
			t.Fatalf("cancel #%d: %d %s", i+1, r.status, r.body)
		}
	}
	s, _ = b.db.SKU(context.Background(), "a")
	if s.Available() != 7 {
		t.Errorf("available = %d after cancel, want 7", s.Available())
	}
}

func TestListOrdersAndEventFeedPaginate(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	b.mustSKU(t, "a", "USD", 100)
	var want []string
	for i := 0; i < 7; i++ {
		want = append([]string{b.mustOrder(t, orderBody).ID}, want...) // newest first
	}
	b.mustOrder(t, `{"user_id":"someone-else","lines":[{"sku":"a","quantity":1}]}`)
	var got []string
	cursor := ""
	for page := 0; page < 10; page++ {
		r := b.do(t, "GET", "/v1/orders?user_id=u1&limit=3&cursor="+cursor, "")
		var body struct {
			Orders     []ordercore.Order
			NextCursor string `json:"next_cursor"`
		}
		r.json(t, &body)
		for _, o := range body.Orders {
			got = append(got, o.ID)
		}
		if cursor = body.NextCursor; cursor == "" {
			break
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged orders (-want +got):\n%s", diff)
	}
	var seqs []int64
	after := int64(0)
	for page := 0; page < 10; page++ {
		r := b.do(t, "GET", fmt.Sprintf("/v1/events?after=%d&limit=4", after), "")
		var body struct {
			Events    []ordercore.CloudEvent
			NextAfter int64 `json:"next_after"`
		}
		r.json(t, &body)
		for _, e := range body.Events {
			if e.SpecVersion != "1.0" || !strings.HasPrefix(e.Type, "ordercore.") || e.Subject == "" {
				t.Errorf("event is not a CloudEvent: %+v", e)
			}
			seqs = append(seqs, e.Sequence)
		}
		if len(body.Events) == 0 {
			break
		}
		after = body.NextAfter
	}
	if len(seqs) != 9 { // 1 sku.created + 8 order.placed
		t.Fatalf("feed returned %d events, want 9: %v", len(seqs), seqs)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("feed out of order: %v", seqs)
		}
	}
	// A cursor that is not a sequence number is invalid_cursor, as on the order list.
	for _, bad := range []string{"abc", "-1", "1.5", "+3", "99999999999999999999"} {
		if r := b.do(t, "GET", "/v1/events?after="+bad, ""); r.status != 400 || r.code(t) != ordercore.EInvalidCursor {
			t.Errorf("after=%s: %d %s, want 400 invalid_cursor", bad, r.status, r.body)
		}
	}
}

func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	r := b.do(t, "GET", "/openapi.json", "")
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	r.json(t, &doc)
	if r.status != 200 || !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi %q status %d", doc.OpenAPI, r.status)
	}
	for _, p := range []string{"/v1/skus", "/v1/skus/{id}", "/v1/skus/{id}/restock", "/v1/orders", "/v1/orders/{id}", "/v1/orders/{id}/cancel", "/v1/events"} {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("OpenAPI document lacks %s", p)
		}
	}
	if !bytes.Contains(r.body, []byte(`"Idempotency-Key"`)) {
		t.Error("OpenAPI document does not document Idempotency-Key")
	}
	// POST /v1/sagas answers 201 for a saga still running and 200 for one that ended,
	// with the same body.
	var sagas struct {
		Paths map[string]struct {
			Post struct {
				Responses map[string]struct {
					Content map[string]struct {
						Schema struct {
							Ref string `json:"$ref"`
						} `json:"schema"`
					} `json:"content"`
				} `json:"responses"`
			} `json:"post"`
		} `json:"paths"`
	}
	r.json(t, &sagas)
	res := sagas.Paths["/v1/sagas"].Post.Responses
	if ok, created := res["200"].Content["application/json"].Schema.Ref, res["201"].Content["application/json"].Schema.Ref; ok == "" || ok != created {
		t.Errorf("POST /v1/sagas: 200 schema %q, 201 schema %q; want both, the same", ok, created)
	}
	// The problems an operation answers are listed, each as problem+json.
	var ops struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Content map[string]any `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	r.json(t, &ops)
	for _, tc := range []struct {
		path, method string
		want         []string
	}{
		{"/v1/orders", "post", []string{"400", "409", "413", "415", "422", "429", "500", "503"}},
		{"/v1/orders/{id}", "get", []string{"400", "404", "422", "500", "503"}},
		{"/v1/orders/{id}/refunds", "post", []string{"400", "404", "409", "413", "415", "422", "502", "503"}},
	} {
		got := ops.Paths[tc.path][tc.method].Responses
		for _, code := range tc.want {
			if _, ok := got[code].Content["application/problem+json"]; !ok {
				t.Errorf("%s %s: no %s problem+json answer listed; responses %v", strings.ToUpper(tc.method), tc.path, code, slices.Collect(maps.Keys(got)))
			}
		}
	}
}

// gatedStore holds every write transaction until the test opens the gate, so a test can
// keep the committer busy for exactly as long as it needs.
type gatedStore struct {
	*sqlite.DB
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedStore) Write(ctx context.Context, fn func(ordercore.WriteTx) error) error {
	g.entered <- struct{}{}
	<-g.gate
	return g.DB.Write(ctx, fn)
}

// setupGated is setup with the engine's store behind a gate (gatedStore) that stays shut
// until the test closes g.gate.
func setupGated(t testing.TB, cfg engine.Config) (*bundle, *gatedStore) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ordercore.db")
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedStore{DB: db, entered: make(chan struct{}, 16), gate: make(chan struct{})}
	return serveOn(t, path, db, g, cfg), g
}

func TestOverloadAnswers503WithRetryAfter(t *testing.T) {
	t.Parallel()
	b, g := setupGated(t, engine.Config{QueueMax: 1, BatchMax: 1})
	eng := b.eng

	created := make(chan response, 2)
	go func() {
		created <- b.do(t, "POST", "/v1/skus", `{"id":"a","name":"A","price":{"amount":1,"currency":"USD"},"stock":10}`)
	}()
	<-g.entered // the committer is now inside a transaction, held at the gate
	go func() { created <- b.do(t, "POST", "/v1/skus/a/restock", `{"quantity":1}`) }()
	for eng.QueueLen() != 1 { // the second command waits in the queue's one slot
		time.Sleep(time.Millisecond)
	}
	r := b.do(t, "POST", "/v1/orders", orderBody)
	if r.status != 503 || r.code(t) != ordercore.EOVERLOADED || r.header.Get("Retry-After") == "" {
		t.Errorf("with the queue full: %d %s Retry-After=%q; want 503 overloaded with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
	}
	// The stock's TCC participant answers the same, and without FAILURE in the body:
	// DTM coordinators read it as final whatever the status, and would not retry.
	r = b.do(t, "POST", "/v1/tcc/stock/try?gid=g-busy&trans_type=tcc&branch_id=01&op=try", `{"lines":[{"sku":"a","quantity":1}]}`)
	if r.status != 503 || r.header.Get("Retry-After") == "" || strings.Contains(string(r.body), "FAILURE") {
		t.Errorf("TCC try with the queue full: %d %s Retry-After=%q; want 503 with Retry-After, no FAILURE", r.status, r.body, r.header.Get("Retry-After"))
	}
	close(g.gate)
	for i := 0; i < 2; i++ {
		if r := <-created; r.status >= 300 {
			t.Errorf("queued request answered %d %s after the gate opened", r.status, r.body)
		}
	}
}

// TestMediaTypeIsCaseInsensitive: Application/JSON is application/json (RFC 9110 8.3.1).
func TestMediaTypeIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	b.mustSKU(t, "a", "USD", 10)
	if r := b.do(t, "POST", "/v1/orders", orderBody, "Content-Type", "Application/JSON; Charset=UTF-8"); r.status != 201 {
		t.Fatalf("an order sent as Application/JSON: %d %s", r.status, r.body)
	}
	if r := b.do(t, "POST", "/v1/orders", orderBody, "Content-Type", "text/plain"); r.status != 415 {
		t.Fatalf("an order sent as text/plain: %d %s, want 415", r.status, r.body)
	}
}

// TestHealthzNamesItsProcess: /healthz answers ok and the pid of the process serving it,
// so a caller can tell this server from another that took over its port.
func TestHealthzNamesItsProcess(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	r := b.do(t, "GET", "/healthz", "")
	var h struct{ Status, PID string }
	r.json(t, &h)
	if r.status != 200 || h.Status != "ok" || h.PID != strconv.Itoa(os.Getpid()) {
		t.Fatalf("GET /healthz: %d %s; want ok and pid %d", r.status, r.body, os.Getpid())
	}
}

// TestBodyOfExactlyTheLimit: bodies of up to 1 MiB are read, one byte more is 413
// body_too_large, and the answer names the limit.
func TestBodyOfExactlyTheLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	b.mustSKU(t, "a", "USD", 10)
	padded := func(n int) string {
		body := `{"quantity":1}`
		return body + strings.Repeat(" ", n-len(body))
	}
	if r := b.do(t, "POST", "/v1/skus/a/restock", padded(limit.RequestBodyBytesMax)); r.status != 200 {
		t.Errorf("a body of exactly %d bytes: %d %.200s, want 200", limit.RequestBodyBytesMax, r.status, r.body)
	}
	r := b.do(t, "POST", "/v1/skus/a/restock", padded(limit.RequestBodyBytesMax+1))
	var p struct{ Code, Detail string }
	r.json(t, &p)
	if r.status != 413 || p.Code != ordercore.EBodyTooLarge || !strings.Contains(p.Detail, fmt.Sprint(limit.RequestBodyBytesMax)) {
		t.Errorf("a body of %d bytes: %d %+v, want 413 body_too_large naming %d", limit.RequestBodyBytesMax+1, r.status, p, limit.RequestBodyBytesMax)
	}
}

// TestManualPaymentOfTheLargestOrders: a payment may be as large as an order can come to,
// beyond the most a price may be (limit.PriceMinorMax); past that it is refused.
func TestManualPaymentOfTheLargestOrders(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	top := fmt.Sprint(int64(limit.PriceMinorMax))
	if r := b.do(t, "POST", "/v1/skus", `{"id":"gold","name":"Gold","price":{"amount":`+top+`,"currency":"USD"},"stock":1000}`); r.status != 201 {
		t.Fatalf("create sku: %d %s", r.status, r.body)
	}
	o := b.mustOrder(t, `{"user_id":"u1","lines":[{"sku":"gold","quantity":999}]}`)
	if r := b.do(t, "POST", "/v1/orders/"+o.ID+"/payments/manual", fmt.Sprintf(`{"amount":{"amount":%d,"currency":"USD"},"reference":"wire-1"}`, limit.OrderAmountMax+1)); r.status != 422 {
		t.Errorf("a payment over the largest order amount: %d %s, want 422", r.status, r.body)
	}
	r := b.do(t, "POST", "/v1/orders/"+o.ID+"/payments/manual", fmt.Sprintf(`{"amount":{"amount":%d,"currency":"USD"},"reference":"wire-1"}`, o.Amount.Amount))
	var paid ordercore.Order
	r.json(t, &paid)
	if r.status != 200 || paid.Status != ordercore.OrderPaid {
		t.Fatalf("manual payment of an order of %d: %d %s, want 200 paid", o.Amount.Amount, r.status, r.body)
	}
}

// TestSlowCommitIsAnsweredWhenDone: a request whose batch takes longer than huma's 5 s
// body read deadline (a row lock held elsewhere, a slow disk) is answered with its
// outcome once the batch commits. The deadline stayed on the connection, and when it
// passed net/http cancelled the request's context: the client got 500 and the order was
// placed anyway.
func TestSlowCommitIsAnsweredWhenDone(t *testing.T) {
	t.Parallel()
	b, g := setupGated(t, engine.Config{})
	go func() {
		<-g.entered
		time.Sleep(6 * time.Second)
		close(g.gate)
	}()
	r := b.do(t, "POST", "/v1/skus", `{"id":"slow","name":"Slow","price":{"amount":1,"currency":"USD"},"stock":10}`)
	if r.status != 201 {
		t.Fatalf("a create whose commit took 6 s: %d %s, want 201", r.status, r.body)
	}
}
