package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"ordercore"
	"ordercore/app"
	"ordercore/channel/sim"
	"ordercore/paysim"
)

// The harness of the payments test: a paysim server with every fault on, an ordercore
// server whose sim channel points at it, and the wire types of the payment endpoints.

// Credentials of the one merchant.
const (
	payMerchant = "m1"
	payAPIKey   = "key-m1"
	paySecret   = "whsec-m1"
	payChannel  = "sim"
)

// Environment knobs of the payments test.
const (
	envPaySeed   = "ORDERCORE_PAYMENTS_SEED"   // seed of paysim's faults and of the workload
	envPayOrders = "ORDERCORE_PAYMENTS_ORDERS" // orders to place (default 2000; 200 with -short)
)

// Time compression. paysim multiplies its retry schedule (24h4m) and settle delays by
// payTimeScale: a notification ordercore failed to acknowledge is retried after 30 ms,
// 30 ms, 60 ms, 360 ms, 1.2 s, ... and a refund settles 4 ms after it is asked for.
// ordercore's sync schedules are compressed the same way.
const (
	payTimeScale = 0.002
	// payHang is how long paysim holds the answer of a call hit by the timeout fault;
	// payChannelTimeout, shorter, is when the sim adapter gives up on it (ErrOutcomeUnknown).
	payHang           = 600 * time.Millisecond
	payChannelTimeout = 300 * time.Millisecond
	paySyncInterval   = 100 * time.Millisecond
	// payClockSkew is how far paysim's clock runs behind ordercore's, as a channel's
	// does. ordercore closes a trade when its order expires; with the channel a little
	// behind, the trade is still open there, and the pay-after-close fault can land money
	// on an order that is already cancelled: it revives the order, or, when its scarce
	// stock has been taken since, is refunded as late.
	payClockSkew = 250 * time.Millisecond
)

var (
	paySyncSchedule    = []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}
	refundSyncSchedule = []time.Duration{0, 300 * time.Millisecond, 600 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}
)

// payFaults turns every knob of paysim on at a moderate rate.
var payFaults = paysim.Faults{
	DupRate:            0.15,
	DelayMax:           400 * time.Millisecond,
	DropRate:           0.08,
	ForgeRate:          0.04,
	TamperRate:         0.04,
	UnderpayRate:       0.03,
	TimeoutRate:        0.03,
	Hang:               payHang,
	PayAfterCloseRate:  0.25,
	DoublePayRate:      0.3,
	RefundAbnormalRate: 0.1,
	ErrorRate:          0.03,
}

// payEnv is the running pair: paysim over HTTP and ordercore over HTTP.
type payEnv struct {
	sim     *paysim.Server
	simURL  string
	ch      *sim.Channel // the adapter ordercore uses; the test reads paysim through it too
	app     *app.App
	dataDir string
	api     *api
	logs    *tailBuffer
	stopApp func() error
}

// startPayEnv starts paysim (in process, on its own loopback listener) and ordercore
// (app.Open, the code `ordercore serve` runs, on another), wired over HTTP.
func startPayEnv(t *testing.T, seed int64) *payEnv {
	t.Helper()
	return startPayEnvWith(t, seed, payFaults, nil)
}

// startPayEnvWith is startPayEnv with paysim's faults, and with edit (when not nil)
// changing ordercore's configuration before it starts (its Channels hold the sim adapter).
func startPayEnvWith(t *testing.T, seed int64, faults paysim.Faults, edit func(*app.Config)) *payEnv {
	t.Helper()
	srv, err := paysim.New(paysim.Config{
		Merchants: map[string]paysim.Merchant{payMerchant: {APIKey: payAPIKey, Secret: paySecret}},
		Seed:      seed,
		Faults:    faults,
		TimeScale: payTimeScale,
		Clock:     func() time.Time { return time.Now().Add(-payClockSkew) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	srv.Start()
	t.Cleanup(func() {
		srv.Close() // releases held answers first, so that ts.Close does not wait for them
		ts.Close()
	})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 128, IdleConnTimeout: 30 * time.Second}}
	ch, err := sim.New(sim.Config{BaseURL: ts.URL, MerchantID: payMerchant, APIKey: payAPIKey, Secrets: []string{paySecret},
		Timeout: payChannelTimeout, HTTPClient: hc, Name: payChannel})
	if err != nil {
		t.Fatal(err)
	}
	logs := &tailBuffer{max: stderrTailBytes}
	dir := t.TempDir()
	cfg := app.Config{
		Addr:         "127.0.0.1:0",
		DataDir:      dir,
		Channels:     []ordercore.Channel{ch},
		PaymentSync:  paySyncSchedule,
		RefundSync:   refundSyncSchedule,
		SyncInterval: paySyncInterval,
		Logger:       slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Version:      "e2e",
	}
	if edit != nil {
		edit(&cfg)
	}
	a, err := app.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start ordercore: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var stopped bool
	var stopErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(exitWaitMax):
				stopErr = fmt.Errorf("ordercore did not stop within %v", exitWaitMax)
			}
		}
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	e := &payEnv{sim: srv, simURL: ts.URL, ch: ch, app: a, dataDir: dir, api: newAPI("http://" + a.Addr()), logs: logs, stopApp: stop}
	if err := e.waitHealthy(); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *payEnv) waitHealthy() error {
	deadline := time.Now().Add(healthWaitMax)
	for time.Now().Before(deadline) {
		if r, err := e.api.do(http.MethodGet, "/healthz", nil, ""); err == nil && r.status == http.StatusOK {
			return nil
		}
		time.Sleep(healthPollInterval)
	}
	return fmt.Errorf("ordercore: GET /healthz did not answer 200 within %v", healthWaitMax)
}

// paySeed is the seed of the run: ORDERCORE_PAYMENTS_SEED, or the time.
func paySeed(t *testing.T) int64 {
	if v := os.Getenv(envPaySeed); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", envPaySeed, v, err)
		}
		return s
	}
	return time.Now().UnixNano() % 1_000_000
}

func payOrders(t *testing.T) int {
	if v := os.Getenv(envPayOrders); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive integer", envPayOrders, v)
		}
		return n
	}
	if testing.Short() {
		return 200
	}
	return 2000
}

// paysimRetries bounds the retries of the test's own reads of paysim, whose API answers
// 500 at the error rate.
const paysimRetries = 50

// retryPaysim calls fn until it succeeds or fails with anything but an unknown outcome.
func retryPaysim[T any](ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	var v T
	var err error
	for range paysimRetries {
		if v, err = fn(ctx); err == nil || !errors.Is(err, ordercore.ErrOutcomeUnknown) {
			return v, err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return v, err
}

// paysimTrades lists every trade at paysim with the status ("" for all).
func (e *payEnv) paysimTrades(ctx context.Context, status sim.TradeStatus) ([]sim.Trade, error) {
	var out []sim.Trade
	cursor := ""
	for range 1000 {
		page, err := retryPaysim(ctx, func(ctx context.Context) (sim.TradePage, error) {
			return e.ch.ListTrades(ctx, status, cursor, 1000)
		})
		if err != nil {
			return nil, err
		}
		out = append(out, page.Trades...)
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
	return nil, errors.New("paysim trades: more than 1000 pages")
}

// deliveryDone mirrors paysim's own notion: a copy is finished when dropped, acknowledged,
// given up, or (a one-shot copy) sent once.
func deliveryDone(d paysim.Delivery) bool {
	return d.Dropped || d.Acked || d.GaveUp || (d.Copy != paysim.CopyOriginal && len(d.Attempts) > 0)
}

// The wire format of the payment endpoints, as a client sees it.

type wirePayment struct {
	ID           string    `json:"id"`
	OrderID      string    `json:"order_id"`
	Channel      string    `json:"channel"`
	Status       string    `json:"status"`
	Amount       wireMoney `json:"amount"`
	TxnID        string    `json:"txn_id"`
	Accepted     bool      `json:"accepted"`
	Captured     int64     `json:"captured"`
	Refunding    int64     `json:"refunding"`
	Refunded     int64     `json:"refunded"`
	SyncAttempts int       `json:"sync_attempts"`
	NextSyncAt   time.Time `json:"next_sync_at"`
	Instructions struct {
		TxnID       string `json:"txn_id"`
		RedirectURL string `json:"redirect_url"`
	} `json:"instructions"`
}

type wireRefund struct {
	ID        string    `json:"id"`
	OrderID   string    `json:"order_id"`
	PaymentID string    `json:"payment_id"`
	Kind      string    `json:"kind"`
	Amount    wireMoney `json:"amount"`
	Status    string    `json:"status"`
	RefundID  string    `json:"refund_id"`
}

type wireOrderMoney struct {
	Payments []wirePayment `json:"payments"`
	Refunds  []wireRefund  `json:"refunds"`
}

type wireTimelineEvent struct {
	Seq  int64           `json:"seq"`
	Type string          `json:"type"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
}

type wireOrderDetail struct {
	ID        string              `json:"id"`
	Status    string              `json:"status"`
	Amount    wireMoney           `json:"amount"`
	ExpiresAt time.Time           `json:"expires_at"`
	Timeline  []wireTimelineEvent `json:"timeline"`
}

type wireReviewItem struct {
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	OrderID   string          `json:"order_id"`
	PaymentID string          `json:"payment_id"`
	RefundID  string          `json:"refund_id"`
	Status    string          `json:"status"`
	Evidence  json.RawMessage `json:"evidence"`
}

type wireReviewPage struct {
	Items      []wireReviewItem `json:"items"`
	NextCursor string           `json:"next_cursor"`
}

type wireChannelInfo struct {
	Name          string           `json:"name"`
	NotifyPath    string           `json:"notify_path"`
	Notifications map[string]int64 `json:"notifications"`
}

type wireChannels struct {
	Channels []wireChannelInfo `json:"channels"`
}

type payReq struct {
	Channel string `json:"channel"`
}

type refundReq struct {
	Amount wireMoney `json:"amount"`
	Reason string    `json:"reason,omitempty"`
}

// openReviews lists every open review item.
func (a *api) openReviews() ([]wireReviewItem, error) {
	var out []wireReviewItem
	cursor := ""
	for range 1000 {
		path := "/v1/review-items?status=open&limit=500"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var page wireReviewPage
		if err := a.getJSON(path, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
	return nil, errors.New("review items: more than 1000 pages")
}

// evidence is what a person needs to judge one payment: ordercore's timeline of its
// order and its attempts and refunds, paysim's trade and its notifications.
func (e *payEnv) evidence(ctx context.Context, orderID, paymentID string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  order %s:\n", orderID)
	var d wireOrderDetail
	if err := e.api.getJSON("/v1/orders/"+orderID, &d); err != nil {
		fmt.Fprintf(&b, "    GET order: %v\n", err)
	} else {
		fmt.Fprintf(&b, "    status %s, amount %d %s, expires %s\n", d.Status, d.Amount.Amount, d.Amount.Currency, d.ExpiresAt.Format(time.StampMicro))
		for _, ev := range d.Timeline {
			fmt.Fprintf(&b, "    %s %-24s %s\n", ev.Time.Format(time.StampMicro), ev.Type, ev.Data)
		}
	}
	var m wireOrderMoney
	if err := e.api.getJSON("/v1/orders/"+orderID+"/payments", &m); err != nil {
		fmt.Fprintf(&b, "    GET payments: %v\n", err)
	} else {
		for _, p := range m.Payments {
			fmt.Fprintf(&b, "    payment %s: %s accepted=%v captured=%d refunding=%d refunded=%d syncs=%d next=%s\n",
				p.ID, p.Status, p.Accepted, p.Captured, p.Refunding, p.Refunded, p.SyncAttempts, p.NextSyncAt.Format(time.StampMicro))
		}
		for _, r := range m.Refunds {
			fmt.Fprintf(&b, "    refund %s of %s: %s %s %d\n", r.ID, r.PaymentID, r.Kind, r.Status, r.Amount.Amount)
		}
	}
	if items, err := e.api.openReviews(); err == nil {
		for _, it := range items {
			if it.OrderID == orderID {
				fmt.Fprintf(&b, "    open review item %s %s: %s\n", it.ID, it.Kind, it.Evidence)
			}
		}
	}
	if paymentID != "" {
		tr, err := retryPaysim(ctx, func(ctx context.Context) (ordercore.ChannelPayment, error) { return e.ch.QueryPayment(ctx, paymentID) })
		fmt.Fprintf(&b, "  paysim (its clock runs %v behind) trade %s: %+v %v\n", payClockSkew, paymentID, tr, err)
		for _, dl := range e.sim.Deliveries() {
			if dl.OutTradeNo != paymentID {
				continue
			}
			fmt.Fprintf(&b, "    notification %s %s copy=%s dropped=%v acked=%v", dl.EventID, dl.Type, dl.Copy, dl.Dropped, dl.Acked)
			for _, at := range dl.Attempts {
				fmt.Fprintf(&b, " [%s %d %s]", at.At.Format(time.StampMicro), at.Status, at.Error)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
