package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/verify"
	"ordercore/sqlite"
)

// The callback matrix (reliability.md 3.4, P2): for each payment flow with k channel
// notifications, every ordering of the notifications, every mask of duplicated ones and
// every mask of lost ones, each run with the notifications arriving before and after the
// order's expiry sweep. The channel is a fake because the test must decide exactly what it
// does and when (the acceptance test over real HTTP against paysim is in e2e); the engine,
// the store, the payment sync and the expiry sweeper are the real ones, on a clock the
// test moves.
//
// The flows, in the shape of the reference's five:
//
//	succeed    auth -> capture                    pending, succeeded
//	close      auth -> void (the trade closes)    pending, closed
//	fail       auth -> fail                       pending, failed
//	twice      paid twice (two attempts)          a2 pending, a1 succeeded, a2 succeeded
//	refunds    capture -> refund part -> rest     pending, succeeded, refund 1, refund 2
//
// (3·2!·4·4 + 3!·8·8 + 4!·16·16)·2 = 13,248 scenarios. After each scenario's
// notifications, the clock runs through the sync schedules until nothing is left to do,
// and then every scenario must hold: zero double captures (an order keeps at most one
// payment's money; every other capture is refunded in full), zero lost successes (every
// trade the channel took money for is a succeeded payment with that capture), no order
// or payment or refund left waiting; at the end `verify` finds no violation.

const matrixChannel = "fake"

type flow struct {
	name  string
	notes int
}

var flows = []flow{{"succeed", 2}, {"close", 2}, {"fail", 2}, {"twice", 3}, {"refunds", 4}}

// scenario is one cell of the matrix.
type scenario struct {
	flow      flow
	perm      []int
	dup, loss uint // bit i: note i is delivered twice (concurrently) / never
	after     bool // notifications arrive after the expiry sweep
	stockGone bool // after expiry, another order takes the released stock
}

func (s scenario) String() string {
	return fmt.Sprintf("%s perm=%v dup=%b loss=%b after=%v stockGone=%v", s.flow.name, s.perm, s.dup, s.loss, s.after, s.stockGone)
}

func permutations(n int) [][]int {
	if n == 1 {
		return [][]int{{0}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

func matrix() []scenario {
	var out []scenario
	for _, f := range flows {
		for _, perm := range permutations(f.notes) {
			for dup := uint(0); dup < 1<<f.notes; dup++ {
				for loss := uint(0); loss < 1<<f.notes; loss++ {
					for _, after := range []bool{false, true} {
						out = append(out, scenario{flow: f, perm: perm, dup: dup, loss: loss, after: after, stockGone: after && len(out)%2 == 0})
					}
				}
			}
		}
	}
	return out
}

func TestCallbackMatrix(t *testing.T) {
	t.Parallel()
	all := matrix()
	if len(all) != 13248 {
		t.Fatalf("matrix has %d scenarios, want 13,248", len(all))
	}
	stride := 1
	if testing.Short() {
		stride = 97 // a fixed sample across every flow; the full matrix runs without -short
	}
	if s := os.Getenv("ORDERCORE_MATRIX_STRIDE"); s != "" {
		stride, _ = strconv.Atoi(s)
	}
	workers := max(2, runtime.GOMAXPROCS(0)*2)
	var next atomic.Int64
	var ran atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			m := newMatrixWorker(t, w)
			defer m.close()
			for {
				i := int(next.Add(1)-1) * stride
				if i >= len(all) || t.Failed() {
					break
				}
				if err := m.run(i, all[i]); err != nil {
					t.Errorf("scenario %d (%s): %v", i, all[i], err)
					return
				}
				ran.Add(1)
			}
			m.verify(t)
		})
	}
	wg.Wait()
	t.Logf("%d scenarios (stride %d) on %d workers", ran.Load(), stride, workers)
}

// matrixWorker runs scenarios one after another on its own database, engine and clock.
type matrixWorker struct {
	db      *sqlite.DB
	eng     *engine.Engine
	clock   *manualClock
	channel *fakeChannel
	pay     *engine.Payments
	expirer *engine.Expirer
}

func newMatrixWorker(t *testing.T, n int) *matrixWorker {
	return newMatrixWorkerWith(t, n, engine.Config{})
}

func newMatrixWorkerWith(t *testing.T, n int, cfg engine.Config) *matrixWorker {
	// synchronous=NORMAL: what is under test is the logic of the payment commands, not
	// durability (the crash test owns that), and a fsync per commit would make the full
	// matrix take minutes.
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), fmt.Sprintf("matrix%d.db", n)), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	clock := &manualClock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	eng := engine.New(db, clock, cfg)
	ch := newFakeChannel()
	pay := &engine.Payments{Engine: eng, Reader: db, Clock: clock, Channels: map[string]ordercore.Channel{matrixChannel: ch}}
	return &matrixWorker{db: db, eng: eng, clock: clock, channel: ch, pay: pay,
		expirer: &engine.Expirer{Engine: eng, Reader: db, Clock: clock, Payments: pay}}
}

func (m *matrixWorker) close() { m.eng.Close(); m.db.Close() }

func (m *matrixWorker) verify(t *testing.T) {
	snap, err := m.db.Dump(context.Background())
	if err != nil {
		t.Error(err)
		return
	}
	for _, v := range verify.Check(snap, m.clock.Now()) {
		t.Errorf("verify: %s", v)
	}
}

func (m *matrixWorker) submit(cmd engine.Command) (any, error) {
	res, err := m.eng.Submit(context.Background(), cmd, nil)
	return res.Value, err
}

// note is one channel notification of a scenario.
type note struct {
	id     string
	pay    *ordercore.ChannelPayment
	refund *ordercore.ChannelRefund
}

func (m *matrixWorker) run(i int, s scenario) error {
	ctx := context.Background()
	sku := "sku-" + strconv.Itoa(i)
	if _, err := m.submit(engine.CreateSKU{ID: sku, Name: sku, Price: ordercore.Money{Amount: 1000, Currency: "USD"}, Stock: 1}); err != nil {
		return err
	}
	v, err := m.submit(engine.PlaceOrder{UserID: "shopper", Lines: []engine.LineRequest{{SKU: sku, Quantity: 1}}})
	if err != nil {
		return err
	}
	o := v.(ordercore.Order)
	res, err := m.pay.Pay(ctx, o.ID, matrixChannel, nil)
	if err != nil {
		return fmt.Errorf("pay: %w", err)
	}
	a1 := res.Value.(ordercore.Payment).ID
	ch := m.channel
	var notes []note
	pending := func(id string) note {
		return note{id: id + "/pending", pay: &ordercore.ChannelPayment{OutTradeNo: id, Status: ordercore.PaymentPending, Amount: o.Amount}}
	}
	paid := func(id string) note {
		return note{id: id + "/succeeded", pay: &ordercore.ChannelPayment{OutTradeNo: id, Status: ordercore.PaymentSucceeded, Amount: o.Amount, TxnID: "txn-" + id}}
	}
	var a2 string
	switch s.flow.name {
	case "twice":
		// The shopper reopens payment: a1 is closed at the channel, a2 issued; both get
		// paid anyway (two tabs).
		res, err := m.pay.Pay(ctx, o.ID, matrixChannel, nil)
		if err != nil {
			return fmt.Errorf("second pay: %w", err)
		}
		a2 = res.Value.(ordercore.Payment).ID
	case "refunds":
		// Paid, learnt by the sync's query; then two refunds are requested and sent; the
		// channel settles them, and the notifications of all this arrive in any order.
		ch.set(a1, ordercore.PaymentSucceeded, o.Amount)
		if err := m.settle(o.ID, 3); err != nil {
			return err
		}
		part := o.Amount.Amount * 4 / 10
		for _, amt := range []int64{part, o.Amount.Amount - part} {
			if _, err := m.submit(engine.RequestRefund{OrderID: o.ID, Amount: ordercore.Money{Amount: amt, Currency: o.Amount.Currency}}); err != nil {
				return fmt.Errorf("refund: %w", err)
			}
		}
		if _, err := m.pay.Sync(ctx); err != nil {
			return err
		}
	}
	if s.after {
		m.clock.Advance(16 * time.Minute)
		if _, err := m.expirer.Sweep(ctx); err != nil {
			return err
		}
		if s.stockGone {
			// The released unit sells to someone else (it is not there if the order was paid).
			m.submit(engine.PlaceOrder{UserID: "other", Lines: []engine.LineRequest{{SKU: sku, Quantity: 1}}})
		}
	}
	// What happened at the channel (after our close, when the scenario is "after": the
	// shopper paid in the last second anyway).
	switch s.flow.name {
	case "succeed":
		ch.set(a1, ordercore.PaymentSucceeded, o.Amount)
		notes = []note{pending(a1), paid(a1)}
	case "close":
		ch.set(a1, ordercore.PaymentClosed, o.Amount)
		notes = []note{pending(a1), {id: a1 + "/closed", pay: &ordercore.ChannelPayment{OutTradeNo: a1, Status: ordercore.PaymentClosed, Amount: o.Amount}}}
	case "fail":
		ch.set(a1, ordercore.PaymentFailed, o.Amount)
		notes = []note{pending(a1), {id: a1 + "/failed", pay: &ordercore.ChannelPayment{OutTradeNo: a1, Status: ordercore.PaymentFailed, Amount: o.Amount}}}
	case "twice":
		ch.set(a1, ordercore.PaymentSucceeded, o.Amount)
		ch.set(a2, ordercore.PaymentSucceeded, o.Amount)
		notes = []note{pending(a2), paid(a1), paid(a2)}
	case "refunds":
		notes = []note{pending(a1), paid(a1)}
		for _, r := range ch.refundsOf(a1) {
			ch.settleRefund(r.OutRefundNo)
			r.Status = ordercore.RefundSucceeded
			notes = append(notes, note{id: r.OutRefundNo + "/succeeded", refund: &r})
		}
		if len(notes) != 4 {
			return fmt.Errorf("channel has %d refunds of %s, want 2", len(notes)-2, a1)
		}
	}
	for _, k := range s.perm {
		if s.loss&(1<<k) != 0 {
			continue
		}
		copies := 1
		if s.dup&(1<<k) != 0 {
			copies = 2
		}
		if err := m.deliver(notes[k], copies); err != nil {
			return fmt.Errorf("deliver %s: %w", notes[k].id, err)
		}
	}
	if err := m.settle(o.ID, 60); err != nil {
		return err
	}
	return m.check(o, s)
}

// deliver hands a notification to the engine copies times at once, as a channel's
// retries and duplicates do; every copy must be acknowledged.
func (m *matrixWorker) deliver(n note, copies int) error {
	body, err := json.Marshal(n)
	if err != nil {
		return err
	}
	errs := make([]error, copies)
	var wg sync.WaitGroup
	for c := range copies {
		wg.Go(func() { _, _, errs[c] = m.pay.Notify(context.Background(), matrixChannel, nil, body) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// settle runs the clock forward through the sync schedules, the expiry and the refund
// sends until the order needs nothing more (or rounds run out).
func (m *matrixWorker) settle(orderID string, rounds int) error {
	ctx := context.Background()
	for range rounds {
		o, err := m.db.Order(ctx, orderID)
		if err != nil {
			return err
		}
		ps, rs, err := m.db.OrderPayments(ctx, orderID)
		if err != nil {
			return err
		}
		next := time.Time{}
		consider := func(t time.Time) {
			if !t.IsZero() && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
		for _, p := range ps {
			consider(p.NextSyncAt)
		}
		for _, r := range rs {
			consider(r.NextSyncAt)
		}
		if o.Status == ordercore.OrderPendingPayment {
			consider(o.ExpiresAt)
		}
		if next.IsZero() {
			return nil
		}
		if d := next.Sub(m.clock.Now()); d > 0 {
			m.clock.Advance(d)
		}
		if _, err := m.pay.Sync(ctx); err != nil {
			return err
		}
		if _, err := m.expirer.Sweep(ctx); err != nil {
			return err
		}
	}
	return fmt.Errorf("order %s still has work due after %d rounds", orderID, rounds)
}

// check asserts what must hold for the scenario's order once settled.
func (m *matrixWorker) check(o ordercore.Order, s scenario) error {
	ctx := context.Background()
	got, err := m.db.Order(ctx, o.ID)
	if err != nil {
		return err
	}
	ps, rs, err := m.db.OrderPayments(ctx, o.ID)
	if err != nil {
		return err
	}
	kept, accepted := int64(0), 0
	for _, p := range ps {
		trade, ok := m.channel.trade(p.ID)
		if ok && trade.Status == ordercore.PaymentSucceeded {
			// Zero lost successes: the channel took the money, so we recorded it.
			if p.Status != ordercore.PaymentSucceeded || p.Captured != trade.Amount.Amount {
				return fmt.Errorf("payment %s: channel took %s, ordercore has %s with %d captured", p.ID, trade.Amount, p.Status, p.Captured)
			}
		} else if p.Status == ordercore.PaymentSucceeded {
			return fmt.Errorf("payment %s succeeded in ordercore but not at the channel", p.ID)
		}
		if p.Status.Open() {
			return fmt.Errorf("payment %s left %s", p.ID, p.Status)
		}
		if p.Accepted {
			accepted++
		}
		if !p.Accepted && p.Refunding+p.Refunded != p.Captured {
			return fmt.Errorf("payment %s is not the order's but keeps %d of its %d", p.ID, p.Captured-p.Refunded-p.Refunding, p.Captured)
		}
		kept += p.Captured - p.Refunded
	}
	for _, r := range rs {
		if r.Status != ordercore.RefundSucceeded {
			return fmt.Errorf("refund %s left %s", r.ID, r.Status)
		}
	}
	// Zero double captures: the order keeps exactly one payment's money, or none.
	want := int64(0)
	switch got.Status {
	case ordercore.OrderPaid:
		want = o.Amount.Amount
		if accepted != 1 {
			return fmt.Errorf("order paid with %d accepted payments", accepted)
		}
	case ordercore.OrderCancelled:
		if accepted != 0 {
			return fmt.Errorf("order cancelled with %d accepted payments", accepted)
		}
	case ordercore.OrderRefunded:
	default:
		return fmt.Errorf("order left %s", got.Status)
	}
	if kept != want {
		return fmt.Errorf("order %s keeps %d, want %d", got.Status, kept, want)
	}
	// What each flow must end in.
	wantStatus := map[string]ordercore.OrderStatus{"succeed": ordercore.OrderPaid, "close": ordercore.OrderCancelled,
		"fail": ordercore.OrderCancelled, "twice": ordercore.OrderPaid, "refunds": ordercore.OrderRefunded}[s.flow.name]
	if s.after && s.stockGone && (s.flow.name == "succeed" || s.flow.name == "twice") {
		wantStatus = ordercore.OrderCancelled // late money, stock gone: refunded, not revived
	}
	if got.Status != wantStatus {
		return fmt.Errorf("order is %s, want %s", got.Status, wantStatus)
	}
	return nil
}

// Advance moves a manualClock (prune_test.go) forward.
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeChannel is a channel whose trades the test sets: it answers queries and closes from
// them like a real channel (a paid trade cannot be closed), takes refunds as pending and
// settles them when told, and parses notifications the test wrote.
type fakeChannel struct {
	mu      sync.Mutex
	trades  map[string]*ordercore.ChannelPayment
	refunds map[string]*ordercore.ChannelRefund
	order   []string // refund numbers in the order they were made
	// queryFaults fails the next payment queries with an unknown outcome (a 500 or a
	// timeout at the channel).
	queryFaults int
	// onQuery, if set, runs while a payment query is out, before the channel answers.
	onQuery func(no string)
}

// failQueries makes the next n payment queries fail with an unknown outcome.
func (f *fakeChannel) failQueries(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queryFaults = n
}

func newFakeChannel() *fakeChannel {
	return &fakeChannel{trades: map[string]*ordercore.ChannelPayment{}, refunds: map[string]*ordercore.ChannelRefund{}}
}

func (f *fakeChannel) set(no string, s ordercore.PaymentStatus, amount ordercore.Money) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.trades[no]
	if t == nil {
		t = &ordercore.ChannelPayment{OutTradeNo: no}
		f.trades[no] = t
	}
	t.Status, t.Amount = s, amount
	if s == ordercore.PaymentSucceeded {
		t.TxnID = "txn-" + no
	}
}

func (f *fakeChannel) trade(no string) (ordercore.ChannelPayment, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.trades[no]
	if !ok {
		return ordercore.ChannelPayment{}, false
	}
	return *t, true
}

func (f *fakeChannel) refundsOf(no string) []ordercore.ChannelRefund {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ordercore.ChannelRefund
	for _, id := range f.order {
		if r := f.refunds[id]; r.OutTradeNo == no {
			out = append(out, *r)
		}
	}
	return out
}

func (f *fakeChannel) settleRefund(no string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refunds[no].Status = ordercore.RefundSucceeded
}

func (f *fakeChannel) Name() string { return matrixChannel }

func (f *fakeChannel) CreatePayment(_ context.Context, req ordercore.PaymentRequest) (ordercore.PaymentInstructions, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.trades[req.OutTradeNo]; !ok {
		f.trades[req.OutTradeNo] = &ordercore.ChannelPayment{OutTradeNo: req.OutTradeNo, Status: ordercore.PaymentPending, Amount: req.Amount}
	}
	return ordercore.PaymentInstructions{RedirectURL: "https://fake.test/pay/" + req.OutTradeNo}, nil
}

func (f *fakeChannel) QueryPayment(_ context.Context, no string) (ordercore.ChannelPayment, error) {
	f.mu.Lock()
	fault := f.queryFaults > 0
	if fault {
		f.queryFaults--
	}
	hook := f.onQuery
	f.mu.Unlock()
	if hook != nil {
		hook(no)
	}
	if fault {
		return ordercore.ChannelPayment{}, errors.Join(ordercore.ErrOutcomeUnknown, errors.New("injected: status 500"))
	}
	t, ok := f.trade(no)
	if !ok {
		return t, ordercore.ErrTradeNotFound
	}
	return t, nil
}

func (f *fakeChannel) ClosePayment(_ context.Context, no string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.trades[no]
	switch {
	case !ok:
		return ordercore.ErrTradeNotFound
	case t.Status == ordercore.PaymentSucceeded:
		return ordercore.ErrTradePaid
	}
	t.Status = ordercore.PaymentClosed
	return nil
}

func (f *fakeChannel) Refund(_ context.Context, req ordercore.RefundRequest) (ordercore.ChannelRefund, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.refunds[req.OutRefundNo]
	if !ok {
		r = &ordercore.ChannelRefund{OutTradeNo: req.OutTradeNo, OutRefundNo: req.OutRefundNo, RefundID: "rf-" + req.OutRefundNo,
			Status: ordercore.RefundPending, Amount: req.Amount}
		f.refunds[req.OutRefundNo] = r
		f.order = append(f.order, req.OutRefundNo)
	}
	// Refunds the test did not write notifications for (the automatic ones) settle at
	// the channel at once; their only way back to ordercore is the query.
	if tr := f.trades[req.OutTradeNo]; tr != nil && !isRequested(req.Reason) {
		r.Status = ordercore.RefundSucceeded
		return ordercore.ChannelRefund{OutTradeNo: r.OutTradeNo, OutRefundNo: r.OutRefundNo, RefundID: r.RefundID, Status: ordercore.RefundPending, Amount: r.Amount}, nil
	}
	return *r, nil
}

// isRequested tells the merchant's refunds (no reason in the matrix) from automatic ones.
func isRequested(reason string) bool { return reason == "" }

func (f *fakeChannel) QueryRefund(_ context.Context, _, no string) (ordercore.ChannelRefund, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.refunds[no]
	if !ok {
		return ordercore.ChannelRefund{}, ordercore.ErrTradeNotFound
	}
	return *r, nil
}

func (f *fakeChannel) ParseNotification(_ http.Header, body []byte, _ time.Time) (ordercore.Notification, error) {
	var n note
	if err := json.Unmarshal(body, &n); err != nil {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "%v", err)
	}
	return ordercore.Notification{EventID: n.id, Payment: n.pay, Refund: n.refund}, nil
}

func (f *fakeChannel) Ack(w http.ResponseWriter) { w.WriteHeader(http.StatusOK) }

// note's JSON form, for the fake's notifications.
func (n note) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID     string                    `json:"id"`
		Pay    *ordercore.ChannelPayment `json:"pay,omitempty"`
		Refund *ordercore.ChannelRefund  `json:"refund,omitempty"`
	}{n.id, n.pay, n.refund})
}

func (n *note) UnmarshalJSON(b []byte) error {
	var v struct {
		ID     string                    `json:"id"`
		Pay    *ordercore.ChannelPayment `json:"pay,omitempty"`
		Refund *ordercore.ChannelRefund  `json:"refund,omitempty"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	n.id, n.pay, n.refund = v.ID, v.Pay, v.Refund
	return nil
}
