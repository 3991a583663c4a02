package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The crash test's workload: a catalog, the harness's model of every order it knows
// exists, and the workers that place, pay and cancel orders until the server dies.

// Shape of the catalog and the load.
const (
	currencyUSD = "USD"
	// catalogSKUs SKUs with catalogStock units each never run out; the hot SKU, with
	// hotStock units, does within a few iterations, so insufficient_stock answers (which
	// must create nothing) are part of every later iteration.
	catalogSKUs  = 20
	catalogStock = 1_000_000
	hotSKU       = "hot"
	hotStock     = 300
	hotPrice     = 999
	// crashWorkers place and move orders concurrently, each as its own user.
	crashWorkers = 16
	// requestsPerWorkerMax bounds one worker's requests in one iteration; the kill comes
	// long before it is reached.
	requestsPerWorkerMax = 5000
	// mixedLinesMax bounds the lines of a multi-line order; mixedQuantityMax its quantities.
	mixedLinesMax    = 4
	mixedQuantityMax = 5
	hotQuantityMax   = 2
	// orderExpirySeconds is the longest time to pay an order may ask for: no order expires
	// while the test runs, so its status changes only by the harness's own requests.
	orderExpirySeconds = 24 * 60 * 60
)

// Percentages of the workload mix.
const (
	payPercent           = 15 // pay one of the worker's unpaid orders
	cancelPercent        = 15 // cancel one of them
	hotPercent           = 35 // a one-line order of the hot SKU
	mixedHotPercent      = 10 // a multi-line order that also takes one hot unit
	placeKeyPercent      = 30 // orders sent with an Idempotency-Key
	transitionKeyPercent = 50 // payments and cancels sent with an Idempotency-Key
)

const (
	statusPending   = "pending_payment"
	statusPaid      = "paid"
	statusCancelled = "cancelled"
	codeNoStock     = "insufficient_stock"
)

// catalog is the SKUs the test creates; it is read-only once created.
type catalog struct {
	ids   []string // every SKU, the hot one last
	price map[string]int64
	stock map[string]int64
}

func newCatalog() *catalog {
	c := &catalog{price: map[string]int64{}, stock: map[string]int64{}}
	for i := range catalogSKUs {
		id := fmt.Sprintf("sku-%02d", i)
		c.ids = append(c.ids, id)
		c.price[id], c.stock[id] = int64(100+37*i), catalogStock
	}
	c.ids = append(c.ids, hotSKU)
	c.price[hotSKU], c.stock[hotSKU] = hotPrice, hotStock
	return c
}

// create makes every SKU through the API.
func (c *catalog) create(t testing.TB, a *api) {
	t.Helper()
	for _, id := range c.ids {
		req := createSKUReq{ID: id, Name: "crash " + id, Price: wireMoney{c.price[id], currencyUSD}, Stock: c.stock[id]}
		r, err := a.do(http.MethodPost, "/v1/skus", req, "")
		if err != nil || r.status != http.StatusCreated {
			t.Fatalf("POST /v1/skus %s: %v %s", id, err, r)
		}
	}
}

func (c *catalog) amountOf(lines []lineReq) int64 {
	var sum int64
	for _, l := range lines {
		sum += c.price[l.SKU] * l.Quantity
	}
	return sum
}

// orderModel is what the harness knows of an order that exists: what was ordered, and its
// status as of the last answer or check. maybe lists statuses an unanswered request may
// have moved it to; the check after the next restart settles it.
type orderModel struct {
	id     string
	user   string
	lines  []lineReq
	amount int64
	status string
	maybe  []string
}

func (m *orderModel) units(sku string) int64 {
	var n int64
	for _, l := range m.lines {
		if l.SKU == sku {
			n += l.Quantity
		}
	}
	return n
}

// matches compares what the server shows of an order with what was ordered: id, user,
// amount, lines at the SKUs' prices, reservations that agree with the status shown, and a
// version that counts one transition at most (the workload never moves an order twice).
func (m *orderModel) matches(o wireOrder, cat *catalog) error {
	want := wireOrder{ID: m.id, UserID: m.user, Status: o.Status, Amount: wireMoney{m.amount, currencyUSD}, Version: 2}
	if o.Status == statusPending {
		want.Version = 1
	}
	for _, l := range m.lines {
		p := cat.price[l.SKU]
		want.Lines = append(want.Lines, wireLine{SKU: l.SKU, Quantity: l.Quantity, UnitPrice: wireMoney{p, currencyUSD},
			Amount: wireMoney{p * l.Quantity, currencyUSD}, Reservation: reservationOf(o.Status)})
	}
	if d := cmp.Diff(want, o); d != "" {
		return fmt.Errorf("order %s differs from what was ordered and acknowledged (-want +got):\n%s", m.id, d)
	}
	return nil
}

// reservationOf is the state every line's reservation must be in for an order status.
func reservationOf(status string) string {
	switch status {
	case statusPending:
		return "reserved"
	case statusPaid:
		return "committed"
	case statusCancelled:
		return "released"
	}
	return "(no reservation state for status " + strconv.Quote(status) + ")"
}

// orderFrom builds the model of an order from the 201 answer to req.
func (c *catalog) orderFrom(req placeReq, body []byte) (*orderModel, error) {
	var o wireOrder
	if err := json.Unmarshal(body, &o); err != nil {
		return nil, fmt.Errorf("decode order: %w", err)
	}
	m := &orderModel{id: o.ID, user: req.UserID, lines: req.Lines, amount: c.amountOf(req.Lines), status: statusPending}
	if o.Status != statusPending {
		return nil, fmt.Errorf("order %s placed with status %q, want %s", o.ID, o.Status, statusPending)
	}
	return m, m.matches(o, c)
}

type opKind string

const (
	opPlace  opKind = "place"
	opPay    opKind = "pay"
	opCancel opKind = "cancel"
)

// inflight is a request that got no complete answer because the server died under it.
type inflight struct {
	op     opKind
	key    string      // Idempotency-Key, "" if none
	place  placeReq    // opPlace
	order  *orderModel // opPay, opCancel
	status int         // status line received before the answer broke off; 0 if none
}

func (f *inflight) request() (method, path string, body any) {
	switch f.op {
	case opPlace:
		return http.MethodPost, "/v1/orders", f.place
	case opPay:
		return http.MethodPost, "/v1/orders/" + f.order.id + "/payments/manual",
			manualPaymentReq{Amount: wireMoney{f.order.amount, currencyUSD}, Reference: "crash-" + f.order.id}
	}
	return http.MethodPost, "/v1/orders/" + f.order.id + "/cancel", nil
}

// target is the status a payment or cancel moves an unpaid order to.
func (f *inflight) target() string {
	if f.op == opPay {
		return statusPaid
	}
	return statusCancelled
}

// workerLog is what one worker saw in one iteration.
type workerLog struct {
	user       string
	placed     []*orderModel // answered 201 (later also: retried and discovered ones)
	placedKey  int           // of placed, sent with an Idempotency-Key
	rejected   int           // answered 409 insufficient_stock
	paid       int
	cancelled  int
	moved      []*orderModel // orders it paid or cancelled, or tried to
	unanswered *inflight     // the request the kill cut off, if any
	errs       []string      // answers that break the API's contract
}

// worker sends requests one at a time until stop is set or a request goes unanswered.
type worker struct {
	log     workerLog
	rng     *rand.Rand
	api     *api
	cat     *catalog
	stop    *atomic.Bool
	keyBase string
	keys    int
	unpaid  []*orderModel // orders only it may move, still pending_payment
}

func (w *worker) run() {
	for range requestsPerWorkerMax {
		if w.stop.Load() || !w.step() {
			return
		}
	}
}

// step sends one request and reports whether it was answered.
func (w *worker) step() bool {
	r := w.rng.IntN(100)
	switch {
	case r < payPercent && len(w.unpaid) > 0:
		return w.transition(opPay)
	case r < payPercent+cancelPercent && len(w.unpaid) > 0:
		return w.transition(opCancel)
	case r < payPercent+cancelPercent+hotPercent:
		return w.place([]lineReq{{SKU: hotSKU, Quantity: 1 + w.rng.Int64N(hotQuantityMax)}})
	}
	return w.place(w.mixedLines())
}

// mixedLines picks 2..mixedLinesMax distinct plentiful SKUs, sometimes plus one hot unit.
func (w *worker) mixedLines() []lineReq {
	n := 2 + w.rng.IntN(mixedLinesMax-1)
	var lines []lineReq
	for _, i := range w.rng.Perm(catalogSKUs)[:n] {
		lines = append(lines, lineReq{SKU: w.cat.ids[i], Quantity: 1 + w.rng.Int64N(mixedQuantityMax)})
	}
	if w.rng.IntN(100) < mixedHotPercent {
		lines = append(lines, lineReq{SKU: hotSKU, Quantity: 1})
	}
	return lines
}

func (w *worker) maybeKey(percent int) string {
	if w.rng.IntN(100) >= percent {
		return ""
	}
	w.keys++
	return w.keyBase + strconv.Itoa(w.keys)
}

func (w *worker) place(lines []lineReq) bool {
	f := &inflight{op: opPlace, key: w.maybeKey(placeKeyPercent), place: placeReq{UserID: w.log.user, Lines: lines, ExpiresInSeconds: orderExpirySeconds}}
	method, path, body := f.request()
	r, err := w.api.do(method, path, body, f.key)
	if err != nil {
		f.status, w.log.unanswered = r.status, f
		return false
	}
	switch {
	case r.status == http.StatusCreated:
		o, err := w.cat.orderFrom(f.place, r.body)
		if err != nil {
			w.fail("POST /v1/orders %+v: %v", f.place, err)
			return true
		}
		w.log.placed, w.unpaid = append(w.log.placed, o), append(w.unpaid, o)
		if f.key != "" {
			w.log.placedKey++
		}
	case r.status == http.StatusConflict && r.problem().Code == codeNoStock:
		w.log.rejected++
	default:
		w.fail("POST /v1/orders %+v: want 201 or 409 %s, got %s", f.place, codeNoStock, r)
	}
	return true
}

// transition pays or cancels one of the unpaid orders the worker owns (its own, and older
// ones handed to it). No other worker moves them and none expires during the test, so the
// answer must be 200 with the target status.
func (w *worker) transition(op opKind) bool {
	i := w.rng.IntN(len(w.unpaid))
	o := w.unpaid[i]
	w.unpaid[i] = w.unpaid[len(w.unpaid)-1]
	w.unpaid = w.unpaid[:len(w.unpaid)-1]
	w.log.moved = append(w.log.moved, o)
	f := &inflight{op: op, key: w.maybeKey(transitionKeyPercent), order: o}
	method, path, body := f.request()
	r, err := w.api.do(method, path, body, f.key)
	if err != nil {
		f.status, w.log.unanswered = r.status, f
		return false
	}
	if err := checkMoved(r, o, f.target(), w.cat); err != nil {
		w.fail("%s %s: %v", method, path, err)
		return true
	}
	o.status = f.target()
	if op == opPay {
		w.log.paid++
	} else {
		w.log.cancelled++
	}
	return true
}

// checkMoved checks the answer to a payment or cancel of o.
func checkMoved(r reply, o *orderModel, want string, cat *catalog) error {
	if r.status != http.StatusOK {
		return fmt.Errorf("want 200, got %s", r)
	}
	var got wireOrder
	if err := json.Unmarshal(r.body, &got); err != nil {
		return fmt.Errorf("decode order: %w", err)
	}
	if got.Status != want {
		return fmt.Errorf("order %s answered with status %q, want %q", o.id, got.Status, want)
	}
	return o.matches(got, cat)
}

func (w *worker) fail(format string, args ...any) {
	w.log.errs = append(w.log.errs, w.log.user+": "+fmt.Sprintf(format, args...))
}
