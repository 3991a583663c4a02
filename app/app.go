// Package app wires ordercore together: configuration -> store -> engine -> sweepers -> HTTP,
// started in that order and stopped in reverse. It is the only package that sees every
// adapter and the engine at once; it holds no logic of its own.
package app

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"ordercore"
	"ordercore/httpapi"
	"ordercore/internal/engine"
	"ordercore/internal/events"
	"ordercore/internal/guard"
	"ordercore/internal/lease"
	"ordercore/internal/limit"
	"ordercore/internal/recon"
	"ordercore/internal/saga"
	"ordercore/natsbus"
	"ordercore/postgres"
	"ordercore/sqlite"
	"ordercore/telemetry"
)

// Config is what `ordercore serve` takes.
type Config struct {
	Addr    string // listen address, e.g. ":8080"
	DataDir string // the SQLite file is DataDir/ordercore.db
	// NATS, when set, is a NATS server URL, or NATSEmbedded: the events table is relayed
	// to its JetStream (stream natsbus.StreamDefault), in sequence order, each event once.
	NATS string
	// NATSStream and NATSSubjects name the stream and its subject prefix (defaults
	// natsbus.StreamDefault and natsbus.SubjectPrefixDefault).
	NATSStream, NATSSubjects string
	// DB, when set, is a PostgreSQL URL (postgres://...) used instead of SQLite; DataDir is
	// then unused. Several instances may share one PostgreSQL database.
	DB       string
	BatchMax int // committer batch bound (0: default)
	// BatchDelay is how long the committer may go on filling a batch while commands keep
	// arriving (engine.Config). Zero takes limit.BatchDelayDefault; negative: none.
	BatchDelay     time.Duration
	ManualPayments bool // enable POST /v1/orders/{id}/payments/manual
	// UserOrderRate, when above zero, limits the orders one user_id may place to this
	// many per second on average, UserOrderBurst at once (guard.KeyLimiter).
	UserOrderRate  float64
	UserOrderBurst int
	// Channels are the payment channels; notifications reach them at
	// PublicURL/v1/channels/{name}/notify (PublicURL defaults to http://Addr).
	Channels  []ordercore.Channel
	PublicURL string
	// PaymentSync and RefundSync override the sync schedules (tests compress time);
	// SyncInterval is the longest the sync sleeps between sweeps.
	PaymentSync          []time.Duration
	PaymentSyncByChannel map[string][]time.Duration
	RefundSync           []time.Duration
	SyncInterval         time.Duration
	// ReconHour is the UTC hour from which the statement of the day before is
	// reconciled (limit.ReconHourDefault when zero; negative: from midnight).
	ReconHour int
	// WebhookSchedule overrides the webhook retry schedule (limit.WebhookSchedule);
	// WebhookPoll is the longest the deliverer waits between passes. Tests compress both.
	WebhookSchedule []time.Duration
	WebhookPoll     time.Duration
	// WebhookAllowPrivate lets webhook endpoints name, and deliveries dial, loopback and
	// private addresses (refused by default), for receivers on the premises.
	WebhookAllowPrivate bool
	// Fulfilment, when set, starts a fulfilment saga for every order that becomes paid.
	Fulfilment *engine.Fulfilment
	// LeaseTTL and LeaseRetry tune the background lease on PostgreSQL (0: the defaults
	// of internal/lease, 5 s and 1 s).
	LeaseTTL, LeaseRetry time.Duration
	Logger               *slog.Logger
	Version              string
}

// App is a running ordercore.
type App struct {
	cfg      Config
	lock     *os.File
	DB       Store
	Engine   *engine.Engine
	Payments *engine.Payments
	// Recon reconciles the channels' daily statements (internal/recon).
	Recon    *recon.Reconciler
	Sagas    *saga.Coordinator
	Webhooks *events.Deliverer
	where    string // the database, for the log (a file, or a URL without its password)
	nats     *nats.Conn
	embedded *natsbus.Embedded // with --nats embedded
	server   *http.Server
	ln       net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	leader   *lease.Leader // nil on SQLite: the one instance does the background work
}

// BackgroundLease is the lease whose holder runs the background work on PostgreSQL.
const BackgroundLease = "background"

// Role is what this instance does beyond serving the API: "single" (SQLite: the only
// instance does everything), "leader" (it holds the background lease) or "standby".
func (a *App) Role() string {
	switch {
	case a.leader == nil:
		return "single"
	case a.leader.Leading():
		return "leader"
	default:
		return "standby"
	}
}

// Holder is this instance's name in the leases table ("" on SQLite).
func (a *App) Holder() string {
	if a.leader == nil {
		return ""
	}
	return a.leader.Holder
}

// instanceID names this instance among those sharing a database: host, process and
// listen address, plus a random part so a restarted process is a new holder.
func instanceID(addr string) string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s/%x", host, os.Getpid(), addr, b)
}

// NATSEmbedded as Config.NATS runs a NATS JetStream server inside the process, its
// storage in DataDir/nats: a single node that wants a broker without running one.
const NATSEmbedded = "embedded"

// openRelay connects to NATS (or starts the embedded server) and prepares the event relay
// and its stream.
func openRelay(ctx context.Context, cfg Config, r ordercore.Reader) (*natsbus.Relay, *nats.Conn, *natsbus.Embedded, error) {
	url := cfg.NATS
	var nc *nats.Conn
	var emb *natsbus.Embedded
	var err error
	if url == NATSEmbedded {
		emb, err = natsbus.StartEmbedded(ctx, natsbus.EmbeddedConfig{StoreDir: filepath.Join(cfg.DataDir, "nats"), Logger: cfg.Logger})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--nats embedded: %w", err)
		}
		nc, err = emb.Connect(nats.Name("ordercore"))
	} else {
		// NATS only receives a copy of the event log: a server that is down must not
		// keep ordercore from starting. The connection is retried in the background, and
		// the relay catches up from the stream's cursor once it is up.
		nc, err = nats.Connect(url, nats.Name("ordercore"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	}
	if err != nil {
		emb.Close()
		return nil, nil, nil, fmt.Errorf("--nats %s: %w", url, err)
	}
	closeAll := func() {
		nc.Close()
		emb.Close()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		closeAll()
		return nil, nil, nil, fmt.Errorf("--nats %s: jetstream: %w", url, err)
	}
	relay := natsbus.NewRelay(natsbus.Config{Reader: r, JS: js, Stream: cfg.NATSStream, SubjectPrefix: cfg.NATSSubjects})
	if !nc.IsConnected() {
		cfg.Logger.Warn("NATS is not reachable; the event relay creates its stream and catches up once it is", "nats", url)
		return relay, nc, emb, nil
	}
	// Reachable: a stream that cannot be made as configured (its subjects taken by
	// another stream, say) is an error to report now, not to retry for ever.
	if err := relay.EnsureStream(ctx); err != nil {
		closeAll()
		return nil, nil, nil, fmt.Errorf("--nats %s: %w", url, err)
	}
	return relay, nc, emb, nil
}

// Store is the database an App runs on.
type Store interface {
	ordercore.Store
	ordercore.Dumper
}

// IsPostgres reports whether db names a PostgreSQL database rather than a SQLite file.
func IsPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// OpenStore opens the database named by dbURL (PostgreSQL) or, when it is empty, the
// SQLite file of dataDir.
func OpenStore(ctx context.Context, dbURL, dataDir string) (Store, string, error) {
	if dbURL != "" {
		if !IsPostgres(dbURL) {
			return nil, "", fmt.Errorf("--db %q: want a postgres:// URL (SQLite lives in --data)", redact(dbURL))
		}
		dsn, schema, err := splitSchema(dbURL)
		if err != nil {
			return nil, "", err
		}
		db, err := postgres.Open(ctx, dsn, postgres.Options{Schema: schema})
		return db, redact(dbURL), err
	}
	db, err := sqlite.Open(ctx, DBPath(dataDir), sqlite.Options{})
	return db, DBPath(dataDir), err
}

// splitSchema takes ordercore's own "schema" parameter (the PostgreSQL schema its tables
// live in, default public) out of a database URL; the rest goes to the driver.
func splitSchema(dbURL string) (string, string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", "", fmt.Errorf("--db: %w", err)
	}
	q := u.Query()
	schema := q.Get("schema")
	q.Del("schema")
	u.RawQuery = q.Encode()
	return u.String(), schema, nil
}

// redact drops the password from a database URL before it is logged or shown.
func redact(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "(unparsable database URL)"
	}
	if q := u.Query(); q.Has("password") { // libpq takes it as a parameter too
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// CheckExisting reports an error unless db (a postgres:// URL, or the path of a SQLite
// file) holds an ordercore database, one its migrations have run on. It only reads:
// `ordercore verify` calls it first, so that a mistyped database is an error instead of
// a new, empty one that passes every check.
func CheckExisting(ctx context.Context, db string) error {
	if IsPostgres(db) {
		dsn, schema, err := splitSchema(db)
		if err != nil {
			return err
		}
		if schema == "" {
			schema = "public"
		}
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", redact(db), err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var ok bool
		err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'goose_db_version')", schema).Scan(&ok)
		if err != nil {
			return fmt.Errorf("read %s: %w", redact(db), err)
		}
		if !ok {
			return fmt.Errorf("%s: schema %q holds no ordercore database", redact(db), schema)
		}
		return nil
	}
	sdb, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		return fmt.Errorf("open %s: %w", db, err)
	}
	defer sdb.Close()
	var n int
	if err := sdb.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'goose_db_version'").Scan(&n); err != nil {
		return fmt.Errorf("%s is not a SQLite database: %w", db, err)
	}
	if n == 0 {
		return fmt.Errorf("%s holds no ordercore database", db)
	}
	return nil
}

// DBPath is where the SQLite file of a data directory lives.
func DBPath(dataDir string) string { return filepath.Join(dataDir, "ordercore.db") }

// BatchDelay is the committer's batch delay asked for as delay: itself when positive,
// none when negative, and limit.BatchDelayDefault when zero.
func BatchDelay(delay time.Duration) time.Duration {
	switch {
	case delay < 0:
		return 0
	case delay > 0:
		return delay
	}
	return limit.BatchDelayDefault
}

// Open starts everything and listens on cfg.Addr; Run serves.
func Open(ctx context.Context, cfg Config) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var lock *os.File
	if cfg.DB == "" {
		// One server per SQLite file; PostgreSQL takes any number of instances.
		var err error
		if lock, err = lockDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	db, where, err := OpenStore(ctx, cfg.DB, cfg.DataDir)
	if err != nil {
		closeLock(lock)
		return nil, err
	}
	clock := ordercore.SystemClock{}
	eng := engine.New(db, clock, engine.Config{BatchMax: cfg.BatchMax, BatchDelay: BatchDelay(cfg.BatchDelay), Logger: cfg.Logger,
		PaymentSync: cfg.PaymentSync, PaymentSyncByChannel: cfg.PaymentSyncByChannel, RefundSync: cfg.RefundSync,
		WebhookSchedule: cfg.WebhookSchedule, WebhookAllowPrivate: cfg.WebhookAllowPrivate, Fulfilment: cfg.Fulfilment})
	a := &App{cfg: cfg, lock: lock, DB: db, where: where, Engine: eng}
	channels := map[string]ordercore.Channel{}
	for _, ch := range cfg.Channels {
		if _, dup := channels[ch.Name()]; dup {
			eng.Close()
			db.Close()
			closeLock(lock)
			return nil, fmt.Errorf("two payment channels are named %q", ch.Name())
		}
		channels[ch.Name()] = ch
	}
	a.Sagas = &saga.Coordinator{Claim: eng.ClaimSagasFor, Record: eng.RecordSaga, Wake: eng.WakeSagasAt, Logger: cfg.Logger}
	a.Payments = &engine.Payments{Engine: eng, Reader: db, Clock: clock, Channels: channels, Interval: cfg.SyncInterval, Logger: cfg.Logger}
	a.Recon = &recon.Reconciler{Engine: eng, Reader: db, Clock: clock, Channels: channels, Hour: cfg.ReconHour, Logger: cfg.Logger}
	if l, ok := db.(recon.Locker); ok {
		a.Recon.Locker = l // PostgreSQL: the runs of a day take turns across instances
	}
	a.Webhooks = &events.Deliverer{Engine: eng, Reader: db, Clock: clock, Logger: cfg.Logger, Poll: cfg.WebhookPoll,
		AllowPrivate: cfg.WebhookAllowPrivate}
	var api *httpapi.Server
	metrics := telemetry.New(telemetry.Sources{Committer: func() telemetry.Committer { return committerStats(eng.Stats()) },
		Notifications: func() map[string]map[string]int64 { return api.NotifyCounts() },
		SagaCounts:    func(ctx context.Context) (map[string]int64, error) { return sagaCounts(ctx, db) },
		OpenReviews:   db.OpenReviewCounts, SagaStatuses: sagaStatuses, ReviewKinds: reviewKinds,
		NextExpiry: db.NextExpiry, Now: clock.Now, Role: a.Role, Version: cfg.Version, Logger: cfg.Logger})
	apiCfg := httpapi.Config{Engine: eng, Reader: db, Clock: clock, ManualPayments: cfg.ManualPayments,
		Payments: a.Payments, Version: cfg.Version, Role: a.Role, Sagas: a.Sagas, Recon: a.Recon, Metrics: metrics.Handler()}
	if cfg.UserOrderRate > 0 {
		apiCfg.UserOrders = &guard.KeyLimiter{Rate: rate.Limit(cfg.UserOrderRate), Burst: max(cfg.UserOrderBurst, 1), Max: limit.UserOrderLimitersMax}
	}
	api = httpapi.New(apiCfg)
	a.server = &http.Server{Handler: metrics.Wrap(api), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	if a.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		eng.Close()
		db.Close()
		closeLock(lock)
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	public := strings.TrimSuffix(cfg.PublicURL, "/")
	if public == "" {
		public = "http://" + a.ln.Addr().String()
	}
	a.Payments.NotifyURL = func(channel string) string { return public + "/v1/channels/" + channel + "/notify" }
	a.Sagas.DTM = public + httpapi.DTMPrefix
	wctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	logErr := func(what string) func(error) {
		return func(err error) { cfg.Logger.Warn(what+" failed", "err", err) }
	}
	var relay *natsbus.Relay
	if cfg.NATS != "" {
		r, nc, emb, err := openRelay(ctx, cfg, db)
		if err != nil {
			cancel()
			a.ln.Close()
			eng.Close()
			db.Close()
			closeLock(lock)
			return nil, err
		}
		relay, a.nats, a.embedded = r, nc, emb
	}
	workers := []interface{ Run(context.Context) }{
		&engine.Expirer{Engine: eng, Reader: db, Clock: clock, Payments: a.Payments, OnErr: logErr("expiry sweep")},
		&engine.Pruner{Engine: eng, Reader: db, Clock: clock, OnErr: logErr("idempotency prune")},
		a.Payments,
		a.Recon,    // daily statements, once per channel and day
		a.Webhooks, // driven from the events table; on the lease holder only
	}
	background := func(ctx context.Context) {
		var wg sync.WaitGroup
		if relay != nil {
			wg.Go(func() {
				if err := relay.Run(ctx); err != nil {
					cfg.Logger.Error("event relay stopped", "err", err)
				}
			})
		}
		for _, w := range workers {
			wg.Go(func() { w.Run(ctx) })
		}
		wg.Wait()
	}
	if ls, ok := db.(lease.Store); ok && cfg.DB != "" {
		// Several instances may share this database: the background work runs on the
		// holder of the "background" lease only (internal/lease says why a lease, and why
		// nothing relies on it for correctness).
		a.leader = &lease.Leader{Store: ls, Name: BackgroundLease, Holder: instanceID(a.Addr()),
			TTL: cfg.LeaseTTL, Retry: cfg.LeaseRetry, Work: background, Logger: cfg.Logger}
		a.wg.Go(func() { a.leader.Run(wctx) })
	} else {
		a.wg.Go(func() { background(wctx) })
	}
	// Sagas run on every instance: claims with SKIP LOCKED (PostgreSQL) or through the one
	// writer (SQLite) give each due saga to one of them.
	a.wg.Go(func() { a.Sagas.Run(wctx) })
	return a, nil
}

// sagaStatuses and reviewKinds are the label values the metrics report as 0 when none
// are counted.
var (
	sagaStatuses = []string{string(ordercore.SagaPrepared), string(ordercore.SagaTrying), string(ordercore.SagaRunning),
		string(ordercore.SagaConfirming), string(ordercore.SagaCompensating), string(ordercore.SagaCompleted),
		string(ordercore.SagaCompensated), string(ordercore.SagaDeadLetter)}
	reviewKinds = []string{ordercore.ReviewAmountMismatch, ordercore.ReviewSyncExhausted, ordercore.ReviewRefundFailed,
		ordercore.ReviewRefundAbnormal, ordercore.ReviewRefundExhausted, ordercore.ReviewOrphan, ordercore.ReviewReconAmount,
		ordercore.ReviewReconMissing, ordercore.ReviewReconRefundStatus, ordercore.ReviewReconUnrecorded}
)

func committerStats(s engine.Stats) telemetry.Committer {
	return telemetry.Committer{Batches: s.Batches, Commands: s.Commands, Overloaded: s.Rejected, BatchSizes: s.BatchSizes,
		Busy: s.CommitTime, Held: s.Held, Queued: s.Queued, QueueMax: s.QueueMax}
}

func sagaCounts(ctx context.Context, r ordercore.Reader) (map[string]int64, error) {
	counts, err := r.SagaCounts(ctx)
	out := make(map[string]int64, len(counts))
	for status, n := range counts {
		out[string(status)] = n
	}
	return out, err
}

// NATS is the connection the event relay publishes on (nil without Config.NATS); with
// NATSEmbedded it is an in-process connection to the embedded server.
func (a *App) NATS() *nats.Conn { return a.nats }

// Addr is the address the API listens on.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Run serves until ctx ends, then shuts down gracefully: in-flight requests finish, the
// sweepers stop, the committer commits what is queued, the database closes.
func (a *App) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.server.Serve(a.ln) }()
	a.cfg.Logger.Info("ordercore serving", "addr", a.Addr(), "db", a.where)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	return errors.Join(err, a.Close())
}

// Close stops everything in reverse start order.
func (a *App) Close() error {
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := a.server.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	a.ln.Close() // already closed if Serve ran; needed if it never did
	a.cancel()
	a.wg.Wait()
	if a.nats != nil {
		a.nats.Close()
	}
	a.embedded.Close()
	a.Engine.Close()
	err = errors.Join(err, a.DB.Close())
	return errors.Join(err, closeLock(a.lock)) // closing the file releases the lock
}

func closeLock(f *os.File) error {
	if f == nil {
		return nil
	}
	return f.Close()
}

// lockDataDir takes an exclusive lock on dataDir/ordercore.lock for the life of the
// process. One server per data directory: the committer must be the database's only
// writer, and the set of Idempotency-Keys in flight lives in its memory. The kernel drops
// the lock when the process dies, however it dies, so a crash never leaves it stale.
func lockDataDir(dataDir string) (*os.File, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(dataDir, "ordercore.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another ordercore serve is using the data directory %s (it holds %s)", dataDir, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
