package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"ordercore"
	"ordercore/app"
	"ordercore/webhook"
)

// TestWebhooksDeliveredByServe: a served ordercore delivers events to an endpoint created
// through its API, signed with the secret the API showed, from its background work.
func TestWebhooksDeliveredByServe(t *testing.T) {
	t.Parallel()
	got := make(chan ordercore.CloudEvent, 16)
	var secret string
	ready := make(chan struct{})
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header.Get(webhook.HeaderSignature), body, webhook.DefaultTolerance, time.Now()); err != nil {
			t.Errorf("signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ce ordercore.CloudEvent
		json.Unmarshal(body, &ce)
		got <- ce
	}))
	defer rc.Close()
	a, err := app.Open(context.Background(), app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(),
		WebhookSchedule: []time.Duration{0, 100 * time.Millisecond}, WebhookPoll: 20 * time.Millisecond, WebhookAllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	post := func(path, body string) []byte {
		t.Helper()
		resp, err := http.Post("http://"+a.Addr()+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, out)
		}
		return out
	}
	var ep struct{ Secret string }
	json.Unmarshal(post("/v1/webhook-endpoints", `{"url":"`+rc.URL+`","event_types":["sku.*"]}`), &ep)
	secret = ep.Secret
	close(ready)
	post("/v1/skus", `{"id":"a","name":"A","price":{"amount":100,"currency":"USD"},"stock":1}`)
	select {
	case ce := <-got:
		if ce.Type != "ordercore."+ordercore.EventSKUCreated || ce.Subject != "a" {
			t.Errorf("delivered %+v, want a's sku.created", ce)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery within 10s")
	}
}
