package app_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"ordercore/app"
)

// TestServeRelaysEventsToNATS: serve with --nats relays the event log to JetStream: an
// order placed over HTTP reaches the stream as a CloudEvent with its event id as the
// message id.
func TestServeRelaysEventsToNATS(t *testing.T) {
	t.Parallel()
	url := os.Getenv("ORDERCORE_TEST_NATS")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("NATS at %s is not reachable under CI: %v", url, err)
		}
		t.Skipf("no NATS at %s (set ORDERCORE_TEST_NATS): %v", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("APPTEST_%d", time.Now().UnixNano())
	prefix := strings.ToLower(name) + ".events"
	t.Cleanup(func() { // the connection stays open until the stream is gone
		if err := js.DeleteStream(context.Background(), name); err != nil {
			t.Errorf("delete stream %s: %v", name, err)
		}
		nc.Close()
	})

	a, err := app.Open(context.Background(), app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), NATS: url, NATSStream: name, NATSSubjects: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	skuAndOrder(t, "http://"+a.Addr())
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := js.Stream(context.Background(), name)
		if err == nil {
			if info, err := s.Info(context.Background()); err == nil && info.State.Msgs == 2 {
				m, err := s.GetMsg(context.Background(), 2)
				if err != nil {
					t.Fatal(err)
				}
				id := m.Header.Get("Nats-Msg-Id")
				if m.Subject != prefix+".order.order.placed" || id == "" || !strings.Contains(string(m.Data), `"id":"`+id+`"`) ||
					!strings.Contains(string(m.Data), `"type":"ordercore.order.placed"`) {
					t.Fatalf("second message: subject %s, id %q, data %s", m.Subject, m.Header.Get("Nats-Msg-Id"), m.Data)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream did not get the 2 events (err %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeStartsWhileNATSIsDown: NATS receives only a copy of the event log, so serve
// starts and takes orders while it is down; once it is up, the relay makes its stream and
// publishes what it missed.
func TestServeStartsWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there until the server below starts
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	a, err := app.Open(context.Background(), app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), NATS: url, NATSStream: "LATE", NATSSubjects: "late.events"})
	if err != nil {
		t.Fatalf("serve with NATS down: %v, want it to start", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	skuAndOrder(t, "http://"+a.Addr()) // with NATS down

	srv, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := js.Stream(context.Background(), "LATE")
		if err == nil {
			if info, err := s.Info(context.Background()); err == nil && info.State.Msgs == 2 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream did not get the 2 events once NATS was up (err %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// skuAndOrder creates a SKU and places an order of it: two events.
func skuAndOrder(t *testing.T, base string) {
	t.Helper()
	for _, req := range []struct{ path, body string }{
		{"/v1/skus", `{"id":"tea","name":"Tea","price":{"amount":450,"currency":"EUR"},"stock":5}`},
		{"/v1/orders", `{"user_id":"u1","lines":[{"sku":"tea","quantity":1}]}`},
	} {
		resp, err := http.Post(base+req.path, "application/json", strings.NewReader(req.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s: %d", req.path, resp.StatusCode)
		}
	}
}
