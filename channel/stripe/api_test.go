package stripe_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
	"ordercore/channel/stripe"
)

// setup returns a channel talking to a fresh fake Stripe.
func setup(t *testing.T) (*stripe.Channel, *fakeStripe) {
	t.Helper()
	f := newFakeStripe(t)
	return newChannel(t, f.srv.URL, 0), f
}

func newChannel(t *testing.T, baseURL string, timeout time.Duration) *stripe.Channel {
	t.Helper()
	c, err := stripe.New(stripe.Config{
		SecretKey:      testSecretKey,
		WebhookSecrets: []string{secretA},
		BaseURL:        baseURL,
		Timeout:        timeout,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func usd(cents int64) ordercore.Money { return ordercore.Money{Amount: cents, Currency: "USD"} }

// create opens a trade and returns its intent id.
func create(t *testing.T, c *stripe.Channel, outTradeNo string, amount ordercore.Money) string {
	t.Helper()
	ins, err := c.CreatePayment(context.Background(), ordercore.PaymentRequest{OutTradeNo: outTradeNo, OrderID: "order-" + outTradeNo, Amount: amount})
	if err != nil {
		t.Fatalf("CreatePayment(%s): %v", outTradeNo, err)
	}
	return ins.TxnID
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	ok := stripe.Config{SecretKey: testSecretKey, WebhookSecrets: []string{secretA}}
	tests := []struct {
		name   string
		modify func(*stripe.Config)
	}{
		{"publishable key", func(c *stripe.Config) { c.SecretKey = "pk_test_x" }},
		{"no key", func(c *stripe.Config) { c.SecretKey = "" }},
		{"no webhook secret", func(c *stripe.Config) { c.WebhookSecrets = nil }},
		{"empty webhook secret", func(c *stripe.Config) { c.WebhookSecrets = []string{secretA, ""} }},
		{"negative tolerance", func(c *stripe.Config) { c.Tolerance = -time.Second }},
		{"negative timeout", func(c *stripe.Config) { c.Timeout = -time.Second }},
		{"relative base URL", func(c *stripe.Config) { c.BaseURL = "api.stripe.com" }},
		{"name with slash", func(c *stripe.Config) { c.Name = "a/b" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok
			tt.modify(&cfg)
			if _, err := stripe.New(cfg); err == nil {
				t.Errorf("New accepted %+v", cfg)
			}
		})
	}
	c, err := stripe.New(ok)
	if err != nil {
		t.Fatalf("New(valid): %v", err)
	}
	if c.Name() != "stripe" {
		t.Errorf("Name() = %q, want the default stripe", c.Name())
	}
}

func TestCreatePayment(t *testing.T) {
	t.Parallel()
	c, f := setup(t)
	req := ordercore.PaymentRequest{OutTradeNo: "pay-1", OrderID: "order-1", Amount: usd(1234), Description: "2 shirts"}
	got, err := c.CreatePayment(context.Background(), req)
	if err != nil {
		t.Fatalf("CreatePayment: %v", err)
	}
	want := ordercore.PaymentInstructions{TxnID: "pi_1", Params: map[string]string{"client_secret": "pi_1_secret_abc"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("instructions (-want +got):\n%s", diff)
	}
	calls := f.calls(http.MethodPost, "/v1/payment_intents")
	if len(calls) != 1 {
		t.Fatalf("%d create calls, want 1", len(calls))
	}
	wantForm := url.Values{
		"amount":                 {"1234"},
		"currency":               {"usd"},
		"description":            {"2 shirts"},
		"metadata[out_trade_no]": {"pay-1"},
		"metadata[order_id]":     {"order-1"},
	}
	if diff := cmp.Diff(wantForm, calls[0].Form); diff != "" {
		t.Errorf("form (-want +got):\n%s", diff)
	}
	if calls[0].IdempotencyKey != "pay-1" {
		t.Errorf("Idempotency-Key = %q, want the OutTradeNo pay-1", calls[0].IdempotencyKey)
	}

	// A repeat after an unknown outcome is the same trade: Stripe replays the answer.
	again, err := c.CreatePayment(context.Background(), req)
	if err != nil {
		t.Fatalf("CreatePayment again: %v", err)
	}
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("repeated create (-want +got):\n%s", diff)
	}
}

// Amounts reach Stripe in Stripe's minor units: the same as ISO 4217 except ISK, which
// Stripe keeps two-decimal.
func TestCreatePaymentAmounts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		money        ordercore.Money
		wantAmount   string
		wantCurrency string
	}{
		{usd(1999), "1999", "usd"},
		{ordercore.Money{Amount: 500, Currency: "JPY"}, "500", "jpy"},
		{ordercore.Money{Amount: 1250, Currency: "KWD"}, "1250", "kwd"},
		{ordercore.Money{Amount: 500, Currency: "ISK"}, "50000", "isk"},
	}
	c, f := setup(t)
	for i, tt := range tests {
		no := "amount-" + string(tt.money.Currency)
		create(t, c, no, tt.money)
		form := f.calls(http.MethodPost, "/v1/payment_intents")[i].Form
		if form.Get("amount") != tt.wantAmount || form.Get("currency") != tt.wantCurrency {
			t.Errorf("%s: sent amount=%s currency=%s, want %s %s", tt.money, form.Get("amount"), form.Get("currency"), tt.wantAmount, tt.wantCurrency)
		}
		// And back: the query reports the amount in ordercore's units.
		got, err := c.QueryPayment(context.Background(), no)
		if err != nil {
			t.Fatalf("QueryPayment(%s): %v", no, err)
		}
		if got.Amount != tt.money {
			t.Errorf("QueryPayment(%s).Amount = %s, want %s", no, got.Amount, tt.money)
		}
	}
	for _, bad := range []ordercore.Money{usd(0), usd(-1), {Amount: 1, Currency: "XXX"}} {
		if _, err := c.CreatePayment(context.Background(), ordercore.PaymentRequest{OutTradeNo: "bad", Amount: bad}); err == nil {
			t.Errorf("CreatePayment(%s) succeeded", bad)
		}
	}
}

func TestQueryPaymentMapsStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stripeStatus string
		want         ordercore.PaymentStatus
	}{
		{"requires_payment_method", ordercore.PaymentPending},
		{"requires_confirmation", ordercore.PaymentPending},
		{"requires_action", ordercore.PaymentPending},
		{"processing", ordercore.PaymentPending},
		{"requires_capture", ordercore.PaymentPending},
		{"canceled", ordercore.PaymentClosed},
		{"succeeded", ordercore.PaymentSucceeded},
	}
	c, f := setup(t)
	for _, tt := range tests {
		t.Run(tt.stripeStatus, func(t *testing.T) {
			no := "status-" + tt.stripeStatus
			id := create(t, c, no, usd(500))
			f.setIntent(id, map[string]any{"status": tt.stripeStatus})
			got, err := c.QueryPayment(context.Background(), no)
			if err != nil {
				t.Fatalf("QueryPayment: %v", err)
			}
			want := ordercore.ChannelPayment{OutTradeNo: no, TxnID: id, Status: tt.want, Amount: usd(500)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// A declined card leaves the intent open for another try at Stripe: still pending, never
// failed, or the order would start a second attempt while the first can still be paid.
func TestQueryPaymentDeclinedAttemptIsPending(t *testing.T) {
	t.Parallel()
	c, f := setup(t)
	id := create(t, c, "declined", usd(500))
	f.setIntent(id, map[string]any{"last_payment_error": map[string]any{"type": "card_error", "code": "card_declined"}})
	got, err := c.QueryPayment(context.Background(), "declined")
	if err != nil {
		t.Fatalf("QueryPayment: %v", err)
	}
	if got.Status != ordercore.PaymentPending {
		t.Errorf("status = %s, want pending", got.Status)
	}
}

func TestQueryPaymentSucceeded(t *testing.T) {
	t.Parallel()
	c, f := setup(t)
	id := create(t, c, "paid", usd(500))
	f.setIntent(id, map[string]any{
		"status": "succeeded", "amount_received": 500,
		"latest_charge": map[string]any{"id": "ch_1", "object": "charge", "created": 1700000123},
	})
	got, err := c.QueryPayment(context.Background(), "paid")
	if err != nil {
		t.Fatalf("QueryPayment: %v", err)
	}
	want := ordercore.ChannelPayment{OutTradeNo: "paid", TxnID: id, Status: ordercore.PaymentSucceeded, Amount: usd(500), PaidAt: time.Unix(1700000123, 0).UTC()}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestQueryPaymentNotFound(t *testing.T) {
	t.Parallel()
	c, _ := setup(t)
	_, err := c.QueryPayment(context.Background(), "never-created")
	if !errors.Is(err, ordercore.ErrTradeNotFound) {
		t.Errorf("err = %v, want ErrTradeNotFound", err)
	}
}

// When Stripe holds two intents under one out_trade_no (a create repeated after Stripe
// forgot the key), the paid one speaks for the trade.
func TestQueryPaymentPrefersPaidIntent(t *testing.T) {
	t.Parallel()
	c, f := setup(t)
	f.addIntent(map[string]any{
		"id": "pi_old", "object": "payment_intent", "amount": 500, "amount_received": 500, "currency": "usd",
		"status": "succeeded", "metadata": map[string]string{"out_trade_no": "twice"}, "created": 1600000000,
	})
	id := create(t, c, "twice", usd(500))
	got, err := c.QueryPayment(context.Background(), "twice")
	if err != nil {
		t.Fatalf("QueryPayment: %v", err)
	}
	if got.TxnID != "pi_old" || got.Status != ordercore.PaymentSucceeded {
		t.Errorf("got %s %s, want pi_old succeeded", got.TxnID, got.Status)
	}
	// Closing it cancels the open one and reports the trade paid.
	if err := c.ClosePayment(context.Background(), "twice"); !errors.Is(err, ordercore.ErrTradePaid) {
		t.Errorf("ClosePayment = %v, want ErrTradePaid", err)
	}
	if n := len(f.calls(http.MethodPost, "/v1/payment_intents/"+id+"/cancel")); n != 1 {
		t.Errorf("%d cancels of the open intent, want 1", n)
	}
}

func TestClosePayment(t *testing.T) {
	t.Parallel()
	c, f := setup(t)
	id := create(t, c, "to-close", usd(500))
	if err := c.ClosePayment(context.Background(), "to-close"); err != nil {
		t.Fatalf("ClosePayment: %v", err)
	}
	got, err := c.QueryPayment(context.Background(), "to-close")
	if err != nil || got.Status != ordercore.PaymentClosed {
		t.Fatalf("after close: %v %v, want closed", got.Status, err)
	}
	// Closing a closed trade succeeds.
	if err := c.ClosePayment(context.Background(), "to-close"); err != nil {
		t.Errorf("second ClosePayment: %v", err)
	}
	if n := len(f.calls(http.MethodPost, "/v1/payment_intents/"+id+"/cancel")); n != 1 {
		t.Errorf("%d cancel calls, want 1 (the closed intent needs none)", n)
	}
	if err := c.ClosePayment(context.Background(), "unknown"); !errors.Is(err, ordercore.ErrTradeNotFound) {
		t.Errorf("ClosePayment(unknown) = %v, want ErrTradeNotFound", err)
	}
}

func TestClosePaidPayment(t *testing.T) {
	t.Parallel()
	c, f := setup(t)
	id := create(t, c, "paid", usd(500))
	f.setIntent(id, map[string]any{"status": "succeeded", "amount_received": 500})
	if err := c.ClosePayment(context.Background(), "paid"); !errors.Is(err, ordercore.ErrTradePaid) {
		t.Errorf("ClosePayment = %v, want ErrTradePaid", err)
	}
}

// The race the close exists for: the search still shows the intent open, the shopper pays
// in that moment, and Stripe refuses the cancel with payment_intent_unexpected_state.
func TestClosePaymentPaidDuringClose(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status string
		want   error
	}{
		{"succeeded", ordercore.ErrTradePaid},
		{"canceled", nil},
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			t.Parallel()
			f := newFakeStripe(t)
			// A proxy that shows the search an open intent whatever Stripe holds.
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v1/payment_intents/search" {
					writeJSON(w, http.StatusOK, map[string]any{"object": "search_result", "has_more": false, "data": []any{map[string]any{
						"id": "pi_1", "object": "payment_intent", "amount": 500, "currency": "usd",
						"status": "requires_action", "metadata": map[string]string{"out_trade_no": "racy"},
					}}})
					return
				}
				f.srv.Config.Handler.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			c := newChannel(t, srv.URL, 0)
			id := create(t, c, "racy", usd(500))
			f.setIntent(id, map[string]any{"status": tt.status})
			if err := c.ClosePayment(context.Background(), "racy"); !errors.Is(err, tt.want) && err != tt.want {
				t.Errorf("ClosePayment = %v, want %v", err, tt.want)
			}
		})
	}
}

// A Stripe that does not answer in time: the call may have taken effect.
func TestTimeoutIsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server does not notice the client giving up on a request whose body it has
		// not read, so the handler waits for the test to end instead.
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first
	c := newChannel(t, srv.URL, 50*time.Millisecond)
	start := time.Now()
	_, err := c.CreatePayment(context.Background(), ordercore.PaymentRequest{OutTradeNo: "slow", Amount: usd(500)})
	if !errors.Is(err, ordercore.ErrOutcomeUnknown) {
		t.Errorf("CreatePayment = %v, want ErrOutcomeUnknown", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("CreatePayment took %v despite a 50ms timeout", d)
	}
	if _, err := c.QueryPayment(context.Background(), "slow"); !errors.Is(err, ordercore.ErrOutcomeUnknown) {
		t.Errorf("QueryPayment = %v, want ErrOutcomeUnknown", err)
	}
}

// Answers that do not settle the call's outcome, and definite refusals.
func TestErrorAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		body        string
		wantUnknown bool
		wantCode    string // of the *ChannelError, when not unknown
	}{
		{"server error", 500, `{"error":{"type":"api_error","message":"Something went wrong"}}`, true, ""},
		{"rate limited", 429, `{"error":{"type":"invalid_request_error","code":"rate_limit","message":"Too many requests"}}`, true, ""},
		{"same key in flight", 409, `{"error":{"type":"idempotency_error","code":"idempotency_key_in_use","message":"There is currently another in-progress request using this Idempotent Key"}}`, true, ""},
		{"card declined 400", 400, `{"error":{"type":"card_error","code":"card_declined","decline_code":"generic_decline","message":"Your card was declined."}}`, false, "card_declined"},
		{"card declined 402", 402, `{"error":{"type":"card_error","code":"card_declined","message":"Your card was declined."}}`, false, "card_declined"},
		{"key reused with other params", 400, `{"error":{"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters they were first used with."}}`, false, "idempotency_error"},
		{"bad key", 401, `{"error":{"type":"invalid_request_error","message":"Invalid API Key provided: sk_test_****"}}`, false, "invalid_request_error"},
		{"unreadable 400", 400, `<html>bad request</html>`, false, "http_400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeRaw(w, tt.status, tt.body)
			}))
			t.Cleanup(srv.Close)
			c := newChannel(t, srv.URL, 0)
			_, err := c.CreatePayment(context.Background(), ordercore.PaymentRequest{OutTradeNo: "p", Amount: usd(500)})
			if got := errors.Is(err, ordercore.ErrOutcomeUnknown); got != tt.wantUnknown {
				t.Fatalf("err = %v; outcome unknown = %t, want %t", err, got, tt.wantUnknown)
			}
			if tt.wantUnknown {
				return
			}
			var ce *ordercore.ChannelError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want a *ChannelError", err, err)
			}
			if ce.Channel != "stripe" || ce.Code != tt.wantCode {
				t.Errorf("ChannelError = %+v, want channel stripe code %s", ce, tt.wantCode)
			}
		})
	}
}

// A 2xx whose body cannot be read: Stripe may have created the intent; only a query knows.
func TestUnreadableSuccessIsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, http.StatusOK, `{"id": "pi_1", "client_secret"`)
	}))
	t.Cleanup(srv.Close)
	c := newChannel(t, srv.URL, 0)
	_, err := c.CreatePayment(context.Background(), ordercore.PaymentRequest{OutTradeNo: "p", Amount: usd(500)})
	if !errors.Is(err, ordercore.ErrOutcomeUnknown) {
		t.Errorf("err = %v, want ErrOutcomeUnknown", err)
	}
}

func TestRefund(t *testing.T) {
	t.Parallel()
	c, f := setup(t)
	id := create(t, c, "pay", usd(1000))
	f.setIntent(id, map[string]any{"status": "succeeded", "amount_received": 1000})
	req := ordercore.RefundRequest{OutTradeNo: "pay", OutRefundNo: "ref-1", Amount: usd(400), Total: usd(1000), Reason: "damaged"}
	got, err := c.Refund(context.Background(), req)
	if err != nil {
		t.Fatalf("Refund: %v", err)
	}
	want := ordercore.ChannelRefund{OutTradeNo: "pay", OutRefundNo: "ref-1", RefundID: "re_2", Status: ordercore.RefundSucceeded, Amount: usd(400)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Refund (-want +got):\n%s", diff)
	}
	calls := f.calls(http.MethodPost, "/v1/refunds")
	if len(calls) != 1 {
		t.Fatalf("%d refund calls, want 1", len(calls))
	}
	wantForm := url.Values{
		"payment_intent":          {id},
		"amount":                  {"400"},
		"metadata[out_refund_no]": {"ref-1"},
		"metadata[out_trade_no]":  {"pay"},
		"metadata[reason]":        {"damaged"},
	}
	if diff := cmp.Diff(wantForm, calls[0].Form); diff != "" {
		t.Errorf("form (-want +got):\n%s", diff)
	}
	if calls[0].IdempotencyKey != "ref-1" {
		t.Errorf("Idempotency-Key = %q, want the OutRefundNo ref-1", calls[0].IdempotencyKey)
	}

	// The same OutRefundNo is the same refund, even once Stripe has forgotten the key.
	again, err := c.Refund(context.Background(), req)
	if err != nil {
		t.Fatalf("Refund again: %v", err)
	}
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("repeated Refund (-want +got):\n%s", diff)
	}
	if n := len(f.calls(http.MethodPost, "/v1/refunds")); n != 1 {
		t.Errorf("%d refund calls after the repeat, want 1", n)
	}

	q, err := c.QueryRefund(context.Background(), "pay", "ref-1")
	if err != nil {
		t.Fatalf("QueryRefund: %v", err)
	}
	if diff := cmp.Diff(want, q); diff != "" {
		t.Errorf("QueryRefund (-want +got):\n%s", diff)
	}
	if _, err := c.QueryRefund(context.Background(), "pay", "ref-unknown"); !errors.Is(err, ordercore.ErrTradeNotFound) {
		t.Errorf("QueryRefund(unknown) = %v, want ErrTradeNotFound", err)
	}
}

func TestRefundRefusals(t *testing.T) {
	t.Parallel()
	c, f := setup(t)
	create(t, c, "unpaid", usd(1000))
	_, err := c.Refund(context.Background(), ordercore.RefundRequest{OutTradeNo: "unpaid", OutRefundNo: "r1", Amount: usd(100)})
	var ce *ordercore.ChannelError
	if !errors.As(err, &ce) {
		t.Errorf("refund of an unpaid trade = %v, want a *ChannelError", err)
	}
	_, err = c.Refund(context.Background(), ordercore.RefundRequest{OutTradeNo: "unpaid", OutRefundNo: "r2", Amount: ordercore.Money{Amount: 100, Currency: "EUR"}})
	if err == nil {
		t.Errorf("refund in another currency than the payment succeeded")
	}
	if n := len(f.calls(http.MethodPost, "/v1/refunds")); n != 1 {
		t.Errorf("%d refund calls, want 1: a currency mismatch must not reach Stripe", n)
	}
	_, err = c.Refund(context.Background(), ordercore.RefundRequest{OutTradeNo: "nope", OutRefundNo: "r3", Amount: usd(100)})
	if !errors.Is(err, ordercore.ErrTradeNotFound) {
		t.Errorf("refund of an unknown trade = %v, want ErrTradeNotFound", err)
	}
}

func TestQueryRefundMapsStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stripeStatus string
		want         ordercore.RefundStatus
	}{
		{"pending", ordercore.RefundPending},
		{"requires_action", ordercore.RefundPending},
		{"succeeded", ordercore.RefundSucceeded},
		{"failed", ordercore.RefundFailed},
		{"canceled", ordercore.RefundFailed},
	}
	c, f := setup(t)
	id := create(t, c, "pay", usd(1000))
	f.setIntent(id, map[string]any{"status": "succeeded", "amount_received": 1000})
	for _, tt := range tests {
		t.Run(tt.stripeStatus, func(t *testing.T) {
			no := "ref-" + tt.stripeStatus
			r, err := c.Refund(context.Background(), ordercore.RefundRequest{OutTradeNo: "pay", OutRefundNo: no, Amount: usd(100)})
			if err != nil {
				t.Fatalf("Refund: %v", err)
			}
			f.setRefundStatus(r.RefundID, tt.stripeStatus)
			got, err := c.QueryRefund(context.Background(), "pay", no)
			if err != nil {
				t.Fatalf("QueryRefund: %v", err)
			}
			if got.Status != tt.want {
				t.Errorf("status = %s, want %s", got.Status, tt.want)
			}
		})
	}
}

// The refund sought may be on a later page of the intent's refunds.
func TestQueryRefundPages(t *testing.T) {
	t.Parallel()
	c, f := setup(t)
	id := create(t, c, "pay", usd(100000))
	f.setIntent(id, map[string]any{"status": "succeeded", "amount_received": 100000})
	f.addRefund(map[string]any{
		"id": "re_first", "object": "refund", "amount": 7, "currency": "usd", "status": "pending",
		"payment_intent": id, "metadata": map[string]string{"out_refund_no": "first"},
	})
	for i := range 250 {
		f.addRefund(map[string]any{
			"id": "re_filler" + string(rune('a'+i%26)) + string(rune('a'+i/26)), "object": "refund", "amount": 1, "currency": "usd",
			"status": "succeeded", "payment_intent": id, "metadata": map[string]string{},
		})
	}
	got, err := c.QueryRefund(context.Background(), "pay", "first")
	if err != nil {
		t.Fatalf("QueryRefund: %v", err)
	}
	want := ordercore.ChannelRefund{OutTradeNo: "pay", OutRefundNo: "first", RefundID: "re_first", Status: ordercore.RefundPending, Amount: usd(7)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n := len(f.calls(http.MethodGet, "/v1/refunds")); n != 3 {
		t.Errorf("%d list calls, want 3 pages", n)
	}
}
