package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"ordercore/app"
)

// TestUserOrderRateLimit: with a limit of 2 orders an hour per user (serve
// --user-order-rate 2/h), a user's third order is 429 rate_limited with the wait in
// Retry-After and reserves nothing, another user is not held back, and bad input is still
// told what is wrong with it.
func TestUserOrderRateLimit(t *testing.T) {
	t.Parallel()
	r := runApp(t, app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), UserOrderRate: 2.0 / 3600, UserOrderBurst: 2})
	base := "http://" + r.a.Addr()
	post := func(path, body string) (int, http.Header, map[string]any) {
		t.Helper()
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var v map[string]any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: %s", path, raw)
		}
		return resp.StatusCode, resp.Header, v
	}
	if st, _, v := post("/v1/skus", `{"id":"mug","name":"Mug","price":{"amount":900,"currency":"EUR"},"stock":100}`); st != 201 {
		t.Fatalf("create sku: %d %v", st, v)
	}
	order := func(user string) string { return `{"user_id":"` + user + `","lines":[{"sku":"mug","quantity":1}]}` }
	for i := range 2 {
		if st, _, v := post("/v1/orders", order("u1")); st != 201 {
			t.Fatalf("u1's order %d: %d %v", i+1, st, v)
		}
	}
	st, h, v := post("/v1/orders", order("u1"))
	if st != 429 || v["code"] != "rate_limited" || h.Get("Retry-After") != "1800" {
		t.Errorf("u1's third order: %d %v Retry-After %q; want 429 rate_limited, Retry-After 1800", st, v, h.Get("Retry-After"))
	}
	if st, _, v := post("/v1/orders", `{"user_id":"u1","lines":[{"sku":"mug","quantity":0}]}`); st != 422 || v["code"] != "invalid_quantity" {
		t.Errorf("u1's bad order: %d %v; want 422 invalid_quantity", st, v)
	}
	if st, _, v := post("/v1/orders", order("u2")); st != 201 {
		t.Errorf("u2's order: %d %v", st, v)
	}
	// Retries under an Idempotency-Key are replayed, and give their token back: u3's
	// one order, retried three times, leaves room for a second order.
	keyed := func(key string) int {
		req, _ := http.NewRequest("POST", base+"/v1/orders", strings.NewReader(order("u3")))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// A malformed key fails the API's own checks: 400, and it costs nothing.
	for range 3 {
		if st := keyed("has space"); st != 400 {
			t.Fatalf("u3's order under a malformed key: %d, want 400", st)
		}
	}
	for i := range 4 {
		if st := keyed("cart-1"); st != 201 {
			t.Fatalf("u3's order under cart-1, try %d: %d, want 201 (replayed after the first)", i+1, st)
		}
	}
	if st := keyed("cart-2"); st != 201 {
		t.Errorf("u3's second order: %d, want 201: the replays must not have used the allowance", st)
	}
	if st := keyed("cart-3"); st != 429 {
		t.Errorf("u3's third order: %d, want 429", st)
	}
	resp, err := http.Get(base + "/v1/skus/mug")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sku struct{ Reserved int64 }
	if err := json.NewDecoder(resp.Body).Decode(&sku); err != nil || sku.Reserved != 5 {
		t.Errorf("reserved %d (%v), want 5: the refused orders must reserve nothing", sku.Reserved, err)
	}
}
