package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"ordercore/internal/engine"
)

// FuzzPlaceOrderBody sends arbitrary bodies to POST /v1/orders over real HTTP. Every answer
// must be 201, or a 4xx problem with a stable code that left the database exactly as it
// was (P6); never a 5xx. The seed corpus runs with every `go test`; `go test -fuzz
// FuzzPlaceOrderBody ./httpapi` explores further.
func FuzzPlaceOrderBody(f *testing.F) {
	for _, seed := range []string{
		`{"user_id":"u1","lines":[{"sku":"a","quantity":1}]}`,
		`{"user_id":"u1","lines":[{"sku":"a","quantity":2},{"sku":"e","quantity":1}]}`,
		`{"user_id":"u1","currency":"EUR","lines":[{"sku":"e","quantity":1}],"expires_in_seconds":60}`,
		`{"user_id":"u1","lines":[{"sku":"a","quantity":1e3}]}`,
		`{"user_id":"u1","lines":[{"sku":"a","quantity":-1}]}`,
		`{"user_id":"","lines":[{"sku":"a","quantity":1}]}`,
		`{"user_id":"u 1","lines":[{"sku":"a","quantity":1}]}`,
		`{"user_id":"u1","lines":[{"sku":"a","quantity":1.5}]}`,
		`{"user_id":"u1","lines":[{"sku":"a","quantity":"1"}]}`,
		`{"user_id":"u1","lines":null}`,
		`{"user_id":"u1","lines":[{"sku":"a","quantity":1}],"user_id":"u2"}`,
		`{"user_id":"u1","lines":[{"sku":"a","quantity":9223372036854775807}]}`,
		`{"user_id":"u1","lines":[{"sku":"a\u0000","quantity":1}]}`,
		`{"user_id":"u1","lines":[{}]}`,
		`{"user_id":"u1","lines":[{"sku":"a","quantity":1}],"expires_in_seconds":-5}`,
		`[]`, `null`, `"x"`, `{`, ``, `{"user_id":"u1","lines":[{"sku":"a","quantity":1}]}garbage`,
	} {
		f.Add(seed)
	}
	b := setup(f, engine.Config{})
	b.mustSKU(f, "a", "USD", 1_000_000)
	b.mustSKU(f, "e", "EUR", 1_000_000)
	f.Fuzz(func(t *testing.T, body string) {
		before := digest(t, b.path)
		r := b.do(t, http.MethodPost, "/v1/orders", body)
		switch {
		case r.status == http.StatusCreated:
			return
		case r.status >= 400 && r.status < 500:
			if code := r.code(t); code == "" || strings.ContainsAny(code, " \n") {
				t.Fatalf("%d without a stable code: %s", r.status, r.body)
			}
			if digest(t, b.path) != before {
				t.Fatalf("a %d answer changed the database: body %q -> %s", r.status, body, r.body)
			}
		default:
			t.Fatalf("body %q: %d %s", body, r.status, r.body)
		}
	})
}
