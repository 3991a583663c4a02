package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scrapeTimeout bounds the store reads of one scrape; Prometheus's own default scrape
// timeout is 10 s.
const scrapeTimeout = 5 * time.Second

// Committer is a snapshot of the committer's counters since start.
type Committer struct {
	Batches, Commands int64
	// Overloaded counts the commands refused because the queue was full (503).
	Overloaded int64
	// BatchSizes[n] counts the transactions of n commands.
	BatchSizes []int64
	// Busy is the time spent in transactions; Held, summed over the commands answered,
	// the time from submit to answer.
	Busy, Held       time.Duration
	Queued, QueueMax int
}

// Sources are what a scrape reads. A nil one is left out of the metrics.
type Sources struct {
	Committer func() Committer
	// Notifications counts, per channel, what its notifications did (applied, duplicate,
	// stale, orphan, or the code they were rejected with).
	Notifications func() map[string]map[string]int64
	// SagaCounts counts the sagas per status; OpenReviews the open review items per kind.
	// SagaStatuses and ReviewKinds are every value they may count: one with none reads
	// 0 rather than missing, so that an alert on it sees it go back to zero.
	SagaCounts                countsFunc
	OpenReviews               countsFunc
	SagaStatuses, ReviewKinds []string
	// NextExpiry is the earliest deadline of an unpaid order, if any.
	NextExpiry func(context.Context) (time.Time, bool, error)
	Now        func() time.Time
	// Role names what the instance does besides serving ("single", "leader", "standby").
	Role    func() string
	Version string
	Logger  *slog.Logger
}

type countsFunc = func(context.Context) (map[string]int64, error)

// Metrics holds the registry and the request instruments.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	handler  http.Handler
}

// durationBuckets span what the API answers in: a read in well under a millisecond, an
// order in one or two commit cycles, a saga submit that waits for its saga.
var durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// New registers the metrics of src, the Go runtime's and the process's.
func New(src Sources) *Metrics {
	if src.Now == nil {
		src.Now = time.Now
	}
	if src.Logger == nil {
		src.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ordercore_http_requests_total",
		Help: "HTTP requests answered, by route (the method and path pattern; \"other\" for paths no route takes) and status code."},
		[]string{"route", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ordercore_http_request_duration_seconds",
		Help: "Time from a request's headers to its answer, by route.", Buckets: durationBuckets}, []string{"route"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ordercore_http_requests_in_flight",
		Help: "HTTP requests being served now."})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ordercore_metrics_source_errors_total",
		Help: "Scrapes whose store read failed, by source; that source's gauges are left out of the scrape."}, []string{"source"})
	for _, source := range []string{"sagas", "review_items", "orders_expiry"} {
		errs.WithLabelValues(source) // 0 until the first failure
	}
	m.reg.MustRegister(m.requests, m.duration, m.inFlight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&collector{src: src, errs: errs})
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError,
		ErrorLog: slogPrinter{src.Logger}, Timeout: scrapeTimeout + time.Second})
	return m
}

// Handler serves the metrics in Prometheus's text format (or what the scraper asks for).
func (m *Metrics) Handler() http.Handler { return m.handler }

// Wrap counts and times every request next serves.
func (m *Metrics) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.inFlight.Inc()
		rw := &recorder{ResponseWriter: w}
		defer func() {
			m.inFlight.Dec()
			// The ServeMux sets the pattern it matched on this very request.
			route := r.Pattern
			if route == "" || route == "/" {
				route = "other"
			}
			code := rw.code
			if code == 0 {
				code = http.StatusOK
			}
			m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
			m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(rw, r)
	})
}

// recorder notes the status a handler answers with. Unwrap lets
// http.ResponseController reach the connection (write deadlines, flushes).
type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// collector reads Sources at each scrape.
type collector struct {
	src  Sources
	errs *prometheus.CounterVec
}

var (
	descInfo = prometheus.NewDesc("ordercore_instance_info",
		"Always 1; the labels name the version and what this instance does besides serving (single on SQLite; leader or standby on PostgreSQL).",
		[]string{"version", "role"}, nil)
	descBatches = prometheus.NewDesc("ordercore_committer_transactions_total",
		"Transactions the committer has committed (one per batch of commands).", nil, nil)
	descCommands = prometheus.NewDesc("ordercore_committer_commands_total",
		"Commands the committer has executed, accepted or refused by their own rules.", nil, nil)
	descOverloaded = prometheus.NewDesc("ordercore_committer_overloaded_total",
		"Commands refused because the committer's queue was full (503 overloaded).", nil, nil)
	descBatchSize = prometheus.NewDesc("ordercore_committer_batch_commands",
		"Commands per transaction.", nil, nil)
	descBusy = prometheus.NewDesc("ordercore_committer_busy_seconds_total",
		"Time the committer spent in transactions, commit and fsync included; its rate is the share of time the single writer is busy.", nil, nil)
	descHeld = prometheus.NewDesc("ordercore_committer_held_seconds_total",
		"Time commands spent from submit to answer (queued, in a filling batch, in their transaction), summed; divided by commands_total, what the engine adds to a request.", nil, nil)
	descQueued = prometheus.NewDesc("ordercore_committer_queue_commands",
		"Commands waiting in the committer's queue now.", nil, nil)
	descQueueMax = prometheus.NewDesc("ordercore_committer_queue_capacity",
		"The committer queue's depth; a full queue answers 503 overloaded.", nil, nil)
	descNotify = prometheus.NewDesc("ordercore_channel_notifications_total",
		"Payment channel notifications since start, by channel and outcome (applied, duplicate_event, stale, orphan, or the error code they were rejected with).",
		[]string{"channel", "outcome"}, nil)
	descSagas = prometheus.NewDesc("ordercore_sagas",
		"Sagas in the database, by status (read at each scrape).", []string{"status"}, nil)
	descReviews = prometheus.NewDesc("ordercore_review_items_open",
		"Review items waiting for an operator, by kind (read at each scrape).", []string{"kind"}, nil)
	descExpiry = prometheus.NewDesc("ordercore_orders_expiry_overdue_seconds",
		"How long the unpaid order nearest its deadline has been past it: 0 while the expiry sweep keeps up (read at each scrape).", nil, nil)
)

// batchBuckets are the batch size histogram's upper bounds: powers of two up to the
// committer's largest batch.
var batchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	c.errs.Describe(ch)
	for _, d := range []*prometheus.Desc{descInfo, descBatches, descCommands, descOverloaded, descBatchSize, descBusy, descHeld,
		descQueued, descQueueMax, descNotify, descSagas, descReviews, descExpiry} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	role := ""
	if c.src.Role != nil {
		role = c.src.Role()
	}
	ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, c.src.Version, role)
	if c.src.Committer != nil {
		c.collectCommitter(ch, c.src.Committer())
	}
	if c.src.Notifications != nil {
		counts := c.src.Notifications()
		for _, channel := range slices.Sorted(maps.Keys(counts)) {
			for outcome, n := range counts[channel] {
				ch <- prometheus.MustNewConstMetric(descNotify, prometheus.CounterValue, float64(n), channel, outcome)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	c.collectCounts(ctx, ch, "sagas", descSagas, c.src.SagaCounts, c.src.SagaStatuses)
	c.collectCounts(ctx, ch, "review_items", descReviews, c.src.OpenReviews, c.src.ReviewKinds)
	if c.src.NextExpiry != nil {
		next, ok, err := c.src.NextExpiry(ctx)
		switch {
		case err != nil:
			c.fail("orders_expiry", err)
		default:
			overdue := 0.0
			if ok {
				overdue = max(0, c.src.Now().Sub(next).Seconds())
			}
			ch <- prometheus.MustNewConstMetric(descExpiry, prometheus.GaugeValue, overdue)
		}
	}
	c.errs.Collect(ch)
}

func (c *collector) collectCommitter(ch chan<- prometheus.Metric, s Committer) {
	ch <- prometheus.MustNewConstMetric(descBatches, prometheus.CounterValue, float64(s.Batches))
	ch <- prometheus.MustNewConstMetric(descCommands, prometheus.CounterValue, float64(s.Commands))
	ch <- prometheus.MustNewConstMetric(descOverloaded, prometheus.CounterValue, float64(s.Overloaded))
	ch <- prometheus.MustNewConstMetric(descBusy, prometheus.CounterValue, s.Busy.Seconds())
	ch <- prometheus.MustNewConstMetric(descHeld, prometheus.CounterValue, s.Held.Seconds())
	ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(s.Queued))
	ch <- prometheus.MustNewConstMetric(descQueueMax, prometheus.GaugeValue, float64(s.QueueMax))
	buckets := make(map[float64]uint64, len(batchBuckets))
	var count uint64 // cumulative: the batches of at most n commands
	var sum float64
	b := 0
	for n, k := range s.BatchSizes {
		for ; b < len(batchBuckets) && float64(n) > batchBuckets[b]; b++ {
			buckets[batchBuckets[b]] = count
		}
		count += uint64(k)
		sum += float64(n) * float64(k)
	}
	for ; b < len(batchBuckets); b++ {
		buckets[batchBuckets[b]] = count
	}
	ch <- prometheus.MustNewConstHistogram(descBatchSize, count, sum, buckets)
}

// collectCounts emits one gauge per key of what read returns, or counts its failure.
func (c *collector) collectCounts(ctx context.Context, ch chan<- prometheus.Metric, source string, d *prometheus.Desc,
	read countsFunc, known []string) {
	if read == nil {
		return
	}
	counts, err := read(ctx)
	if err != nil {
		c.fail(source, err)
		return
	}
	for _, k := range known {
		if _, ok := counts[k]; !ok {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, 0, k)
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(n), k)
	}
}

func (c *collector) fail(source string, err error) {
	c.errs.WithLabelValues(source).Inc()
	c.src.Logger.Warn("metrics: read failed; its gauges are left out of this scrape", "source", source, "err", err)
}

// slogPrinter gives promhttp's error log to slog.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.l.Warn("metrics: " + strings.TrimSpace(fmt.Sprintln(v...))) }
