package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ordercore/cli"
)

// Bounds of the crash test.
const (
	crashIterationsDefault = 50
	crashIterationsShort   = 5
	// The kill comes uniformly within [killDelayMin, killDelayMax] after the load starts.
	killDelayMin = 20 * time.Millisecond
	killDelayMax = 300 * time.Millisecond
	// One restart in startKillOneIn is itself killed, startKillDelayMax at most after
	// exec: while it recovers the WAL and migrates, or soon after it starts serving.
	startKillOneIn    = 4
	startKillDelayMax = 100 * time.Millisecond
	// listPagesMax bounds the pages read to list one user's orders.
	listPagesMax = 100
	// checkParallel bounds the concurrent GETs of a check.
	checkParallel = 8
	// errorsShownMax bounds the errors reported from one check; the rest are counted.
	errorsShownMax = 20
)

// crashServeArgs are the flags of `ordercore serve` besides --addr and --data.
var crashServeArgs = []string{"--manual-payments", "--log-level", "warn"}

// Environment knobs of the crash test.
const (
	envIterations = "ORDERCORE_CRASH_ITERATIONS" // iterations (default 50; 5 with -short)
	envSeed       = "ORDERCORE_CRASH_SEED"       // seed of the workload and the kill delays
)

// TestCrashKill9 is P5's acceptance test: a request answered 2xx survives kill -9 of the
// server at any moment. Each iteration starts `ordercore serve` on one data directory,
// loads it with concurrent orders, payments and cancels, and SIGKILLs it after a random
// delay; the next start then checks, over HTTP, every acknowledged effect against the
// harness's log:
//   - every order answered 201 exists with the same amount and lines, and every order of
//     a user is one that was acknowledged or was in flight at the kill (a 409 created
//     nothing; an Idempotency-Key never made two orders);
//   - every acknowledged payment or cancel shows, and unacknowledged ones either did or
//     did not happen, whole (status, reservations and version agree);
//   - the hot SKU holds at least the units of acknowledged live orders and at most those
//     plus the in-flight ones, and after settling the in-flight requests every SKU's
//     reserved and sold equal the sums over the orders that exist;
//   - a request with an Idempotency-Key that got no answer, retried with the same key and
//     body, is answered 2xx; replayed if its first attempt had been answered.
//
// One restart in startKillOneIn is itself killed while it opens the database or just
// after. The run ends with a full check of every order, a graceful stop (exit code 0) and
// `ordercore verify` on the database.
// The interleaving of requests is up to the scheduler; the seed fixes the workload and
// the kill delays.
func TestCrashKill9(t *testing.T) {
	iterations := crashIterations(t)
	seed := crashSeed(t)
	dir := crashDataDir(t)
	t.Logf("crash: %d iterations, seed %d (rerun with %s=%d), data %s", iterations, seed, envSeed, seed, dir)
	started := time.Now()
	run := &crashRun{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0)), cat: newCatalog(), byID: map[string]*orderModel{}}
	var last *iteration
	for i := range iterations {
		if last != nil && run.rng.IntN(startKillOneIn) == 0 {
			run.killDuringStart(dir)
		}
		s := startServer(t, dir, crashServeArgs...)
		if last == nil {
			run.cat.create(t, s.api)
		} else {
			run.recover(s.api, last)
		}
		run.stopIfFailed(s, last)
		last = run.load(s, i)
		run.stopIfFailed(s, last)
	}
	s := startServer(t, dir, crashServeArgs...)
	run.recover(s.api, last)
	run.checkOrders(s.api, run.orders)
	run.checkStock(s.api)
	run.stopIfFailed(s, last)
	if code, err := s.stop(); err != nil || code != 0 {
		t.Errorf("graceful stop (SIGTERM): exit code %d, err %v; output:\n%s", code, err, s.output)
	}
	run.verify(filepath.Join(dir, "ordercore.db"))
	t.Logf("crash: %d iterations in %v: %s", iterations, time.Since(started).Round(time.Millisecond), run.totals)
}

func crashIterations(t *testing.T) int {
	if v := os.Getenv(envIterations); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive integer", envIterations, v)
		}
		return n
	}
	if testing.Short() {
		return crashIterationsShort
	}
	return crashIterationsDefault
}

func crashSeed(t *testing.T) uint64 {
	if v := os.Getenv(envSeed); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", envSeed, v, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// crashDataDir is one data directory for the whole test, kept if the test fails so the
// database can be examined.
func crashDataDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "ordercore-crash-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("data directory kept for inspection: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// crashRun is the harness's state across iterations.
type crashRun struct {
	t      *testing.T
	seed   uint64
	rng    *rand.Rand // kill delays
	cat    *catalog
	orders []*orderModel // every order known to exist, in the order learned
	byID   map[string]*orderModel
	totals crashTotals
}

type crashTotals struct {
	acked, ackedKey, rejected, paid, cancelled  int
	unanswered, retried, replayed, discovered   int
	retriedNoStock, startKills, startKillsEarly int
	hotHeld                                     int64
}

func (c crashTotals) String() string {
	return fmt.Sprintf("%d orders acknowledged (%d with Idempotency-Key), %d insufficient_stock, %d paid, %d cancelled; "+
		"%d restarts killed during startup (%d before /healthz answered); %d requests cut off by kills: %d retried by key (%d replayed, %d refused for stock), %d found committed; hot SKU ends with %d/%d units held",
		c.acked, c.ackedKey, c.rejected, c.paid, c.cancelled, c.startKills, c.startKillsEarly, c.unanswered, c.retried, c.replayed, c.retriedNoStock, c.discovered, c.hotHeld, hotStock)
}

// iteration is one load-and-kill.
type iteration struct {
	n         int
	killAfter time.Duration
	logs      []*workerLog
	server    *server // the killed child, for its output
}

// touched lists, once each, the orders the iteration placed or tried to move.
func (it *iteration) touched() []*orderModel {
	seen := map[*orderModel]bool{}
	var out []*orderModel
	for _, l := range it.logs {
		for _, o := range slices.Concat(l.placed, l.moved) {
			if !seen[o] {
				seen[o] = true
				out = append(out, o)
			}
		}
	}
	return out
}

// load runs the workers against s and kills s with SIGKILL after a random delay.
func (r *crashRun) load(s *server, n int) *iteration {
	it := &iteration{n: n, server: s, killAfter: killDelayMin + time.Duration(r.rng.Int64N(int64(killDelayMax-killDelayMin)+1))}
	var stop atomic.Bool
	var wg sync.WaitGroup
	workers := make([]*worker, crashWorkers)
	for g := range workers {
		user := fmt.Sprintf("crash-i%03d-w%02d", n, g)
		workers[g] = &worker{log: workerLog{user: user}, rng: rand.New(rand.NewPCG(r.seed, uint64(n+1)<<8|uint64(g))),
			api: s.api, cat: r.cat, stop: &stop, keyBase: fmt.Sprintf("%s-%d-", user, r.seed)}
	}
	// Unpaid orders of earlier iterations are shared out, each to one worker, so that
	// acknowledged moves of orders placed before earlier crashes are tested too.
	g := 0
	for _, o := range r.orders {
		if o.status == statusPending {
			workers[g%crashWorkers].unpaid = append(workers[g%crashWorkers].unpaid, o)
			g++
		}
	}
	for _, w := range workers {
		wg.Go(w.run)
	}
	time.Sleep(it.killAfter)
	stop.Store(true) // requests already sent are in flight when the kill lands
	if err := s.kill(); err != nil {
		r.t.Fatalf("iteration %d: %v", n, err)
	}
	wg.Wait()
	for _, w := range workers {
		it.logs = append(it.logs, &w.log)
	}
	r.absorb(it)
	return it
}

// killDuringStart starts a child and SIGKILLs it after a random delay, healthy or not: a
// crash while the server opens the database must lose nothing either. The checks after the
// next, normal start cover it.
func (r *crashRun) killDuringStart(dir string) {
	delay := time.Duration(r.rng.Int64N(int64(startKillDelayMax) + 1))
	s, healthy, err := spawnServer(dir, delay, crashServeArgs...)
	if err != nil {
		r.t.Fatalf("start to kill during startup: %v", err)
	}
	if err := s.kill(); err != nil {
		r.t.Fatal(err)
	}
	if st := s.state; st.Exited() && !errorsAddrInUse(s) {
		r.t.Fatalf("child exited by itself (%v) during startup; output:\n%s", st, s.output)
	}
	r.totals.startKills++
	if !healthy {
		r.totals.startKillsEarly++
	}
}

// absorb adds an iteration's acknowledged orders to the model and marks the orders whose
// payment or cancel was cut off as possibly moved.
func (r *crashRun) absorb(it *iteration) {
	var errs []string
	for _, l := range it.logs {
		for _, o := range l.placed {
			r.add(o)
		}
		r.totals.acked += len(l.placed)
		r.totals.ackedKey += l.placedKey
		r.totals.rejected += l.rejected
		r.totals.paid += l.paid
		r.totals.cancelled += l.cancelled
		if f := l.unanswered; f != nil {
			r.totals.unanswered++
			if f.op != opPlace {
				f.order.maybe = append(f.order.maybe, f.target())
			}
		}
		errs = append(errs, l.errs...)
	}
	r.report(fmt.Sprintf("iteration %d: answers that break the API contract", it.n), errs)
}

func (r *crashRun) add(o *orderModel) {
	if _, ok := r.byID[o.id]; ok {
		r.t.Errorf("order id %s was handed out twice", o.id)
		return
	}
	r.byID[o.id] = o
	r.orders = append(r.orders, o)
}

// recover runs after the restart that follows the kill of it: it checks what survived,
// settles every request the kill cut off, and checks the stock against the model.
func (r *crashRun) recover(a *api, it *iteration) {
	lo, held, hi := r.checkHotBounds(a, it)
	retried, replayed, discovered := r.totals.retried, r.totals.replayed, r.totals.discovered
	for _, l := range it.logs {
		r.retry(a, l)
	}
	for _, l := range it.logs {
		r.discover(a, l)
	}
	r.checkOrders(a, it.touched())
	r.checkStock(a)
	var placed, rejected, unanswered int
	for _, l := range it.logs {
		placed, rejected = placed+len(l.placed), rejected+l.rejected
		if l.unanswered != nil {
			unanswered++
		}
	}
	r.t.Logf("iteration %2d: killed after %3dms: %3d orders acknowledged, %3d insufficient_stock, %2d cut off; "+
		"after restart: %d retried by key (%d replayed), %d found committed, hot SKU holds %d in [%d, %d]",
		it.n, it.killAfter.Milliseconds(), placed, rejected, unanswered,
		r.totals.retried-retried, r.totals.replayed-replayed, r.totals.discovered-discovered, held, lo, hi)
}

// checkHotBounds checks the hot SKU before anything is retried: it holds (reserved+sold)
// at least the units of acknowledged orders that are not cancelled and have no cancel in
// flight, and at most those plus the units of the orders in flight.
func (r *crashRun) checkHotBounds(a *api, it *iteration) (lo, held, hi int64) {
	for _, o := range r.orders {
		n := o.units(hotSKU)
		if n == 0 || o.status == statusCancelled {
			continue
		}
		hi += n
		if !slices.Contains(o.maybe, statusCancelled) {
			lo += n
		}
	}
	for _, l := range it.logs {
		if f := l.unanswered; f != nil && f.op == opPlace {
			hi += (&orderModel{lines: f.place.Lines}).units(hotSKU)
		}
	}
	var s wireSKU
	if err := a.getJSON("/v1/skus/"+hotSKU, &s); err != nil {
		r.t.Errorf("iteration %d: %v", it.n, err)
		return lo, -1, hi
	}
	held = s.Reserved + s.Sold
	if held < lo || held > hi {
		r.t.Errorf("iteration %d: hot SKU holds %d units (reserved %d + sold %d); acknowledged live orders hold %d and %d more were in flight",
			it.n, held, s.Reserved, s.Sold, lo, hi-lo)
	}
	r.totals.hotHeld = held
	return lo, held, hi
}

// retry resends a request with an Idempotency-Key that the kill cut off, with the same
// key and body. It must be answered 2xx, replayed or fresh; if the first attempt's status
// line had arrived, its effect was committed and the answer must be a replay. The one
// exception: a fresh attempt at an order of the hot SKU may find it sold out.
func (r *crashRun) retry(a *api, l *workerLog) {
	f := l.unanswered
	if f == nil || f.key == "" {
		return
	}
	method, path, body := f.request()
	rep, err := a.do(method, path, body, f.key)
	if err != nil {
		r.t.Errorf("%s: retry of %s %s with Idempotency-Key %s after restart got no answer: %v", l.user, method, path, f.key, err)
		return
	}
	r.totals.retried++
	if rep.replayed {
		r.totals.replayed++
	}
	if f.status != 0 && !rep.replayed {
		r.t.Errorf("%s: %s %s (key %s) was answered %d before the kill, but its retry was executed afresh: %s", l.user, method, path, f.key, f.status, rep)
	}
	if f.op != opPlace {
		if err := checkMoved(rep, f.order, f.target(), r.cat); err != nil {
			r.t.Errorf("%s: retry of %s %s (key %s): %v", l.user, method, path, f.key, err)
			return
		}
		f.order.status, f.order.maybe = f.target(), nil
		return
	}
	if rep.status == http.StatusConflict && rep.problem().Code == codeNoStock && !rep.replayed &&
		(&orderModel{lines: f.place.Lines}).units(hotSKU) > 0 {
		// The first attempt never committed and the hot SKU has run out since: a fresh
		// attempt is rightly refused, and discover checks that no order exists for it.
		r.totals.retriedNoStock++
		return
	}
	if rep.status != http.StatusCreated {
		r.t.Errorf("%s: retry of POST /v1/orders %+v (key %s): want 201, got %s", l.user, f.place, f.key, rep)
		return
	}
	o, err := r.cat.orderFrom(f.place, rep.body)
	if err != nil {
		r.t.Errorf("%s: retry of POST /v1/orders (key %s): %v", l.user, f.key, err)
		return
	}
	l.placed = append(l.placed, o)
	r.add(o)
}

// discover lists a user's orders: every acknowledged one must be there, and any other
// must be the one order whose request the kill cut off (no key: no retry told us its id).
// Such an order is adopted into the model.
func (r *crashRun) discover(a *api, l *workerLog) {
	listed, err := a.ordersOfUser(l.user, listPagesMax)
	if err != nil {
		r.t.Errorf("%s: %v", l.user, err)
		return
	}
	seen := map[string]bool{}
	var extra []wireOrder
	for _, o := range listed {
		if m, ok := r.byID[o.ID]; ok && m.user == l.user {
			seen[o.ID] = true
			continue
		}
		extra = append(extra, o)
	}
	for _, m := range l.placed {
		if !seen[m.id] {
			r.t.Errorf("%s: order %s, answered 201, is missing from GET /v1/orders?user_id=%s", l.user, m.id, l.user)
		}
	}
	f := l.unanswered
	mayExist := f != nil && f.op == opPlace && f.key == ""
	switch {
	case len(extra) == 0 && mayExist && f.status == http.StatusCreated:
		r.t.Errorf("%s: POST /v1/orders %+v was answered 201 (body cut off by the kill) but no such order exists", l.user, f.place)
	case len(extra) == 0:
	case len(extra) > 1 || !mayExist:
		r.t.Errorf("%s: %d orders exist that were never acknowledged (in flight at the kill: %v): %+v", l.user, len(extra), describe(f), extra)
	default:
		m := &orderModel{id: extra[0].ID, user: l.user, lines: f.place.Lines, amount: r.cat.amountOf(f.place.Lines), status: statusPending}
		if err := m.matches(extra[0], r.cat); err != nil || extra[0].Status != statusPending {
			r.t.Errorf("%s: the order committed for the cut-off POST /v1/orders %+v is not what was asked for (status %s): %v", l.user, f.place, extra[0].Status, err)
			return
		}
		l.placed = append(l.placed, m)
		r.add(m)
		r.totals.discovered++
	}
}

func describe(f *inflight) string {
	if f == nil {
		return "nothing"
	}
	method, path, _ := f.request()
	return fmt.Sprintf("%s %s key %q", method, path, f.key)
}

// checkOrders GETs each order and compares it with the model. The status must be the
// known one or one an unanswered request may have reached; it then becomes the known one.
func (r *crashRun) checkOrders(a *api, orders []*orderModel) {
	var mu sync.Mutex
	var errs []string
	forEach(orders, checkParallel, func(m *orderModel) {
		var o wireOrder
		err := a.getJSON("/v1/orders/"+m.id, &o)
		if err == nil {
			err = m.matches(o, r.cat)
		}
		if err == nil && o.Status != m.status && !slices.Contains(m.maybe, o.Status) {
			err = fmt.Errorf("order %s is %s; acknowledged as %s (unacknowledged requests could have made it %v)", m.id, o.Status, m.status, m.maybe)
		}
		if err != nil {
			mu.Lock()
			errs = append(errs, err.Error())
			mu.Unlock()
			return
		}
		m.status, m.maybe = o.Status, nil
	})
	r.report(fmt.Sprintf("%d orders checked", len(orders)), errs)
}

// checkStock compares every SKU with the model: total as created, reserved and sold the
// sums over the unpaid and paid orders that exist.
func (r *crashRun) checkStock(a *api) {
	reserved, sold := map[string]int64{}, map[string]int64{}
	for _, o := range r.orders {
		for _, l := range o.lines {
			switch o.status {
			case statusPending:
				reserved[l.SKU] += l.Quantity
			case statusPaid:
				sold[l.SKU] += l.Quantity
			}
		}
	}
	var errs []string
	for _, id := range r.cat.ids {
		var s wireSKU
		if err := a.getJSON("/v1/skus/"+id, &s); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		got := [4]int64{s.Total, s.Reserved, s.Sold, s.Available}
		want := [4]int64{r.cat.stock[id], reserved[id], sold[id], r.cat.stock[id] - reserved[id] - sold[id]}
		if got != want {
			errs = append(errs, fmt.Sprintf("sku %s: [total reserved sold available] = %v, the orders that exist make %v", id, got, want))
		}
	}
	r.report("stock", errs)
}

// verify runs `ordercore verify` on the database, as an operator would after a crash.
func (r *crashRun) verify(dbPath string) {
	var out, errb bytes.Buffer
	if code := cli.Main(r.t.Context(), []string{"verify", "--db", dbPath}, &out, &errb); code != 0 {
		r.t.Errorf("ordercore verify --db %s exited %d:\n%s%s", dbPath, code, out.String(), errb.String())
	}
}

func (r *crashRun) report(what string, errs []string) {
	if len(errs) == 0 {
		return
	}
	shown := errs[:min(len(errs), errorsShownMax)]
	r.t.Errorf("%s: %d problems:\n%s", what, len(errs), strings.Join(shown, "\n"))
}

// stopIfFailed ends the test at the first iteration that failed, with the output of the
// children involved, since later iterations would only repeat the damage.
func (r *crashRun) stopIfFailed(s *server, it *iteration) {
	if !r.t.Failed() {
		return
	}
	if it != nil && it.server != s {
		r.t.Logf("output of the child killed in iteration %d:\n%s", it.n, it.server.output)
	}
	r.t.Logf("output of the current child:\n%s", s.output)
	r.t.FailNow()
}

// forEach calls fn on every item from at most n goroutines.
func forEach[T any](items []T, n int, fn func(T)) {
	ch := make(chan T)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for it := range ch {
				fn(it)
			}
		})
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
}
