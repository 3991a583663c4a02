package paysim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"ordercore"
	"ordercore/channel/sim"
)

// Bounds of the simulator. It keeps everything in memory, so everything is capped; a
// capped create answers 507 and a capped notification is recorded as dropped.
const (
	TradesMax          = 100_000         // trades of all merchants
	RefundsPerTradeMax = 100             // refunds of one trade
	DeliveriesMax      = 100_000         // notification records kept (finished ones are evicted first)
	QueueMax           = 10_000          // deliveries waiting or in flight
	BodyBytesMax       = 1 << 20         // request bodies
	DeliveryWorkers    = 8               // concurrent notification deliveries
	DeliveryTimeout    = 5 * time.Second // WeChat Pay's: an answer later than this is a failure
	HangDefault        = 30 * time.Second
	TradeExpiryDefault = 2 * time.Hour // when a create carries no expires_at
	// RefundSettleDelay is how long a refund stays pending, multiplied by TimeScale.
	RefundSettleDelay = 2 * time.Second
	// PayAfterCloseDelay is the "moment later" at which a closed trade is paid anyway by the
	// pay-after-close fault, multiplied by TimeScale.
	PayAfterCloseDelay = 200 * time.Millisecond
	// dupLaterMax bounds how much later than the original a non-concurrent duplicate goes.
	dupLaterMax         = 100 * time.Millisecond
	expirySweepInterval = time.Second
	listLimitDefault    = 100
	listLimitMax        = 1000
	outTradeNoBytesMax  = 64
	descriptionBytesMax = 256
	reasonBytesMax      = sim.RefundReasonBytesMax
	urlBytesMax         = 2048
	ackBytesMax         = 64 << 10 // what is read of a merchant's answer to a notification
)

// RetrySchedule is WeChat Pay's notification schedule: after the first delivery fails,
// 15 retries spread over 24h4m. The waits are multiplied by Config.TimeScale.
var RetrySchedule = []time.Duration{
	15 * time.Second, 15 * time.Second, 30 * time.Second, 3 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 60 * time.Minute,
	3 * time.Hour, 3 * time.Hour, 3 * time.Hour, 6 * time.Hour, 6 * time.Hour,
}

// Merchant is one merchant account.
type Merchant struct {
	APIKey string
	Secret string // signs notifications
	// PreviousSecret, during a rotation, also signs every notification (a second v1), so
	// that receivers still holding the old secret keep verifying.
	PreviousSecret string
}

// Faults are the knobs of injected misbehaviour; rates are probabilities in [0, 1]. All
// are off when zero.
type Faults struct {
	DupRate            float64       // deliver a notification twice, sometimes concurrently
	DelayMax           time.Duration // random delay before a first delivery: reorders notifications
	DropRate           float64       // never deliver a notification, no retries
	ForgeRate          float64       // also send a copy signed with a wrong key
	TamperRate         float64       // also send a copy whose amount was changed after signing
	UnderpayRate       float64       // the shopper pays less than the amount
	TimeoutRate        float64       // create/close/refund take effect but the answer is held
	Hang               time.Duration // how long a held answer is held (HangDefault when zero)
	PayAfterCloseRate  float64       // a closed trade is paid anyway a moment later
	DoublePayRate      float64       // paying a trade also pays another open trade of the order
	RefundAbnormalRate float64       // a refund ends abnormal instead of succeeded
	ErrorRate          float64       // the API answers 500 without doing anything
}

// Config configures a simulator.
type Config struct {
	Addr      string // for ListenAndServe
	Merchants map[string]Merchant
	Seed      int64 // makes every fault decision reproducible
	Faults    Faults
	// TimeScale multiplies the retry schedule and the settle delays: 0.001 runs the 24-hour
	// schedule in about 90 seconds. 1 when zero.
	TimeScale float64
	Clock     func() time.Time // time.Now when nil
	Logger    *slog.Logger     // discards when nil
}

// Server is the simulator: an http.Handler with background workers for notifications,
// refund settlement and trade expiry. Start starts them, Close stops them.
type Server struct {
	cfg  Config
	log  *slog.Logger
	mux  *http.ServeMux
	dice *dice

	// ctx ends with Close: held answers return, timers and deliveries stop.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	start  sync.Once

	client *http.Client
	work   chan *delivery
	wake   chan struct{}

	mu          sync.Mutex
	merchants   map[string]*merchantState
	merchantIDs []string // sorted: the order the pay page searches in
	tradeCount  int
	seq         int64
	queue       deliveryQueue // by due time
	inFlight    int
	deliveries  []*delivery // records, oldest first
}

// New checks cfg and returns a server whose workers are not started yet.
func New(cfg Config) (*Server, error) {
	if err := check(&cfg); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		dice:      newDice(cfg.Seed),
		ctx:       ctx,
		cancel:    cancel,
		work:      make(chan *delivery),
		wake:      make(chan struct{}, 1),
		merchants: map[string]*merchantState{},
		client: &http.Client{
			// A redirect is not an acknowledgement: the 3xx itself is the answer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	for id, m := range cfg.Merchants {
		s.merchants[id] = &merchantState{id: id, m: m, trades: map[string]*trade{}, refunds: map[string]*refund{}}
		s.merchantIDs = append(s.merchantIDs, id)
	}
	slices.Sort(s.merchantIDs)
	s.routes()
	return s, nil
}

func check(cfg *Config) error {
	if len(cfg.Merchants) == 0 {
		return errors.New("paysim: no merchant")
	}
	for id, m := range cfg.Merchants {
		if id == "" || m.APIKey == "" || m.Secret == "" {
			return fmt.Errorf("paysim: merchant %q needs an id, an API key and a secret", id)
		}
	}
	f := &cfg.Faults
	for name, r := range map[string]float64{
		"dup": f.DupRate, "drop": f.DropRate, "forge": f.ForgeRate, "tamper": f.TamperRate,
		"underpay": f.UnderpayRate, "timeout": f.TimeoutRate, "pay-after-close": f.PayAfterCloseRate,
		"double-pay": f.DoublePayRate, "refund-abnormal": f.RefundAbnormalRate, "error": f.ErrorRate,
	} {
		if !(r >= 0 && r <= 1) {
			return fmt.Errorf("paysim: %s rate %v is not in [0, 1]", name, r)
		}
	}
	if f.DelayMax < 0 || f.Hang < 0 || cfg.TimeScale < 0 {
		return errors.New("paysim: negative delay, hang or time scale")
	}
	if f.Hang == 0 {
		f.Hang = HangDefault
	}
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 1
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// ServeHTTP serves the API, the hosted pay page and the statements.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Start starts the delivery workers and the expiry sweeper. Notifications made before
// Start wait in the queue.
func (s *Server) Start() {
	s.start.Do(func() {
		s.wg.Add(2 + DeliveryWorkers)
		go s.dispatch()
		go s.sweep()
		for range DeliveryWorkers {
			go s.deliver()
		}
	})
}

// Close stops the workers and the timers and waits for them; deliveries in flight are
// cancelled and not recorded. Held answers return at once.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
	return nil
}

// Serve starts the workers and serves on ln until ctx ends, then shuts down.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.Start()
	defer s.Close()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.cancel() // release held answers so that shutdown does not wait for them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// ListenAndServe listens on Config.Addr and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

func (s *Server) now() time.Time { return s.cfg.Clock().UTC() }

// scaled multiplies a simulated wait by the time scale.
func (s *Server) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.cfg.TimeScale)
}

// later runs f after d unless the server closes first.
func (s *Server) later(d time.Duration, f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			f()
		case <-s.ctx.Done():
		}
	}()
}

// newID returns a unique, time-ordered id with a prefix (txn_, rf_, evt_).
func (s *Server) newID(prefix string, now time.Time) string {
	return prefix + strings.ReplaceAll(ordercore.NewID(now), "-", "")
}

// decision kinds: each has its own random source, so that turning one knob on or off
// does not shift the draws of another and a seed replays the same faults.
type decision int

const (
	dDup decision = iota
	dDupTiming
	dDelay
	dDrop
	dForge
	dTamper
	dUnderpay
	dTimeout
	dPayAfterClose
	dDoublePay
	dRefundAbnormal
	dError
	decisionKinds
)

type dice struct {
	mu  sync.Mutex
	src [decisionKinds]*rand.Rand
}

func newDice(seed int64) *dice {
	d := &dice{}
	for k := range d.src {
		d.src[k] = rand.New(rand.NewPCG(uint64(seed), uint64(k)))
	}
	return d
}

// hit draws whether a fault of rate happens. A zero rate draws nothing.
func (d *dice) hit(k decision, rate float64) bool {
	if rate <= 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.src[k].Float64() < rate
}

// n draws in [0, n); 0 when n <= 0.
func (d *dice) n(k decision, n int64) int64 {
	if n <= 0 {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.src[k].Int64N(n)
}
