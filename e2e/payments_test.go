package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"ordercore"
	"ordercore/app"
	"ordercore/channel/sim"
	"ordercore/internal/verify"
	"ordercore/paysim"
	"ordercore/sqlite"
)

// Shape of the payments workload.
const (
	payWorkers = 64
	// Plentiful SKUs never run out; scarce ones do, so that an expired order's released
	// units are taken by others and late money for it cannot revive it.
	plentySKUs      = 5
	plentyStock     = 1_000_000
	scarceSKUs      = 3
	scarcePercent   = 35 // orders of one scarce unit
	scarceStockDiv  = 30 // each scarce SKU holds orders/scarceStockDiv units
	shortExpPercent = 85 // orders that expire in 1-3 s; the rest in 5 s
	// Bounds of one client's retries: opening an attempt that answered 503 or 409 (the
	// channel timed out, the old attempt could not be closed yet), placing an order.
	openTriesMax  = 25
	placeTriesMax = 10
	retryWait     = 100 * time.Millisecond
	// refundPaidWaitMax bounds how long a client waits to see its order paid before it
	// asks for a refund.
	refundPaidWaitMax = 4 * time.Second
	shopperTimeout    = 5 * time.Second
	// Settling: how long the payments may take to come to rest after the workload, and
	// how often it is checked.
	settleWaitMax   = 40 * time.Second
	settlePoll      = 500 * time.Millisecond
	settleLogEvery  = 2 * time.Second
	evidencePerRule = 3
)

// What a shopper does with an order. Weights are out of 100.
type planKind string

const (
	planPay       planKind = "pay"        // open an attempt, pay it after a short while
	planPaySlow   planKind = "pay-slow"   // pay it 0.5-3.5 s later: often after expiry
	planFail      planKind = "fail"       // the payment fails; the order expires
	planFailRetry planKind = "fail-retry" // it fails, then the shopper pays the same trade
	planAbandon   planKind = "abandon"    // open an attempt, never pay: expiry closes it
	planNoAttempt planKind = "no-attempt" // never even open one
	planReopen    planKind = "reopen"     // open A, open B (A is closed), pay B, then A
	planPayReopen planKind = "pay-reopen" // pay A, then at once try to open B
	planRace      planKind = "race"       // pay A while opening B
)

var planWeights = []struct {
	kind   planKind
	weight int
}{
	{planPay, 44}, {planPaySlow, 8}, {planFail, 4}, {planFailRetry, 6}, {planAbandon, 12},
	{planNoAttempt, 3}, {planReopen, 10}, {planPayReopen, 6}, {planRace, 7},
}

// payPlan is one order's script, drawn from the seed before anything runs.
type payPlan struct {
	n       int
	kind    planKind
	lines   []lineReq
	expires int64
	delay   time.Duration // the shopper's think time before paying
	later   time.Duration // a second think time (fail-retry, pay-slow)
	refunds int           // partial refunds asked for once paid: 0, 1, or 2 at once
	race    time.Duration
}

type payCatalog struct {
	ids    []string
	price  map[string]int64
	stock  map[string]int64
	scarce []string
	plenty []string
}

func newPayCatalog(orders int) *payCatalog {
	c := &payCatalog{price: map[string]int64{}, stock: map[string]int64{}}
	for i := range plentySKUs {
		id := fmt.Sprintf("plenty-%d", i)
		c.ids, c.plenty = append(c.ids, id), append(c.plenty, id)
		c.price[id], c.stock[id] = int64(150+113*i), plentyStock
	}
	for i := range scarceSKUs {
		id := fmt.Sprintf("scarce-%d", i)
		c.ids, c.scarce = append(c.ids, id), append(c.scarce, id)
		c.price[id], c.stock[id] = int64(2500+500*i), int64(max(5, orders/scarceStockDiv))
	}
	return c
}

func drawPlans(seed int64, n int, cat *payCatalog) []*payPlan {
	plans := make([]*payPlan, n)
	for i := range plans {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(i)+1))
		p := &payPlan{n: i}
		w := rng.IntN(100)
		for _, pw := range planWeights {
			if w < pw.weight {
				p.kind = pw.kind
				break
			}
			w -= pw.weight
		}
		if p.kind == "" {
			p.kind = planPay
		}
		if rng.IntN(100) < scarcePercent {
			p.lines = []lineReq{{SKU: cat.scarce[rng.IntN(len(cat.scarce))], Quantity: 1}}
		} else {
			for _, j := range rng.Perm(len(cat.plenty))[:1+rng.IntN(2)] {
				p.lines = append(p.lines, lineReq{SKU: cat.plenty[j], Quantity: 1 + rng.Int64N(3)})
			}
		}
		p.expires = 5
		if rng.IntN(100) < shortExpPercent {
			p.expires = 1 + rng.Int64N(3)
		}
		p.delay = time.Duration(rng.Int64N(int64(150 * time.Millisecond)))
		p.later = 200*time.Millisecond + time.Duration(rng.Int64N(int64(800*time.Millisecond)))
		if p.kind == planPaySlow {
			p.later = 500*time.Millisecond + time.Duration(rng.Int64N(int64(3*time.Second)))
		}
		p.race = time.Duration(rng.Int64N(int64(30 * time.Millisecond)))
		if r := rng.IntN(100); p.kind == planPay && r < 25 {
			p.refunds = 1
			if r < 8 {
				p.refunds = 2
			}
		}
		plans[i] = p
	}
	return plans
}

// tally counts outcomes by name; safe for concurrent use.
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(k string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[k]++
}

func (t *tally) get(k string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[k]
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return formatCounts(t.m)
}

func formatCounts[V int | int64](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// payWorkload runs the shoppers: each plan is one order, driven over HTTP against
// ordercore (place, open attempts, refunds) and paysim's hosted pay page (pay, fail).
type payWorkload struct {
	env     *payEnv
	seed    int64
	shopper *http.Client
	counts  tally

	mu     sync.Mutex
	orders map[string]*payPlan // placed orders by id
	errs   []string            // answers that break the API's contract
}

func (w *payWorkload) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, fmt.Sprintf(format, args...))
}

func (w *payWorkload) run(p *payPlan) {
	id, amount := w.place(p)
	if id == "" {
		return
	}
	switch p.kind {
	case planNoAttempt:
	case planAbandon:
		w.open(id, 1)
	case planPay:
		if a := w.open(id, 1); a != nil {
			time.Sleep(p.delay)
			if w.shop(a.ID, true) == "succeeded" && p.refunds > 0 {
				w.refund(id, amount, p.refunds)
			}
		}
	case planPaySlow:
		if a := w.open(id, 1); a != nil {
			time.Sleep(p.later)
			w.shop(a.ID, true)
		}
	case planFail:
		if a := w.open(id, 1); a != nil {
			time.Sleep(p.delay)
			w.shop(a.ID, false)
		}
	case planFailRetry:
		if a := w.open(id, 1); a != nil {
			time.Sleep(p.delay)
			w.shop(a.ID, false)
			time.Sleep(p.later)
			w.shop(a.ID, true)
		}
	case planReopen:
		a := w.open(id, 1)
		if a == nil {
			return
		}
		time.Sleep(p.delay)
		if b := w.open(id, 2); b != nil {
			w.shop(b.ID, true)
		}
		w.shop(a.ID, true) // closed when B was opened: refused, unless the channel misbehaves
	case planPayReopen:
		if a := w.open(id, 1); a != nil {
			w.shop(a.ID, true)
			if b := w.open(id, 2); b != nil {
				w.shop(b.ID, true)
			}
		}
	case planRace:
		a := w.open(id, 1)
		if a == nil {
			return
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			time.Sleep(p.race)
			w.shop(a.ID, true)
		})
		b := w.open(id, 2)
		wg.Wait()
		if b != nil {
			w.shop(b.ID, true)
		}
	}
}

// place creates the order, retrying a 503 or a lost answer under its Idempotency-Key.
func (w *payWorkload) place(p *payPlan) (string, int64) {
	req := placeReq{UserID: "shopper-" + strconv.Itoa(p.n%97), Lines: p.lines, ExpiresInSeconds: p.expires}
	key := fmt.Sprintf("place-%d-%d", w.seed, p.n)
	for range placeTriesMax {
		r, err := w.env.api.do(http.MethodPost, "/v1/orders", req, key)
		switch {
		case err != nil || r.status == http.StatusServiceUnavailable:
			w.counts.add("place.retry")
			time.Sleep(retryWait)
			continue
		case r.status == http.StatusCreated:
			var o wireOrder
			if err := json.Unmarshal(r.body, &o); err != nil || o.Status != statusPending {
				w.fail("POST /v1/orders: 201 with %s", r)
				return "", 0
			}
			w.counts.add("place.created")
			w.mu.Lock()
			w.orders[o.ID] = p
			w.mu.Unlock()
			return o.ID, o.Amount.Amount
		case r.status == http.StatusConflict && r.problem().Code == codeNoStock:
			w.counts.add("place.insufficient_stock")
			return "", 0
		default:
			w.fail("POST /v1/orders %+v: %s", req, r)
			return "", 0
		}
	}
	w.counts.add("place.gave_up")
	return "", 0
}

// open opens the n-th payment attempt of an order as a client would: the same
// Idempotency-Key on every retry of one attempt, retried while ordercore answers 503 (the
// channel did not answer) or 409 payment_in_progress (the previous attempt could not be
// closed at the channel yet). It returns nil when the order can no longer be paid.
func (w *payWorkload) open(orderID string, n int) *wirePayment {
	key := fmt.Sprintf("pay-%s-%d", orderID, n)
	path := "/v1/orders/" + orderID + "/payments"
	for range openTriesMax {
		r, err := w.env.api.do(http.MethodPost, path, payReq{Channel: payChannel}, key)
		if err != nil {
			w.counts.add("open.retry.no_answer")
			time.Sleep(retryWait)
			continue
		}
		code := r.problem().Code
		switch {
		case r.status == http.StatusCreated:
			var p wirePayment
			if err := json.Unmarshal(r.body, &p); err != nil || p.ID == "" || p.OrderID != orderID || p.Channel != payChannel {
				w.fail("POST %s: 201 with %s", path, r)
				return nil
			}
			if p.Status != string(ordercore.PaymentPending) {
				// A replay of an attempt that has ended since (closed, or paid).
				w.counts.add("open.created_" + p.Status)
				return nil
			}
			w.counts.add("open.created")
			return &p
		case r.status == http.StatusServiceUnavailable, r.status == http.StatusConflict && (code == ordercore.EPaymentInProgress || code == ordercore.EIdemKeyInUse):
			w.counts.add("open.retry." + code)
			time.Sleep(retryWait)
		case r.status == http.StatusConflict && code == ordercore.EIllegalTransition:
			w.counts.add("open.not_payable") // expired, or paid already
			return nil
		case r.status == http.StatusBadGateway && code == ordercore.EChannelRefused:
			w.counts.add("open.channel_refused")
			return nil
		default:
			w.fail("POST %s: %s", path, r)
			return nil
		}
	}
	w.counts.add("open.gave_up")
	return nil
}

// shop acts as the shopper on paysim's hosted page and returns what happened: the
// trade's status, "underpaid", or paysim's refusal code.
func (w *payWorkload) shop(tradeNo string, success bool) string {
	ctx, cancel := context.WithTimeout(context.Background(), shopperTimeout)
	defer cancel()
	tr, err := paysim.Pay(ctx, w.shopper, w.env.simURL, tradeNo, success)
	var out string
	var ce *ordercore.ChannelError
	switch {
	case errors.As(err, &ce):
		out = ce.Code
	case err != nil:
		w.fail("shopper pay %s: %v", tradeNo, err)
		out = "error"
	case tr.Status == sim.TradeSucceeded && tr.PaidAmount != tr.Amount:
		out = "underpaid"
	default:
		out = string(tr.Status)
	}
	verb := "pay"
	if !success {
		verb = "fail"
	}
	w.counts.add("shopper." + verb + "." + out)
	return out
}

// refund waits until the order shows paid, then asks for parts of it back: one third,
// or two thirds as two concurrent requests.
func (w *payWorkload) refund(orderID string, amount int64, n int) {
	deadline := time.Now().Add(refundPaidWaitMax)
	for {
		var o wireOrder
		if err := w.env.api.getJSON("/v1/orders/"+orderID, &o); err != nil {
			w.fail("%v", err)
			return
		}
		if o.Status == statusPaid {
			break
		}
		if o.Status != statusPending || time.Now().After(deadline) {
			w.counts.add("refund.order_" + o.Status)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	part := max(amount/3, 1)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			key := fmt.Sprintf("refund-%s-%d", orderID, i)
			path := "/v1/orders/" + orderID + "/refunds"
			body := refundReq{Amount: wireMoney{part, currencyUSD}, Reason: "e2e partial refund"}
			for range placeTriesMax {
				r, err := w.env.api.do(http.MethodPost, path, body, key)
				if err != nil || r.status == http.StatusServiceUnavailable {
					time.Sleep(retryWait)
					continue
				}
				if r.status != http.StatusCreated {
					w.fail("POST %s: %s", path, r)
					return
				}
				w.counts.add("refund.created")
				return
			}
			w.counts.add("refund.gave_up")
		})
	}
	wg.Wait()
}

// TestPaymentsAgainstPaysim is the acceptance test of payments: over real HTTP against
// paysim with every fault on (duplicated, delayed, dropped, forged and tampered
// notifications, underpayments, calls that time out after taking effect, payments after
// close, double payments, abnormal refunds, 500s), thousands of orders are placed, paid,
// failed, abandoned, paid twice and partly refunded, with short deadlines so that expiry
// races payment (paysim's clock runs a little behind ordercore's, so that trades closed
// at expiry can still take money). Once everything has come to rest:
//  1. the trades paysim took money for are exactly ordercore's succeeded payments, each
//     captured for what paysim says was paid, and refunded for what paysim refunded;
//  2. every succeeded payment that did not pay its order (a duplicate, late money that
//     could not revive the order, an underpayment) is refunded in full: refunds that
//     succeeded, or ended abnormal with an open review item; paysim agrees on each refund;
//  3. every order is terminal or paid by exactly one payment of its amount, none waits on
//     a pending refund, no attempt is left open;
//  4. forged and tampered notifications were rejected (401, counted as invalid_signature
//     by GET /v1/channels) and changed nothing (a tampered copy carries another amount,
//     which (1) would show captured);
//  5. `ordercore verify` (internal/verify.Check) finds no violation in the database;
//  6. paysim's daily statement lists exactly ordercore's succeeded payments and refunds;
//  7. ordercore's own reconciliation of those statements (POST /v1/reconciliations)
//     agrees: every row matched, nothing to repair, no orphan and no discrepancy.
//
// The seed fixes paysim's fault decisions and the shoppers' scripts; the interleaving is
// up to the scheduler. Rerun with ORDERCORE_PAYMENTS_SEED=<seed>.
func TestPaymentsAgainstPaysim(t *testing.T) {
	seed := paySeed(t)
	n := payOrders(t)
	started := time.Now()
	env := startPayEnv(t, seed)
	t.Logf("payments: %d orders, seed %d (rerun with %s=%d), paysim %s, ordercore %s", n, seed, envPaySeed, seed, env.simURL, env.api.base)

	cat := newPayCatalog(n)
	for _, id := range cat.ids {
		req := createSKUReq{ID: id, Name: "payments " + id, Price: wireMoney{cat.price[id], currencyUSD}, Stock: cat.stock[id]}
		if r, err := env.api.do(http.MethodPost, "/v1/skus", req, ""); err != nil || r.status != http.StatusCreated {
			t.Fatalf("POST /v1/skus %s: %v %s", id, err, r)
		}
	}
	plans := drawPlans(seed, n, cat)
	w := &payWorkload{env: env, seed: seed, orders: map[string]*payPlan{},
		shopper: &http.Client{Transport: &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 128}}}
	forEach(plans, payWorkers, w.run)
	loadDone := time.Now()
	t.Logf("workload done in %v: %s", loadDone.Sub(started).Round(time.Millisecond), w.counts.String())
	if len(w.errs) > 0 {
		t.Errorf("%d answers broke the API's contract:\n%s", len(w.errs), strings.Join(w.errs[:min(len(w.errs), errorsShownMax)], "\n"))
	}

	ctx := t.Context()
	settled := env.settle(t, ctx)
	t.Logf("settled=%v after %v", settled, time.Since(loadDone).Round(time.Millisecond))

	c := &payCheck{t: t, env: env, ctx: ctx, plans: w.orders}
	c.collect()
	c.checkTrades()
	c.checkUnaccepted()
	c.checkOrders()
	c.checkNotifications()
	c.checkStatement(started)
	c.checkReconciliation(started)
	c.showEvidence()
	c.summary(w, len(plans))

	// (5) ordercore verify, extended to money, on the database the server leaves behind.
	if err := env.stopApp(); err != nil {
		t.Errorf("stop ordercore: %v", err)
	}
	db, err := sqlite.Open(ctx, app.DBPath(env.dataDir), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	snap, err := db.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	asOf := time.Now().UTC()
	if k := len(snap.Events); k > 0 {
		asOf = snap.Events[k-1].Time
	}
	if vs := verify.Check(snap, asOf); len(vs) > 0 {
		var b strings.Builder
		verify.Report(&b, vs, snap)
		t.Errorf("ordercore verify: %d violations:\n%s", len(vs), b.String())
	}
	if t.Failed() {
		t.Logf("ordercore's log (warnings and errors, tail):\n%s", env.logs)
	}
	t.Logf("total %v", time.Since(started).Round(time.Millisecond))
}

// settle waits until nothing is left in motion: paysim has no notification waiting or in
// flight and no trade pending; ordercore has no open attempt, no sync step due (the
// confirming step of a closed or failed attempt included), no refund being synced and no
// unpaid order.
// Two consecutive quiet polls are needed, so that a timer that fired in between (a refund
// settling, a payment after close) is seen.
func (e *payEnv) settle(t *testing.T, ctx context.Context) bool {
	deadline := time.Now().Add(settleWaitMax)
	lastLog := time.Now()
	quiet := 0
	for {
		st, err := e.motion(ctx)
		if err != nil {
			t.Logf("settle: %v", err)
		}
		if err == nil && st.quiet() {
			if quiet++; quiet == 2 {
				return true
			}
		} else {
			quiet = 0
		}
		if time.Now().After(deadline) {
			t.Errorf("payments did not come to rest within %v: %s", settleWaitMax, st)
			return false
		}
		if time.Since(lastLog) >= settleLogEvery {
			t.Logf("settling: %s", st)
			lastLog = time.Now()
		}
		time.Sleep(settlePoll)
	}
}

type motion struct {
	deliveries, trades                       int // paysim
	open, syncDue, refunds, orders, syncIdle int // ordercore
}

func (m motion) quiet() bool {
	return m.deliveries == 0 && m.trades == 0 && m.open-m.syncIdle == 0 && m.syncDue == 0 && m.refunds == 0 && m.orders == 0
}

func (m motion) String() string {
	return fmt.Sprintf("paysim: %d notifications pending, %d trades pending; ordercore: %d open attempts (%d with no query scheduled), %d queries scheduled, %d pending refunds being synced, %d unpaid orders",
		m.deliveries, m.trades, m.open, m.syncIdle, m.syncDue, m.refunds, m.orders)
}

func (e *payEnv) motion(ctx context.Context) (motion, error) {
	var m motion
	for _, d := range e.sim.Deliveries() {
		if !deliveryDone(d) {
			m.deliveries++
		}
	}
	pending, err := e.paysimTrades(ctx, sim.TradePending)
	if err != nil {
		return m, err
	}
	m.trades = len(pending)
	snap, err := e.app.DB.Dump(ctx)
	if err != nil {
		return m, err
	}
	for _, p := range snap.Payments {
		if p.Status.Open() {
			m.open++
			if p.NextSyncAt.IsZero() {
				m.syncIdle++
			}
		}
		if !p.NextSyncAt.IsZero() {
			m.syncDue++
		}
	}
	for _, r := range snap.Refunds {
		// A pending refund past the end of its schedule is with an operator: at rest,
		// and a failure of (3).
		if !r.Status.Terminal() && !r.NextSyncAt.IsZero() {
			m.refunds++
		}
	}
	for _, o := range snap.Orders {
		if o.Status == ordercore.OrderPendingPayment {
			m.orders++
		}
	}
	return m, nil
}

// payCheck holds both sides' final state and the problems found.
type payCheck struct {
	t   *testing.T
	env *payEnv
	ctx context.Context

	snap       *ordercore.Snapshot
	payments   map[string]ordercore.Payment
	refundsOf  map[string][]ordercore.Refund // by payment
	trades     map[string]sim.Trade          // every trade at paysim, by out_trade_no
	paid       map[string]sim.Trade          // succeeded ones
	reviews    []wireReviewItem
	channels   map[string]int64
	deliveries []paysim.Delivery
	notes      map[string]string // payment id -> what its success did (paid, revived, late, duplicate, mismatch)

	plans    map[string]*payPlan // the shopper's script, by order
	problems map[string]int      // by assertion, "(1)" to "(7)"
	suspects []suspect           // payments whose evidence is printed
}

type suspect struct{ orderID, paymentID, why string }

// problem fails the test with why; the first few of each assertion are reported in full,
// with the evidence of the payment, and the rest counted.
func (c *payCheck) problem(orderID, paymentID, format string, args ...any) {
	why := fmt.Sprintf(format, args...)
	rule, _, _ := strings.Cut(why, " ")
	if c.problems == nil {
		c.problems = map[string]int{}
	}
	c.problems[rule]++
	if k := c.problems[rule]; k > errorsShownMax {
		c.t.Fail()
		return
	}
	c.t.Error(why)
	if c.problems[rule] <= evidencePerRule {
		c.suspects = append(c.suspects, suspect{orderID, paymentID, why})
	}
}

func (c *payCheck) collect() {
	t := c.t
	var ch wireChannels
	if err := c.env.api.getJSON("/v1/channels", &ch); err != nil {
		t.Fatal(err)
	}
	for _, info := range ch.Channels {
		if info.Name == payChannel {
			c.channels = info.Notifications
		}
	}
	var err error
	if c.reviews, err = c.env.api.openReviews(); err != nil {
		t.Fatal(err)
	}
	if c.snap, err = c.env.app.DB.Dump(c.ctx); err != nil {
		t.Fatal(err)
	}
	c.payments, c.refundsOf, c.notes = map[string]ordercore.Payment{}, map[string][]ordercore.Refund{}, map[string]string{}
	for _, p := range c.snap.Payments {
		c.payments[p.ID] = p
	}
	for _, r := range c.snap.Refunds {
		c.refundsOf[r.PaymentID] = append(c.refundsOf[r.PaymentID], r)
	}
	for _, ev := range c.snap.Events {
		if ev.Type != ordercore.EventPaymentSucceeded && ev.Type != ordercore.EventPaymentMismatch {
			continue
		}
		var pe ordercore.PaymentEvent
		if err := json.Unmarshal(ev.Data, &pe); err != nil {
			t.Fatalf("event %d: %v", ev.Seq, err)
		}
		c.notes[pe.PaymentID] = pe.Note
	}
	all, err := c.env.paysimTrades(c.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	c.trades, c.paid = map[string]sim.Trade{}, map[string]sim.Trade{}
	for _, tr := range all {
		c.trades[tr.OutTradeNo] = tr
	}
	paid, err := c.env.paysimTrades(c.ctx, sim.TradeSucceeded)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range paid {
		c.paid[tr.OutTradeNo] = tr
	}
	c.deliveries = c.env.sim.Deliveries()
}

// checkTrades is (1): paysim's paid trades are ordercore's succeeded payments, amount
// for amount, and paysim's refunded sum is ordercore's.
func (c *payCheck) checkTrades() {
	for no, tr := range c.paid {
		p, ok := c.payments[no]
		switch {
		case !ok:
			c.problem(tr.OrderID, no, "(1) paysim took %s for trade %s of order %s, which ordercore has no payment for", tr.PaidAmount, no, tr.OrderID)
		case p.Status != ordercore.PaymentSucceeded:
			c.problem(p.OrderID, no, "(1) paysim took %s for trade %s (paid at %s) but ordercore's payment is %s: the money is lost to the order",
				tr.PaidAmount, no, tr.PaidAt.Format(time.StampMicro), p.Status)
		case p.Captured != tr.PaidAmount.Amount || p.Amount.Currency != tr.PaidAmount.Currency:
			c.problem(p.OrderID, no, "(1) payment %s captured %d %s, paysim says %s was paid", no, p.Captured, p.Amount.Currency, tr.PaidAmount)
		case p.Refunded != tr.Refunded.Amount:
			c.problem(p.OrderID, no, "(1) payment %s refunded %d, paysim says %s", no, p.Refunded, tr.Refunded)
		}
	}
	for _, p := range c.snap.Payments {
		if p.Status == ordercore.PaymentSucceeded {
			if _, ok := c.paid[p.ID]; !ok {
				c.problem(p.OrderID, p.ID, "(1) ordercore's payment %s succeeded with %d captured, but paysim's trade is %q", p.ID, p.Captured, c.trades[p.ID].Status)
			}
		}
	}
}

// checkUnaccepted is (2): money that did not pay its order goes back in full, and paysim
// agrees with ordercore on every refund.
func (c *payCheck) checkUnaccepted() {
	abnormalReview := map[string]bool{}
	for _, it := range c.reviews {
		if it.Kind == ordercore.ReviewRefundAbnormal {
			abnormalReview[it.RefundID] = true
		}
	}
	for _, p := range c.snap.Payments {
		if p.Status != ordercore.PaymentSucceeded || p.Accepted {
			continue
		}
		var covered int64
		for _, r := range c.refundsOf[p.ID] {
			switch r.Status {
			case ordercore.RefundSucceeded:
				covered += r.Amount.Amount
			case ordercore.RefundAbnormal:
				covered += r.Amount.Amount
				if !abnormalReview[r.ID] {
					c.problem(p.OrderID, p.ID, "(2) refund %s of payment %s ended abnormal with no open review item", r.ID, p.ID)
				}
			}
		}
		if covered != p.Captured {
			c.problem(p.OrderID, p.ID, "(2) payment %s (%s) is not the order's, captured %d, but only %d is refunded or with an operator",
				p.ID, c.notes[p.ID], p.Captured, covered)
		}
	}
	// Each refund as paysim sees it.
	var refunds []ordercore.Refund
	for _, rs := range c.refundsOf {
		refunds = append(refunds, rs...)
	}
	var mu sync.Mutex
	forEach(refunds, checkParallel, func(r ordercore.Refund) {
		cr, err := retryPaysim(c.ctx, func(ctx context.Context) (ordercore.ChannelRefund, error) {
			return c.env.ch.QueryRefund(ctx, r.PaymentID, r.ID)
		})
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil && r.Status == ordercore.RefundFailed:
			// Refused by the channel: it never existed there.
		case err != nil:
			c.problem(r.OrderID, r.PaymentID, "(2) refund %s (%s, %s): paysim: %v", r.ID, r.Kind, r.Status, err)
		case cr.Status != r.Status || cr.Amount != r.Amount:
			c.problem(r.OrderID, r.PaymentID, "(2) refund %s (%s): ordercore says %s %s, paysim %s %s", r.ID, r.Kind, r.Status, r.Amount, cr.Status, cr.Amount)
		}
	})
}

// checkOrders is (3): no order is left unpaid or waiting for a refund, and each order's
// status agrees with the one payment that paid it.
func (c *payCheck) checkOrders() {
	accepted := map[string][]ordercore.Payment{}
	for _, p := range c.snap.Payments {
		if p.Accepted {
			accepted[p.OrderID] = append(accepted[p.OrderID], p)
		}
	}
	for _, p := range c.snap.Payments {
		if p.Status.Open() {
			c.problem(p.OrderID, p.ID, "(3) payment %s of order %s is still %s (next query %v)", p.ID, p.OrderID, p.Status, p.NextSyncAt)
		}
	}
	for _, o := range c.snap.Orders {
		acc := accepted[o.ID]
		switch o.Status {
		case ordercore.OrderCancelled:
			if len(acc) != 0 {
				c.problem(o.ID, acc[0].ID, "(3) order %s is cancelled but payment %s paid it", o.ID, acc[0].ID)
			}
			continue
		case ordercore.OrderPaid, ordercore.OrderRefunding, ordercore.OrderRefunded, ordercore.OrderPartiallyRefunded:
		default:
			c.problem(o.ID, "", "(3) order %s is still %s", o.ID, o.Status)
			continue
		}
		if len(acc) != 1 {
			c.problem(o.ID, "", "(3) order %s is %s with %d accepted payments", o.ID, o.Status, len(acc))
			continue
		}
		p := acc[0]
		if p.Captured != o.Amount.Amount || p.Amount.Currency != o.Amount.Currency {
			c.problem(o.ID, p.ID, "(3) order %s of %s was paid by payment %s capturing %d", o.ID, o.Amount, p.ID, p.Captured)
		}
		var pending int
		for _, r := range c.refundsOf[p.ID] {
			if r.Status == ordercore.RefundPending {
				pending++
			}
		}
		want := o.Status
		switch {
		case pending > 0:
			c.problem(o.ID, p.ID, "(3) order %s is %s with %d pending refunds", o.ID, o.Status, pending)
			continue
		case len(c.refundsOf[p.ID]) == 0:
			want = ordercore.OrderPaid
		case p.Refunded == p.Captured:
			want = ordercore.OrderRefunded
		case p.Refunded > 0:
			want = ordercore.OrderPartiallyRefunded
		default:
			want = ordercore.OrderRefunding // nothing came back: abnormal or failed refunds, with an operator
		}
		if o.Status != want {
			c.problem(o.ID, p.ID, "(3) order %s is %s; its payment (captured %d, refunded %d, %d refunds) makes it %s",
				o.ID, o.Status, p.Captured, p.Refunded, len(c.refundsOf[p.ID]), want)
		}
	}
}

// checkNotifications is (4): every forged or tampered copy paysim sent was answered 401
// and counted as invalid_signature; every original reached ordercore unless dropped.
func (c *payCheck) checkNotifications() {
	var bad int64
	for _, d := range c.deliveries {
		switch d.Copy {
		case paysim.CopyForged, paysim.CopyTampered:
			if len(d.Attempts) == 0 {
				continue
			}
			if s := d.Attempts[0].Status; s != http.StatusUnauthorized {
				c.problem("", d.OutTradeNo, "(4) a %s %s notification of trade %s was answered %d %s, want 401", d.Copy, d.Type, d.OutTradeNo, s, d.Attempts[0].Error)
				continue
			}
			bad++
		case paysim.CopyOriginal:
			if d.GaveUp {
				c.problem("", d.OutTradeNo, "(4) paysim gave up on notification %s (%s of trade %s) after %d attempts", d.EventID, d.Type, d.OutTradeNo, len(d.Attempts))
			}
		}
	}
	got := c.channels[ordercore.EInvalidSignature]
	if got == 0 || got != bad {
		c.t.Errorf("(4) GET /v1/channels counts %d invalid_signature notifications; paysim sent %d forged or tampered copies that were answered 401", got, bad)
	}
}

// checkStatement is (6): paysim's statements of the days the run spans list exactly the
// payments and refunds ordercore recorded as succeeded.
func (c *payCheck) checkStatement(started time.Time) {
	type row struct {
		txn    string
		amount ordercore.Money
	}
	gotPay, gotRefund := map[string]row{}, map[string]row{}
	for day := started.Add(-time.Minute).UTC().Truncate(24 * time.Hour); !day.After(time.Now().UTC()); day = day.AddDate(0, 0, 1) {
		st, err := retryPaysim(c.ctx, func(ctx context.Context) (sim.Statement, error) { return c.env.ch.Statement(ctx, day) })
		if err != nil {
			c.t.Errorf("(6) statement of %s: %v", day.Format(time.DateOnly), err)
			return
		}
		for _, r := range st.Rows {
			switch r.Type {
			case sim.RowPayment:
				gotPay[r.OutTradeNo] = row{r.TxnID, r.Amount}
			case sim.RowRefund:
				gotRefund[r.OutRefundNo] = row{r.TxnID, r.Amount}
			}
		}
	}
	wantPay, wantRefund := map[string]row{}, map[string]row{}
	for _, p := range c.snap.Payments {
		if p.Status == ordercore.PaymentSucceeded {
			wantPay[p.ID] = row{p.TxnID, ordercore.Money{Amount: p.Captured, Currency: p.Amount.Currency}}
		}
	}
	for _, r := range c.snap.Refunds {
		if r.Status == ordercore.RefundSucceeded {
			wantRefund[r.ID] = row{c.payments[r.PaymentID].TxnID, r.Amount}
		}
	}
	for id, w := range wantPay {
		if g, ok := gotPay[id]; !ok || g != w {
			c.problem(c.payments[id].OrderID, id, "(6) ordercore's payment %s (%s, txn %s) is on no statement as such: %+v", id, w.amount, w.txn, g)
		}
	}
	for id, g := range gotPay {
		if _, ok := wantPay[id]; !ok {
			c.problem(c.trades[id].OrderID, id, "(6) the statement lists payment %s of %s that ordercore has not recorded as succeeded", id, g.amount)
		}
	}
	refundOrder := func(id string) (string, string) {
		for pid, rs := range c.refundsOf {
			for _, r := range rs {
				if r.ID == id {
					return r.OrderID, pid
				}
			}
		}
		return "", ""
	}
	for id, w := range wantRefund {
		if g, ok := gotRefund[id]; !ok || g != w {
			o, p := refundOrder(id)
			c.problem(o, p, "(6) ordercore's refund %s of %s is on no statement as such: %+v", id, w.amount, g)
		}
	}
	for id, g := range gotRefund {
		if _, ok := wantRefund[id]; !ok {
			o, p := refundOrder(id)
			c.problem(o, p, "(6) the statement lists refund %s of %s that ordercore has not recorded as succeeded", id, g.amount)
		}
	}
}

// checkReconciliation is (7): once everything has settled, ordercore's reconciliation of
// each day the run spans finds what (6) found: nothing missed, nothing different. A
// reconciler that reported false discrepancies, or "repaired" what was already right,
// fails here.
func (c *payCheck) checkReconciliation(started time.Time) {
	for day := started.Add(-time.Minute).UTC().Truncate(24 * time.Hour); !day.After(time.Now().UTC()); day = day.AddDate(0, 0, 1) {
		rep := c.env.api.reconcile(c.t, payChannel, day.Format(time.DateOnly))
		if rep.Repaired != 0 || rep.Orphans != 0 || len(rep.Discrepancies) != 0 || rep.Matched != rep.Rows {
			c.t.Errorf("(7) reconciliation of %s: %d rows, %d matched, %d repaired, %d orphans, discrepancies %+v; want every row matched",
				rep.Day, rep.Rows, rep.Matched, rep.Repaired, rep.Orphans, rep.Discrepancies)
		}
		c.t.Logf("(7) reconciliation of %s: %d rows (%d payments, %d refunds) matched, %d confirmed at the channel",
			rep.Day, rep.Matched, rep.Payments, rep.Refunds, rep.Confirmed)
	}
}

// showEvidence prints the timelines of the first payments found wrong, from both sides.
func (c *payCheck) showEvidence() {
	for _, s := range c.suspects {
		orderID := s.orderID
		if orderID == "" {
			if p, ok := c.payments[s.paymentID]; ok {
				orderID = p.OrderID
			} else {
				orderID = c.trades[s.paymentID].OrderID
			}
		}
		if orderID == "" {
			continue
		}
		kind := planKind("?")
		if p := c.plans[orderID]; p != nil {
			kind = p.kind
		}
		c.t.Logf("evidence for: %s\n  the shopper's script: %s\n%s", s.why, kind, c.env.evidence(c.ctx, orderID, s.paymentID))
	}
	if len(c.problems) > 0 {
		c.t.Errorf("problems by assertion: %s", formatCounts(c.problems))
	}
}

// summary logs what the run did, from both sides.
func (c *payCheck) summary(w *payWorkload, plans int) {
	kinds := map[string]int{}
	for _, p := range w.orders {
		kinds[string(p.kind)]++
	}
	status := map[string]int{}
	for _, o := range c.snap.Orders {
		status[string(o.Status)]++
	}
	pay := map[string]int{}
	var succeeded, captured int
	for _, p := range c.snap.Payments {
		pay[string(p.Status)]++
		if p.Status == ordercore.PaymentSucceeded {
			succeeded++
			captured += int(p.Captured)
		}
	}
	notes := map[string]int{}
	for _, n := range c.notes {
		notes[n]++
	}
	refunds := map[string]int{}
	for _, r := range c.snap.Refunds {
		refunds[string(r.Kind)+"."+string(r.Status)]++
	}
	reviews := map[string]int{}
	for _, it := range c.reviews {
		reviews[it.Kind]++
	}
	copies := map[string]int{}
	for _, d := range c.deliveries {
		k := d.Copy
		switch {
		case d.Dropped:
			k += ".dropped"
		case d.Acked:
			k += ".acked"
		case len(d.Attempts) > 0:
			k += "." + strconv.Itoa(d.Attempts[len(d.Attempts)-1].Status)
		}
		copies[k]++
		if d.Copy == paysim.CopyOriginal && len(d.Attempts) > 1 {
			copies["original.retried"]++
		}
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "plans\t%d\t%s\n", plans, formatCounts(kinds))
	fmt.Fprintf(tw, "orders\t%d\t%s; %d refused for stock\n", len(c.snap.Orders), formatCounts(status), w.counts.get("place.insufficient_stock"))
	fmt.Fprintf(tw, "paid\t%d\tpaid a pending order\n", notes["paid"])
	fmt.Fprintf(tw, "revived\t%d\tlate money, stock still there\n", notes["revived"])
	fmt.Fprintf(tw, "late-refunded\t%d\tlate money, stock gone\n", notes["late"])
	fmt.Fprintf(tw, "duplicate-refunded\t%d\tsecond money for a paid order\n", notes["duplicate"])
	fmt.Fprintf(tw, "underpaid\t%d\tamount mismatch, refunded\n", notes["mismatch"])
	fmt.Fprintf(tw, "payments\t%d\t%s; %d succeeded at paysim, %d minor units captured\n", len(c.snap.Payments), formatCounts(pay), len(c.paid), captured)
	fmt.Fprintf(tw, "refunds\t%d\t%s\n", len(c.snap.Refunds), formatCounts(refunds))
	fmt.Fprintf(tw, "open review items\t%d\t%s\n", len(c.reviews), formatCounts(reviews))
	fmt.Fprintf(tw, "notifications at ordercore\t\t%s\n", formatCounts(c.channels))
	fmt.Fprintf(tw, "notifications from paysim\t%d\t%s\n", len(c.deliveries), formatCounts(copies))
	fmt.Fprintf(tw, "client\t\t%s\n", w.counts.String())
	tw.Flush()
	c.t.Logf("summary:\n%s", b.String())
}
