package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ordercore"
)

// Phases of a closed-loop run. Clients read the phase after every request: a request
// counts if it completes while the phase is measure.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// op places one order for worker w; nil means the order was placed.
type op func(ctx context.Context, w *worker) error

// worker is one client's private state: nothing in it is shared while the run is on, so
// recording a latency is an append to a preallocated slice.
type worker struct {
	id     int // 0..clients-1: spreads clients over several engines
	rng    *rand.Rand
	lat    recorder
	orders int64 // in the window
	errs   map[string]int64
	total  int64 // placed, warm-up and drain included
	buf    []byte
}

// window is what a closed-loop run measured.
type window struct {
	orders, total int64
	seconds       float64
	lat           latencies
	errs          map[string]int64
	abandoned     bool // some client was still waiting drainMax after the window closed
}

// errorCount is the number of errors in the window.
func (w window) errorCount() int64 {
	var n int64
	for _, c := range w.errs {
		n += c
	}
	return n
}

// drive runs clients workers calling place back to back: a warm-up, then cfg.Duration
// measured, then a bounded drain. onWindow is called as the window opens (true) and closes
// (false), to snapshot counters of the system under test.
func drive(ctx context.Context, cfg Config, out *progress, label string, place op, onWindow func(open bool)) (window, error) {
	var phase atomic.Int32
	var placed atomic.Int64 // for the progress bar only
	opCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := make([]*worker, cfg.Clients)
	perWorker := max(1024, samplesMax/cfg.Clients)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{id: i, rng: rand.New(rand.NewPCG(uint64(i)+1, uint64(time.Now().UnixNano()))), errs: map[string]int64{}}
		w.lat = recorder{samples: make([]time.Duration, 0, perWorker), rng: w.rng}
		workers[i] = w
		wg.Go(func() { w.loop(opCtx, &phase, &placed, place) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	bar := out.start(label, cfg.warmup()+cfg.Duration)
	var t0, t1 time.Time
	err := func() error {
		if err := sleep(ctx, cfg.warmup(), func() { bar.update(placed.Load()) }); err != nil {
			return err
		}
		phase.Store(phaseMeasure)
		t0 = time.Now()
		onWindow(true)
		err := sleep(ctx, cfg.Duration, func() { bar.update(placed.Load()) })
		onWindow(false)
		return err
	}()
	phase.Store(phaseStop)
	t1 = time.Now()
	abandoned := false
	select {
	case <-done:
	case <-time.After(drainMax):
		cancel() // a request that has not come back in drainMax is abandoned
		abandoned = true
		<-done
	}
	if err != nil {
		bar.abort()
		return window{}, err
	}
	res := window{seconds: t1.Sub(t0).Seconds(), errs: map[string]int64{}, abandoned: abandoned}
	recs := make([]*recorder, len(workers))
	for i, w := range workers {
		res.orders += w.orders
		res.total += w.total
		for k, n := range w.errs {
			res.errs[k] += n
		}
		recs[i] = &w.lat
	}
	res.lat = merge(recs)
	bar.finish()
	return res, nil
}

func (w *worker) loop(ctx context.Context, phase *atomic.Int32, placed *atomic.Int64, place op) {
	for phase.Load() != phaseStop && ctx.Err() == nil {
		start := time.Now()
		err := place(ctx, w)
		d := time.Since(start)
		if err == nil {
			w.total++
			placed.Add(1)
		}
		if phase.Load() != phaseMeasure {
			continue
		}
		if err != nil {
			w.errs[errKey(err)]++
			continue
		}
		w.orders++
		w.lat.add(d)
	}
}

// sleep waits d, calling tick every progressEvery, unless ctx ends first.
func sleep(ctx context.Context, d time.Duration, tick func()) error {
	end := time.Now().Add(d)
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			tick()
		case <-time.After(left):
			return nil
		}
	}
}

// statusError is an HTTP answer other than the expected one.
type statusError struct{ code int }

func (e statusError) Error() string { return fmt.Sprintf("HTTP %d", e.code) }

// errKey groups errors for the report: by ordercore code, HTTP status, or message.
func errKey(err error) string {
	var se statusError
	var oe *ordercore.Error
	switch {
	case errors.As(err, &se):
		return se.Error()
	case errors.As(err, &oe):
		return oe.Code
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return s
}

// describeErrors lists the kinds of errors, most frequent first, at most three.
func describeErrors(errs map[string]int64) string {
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if errs[keys[i]] != errs[keys[j]] {
			return errs[keys[i]] > errs[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for i, k := range keys {
		if i == 3 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%s x%d", k, errs[k]))
	}
	return strings.Join(parts, ", ")
}

// recorder keeps one client's latencies in a preallocated slice. When the slice is full it
// keeps a uniform random sample of all latencies seen (reservoir sampling, Algorithm R),
// so measuring never allocates and memory stays bounded.
type recorder struct {
	samples []time.Duration
	seen    int64
	rng     *rand.Rand
}

func (r *recorder) add(d time.Duration) {
	r.seen++
	if len(r.samples) < cap(r.samples) {
		r.samples = append(r.samples, d)
		return
	}
	if j := r.rng.Int64N(r.seen); j < int64(len(r.samples)) {
		r.samples[j] = d
	}
}

// latencies are sorted samples of a run.
type latencies struct {
	sorted []time.Duration
	seen   int64 // samples offered; more than len(sorted) when sampled
}

func merge(recs []*recorder) latencies {
	n := 0
	var l latencies
	for _, r := range recs {
		n += len(r.samples)
		l.seen += r.seen
	}
	l.sorted = make([]time.Duration, 0, n)
	for _, r := range recs {
		l.sorted = append(l.sorted, r.samples...)
	}
	slices.Sort(l.sorted)
	return l
}

// quantile returns the nearest-rank q-quantile, 0 when there are no samples.
func (l latencies) quantile(q float64) time.Duration {
	if len(l.sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(l.sorted))+0.999999) - 1
	return l.sorted[min(max(i, 0), len(l.sorted)-1)]
}

func (l latencies) sampled() bool { return l.seen > int64(len(l.sorted)) }

// fill copies the window's counts and latencies into r.
func (w window) fill(r *Result) {
	r.Orders, r.OrdersTotal, r.Seconds = w.orders, w.total, w.seconds
	if w.seconds > 0 {
		r.PerSecond = float64(w.orders) / w.seconds
	}
	r.P50, r.P99, r.P999 = w.lat.quantile(0.50), w.lat.quantile(0.99), w.lat.quantile(0.999)
	r.Errors = w.errorCount()
	var notes []string
	if r.Errors > 0 {
		notes = append(notes, "errors: "+describeErrors(w.errs))
	}
	if w.abandoned {
		notes = append(notes, fmt.Sprintf("requests still unanswered %s after the window were abandoned", drainMax))
	}
	if w.lat.sampled() {
		notes = append(notes, fmt.Sprintf("latency from a uniform sample of %d of %d", len(w.lat.sorted), w.lat.seen))
	}
	r.Note = joinNotes(r.Note, strings.Join(notes, "; "))
}

func joinNotes(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
