package stripe_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stripe/stripe-go/v82/webhook"

	"ordercore"
	"ordercore/channel/stripe"
)

// Signing secrets of the endpoint: A is the current one, B the one it is rotating to.
const (
	secretA = "whsec_test_secret_A_0123456789"
	secretB = "whsec_test_secret_B_9876543210"
)

// sign signs payload at ts with secret by stripe-go's own test helper, so that the header
// format and the signed message are Stripe's, not our reading of them.
func sign(payload []byte, secret string, ts time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: ts}).Header
}

func header(sig string) http.Header {
	h := http.Header{}
	if sig != "" {
		h.Set("Stripe-Signature", sig)
	}
	return h
}

// event returns an event's JSON as Stripe sends it, around a data.object.
func event(id, typ string, created int64, livemode bool, object map[string]any) []byte {
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": "2025-08-27.basil", "created": created,
		"type": typ, "livemode": livemode, "pending_webhooks": 1,
		"request": map[string]any{"id": "req_1", "idempotency_key": "pay-1"},
		"data":    map[string]any{"object": object},
	})
	if err != nil {
		panic(err)
	}
	return b
}

func intentObject(status string, metadata map[string]string) map[string]any {
	received := 0
	if status == "succeeded" {
		received = 1999
	}
	return map[string]any{
		"id": "pi_3Mtw", "object": "payment_intent", "amount": 1999, "amount_received": received,
		"currency": "usd", "status": status, "client_secret": "pi_3Mtw_secret_x",
		"metadata": metadata, "latest_charge": "ch_1", "livemode": false,
	}
}

func refundObject(status string, metadata map[string]string) map[string]any {
	return map[string]any{
		"id": "re_3Mtw", "object": "refund", "amount": 500, "currency": "usd", "status": status,
		"payment_intent": "pi_3Mtw", "charge": "ch_1", "metadata": metadata,
	}
}

func notifyChannel(t *testing.T, secrets ...string) *stripe.Channel {
	t.Helper()
	c, err := stripe.New(stripe.Config{SecretKey: testSecretKey, WebhookSecrets: secrets, BaseURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// Whole seconds: the header carries seconds, and stripe-go checks against the real clock.
var now = time.Now().Truncate(time.Second)

var paidBody = event("evt_paid", "payment_intent.succeeded", now.Unix(), false,
	intentObject("succeeded", map[string]string{"out_trade_no": "pay-1", "order_id": "o-1"}))

var paidNotification = ordercore.Notification{
	EventID: "evt_paid",
	Payment: &ordercore.ChannelPayment{
		OutTradeNo: "pay-1", TxnID: "pi_3Mtw", Status: ordercore.PaymentSucceeded,
		Amount: usd(1999), PaidAt: time.Unix(now.Unix(), 0).UTC(),
	},
}

func TestParseNotificationAccepts(t *testing.T) {
	t.Parallel()
	sigA, sigB := sign(paidBody, secretA, now), sign(paidBody, secretB, now)
	v1 := func(sig string) string { _, v, _ := strings.Cut(sig, ",v1="); return v }
	tests := []struct {
		name    string
		secrets []string
		header  string
		at      time.Time // now for ParseNotification
		checkAs string    // the secret stripe-go must accept the header with
	}{
		{"valid", []string{secretA}, sigA, now, secretA},
		{"rotation, second secret matches", []string{secretA, secretB}, sigB, now, secretB},
		{"rotation, first secret matches", []string{secretB, secretA}, sigA, now, secretA},
		{"several v1, the last matches", []string{secretB},
			fmt.Sprintf("t=%d,v1=%s,v1=%s", now.Unix(), v1(sigA), v1(sigB)), now, secretB},
		{"several v1 and a v0", []string{secretA},
			fmt.Sprintf("t=%d,v1=%s,v0=%s,v1=%s", now.Unix(), v1(sigB), v1(sigB), v1(sigA)), now, secretA},
		{"300 s old", []string{secretA}, sign(paidBody, secretA, now.Add(-300*time.Second)), now, ""},
		{"300 s ahead", []string{secretA}, sign(paidBody, secretA, now.Add(300*time.Second)), now, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := notifyChannel(t, tt.secrets...)
			got, err := c.ParseNotification(header(tt.header), paidBody, tt.at)
			if err != nil {
				t.Fatalf("ParseNotification: %v", err)
			}
			want := paidNotification
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if tt.checkAs == "" {
				return
			}
			// What we accept, Stripe's own library accepts.
			if _, err := webhook.ConstructEventWithOptions(paidBody, tt.header, tt.checkAs, webhook.ConstructEventOptions{}); err != nil {
				t.Errorf("stripe-go rejects a header we accept: %v", err)
			}
		})
	}
}

func TestParseNotificationRejects(t *testing.T) {
	t.Parallel()
	sigA := sign(paidBody, secretA, now)
	tampered := []byte(strings.Replace(string(paidBody), `"amount_received":1999`, `"amount_received":99999`, 1))
	if string(tampered) == string(paidBody) {
		t.Fatal("tampering changed nothing")
	}
	tests := []struct {
		name     string
		header   http.Header
		body     []byte
		wantCode string
		// stripeGoAccepts is whether stripe-go, judging the same input by its own rules,
		// accepts it. It is laxer in three places, where we are strict on purpose: it
		// does not bound timestamps from the future, keeps the last of two t= pairs, and
		// (given one header value) never sees a second Stripe-Signature header.
		stripeGoAccepts bool
	}{
		{"tampered body", header(sigA), tampered, ordercore.EInvalidSignature, false},
		{"wrong secret", header(sign(paidBody, "whsec_someone_else", now)), paidBody, ordercore.EInvalidSignature, false},
		{"missing header", header(""), paidBody, ordercore.EInvalidSignature, false},
		{"garbled header", header("garbage"), paidBody, ordercore.EInvalidSignature, false},
		{"no timestamp", header(strings.Split(sigA, ",")[1]), paidBody, ordercore.EInvalidSignature, false},
		{"non-numeric timestamp", header(strings.Replace(sigA, "t=", "t=x", 1)), paidBody, ordercore.EInvalidSignature, false},
		{"two timestamps", header("t=1," + sigA), paidBody, ordercore.EInvalidSignature, true},
		{"only v0", header(strings.Replace(sigA, "v1=", "v0=", 1)), paidBody, ordercore.EInvalidSignature, false},
		{"v1 not hex", header(fmt.Sprintf("t=%d,v1=zz", now.Unix())), paidBody, ordercore.EInvalidSignature, false},
		{"timestamp re-signed by nobody", header(strings.Replace(sigA, fmt.Sprint(now.Unix()), fmt.Sprint(now.Unix()+1), 1)), paidBody, ordercore.EInvalidSignature, false},
		{"two headers", http.Header{"Stripe-Signature": {sigA, "t=1,v1=00"}}, paidBody, ordercore.EInvalidSignature, true},
		{"301 s old", header(sign(paidBody, secretA, now.Add(-301*time.Second))), paidBody, ordercore.EStaleNotification, false},
		{"301 s ahead", header(sign(paidBody, secretA, now.Add(301*time.Second))), paidBody, ordercore.EStaleNotification, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := notifyChannel(t, secretA)
			got, err := c.ParseNotification(tt.header, tt.body, now)
			if code := ordercore.ErrorCode(err); code != tt.wantCode {
				t.Fatalf("ParseNotification = %+v, %v; code %q, want %q", got, err, code, tt.wantCode)
			}
			if _, err := webhook.ConstructEventWithOptions(tt.body, tt.header.Get("Stripe-Signature"), secretA, webhook.ConstructEventOptions{}); (err == nil) != tt.stripeGoAccepts {
				t.Errorf("stripe-go: %v, want accepted=%t", err, tt.stripeGoAccepts)
			}
		})
	}
}

// The window is the configured one, on both sides.
func TestParseNotificationTolerance(t *testing.T) {
	t.Parallel()
	c, err := stripe.New(stripe.Config{SecretKey: testSecretKey, WebhookSecrets: []string{secretA}, Tolerance: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		offset time.Duration
		want   string
	}{{-10 * time.Second, ""}, {10 * time.Second, ""}, {-11 * time.Second, ordercore.EStaleNotification}, {11 * time.Second, ordercore.EStaleNotification}} {
		_, err := c.ParseNotification(header(sign(paidBody, secretA, now.Add(tt.offset))), paidBody, now)
		if got := ordercore.ErrorCode(err); got != tt.want {
			t.Errorf("signed at now%+v: code %q, want %q", tt.offset, got, tt.want)
		}
	}
}

// Authentic bytes: what they say decides the answer.
func TestParseNotificationContent(t *testing.T) {
	t.Parallel()
	ours := map[string]string{"out_trade_no": "pay-1"}
	refundMD := map[string]string{"out_refund_no": "ref-1", "out_trade_no": "pay-1"}
	refund := func(st ordercore.RefundStatus) *ordercore.ChannelRefund {
		return &ordercore.ChannelRefund{OutTradeNo: "pay-1", OutRefundNo: "ref-1", RefundID: "re_3Mtw", Status: st, Amount: usd(500)}
	}
	pending := &ordercore.ChannelPayment{OutTradeNo: "pay-1", TxnID: "pi_3Mtw", Status: ordercore.PaymentPending, Amount: usd(1999)}
	tests := []struct {
		name     string
		body     []byte
		want     ordercore.Notification
		wantCode string
	}{
		{name: "payment failed stays pending: the intent can still be paid",
			body: event("evt_1", "payment_intent.payment_failed", now.Unix(), false, intentObject("requires_payment_method", ours)),
			want: ordercore.Notification{EventID: "evt_1", Payment: pending}},
		{name: "processing",
			body: event("evt_2", "payment_intent.processing", now.Unix(), false, intentObject("processing", ours)),
			want: ordercore.Notification{EventID: "evt_2", Payment: pending}},
		{name: "canceled",
			body: event("evt_3", "payment_intent.canceled", now.Unix(), false, intentObject("canceled", ours)),
			want: ordercore.Notification{EventID: "evt_3", Payment: &ordercore.ChannelPayment{OutTradeNo: "pay-1", TxnID: "pi_3Mtw", Status: ordercore.PaymentClosed, Amount: usd(1999)}}},
		{name: "refund created",
			body: event("evt_4", "refund.created", now.Unix(), false, refundObject("pending", refundMD)),
			want: ordercore.Notification{EventID: "evt_4", Refund: refund(ordercore.RefundPending)}},
		{name: "refund updated",
			body: event("evt_5", "refund.updated", now.Unix(), false, refundObject("succeeded", refundMD)),
			want: ordercore.Notification{EventID: "evt_5", Refund: refund(ordercore.RefundSucceeded)}},
		{name: "refund failed",
			body: event("evt_6", "refund.failed", now.Unix(), false, refundObject("failed", refundMD)),
			want: ordercore.Notification{EventID: "evt_6", Refund: refund(ordercore.RefundFailed)}},
		{name: "charge.refund.updated carries the refund",
			body: event("evt_7", "charge.refund.updated", now.Unix(), false, refundObject("canceled", refundMD)),
			want: ordercore.Notification{EventID: "evt_7", Refund: refund(ordercore.RefundFailed)}},
		{name: "unknown type is acked and ignored",
			body: event("evt_8", "customer.created", now.Unix(), false, map[string]any{"id": "cus_1", "object": "customer"}),
			want: ordercore.Notification{EventID: "evt_8"}},
		{name: "charge.refunded does not say which refund: ignored",
			body: event("evt_9", "charge.refunded", now.Unix(), false, map[string]any{"id": "ch_1", "object": "charge", "amount_refunded": 500}),
			want: ordercore.Notification{EventID: "evt_9"}},
		{name: "malformed JSON", body: []byte(`{"id": "evt_10", "object": "event",`), wantCode: ordercore.EMalformedNotification},
		{name: "not an event", body: []byte(`{"id": "pi_1", "object": "payment_intent"}`), wantCode: ordercore.EMalformedNotification},
		{name: "payment without out_trade_no",
			body:     event("evt_11", "payment_intent.succeeded", now.Unix(), false, intentObject("succeeded", map[string]string{})),
			wantCode: ordercore.EMalformedNotification},
		{name: "refund without out_refund_no",
			body:     event("evt_12", "refund.updated", now.Unix(), false, refundObject("succeeded", ours)),
			wantCode: ordercore.EMalformedNotification},
		{name: "payment event carrying another object",
			body:     event("evt_13", "payment_intent.succeeded", now.Unix(), false, refundObject("succeeded", refundMD)),
			wantCode: ordercore.EMalformedNotification},
		{name: "unknown intent status",
			body:     event("evt_14", "payment_intent.succeeded", now.Unix(), false, intentObject("exploded", ours)),
			wantCode: ordercore.EMalformedNotification},
		{name: "live event at a test key",
			body:     event("evt_15", "payment_intent.succeeded", now.Unix(), true, intentObject("succeeded", ours)),
			wantCode: ordercore.EMerchantMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := notifyChannel(t, secretA)
			got, err := c.ParseNotification(header(sign(tt.body, secretA, now)), tt.body, now)
			if code := ordercore.ErrorCode(err); code != tt.wantCode {
				t.Fatalf("err = %v, code %q, want %q", err, code, tt.wantCode)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseNotificationConnectedAccount(t *testing.T) {
	t.Parallel()
	var ev map[string]any
	if err := json.Unmarshal(paidBody, &ev); err != nil {
		t.Fatal(err)
	}
	ev["account"] = "acct_other"
	body, _ := json.Marshal(ev)
	_, err := notifyChannel(t, secretA).ParseNotification(header(sign(body, secretA, now)), body, now)
	if code := ordercore.ErrorCode(err); code != ordercore.EMerchantMismatch {
		t.Errorf("code %q, want %q", code, ordercore.EMerchantMismatch)
	}
}

func TestAck(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	notifyChannel(t, secretA).Ack(w)
	if w.Code != http.StatusOK || w.Body.String() != "{}" || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("Ack wrote %d %q %q, want 200 {} application/json", w.Code, w.Header().Get("Content-Type"), w.Body.String())
	}
}
