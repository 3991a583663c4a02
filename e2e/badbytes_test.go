package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"ordercore/app"
)

// TestBytesNoRowCanHaveFindNothing: an id or cursor that is not UTF-8 text (a %FF or a
// %00 in the URL) names nothing, so it gets a 4xx, on both stores. On PostgreSQL such
// bytes once reached the database, which refuses them with an error: reads answered 500,
// and a write failed the group commit it was in, so other clients' writes in the same
// batches got 503. Here 150 valid writes race 18 such requests, and every valid one must
// succeed.
func TestBytesNoRowCanHaveFindNothing(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) { testBadBytes(t, "") })
	t.Run("PostgreSQL", func(t *testing.T) { testBadBytes(t, pgSchemaURL(t, "badbytes_")) })
}

func testBadBytes(t *testing.T, dbURL string) {
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Open(ctx, app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), DB: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	base := "http://" + a.Addr()
	call := func(method, path, body string) (int, string) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			return 0, err.Error()
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, b := call("POST", "/v1/skus", `{"id":"mug","name":"Mug","price":{"amount":900,"currency":"EUR"},"stock":10}`); st != 201 {
		t.Fatalf("create sku: %d %s", st, b)
	}
	bad := []struct{ method, path, body string }{
		{"POST", "/v1/webhook-deliveries/%FF/redeliver", `{"by":"a","note":"b"}`},
		{"POST", "/v1/webhook-deliveries/a%00b/redeliver", `{"by":"a","note":"b"}`},
		{"POST", "/v1/webhook-endpoints/%FF", `{"enabled":false}`},
		{"DELETE", "/v1/webhook-endpoints/%FF", ""},
		{"POST", "/v1/skus/%FF/restock", `{"quantity":1}`},
		{"POST", "/v1/orders/%FF/cancel", ""},
		{"GET", "/v1/webhook-endpoints?cursor=%FF", ""},
		{"GET", "/v1/webhook-endpoints?cursor=a%00b", ""},
		{"GET", "/v1/webhook-endpoints/%FF", ""},
		{"GET", "/v1/webhook-endpoints/%FF/deliveries", ""},
		{"GET", "/v1/tcc/stock/holds/%FF", ""},
		{"GET", "/v1/tcc/stock/holds/a%00b", ""},
		{"GET", "/v1/skus/%FF", ""},
		{"GET", "/v1/orders/%FF", ""},
		{"GET", "/v1/sagas/%FF", ""},
		{"GET", "/v1/review-items/%FF", ""},
		{"GET", "/v1/sagas?cursor=%FF", ""},
		{"GET", "/v1/orders?user_id=%FF", ""},
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := map[string]int{}
	for i := range 150 {
		wg.Go(func() {
			body := fmt.Sprintf(`{"gid":"bb-%d","kind":"saga","steps":[{"name":"n","action":{"local":"ordercore.notify","payload":{"i":%d}}}]}`, i, i)
			if st, b := call("POST", "/v1/sagas", body); st != 201 {
				mu.Lock()
				failed[fmt.Sprintf("%d %s", st, b)]++
				mu.Unlock()
			}
		})
		if i < len(bad) {
			r := bad[i]
			wg.Go(func() {
				st, b := call(r.method, r.path, r.body)
				if st < 400 || st >= 500 {
					t.Errorf("%s %s: %d %s; want a 4xx", r.method, r.path, st, b)
				}
			})
		}
	}
	wg.Wait()
	for answer, n := range failed {
		t.Errorf("%d valid saga submits answered %s", n, answer)
	}
	if st, b := call("GET", "/v1/skus/mug", ""); st != 200 || !strings.Contains(b, `"total":10`) {
		t.Errorf("the SKU after: %d %s", st, b)
	}
}
