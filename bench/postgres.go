package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
	"ordercore/postgres"
)

const (
	// engine3Instances is the number of engines of engine-3: three serve instances.
	engine3Instances = 3
	// naivePoolCommitters is the number of one-order committers of naive-pool: one per
	// connection of a store's pool, as a naive server with that pool runs requests.
	naivePoolCommitters = postgres.PoolConnsMax
	// adminConnsMax bounds the run's own connections (settings, the activity sampler,
	// the row counts and the drops); the stores have their own pools.
	adminConnsMax = 2
	// connectTimeout bounds reaching the server at the start of a run.
	connectTimeout = 10 * time.Second
	// dropTimeout bounds dropping a path's schema, which runs even after ctx ended.
	dropTimeout = time.Minute
	// othersNoticeable is the share of the cores used by processes other than ordercore
	// and PostgreSQL above which a result says so: its figures are depressed by it.
	othersNoticeable = 0.2
	// schemaPrefixMax leaves room in PostgreSQL's 63-byte names for _path_scenario.
	schemaPrefixMax = 40
)

// schemaPrefix is what Config.SchemaPrefix may be: schemas are plain lower-case names.
var schemaPrefix = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// checkDB validates Config.DB (the --db flag) and picks the schema prefix.
func (c *Config) checkDB() error {
	if c.DB == "" {
		return nil
	}
	if !strings.HasPrefix(c.DB, "postgres://") && !strings.HasPrefix(c.DB, "postgresql://") {
		return fmt.Errorf("bench: --db %q: want a postgres:// or postgresql:// URL (without --db the bench runs on SQLite)", redactURL(c.DB))
	}
	u, err := url.Parse(c.DB)
	if err != nil {
		return fmt.Errorf("bench: --db: %w", err)
	}
	if u.Query().Has("schema") {
		return fmt.Errorf("bench: --db %s: drop the schema parameter: the bench creates a fresh schema for every path and drops it after", u.Redacted())
	}
	if _, err := pgx.ParseConfig(c.DB); err != nil {
		return fmt.Errorf("bench: --db %s: %w", u.Redacted(), err)
	}
	if c.SchemaPrefix == "" {
		var b [4]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		c.SchemaPrefix = "bench_" + hex.EncodeToString(b[:])
	}
	if !schemaPrefix.MatchString(c.SchemaPrefix) || len(c.SchemaPrefix) > schemaPrefixMax {
		return fmt.Errorf("bench: schema prefix %q: want up to %d lower-case letters, digits and underscores", c.SchemaPrefix, schemaPrefixMax)
	}
	return nil
}

// schema names the fresh schema of one path on one scenario.
func (c Config) schema(path string, sc scenario) string {
	return c.SchemaPrefix + "_" + strings.ReplaceAll(path, "-", "_") + "_" + sc.name
}

// redactURL hides a password in u, and all of u when it does not parse.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}

// pgPath is how a PostgreSQL path writes: engines committers, each with its own store
// (pool) or all on one, with one committer configuration.
type pgPath struct {
	name     string
	engines  int
	ownPools bool
	ecfg     engine.Config
	note     string
}

func pgPathOf(name string) pgPath {
	switch name {
	case PathEngine:
		return pgPath{name: name, engines: 1, ownPools: true, ecfg: engineConfig(name)}
	case PathNaive:
		return pgPath{name: name, engines: 1, ownPools: true, ecfg: engineConfig(name),
			note: "one transaction per order, one at a time"}
	case PathNaivePool:
		return pgPath{name: name, engines: naivePoolCommitters, ecfg: engineConfig(PathNaive),
			note: fmt.Sprintf("one transaction per order, %d at a time on one pool", naivePoolCommitters)}
	case PathEngine3:
		return pgPath{name: name, engines: engine3Instances, ownPools: true, ecfg: engineConfig(name),
			note: fmt.Sprintf("%d engines, a pool each, one schema", engine3Instances)}
	}
	limit.Assert(false, "%q is not a PostgreSQL path", name)
	return pgPath{}
}

// runPostgres measures the PostgreSQL paths on every requested scenario.
func runPostgres(ctx context.Context, cfg Config, rep *Report, out *progress) (*Report, error) {
	admin, err := openAdmin(ctx, cfg.DB)
	if err != nil {
		return rep, err
	}
	defer admin.Close()
	rep.Postgres, err = readSettings(ctx, admin, cfg)
	if err != nil {
		return rep, err
	}
	for _, sc := range scenarios(cfg) {
		for _, path := range PGPaths {
			if !cfg.wants(path) {
				continue
			}
			res, err := runPGPath(ctx, cfg, admin, out, pgPathOf(path), sc)
			if err != nil {
				return rep, fmt.Errorf("bench %s/%s: %w", path, sc.name, err)
			}
			rep.Results = append(rep.Results, res)
		}
	}
	return rep, nil
}

// openAdmin opens the run's own small pool. Its sessions get the synchronous_commit the
// store's get (postgres.Open's rule: "on" unless the URL says otherwise), so that SHOW
// reports what the measured transactions ran with.
func openAdmin(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("bench: --db: %w", err)
	}
	if _, ok := pc.ConnConfig.RuntimeParams["synchronous_commit"]; !ok {
		pc.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "ordercore-bench"
	pc.MaxConns, pc.MinConns = adminConnsMax, 0
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("bench: --db %s: %w", redactURL(dsn), err)
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("bench: --db %s: connect: %w", redactURL(dsn), err)
	}
	return pool, nil
}

// PGSettings is the PostgreSQL server a report measured and the settings its figures
// depend on, read with SHOW at the start of the run.
type PGSettings struct {
	Server            string // host and database, password redacted
	Version           string
	SynchronousCommit string // as the store's sessions have it
	Fsync             string
	SharedBuffers     string
	MaxConnections    string
	// PoolConnsMax is the pool size of every store (postgres.PoolConnsMax).
	PoolConnsMax int
	SchemaPrefix string
	Kept         bool // the schemas were left behind (Config.KeepSchemas)
}

func readSettings(ctx context.Context, admin *pgxpool.Pool, cfg Config) (*PGSettings, error) {
	s := &PGSettings{PoolConnsMax: postgres.PoolConnsMax, SchemaPrefix: cfg.SchemaPrefix, Kept: cfg.KeepSchemas}
	if u, err := url.Parse(cfg.DB); err == nil {
		s.Server = u.Host + u.Path
	}
	for _, v := range []struct {
		name string
		dst  *string
	}{{"server_version", &s.Version}, {"synchronous_commit", &s.SynchronousCommit}, {"fsync", &s.Fsync},
		{"shared_buffers", &s.SharedBuffers}, {"max_connections", &s.MaxConnections}} {
		// SHOW takes no parameters; the names are constants of this function.
		if err := admin.QueryRow(ctx, "SHOW "+v.name).Scan(v.dst); err != nil {
			return nil, fmt.Errorf("bench: SHOW %s: %w", v.name, err)
		}
	}
	return s, nil
}

// runPGPath measures one path in a fresh schema: it opens the path's stores and engines,
// creates the SKUs, drives the clients (client i submits to engine i mod engines), then
// closes the engines, counts what the schema holds and drops it.
func runPGPath(ctx context.Context, cfg Config, admin *pgxpool.Pool, out *progress, p pgPath, sc scenario) (res Result, err error) {
	label := p.name + "/" + sc.name
	res = Result{Path: p.name, Scenario: sc.name, Engines: p.engines, Schema: cfg.schema(p.name, sc), Note: p.note}
	defer func() {
		if cfg.KeepSchemas {
			out.linef("%s: kept schema %s", label, res.Schema)
			return
		}
		// The schema goes even when ctx has ended (Ctrl-C): a run never leaves rows behind.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dropTimeout)
		defer cancel()
		if _, derr := admin.Exec(dctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{res.Schema}.Sanitize()+" CASCADE"); derr != nil {
			err = errors.Join(err, fmt.Errorf("drop schema %s: %w", res.Schema, derr))
		}
	}()
	// Every session of the path names it, so pg_stat_activity shows only its own. No
	// spaces: the URL query would carry one as "+", which the driver does not decode.
	app := "ordercore-bench:" + res.Schema
	dsn, err := withParam(cfg.DB, "application_name", app)
	if err != nil {
		return res, err
	}
	out.linef("%s: schema %s, %d engine(s), creating %d SKU(s)", label, res.Schema, p.engines, len(sc.skus))
	engs, closeAll, err := openEngines(ctx, dsn, res.Schema, p)
	defer closeAll()
	if err != nil {
		return res, err
	}
	if err := createSKUs(ctx, engs[0], sc.skus); err != nil {
		return res, err
	}
	// A running system's autovacuum analyzes the skus table within a minute of it
	// growing; a fresh schema has no statistics, and each connection's cached generic
	// plan of the SKU load (made while the table was empty) stays a sequential scan of
	// every SKU. Measure the running system.
	if _, err := admin.Exec(ctx, "ANALYZE "+pgx.Identifier{res.Schema, "skus"}.Sanitize()); err != nil {
		return res, fmt.Errorf("analyze skus: %w", err)
	}

	var before, after engine.Stats
	var cpu0 cpuSample
	var act *sampler
	place := func(ctx context.Context, w *worker) error {
		_, err := engs[w.id%len(engs)].Submit(ctx, engine.PlaceOrder{UserID: userID,
			Lines: []engine.LineRequest{{SKU: sc.pick(w.rng), Quantity: 1}}}, nil)
		return err
	}
	win, err := drive(ctx, cfg, out, label, place, func(open bool) {
		if open {
			before, cpu0 = sumStats(engs), readCPU()
			act = startActivity(ctx, admin, app)
			return
		}
		after = sumStats(engs)
		res.CPU = cpu0.until(readCPU())
		res.Activity = act.finish()
	})
	if err != nil {
		return res, err
	}
	win.fill(&res)
	// Busy is per committer: their summed time in transactions over as many windows.
	batchStats(&res, before, after, win.seconds*float64(len(engs)))
	if n := after.Batches - before.Batches; n > 0 {
		res.TxMean = (after.CommitTime - before.CommitTime) / time.Duration(n)
	}
	if res.CPU != nil && res.CPU.Others() >= othersNoticeable {
		res.Note = joinNotes(res.Note, fmt.Sprintf("other processes used %.0f%% of the cores", 100*res.CPU.Others()))
	}
	if res.Activity != nil && res.Activity.Err != "" {
		res.Note = joinNotes(res.Note, "activity sampling failed: "+res.Activity.Err)
	}
	closeAll() // every queued order is committed before the rows are counted
	stored, err := countStored(ctx, admin, res.Schema)
	if err != nil {
		return res, err
	}
	res.Stored = &stored
	if !stored.holds(res.OrdersTotal) {
		res.Note = joinNotes(res.Note, fmt.Sprintf("STORED ROWS DIFFER: %d orders answered as placed, %+v", res.OrdersTotal, stored))
	}
	out.done(res)
	return res, nil
}

// openEngines opens the stores of p on schema (one per engine, or one shared) and starts
// its engines. closeAll closes the engines, then the stores; it may be called twice.
func openEngines(ctx context.Context, dsn, schema string, p pgPath) (engs []*engine.Engine, closeAll func(), err error) {
	var dbs []*postgres.DB
	closeAll = func() {
		for _, e := range engs {
			e.Close() // commits what is queued; idempotent
		}
		for _, db := range dbs {
			db.Close() // idempotent
		}
	}
	stores := 1
	if p.ownPools {
		stores = p.engines
	}
	for range stores {
		db, err := postgres.Open(ctx, dsn, postgres.Options{Schema: schema})
		if err != nil {
			return engs, closeAll, err
		}
		dbs = append(dbs, db)
	}
	for i := range p.engines {
		engs = append(engs, engine.New(dbs[i%len(dbs)], ordercore.SystemClock{}, p.ecfg))
	}
	return engs, closeAll, nil
}

// withParam sets one query parameter of a URL.
func withParam(dsn, key, value string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("--db: %w", err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// sumStats adds up the committers' counters of several engines.
func sumStats(engs []*engine.Engine) engine.Stats {
	var s engine.Stats
	for _, e := range engs {
		st := e.Stats()
		s.Batches += st.Batches
		s.Commands += st.Commands
		s.Rejected += st.Rejected
		s.CommitTime += st.CommitTime
		if s.BatchSizes == nil {
			s.BatchSizes = make([]int64, len(st.BatchSizes))
		}
		for n, c := range st.BatchSizes {
			s.BatchSizes[n] += c
		}
	}
	return s
}

// Stored is what a path's schema held once its engines had closed. Each of its figures
// must equal the orders answered as placed over the whole run (Result.OrdersTotal): a
// placed order is one orders row, one order.placed event and one reserved unit.
type Stored struct {
	Orders, Placed, Reserved int64
}

func (s Stored) holds(placed int64) bool {
	return s.Orders == placed && s.Placed == placed && s.Reserved == placed
}

func countStored(ctx context.Context, admin *pgxpool.Pool, schema string) (Stored, error) {
	var s Stored
	q := func(table string) string { return pgx.Identifier{schema, table}.Sanitize() }
	err := admin.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+q("orders")+`),
		(SELECT count(*) FROM `+q("events")+` WHERE type = $1),
		(SELECT coalesce(sum(reserved), 0)::bigint FROM `+q("skus")+`)`, ordercore.EventOrderPlaced).
		Scan(&s.Orders, &s.Placed, &s.Reserved)
	if err != nil {
		return s, fmt.Errorf("count the rows of %s: %w", schema, err)
	}
	return s, nil
}
