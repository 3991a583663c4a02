package httpapi_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
	"ordercore/channel/sim"
	"ordercore/httpapi"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
	"ordercore/paysim"
	"ordercore/sqlite"
)

// The merchant ordercore is at the simulator, and a second one whose notifications must
// never be applied to the first one's trades.
const (
	simMerchant   = "m1"
	simAPIKey     = "key-m1"
	simSecret     = "whsec-m1"
	otherMerchant = "m2"
	otherAPIKey   = "key-m2"
	otherSecret   = "whsec-m2"
)

// payBundle is the real API with the real engine and SQLite store, and the real channel/sim
// adapter talking to a real paysim over HTTP; paysim delivers its notifications to the
// API's notify route, and the payment sync runs in the background.
type payBundle struct {
	*bundle
	ps    *paysim.Server
	psURL string
	ch    *sim.Channel
	pay   *engine.Payments
}

// refundSync sends a refund at once and then queries it often, so that a refund whose
// notification is late still settles within a test's patience.
var refundSync = []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
	400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond}

func setupPay(t *testing.T, faults paysim.Faults) *payBundle {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ordercore.db")
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(db, ordercore.SystemClock{}, engine.Config{RefundSync: refundSync})
	t.Cleanup(func() { eng.Close(); db.Close() })

	ps, err := paysim.New(paysim.Config{
		Merchants: map[string]paysim.Merchant{
			simMerchant:   {APIKey: simAPIKey, Secret: simSecret},
			otherMerchant: {APIKey: otherAPIKey, Secret: otherSecret},
		},
		Seed:      1,
		Faults:    faults,
		TimeScale: 0.001, // refunds settle after 2 ms, retries come after 15 ms
	})
	if err != nil {
		t.Fatal(err)
	}
	psTS := httptest.NewServer(ps)
	t.Cleanup(psTS.Close)
	ch, err := sim.New(sim.Config{BaseURL: psTS.URL, MerchantID: simMerchant, APIKey: simAPIKey, Secrets: []string{simSecret}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// A second channel (another merchant at the same simulator) so that an idempotent
	// retry can name a different, configured channel.
	ch2, err := sim.New(sim.Config{Name: "sim2", BaseURL: psTS.URL, MerchantID: otherMerchant, APIKey: otherAPIKey, Secrets: []string{otherSecret}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pay := &engine.Payments{Engine: eng, Reader: db, Clock: ordercore.SystemClock{},
		Channels: map[string]ordercore.Channel{"sim": ch, "sim2": ch2}, Interval: 20 * time.Millisecond}
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Engine: eng, Reader: db, Clock: ordercore.SystemClock{}, Payments: pay, ManualPayments: true}))
	t.Cleanup(srv.Close)
	pay.NotifyURL = func(channel string) string { return srv.URL + "/v1/channels/" + channel + "/notify" }

	ps.Start()
	t.Cleanup(func() { ps.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { pay.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	b := &payBundle{bundle: &bundle{url: srv.URL, path: path, db: db, eng: eng}, ps: ps, psURL: psTS.URL, ch: ch, pay: pay}
	b.mustSKU(t, "a", "USD", 100)
	return b
}

// waitFor polls cond until it holds, failing the test after 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *payBundle) order(t *testing.T, id string) httpapi.OrderDetail {
	t.Helper()
	r := b.do(t, "GET", "/v1/orders/"+id, "")
	if r.status != http.StatusOK {
		t.Fatalf("get order %s: %d %s", id, r.status, r.body)
	}
	var d httpapi.OrderDetail
	r.json(t, &d)
	return d
}

func (b *payBundle) money(t *testing.T, orderID string) httpapi.OrderMoney {
	t.Helper()
	r := b.do(t, "GET", "/v1/orders/"+orderID+"/payments", "")
	if r.status != http.StatusOK {
		t.Fatalf("get payments of %s: %d %s", orderID, r.status, r.body)
	}
	var m httpapi.OrderMoney
	r.json(t, &m)
	return m
}

func (b *payBundle) waitStatus(t *testing.T, orderID string, want ordercore.OrderStatus) httpapi.OrderDetail {
	t.Helper()
	var d httpapi.OrderDetail
	waitFor(t, fmt.Sprintf("order %s to be %s", orderID, want), func() bool {
		d = b.order(t, orderID)
		return d.Status == want
	})
	return d
}

// startPayment opens an attempt at the sim channel and expects 201.
func (b *payBundle) startPayment(t *testing.T, orderID string, headers ...string) (ordercore.Payment, response) {
	t.Helper()
	r := b.do(t, "POST", "/v1/orders/"+orderID+"/payments", `{"channel":"sim"}`, headers...)
	if r.status != http.StatusCreated {
		t.Fatalf("pay order %s: %d %s", orderID, r.status, r.body)
	}
	var p ordercore.Payment
	r.json(t, &p)
	return p, r
}

// shopperPays pays the trade at the simulator, as the shopper on the hosted page.
func (b *payBundle) shopperPays(t *testing.T, outTradeNo string) sim.Trade {
	t.Helper()
	tr, err := paysim.Pay(context.Background(), nil, b.psURL, outTradeNo, true)
	if err != nil {
		t.Fatalf("pay trade %s at paysim: %v", outTradeNo, err)
	}
	return tr
}

// paidOrder places an order of two units (2500 USD) and pays it through the simulator.
func (b *payBundle) paidOrder(t *testing.T) (ordercore.Order, ordercore.Payment) {
	t.Helper()
	o := b.mustOrder(t, orderBody)
	p, _ := b.startPayment(t, o.ID)
	b.shopperPays(t, p.ID)
	b.waitStatus(t, o.ID, ordercore.OrderPaid)
	return o, p
}

// quiesce waits until every notification paysim has made is acknowledged, so that no
// late delivery writes to the inbox while a test compares digests.
func (b *payBundle) quiesce(t *testing.T) {
	t.Helper()
	waitFor(t, "paysim's notifications to be acknowledged", func() bool {
		for _, d := range b.ps.Deliveries() {
			if !d.Acked && !d.Dropped && !d.GaveUp {
				return false
			}
		}
		return true
	})
}

// trades returns the simulator's trades of an order for merchant m1.
func (b *payBundle) trades(t *testing.T, orderID string) []sim.Trade {
	t.Helper()
	page, err := b.ch.ListTrades(context.Background(), "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []sim.Trade
	for _, tr := range page.Trades {
		if tr.OrderID == orderID {
			out = append(out, tr)
		}
	}
	return out
}

func (b *payBundle) channelCounts(t *testing.T) map[string]map[string]int64 {
	t.Helper()
	r := b.do(t, "GET", "/v1/channels", "")
	if r.status != http.StatusOK {
		t.Fatalf("list channels: %d %s", r.status, r.body)
	}
	var body struct{ Channels []httpapi.ChannelInfo }
	r.json(t, &body)
	out := map[string]map[string]int64{}
	for _, c := range body.Channels {
		out[c.Name] = c.Notifications
	}
	return out
}

// notify posts raw bytes to a channel's notify route, with the signature header when sig
// is not empty.
func (b *payBundle) notify(t testing.TB, channel string, body []byte, sig string) response {
	t.Helper()
	var headers []string
	if sig != "" {
		headers = []string{sim.HeaderSignature, sig}
	}
	return b.do(t, "POST", "/v1/channels/"+channel+"/notify", string(body), headers...)
}

// post is b.do for goroutines other than the test's: it reports instead of stopping.
func (b *bundle) post(path, body string) (response, error) {
	req, err := http.NewRequest("POST", b.url+path, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	return b.send(req)
}

func (b *bundle) send(req *http.Request) (response, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: raw}, err
}

// event returns the bytes of a simulator notification.
func event(t testing.TB, id, typ string, data any) []byte {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(sim.Event{ID: id, Type: typ, Created: time.Now().UTC(), Data: raw})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// paidTrade is the simulator's trade of p, paid with paid minor units.
func paidTrade(p ordercore.Payment, paid int64) sim.Trade {
	now := time.Now().UTC()
	return sim.Trade{MerchantID: simMerchant, OutTradeNo: p.ID, OrderID: p.OrderID, TxnID: p.TxnID, Status: sim.TradeSucceeded,
		Amount: p.Amount, PaidAmount: ordercore.Money{Amount: paid, Currency: p.Amount.Currency}, PaidAt: now,
		Refunded: ordercore.Money{Currency: p.Amount.Currency}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
}

func sign(body []byte) string { return sim.Sign(simSecret, time.Now(), body) }

func timelineTypes(d httpapi.OrderDetail) []string {
	var out []string
	for _, e := range d.Timeline {
		out = append(out, e.Type)
	}
	return out
}

func countType(d httpapi.OrderDetail, typ string) int {
	n := 0
	for _, e := range d.Timeline {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// count runs a COUNT query through a separate read-only connection.
func count(t testing.TB, path, query string, args ...any) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkProblem checks that r is a complete problem+json with status and code.
func checkProblem(t *testing.T, r response, status int, code string) {
	t.Helper()
	var p httpapi.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Errorf("got %d %q, want a %d %s problem", r.status, r.body, status, code)
		return
	}
	if r.status != status || p.Code != code {
		t.Errorf("got %d %s, want %d %s: %s", r.status, p.Code, status, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	if p.Status != r.status || p.Title == "" || !strings.HasPrefix(p.Type, "urn:ordercore:problem:") {
		t.Errorf("problem %+v is not a complete RFC 9457 object", p)
	}
}

func TestPaymentHappyPath(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})
	o := b.mustOrder(t, orderBody)
	p, r := b.startPayment(t, o.ID)
	if p.Status != ordercore.PaymentPending || p.OrderID != o.ID || p.Channel != "sim" || p.Amount != o.Amount || p.TxnID == "" {
		t.Fatalf("new attempt %+v", p)
	}
	if want := b.psURL + "/pay/" + p.ID; p.Instructions.RedirectURL != want {
		t.Errorf("redirect_url = %q, want %q", p.Instructions.RedirectURL, want)
	}
	if got := r.header.Get("Idempotent-Replayed"); got != "" {
		t.Errorf("Idempotent-Replayed = %q on a fresh attempt", got)
	}
	// The hosted page exists where the shopper is sent.
	page, err := http.Get(p.Instructions.RedirectURL)
	if err != nil {
		t.Fatal(err)
	}
	page.Body.Close()
	if page.StatusCode != http.StatusOK {
		t.Errorf("pay page answered %d", page.StatusCode)
	}
	if trs := b.trades(t, o.ID); len(trs) != 1 || trs[0].OutTradeNo != p.ID || trs[0].Status != sim.TradePending || trs[0].Amount != o.Amount {
		t.Fatalf("paysim trades of the order: %+v", trs)
	}

	tr := b.shopperPays(t, p.ID)
	if tr.Status != sim.TradeSucceeded || tr.PaidAmount != o.Amount {
		t.Fatalf("paid trade %+v", tr)
	}
	// Nothing but paysim's notification tells ordercore (the sync's first query is a minute away).
	d := b.waitStatus(t, o.ID, ordercore.OrderPaid)
	want := []string{"order.placed", "payment.started", "payment.pending", "order.paid", "payment.succeeded"}
	if diff := cmp.Diff(want, timelineTypes(d)); diff != "" {
		t.Errorf("timeline (-want +got):\n%s", diff)
	}
	if d.Version != 2 {
		t.Errorf("paid order version %d, want 2", d.Version)
	}
	m := b.money(t, o.ID)
	if len(m.Payments) != 1 || len(m.Refunds) != 0 {
		t.Fatalf("order money %+v", m)
	}
	got := m.Payments[0]
	if got.ID != p.ID || got.Status != ordercore.PaymentSucceeded || !got.Accepted || got.Captured != 2500 ||
		got.Refunding != 0 || got.Refunded != 0 || got.TxnID != p.TxnID || !got.NextSyncAt.IsZero() {
		t.Errorf("paid attempt %+v", got)
	}
	s, _ := b.db.SKU(context.Background(), "a")
	if s.Sold != 2 || s.Reserved != 0 {
		t.Errorf("sku after payment: %+v", s)
	}
	// paysim saw its notification acknowledged, so it will not retry.
	waitFor(t, "paysim to record the acknowledgement", func() bool {
		for _, dl := range b.ps.Deliveries() {
			if dl.OutTradeNo == p.ID && dl.Type == sim.EventTradeSucceeded && dl.Acked {
				return true
			}
		}
		return false
	})
	// Counted before the acknowledgement is written, and only then: the order reads paid
	// as soon as the notification's batch commits, which can be before its handler counts.
	if diff := cmp.Diff(map[string]int64{"applied": 1}, b.channelCounts(t)["sim"]); diff != "" {
		t.Errorf("sim notification counts (-want +got):\n%s", diff)
	}
	if n := count(t, b.path, "SELECT COUNT(*) FROM channel_events WHERE payment_id = ? AND outcome = 'applied'", p.ID); n != 1 {
		t.Errorf("inbox rows for the payment: %d, want 1", n)
	}
}

func TestPaymentIdempotency(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})
	o := b.mustOrder(t, orderBody)
	p1, r1 := b.startPayment(t, o.ID, "Idempotency-Key", "pay-1")
	p2, r2 := b.startPayment(t, o.ID, "Idempotency-Key", "pay-1")
	if p2.ID != p1.ID {
		t.Fatalf("retry with the same key opened attempt %s, want %s", p2.ID, p1.ID)
	}
	if r1.header.Get("Idempotent-Replayed") != "" || r2.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("Idempotent-Replayed = %q then %q, want none then true", r1.header.Get("Idempotent-Replayed"), r2.header.Get("Idempotent-Replayed"))
	}
	if p2.Status != ordercore.PaymentPending || p2.Instructions.RedirectURL != p1.Instructions.RedirectURL {
		t.Errorf("replayed attempt %+v, want the pending one with the same instructions", p2)
	}
	if trs := b.trades(t, o.ID); len(trs) != 1 || trs[0].OutTradeNo != p1.ID {
		t.Fatalf("paysim trades after a retry: %+v, want exactly one for %s", trs, p1.ID)
	}

	// The same key with another body is another request: refused, nothing changes.
	before := digest(t, b.path)
	r := b.do(t, "POST", "/v1/orders/"+o.ID+"/payments", `{"channel":"sim2"}`, "Idempotency-Key", "pay-1")
	checkProblem(t, r, http.StatusUnprocessableEntity, ordercore.EIdemKeyReused)
	if after := digest(t, b.path); after != before {
		t.Error("a reused Idempotency-Key changed the database")
	}
	if trs := b.trades(t, o.ID); len(trs) != 1 {
		t.Errorf("paysim trades after a reused key: %+v", trs)
	}

	// A new attempt without a key while the first is pending: the first is closed at the
	// channel before the second is opened, so it can no longer be paid.
	p3, r3 := b.startPayment(t, o.ID)
	if p3.ID == p1.ID || p3.Status != ordercore.PaymentPending || r3.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("second attempt %+v", p3)
	}
	cp, err := b.ch.QueryPayment(context.Background(), p1.ID)
	if err != nil || cp.Status != ordercore.PaymentClosed {
		t.Errorf("first trade at paysim: %+v %v, want closed", cp, err)
	}
	trs := b.trades(t, o.ID)
	statuses := map[string]sim.TradeStatus{}
	for _, tr := range trs {
		statuses[tr.OutTradeNo] = tr.Status
	}
	if diff := cmp.Diff(map[string]sim.TradeStatus{p1.ID: sim.TradeClosed, p3.ID: sim.TradePending}, statuses); diff != "" {
		t.Errorf("paysim trades of the order (-want +got):\n%s", diff)
	}
	if _, err := paysim.Pay(context.Background(), nil, b.psURL, p1.ID, true); err == nil {
		t.Error("the closed first trade could still be paid")
	}
	m := b.money(t, o.ID)
	got := map[string]ordercore.PaymentStatus{}
	for _, p := range m.Payments {
		got[p.ID] = p.Status
	}
	if diff := cmp.Diff(map[string]ordercore.PaymentStatus{p1.ID: ordercore.PaymentClosed, p3.ID: ordercore.PaymentPending}, got); diff != "" {
		t.Errorf("attempts of the order (-want +got):\n%s", diff)
	}
	// A late retry of the first key returns the first attempt as it is now; it opens no
	// trade and does not disturb the second attempt.
	p4, r4 := b.startPayment(t, o.ID, "Idempotency-Key", "pay-1")
	if p4.ID != p1.ID || p4.Status != ordercore.PaymentClosed || r4.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("late retry of the first key: %+v replayed=%q, want the closed first attempt", p4, r4.header.Get("Idempotent-Replayed"))
	}
	if trs := b.trades(t, o.ID); len(trs) != 2 {
		t.Errorf("paysim has %d trades for the order after the late retry, want 2", len(trs))
	}
	// The second attempt pays the order.
	b.shopperPays(t, p3.ID)
	b.waitStatus(t, o.ID, ordercore.OrderPaid)
}

// TestNotifyBadInputChangesNothing sends every kind of unacceptable notification for a
// real pending attempt: each is refused with its 4xx problem, counted, and the database is
// unchanged.
func TestNotifyBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})
	o := b.mustOrder(t, orderBody)
	p, _ := b.startPayment(t, o.ID)

	good := event(t, "evt_bad_1", sim.EventTradeSucceeded, paidTrade(p, 2500))
	foreignTrade := paidTrade(p, 2500)
	foreignTrade.MerchantID = otherMerchant
	foreign := event(t, "evt_bad_2", sim.EventTradeSucceeded, foreignTrade)
	tampered := []byte(strings.Replace(string(good), `"amount":2500`, `"amount":25001`, 1))
	if string(tampered) == string(good) {
		t.Fatal("tampering did not change the body")
	}
	malformed := []byte(`{"id":"evt_bad_3","type":"trade.succeeded","data":`)
	unknownType := event(t, "evt_bad_4", "trade.exploded", paidTrade(p, 2500))
	noData := []byte(`{"id":"evt_bad_5","type":"trade.succeeded"}`)
	tooLarge := []byte(`{"id":"evt_bad_6","pad":"` + strings.Repeat("x", 64<<10) + `"}`)
	now := time.Now()

	tests := []struct {
		name, channel string
		body          []byte
		sig           string
		status        int
		code          string
	}{
		{"ForgedSignature", "sim", good, sim.Sign("not-the-secret", now, good), 401, ordercore.EInvalidSignature},
		{"OtherMerchantsSecret", "sim", good, sim.Sign(otherSecret, now, good), 401, ordercore.EInvalidSignature},
		{"MissingHeader", "sim", good, "", 401, ordercore.EInvalidSignature},
		{"GarbledHeader", "sim", good, "t=abc,v1=zz", 401, ordercore.EInvalidSignature},
		{"TamperedBody", "sim", tampered, sign(good), 401, ordercore.EInvalidSignature},
		{"StaleTimestamp", "sim", good, sim.Sign(simSecret, now.Add(-10*time.Minute), good), 401, ordercore.EStaleNotification},
		{"FutureTimestamp", "sim", good, sim.Sign(simSecret, now.Add(10*time.Minute), good), 401, ordercore.EStaleNotification},
		{"AnotherMerchant", "sim", foreign, sign(foreign), 403, ordercore.EMerchantMismatch},
		{"MalformedJSON", "sim", malformed, sign(malformed), 400, ordercore.EMalformedNotification},
		{"UnknownEventType", "sim", unknownType, sign(unknownType), 400, ordercore.EMalformedNotification},
		{"NoData", "sim", noData, sign(noData), 400, ordercore.EMalformedNotification},
		{"UnknownChannel", "nope", good, sign(good), 404, ordercore.EUnknownChannel},
		{"BodyTooLarge", "sim", tooLarge, sign(tooLarge), 413, ordercore.EBodyTooLarge},
	}
	before := digest(t, b.path)
	wantCounts := map[string]int64{}
	for _, tt := range tests {
		if tt.channel == "sim" {
			wantCounts[tt.code]++
		}
		t.Run(tt.name, func(t *testing.T) {
			checkProblem(t, b.notify(t, tt.channel, tt.body, tt.sig), tt.status, tt.code)
		})
	}
	if after := digest(t, b.path); after != before {
		t.Error("rejected notifications changed the database")
	}
	if d := b.order(t, o.ID); d.Status != ordercore.OrderPendingPayment {
		t.Errorf("order is %s after rejected notifications, want pending_payment", d.Status)
	}
	counts := b.channelCounts(t)
	if diff := cmp.Diff(wantCounts, counts["sim"]); diff != "" {
		t.Errorf("sim notification counts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{}, counts["sim2"]); diff != "" {
		t.Errorf("sim2 notification counts (-want +got):\n%s", diff)
	}
	// The genuine notification is then accepted: the rejections were about the bytes, not
	// the fact.
	if r := b.notify(t, "sim", good, sign(good)); r.status != http.StatusOK {
		t.Fatalf("genuine notification: %d %s", r.status, r.body)
	}
	b.waitStatus(t, o.ID, ordercore.OrderPaid)
}

// TestNotifyDuplicates delivers one notification several times, one after the other and
// all at once: every delivery is acknowledged, and the fact is applied once.
func TestNotifyDuplicates(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})

	o1 := b.mustOrder(t, orderBody)
	p1, _ := b.startPayment(t, o1.ID)
	body1 := event(t, "evt_dup_seq", sim.EventTradeSucceeded, paidTrade(p1, 2500))
	for i := range 2 {
		if r := b.notify(t, "sim", body1, sign(body1)); r.status != http.StatusOK {
			t.Fatalf("delivery #%d: %d %s", i+1, r.status, r.body)
		}
	}

	o2 := b.mustOrder(t, orderBody)
	p2, _ := b.startPayment(t, o2.ID)
	body2 := event(t, "evt_dup_conc", sim.EventTradeSucceeded, paidTrade(p2, 2500))
	const n = 8
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", b.url+"/v1/channels/sim/notify", strings.NewReader(string(body2)))
			req.Header.Set(sim.HeaderSignature, sign(body2))
			r, err := b.send(req)
			if err != nil {
				t.Errorf("concurrent delivery: %v", err)
			}
			statuses[i] = r.status
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("concurrent delivery #%d answered %d, want 200", i+1, s)
		}
	}

	for _, c := range []struct {
		order, event string
	}{{o1.ID, "evt_dup_seq"}, {o2.ID, "evt_dup_conc"}} {
		d := b.order(t, c.order)
		if d.Status != ordercore.OrderPaid || countType(d, "order.paid") != 1 || countType(d, "payment.succeeded") != 1 {
			t.Errorf("order %s after duplicates: %s, timeline %v; want paid once", c.order, d.Status, timelineTypes(d))
		}
		if got := count(t, b.path, "SELECT COUNT(*) FROM channel_events WHERE channel = 'sim' AND event_id = ?", c.event); got != 1 {
			t.Errorf("inbox rows for %s: %d, want 1", c.event, got)
		}
		m := b.money(t, c.order)
		if len(m.Payments) != 1 || m.Payments[0].Captured != 2500 || len(m.Refunds) != 0 {
			t.Errorf("money of order %s after duplicates: %+v", c.order, m)
		}
	}
	if n := count(t, b.path, "SELECT COUNT(*) FROM money_ledger WHERE movement = 'capture'"); n != 2 {
		t.Errorf("captures in the money ledger: %d, want 2", n)
	}
	if diff := cmp.Diff(map[string]int64{"applied": 2, "duplicate_event": 1 + n - 1}, b.channelCounts(t)["sim"]); diff != "" {
		t.Errorf("sim notification counts (-want +got):\n%s", diff)
	}

	// Another event telling the same fact (the payment succeeded) is acknowledged and
	// changes nothing but the inbox.
	before := b.order(t, o1.ID)
	beforeMoney := b.money(t, o1.ID)
	events := count(t, b.path, "SELECT COUNT(*) FROM events")
	again := event(t, "evt_dup_other", sim.EventTradeSucceeded, paidTrade(p1, 2500))
	if r := b.notify(t, "sim", again, sign(again)); r.status != http.StatusOK {
		t.Fatalf("same fact, other event: %d %s", r.status, r.body)
	}
	if diff := cmp.Diff(before, b.order(t, o1.ID)); diff != "" {
		t.Errorf("order changed by a stale notification (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(beforeMoney, b.money(t, o1.ID)); diff != "" {
		t.Errorf("payment changed by a stale notification (-before +after):\n%s", diff)
	}
	if got := count(t, b.path, "SELECT COUNT(*) FROM events"); got != events {
		t.Errorf("a stale notification appended %d events", got-events)
	}
	if got := count(t, b.path, "SELECT COUNT(*) FROM channel_events WHERE event_id = 'evt_dup_other' AND outcome = 'stale'"); got != 1 {
		t.Errorf("inbox rows for the stale event: %d, want 1 recorded stale", got)
	}
	if got := b.channelCounts(t)["sim"]["stale"]; got != 1 {
		t.Errorf("stale count %d, want 1", got)
	}
}

// TestNotifyDuplicatesFromPaysim lets the simulator itself send every notification twice,
// half the time at the same moment.
func TestNotifyDuplicatesFromPaysim(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{DupRate: 1})
	var orders []ordercore.Order
	var payments []ordercore.Payment
	for range 3 {
		o := b.mustOrder(t, orderBody)
		p, _ := b.startPayment(t, o.ID)
		b.shopperPays(t, p.ID)
		orders, payments = append(orders, o), append(payments, p)
	}
	for i, o := range orders {
		b.waitStatus(t, o.ID, ordercore.OrderPaid)
		p := payments[i]
		waitFor(t, "both copies to be acknowledged", func() bool {
			acked := 0
			for _, d := range b.ps.Deliveries() {
				if d.OutTradeNo == p.ID && d.Acked {
					acked++
				}
			}
			return acked == 2
		})
		d := b.order(t, o.ID)
		if countType(d, "order.paid") != 1 || countType(d, "payment.succeeded") != 1 {
			t.Errorf("order %s timeline %v, want one order.paid and one payment.succeeded", o.ID, timelineTypes(d))
		}
		if n := count(t, b.path, "SELECT COUNT(*) FROM channel_events WHERE payment_id = ?", p.ID); n != 1 {
			t.Errorf("inbox rows for payment %s: %d, want 1", p.ID, n)
		}
	}
	if diff := cmp.Diff(map[string]int64{"applied": 3, "duplicate_event": 3}, b.channelCounts(t)["sim"]); diff != "" {
		t.Errorf("sim notification counts (-want +got):\n%s", diff)
	}
}

func TestNotifyOrphan(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})
	var ids []string
	for i := range 3 {
		no := fmt.Sprintf("unknown-trade-%d", i)
		tr := paidTrade(ordercore.Payment{ID: no, OrderID: "order-elsewhere", TxnID: "txn_x", Amount: ordercore.Money{Amount: 999, Currency: "USD"}}, 999)
		body := event(t, "evt_orphan_"+no, sim.EventTradeSucceeded, tr)
		r := b.notify(t, "sim", body, sign(body))
		if r.status != http.StatusOK {
			t.Fatalf("orphan notification: %d %s, want 200 (acknowledged)", r.status, r.body)
		}
		ids = append(ids, no)
	}
	if diff := cmp.Diff(map[string]int64{"orphan": 3}, b.channelCounts(t)["sim"]); diff != "" {
		t.Errorf("sim notification counts (-want +got):\n%s", diff)
	}
	if n := count(t, b.path, "SELECT COUNT(*) FROM channel_events WHERE outcome = 'orphan'"); n != 3 {
		t.Errorf("orphan inbox rows: %d, want 3", n)
	}
	if n := count(t, b.path, "SELECT COUNT(*) FROM payments"); n != 0 {
		t.Errorf("an orphan notification created %d payments", n)
	}

	r := b.do(t, "GET", "/v1/review-items?status=open", "")
	var list struct {
		Items      []ordercore.ReviewItem `json:"items"`
		NextCursor string                 `json:"next_cursor"`
	}
	r.json(t, &list)
	if r.status != http.StatusOK || len(list.Items) != 3 || list.NextCursor != "" {
		t.Fatalf("open review items: %d %s", r.status, r.body)
	}
	var got []string
	for _, it := range list.Items {
		if it.Kind != ordercore.ReviewOrphan || it.Status != ordercore.ReviewOpen || it.OrderID != "" {
			t.Errorf("review item %+v, want an open orphan_notification", it)
		}
		var ev struct {
			Channel string `json:"channel"`
			EventID string `json:"event_id"`
		}
		json.Unmarshal(it.Evidence, &ev)
		if ev.Channel != "sim" || ev.EventID != "evt_orphan_"+it.PaymentID {
			t.Errorf("evidence %s of %s", it.Evidence, it.ID)
		}
		got = append(got, it.PaymentID)
	}
	want := slices.Clone(ids)
	slices.Reverse(want) // newest first
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("orphaned trade numbers, newest first (-want +got):\n%s", diff)
	}

	// One item by id.
	one := b.do(t, "GET", "/v1/review-items/"+list.Items[0].ID, "")
	var item ordercore.ReviewItem
	one.json(t, &item)
	if one.status != http.StatusOK || item.ID != list.Items[0].ID || item.Kind != ordercore.ReviewOrphan {
		t.Errorf("get review item: %d %s", one.status, one.body)
	}
	// Paging with limit=1 visits all three, newest first.
	var paged []string
	cursor := ""
	for range 5 {
		r := b.do(t, "GET", "/v1/review-items?limit=1&cursor="+cursor, "")
		var page struct {
			Items      []ordercore.ReviewItem `json:"items"`
			NextCursor string                 `json:"next_cursor"`
		}
		r.json(t, &page)
		for _, it := range page.Items {
			paged = append(paged, it.PaymentID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if diff := cmp.Diff(want, paged); diff != "" {
		t.Errorf("paged review items (-want +got):\n%s", diff)
	}
	if r := b.do(t, "GET", "/v1/review-items?status=resolved", ""); r.status != http.StatusOK || strings.Contains(string(r.body), "orphan") {
		t.Errorf("resolved review items: %d %s, want none", r.status, r.body)
	}
	for _, tt := range []struct {
		path   string
		status int
		code   string
	}{
		{"/v1/review-items?cursor=zzz", 400, ordercore.EInvalidCursor},
		{"/v1/review-items?status=closed", 422, ordercore.EINVALID},
		{"/v1/review-items?limit=0", 422, ordercore.EINVALID},
		{"/v1/review-items/01890000-0000-7000-8000-000000000000", 404, ordercore.ENOTFOUND},
		{"/v1/review-items/not-an-id", 404, ordercore.ENOTFOUND},
	} {
		checkProblem(t, b.do(t, "GET", tt.path, ""), tt.status, tt.code)
	}
}

func TestRefunds(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})
	o, p := b.paidOrder(t)

	r := b.do(t, "POST", "/v1/orders/"+o.ID+"/refunds", `{"amount":{"amount":1000,"currency":"USD"},"reason":"one mug broke"}`, "Idempotency-Key", "refund-1")
	if r.status != http.StatusCreated {
		t.Fatalf("partial refund: %d %s", r.status, r.body)
	}
	var rf1 ordercore.Refund
	r.json(t, &rf1)
	if rf1.Kind != ordercore.RefundRequested || rf1.Amount != (ordercore.Money{Amount: 1000, Currency: "USD"}) || rf1.PaymentID != p.ID || rf1.Reason != "one mug broke" {
		t.Errorf("partial refund %+v", rf1)
	}
	// A retry of the same request is the same refund.
	again := b.do(t, "POST", "/v1/orders/"+o.ID+"/refunds", `{"amount":{"amount":1000,"currency":"USD"},"reason":"one mug broke"}`, "Idempotency-Key", "refund-1")
	var rf1b ordercore.Refund
	again.json(t, &rf1b)
	if again.status != http.StatusCreated || rf1b.ID != rf1.ID || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retried refund: %d %s replayed=%q, want refund %s replayed", again.status, again.body, again.header.Get("Idempotent-Replayed"), rf1.ID)
	}
	b.waitStatus(t, o.ID, ordercore.OrderPartiallyRefunded)
	m := b.money(t, o.ID)
	if len(m.Refunds) != 1 || m.Refunds[0].Status != ordercore.RefundSucceeded || m.Payments[0].Refunded != 1000 || m.Payments[0].Refunding != 0 {
		t.Fatalf("after the partial refund: %+v", m)
	}

	r = b.do(t, "POST", "/v1/orders/"+o.ID+"/refunds", `{"amount":{"amount":1500,"currency":"USD"},"reason":"the rest"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("refund of the rest: %d %s", r.status, r.body)
	}
	d := b.waitStatus(t, o.ID, ordercore.OrderRefunded)
	m = b.money(t, o.ID)
	pay := m.Payments[0]
	if pay.Captured != 2500 || pay.Refunded != 2500 || pay.Refunding != 0 || len(m.Refunds) != 2 {
		t.Errorf("after the full refund: %+v", m)
	}
	for _, rf := range m.Refunds {
		if rf.Status != ordercore.RefundSucceeded || rf.RefundID == "" {
			t.Errorf("refund %+v, want succeeded with the channel's id", rf)
		}
	}
	if trs := b.trades(t, o.ID); len(trs) != 1 || trs[0].Refunded.Amount != 2500 {
		t.Errorf("paysim trade after refunds: %+v, want 2500 refunded", trs)
	}
	var orderMoves []string
	for _, e := range d.Timeline {
		if strings.HasPrefix(e.Type, "order.") || strings.HasPrefix(e.Type, "refund.") {
			orderMoves = append(orderMoves, e.Type)
		}
	}
	wantMoves := []string{"order.placed", "order.paid",
		"order.refunding", "refund.requested", "refund.succeeded", "order.partially_refunded",
		"order.refunding", "refund.requested", "refund.succeeded", "order.refunded"}
	if diff := cmp.Diff(wantMoves, orderMoves); diff != "" {
		t.Errorf("order and refund events (-want +got):\n%s", diff)
	}

	// Nothing remains to refund: refused, nothing changes.
	b.quiesce(t)
	before := digest(t, b.path)
	r = b.do(t, "POST", "/v1/orders/"+o.ID+"/refunds", `{"amount":{"amount":1,"currency":"USD"}}`)
	checkProblem(t, r, http.StatusUnprocessableEntity, ordercore.ERefundExceeds)
	if after := digest(t, b.path); after != before {
		t.Error("a refused refund changed the database")
	}
}

// TestRefundBadInputChangesNothing sends every kind of unacceptable refund request.
func TestRefundBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})
	paid, _ := b.paidOrder(t)
	pending := b.mustOrder(t, orderBody)
	b.startPayment(t, pending.ID)
	unpaid := b.mustOrder(t, orderBody)
	if r := b.do(t, "POST", "/v1/orders/"+paid.ID+"/refunds", `{"amount":{"amount":100,"currency":"USD"}}`, "Idempotency-Key", "refund-k"); r.status != http.StatusCreated {
		t.Fatalf("refund with a key: %d %s", r.status, r.body)
	}
	b.waitStatus(t, paid.ID, ordercore.OrderPartiallyRefunded)
	b.quiesce(t)
	refund := func(id string) string { return "/v1/orders/" + id + "/refunds" }
	tests := []struct {
		name, path, body string
		headers          []string
		status           int
		code             string
	}{
		{"Exceeds", refund(paid.ID), `{"amount":{"amount":2401,"currency":"USD"}}`, nil, 422, ordercore.ERefundExceeds},
		{"UnpaidOrder", refund(unpaid.ID), `{"amount":{"amount":100,"currency":"USD"}}`, nil, 409, ordercore.ENotPaid},
		{"PendingAttempt", refund(pending.ID), `{"amount":{"amount":100,"currency":"USD"}}`, nil, 409, ordercore.ENotPaid},
		{"CurrencyMismatch", refund(paid.ID), `{"amount":{"amount":100,"currency":"EUR"}}`, nil, 422, ordercore.ECurrencyMismatch},
		{"AmountZero", refund(paid.ID), `{"amount":{"amount":0,"currency":"USD"}}`, nil, 422, ordercore.EINVALID},
		{"AmountNegative", refund(paid.ID), `{"amount":{"amount":-5,"currency":"USD"}}`, nil, 422, ordercore.EINVALID},
		{"BadCurrency", refund(paid.ID), `{"amount":{"amount":100,"currency":"usd"}}`, nil, 422, ordercore.EInvalidCurrency},
		{"UnsupportedCurrency", refund(paid.ID), `{"amount":{"amount":100,"currency":"XXX"}}`, nil, 422, ordercore.EInvalidCurrency},
		{"NoAmount", refund(paid.ID), `{"reason":"x"}`, nil, 422, ordercore.EINVALID},
		{"UnknownField", refund(paid.ID), `{"amount":{"amount":100,"currency":"USD"},"restock":true}`, nil, 422, ordercore.EUnknownField},
		{"MalformedJSON", refund(paid.ID), `{"amount":`, nil, 400, ordercore.EMalformedJSON},
		{"ReasonTooLong", refund(paid.ID), `{"amount":{"amount":100,"currency":"USD"},"reason":"` + strings.Repeat("r", 501) + `"}`, nil, 422, ordercore.EINVALID},
		{"UnknownOrder", refund("01890000-0000-7000-8000-000000000000"), `{"amount":{"amount":100,"currency":"USD"}}`, nil, 404, ordercore.ENOTFOUND},
		{"MalformedOrderID", refund("not-an-id"), `{"amount":{"amount":100,"currency":"USD"}}`, nil, 404, ordercore.ENOTFOUND},
		{"KeyReused", refund(paid.ID), `{"amount":{"amount":200,"currency":"USD"}}`, []string{"Idempotency-Key", "refund-k"}, 422, ordercore.EIdemKeyReused},
		{"BadKey", refund(paid.ID), `{"amount":{"amount":100,"currency":"USD"}}`, []string{"Idempotency-Key", "has space"}, 400, ordercore.EInvalidIdemKey},
		{"PayUnknownChannel", "/v1/orders/" + unpaid.ID + "/payments", `{"channel":"nope"}`, nil, 404, ordercore.EUnknownChannel},
		{"PayNoChannel", "/v1/orders/" + unpaid.ID + "/payments", `{}`, nil, 422, ordercore.EINVALID},
		{"PayUnknownOrder", "/v1/orders/01890000-0000-7000-8000-000000000000/payments", `{"channel":"sim"}`, nil, 404, ordercore.ENOTFOUND},
		{"PayPaidOrder", "/v1/orders/" + paid.ID + "/payments", `{"channel":"sim"}`, nil, 409, ordercore.EIllegalTransition},
	}
	before := digest(t, b.path)
	trades := len(b.trades(t, unpaid.ID)) + len(b.trades(t, paid.ID))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkProblem(t, b.do(t, "POST", tt.path, tt.body, tt.headers...), tt.status, tt.code)
		})
	}
	if after := digest(t, b.path); after != before {
		t.Error("rejected refund and payment requests changed the database")
	}
	if got := len(b.trades(t, unpaid.ID)) + len(b.trades(t, paid.ID)); got != trades {
		t.Errorf("rejected requests opened %d trades at paysim", got-trades)
	}
	if r := b.do(t, "GET", "/v1/orders/01890000-0000-7000-8000-000000000000/payments", ""); r.status != 404 {
		t.Errorf("payments of an unknown order: %d %s", r.status, r.body)
	}
}

// TestConcurrentRefundsNeverExceedTheCapture asks for 30% ten times at once: three fit.
func TestConcurrentRefundsNeverExceedTheCapture(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})
	o, p := b.paidOrder(t)
	const n = 10
	results := make([]response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := b.post("/v1/orders/"+o.ID+"/refunds", fmt.Sprintf(`{"amount":{"amount":750,"currency":"USD"},"reason":"part %d"}`, i))
			if err != nil {
				t.Errorf("refund #%d: %v", i, err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	ok := 0
	for i, r := range results {
		switch {
		case r.status == http.StatusCreated:
			ok++
		case r.status == http.StatusUnprocessableEntity && r.code(t) == ordercore.ERefundExceeds:
		default:
			t.Errorf("refund #%d: %d %s, want 201 or 422 %s", i, r.status, r.body, ordercore.ERefundExceeds)
		}
	}
	if ok != 3 {
		t.Errorf("%d refunds of 750 accepted on a capture of 2500, want 3", ok)
	}
	waitFor(t, "the refunds to settle", func() bool {
		m := b.money(t, o.ID)
		return len(m.Payments) == 1 && m.Payments[0].Refunding == 0
	})
	d := b.waitStatus(t, o.ID, ordercore.OrderPartiallyRefunded)
	m := b.money(t, o.ID)
	pay := m.Payments[0]
	if pay.Refunded != 750*int64(ok) || pay.Refunded > pay.Captured || len(m.Refunds) != ok {
		t.Errorf("payment after concurrent refunds: %+v with %d refunds", pay, len(m.Refunds))
	}
	if trs := b.trades(t, o.ID); len(trs) != 1 || trs[0].Refunded.Amount != pay.Refunded {
		t.Errorf("paysim refunded %+v, want %d", trs, pay.Refunded)
	}
	for _, q := range []struct {
		movement string
		want     int
	}{{"capture", 2500}, {"refund_hold", 750 * ok}, {"refund_commit", 750 * ok}} {
		got := count(t, b.path, "SELECT COALESCE(SUM(amount), 0) FROM money_ledger WHERE payment_id = ? AND movement = ?", p.ID, q.movement)
		if got != q.want {
			t.Errorf("money ledger %s = %d, want %d", q.movement, got, q.want)
		}
	}
	if got := countType(d, "refund.requested"); got != ok {
		t.Errorf("%d refund.requested events, want %d", got, ok)
	}
}

// TestReviewAmountMismatch lets the simulator's shopper underpay: the money is never
// taken as payment, it is refunded, and an operator resolves the case.
func TestReviewAmountMismatch(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{UnderpayRate: 1})
	o := b.mustOrder(t, orderBody)
	p, _ := b.startPayment(t, o.ID)
	tr := b.shopperPays(t, p.ID)
	paid := tr.PaidAmount
	if paid.Amount >= o.Amount.Amount || paid.Amount <= 0 {
		t.Fatalf("underpaid trade %+v", tr)
	}
	var item ordercore.ReviewItem
	waitFor(t, "an amount_mismatch review item", func() bool {
		r := b.do(t, "GET", "/v1/review-items?status=open", "")
		var list struct{ Items []ordercore.ReviewItem }
		r.json(t, &list)
		for _, it := range list.Items {
			if it.Kind == ordercore.ReviewAmountMismatch {
				item = it
				return true
			}
		}
		return false
	})
	if item.OrderID != o.ID || item.PaymentID != p.ID || item.Status != ordercore.ReviewOpen || item.Version != 1 {
		t.Errorf("review item %+v", item)
	}
	var ev struct{ Expected, Paid ordercore.Money }
	if err := json.Unmarshal(item.Evidence, &ev); err != nil || ev.Expected != o.Amount || ev.Paid != paid {
		t.Errorf("evidence %s, want expected %v and paid %v", item.Evidence, o.Amount, paid)
	}
	// The short payment is refunded in full, automatically.
	waitFor(t, "the mismatch refund to succeed", func() bool {
		m := b.money(t, o.ID)
		return len(m.Refunds) == 1 && m.Refunds[0].Status == ordercore.RefundSucceeded
	})
	m := b.money(t, o.ID)
	rf, pay := m.Refunds[0], m.Payments[0]
	if rf.Kind != ordercore.RefundMismatch || rf.Amount != paid {
		t.Errorf("automatic refund %+v, want a mismatch refund of %v", rf, paid)
	}
	if pay.Accepted || pay.Captured != paid.Amount || pay.Refunded != paid.Amount || pay.Refunding != 0 {
		t.Errorf("underpaid attempt %+v", pay)
	}
	if trs := b.trades(t, o.ID); len(trs) != 1 || trs[0].Refunded != paid {
		t.Errorf("paysim trade %+v, want %v refunded", trs, paid)
	}
	d := b.order(t, o.ID)
	if d.Status != ordercore.OrderPendingPayment || countType(d, "order.paid") != 0 || countType(d, "payment.amount_mismatch") != 1 {
		t.Errorf("order after an underpayment: %s, timeline %v", d.Status, timelineTypes(d))
	}
	// The merchant cannot refund an order nobody paid.
	checkProblem(t, b.do(t, "POST", "/v1/orders/"+o.ID+"/refunds", `{"amount":{"amount":1,"currency":"USD"}}`), 409, ordercore.ENotPaid)

	resolve := "/v1/review-items/" + item.ID + "/resolve"
	b.quiesce(t)
	before := digest(t, b.path)
	for _, tt := range []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"BadAction", resolve, `{"action":"escalate","note":"n","by":"ops"}`, 422, ordercore.EINVALID},
		{"NoAction", resolve, `{"note":"n","by":"ops"}`, 422, ordercore.EINVALID},
		{"MissingNote", resolve, `{"action":"dismiss","by":"ops"}`, 422, ordercore.EINVALID},
		{"EmptyNote", resolve, `{"action":"dismiss","note":"","by":"ops"}`, 422, ordercore.EINVALID},
		{"MissingBy", resolve, `{"action":"dismiss","note":"n"}`, 422, ordercore.EINVALID},
		{"RetryNothingPending", resolve, `{"action":"retry","note":"try again","by":"ops"}`, 409, ordercore.ECONFLICT},
		{"UnknownItem", "/v1/review-items/01890000-0000-7000-8000-000000000000/resolve", `{"action":"dismiss","note":"n","by":"ops"}`, 404, ordercore.ENOTFOUND},
		{"MalformedJSON", resolve, `{"action":`, 400, ordercore.EMalformedJSON},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkProblem(t, b.do(t, "POST", tt.path, tt.body), tt.status, tt.code)
		})
	}
	if after := digest(t, b.path); after != before {
		t.Error("rejected resolutions changed the database")
	}

	r := b.do(t, "POST", resolve, `{"action":"dismiss","note":"short payment returned; shopper told","by":"ops-ana"}`)
	if r.status != http.StatusOK {
		t.Fatalf("resolve: %d %s", r.status, r.body)
	}
	var resolved ordercore.ReviewItem
	r.json(t, &resolved)
	if resolved.Status != ordercore.ReviewResolved || resolved.Resolution != "dismiss" || resolved.Note != "short payment returned; shopper told" ||
		resolved.ResolvedBy != "ops-ana" || resolved.ResolvedAt.IsZero() || resolved.Version != 2 {
		t.Errorf("resolved item %+v", resolved)
	}
	g := b.do(t, "GET", "/v1/review-items/"+item.ID, "")
	var stored ordercore.ReviewItem
	g.json(t, &stored)
	if diff := cmp.Diff(resolved, stored); diff != "" {
		t.Errorf("stored item differs from the answer (-answer +stored):\n%s", diff)
	}
	d = b.order(t, o.ID)
	var audit map[string]any
	for _, e := range d.Timeline {
		if e.Type == "review.resolved" {
			audit, _ = e.Data.(map[string]any)
		}
	}
	if audit == nil || audit["by"] != "ops-ana" || audit["resolution"] != "dismiss" || audit["note"] != resolved.Note {
		t.Errorf("review.resolved on the order's timeline: %v (timeline %v)", audit, timelineTypes(d))
	}
	if n := count(t, b.path, "SELECT COUNT(*) FROM events WHERE type = 'review.resolved' AND aggregate_type = 'review' AND aggregate_id = ?", item.ID); n != 1 {
		t.Errorf("review.resolved events of the item: %d, want 1", n)
	}
	if r := b.do(t, "GET", "/v1/review-items?status=open", ""); strings.Contains(string(r.body), item.ID) {
		t.Errorf("resolved item still listed open: %s", r.body)
	}
	if r := b.do(t, "GET", "/v1/review-items?status=resolved", ""); !strings.Contains(string(r.body), item.ID) {
		t.Errorf("resolved item not listed resolved: %s", r.body)
	}

	// Resolving again is refused, and changes nothing.
	before = digest(t, b.path)
	r = b.do(t, "POST", resolve, `{"action":"dismiss","note":"again","by":"ops-bo"}`)
	checkProblem(t, r, http.StatusConflict, ordercore.EReviewResolved)
	if after := digest(t, b.path); after != before {
		t.Error("resolving a resolved item changed the database")
	}
}

// TestReviewCraftedMismatch underpays with a validly signed notification instead of a
// fault: the same path, without the simulator's dice.
func TestReviewCraftedMismatch(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})
	o := b.mustOrder(t, orderBody)
	p, _ := b.startPayment(t, o.ID)
	body := event(t, "evt_short", sim.EventTradeSucceeded, paidTrade(p, 2000))
	if r := b.notify(t, "sim", body, sign(body)); r.status != http.StatusOK {
		t.Fatalf("underpaid notification: %d %s", r.status, r.body)
	}
	d := b.order(t, o.ID)
	if d.Status != ordercore.OrderPendingPayment {
		t.Errorf("order is %s after an underpayment, want pending_payment", d.Status)
	}
	m := b.money(t, o.ID)
	if len(m.Refunds) != 1 || m.Refunds[0].Kind != ordercore.RefundMismatch || m.Refunds[0].Amount.Amount != 2000 || m.Payments[0].Accepted {
		t.Errorf("money after an underpayment: %+v", m)
	}
	if n := count(t, b.path, "SELECT COUNT(*) FROM review_items WHERE kind = 'amount_mismatch' AND order_id = ? AND status = 'open'", o.ID); n != 1 {
		t.Errorf("amount_mismatch items: %d, want 1", n)
	}
}

func TestOpenAPIDocumentListsPayments(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})
	r := b.do(t, "GET", "/openapi.json", "")
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Parameters  []struct {
				Name string `json:"name"`
				In   string `json:"in"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	r.json(t, &doc)
	if r.status != http.StatusOK {
		t.Fatalf("openapi: %d", r.status)
	}
	for _, op := range []struct {
		path, method, id string
		idem             bool
	}{
		{"/v1/orders/{id}/payments", "post", "pay-order", true},
		{"/v1/orders/{id}/payments", "get", "list-order-payments", false},
		{"/v1/orders/{id}/refunds", "post", "refund-order", true},
		{"/v1/review-items", "get", "list-review-items", false},
		{"/v1/review-items/{id}", "get", "get-review-item", false},
		{"/v1/review-items/{id}/resolve", "post", "resolve-review-item", true},
		{"/v1/channels", "get", "list-channels", false},
		// Served outside huma, documented all the same.
		{"/v1/channels/{channel}/notify", "post", "channel-notify", false},
		{"/healthz", "get", "healthz", false},
		{"/v1/tcc/stock/try", "post", "tcc-stock-try", false},
		{"/api/dtmsvr/submit", "post", "dtm-submit", false},
	} {
		o, ok := doc.Paths[op.path][op.method]
		if !ok {
			t.Errorf("OpenAPI document lacks %s %s", strings.ToUpper(op.method), op.path)
			continue
		}
		if o.OperationID != op.id {
			t.Errorf("%s %s has operationId %q, want %q", op.method, op.path, o.OperationID, op.id)
		}
		hasKey := slices.ContainsFunc(o.Parameters, func(p struct {
			Name string `json:"name"`
			In   string `json:"in"`
		}) bool {
			return p.Name == "Idempotency-Key" && p.In == "header"
		})
		if hasKey != op.idem {
			t.Errorf("%s %s documents Idempotency-Key: %v, want %v", op.method, op.path, hasKey, op.idem)
		}
	}
}

// TestCancelClosesTheOpenAttempt: a shopper's cancel closes the order's open trade at the
// channel before the stock is released, so the trade can no longer be paid; a trade the
// shopper paid first pays the order, and the cancel is refused.
func TestCancelClosesTheOpenAttempt(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})
	o := b.mustOrder(t, orderBody)
	p, _ := b.startPayment(t, o.ID)
	if r := b.do(t, "POST", "/v1/orders/"+o.ID+"/cancel", ""); r.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if trs := b.trades(t, o.ID); len(trs) != 1 || trs[0].Status != sim.TradeClosed {
		t.Fatalf("trades at the channel after the cancel: %+v, want the one closed", trs)
	}
	if _, err := paysim.Pay(context.Background(), nil, b.psURL, p.ID, true); err == nil {
		t.Fatal("the shopper paid the trade of a cancelled order")
	}
	if d := b.order(t, o.ID); d.Status != ordercore.OrderCancelled {
		t.Fatalf("order %s, want cancelled", d.Status)
	}

	// Paid at the channel before the cancel, and its notification not in yet.
	o2 := b.mustOrder(t, orderBody)
	p2, _ := b.startPayment(t, o2.ID)
	b.shopperPays(t, p2.ID)
	r := b.do(t, "POST", "/v1/orders/"+o2.ID+"/cancel", "")
	if d := b.order(t, o2.ID); d.Status != ordercore.OrderPaid {
		t.Fatalf("order %s after a cancel of a paid trade, want paid (cancel answered %d %s)", d.Status, r.status, r.body)
	}
	if r.status != http.StatusConflict || r.code(t) != ordercore.EIllegalTransition {
		t.Errorf("cancel of an order paid at the channel: %d %s, want 409 %s", r.status, r.body, ordercore.EIllegalTransition)
	}
	b.quiesce(t)
}

// TestManualPaymentClosesTheOpenAttempt: an operator's record of a bank transfer closes
// the order's open trade at the channel first, so the shopper cannot pay it too; a trade
// the shopper paid first pays the order, and the manual payment is refused (the transfer
// goes back to its payer).
func TestManualPaymentClosesTheOpenAttempt(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})
	manual := `{"amount":{"amount":2500,"currency":"USD"},"reference":"bank-1"}`
	o := b.mustOrder(t, orderBody)
	p, _ := b.startPayment(t, o.ID)
	if r := b.do(t, "POST", "/v1/orders/"+o.ID+"/payments/manual", manual); r.status != http.StatusOK {
		t.Fatalf("manual payment: %d %s", r.status, r.body)
	}
	if trs := b.trades(t, o.ID); len(trs) != 1 || trs[0].Status != sim.TradeClosed {
		t.Fatalf("trades at the channel after the manual payment: %+v, want the one closed", trs)
	}
	if _, err := paysim.Pay(context.Background(), nil, b.psURL, p.ID, true); err == nil {
		t.Fatal("the shopper paid the trade of an order paid by bank transfer")
	}
	if d := b.order(t, o.ID); d.Status != ordercore.OrderPaid {
		t.Fatalf("order %s, want paid", d.Status)
	}

	o2 := b.mustOrder(t, orderBody)
	p2, _ := b.startPayment(t, o2.ID)
	b.shopperPays(t, p2.ID)
	r := b.do(t, "POST", "/v1/orders/"+o2.ID+"/payments/manual", manual)
	if r.status != http.StatusConflict || r.code(t) != ordercore.EIllegalTransition {
		t.Errorf("manual payment of an order paid at the channel: %d %s, want 409 %s", r.status, r.body, ordercore.EIllegalTransition)
	}
	if d := b.order(t, o2.ID); d.Status != ordercore.OrderPaid {
		t.Fatalf("order %s, want paid by its channel payment", d.Status)
	}
	b.quiesce(t)
}

// TestTimelineShowsTheLatestEvents: an order with more events than a timeline holds
// shows its latest ones, the last state change among them, and says it left older
// ones out.
func TestTimelineShowsTheLatestEvents(t *testing.T) {
	t.Parallel()
	b := setupPay(t, paysim.Faults{})
	o := b.mustOrder(t, orderBody)
	var last ordercore.Payment
	for range 70 { // each new attempt closes the one before: about 3 events each
		last, _ = b.startPayment(t, o.ID)
	}
	b.shopperPays(t, last.ID)
	d := b.waitStatus(t, o.ID, ordercore.OrderPaid)
	types := timelineTypes(d)
	if len(d.Timeline) != limit.TimelineEventsMax || !d.TimelineTruncated || !slices.Contains(types, "order.paid") || slices.Contains(types, "order.placed") {
		t.Fatalf("timeline of %d events (truncated %v), types ending %v; want the latest %d with order.paid, not order.placed, marked truncated",
			len(d.Timeline), d.TimelineTruncated, types[max(0, len(types)-3):], limit.TimelineEventsMax)
	}
	for i := 1; i < len(d.Timeline); i++ {
		if d.Timeline[i].Seq <= d.Timeline[i-1].Seq {
			t.Fatalf("timeline out of order at %d", i)
		}
	}
}
