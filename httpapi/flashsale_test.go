package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/verify"
)

// TestFlashSaleNoOversell: 5,000 concurrent order attempts over real HTTP for one SKU with
// 1,000 units. Exactly 1,000 are answered 201, every other one 409 insufficient_stock, the
// SKU ends with 1,000 reserved and none available, and the database verifies clean.
func TestFlashSaleNoOversell(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	b.mustSKU(t, "hot", "USD", 1000)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 256, MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	const attempts = 5000
	var mu sync.Mutex
	outcomes := map[string]int{}
	ids := map[string]bool{}
	var wg sync.WaitGroup
	for i := 0; i < attempts; i++ {
		wg.Go(func() {
			resp, err := client.Post(b.url+"/v1/orders", "application/json", strings.NewReader(`{"user_id":"shopper","lines":[{"sku":"hot","quantity":1}]}`))
			if err != nil {
				t.Error(err)
				return
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var body struct{ ID, Code string }
			json.Unmarshal(raw, &body)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case resp.StatusCode == http.StatusCreated:
				outcomes["201"]++
				ids[body.ID] = true
			case resp.StatusCode == http.StatusConflict && body.Code == ordercore.EInsufficientStock:
				outcomes["409 insufficient_stock"]++
			default:
				outcomes[resp.Status+" "+body.Code]++
			}
		})
	}
	wg.Wait()
	if outcomes["201"] != 1000 || outcomes["409 insufficient_stock"] != attempts-1000 || len(ids) != 1000 {
		t.Fatalf("outcomes %v, %d distinct orders; want exactly 1000 created and %d insufficient_stock", outcomes, len(ids), attempts-1000)
	}
	s, err := b.db.SKU(context.Background(), "hot")
	if err != nil {
		t.Fatal(err)
	}
	if s.Reserved != 1000 || s.Available() != 0 || s.Sold != 0 {
		t.Fatalf("sku after the sale: %+v", s)
	}
	snap, err := b.db.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if vs := verify.Check(snap, time.Now()); len(vs) > 0 {
		t.Fatalf("verify found %d violations, first: %v", len(vs), vs[0])
	}
	if len(snap.Orders) != 1000 {
		t.Fatalf("%d orders stored, want 1000", len(snap.Orders))
	}
}
