package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"ordercore"
	"ordercore/app"
	"ordercore/channel/sim"
	"ordercore/internal/verify"
	"ordercore/paysim"
)

// Daily statement reconciliation against a real paysim, over ordercore's real HTTP API.

type reconReq struct {
	Channel string `json:"channel"`
	Day     string `json:"day"`
}

type wireDiscrepancy struct {
	Kind      string     `json:"kind"`
	OrderID   string     `json:"order_id"`
	PaymentID string     `json:"payment_id"`
	RefundID  string     `json:"refund_id"`
	Channel   *wireMoney `json:"channel"`
	Recorded  *wireMoney `json:"recorded"`
	Detail    string     `json:"detail"`
	ReviewID  string     `json:"review_id"`
	Existing  bool       `json:"existing_review"`
	Status    string     `json:"review_status"`
}

type wireRecon struct {
	Channel       string            `json:"channel"`
	Day           string            `json:"day"`
	Rows          int               `json:"rows"`
	Payments      int               `json:"payments"`
	Refunds       int               `json:"refunds"`
	Matched       int               `json:"matched"`
	Repaired      int               `json:"repaired"`
	Confirmed     int               `json:"confirmed"`
	Orphans       int               `json:"orphans"`
	Discrepancies []wireDiscrepancy `json:"discrepancies"`
	Found         int               `json:"discrepancies_found"`
	Partial       bool              `json:"partial"`
	Paid          []wireMoney       `json:"paid"`
	Refunded      []wireMoney       `json:"refunded"`
}

// reconcile runs POST /v1/reconciliations, again while paysim's statement download
// fails (503 channel_unavailable: paysim answers 500 at its error rate).
func (a *api) reconcile(t *testing.T, channel, day string) wireRecon {
	t.Helper()
	for range paysimRetries {
		r, err := a.do(http.MethodPost, "/v1/reconciliations", reconReq{Channel: channel, Day: day}, "")
		if err != nil {
			t.Fatalf("POST /v1/reconciliations %s %s: %v", channel, day, err)
		}
		if r.status == http.StatusServiceUnavailable && r.problem().Code == ordercore.EChannelUnavailable {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if r.status != http.StatusCreated {
			t.Fatalf("POST /v1/reconciliations %s %s: %s", channel, day, r)
		}
		var rep wireRecon
		if err := json.Unmarshal(r.body, &rep); err != nil {
			t.Fatalf("POST /v1/reconciliations: decode %s: %v", r, err)
		}
		return rep
	}
	t.Fatalf("POST /v1/reconciliations %s %s: the channel did not answer in %d tries", channel, day, paysimRetries)
	return wireRecon{}
}

// reconShop places an order of one unit of sku, opens a payment at the sim channel and
// pays it as the shopper on paysim's page; it returns the order, the trade and the day
// paysim dates the payment on.
func reconShop(t *testing.T, e *payEnv, sku string) (orderID, tradeNo, day string) {
	t.Helper()
	r, err := e.api.do(http.MethodPost, "/v1/orders", placeReq{UserID: "recon", Lines: []lineReq{{SKU: sku, Quantity: 1}}}, "")
	if err != nil || r.status != http.StatusCreated {
		t.Fatalf("POST /v1/orders: %v %s", err, r)
	}
	var o wireOrder
	json.Unmarshal(r.body, &o)
	r, err = e.api.do(http.MethodPost, "/v1/orders/"+o.ID+"/payments", payReq{Channel: payChannel}, "")
	if err != nil || r.status != http.StatusCreated {
		t.Fatalf("POST /v1/orders/%s/payments: %v %s", o.ID, err, r)
	}
	var p wirePayment
	json.Unmarshal(r.body, &p)
	tr, err := paysim.Pay(t.Context(), nil, e.simURL, p.ID, true)
	if err != nil || tr.Status != sim.TradeSucceeded {
		t.Fatalf("pay trade %s at paysim: %v %+v", p.ID, err, tr)
	}
	return o.ID, p.ID, tr.PaidAt.UTC().Format(time.DateOnly)
}

func (e *payEnv) orderStatus(t *testing.T, id string) string {
	t.Helper()
	var o wireOrder
	if err := e.api.getJSON("/v1/orders/"+id, &o); err != nil {
		t.Fatal(err)
	}
	return o.Status
}

func (e *payEnv) waitOrderStatus(t *testing.T, id, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.orderStatus(t, id) != want {
		if time.Now().After(deadline) {
			t.Fatalf("order %s is %s, want %s", id, e.orderStatus(t, id), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func createReconSKU(t *testing.T, e *payEnv, id string) {
	t.Helper()
	req := createSKUReq{ID: id, Name: "recon " + id, Price: wireMoney{1000, currencyUSD}, Stock: 100}
	if r, err := e.api.do(http.MethodPost, "/v1/skus", req, ""); err != nil || r.status != http.StatusCreated {
		t.Fatalf("POST /v1/skus: %v %s", err, r)
	}
}

// TestReconciliationRepairsLostNotifications: paysim drops every notification and the
// payment sync is an hour away, so ordercore never hears of the payments and the refund
// the channel made. The day's statement tells it: the orders become paid, the refund
// paid back, through the same path as a notification; a second run finds everything
// matched and repairs nothing; bad requests change nothing. On both stores.
func TestReconciliationRepairsLostNotifications(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) { testReconRepairs(t, "") })
	t.Run("PostgreSQL", func(t *testing.T) { testReconRepairs(t, pgSchemaURL(t, "recon_")) })
}

func testReconRepairs(t *testing.T, dbURL string) {
	e := startPayEnvWith(t, 1, paysim.Faults{DropRate: 1}, func(c *app.Config) {
		c.DB = dbURL
		c.PaymentSync = []time.Duration{time.Hour}
		c.RefundSync = []time.Duration{0, time.Hour} // sent at once, asked about in an hour
	})
	createReconSKU(t, e, "recon-a")
	var orders, trades []string
	var day string
	for range 3 {
		o, tr, d := reconShop(t, e, "recon-a")
		orders, trades, day = append(orders, o), append(trades, tr), d
	}
	for _, o := range orders {
		if s := e.orderStatus(t, o); s != statusPending {
			t.Fatalf("order %s is %s before reconciliation; the test needs the notification lost", o, s)
		}
	}

	rep := e.api.reconcile(t, payChannel, day)
	if !rep.Partial {
		t.Errorf("a run of today (%s) is not marked partial: %+v", day, rep)
	}
	if rep.Payments != 3 || rep.Repaired != 3 || rep.Matched != 0 || rep.Orphans != 0 || len(rep.Discrepancies) != 0 {
		t.Fatalf("first run: %+v, want 3 payment rows, 3 repaired, no discrepancy", rep)
	}
	if len(rep.Paid) != 1 || rep.Paid[0] != (wireMoney{3000, currencyUSD}) {
		t.Errorf("statement's paid totals %+v, want 30.00 USD", rep.Paid)
	}
	for _, o := range orders {
		if s := e.orderStatus(t, o); s != "paid" {
			t.Errorf("order %s is %s after reconciliation, want paid", o, s)
		}
	}
	var detail wireOrderDetail
	if err := e.api.getJSON("/v1/orders/"+orders[0], &detail); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(detail.Timeline, func(ev wireTimelineEvent) bool {
		return ev.Type == ordercore.EventPaymentSucceeded && strings.Contains(string(ev.Data), `"source":"statement"`)
	}) {
		t.Errorf("order %s's timeline has no payment.succeeded from the statement: %+v", orders[0], detail.Timeline)
	}

	again := e.api.reconcile(t, payChannel, day)
	if again.Matched != 3 || again.Repaired != 0 || len(again.Discrepancies) != 0 {
		t.Errorf("second run: %+v, want the 3 rows matched and nothing repaired", again)
	}

	// A refund the channel paid out, whose notification is lost too.
	r, err := e.api.do(http.MethodPost, "/v1/orders/"+orders[0]+"/refunds", refundReq{Amount: wireMoney{1000, currencyUSD}, Reason: "recon"}, "")
	if err != nil || r.status != http.StatusCreated {
		t.Fatalf("POST refund: %v %s", err, r)
	}
	var rf wireRefund
	json.Unmarshal(r.body, &rf)
	deadline := time.Now().Add(10 * time.Second)
	var refundDay string
	for {
		cr, err := e.ch.QueryRefund(t.Context(), trades[0], rf.ID)
		if err == nil && cr.Status == ordercore.RefundSucceeded {
			refundDay = time.Now().UTC().Format(time.DateOnly)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("paysim did not pay out refund %s: %+v %v", rf.ID, cr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := e.orderStatus(t, orders[0]); s != "refunding" {
		t.Fatalf("order %s is %s before the refund is reconciled, want refunding", orders[0], s)
	}
	rep = e.api.reconcile(t, payChannel, refundDay)
	if rep.Refunds != 1 || rep.Repaired != 1 || len(rep.Discrepancies) != 0 {
		t.Errorf("run after the refund: %+v, want the refund row repaired", rep)
	}
	e.waitOrderStatus(t, orders[0], "refunded")

	var got wireRecon
	if err := e.api.getJSON("/v1/reconciliations/"+payChannel+"/"+refundDay, &got); err != nil {
		t.Fatal(err)
	}
	if got.Repaired != rep.Repaired || got.Rows != rep.Rows || got.Day != refundDay {
		t.Errorf("GET the day's reconciliation: %+v, want the last run %+v", got, rep)
	}

	// Bad input: a clear 4xx with a stable code, nothing recorded.
	tomorrow := time.Now().UTC().AddDate(0, 0, 2).Format(time.DateOnly)
	for _, c := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"FutureDay", reconReq{Channel: payChannel, Day: tomorrow}, http.StatusUnprocessableEntity, ordercore.EINVALID},
		{"NotADate", reconReq{Channel: payChannel, Day: "2026-13-01"}, http.StatusUnprocessableEntity, ordercore.EINVALID},
		{"UnknownChannel", reconReq{Channel: "nope", Day: day}, http.StatusNotFound, ordercore.EUnknownChannel},
		{"UnknownField", map[string]string{"channel": payChannel, "day": day, "force": "yes"}, http.StatusUnprocessableEntity, ordercore.EUnknownField},
		{"TooLongAgo", reconReq{Channel: payChannel, Day: time.Now().UTC().AddDate(0, 0, -401).Format(time.DateOnly)}, http.StatusUnprocessableEntity, ordercore.EINVALID},
		{"IdempotencyKey", reconReq{Channel: payChannel, Day: day}, http.StatusBadRequest, ordercore.EInvalidIdemKey},
	} {
		key := ""
		if c.name == "IdempotencyKey" {
			key = "k1" // refused: a retry runs the day again, it is not replayed
		}
		r, err := e.api.do(http.MethodPost, "/v1/reconciliations", c.body, key)
		if err != nil || r.status != c.status || r.problem().Code != c.code {
			t.Errorf("%s: %v %s, want %d %s", c.name, err, r, c.status, c.code)
		}
	}
	// The oldest day that may be reconciled: 400 days before today.
	if rep := e.api.reconcile(t, payChannel, time.Now().UTC().AddDate(0, 0, -400).Format(time.DateOnly)); rep.Rows != 0 {
		t.Errorf("a day 400 days back: %+v", rep)
	}
	for path, want := range map[string]string{
		"/v1/reconciliations/" + payChannel + "/" + tomorrow: ordercore.ENOTFOUND,
		"/v1/reconciliations/" + payChannel + "/2026-13-01":  ordercore.EINVALID,
		"/v1/reconciliations/nope/" + day:                    ordercore.EUnknownChannel,
	} {
		if r, _ := e.api.do(http.MethodGet, path, nil, ""); r.problem().Code != want {
			t.Errorf("GET %s: %s, want %s", path, r, want)
		}
	}

	// ordercore verify on what the server leaves behind.
	if err := e.stopApp(); err != nil {
		t.Fatal(err)
	}
	db, _, err := app.OpenStore(t.Context(), dbURL, e.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	snap, err := db.Dump(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if vs := verify.Check(snap, time.Now().UTC()); len(vs) > 0 {
		var b strings.Builder
		verify.Report(&b, vs, snap)
		t.Errorf("ordercore verify: %d violations:\n%s", len(vs), b.String())
	}
}

// doctoredChannel is the sim adapter with its statement and queries changed by the test:
// paysim cannot be made to report an amount other than it took, or to lose a payment, so
// these disagreements between channel and ordercore are made here.
type doctoredChannel struct {
	*sim.Channel
	mu      sync.Mutex
	edit    func([]ordercore.StatementRow) []ordercore.StatementRow
	pending map[string]bool // trades whose query answers pending
}

func (c *doctoredChannel) DailyStatement(ctx context.Context, day time.Time) (ordercore.Statement, error) {
	st, err := c.Channel.DailyStatement(ctx, day)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && c.edit != nil {
		st.Rows = c.edit(st.Rows)
	}
	return st, err
}

func (c *doctoredChannel) QueryPayment(ctx context.Context, outTradeNo string) (ordercore.ChannelPayment, error) {
	cp, err := c.Channel.QueryPayment(ctx, outTradeNo)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && c.pending[outTradeNo] {
		cp.Status = ordercore.PaymentPending
	}
	return cp, err
}

// TestReconciliationReportsWhatItCannotRepair: a statement whose amount differs from
// what ordercore recorded, a payment ordercore recorded that the channel neither lists
// nor confirms, and money on a trade ordercore does not know each open one review item;
// a second run reports them again under the same items; a discrepancy cannot be
// "retried", only dismissed once settled.
func TestReconciliationReportsWhatItCannotRepair(t *testing.T) {
	dc := &doctoredChannel{pending: map[string]bool{}}
	e := startPayEnvWith(t, 2, paysim.Faults{}, func(c *app.Config) {
		dc.Channel = c.Channels[0].(*sim.Channel)
		c.Channels = []ordercore.Channel{dc}
	})
	createReconSKU(t, e, "recon-b")
	var orders, trades []string
	var day string
	for range 3 {
		o, tr, d := reconShop(t, e, "recon-b")
		orders, trades, day = append(orders, o), append(trades, tr), d
	}
	for _, o := range orders {
		e.waitOrderStatus(t, o, "paid") // notified
	}
	const stranger = "trade-ordercore-never-opened"
	dc.mu.Lock()
	dc.pending[trades[1]] = true
	dc.edit = func(rows []ordercore.StatementRow) []ordercore.StatementRow {
		var out []ordercore.StatementRow
		for _, r := range rows {
			switch r.OutTradeNo {
			case trades[0]:
				r.Amount.Amount += 1 // the channel says it took a cent more
			case trades[1]:
				continue // the channel lists nothing of it
			}
			out = append(out, r)
		}
		if len(out) > 0 {
			out = append(out, ordercore.StatementRow{Type: ordercore.StatementPayment, OutTradeNo: stranger, TxnID: "txn-stranger",
				Amount: ordercore.Money{Amount: 500, Currency: currencyUSD}, Time: out[0].Time},
				// a refund made at the channel's portal, on a trade ordercore knows
				ordercore.StatementRow{Type: ordercore.StatementRefund, OutTradeNo: trades[2], OutRefundNo: "refund-made-at-portal",
					Amount: ordercore.Money{Amount: 100, Currency: currencyUSD}, Time: out[0].Time})
		}
		return out
	}
	dc.mu.Unlock()

	rep := e.api.reconcile(t, payChannel, day)
	kinds := map[string]wireDiscrepancy{}
	for _, d := range rep.Discrepancies {
		kinds[d.Kind] = d
	}
	amount, missing := kinds[ordercore.ReviewReconAmount], kinds[ordercore.ReviewReconMissing]
	if len(rep.Discrepancies) != 2 || amount.PaymentID != trades[0] || missing.PaymentID != trades[1] ||
		rep.Matched != 1 || rep.Orphans != 2 || rep.Repaired != 0 || rep.Refunds != 1 {
		t.Fatalf("run: %+v, want an amount mismatch on %s, %s missing at the channel, two orphans (a trade and a refund), one matched", rep, trades[0], trades[1])
	}
	if amount.Channel == nil || amount.Channel.Amount != 1001 || amount.Recorded == nil || amount.Recorded.Amount != 1000 ||
		amount.OrderID != orders[0] || amount.ReviewID == "" || missing.ReviewID == "" || missing.Existing {
		t.Errorf("discrepancies %+v", rep.Discrepancies)
	}
	open, err := e.api.openReviews()
	if err != nil {
		t.Fatal(err)
	}
	countKinds := func(items []wireReviewItem) map[string]int {
		n := map[string]int{}
		for _, it := range items {
			n[it.Kind]++
		}
		return n
	}
	want := map[string]int{ordercore.ReviewReconAmount: 1, ordercore.ReviewReconMissing: 1, ordercore.ReviewOrphan: 2}
	if got := countKinds(open); !mapsEqual(got, want) {
		t.Errorf("open review items by kind %v, want %v", got, want)
	}
	if !slices.ContainsFunc(open, func(it wireReviewItem) bool {
		return it.Kind == ordercore.ReviewOrphan && it.RefundID == "refund-made-at-portal" && it.PaymentID == trades[2] && it.OrderID == orders[2]
	}) {
		t.Errorf("no orphan item names the portal refund with its trade %s and order %s: %+v", trades[2], orders[2], open)
	}

	again := e.api.reconcile(t, payChannel, day)
	if len(again.Discrepancies) != 2 || again.Found != 2 || again.Orphans != 2 {
		t.Fatalf("second run: %+v", again)
	}
	for _, d := range again.Discrepancies {
		if d.ReviewID != kinds[d.Kind].ReviewID || !d.Existing || d.Status != "open" {
			t.Errorf("second run's %s: review %s (existing %v), want the first run's %s", d.Kind, d.ReviewID, d.Existing, kinds[d.Kind].ReviewID)
		}
	}
	open2, err := e.api.openReviews()
	if err != nil {
		t.Fatal(err)
	}
	if got := countKinds(open2); !mapsEqual(got, want) {
		t.Errorf("after a second run, open review items by kind %v, want still %v", got, want)
	}

	path := "/v1/review-items/" + amount.ReviewID + "/resolve"
	r, err := e.api.do(http.MethodPost, path, map[string]string{"action": "retry", "note": "ask again", "by": "ops"}, "")
	if err != nil || r.status != http.StatusConflict || r.problem().Code != ordercore.ECONFLICT {
		t.Errorf("retry a discrepancy: %v %s, want 409 conflict", err, r)
	}
	r, err = e.api.do(http.MethodPost, path, map[string]string{"action": "dismiss", "note": "channel corrected its bill", "by": "ops"}, "")
	if err != nil || r.status != http.StatusOK {
		t.Errorf("dismiss a discrepancy: %v %s", err, r)
	}
	if s := e.orderStatus(t, orders[0]); s != "paid" {
		t.Errorf("order %s is %s after its discrepancy was reported and dismissed, want paid (reconciliation changes no money it cannot prove)", orders[0], s)
	}
	// Settled and dismissed, the difference is still on the channel's statement: a third
	// run reports it under the resolved item and opens no new one.
	third := e.api.reconcile(t, payChannel, day)
	for _, d := range third.Discrepancies {
		if d.Kind == ordercore.ReviewReconAmount && (d.ReviewID != amount.ReviewID || d.Status != "resolved") {
			t.Errorf("third run's amount mismatch: review %s (%s), want the dismissed %s", d.ReviewID, d.Status, amount.ReviewID)
		}
	}
	open3, err := e.api.openReviews()
	if err != nil {
		t.Fatal(err)
	}
	want[ordercore.ReviewReconAmount] = 0
	delete(want, ordercore.ReviewReconAmount)
	if got := countKinds(open3); !mapsEqual(got, want) {
		t.Errorf("after a run following a dismissal, open review items by kind %v, want %v", got, want)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
