package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"ordercore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Pool bounds, passed to pgxpool explicitly rather than trusting its defaults. Writes use
// one connection per in-flight batch (one per committer), reads the rest.
const (
	PoolConnsMax     = 16
	poolConnLifetime = time.Hour
	poolConnIdleTime = 5 * time.Minute
	poolHealthCheck  = time.Minute
	// A write whose COMMIT got no answer asks the server what became of it every
	// commitResolvePoll, at most commitResolveMax, before it gives up as unknown.
	commitResolvePoll = 50 * time.Millisecond
	commitResolveMax  = 30 * time.Second
	// A second instance migrating the same schema at once waits for the first, polling
	// every migrateLockPoll, at most migrateLockTimeout.
	migrateLockPoll    = time.Second
	migrateLockTimeout = 5 * time.Minute
)

// DB is an ordercore store in one schema of a PostgreSQL database.
type DB struct {
	Schema string
	pool   *pgxpool.Pool
	// eventsLock is the advisory lock key that orders event appends (events.go); it is
	// derived from the schema, so stores in different schemas do not wait on each other.
	eventsLock int64
}

var (
	_ ordercore.Store  = (*DB)(nil)
	_ ordercore.Dumper = (*DB)(nil)
)

// Options are the store's settings.
type Options struct {
	// Schema holds every table, goose's version table included; Open creates it if
	// missing. Empty means "public". It must be a plain lower-case identifier.
	Schema string
	// IdleInTransactionTimeout is the sessions' idle_in_transaction_session_timeout
	// (IdleInTransactionTimeoutDefault when zero), unless the DSN sets it.
	IdleInTransactionTimeout time.Duration
}

// IdleInTransactionTimeoutDefault bounds how long a write transaction may sit between
// statements before the server ends its session and releases its row locks. A batch's
// statements follow each other within milliseconds; an instance that stops in the middle
// of one (its process frozen, its host cut off) would otherwise hold the rows it locked,
// a hot SKU's among them, and every other instance's writes would wait on it until the
// connection died, which over a network partition takes hours.
const IdleInTransactionTimeoutDefault = 5 * time.Second

// schemaName is what Options.Schema may be: it goes into search_path and goose's table
// name unquoted, so it must never need quoting.
var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open connects to the database at dsn (a PostgreSQL URL or key=value string), creates the
// schema if missing and migrates it.
func Open(ctx context.Context, dsn string, o Options) (*DB, error) {
	if o.Schema == "" {
		o.Schema = "public"
	}
	if !schemaName.MatchString(o.Schema) {
		return nil, fmt.Errorf("postgres: schema %q is not a plain lower-case identifier", o.Schema)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse dsn: %w", err)
	}
	// Every pooled connection resolves table names in the store's schema; as a startup
	// parameter it costs no round trip.
	cfg.ConnConfig.RuntimeParams["search_path"] = o.Schema
	// A commit is durable on return (P5), whatever the server's default says, unless the
	// DSN asks for a stronger or weaker level itself.
	if _, ok := cfg.ConnConfig.RuntimeParams["synchronous_commit"]; !ok {
		cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	}
	// Plan every execution for its parameters. PostgreSQL switches a prepared statement to
	// a generic plan after five runs if that looks no worse; a connection whose loads
	// were planned while the table's statistics said it was empty (a new deployment, a
	// fresh schema, analysed before its rows arrived) keeps a sequential scan for the
	// connection's life, and every batch then read all 10,000 SKUs of a benchmark. With
	// custom plans the same statement uses the primary key (checked with EXPLAIN EXECUTE
	// after ANALYZE of an empty table). The loads are simple; planning them is cheap
	// next to such a scan.
	if _, ok := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		idle := o.IdleInTransactionTimeout
		if idle <= 0 {
			idle = IdleInTransactionTimeoutDefault
		}
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = fmt.Sprint(idle.Milliseconds())
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !ok {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	cfg.MaxConns = PoolConnsMax
	cfg.MinConns = 0
	cfg.MaxConnLifetime = poolConnLifetime
	cfg.MaxConnIdleTime = poolConnIdleTime
	cfg.HealthCheckPeriod = poolHealthCheck
	if err := createSchema(ctx, cfg.ConnConfig, o.Schema); err != nil {
		return nil, err
	}
	if err := migrate(ctx, cfg.ConnConfig, o.Schema); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: pool: %w", err)
	}
	return &DB{Schema: o.Schema, pool: pool, eventsLock: lockKey(o.Schema, "events")}, nil
}

// lockKey names one advisory lock of one schema's store.
func lockKey(schema, name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("ordercore\x00" + schema + "\x00" + name))
	return int64(h.Sum64())
}

// createSchema creates the schema under an advisory lock: two instances starting at once
// would otherwise race on CREATE SCHEMA IF NOT EXISTS (one fails with a unique violation).
func createSchema(ctx context.Context, cc *pgx.ConnConfig, schema string) error {
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(schema, "create")); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize())
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: create schema %s: %w", schema, err)
	}
	return nil
}

// migrate runs the embedded migrations with goose over database/sql (pgx's stdlib
// adapter). goose's version table is named with the schema, and a session lock keyed by
// the schema keeps instances that start together from migrating it twice.
func migrate(ctx context.Context, cc *pgx.ConnConfig, schema string) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	db := stdlib.OpenDB(*cc)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockKey(schema, "migrate")),
		lock.WithLockTimeout(uint64(migrateLockPoll/time.Second), uint64(migrateLockTimeout/migrateLockPoll)))
	if err != nil {
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithTableName(schema+".goose_db_version"), goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// Close closes the pool.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// Write runs fn in one READ COMMITTED transaction. READ COMMITTED is enough: the loads
// lock every row they read until commit, and the changes are guarded by version and by
// the schema's constraints, so a row another instance changed meanwhile is either waited
// for or refuses the batch.
func (db *DB) Write(ctx context.Context, fn func(ordercore.WriteTx) error) error {
	c, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	// Released in a transaction (a panic in fn), the connection is closed by the pool,
	// and the server rolls the transaction back.
	defer c.Release()
	t := &lazyTx{conn: c.Conn(), opts: pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadWrite}}
	if err := fn(&writeTx{db: db, tx: t}); err != nil {
		t.rollback(ctx)
		return err
	}
	sent, err := t.commit(ctx)
	if err == nil {
		return nil
	}
	var answered *pgconn.PgError
	if sent && !errors.As(err, &answered) {
		// The COMMIT went out and no answer of the server's came back (the connection
		// was lost, the server restarted): it may have committed.
		return db.commitOutcome(t.xid, err)
	}
	t.rollback(ctx) // a statement of Apply's batch failed: the transaction is still open
	return fmt.Errorf("postgres: commit: %w", err)
}

// commitOutcome asks the server, on another connection, what became of transaction xid
// whose COMMIT got no answer: nil if it committed, the commit's error if it was rolled
// back, and an error wrapping ordercore.ErrCommitUnknown if the server cannot tell or
// cannot be asked within commitResolveMax. A transaction whose session is still being
// torn down reads "in progress" for a moment, and is asked again.
func (db *DB) commitOutcome(xid string, cause error) error {
	if xid == "" {
		return fmt.Errorf("postgres: commit: %w (no transaction id to ask about: %v)", ordercore.ErrCommitUnknown, cause)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitResolveMax)
	defer cancel()
	for {
		var status *string
		err := db.pool.QueryRow(ctx, "SELECT pg_xact_status($1::xid8)", xid).Scan(&status)
		switch {
		case err == nil && status != nil && *status == "committed":
			return nil
		case err == nil && status != nil && *status == "aborted":
			return fmt.Errorf("postgres: commit (transaction %s rolled back): %w", xid, cause)
		case err == nil && status == nil:
			return fmt.Errorf("postgres: commit: %w (transaction %s is too old to ask about: %v)", ordercore.ErrCommitUnknown, xid, cause)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres: commit: %w (transaction %s, asked for %s: %v; first: %v)", ordercore.ErrCommitUnknown, xid, commitResolveMax, err, cause)
		case <-time.After(commitResolvePoll):
		}
	}
}

func micros(t time.Time) int64 { return t.UnixMicro() }
func fromMicros(us int64) time.Time {
	return time.UnixMicro(us).UTC()
}

// nullMicros stores a zero time as NULL (no sync due, not resolved).
func nullMicros(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	us := micros(t)
	return &us
}

func fromNullMicros(us *int64) time.Time {
	if us == nil {
		return time.Time{}
	}
	return fromMicros(*us)
}

func notFound(kind, id string) error {
	return ordercore.Errorf(ordercore.ENOTFOUND, "%s %q not found", kind, id)
}

// querier is what reads run on: the pool, or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// collect reads every row of query with scan.
func collect[T any](ctx context.Context, q querier, what, query string, args []any, scan func(pgx.Rows) (T, error)) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: query %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: scan %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: read %s: %w", what, err)
	}
	return out, nil
}
