package app_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"ordercore/app"
	"ordercore/natsbus"
)

// TestServeWithEmbeddedNATS: serve --nats embedded runs JetStream inside the process, its
// storage in the data directory: events are relayed to it, and after a restart the stream
// still holds them and the relay goes on after the last one, publishing none twice.
func TestServeWithEmbeddedNATS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	post := func(a *app.App, path, body string) {
		t.Helper()
		resp, err := http.Post("http://"+a.Addr()+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
	}
	waitMsgs := func(a *app.App, want uint64) {
		t.Helper()
		js, err := jetstream.New(a.NATS())
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		var got uint64
		for time.Now().Before(deadline) {
			if s, err := js.Stream(context.Background(), natsbus.StreamDefault); err == nil {
				if info, err := s.Info(context.Background()); err == nil {
					if got = info.State.Msgs; got == want {
						return
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("the embedded stream holds %d messages, want %d", got, want)
	}
	cfg := app.Config{Addr: "127.0.0.1:0", DataDir: dir, NATS: app.NATSEmbedded}
	a := runApp(t, cfg)
	post(a.a, "/v1/skus", `{"id":"tea","name":"Tea","price":{"amount":450,"currency":"EUR"},"stock":5}`)
	post(a.a, "/v1/orders", `{"user_id":"u1","lines":[{"sku":"tea","quantity":1}]}`)
	waitMsgs(a.a, 2)
	a.stop()

	b := runApp(t, cfg)
	waitMsgs(b.a, 2)
	post(b.a, "/v1/orders", `{"user_id":"u1","lines":[{"sku":"tea","quantity":2}]}`)
	waitMsgs(b.a, 3)
}
