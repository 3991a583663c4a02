package bench

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the driver the store uses, opened here directly

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
	"ordercore/sqlite"
)

// ceilingSamplesMax bounds the per-batch latencies the ceiling keeps.
const ceilingSamplesMax = samplesMax / 4

// runCeiling measures the storage ceiling: one goroutine writing, in one transaction per
// batch, exactly the rows the engine writes for a batch of PlaceOrders (an orders row, an
// order_lines row, a stock_ledger row and an events row per order, one conditional UPDATE
// per touched SKU), with multi-row INSERTs of prepared statements and nothing else: no
// queue, no load of the SKUs, no per-command bookkeeping. The batch size is the engine's
// observed mean on the same scenario, so the two differ only in what the engine adds.
func runCeiling(ctx context.Context, cfg Config, out *progress, sc scenario, engineRun *Result) (Result, error) {
	res := Result{Path: PathCeiling, Scenario: sc.name, Busy: 1}
	n, why := ceilingBatch(cfg, engineRun)
	res.BatchP50, res.BatchMax, res.BatchMean = n, n, float64(n)
	res.Note = fmt.Sprintf("batches of %d (%s); latency per batch", n, why)
	dir, err := mkdir(cfg, PathCeiling, sc)
	if err != nil {
		return res, err
	}
	res.DB = filepath.Join(dir, "ordercore.db")
	out.linef("%s/%s: creating %d SKU(s)", PathCeiling, sc.name, len(sc.skus))
	if err := seed(ctx, res.DB, sc); err != nil {
		return res, err
	}
	db, err := sql.Open("sqlite", ceilingDSN(res.DB))
	if err != nil {
		return res, fmt.Errorf("open %s: %w", res.DB, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one writer, as in the store
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	// The store's checkpointer, so that the loop writes the WAL as the store does.
	ckpt, err := sqlite.NewCheckpointer(res.DB, sqlite.Options{})
	if err != nil {
		return res, err
	}
	defer ckpt.Close()
	w, err := newCeilingWriter(ctx, db, sc, n, ckpt)
	if err != nil {
		return res, err
	}
	defer w.close()

	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	rec := recorder{samples: make([]time.Duration, 0, ceilingSamplesMax), rng: rng}
	bar := out.start(PathCeiling+"/"+sc.name, cfg.warmup()+cfg.Duration)
	start := time.Now()
	var t0 time.Time
	lastTick := start
	measuring := false
	for {
		now := time.Now()
		if !measuring && now.Sub(start) >= cfg.warmup() {
			measuring, t0 = true, now
		}
		if measuring && now.Sub(t0) >= cfg.Duration {
			break
		}
		if err := ctx.Err(); err != nil {
			bar.abort()
			return res, err
		}
		if now.Sub(lastTick) >= progressEvery {
			bar.update(res.OrdersTotal)
			lastTick = now
		}
		began := time.Now()
		if err := w.batch(ctx, rng); err != nil {
			bar.abort()
			return res, err // every batch of the ceiling must commit; a failure is a bug here
		}
		res.OrdersTotal += int64(n)
		if measuring {
			res.Orders += int64(n)
			rec.add(time.Since(began))
		}
	}
	win := window{orders: res.Orders, total: res.OrdersTotal, seconds: time.Since(t0).Seconds(), lat: merge([]*recorder{&rec})}
	win.fill(&res)
	bar.finish()
	out.done(res)
	return res, nil
}

// ceilingBatch is the batch size of the ceiling: the engine's mean batch on the same
// scenario, rounded, or the client count when the engine did not run.
func ceilingBatch(cfg Config, engineRun *Result) (int, string) {
	if engineRun == nil || engineRun.BatchMean < 1 {
		return min(cfg.Clients, limit.BatchCommandsMax), "the client count: engine not run"
	}
	return max(1, int(math.Round(engineRun.BatchMean))), "the engine's mean"
}

// seed creates the database at path with the store's schema and settings and the
// scenario's SKUs, written by the engine so that they are the same rows, then closes it.
func seed(ctx context.Context, path string, sc scenario) error {
	db, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		return err
	}
	eng := engine.New(db, ordercore.SystemClock{}, engine.Config{})
	err = createSKUs(ctx, eng, sc.skus)
	eng.Close()
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// ceilingDSN is the store's write connection string (sqlite/sqlite.go, dsn): WAL,
// synchronous=FULL, the same busy timeout, foreign keys on, the same fallback checkpoint
// size, BEGIN IMMEDIATE.
func ceilingDSN(path string) string {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", limit.SQLiteWALPagesMax))
	q.Add("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

// ceilingWriter writes batches of n orders with statements prepared once.
type ceilingWriter struct {
	db     *sql.DB
	ckpt   *sqlite.Checkpointer
	sc     scenario
	n      int
	orders insertStmt
	lines  insertStmt
	ledger insertStmt
	events insertStmt
	update *sql.Stmt
	// Reused between batches.
	orderArgs, lineArgs, ledgerArgs, eventArgs []any
	deltas                                     map[string]int64
	touched                                    []string
}

// stockUpdate is the store's conditional stock update (sqlite/write.go, stockChanges).
const stockUpdate = `UPDATE skus SET total = total + ?1, reserved = reserved + ?2, sold = sold + ?3,
	version = version + 1, updated_at = ?4
	WHERE id = ?5 AND (total + ?1) - (reserved + ?2) - (sold + ?3) >= 0 AND reserved + ?2 >= 0 AND sold + ?3 >= 0`

func newCeilingWriter(ctx context.Context, db *sql.DB, sc scenario, n int, ckpt *sqlite.Checkpointer) (*ceilingWriter, error) {
	w := &ceilingWriter{db: db, ckpt: ckpt, sc: sc, n: n, deltas: map[string]int64{},
		orderArgs: make([]any, 0, 10*n), lineArgs: make([]any, 0, 7*n),
		ledgerArgs: make([]any, 0, 8*n), eventArgs: make([]any, 0, 6*n)}
	var err error
	prep := func(s *insertStmt, head string, cols int) {
		if err == nil {
			*s, err = prepareInsert(ctx, db, head, cols, n)
		}
	}
	prep(&w.orders, "INSERT INTO orders (id, user_id, status, currency, amount, expires_at, version, cancel_reason, created_at, updated_at)", 10)
	prep(&w.lines, "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, amount, reservation)", 7)
	prep(&w.ledger, "INSERT INTO stock_ledger (sku, movement, d_total, d_reserved, d_sold, order_id, line_no, at)", 8)
	prep(&w.events, "INSERT INTO events (id, type, aggregate_type, aggregate_id, time, data)", 6)
	if err == nil {
		w.update, err = db.PrepareContext(ctx, stockUpdate)
	}
	if err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

func (w *ceilingWriter) close() {
	for _, s := range []*insertStmt{&w.orders, &w.lines, &w.ledger, &w.events} {
		s.close()
	}
	if w.update != nil {
		w.update.Close()
	}
}

// batch writes n orders in one transaction, each for 1 unit of a SKU of the scenario.
func (w *ceilingWriter) batch(ctx context.Context, rng *rand.Rand) error {
	now := ordercore.SystemClock{}.Now()
	at := now.UnixMicro()
	expires := now.Add(limit.ExpiresInDefault)
	clear(w.deltas)
	w.orderArgs, w.lineArgs, w.ledgerArgs, w.eventArgs = w.orderArgs[:0], w.lineArgs[:0], w.ledgerArgs[:0], w.eventArgs[:0]
	for range w.n {
		sku := w.sc.pick(rng)
		w.deltas[sku]++
		id := ordercore.NewID(now)
		line := ordercore.Line{SKU: sku, Quantity: 1, UnitPrice: price, Amount: price, Reservation: ordercore.ReservationReserved}
		data := ordercore.OrderPlaced{UserID: userID, Amount: price,
			Lines: []ordercore.Line{line}, ExpiresAt: expires, Version: 1}.AppendJSON(make([]byte, 0, 320))
		w.orderArgs = append(w.orderArgs, id, userID, string(ordercore.OrderPendingPayment), string(price.Currency),
			price.Amount, expires.UnixMicro(), int64(1), "", at, at)
		w.lineArgs = append(w.lineArgs, id, 1, sku, int64(1), price.Amount, price.Amount, string(ordercore.ReservationReserved))
		w.ledgerArgs = append(w.ledgerArgs, sku, string(ordercore.MoveReserve), int64(0), int64(1), int64(0), id, 1, at)
		w.eventArgs = append(w.eventArgs, ordercore.NewID(now), ordercore.EventOrderPlaced, ordercore.AggregateOrder,
			id, at, string(data))
	}
	w.touched = w.touched[:0]
	for sku := range w.deltas {
		w.touched = append(w.touched, sku)
	}
	slices.Sort(w.touched) // the engine's order

	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := w.write(ctx, tx, at); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	w.ckpt.Committed()
	return nil
}

// write runs the batch's statements in the order the store's Apply runs them.
func (w *ceilingWriter) write(ctx context.Context, tx *sql.Tx, at int64) error {
	update := tx.StmtContext(ctx, w.update)
	for _, sku := range w.touched {
		r, err := update.ExecContext(ctx, int64(0), w.deltas[sku], int64(0), at, sku)
		if err != nil {
			return fmt.Errorf("update stock of %s: %w", sku, err)
		}
		if n, _ := r.RowsAffected(); n != 1 {
			return fmt.Errorf("conditional stock update of %s matched %d rows", sku, n)
		}
	}
	for _, ins := range []struct {
		s    *insertStmt
		args []any
	}{{&w.orders, w.orderArgs}, {&w.lines, w.lineArgs}, {&w.ledger, w.ledgerArgs}, {&w.events, w.eventArgs}} {
		if err := ins.s.exec(ctx, tx, ins.args); err != nil {
			return err
		}
	}
	return nil
}

// insertStmt is a multi-row INSERT of n rows, prepared as statements of at most
// limit.InsertRowsMax rows (the store's bound): full ones and one for the remainder.
type insertStmt struct {
	head       string
	cols, n    int
	full, rest *sql.Stmt
}

func prepareInsert(ctx context.Context, db *sql.DB, head string, cols, n int) (insertStmt, error) {
	s := insertStmt{head: head, cols: cols, n: n}
	var err error
	if n >= limit.InsertRowsMax {
		if s.full, err = db.PrepareContext(ctx, head+" VALUES "+placeholders(limit.InsertRowsMax, cols)); err != nil {
			return s, fmt.Errorf("prepare %s: %w", head, err)
		}
	}
	if r := n % limit.InsertRowsMax; r > 0 {
		if s.rest, err = db.PrepareContext(ctx, head+" VALUES "+placeholders(r, cols)); err != nil {
			s.close()
			return s, fmt.Errorf("prepare %s: %w", head, err)
		}
	}
	return s, nil
}

func (s *insertStmt) exec(ctx context.Context, tx *sql.Tx, args []any) error {
	limit.Assert(len(args) == s.n*s.cols, "%s: %d values for %d rows of %d columns", s.head, len(args), s.n, s.cols)
	per := limit.InsertRowsMax * s.cols
	for len(args) > 0 {
		stmt, k := s.full, per
		if len(args) < per {
			stmt, k = s.rest, len(args)
		}
		if _, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args[:k]...); err != nil {
			return fmt.Errorf("%s: %w", s.head, err)
		}
		args = args[k:]
	}
	return nil
}

func (s *insertStmt) close() {
	for _, st := range []*sql.Stmt{s.full, s.rest} {
		if st != nil {
			st.Close()
		}
	}
}

// placeholders returns "(?,?,?),(?,?,?)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(one+",", rows), ",")
}
