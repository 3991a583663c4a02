package stripe_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeStripe emulates the part of Stripe's API the channel uses, answering with the
// documented shapes (docs.stripe.com/api): PaymentIntents (create, search, cancel) and
// Refunds (create, list), Idempotency-Key replay, and error objects. It checks what every
// call must carry (the secret key, Stripe-Version) and records each request.
type fakeStripe struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	intents  []map[string]any // in creation order
	refunds  []map[string]any // in creation order
	replays  map[string]string
	requests []recorded
	seq      int
}

type recorded struct {
	Method, Path   string
	IdempotencyKey string
	Form           url.Values // POST body or GET query
}

const testSecretKey = "sk_test_ordercore"

func newFakeStripe(t *testing.T) *fakeStripe {
	f := &fakeStripe{t: t, replays: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/payment_intents", f.createIntent)
	mux.HandleFunc("GET /v1/payment_intents/search", f.searchIntents)
	mux.HandleFunc("POST /v1/payment_intents/{id}/cancel", f.cancelIntent)
	mux.HandleFunc("POST /v1/refunds", f.createRefund)
	mux.HandleFunc("GET /v1/refunds", f.listRefunds)
	f.srv = httptest.NewServer(f.checked(mux))
	t.Cleanup(f.srv.Close)
	return f
}

// checked refuses calls without the key or the pinned version, as Stripe would (401) or
// as our shapes require, and records the others.
func (f *fakeStripe) checked(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testSecretKey {
			writeError(w, http.StatusUnauthorized, "invalid_request_error", "", "Invalid API Key provided", nil)
			return
		}
		if r.Header.Get("Stripe-Version") == "" {
			f.t.Errorf("%s %s without Stripe-Version", r.Method, r.URL.Path)
		}
		if r.Method == http.MethodPost && r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			f.t.Errorf("%s %s with Content-Type %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		if err := r.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "parameter_invalid", err.Error(), nil)
			return
		}
		f.mu.Lock()
		f.requests = append(f.requests, recorded{r.Method, r.URL.Path, r.Header.Get("Idempotency-Key"), r.Form})
		f.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// idempotent replays the first answer under an Idempotency-Key (per endpoint, as Stripe
// does) or runs create and stores its answer.
func (f *fakeStripe) idempotent(w http.ResponseWriter, r *http.Request, create func() (int, any)) {
	key := r.Header.Get("Idempotency-Key")
	f.mu.Lock()
	defer f.mu.Unlock()
	if key != "" {
		if body, ok := f.replays[r.URL.Path+" "+key]; ok {
			w.Header().Set("Idempotent-Replayed", "true")
			writeRaw(w, http.StatusOK, body)
			return
		}
	}
	status, v := create()
	b, _ := json.Marshal(v)
	if key != "" && status == http.StatusOK {
		f.replays[r.URL.Path+" "+key] = string(b)
	}
	writeRaw(w, status, string(b))
}

func (f *fakeStripe) createIntent(w http.ResponseWriter, r *http.Request) {
	f.idempotent(w, r, func() (int, any) {
		amount, err := strconv.ParseInt(r.PostForm.Get("amount"), 10, 64)
		if err != nil || r.PostForm.Get("currency") == "" {
			return errorBody(http.StatusBadRequest, "invalid_request_error", "parameter_missing", "Missing required param: amount or currency.", nil)
		}
		f.seq++
		id := fmt.Sprintf("pi_%d", f.seq)
		pi := map[string]any{
			"id": id, "object": "payment_intent", "amount": amount, "amount_received": 0,
			"currency": r.PostForm.Get("currency"), "status": "requires_payment_method",
			"client_secret": id + "_secret_abc", "metadata": formMetadata(r.PostForm),
			"created": 1700000000 + f.seq, "latest_charge": nil, "livemode": false,
		}
		f.intents = append(f.intents, pi)
		return http.StatusOK, pi
	})
}

// searchQuery is the one query shape the channel sends.
var searchQuery = regexp.MustCompile(`^metadata\['([a-z_]+)'\]:'([^'\\]*)'$`)

func (f *fakeStripe) searchIntents(w http.ResponseWriter, r *http.Request) {
	m := searchQuery.FindStringSubmatch(r.Form.Get("query"))
	if m == nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "parameter_invalid", "Invalid query.", nil)
		return
	}
	expand := slices.Contains(r.Form["expand[]"], "data.latest_charge")
	f.mu.Lock()
	defer f.mu.Unlock()
	data := []any{}
	for i := len(f.intents) - 1; i >= 0; i-- { // newest first
		pi := f.intents[i]
		if pi["metadata"].(map[string]string)[m[1]] != m[2] {
			continue
		}
		out := clone(pi)
		if ch, ok := pi["latest_charge"].(map[string]any); ok && !expand {
			out["latest_charge"] = ch["id"]
		}
		data = append(data, out)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "search_result", "url": "/v1/payment_intents/search",
		"has_more": false, "next_page": nil, "data": data,
	})
}

func (f *fakeStripe) cancelIntent(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pi := f.intentLocked(r.PathValue("id"))
	if pi == nil {
		writeError(w, http.StatusNotFound, "invalid_request_error", "resource_missing", "No such payment_intent: '"+r.PathValue("id")+"'", nil)
		return
	}
	if st := pi["status"]; st == "succeeded" || st == "canceled" {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "payment_intent_unexpected_state",
			fmt.Sprintf("You cannot cancel this PaymentIntent because it has a status of %s. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action, processing.", st),
			clone(pi))
		return
	}
	pi["status"] = "canceled"
	writeJSON(w, http.StatusOK, pi)
}

func (f *fakeStripe) createRefund(w http.ResponseWriter, r *http.Request) {
	f.idempotent(w, r, func() (int, any) {
		pi := f.intentLocked(r.PostForm.Get("payment_intent"))
		if pi == nil {
			return errorBody(http.StatusNotFound, "invalid_request_error", "resource_missing", "No such payment_intent", nil)
		}
		if pi["status"] != "succeeded" {
			return errorBody(http.StatusBadRequest, "invalid_request_error", "", "This PaymentIntent does not have a successful charge to refund.", nil)
		}
		amount, _ := strconv.ParseInt(r.PostForm.Get("amount"), 10, 64)
		f.seq++
		re := map[string]any{
			"id": fmt.Sprintf("re_%d", f.seq), "object": "refund", "amount": amount,
			"currency": pi["currency"], "status": "succeeded", "payment_intent": pi["id"],
			"metadata": formMetadata(r.PostForm), "created": 1700000000 + f.seq,
		}
		f.refunds = append(f.refunds, re)
		return http.StatusOK, re
	})
}

func (f *fakeStripe) listRefunds(w http.ResponseWriter, r *http.Request) {
	limit, err := strconv.Atoi(r.Form.Get("limit"))
	if err != nil || limit < 1 || limit > 100 {
		limit = 10
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []map[string]any
	for i := len(f.refunds) - 1; i >= 0; i-- { // newest first
		if pi := r.Form.Get("payment_intent"); pi == "" || f.refunds[i]["payment_intent"] == pi {
			all = append(all, f.refunds[i])
		}
	}
	if after := r.Form.Get("starting_after"); after != "" {
		i := slices.IndexFunc(all, func(re map[string]any) bool { return re["id"] == after })
		all = all[i+1:]
	}
	more := len(all) > limit
	if more {
		all = all[:limit]
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "url": "/v1/refunds", "has_more": more, "data": all})
}

func (f *fakeStripe) intentLocked(id string) map[string]any {
	for _, pi := range f.intents {
		if pi["id"] == id {
			return pi
		}
	}
	return nil
}

// setIntent changes an intent as the shopper's actions at Stripe would.
func (f *fakeStripe) setIntent(id string, fields map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pi := f.intentLocked(id)
	if pi == nil {
		f.t.Fatalf("no intent %s", id)
	}
	for k, v := range fields {
		pi[k] = v
	}
}

// addIntent stores an intent made elsewhere (an earlier create whose key Stripe forgot).
func (f *fakeStripe) addIntent(pi map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.intents = append(f.intents, pi)
}

func (f *fakeStripe) setRefundStatus(id, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, re := range f.refunds {
		if re["id"] == id {
			re["status"] = status
			return
		}
	}
	f.t.Fatalf("no refund %s", id)
}

func (f *fakeStripe) addRefund(re map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refunds = append(f.refunds, re)
}

// calls returns the recorded requests to method and path.
func (f *fakeStripe) calls(method, path string) []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []recorded
	for _, r := range f.requests {
		if r.Method == method && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func formMetadata(form url.Values) map[string]string {
	md := map[string]string{}
	for k, v := range form {
		if name, ok := strings.CutPrefix(k, "metadata["); ok && strings.HasSuffix(name, "]") {
			md[strings.TrimSuffix(name, "]")] = v[0]
		}
	}
	return md
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func errorBody(status int, typ, code, msg string, pi map[string]any) (int, any) {
	e := map[string]any{"type": typ, "message": msg}
	if code != "" {
		e["code"] = code
		e["doc_url"] = "https://stripe.com/docs/error-codes/" + strings.ReplaceAll(code, "_", "-")
	}
	if pi != nil {
		e["payment_intent"] = pi
	}
	return status, map[string]any{"error": e}
}

func writeError(w http.ResponseWriter, status int, typ, code, msg string, pi map[string]any) {
	s, v := errorBody(status, typ, code, msg, pi)
	writeJSON(w, s, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	writeRaw(w, status, string(b))
}

func writeRaw(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_test")
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}
