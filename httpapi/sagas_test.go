package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ordercore"
	"ordercore/httpapi"
	"ordercore/internal/engine"
	"ordercore/internal/saga"
	"ordercore/sqlite"
)

// sagaBody is a one-step saga for POST /v1/sagas.
func sagaBody(gid, orderID string) string {
	id, _ := json.Marshal(orderID) // JSON's escapes, not Go's (a NUL is \u0000)
	return fmt.Sprintf(`{"gid":%q,"kind":"saga","order_id":%s,"steps":[{"name":"s","action":{"url":"http://p.test/a"},"compensate":{"url":"http://p.test/c"}}]}`, gid, id)
}

// dtmSaga is a one-step saga for DTM's submit.
func dtmSaga(gid string) string {
	return fmt.Sprintf(`{"gid":%q,"trans_type":"saga","steps":[{"action":"http://p.test/a","compensate":"http://p.test/c"}],"payloads":["{}"]}`, gid)
}

// TestFulfilmentGIDsAreReserved: a fulfilment saga's failure refunds its order, so no
// client may submit a saga under an order's fulfilment gid, nor abort one, through either
// API; nothing is stored.
func TestFulfilmentGIDsAreReserved(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	b.mustSKU(t, "a", "USD", 10)
	o := b.mustOrder(t, `{"user_id":"u1","lines":[{"sku":"a","quantity":1}]}`)
	gid := engine.FulfilmentGID(o.ID)
	before := digest(t, b.path)
	for _, c := range []struct {
		name, path, body string
		status           int
	}{
		{"native submit", "/v1/sagas", sagaBody(gid, o.ID), http.StatusUnprocessableEntity},
		{"native submit without the order", "/v1/sagas", sagaBody("fulfilment-x", ""), http.StatusUnprocessableEntity},
		{"dtm submit", "/api/dtmsvr/submit", dtmSaga(gid), http.StatusConflict},
		{"dtm prepare", "/api/dtmsvr/prepare", fmt.Sprintf(`{"gid":%q,"trans_type":"tcc"}`, gid), http.StatusConflict},
		{"dtm abort", "/api/dtmsvr/abort", fmt.Sprintf(`{"gid":%q,"trans_type":"tcc"}`, gid), http.StatusConflict},
	} {
		r := b.do(t, "POST", c.path, c.body)
		if r.status != c.status || r.code(t) != "saga_gid_reserved" {
			t.Errorf("%s: %d %s, want %d saga_gid_reserved", c.name, r.status, r.body, c.status)
		}
	}
	if after := digest(t, b.path); after != before {
		t.Fatal("a refused saga changed the database")
	}
}

// TestSagaOrderIDMustNameAnOrder: a saga's order_id puts its events on that order's
// timeline, so it must be an existing order's id; a malformed or unknown one is refused
// and nothing is stored.
func TestSagaOrderIDMustNameAnOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	b.mustSKU(t, "a", "USD", 10)
	o := b.mustOrder(t, `{"user_id":"u1","lines":[{"sku":"a","quantity":1}]}`)
	before := digest(t, b.path)
	for _, id := range []string{"not an order", "0194f3c2-7a6b-7cde-8f01-23456789abcd", "0194f3c2-7a6b-7cde-8f01-23456789ab\x00d"} {
		r := b.do(t, "POST", "/v1/sagas", sagaBody("s-unknown-order", id))
		if r.status != http.StatusUnprocessableEntity || r.code(t) != "invalid_request" {
			t.Errorf("order_id %q: %d %s, want 422 invalid_request", id, r.status, r.body)
		}
	}
	if after := digest(t, b.path); after != before {
		t.Fatal("a refused saga changed the database")
	}
	if r := b.do(t, "POST", "/v1/sagas", sagaBody("s-known-order", o.ID)); r.status != http.StatusCreated {
		t.Fatalf("a saga of an existing order: %d %s", r.status, r.body)
	}
}

// TestDTMAbortChecksTheTransactionsKind: abort is for TCC transactions, and a saga
// stored under the gid is not one, whatever trans_type the client names: it is refused as
// submit and prepare refuse a kind mismatch, and the saga goes on.
func TestDTMAbortChecksTheTransactionsKind(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	if r := b.do(t, "POST", "/api/dtmsvr/submit", dtmSaga("dp2")); r.status != http.StatusOK {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	r := b.do(t, "POST", "/api/dtmsvr/abort", `{"gid":"dp2","trans_type":"tcc"}`)
	if r.status != http.StatusConflict || r.code(t) != "saga_exists" {
		t.Fatalf("abort of a saga as a tcc: %d %s, want 409 saga_exists", r.status, r.body)
	}
	var sg struct{ Status string }
	b.do(t, "GET", "/v1/sagas/dp2", "").json(t, &sg)
	if sg.Status != "running" {
		t.Fatalf("the saga is %s after a refused abort, want running", sg.Status)
	}
}

// TestDTMOptionsAreBounded: DTM's timeouts, intervals and limits have the bounds of the
// native API's policy; a negative value or one past its bound (one that would overflow a
// duration, too) is refused with 409 FAILURE and nothing is stored.
func TestDTMOptionsAreBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	before := digest(t, b.path)
	for i, opt := range []string{`"timeout_to_fail":9223372036854775807`, `"timeout_to_fail":100000000000`, `"timeout_to_fail":604801`,
		`"timeout_to_fail":-1`, `"request_timeout":-5`, `"request_timeout":9223372036854775807`, `"request_timeout":301`,
		`"retry_interval":-1`, `"retry_interval":3601`, `"retry_interval":9223372036854775807`, `"retry_limit":-1`, `"retry_limit":101`} {
		gid := fmt.Sprintf("opt-%d", i)
		body := fmt.Sprintf(`{"gid":%q,"trans_type":"saga","steps":[{"action":"http://p.test/a"}],"payloads":["{}"],%s}`, gid, opt)
		r := b.do(t, "POST", "/api/dtmsvr/submit", body)
		if r.status != http.StatusConflict || r.code(t) != "invalid_request" {
			t.Errorf("submit with %s: %d %s, want 409 invalid_request", opt, r.status, r.body)
		}
		r = b.do(t, "POST", "/api/dtmsvr/prepare", fmt.Sprintf(`{"gid":%q,"trans_type":"tcc",%s}`, gid, opt))
		if r.status != http.StatusConflict || r.code(t) != "invalid_request" {
			t.Errorf("prepare with %s: %d %s, want 409 invalid_request", opt, r.status, r.body)
		}
	}
	if after := digest(t, b.path); after != before {
		t.Fatal("a refused transaction changed the database")
	}
	r := b.do(t, "POST", "/api/dtmsvr/submit", `{"gid":"opt-max","trans_type":"saga","steps":[{"action":"http://p.test/a"}],"payloads":["{}"],`+
		`"timeout_to_fail":604800,"request_timeout":300,"retry_interval":3600,"retry_limit":100}`)
	if r.status != http.StatusOK {
		t.Fatalf("submit at the bounds: %d %s", r.status, r.body)
	}
}

// TestDTMResubmit: a submit of a gid submitted already is a client's retry only if it is
// the same transaction and that is still going (DTM's "submitted"): SUCCESS. Another
// transaction under the gid, or a submit of one that is over, is 409 FAILURE, and the
// stored transaction is unchanged.
func TestDTMResubmit(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	body := func(gid, action, payload string) string {
		return fmt.Sprintf(`{"gid":%q,"trans_type":"saga","steps":[{"action":%q,"compensate":"http://p.test/c"}],"payloads":[%q]}`, gid, action, payload)
	}
	first := body("rs-1", "http://p.test/a", `{"amount": 10}`)
	for _, c := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"first", first, http.StatusOK, ""},
		{"the same again", first, http.StatusOK, ""},
		{"another action", body("rs-1", "http://p.test/OTHER", `{"amount": 10}`), http.StatusConflict, "saga_exists"},
		{"another payload", body("rs-1", "http://p.test/a", `{"amount": 999}`), http.StatusConflict, "saga_exists"},
		{"other options", strings.Replace(first, `"gid"`, `"retry_limit":9,"gid"`, 1), http.StatusConflict, "saga_exists"},
	} {
		r := b.do(t, "POST", "/api/dtmsvr/submit", c.body)
		if r.status != c.status || c.code != "" && r.code(t) != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, r.status, r.body, c.status, c.code)
		}
	}
	var sg struct {
		Steps []struct {
			Action struct {
				URL     string
				Payload json.RawMessage
			}
		}
	}
	b.do(t, "GET", "/v1/sagas/rs-1", "").json(t, &sg)
	if len(sg.Steps) != 1 || sg.Steps[0].Action.URL != "http://p.test/a" || string(sg.Steps[0].Action.Payload) != `{"amount":10}` {
		t.Fatalf("stored steps %+v, want the first submit's", sg)
	}

	// Over: no participant runs here, so an operator's skip of its one step completes it.
	op := `{"by":"ops","note":"test"}`
	if r := b.do(t, "POST", "/v1/sagas/rs-1/skip", op); r.status != http.StatusOK {
		t.Fatalf("skip: %d %s", r.status, r.body)
	}
	r := b.do(t, "POST", "/api/dtmsvr/submit", first)
	if r.status != http.StatusConflict || r.code(t) != "saga_state" || !strings.Contains(string(r.body), "current status 'succeed'") {
		t.Fatalf("submit of a finished saga: %d %s, want 409 saga_state", r.status, r.body)
	}
}

// TestDTMWaitResultAnswersPastTheWriteTimeout: a submit with wait_result answers when the
// transaction is decided, even after the server's WriteTimeout, and a transaction that
// rolls back is FAILURE as soon as it starts to (DTM: anything but succeed is FAILURE).
func TestDTMWaitResultAnswersPastTheWriteTimeout(t *testing.T) {
	t.Parallel()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(db, ordercore.SystemClock{}, engine.Config{})
	srv := httptest.NewUnstartedServer(httpapi.New(httpapi.Config{Engine: eng, Reader: db, Clock: ordercore.SystemClock{}}))
	srv.Config.WriteTimeout = time.Second
	srv.Start()
	t.Cleanup(func() { srv.Close(); eng.Close(); db.Close() })
	b := &bundle{url: srv.URL, db: db, eng: eng}

	go func() {
		time.Sleep(1500 * time.Millisecond) // past the WriteTimeout
		b.do(t, "POST", "/v1/sagas/wr-1/compensate", `{"by":"ops","note":"roll it back"}`)
	}()
	body := strings.Replace(dtmSaga("wr-1"), `"gid"`, `"wait_result":true,"gid"`, 1)
	resp, err := http.Post(b.url+"/api/dtmsvr/submit", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(text), "FAILURE") {
		t.Fatalf("wait_result of a transaction rolling back: %d %s, want 409 FAILURE", resp.StatusCode, text)
	}
}

// TestDTMWaitResultSucceedsPastTheReadTimeout: wait_result answers SUCCESS for a
// transaction whose participant takes longer than the server's ReadTimeout and
// WriteTimeout.
func TestDTMWaitResultSucceedsPastTheReadTimeout(t *testing.T) {
	t.Parallel()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(1500 * time.Millisecond) // past the API's ReadTimeout and WriteTimeout
	}))
	t.Cleanup(slow.Close)
	srv := serveSagas(t, time.Second)
	body := strings.Replace(strings.ReplaceAll(dtmSaga("wr-2"), "http://p.test", slow.URL), `"gid"`, `"wait_result":true,"gid"`, 1)
	resp, err := http.Post(srv.url+"/api/dtmsvr/submit", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(text), "SUCCESS") {
		t.Fatalf("wait_result of a transaction that succeeds after 1.5 s: %d %s, want 200 SUCCESS", resp.StatusCode, text)
	}
}

// serveSagas serves the API with a saga coordinator running, on a fresh SQLite file,
// with the server's ReadTimeout and WriteTimeout (none when 0).
func serveSagas(t *testing.T, timeout time.Duration) *bundle {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(db, ordercore.SystemClock{}, engine.Config{})
	coord := &saga.Coordinator{Claim: eng.ClaimSagasFor, Record: eng.RecordSaga, Wake: eng.WakeSagasAt, Poll: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { coord.Run(ctx); close(stopped) }()
	srv := httptest.NewUnstartedServer(httpapi.New(httpapi.Config{Engine: eng, Reader: db, Clock: ordercore.SystemClock{}, Sagas: coord}))
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = timeout, timeout
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-stopped
		eng.Close()
		db.Close()
	})
	return &bundle{url: srv.URL, db: db, eng: eng}
}

// TestWaitSecondsAnswersPastTheWriteTimeout: POST /v1/sagas?wait_seconds= answers when
// the saga ends, even after the server's WriteTimeout and the 5 s read deadline huma sets
// for reading a body (net/http cancels a request's context when the connection's read
// deadline passes while the handler runs): its participant takes longer than both.
func TestWaitSecondsAnswersPastTheWriteTimeout(t *testing.T) {
	t.Parallel()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(6 * time.Second) // past the API's WriteTimeout and huma's body read deadline
	}))
	t.Cleanup(slow.Close)
	srv := serveSagas(t, time.Second)

	body := strings.ReplaceAll(sagaBody("ws-1", ""), "http://p.test", slow.URL)
	resp, err := http.Post(srv.url+"/v1/sagas?wait_seconds=20", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	var sg struct{ Status string }
	if err := json.NewDecoder(resp.Body).Decode(&sg); err != nil || resp.StatusCode != http.StatusOK || sg.Status != string(ordercore.SagaCompleted) {
		t.Fatalf("wait_seconds for a saga whose step outlasts the WriteTimeout: %d %+v %v, want 200 completed", resp.StatusCode, sg, err)
	}
}

// TestWaitSecondsAnswers: a saga of in-process steps only ends in its submit, which then
// answers 200 with a saga.status event on its timeline, as any ended saga has; a saga
// whose compensation goes to dead_letter is answered as soon as it waits there for an
// operator (201, the saga as it is then), not at the end of the wait with the saga as
// it was submitted.
func TestWaitSecondsAnswers(t *testing.T) {
	t.Parallel()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	t.Cleanup(failing.Close)
	b := serveSagas(t, 0)

	r := b.do(t, "POST", "/v1/sagas?wait_seconds=10", `{"gid":"local-1","kind":"saga","steps":[{"name":"n","action":{"local":"ordercore.notify","payload":{"x":1}}}]}`)
	var sg struct {
		Status   string
		Timeline []struct{ Type string }
	}
	r.json(t, &sg)
	if r.status != http.StatusOK || sg.Status != string(ordercore.SagaCompleted) {
		t.Fatalf("a saga of in-process steps, waited for: %d %s, want 200 completed", r.status, r.body)
	}
	r = b.do(t, "GET", "/v1/sagas/local-1", "")
	r.json(t, &sg)
	var types []string
	for _, e := range sg.Timeline {
		types = append(types, e.Type)
	}
	if !strings.Contains(strings.Join(types, " "), ordercore.EventSagaStatus) {
		t.Errorf("timeline %v has no %s", types, ordercore.EventSagaStatus)
	}

	body := fmt.Sprintf(`{"gid":"dead-1","kind":"saga","steps":[{"name":"s","action":{"url":"%s/a"},"compensate":{"url":"%s/c"}}],
		"policy":{"retries_max":1,"compensate_attempts_max":2,"backoff_min_ms":10,"backoff_max_ms":20}}`, failing.URL, failing.URL)
	start := time.Now()
	r = b.do(t, "POST", "/v1/sagas?wait_seconds=30", body)
	r.json(t, &sg)
	if r.status != http.StatusCreated || sg.Status != string(ordercore.SagaDeadLetter) {
		t.Fatalf("a saga that ends in dead_letter, waited for: %d %s, want 201 dead_letter", r.status, r.body)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("answered after %s: the wait went on after the saga reached dead_letter", d)
	}
}

// TestDTMMalformedBodyNamesNoGoType: a DTM body of the wrong shape is 409 FAILURE
// malformed_json, and its message names the JSON field, not Go's types.
func TestDTMMalformedBodyNamesNoGoType(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	r := b.do(t, "POST", "/api/dtmsvr/submit", `{"gid":"m1","trans_type":"saga","steps":"not a list"}`)
	if r.code(t) != ordercore.EMalformedJSON || strings.Contains(string(r.body), "httpapi.") || strings.Contains(string(r.body), "Go ") {
		t.Fatalf("%d %s: want malformed_json naming the field only", r.status, r.body)
	}
	if !strings.Contains(string(r.body), "steps") {
		t.Errorf("%s does not name the field", r.body)
	}
}
