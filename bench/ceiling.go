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
	w, err := openCeiling(ctx, cfg, out, &res, sc)
	if err != nil {
		return res, err
	}
	defer w.close()
	if _, err := w.statements(ctx, n); err != nil { // prepared before the clock starts
		return res, err
	}
	orders := make([]ceilingOrder, n)

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
		for i := range orders {
			orders[i] = ceilingOrder{id: ordercore.NewID(began), sku: sc.pick(rng)}
		}
		if err := w.batch(ctx, orders); err != nil {
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

// openCeiling creates res's database in a fresh directory, with the scenario's SKUs,
// and opens the hand-written writer on it; closing the writer closes the database.
func openCeiling(ctx context.Context, cfg Config, out *progress, res *Result, sc scenario) (*ceilingWriter, error) {
	dir, err := mkdir(cfg, res.Path, sc)
	if err != nil {
		return nil, err
	}
	res.DB = filepath.Join(dir, "ordercore.db")
	out.linef("%s/%s: creating %d SKU(s)", res.Path, sc.name, len(sc.skus))
	if err := seed(ctx, res.DB, sc); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", ceilingDSN(res.DB))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", res.DB, err)
	}
	db.SetMaxOpenConns(1) // one writer, as in the store
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	// The store's checkpointer, so that the loop writes the WAL as the store does.
	ckpt, err := sqlite.NewCheckpointer(res.DB, sqlite.Options{})
	if err != nil {
		db.Close()
		return nil, err
	}
	w, err := newCeilingWriter(ctx, db, ckpt)
	if err != nil {
		ckpt.Close()
		db.Close()
		return nil, err
	}
	return w, nil
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

// ceilingOrder is an order the hand-written writer writes: 1 unit of sku.
type ceilingOrder struct{ id, sku string }

// ceilingWriter writes batches of orders with statements prepared once per batch size.
type ceilingWriter struct {
	db      *sql.DB
	ckpt    *sqlite.Checkpointer
	inserts map[int]*[4]insertStmt // orders, lines, ledger, events; by batch size
	update  *sql.Stmt
	// Reused between batches.
	orderArgs, lineArgs, ledgerArgs, eventArgs []any
	deltas                                     map[string]int64
	touched                                    []string
}

// stockUpdate is the store's conditional stock update (sqlite/write.go, stockChanges).
const stockUpdate = `UPDATE skus SET total = total + ?1, reserved = reserved + ?2, sold = sold + ?3,
	version = version + 1, updated_at = ?4
	WHERE id = ?5 AND (total + ?1) - (reserved + ?2) - (sold + ?3) >= 0 AND reserved + ?2 >= 0 AND sold + ?3 >= 0`

// ceilingInserts are the multi-row INSERTs of one order's rows, in the store's order.
var ceilingInserts = [4]struct {
	head string
	cols int
}{
	{"INSERT INTO orders (id, user_id, status, currency, amount, expires_at, version, cancel_reason, created_at, updated_at)", 10},
	{"INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, amount, reservation)", 7},
	{"INSERT INTO stock_ledger (sku, movement, d_total, d_reserved, d_sold, order_id, line_no, at)", 8},
	{"INSERT INTO events (id, type, aggregate_type, aggregate_id, time, data)", 6},
}

func newCeilingWriter(ctx context.Context, db *sql.DB, ckpt *sqlite.Checkpointer) (*ceilingWriter, error) {
	w := &ceilingWriter{db: db, ckpt: ckpt, inserts: map[int]*[4]insertStmt{}, deltas: map[string]int64{}}
	var err error
	if w.update, err = db.PrepareContext(ctx, stockUpdate); err != nil {
		return nil, err
	}
	return w, nil
}

// statements returns the INSERTs for batches of n orders, preparing them the first time.
func (w *ceilingWriter) statements(ctx context.Context, n int) (*[4]insertStmt, error) {
	if s, ok := w.inserts[n]; ok {
		return s, nil
	}
	s := new([4]insertStmt)
	for i, ins := range ceilingInserts {
		var err error
		if s[i], err = prepareInsert(ctx, w.db, ins.head, ins.cols, n); err != nil {
			for j := range i {
				s[j].close()
			}
			return nil, err
		}
	}
	w.inserts[n] = s
	return s, nil
}

// close closes the writer's statements, its checkpointer and its database.
func (w *ceilingWriter) close() {
	for _, s := range w.inserts {
		for i := range s {
			s[i].close()
		}
	}
	w.update.Close()
	w.ckpt.Close()
	w.db.Close()
}

// batch writes orders in one transaction and returns once it is durable.
func (w *ceilingWriter) batch(ctx context.Context, orders []ceilingOrder) error {
	inserts, err := w.statements(ctx, len(orders))
	if err != nil {
		return err
	}
	now := ordercore.SystemClock{}.Now()
	at := now.UnixMicro()
	expires := now.Add(limit.ExpiresInDefault)
	clear(w.deltas)
	w.orderArgs, w.lineArgs, w.ledgerArgs, w.eventArgs = w.orderArgs[:0], w.lineArgs[:0], w.ledgerArgs[:0], w.eventArgs[:0]
	for _, o := range orders {
		w.deltas[o.sku]++
		line := ordercore.Line{SKU: o.sku, Quantity: 1, UnitPrice: price, Amount: price, Reservation: ordercore.ReservationReserved}
		data := ordercore.OrderPlaced{UserID: userID, Amount: price,
			Lines: []ordercore.Line{line}, ExpiresAt: expires, Version: 1}.AppendJSON(make([]byte, 0, 320))
		w.orderArgs = append(w.orderArgs, o.id, userID, string(ordercore.OrderPendingPayment), string(price.Currency),
			price.Amount, expires.UnixMicro(), int64(1), "", at, at)
		w.lineArgs = append(w.lineArgs, o.id, 1, o.sku, int64(1), price.Amount, price.Amount, string(ordercore.ReservationReserved))
		w.ledgerArgs = append(w.ledgerArgs, o.sku, string(ordercore.MoveReserve), int64(0), int64(1), int64(0), o.id, 1, at)
		w.eventArgs = append(w.eventArgs, ordercore.NewID(now), ordercore.EventOrderPlaced, ordercore.AggregateOrder,
			o.id, at, string(data))
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
	if err := w.write(ctx, tx, inserts, at); err != nil {
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
func (w *ceilingWriter) write(ctx context.Context, tx *sql.Tx, inserts *[4]insertStmt, at int64) error {
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
	for i, args := range [4][]any{w.orderArgs, w.lineArgs, w.ledgerArgs, w.eventArgs} {
		if err := inserts[i].exec(ctx, tx, args); err != nil {
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
