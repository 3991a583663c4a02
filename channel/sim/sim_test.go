package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
	"ordercore/channel/sim"
	"ordercore/paysim"
)

const (
	merchantID = "m1"
	apiKey     = "key-m1"
	secret     = "whsec-m1"
)

var bg = context.Background()

type bundle struct {
	ch  *sim.Channel
	url string
	srv *paysim.Server
}

// setup runs a real simulator with faults and returns the adapter pointed at it.
func setup(t *testing.T, faults paysim.Faults, timeout time.Duration) bundle {
	t.Helper()
	srv, err := paysim.New(paysim.Config{
		Merchants: map[string]paysim.Merchant{merchantID: {APIKey: apiKey, Secret: secret}, "m2": {APIKey: "key-m2", Secret: "whsec-m2"}},
		Faults:    faults,
		TimeScale: 0.001,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	return bundle{ch: newChannel(t, ts.URL, apiKey, timeout), url: ts.URL, srv: srv}
}

func newChannel(t *testing.T, url, key string, timeout time.Duration) *sim.Channel {
	t.Helper()
	ch, err := sim.New(sim.Config{BaseURL: url, MerchantID: merchantID, APIKey: key, Secrets: []string{secret}, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func usd(n int64) ordercore.Money { return ordercore.Money{Amount: n, Currency: "USD"} }

func request(no string, amount int64) ordercore.PaymentRequest {
	return ordercore.PaymentRequest{OutTradeNo: no, OrderID: "order-" + no, Amount: usd(amount), Description: "two mugs", ExpiresAt: time.Now().Add(time.Hour)}
}

func channelCode(err error) string {
	var ce *ordercore.ChannelError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

func TestPaymentRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t, paysim.Faults{}, 0)
	pi, err := b.ch.CreatePayment(bg, request("t1", 1999))
	if err != nil {
		t.Fatal(err)
	}
	if pi.TxnID == "" || pi.RedirectURL != b.url+"/pay/t1" {
		t.Errorf("instructions %+v", pi)
	}
	again, err := b.ch.CreatePayment(bg, request("t1", 1999))
	if err != nil || !cmp.Equal(again, pi) {
		t.Errorf("repeated create: %+v, %v; want the same trade %+v", again, err, pi)
	}
	if _, err := b.ch.CreatePayment(bg, request("t1", 2000)); channelCode(err) != sim.CodeOutTradeNoReused {
		t.Errorf("create with another amount: %v, want %s", err, sim.CodeOutTradeNoReused)
	}
	p, err := b.ch.QueryPayment(bg, "t1")
	want := ordercore.ChannelPayment{OutTradeNo: "t1", TxnID: pi.TxnID, Status: ordercore.PaymentPending, Amount: usd(1999)}
	if diff := cmp.Diff(want, p); err != nil || diff != "" {
		t.Errorf("pending query (-want +got): %v\n%s", err, diff)
	}
	if _, err := b.ch.Refund(bg, ordercore.RefundRequest{OutTradeNo: "t1", OutRefundNo: "r0", Amount: usd(1)}); channelCode(err) != sim.CodeTradeNotPaid {
		t.Errorf("refund of an unpaid trade: %v, want %s", err, sim.CodeTradeNotPaid)
	}
	if _, err := paysim.Pay(bg, nil, b.url, "t1", true); err != nil {
		t.Fatal(err)
	}
	p, err = b.ch.QueryPayment(bg, "t1")
	if err != nil || p.Status != ordercore.PaymentSucceeded || p.Amount != usd(1999) || p.PaidAt.IsZero() {
		t.Errorf("paid query: %+v, %v", p, err)
	}
	if err := b.ch.ClosePayment(bg, "t1"); !errors.Is(err, ordercore.ErrTradePaid) {
		t.Errorf("close of a paid trade: %v, want ErrTradePaid", err)
	}

	rr := ordercore.RefundRequest{OutTradeNo: "t1", OutRefundNo: "r1", Amount: usd(999), Total: usd(1999), Reason: "broken"}
	r, err := b.ch.Refund(bg, rr)
	if err != nil || r.Status != ordercore.RefundPending || r.RefundID == "" || r.Amount != usd(999) {
		t.Fatalf("refund: %+v, %v", r, err)
	}
	if r2, err := b.ch.Refund(bg, rr); err != nil || r2.RefundID != r.RefundID {
		t.Errorf("repeated refund: %+v, %v; want the same refund", r2, err)
	}
	// ordercore takes reasons longer than the simulator does (an automatic refund's reason
	// names the error that caused it): the channel sends the first 256 bytes.
	long := ordercore.RefundRequest{OutTradeNo: "t1", OutRefundNo: "r-long", Amount: usd(1), Total: usd(1999), Reason: strings.Repeat("é", 250)}
	if r, err := b.ch.Refund(bg, long); err != nil || r.Status != ordercore.RefundPending {
		t.Errorf("refund with a %d-byte reason: %+v, %v; want it sent, cut to %d bytes", len(long.Reason), r, err, sim.RefundReasonBytesMax)
	}
	if _, err := b.ch.Refund(bg, ordercore.RefundRequest{OutTradeNo: "t1", OutRefundNo: "r2", Amount: usd(1001)}); channelCode(err) != sim.CodeRefundExceeds {
		t.Errorf("refund over the rest: %v, want %s", err, sim.CodeRefundExceeds) // 1999 paid, 999 + 1 refunded
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Status == ordercore.RefundPending && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		if r, err = b.ch.QueryRefund(bg, "t1", "r1"); err != nil {
			t.Fatal(err)
		}
	}
	if r.Status != ordercore.RefundSucceeded {
		t.Errorf("refund ended %s, want succeeded", r.Status)
	}
	if _, err := b.ch.QueryRefund(bg, "t1", "nope"); !errors.Is(err, ordercore.ErrTradeNotFound) {
		t.Errorf("unknown refund: %v", err)
	}
}

func TestCloseAndUnknown(t *testing.T) {
	t.Parallel()
	b := setup(t, paysim.Faults{}, 0)
	if _, err := b.ch.QueryPayment(bg, "nope"); !errors.Is(err, ordercore.ErrTradeNotFound) {
		t.Errorf("query unknown: %v, want ErrTradeNotFound", err)
	}
	if err := b.ch.ClosePayment(bg, "nope"); !errors.Is(err, ordercore.ErrTradeNotFound) {
		t.Errorf("close unknown: %v, want ErrTradeNotFound", err)
	}
	if _, err := b.ch.QueryRefund(bg, "nope", "r"); !errors.Is(err, ordercore.ErrTradeNotFound) {
		t.Errorf("refund query of an unknown trade: %v, want ErrTradeNotFound", err)
	}
	if _, err := b.ch.CreatePayment(bg, request("c1", 100)); err != nil {
		t.Fatal(err)
	}
	for range 2 { // closing a closed trade succeeds
		if err := b.ch.ClosePayment(bg, "c1"); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	if p, err := b.ch.QueryPayment(bg, "c1"); err != nil || p.Status != ordercore.PaymentClosed {
		t.Errorf("after close: %+v, %v", p, err)
	}
	if _, err := paysim.Pay(bg, nil, b.url, "c1", true); channelCode(err) != sim.CodeTradeClosed {
		t.Errorf("paying a closed trade: %v, want %s", err, sim.CodeTradeClosed)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, paysim.Faults{}, 0)
	if _, err := newChannel(t, b.url, "wrong", 0).QueryPayment(bg, "x"); channelCode(err) != sim.CodeInvalidAPIKey {
		t.Errorf("wrong key: %v", err)
	}
	other, err := sim.New(sim.Config{BaseURL: b.url, MerchantID: "m9", APIKey: apiKey, Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.QueryPayment(bg, "x"); channelCode(err) != sim.CodeUnknownMerchant {
		t.Errorf("unknown merchant: %v", err)
	}
}

// A call that takes effect but whose answer never comes is an unknown outcome; the query
// then finds what it did.
func TestTimeoutIsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	b := setup(t, paysim.Faults{TimeoutRate: 1}, 200*time.Millisecond)
	start := time.Now()
	_, err := b.ch.CreatePayment(bg, request("to1", 100))
	if !errors.Is(err, ordercore.ErrOutcomeUnknown) {
		t.Fatalf("create: %v, want ErrOutcomeUnknown", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the timeout took %v", d)
	}
	p, err := b.ch.QueryPayment(bg, "to1")
	if err != nil || p.Status != ordercore.PaymentPending {
		t.Errorf("query after the timeout: %+v, %v; want the trade, pending", p, err)
	}
	if err := b.ch.ClosePayment(bg, "to1"); !errors.Is(err, ordercore.ErrOutcomeUnknown) {
		t.Errorf("close: %v, want ErrOutcomeUnknown", err)
	}
	if p, err := b.ch.QueryPayment(bg, "to1"); err != nil || p.Status != ordercore.PaymentClosed {
		t.Errorf("query after the close: %+v, %v; want closed", p, err)
	}
}

// A 500 is an unknown outcome too, though here nothing happened.
func TestServerErrorIsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	b := setup(t, paysim.Faults{ErrorRate: 1}, 0)
	if _, err := b.ch.CreatePayment(bg, request("e1", 100)); !errors.Is(err, ordercore.ErrOutcomeUnknown) {
		t.Fatalf("create: %v, want ErrOutcomeUnknown", err)
	}
	resp, err := http.Get(b.url + "/pay/e1") // the shopper's page is not faulted
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the injected error created a trade: page status %d", resp.StatusCode)
	}
}

// A notification from the simulator is accepted and mapped; the paid amount is reported.
func TestNotificationFromServer(t *testing.T) {
	t.Parallel()
	b := setup(t, paysim.Faults{}, 0)
	got := make(chan ordercore.Notification, 4)
	merchant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read: %v", err)
			return
		}
		n, err := b.ch.ParseNotification(r.Header, body, time.Now())
		if err != nil {
			t.Errorf("parse: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		b.ch.Ack(w)
		got <- n
	}))
	t.Cleanup(merchant.Close)
	req := request("n1", 4200)
	req.NotifyURL = merchant.URL
	pi, err := b.ch.CreatePayment(bg, req)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := paysim.Pay(bg, nil, b.url, "n1", true)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-got:
		want := &ordercore.ChannelPayment{OutTradeNo: "n1", TxnID: pi.TxnID, Status: ordercore.PaymentSucceeded, Amount: usd(4200), PaidAt: tr.PaidAt}
		if diff := cmp.Diff(want, n.Payment); diff != "" || n.Refund != nil || n.EventID == "" {
			t.Errorf("notification %+v (-want +got):\n%s", n, diff)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notification")
	}
	// The simulator records the ack once the answer is back.
	deadline := time.Now().Add(5 * time.Second)
	for ds := b.srv.Deliveries(); len(ds) != 1 || !ds[0].Acked; ds = b.srv.Deliveries() {
		if time.Now().After(deadline) {
			t.Fatalf("deliveries %+v, want one acked", ds)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// event makes a signed-able notification body for merchant.
func event(t *testing.T, typ, merchant string, data any) []byte {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(sim.Event{ID: "evt_1", Type: typ, Created: time.Now(), Data: raw})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestParseNotification(t *testing.T) {
	t.Parallel()
	const old = "whsec-old"
	ch, err := sim.New(sim.Config{BaseURL: "http://paysim.test", MerchantID: merchantID, APIKey: apiKey, Secrets: []string{secret, old}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_760_000_000, 0)
	paid := now.Add(-time.Minute).UTC()
	trade := sim.Trade{MerchantID: merchantID, OutTradeNo: "t1", TxnID: "txn_1", Status: sim.TradeSucceeded, Amount: usd(1000), PaidAmount: usd(900), PaidAt: paid}
	body := event(t, sim.EventTradeSucceeded, merchantID, trade)
	foreign := trade
	foreign.MerchantID = "m2"
	foreignBody := event(t, sim.EventTradeSucceeded, "m2", foreign)
	refundBody := event(t, sim.EventRefundAbnormal, merchantID, sim.Refund{MerchantID: merchantID, OutTradeNo: "t1", OutRefundNo: "r1", RefundID: "rf_1", Status: sim.RefundAbnormal, Amount: usd(5)})
	tampered := []byte(string(body[:len(body)-2]) + " }")
	unknownType := event(t, "trade.teleported", merchantID, trade)
	notJSON := []byte("not json")

	tests := []struct {
		name   string
		header string
		body   []byte
		code   string // "" for accepted
		want   ordercore.Notification
	}{
		{"valid", sim.Sign(secret, now, body), body, "", ordercore.Notification{EventID: "evt_1", Payment: &ordercore.ChannelPayment{OutTradeNo: "t1", TxnID: "txn_1", Status: ordercore.PaymentSucceeded, Amount: usd(900), PaidAt: paid}}},
		{"old secret during rotation", sim.Sign(old, now, body), body, "", ordercore.Notification{EventID: "evt_1", Payment: &ordercore.ChannelPayment{OutTradeNo: "t1", TxnID: "txn_1", Status: ordercore.PaymentSucceeded, Amount: usd(900), PaidAt: paid}}},
		{"two signatures, one unknown", sim.SignRotating([]string{"whsec-next", secret}, now, body), body, "", ordercore.Notification{EventID: "evt_1", Payment: &ordercore.ChannelPayment{OutTradeNo: "t1", TxnID: "txn_1", Status: ordercore.PaymentSucceeded, Amount: usd(900), PaidAt: paid}}},
		{"refund", sim.Sign(secret, now, refundBody), refundBody, "", ordercore.Notification{EventID: "evt_1", Refund: &ordercore.ChannelRefund{OutTradeNo: "t1", OutRefundNo: "r1", RefundID: "rf_1", Status: ordercore.RefundAbnormal, Amount: usd(5)}}},
		{"forged", sim.Sign("whsec-attacker", now, body), body, ordercore.EInvalidSignature, ordercore.Notification{}},
		{"tampered", sim.Sign(secret, now, body), tampered, ordercore.EInvalidSignature, ordercore.Notification{}},
		{"missing header", "", body, ordercore.EInvalidSignature, ordercore.Notification{}},
		{"garbled header", "t=abc,v1=zz", body, ordercore.EInvalidSignature, ordercore.Notification{}},
		{"no v1", "t=1760000000,v0=abcd", body, ordercore.EInvalidSignature, ordercore.Notification{}},
		{"stale, past", sim.Sign(secret, now.Add(-301*time.Second), body), body, ordercore.EStaleNotification, ordercore.Notification{}},
		{"stale, future", sim.Sign(secret, now.Add(301*time.Second), body), body, ordercore.EStaleNotification, ordercore.Notification{}},
		{"within tolerance", sim.Sign(secret, now.Add(-299*time.Second), body), body, "", ordercore.Notification{EventID: "evt_1", Payment: &ordercore.ChannelPayment{OutTradeNo: "t1", TxnID: "txn_1", Status: ordercore.PaymentSucceeded, Amount: usd(900), PaidAt: paid}}},
		{"forged and stale", sim.Sign("whsec-attacker", now.Add(-time.Hour), body), body, ordercore.EInvalidSignature, ordercore.Notification{}},
		{"other merchant", sim.Sign(secret, now, foreignBody), foreignBody, ordercore.EMerchantMismatch, ordercore.Notification{}},
		{"authentic but unreadable", sim.Sign(secret, now, notJSON), notJSON, ordercore.EMalformedNotification, ordercore.Notification{}},
		{"unknown type", sim.Sign(secret, now, unknownType), unknownType, ordercore.EMalformedNotification, ordercore.Notification{}},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.header != "" {
			h.Set(sim.HeaderSignature, tt.header)
		}
		n, err := ch.ParseNotification(h, tt.body, now)
		if tt.code == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			} else if diff := cmp.Diff(tt.want, n); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.name, diff)
			}
			continue
		}
		var oe *ordercore.Error
		if !errors.As(err, &oe) || oe.Code != tt.code {
			t.Errorf("%s: %v, want an *ordercore.Error %s", tt.name, err, tt.code)
		}
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]sim.Config{
		"relative URL": {BaseURL: "paysim", MerchantID: "m", APIKey: "k", Secrets: []string{"s"}},
		"no merchant":  {BaseURL: "http://x", APIKey: "k", Secrets: []string{"s"}},
		"no key":       {BaseURL: "http://x", MerchantID: "m", Secrets: []string{"s"}},
		"no secret":    {BaseURL: "http://x", MerchantID: "m", APIKey: "k"},
		"empty secret": {BaseURL: "http://x", MerchantID: "m", APIKey: "k", Secrets: []string{""}},
	} {
		if _, err := sim.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAck(t *testing.T) {
	t.Parallel()
	ch, err := sim.New(sim.Config{BaseURL: "http://x", MerchantID: "m", APIKey: "k", Secrets: []string{"s"}})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	ch.Ack(w)
	if w.Code != http.StatusOK || w.Body.String() != "{}" {
		t.Errorf("ack %d %q", w.Code, w.Body.String())
	}
	if ch.Name() != "sim" {
		t.Errorf("name %q", ch.Name())
	}
}
