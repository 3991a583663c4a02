package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ordercore"
	"ordercore/channel/sim"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
)

// Notify path names: how a channel notification reaches POST /v1/channels/sim/notify.
const (
	// PathNotify posts one signed trade.succeeded notification per prepared payment
	// attempt, each distinct: verified, applied through the committer (the order becomes
	// paid), acknowledged after the commit.
	PathNotify = "notify"
	// PathNotifyDup posts every notification twice: the second is the same event again
	// (a channel's retry), verified, found in the inbox and acknowledged with no change.
	PathNotifyDup = "notify-dup"
	// PathNotifyForged posts notifications signed with a wrong secret: rejected with 401
	// before any state is read.
	PathNotifyForged = "notify-forged"
	// PathPlaceOrder is the reference measured in the same run: POST /v1/orders over HTTP
	// on one hot SKU, the http/hot figure of `ordercore bench place-order`.
	PathPlaceOrder = "place-order"
)

// NotifyPaths lists every path of RunNotify in the order it measures them.
var NotifyPaths = []string{PathNotify, PathNotifyDup, PathNotifyForged, PathPlaceOrder}

// Defaults and bounds of NotifyConfig.
const (
	NotifyOrdersDefault = 100_000
	NotifyOrdersMax     = 2_000_000

	// notifyForgedOrders is how many real payment attempts the forged path's notifications
	// name (cycled): enough to show that a forgery for a real payment changes nothing.
	notifyForgedOrders = 1_000
	notifyChannel      = "sim"
	notifyMerchant     = "m_bench"
	notifySecret       = "whsec_bench_notify"
	notifyForgedSecret = "whsec_not_the_secret"
	notifyUser         = "bench-notify"
	// notifyOrderExpiresIn keeps every prepared order pending for the whole run: no expiry
	// sweep closes one under the benchmark.
	notifyOrderExpiresIn = limit.ExpiresInMax
	// notifySetupTimeout bounds preparing a path's orders and payment attempts.
	notifySetupTimeout = 10 * time.Minute
	// notifyUnreachable is the sim adapter's base URL: no channel call is made.
	notifyUnreachable = "http://127.0.0.1:1"
)

// notifyPaymentSync is the payment sync schedule of the benchmark's server: the first
// query of an open attempt is a day after it opened, so the sync (which would call the
// unreachable channel) never runs during a measurement.
var notifyPaymentSync = []time.Duration{24 * time.Hour}

// NotifyServerConfig is what the server of a notify path must be started with.
type NotifyServerConfig struct {
	// Dir is a fresh data directory.
	Dir string
	// Channel is the payment channel the server verifies notifications with, named "sim".
	Channel ordercore.Channel
	// PaymentSync is the payment sync schedule (app.Config.PaymentSync).
	PaymentSync []time.Duration
}

// NotifyServer is a running ordercore server: its base URL, its engine (the benchmark
// prepares orders and payment attempts through it and reads its committer's counters) and
// a function that stops it.
type NotifyServer struct {
	BaseURL string
	Engine  *engine.Engine
	Stop    func()
}

// NotifyConfig says what RunNotify measures and for how long.
type NotifyConfig struct {
	// Dir is a scratch directory; every path gets a fresh data directory in it, left
	// behind for inspection; the caller removes Dir.
	Dir string
	// Duration is the measured time of each path, after a warm-up of up to 0.5 s.
	Duration time.Duration
	// Clients is the number of concurrent HTTP connections.
	Clients int
	// Orders is how many orders, each with one open payment attempt, are prepared for the
	// notify path; notify-dup gets half as many (each takes two notifications). A path that
	// uses them all up ends its window early and says so.
	Orders int
	// Paths is the subset of NotifyPaths to run; empty runs all.
	Paths []string
	// Progress receives progress; nil discards it.
	Progress io.Writer
	// Serve starts an ordercore server configured as cfg says. Required.
	Serve func(ctx context.Context, cfg NotifyServerConfig) (NotifyServer, error)
	// HTTP starts a server for the place-order reference path (Config.HTTP); nil skips it.
	HTTP func(ctx context.Context, dir string) (HTTPServer, error)
}

func (c NotifyConfig) withDefaults() (NotifyConfig, error) {
	if c.Dir == "" {
		return c, errors.New("bench: NotifyConfig.Dir is required")
	}
	if c.Serve == nil {
		return c, errors.New("bench: NotifyConfig.Serve is required")
	}
	if c.Duration == 0 {
		c.Duration = DurationDefault
	}
	if c.Clients == 0 {
		c.Clients = ClientsDefault
	}
	if c.Orders == 0 {
		c.Orders = NotifyOrdersDefault
	}
	switch {
	case c.Duration < 0 || c.Duration > DurationMax:
		return c, fmt.Errorf("bench: duration must be in (0, %s], not %s", DurationMax, c.Duration)
	case c.Clients < 1 || c.Clients > ClientsMax:
		return c, fmt.Errorf("bench: clients must be 1..%d, not %d", ClientsMax, c.Clients)
	case c.Orders < 2 || c.Orders > NotifyOrdersMax:
		return c, fmt.Errorf("bench: orders must be 2..%d, not %d", NotifyOrdersMax, c.Orders)
	}
	for _, p := range c.Paths {
		if !slices.Contains(NotifyPaths, p) {
			return c, fmt.Errorf("bench: unknown path %q (known: %v)", p, NotifyPaths)
		}
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return c, fmt.Errorf("bench: scratch directory: %w", err)
	}
	return c, nil
}

func (c NotifyConfig) wants(path string) bool {
	return len(c.Paths) == 0 || slices.Contains(c.Paths, path)
}

func (c NotifyConfig) warmup() time.Duration { return min(warmupMax, c.Duration) }

// orders is how many orders a path prepares.
func (c NotifyConfig) orders(path string) int {
	switch path {
	case PathNotifyDup:
		return max(1, c.Orders/2)
	case PathNotifyForged:
		return min(c.Orders, notifyForgedOrders)
	}
	return c.Orders
}

// placeOrderConfig is the place-order benchmark's configuration for the reference path.
func (c NotifyConfig) placeOrderConfig() Config {
	return Config{Dir: c.Dir, Duration: c.Duration, Clients: c.Clients, SKUs: SKUsDefault, HTTP: c.HTTP, Progress: c.Progress}
}

// NotifyResult is the measurement of one notify path. The counts of the window (the
// figures) and of the whole run (what the database and the server's counters must match)
// are kept apart: warm-up and drain send notifications too.
type NotifyResult struct {
	Path string
	// Notifications counts the notifications answered as expected in the window: 200 for
	// fresh and duplicate ones, 401 for forged ones.
	Notifications int64
	Seconds       float64
	PerSecond     float64 // Notifications/Seconds
	// P50, P99 and P999 are latencies from send to answer over every notification of the
	// window; Fresh and Dup are the same split by kind (notify-dup only).
	P50, P99, P999 time.Duration
	Fresh, Dup     Latency
	// BatchP50, BatchMax, BatchMean and Busy are the committer's batches and busy share
	// over the window (zero when it committed nothing).
	BatchP50, BatchMax int
	BatchMean          float64
	Busy               float64
	Errors             int64 // notifications answered otherwise in the window
	Note               string

	// Orders is the number of orders prepared, each with one open payment attempt.
	Orders int
	// FreshAcked, DupAcked and ForgedRejected count the whole run, warm-up and drain
	// included.
	FreshAcked, DupAcked, ForgedRejected int64
	// Outcomes are the server's notification counters after the run (GET /v1/channels):
	// applied, duplicate_event, invalid_signature...
	Outcomes map[string]int64
	// Paid counts the prepared orders the read side (GET /v1/orders) shows paid after
	// the run; AckedNotPaid counts acknowledged fresh notifications whose order is not
	// paid (must be 0); PaidNotAcked counts paid orders whose notification was not
	// acknowledged (a request abandoned after the server committed it).
	Paid, AckedNotPaid, PaidNotAcked int64
	// Statuses counts the prepared orders by status on the read side.
	Statuses map[string]int64
	// Dir is the path's data directory (with its database).
	Dir string
}

// Latency is a set of latency percentiles; N is the number of samples behind them.
type Latency struct {
	N              int64
	P50, P99, P999 time.Duration
}

// NotifySummary is the part of the configuration a notify report prints.
type NotifySummary struct {
	JournalMode, Synchronous string
	BatchMax                 int
	BatchDelay               time.Duration
	QueueMax                 int
	Clients                  int
	Duration, Warmup         time.Duration
	Orders                   int // prepared for the notify path
	DupOrders                int
	ForgedOrders             int
	Tolerance                time.Duration
	PaymentSync              time.Duration
	Paths                    []string
	Skipped                  []string
}

// NotifyReport is the outcome of RunNotify.
type NotifyReport struct {
	Machine Machine
	Config  NotifySummary
	Results []NotifyResult
	// PlaceOrder is the place-order reference measured in the same run (POST /v1/orders,
	// hot SKU, the same clients), nil when not run.
	PlaceOrder *Result
	At         time.Time
}

// Result returns the result of a notify path.
func (r *NotifyReport) Result(path string) (NotifyResult, bool) {
	for _, res := range r.Results {
		if res.Path == path {
			return res, true
		}
	}
	return NotifyResult{}, false
}

// RunNotify measures every requested notify path, each against its own fresh server,
// then the place-order reference. On an error it returns the results so far with it.
func RunNotify(ctx context.Context, cfg NotifyConfig) (*NotifyReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rep := &NotifyReport{Machine: DetectMachine(), At: time.Now().UTC(), Config: summarizeNotify(cfg)}
	out := newProgress(cfg.Progress)
	for _, path := range []string{PathNotify, PathNotifyDup, PathNotifyForged} {
		if !cfg.wants(path) {
			continue
		}
		res, err := runNotifyPath(ctx, cfg, out, path)
		if err != nil {
			return rep, fmt.Errorf("bench %s: %w", path, err)
		}
		rep.Results = append(rep.Results, res)
	}
	if cfg.wants(PathPlaceOrder) {
		if cfg.HTTP == nil {
			out.linef("%s: skipped, no ordercore server to run against", PathPlaceOrder)
			return rep, nil
		}
		pcfg, err := cfg.placeOrderConfig().withDefaults()
		if err != nil {
			return rep, err
		}
		res, err := runHTTP(ctx, pcfg, out, hotScenario())
		if err != nil {
			return rep, fmt.Errorf("bench %s: %w", PathPlaceOrder, err)
		}
		res.Path = PathPlaceOrder
		rep.PlaceOrder = &res
	}
	return rep, nil
}

func summarizeNotify(cfg NotifyConfig) NotifySummary {
	s := NotifySummary{JournalMode: "WAL", Synchronous: "FULL", BatchMax: limit.BatchCommandsMax,
		BatchDelay: limit.BatchDelayDefault, QueueMax: limit.QueueCommandsMax, Clients: cfg.Clients,
		Duration: cfg.Duration, Warmup: cfg.warmup(), Orders: cfg.orders(PathNotify), DupOrders: cfg.orders(PathNotifyDup),
		ForgedOrders: cfg.orders(PathNotifyForged), Tolerance: sim.ToleranceDefault, PaymentSync: notifyPaymentSync[0]}
	for _, p := range NotifyPaths {
		if cfg.wants(p) {
			s.Paths = append(s.Paths, p)
		}
	}
	if cfg.wants(PathPlaceOrder) && cfg.HTTP == nil {
		s.Skipped = append(s.Skipped, PathPlaceOrder+": no ordercore server to run against")
	}
	return s
}

// notifyTarget is one prepared payment attempt and the body of its trade.succeeded
// notification.
type notifyTarget struct {
	orderID, paymentID string
	body               []byte
}

// runNotifyPath starts a fresh server, prepares the path's orders and payment attempts,
// posts notifications from cfg.Clients connections, then checks the outcome on the read
// side before stopping the server.
func runNotifyPath(ctx context.Context, cfg NotifyConfig, out *progress, path string) (NotifyResult, error) {
	res := NotifyResult{Path: path, Orders: cfg.orders(path)}
	dir, err := os.MkdirTemp(cfg.Dir, path+"-")
	if err != nil {
		return res, fmt.Errorf("scratch directory: %w", err)
	}
	res.Dir = dir
	ch, err := sim.New(sim.Config{BaseURL: notifyUnreachable, MerchantID: notifyMerchant, APIKey: "bench",
		Secrets: []string{notifySecret}, Name: notifyChannel})
	limit.Assert(err == nil, "sim channel: %v", err)
	srv, err := cfg.Serve(ctx, NotifyServerConfig{Dir: dir, Channel: ch, PaymentSync: notifyPaymentSync})
	if err != nil {
		return res, fmt.Errorf("start server: %w", err)
	}
	defer srv.Stop()
	base := strings.TrimSuffix(srv.BaseURL, "/")
	out.linef("%s: preparing %s orders, each with an open payment attempt", path, thousands(int64(res.Orders)))
	targets, err := prepareNotify(ctx, srv.Engine, res.Orders)
	if err != nil {
		return res, err
	}
	client := newClient(cfg.Clients)
	defer client.CloseIdleConnections()

	var before, after engine.Stats
	win, err := driveNotify(ctx, cfg, out, path, client, base+"/v1/channels/"+notifyChannel+"/notify", targets, func(open bool) {
		if open {
			before = srv.Engine.Stats()
		} else {
			after = srv.Engine.Stats()
		}
	})
	if err != nil {
		return res, err
	}
	win.fill(&res)
	var batches Result
	batchStats(&batches, before, after, win.seconds)
	res.BatchP50, res.BatchMax, res.BatchMean, res.Busy = batches.BatchP50, batches.BatchMax, batches.BatchMean, batches.Busy

	// What must hold afterwards, read back through the API.
	if res.Outcomes, err = channelOutcomes(ctx, client, base); err != nil {
		return res, err
	}
	statuses, paid, err := readOrders(ctx, client, base)
	if err != nil {
		return res, err
	}
	res.Statuses = statuses
	for i, t := range targets {
		isPaid := paid[t.orderID]
		switch {
		case isPaid:
			res.Paid++
			if !win.acked[i] {
				res.PaidNotAcked++
			}
		case win.acked[i]:
			res.AckedNotPaid++
		}
	}
	out.doneNotify(res)
	return res, nil
}

// prepareNotify creates the hot SKU and n orders of one unit of it, each with a payment
// attempt at the sim channel opened directly through the engine (no channel call), and
// returns every attempt with the body of its trade.succeeded notification.
func prepareNotify(ctx context.Context, eng *engine.Engine, n int) ([]notifyTarget, error) {
	ctx, cancel := context.WithTimeout(ctx, notifySetupTimeout)
	defer cancel()
	if _, err := eng.Submit(ctx, engine.CreateSKU{ID: hotSKU, Name: "bench " + hotSKU, Price: price, Stock: stockPerSKU}, nil); err != nil {
		return nil, fmt.Errorf("create sku: %w", err)
	}
	targets := make([]notifyTarget, n)
	err := parallel(ctx, n, func(ctx context.Context, i int) error {
		res, err := eng.Submit(ctx, engine.PlaceOrder{UserID: notifyUser, Lines: []engine.LineRequest{{SKU: hotSKU, Quantity: 1}},
			ExpiresIn: notifyOrderExpiresIn}, nil)
		if err != nil {
			return fmt.Errorf("place order: %w", err)
		}
		o := res.Value.(ordercore.Order)
		if res, err = eng.Submit(ctx, engine.StartPayment{OrderID: o.ID, Channel: notifyChannel}, nil); err != nil {
			return fmt.Errorf("start payment of order %s: %w", o.ID, err)
		}
		p := res.Value.(ordercore.Payment)
		txn := "txn_" + p.ID
		if _, err := eng.Submit(ctx, engine.OpenedPayment{PaymentID: p.ID,
			Instructions: ordercore.PaymentInstructions{TxnID: txn, RedirectURL: notifyUnreachable + "/pay/" + p.ID}}, nil); err != nil {
			return fmt.Errorf("open payment %s: %w", p.ID, err)
		}
		targets[i] = notifyTarget{orderID: o.ID, paymentID: p.ID, body: succeededBody(o, p, txn, time.Now().UTC())}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return targets, nil
}

// succeededBody is the notification the simulator sends when the trade of payment p is
// paid in full: the event envelope of channel/sim with the trade as its data.
func succeededBody(o ordercore.Order, p ordercore.Payment, txn string, now time.Time) []byte {
	trade, err := json.Marshal(sim.Trade{MerchantID: notifyMerchant, OutTradeNo: p.ID, OrderID: o.ID, TxnID: txn,
		Status: sim.TradeSucceeded, Amount: p.Amount, PaidAmount: p.Amount, PaidAt: now,
		Refunded: ordercore.Money{Currency: p.Amount.Currency}, Description: "order " + o.ID,
		CreatedAt: p.CreatedAt.UTC(), ExpiresAt: o.ExpiresAt.UTC()})
	limit.Assert(err == nil, "marshal trade: %v", err)
	body, err := json.Marshal(sim.Event{ID: "evt_" + p.ID, Type: sim.EventTradeSucceeded, Created: now, Data: trade})
	limit.Assert(err == nil, "marshal event: %v", err)
	return body
}

// Kinds of notification a client sends.
const (
	kindFresh  = iota // first delivery of an event: applied
	kindDup           // the same event again: deduplicated by the inbox
	kindForged        // signed with the wrong secret: rejected
	kindsN
)

// notifyWorker is one client's private state, like worker, with counts per kind.
type notifyWorker struct {
	rng   *rand.Rand
	lat   [kindsN]recorder
	n     [kindsN]int64 // answered as expected in the window
	total [kindsN]int64 // answered as expected, warm-up and drain included
	errs  map[string]int64
	buf   []byte
}

// notifyWindow is what a notify path measured.
type notifyWindow struct {
	n, total  [kindsN]int64
	seconds   float64
	lat       [kindsN]latencies
	all       latencies
	errs      map[string]int64
	acked     []bool // per target: its fresh notification was acknowledged
	abandoned bool
	// shortBy is how much of cfg.Duration the window lost because every prepared order
	// had been notified; 0 when the window ran in full.
	shortBy time.Duration
}

// driveNotify runs cfg.Clients clients posting the path's notifications back to back: a
// warm-up, then cfg.Duration measured (less if the prepared orders run out), then a
// bounded drain.
func driveNotify(ctx context.Context, cfg NotifyConfig, out *progress, path string, client *http.Client, url string,
	targets []notifyTarget, onWindow func(open bool)) (notifyWindow, error) {
	var phase atomic.Int32
	var sent atomic.Int64 // for the progress bar only
	var next atomic.Int64
	exhausted := make(chan struct{})
	var exhaust sync.Once
	acked := make([]bool, len(targets)) // index i is written only by the client that took target i
	opCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// take hands out the next target, or -1 once every one has been taken (the forged
	// path cycles over them instead).
	take := func() int {
		i := next.Add(1) - 1
		if path == PathNotifyForged {
			return int(i % int64(len(targets)))
		}
		if i >= int64(len(targets)) {
			exhaust.Do(func() { close(exhausted) })
			return -1
		}
		return int(i)
	}
	// send posts one notification of kind k for target i and records the answer; it
	// reports whether the answer was the expected one.
	send := func(ctx context.Context, w *notifyWorker, k, i int) bool {
		secret, want := notifySecret, http.StatusOK
		if k == kindForged {
			secret, want = notifyForgedSecret, http.StatusUnauthorized
		}
		body := targets[i].body
		start := time.Now()
		status, err := post(ctx, client, url, body, &w.buf, sim.HeaderSignature, sim.Sign(secret, start, body))
		d := time.Since(start)
		if err == nil && status != want {
			err = statusError{status}
		}
		measured := phase.Load() == phaseMeasure
		if err != nil {
			if measured {
				w.errs[errKey(err)]++
			}
			if status == 0 && ctx.Err() == nil {
				time.Sleep(transportErrorPause)
			}
			return false
		}
		w.total[k]++
		sent.Add(1)
		if k == kindFresh {
			acked[i] = true
		}
		if measured {
			w.n[k]++
			w.lat[k].add(d)
		}
		return true
	}
	kinds := []int{kindFresh}
	switch path {
	case PathNotifyDup:
		kinds = []int{kindFresh, kindDup}
	case PathNotifyForged:
		kinds = []int{kindForged}
	}

	workers := make([]*notifyWorker, cfg.Clients)
	perWorker := max(1024, samplesMax/(cfg.Clients*len(kinds)))
	var wg sync.WaitGroup
	for c := range workers {
		w := &notifyWorker{rng: rand.New(rand.NewPCG(uint64(c)+1, uint64(time.Now().UnixNano()))), errs: map[string]int64{}}
		for _, k := range kinds {
			w.lat[k] = recorder{samples: make([]time.Duration, 0, perWorker), rng: w.rng}
		}
		workers[c] = w
		wg.Go(func() {
			for phase.Load() != phaseStop && opCtx.Err() == nil {
				i := take()
				if i < 0 {
					return
				}
				for _, k := range kinds {
					// A duplicate follows only an acknowledged first delivery: otherwise it
					// would be the first the server applies.
					if !send(opCtx, w, k, i) {
						break
					}
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	bar := out.start(path, cfg.warmup()+cfg.Duration)
	tick := func() { bar.update(sent.Load()) }
	var t0, t1 time.Time
	var short time.Duration
	err := func() error {
		if early, err := sleepUntil(ctx, cfg.warmup(), exhausted, tick); err != nil {
			return err
		} else if early {
			return fmt.Errorf("all %d prepared orders were notified during the %s warm-up: raise --orders", len(targets), cfg.warmup())
		}
		phase.Store(phaseMeasure)
		t0 = time.Now()
		onWindow(true)
		early, err := sleepUntil(ctx, cfg.Duration, exhausted, tick)
		onWindow(false)
		if early {
			short = cfg.Duration - time.Since(t0)
		}
		return err
	}()
	phase.Store(phaseStop)
	t1 = time.Now()
	abandoned := false
	select {
	case <-done:
	case <-time.After(drainMax):
		cancel()
		abandoned = true
		<-done
	}
	if err != nil {
		bar.abort()
		return notifyWindow{}, err
	}
	win := notifyWindow{seconds: t1.Sub(t0).Seconds(), errs: map[string]int64{}, acked: acked, abandoned: abandoned, shortBy: short}
	var all []*recorder
	for _, k := range kinds {
		recs := make([]*recorder, len(workers))
		for c, w := range workers {
			win.n[k] += w.n[k]
			win.total[k] += w.total[k]
			recs[c] = &w.lat[k]
			all = append(all, &w.lat[k])
		}
		win.lat[k] = merge(recs)
	}
	win.all = merge(all)
	for _, w := range workers {
		for key, n := range w.errs {
			win.errs[key] += n
		}
	}
	bar.finish()
	return win, nil
}

// sleepUntil waits d, calling tick every progressEvery, unless ctx ends (an error) or
// stop closes first (early is true).
func sleepUntil(ctx context.Context, d time.Duration, stop <-chan struct{}, tick func()) (early bool, err error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-stop:
			return true, nil
		case <-t.C:
			tick()
		case <-timer.C:
			return false, nil
		}
	}
}

// fill copies the window's counts and latencies into r.
func (w notifyWindow) fill(r *NotifyResult) {
	for k := range kindsN {
		r.Notifications += w.n[k]
	}
	r.Seconds = w.seconds
	if w.seconds > 0 {
		r.PerSecond = float64(r.Notifications) / w.seconds
	}
	r.P50, r.P99, r.P999 = w.all.quantile(0.50), w.all.quantile(0.99), w.all.quantile(0.999)
	r.FreshAcked, r.DupAcked, r.ForgedRejected = w.total[kindFresh], w.total[kindDup], w.total[kindForged]
	if r.Path == PathNotifyDup {
		r.Fresh = w.lat[kindFresh].percentiles(w.n[kindFresh])
		r.Dup = w.lat[kindDup].percentiles(w.n[kindDup])
	}
	for _, n := range w.errs {
		r.Errors += n
	}
	var notes []string
	switch r.Path {
	case PathNotifyDup:
		notes = append(notes, fmt.Sprintf("half first deliveries, half duplicates; first p50 %s p99 %s, duplicate p50 %s p99 %s",
			fmtDuration(r.Fresh.P50), fmtDuration(r.Fresh.P99), fmtDuration(r.Dup.P50), fmtDuration(r.Dup.P99)))
	case PathNotifyForged:
		notes = append(notes, "counted when answered 401")
	}
	if w.shortBy > 0 {
		notes = append(notes, fmt.Sprintf("every prepared order was notified %s before the window's end: the window is %.1fs, raise --orders",
			w.shortBy.Round(time.Millisecond), w.seconds))
	}
	if r.Errors > 0 {
		notes = append(notes, "errors: "+describeErrors(w.errs))
	}
	if w.abandoned {
		notes = append(notes, fmt.Sprintf("requests still unanswered %s after the window were abandoned", drainMax))
	}
	if w.all.sampled() {
		notes = append(notes, fmt.Sprintf("latency from a uniform sample of %d of %d", len(w.all.sorted), w.all.seen))
	}
	r.Note = strings.Join(notes, "; ")
}

func (l latencies) percentiles(n int64) Latency {
	return Latency{N: n, P50: l.quantile(0.50), P99: l.quantile(0.99), P999: l.quantile(0.999)}
}

// getJSON reads a JSON answer of the API into out.
func getJSON(ctx context.Context, c *http.Client, u string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: HTTP %d: %s", u, resp.StatusCode, b)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// channelOutcomes reads the server's notification counters of the sim channel.
func channelOutcomes(ctx context.Context, c *http.Client, base string) (map[string]int64, error) {
	var body struct {
		Channels []struct {
			Name          string           `json:"name"`
			Notifications map[string]int64 `json:"notifications"`
		} `json:"channels"`
	}
	if err := getJSON(ctx, c, base+"/v1/channels", &body); err != nil {
		return nil, fmt.Errorf("channel counters: %w", err)
	}
	for _, ch := range body.Channels {
		if ch.Name == notifyChannel {
			if ch.Notifications == nil {
				ch.Notifications = map[string]int64{}
			}
			return ch.Notifications, nil
		}
	}
	return nil, fmt.Errorf("channel counters: no channel %q in GET /v1/channels", notifyChannel)
}

// readOrders pages through the benchmark user's orders on the read side (GET /v1/orders)
// and returns their count by status and the set of paid ones.
func readOrders(ctx context.Context, c *http.Client, base string) (map[string]int64, map[string]bool, error) {
	statuses := map[string]int64{}
	paid := map[string]bool{}
	cursor := ""
	for {
		q := url.Values{"user_id": {notifyUser}, "limit": {fmt.Sprint(limit.PageSizeMax)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Orders     []ordercore.Order `json:"orders"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := getJSON(ctx, c, base+"/v1/orders?"+q.Encode(), &page); err != nil {
			return nil, nil, fmt.Errorf("read orders: %w", err)
		}
		for _, o := range page.Orders {
			statuses[string(o.Status)]++
			if o.Status == ordercore.OrderPaid {
				paid[o.ID] = true
			}
		}
		if page.NextCursor == "" {
			return statuses, paid, nil
		}
		cursor = page.NextCursor
	}
}

// doneNotify prints a notify path's figures.
func (p *progress) doneNotify(r NotifyResult) {
	line := fmt.Sprintf("%s: %s notifications/s, p50 %s, p99 %s, p99.9 %s", r.Path, thousands(int64(r.PerSecond+0.5)),
		fmtDuration(r.P50), fmtDuration(r.P99), fmtDuration(r.P999))
	if r.BatchMax > 0 {
		line += fmt.Sprintf(", batch mean %.1f, committer busy %.0f%%", r.BatchMean, 100*r.Busy)
	}
	if r.Errors > 0 {
		line += fmt.Sprintf(", %d errors", r.Errors)
	}
	p.linef("%s", line)
}
