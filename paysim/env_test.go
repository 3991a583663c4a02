package paysim_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"ordercore"
	"ordercore/channel/sim"
	"ordercore/paysim"
)

const (
	merchantID = "m1"
	apiKey     = "key-m1"
	secret     = "whsec-m1"
)

// env is a running simulator, the adapter pointed at it and a merchant endpoint that
// records what it receives.
type env struct {
	srv   *paysim.Server
	url   string
	ch    *sim.Channel
	inbox *inbox
}

// setup starts a simulator with cfg's faults, seed and time scale (the merchant is added).
func setup(t *testing.T, cfg paysim.Config) *env {
	t.Helper()
	cfg.Merchants = map[string]paysim.Merchant{merchantID: {APIKey: apiKey, Secret: secret}}
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 0.001
	}
	srv, err := paysim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	ch, err := sim.New(sim.Config{BaseURL: ts.URL, MerchantID: merchantID, APIKey: apiKey, Secrets: []string{secret}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	in := newInbox(t, ch)
	return &env{srv: srv, url: ts.URL, ch: ch, inbox: in}
}

// received is one notification as the merchant saw it.
type received struct {
	At     time.Time
	Body   []byte
	Parsed ordercore.Notification
	Err    error // ParseNotification's
	Status int   // what the merchant answered
}

// inbox is a merchant's notify endpoint: it verifies with the adapter, and answers 500
// to the first failFirst authentic notifications, then acks.
type inbox struct {
	URL string
	ch  *sim.Channel

	mu        sync.Mutex
	failFirst int
	got       []received
	signal    chan struct{}
}

func newInbox(t *testing.T, ch *sim.Channel) *inbox {
	in := &inbox{ch: ch, signal: make(chan struct{}, 1)}
	ts := httptest.NewServer(http.HandlerFunc(in.serve))
	t.Cleanup(ts.Close)
	in.URL = ts.URL + "/notify"
	return in
}

func (in *inbox) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n, err := in.ch.ParseNotification(r.Header, body, time.Now())
	in.mu.Lock()
	rec := received{At: time.Now(), Body: body, Parsed: n, Err: err}
	switch {
	case err != nil:
		rec.Status = http.StatusUnauthorized
	case in.failFirst > 0:
		in.failFirst--
		rec.Status = http.StatusInternalServerError
	default:
		rec.Status = http.StatusOK
	}
	in.got = append(in.got, rec)
	in.mu.Unlock()
	select {
	case in.signal <- struct{}{}:
	default:
	}
	if rec.Status == http.StatusOK {
		in.ch.Ack(w)
		return
	}
	w.WriteHeader(rec.Status)
}

func (in *inbox) setFailFirst(n int) {
	in.mu.Lock()
	in.failFirst = n
	in.mu.Unlock()
}

func (in *inbox) all() []received {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]received(nil), in.got...)
}

// waitFor waits until ok holds for what was received, or fails the test.
func (in *inbox) waitFor(t *testing.T, what string, ok func([]received) bool) []received {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		got := in.all()
		if ok(got) {
			return got
		}
		select {
		case <-in.signal:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; received %d notifications", what, len(got))
		}
	}
}

// waitUntil polls cond until it holds, or fails the test.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func usd(n int64) ordercore.Money { return ordercore.Money{Amount: n, Currency: "USD"} }

// create opens a trade of amount for order with the inbox as notify URL.
func (e *env) create(t *testing.T, no, order string, amount int64) ordercore.PaymentInstructions {
	t.Helper()
	pi, err := e.ch.CreatePayment(context.Background(), ordercore.PaymentRequest{
		OutTradeNo: no, OrderID: order, Amount: usd(amount), Description: "test",
		ExpiresAt: time.Now().Add(time.Hour), NotifyURL: e.inbox.URL,
	})
	if err != nil {
		t.Fatalf("create %s: %v", no, err)
	}
	return pi
}

func (e *env) pay(t *testing.T, no string, success bool) sim.Trade {
	t.Helper()
	tr, err := paysim.Pay(context.Background(), nil, e.url, no, success)
	if err != nil {
		t.Fatalf("pay %s: %v", no, err)
	}
	return tr
}

func (e *env) deliveries(no string) []paysim.Delivery {
	var out []paysim.Delivery
	for _, d := range e.srv.Deliveries() {
		if d.OutTradeNo == no {
			out = append(out, d)
		}
	}
	return out
}
