// Package sqlite is ordercore's embedded store: one SQLite file in WAL mode with
// synchronous=FULL, so a committed batch survives power loss. One connection writes (the
// committer's; several writers on SQLite only produce SQLITE_BUSY) and a separate pool
// reads, so reads never queue behind writes. Schema migrations are embedded and run by
// goose on Open.
//
// It implements the interfaces of the root package and imports no other adapter.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"ordercore"
	"ordercore/internal/limit"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ReadConnsMax bounds the read pool.
const ReadConnsMax = 8

// DB is an ordercore store in one SQLite file.
type DB struct {
	Path  string
	write *sql.DB // exactly one connection, owned by the committer
	read  *sql.DB
	// stmts holds every write statement, prepared once at Open and read-only after, keyed
	// by text. Multi-row inserts use a fixed set of row counts (powers of two) so the set
	// stays small and SQLite never re-parses a batch's statements.
	stmts map[string]*sql.Stmt
	ckpt  *Checkpointer
}

var (
	_ ordercore.Store  = (*DB)(nil)
	_ ordercore.Dumper = (*DB)(nil)
)

// Options are the SQLite settings; Open writes every one explicitly.
type Options struct {
	// Synchronous is "FULL" (default: a commit is durable on return, even across power
	// loss) or "NORMAL" (only the bench's comparison uses it).
	Synchronous string
}

func (o Options) withDefaults() Options {
	if o.Synchronous == "" {
		o.Synchronous = "FULL"
	}
	return o
}

// dsn builds a connection string. Per-connection PRAGMAs must be in the DSN because
// database/sql opens connections on its own.
func dsn(path string, o Options, mode int) string {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+o.Synchronous+")")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(ON)")
	// Statement journals (a multi-row statement inside a transaction keeps one, to undo
	// just that statement) stay in memory instead of a temporary file.
	q.Add("_pragma", "temp_store(MEMORY)")
	switch mode {
	case connRead:
		q.Add("_pragma", "query_only(1)")
	case connWrite:
		// The checkpointer copies the WAL into the database file; the committer does
		// only past this size (checkpointer).
		q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", limit.SQLiteWALPagesMax))
		q.Add("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode()
}

// The connections of a store: its writer, its read pool, its checkpointer.
const (
	connWrite = iota
	connRead
	connCheckpoint
)

// Open opens (creating if needed) the database file at path and migrates it.
func Open(ctx context.Context, path string, o Options) (*DB, error) {
	o = o.withDefaults()
	if o.Synchronous != "FULL" && o.Synchronous != "NORMAL" {
		return nil, fmt.Errorf("sqlite: synchronous must be FULL or NORMAL, not %q", o.Synchronous)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sqlite: create directory: %w", err)
	}
	w, err := openOne(path, o, connWrite)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	db := &DB{Path: path, write: w, stmts: map[string]*sql.Stmt{}}
	if err := db.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	if err := db.prepare(ctx); err != nil {
		db.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn(path, o, connRead))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open read pool: %w", err)
	}
	r.SetMaxOpenConns(ReadConnsMax)
	r.SetMaxIdleConns(ReadConnsMax)
	db.read = r
	if db.ckpt, err = NewCheckpointer(path, o); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// openOne opens a pool of exactly one connection, kept open for the pool's life.
func openOne(path string, o Options, mode int) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(path, o, mode))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// Checkpointer copies committed WAL frames into the database file when something was
// committed since its last copy: at a tick (limit.SQLiteCheckpointEvery) once about
// limit.SQLiteCheckpointFrames frames are expected at the rate the WAL grew since (under
// load, every tick), and at least every limit.SQLiteCheckpointEveryMax. It copies from a
// connection of its own: a PASSIVE checkpoint, which waits for no one, copies what no
// reader still needs and runs beside the writer's next transactions (on another core),
// where SQLite's automatic checkpoint would run inside a commit and hold up the writer.
// The writer starts the WAL over once a checkpoint has copied all of it; under load that
// happens at its own fallback checkpoint (wal_autocheckpoint of limit.SQLiteWALPagesMax),
// which then copies only the frames committed since the checkpointer's last run. A
// checkpoint that failed, or left frames a reader still needed, loses nothing (the frames
// stay in the WAL) and is tried again at the next tick. The store runs one; the
// benchmark's hand-written storage loop runs one too, so the two write the same way.
type Checkpointer struct {
	conn       *sql.DB
	written    atomic.Bool
	stop, done chan struct{}
	closing    sync.Once
}

// NewCheckpointer starts a checkpointer of the database file at path.
func NewCheckpointer(path string, o Options) (*Checkpointer, error) {
	conn, err := openOne(path, o.withDefaults(), connCheckpoint)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open checkpointer: %w", err)
	}
	c := &Checkpointer{conn: conn, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c, nil
}

// Committed tells the checkpointer that a transaction committed.
func (c *Checkpointer) Committed() { c.written.Store(true) }

// Close stops the checkpointer and closes its connection; it may be called again (a
// store may be closed twice).
func (c *Checkpointer) Close() error {
	c.closing.Do(func() { close(c.stop) })
	<-c.done
	return c.conn.Close()
}

func (c *Checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(limit.SQLiteCheckpointEvery)
	defer t.Stop()
	var lastLog int64 // the WAL's frames after the last checkpoint
	ticks, wait := 0, 1
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		ticks++
		if ticks < wait || !c.written.Swap(false) {
			continue
		}
		// busy: another checkpoint ran; log and copied: the WAL's frames and those now
		// in the database file (fewer while a reader still needed some).
		var busy, log, copied int64
		err := c.conn.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &copied)
		if err != nil || busy != 0 || copied < log {
			c.written.Store(true) // the rest at the next tick
			ticks, wait = 0, 1
			continue
		}
		wait = checkpointWait(log, lastLog, ticks)
		lastLog, ticks = log, 0
	}
}

// checkpointWait is the number of ticks until the next checkpoint, for one that found log
// frames in the WAL, ticks after one that left lastLog: enough for about
// limit.SQLiteCheckpointFrames new frames at the rate since, bounded by
// limit.SQLiteCheckpointEveryMax. A WAL with fewer frames than before was started over
// after everything in it was copied, so all its frames are new.
func checkpointWait(log, lastLog int64, ticks int) int {
	fresh := log - lastLog
	if log < lastLog {
		fresh = log
	}
	most := int(limit.SQLiteCheckpointEveryMax / limit.SQLiteCheckpointEvery)
	if fresh <= 0 {
		return most
	}
	return max(1, min(most, int(limit.SQLiteCheckpointFrames*int64(ticks)/fresh)))
}

func (db *DB) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db.write, sub)
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// Close stops the checkpointer and closes the connections; the last to close copies
// the WAL into the database file.
func (db *DB) Close() error {
	var errs []error
	if db.ckpt != nil {
		errs = append(errs, db.ckpt.Close())
	}
	for _, st := range db.stmts {
		errs = append(errs, st.Close())
	}
	if db.read != nil {
		errs = append(errs, db.read.Close())
	}
	errs = append(errs, db.write.Close())
	return errors.Join(errs...)
}

// Write runs fn in one IMMEDIATE transaction on the write connection.
func (db *DB) Write(ctx context.Context, fn func(ordercore.WriteTx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	if err := fn(&writeTx{db: db, tx: tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	db.ckpt.Committed()
	return nil
}

func micros(t time.Time) int64 { return t.UnixMicro() }
func fromMicros(us int64) time.Time {
	return time.UnixMicro(us).UTC()
}

// placeholders returns "(?,?,?),(?,?,?)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(one+",", rows), ",")
}

// prepare prepares every statement the write path uses, once, while no transaction holds
// the write connection. Transactions bind them with Tx.StmtContext, which reuses the
// prepared statement on the same connection (and re-prepares transparently should
// database/sql ever replace the connection).
func (db *DB) prepare(ctx context.Context) error {
	queries := append([]string{updateStock, updateOrder, resolveLines, reviveLines}, paymentStatements()...)
	queries = append(queries, sagaStatements()...)
	queries = append(queries, webhookStatements()...)
	queries = append(queries, holdStatements()...)
	for _, in := range inserts {
		for _, q := range in.texts {
			queries = append(queries, q)
		}
	}
	for size := 1; size <= inListMax; size *= 2 {
		for _, q := range []func(string) string{skusByID, ordersByID, linesByOrder, idemByKey} {
			queries = append(queries, q(marks(size)))
		}
	}
	for _, q := range queries {
		st, err := db.write.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlite: prepare %q: %w", q[:min(len(q), 60)], err)
		}
		db.stmts[q] = st
	}
	return nil
}

// stmt binds the prepared statement with text query to tx.
func (w *writeTx) stmt(ctx context.Context, query string) *sql.Stmt {
	st, ok := w.db.stmts[query]
	limit.Assert(ok, "statement not prepared: %s", query)
	return w.tx.StmtContext(ctx, st)
}

// insertSpec is a multi-row INSERT: its head, its number of columns, and its statement
// text for each chunk size (texts[n] inserts n rows; see chunkSize).
type insertSpec struct {
	head  string
	cols  int
	texts map[int]string
}

func newInsert(head string, cols int) insertSpec { return newRows(head, cols, "") }

// newRows is a multi-row statement other than a plain INSERT: its rows are a VALUES list
// between head and tail (an UPDATE ... FROM a VALUES table, say).
func newRows(head string, cols int, tail string) insertSpec {
	in := insertSpec{head: head, cols: cols, texts: map[int]string{}}
	for size := 1; size <= insertChunkMax; size++ {
		if size <= insertExactMax || size&(size-1) == 0 {
			in.texts[size] = head + " VALUES " + placeholders(size, cols) + tail
		}
	}
	return in
}

// query returns the statement text inserting rows rows.
func (in insertSpec) query(rows int) string {
	q, ok := in.texts[rows]
	limit.Assert(ok, "insert of %d rows has no statement", rows)
	return q
}

// chunkSize is the rows of the next statement when n rows remain: all of them up to
// insertExactMax, else the largest power of two that fits (up to insertChunkMax). A batch
// of n <= 64 orders writes each table with one statement; 556 with two (512 + 44).
func chunkSize(n int) int {
	if n <= insertExactMax {
		return n
	}
	size := insertChunkMax
	for size > n {
		size /= 2
	}
	return size
}

// Multi-row INSERT sizes, all prepared at Open: every size up to insertExactMax, and the
// powers of two up to insertChunkMax. Per-statement overhead is a real share of a small
// batch, and splitting a large one into many small statements costs a quarter of its
// throughput (BENCHMARKS.md). 512 rows of at most 14 columns (webhook deliveries) stay far
// below SQLite's 32,766 bound variables.
const (
	insertExactMax = 64
	insertChunkMax = 512
)

// insert writes n rows with multi-row INSERT statements; row appends the i-th row's
// values to args, in statements of chunkSize rows.
func (w *writeTx) insert(ctx context.Context, in insertSpec, n int, row func(i int, args []any) []any) error {
	_, err := w.execChunks(ctx, in, n, row)
	return err
}

// execChunks runs in's statements over n rows, as insert does, and returns the rows they
// changed.
func (w *writeTx) execChunks(ctx context.Context, in insertSpec, n int, row func(i int, args []any) []any) (int64, error) {
	head, cols := in.head, in.cols
	var affected int64
	args := make([]any, 0, min(n, insertChunkMax)*cols)
	for start := 0; start < n; {
		size := chunkSize(n - start)
		args = args[:0]
		for i := start; i < start+size; i++ {
			args = row(i, args)
		}
		limit.Assert(len(args) == size*cols, "%s: %d values for %d rows of %d columns", head, len(args), size, cols)
		res, err := w.stmt(ctx, in.query(size)).ExecContext(ctx, args...)
		if err != nil {
			return affected, fmt.Errorf("sqlite: %.60s: %w", head, err)
		}
		n, _ := res.RowsAffected()
		affected += n
		start += size
	}
	return affected, nil
}

// inList returns the placeholders and arguments of an IN list of ids, padded to the next
// power of two by repeating the last id (a repeat changes no IN result). Padding keeps the
// set of statement texts small, so every one of them is prepared once at Open.
func inList(ids []string) (string, []any) {
	n := 1
	for n < len(ids) {
		n *= 2
	}
	args := make([]any, n)
	for i := range args {
		args[i] = ids[min(i, len(ids)-1)]
	}
	return marks(n), args
}

func marks(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

// The batch loads, by the size of their padded IN list.
func skusByID(in string) string { return "SELECT " + skuCols + " FROM skus WHERE id IN (" + in + ")" }
func ordersByID(in string) string {
	return "SELECT " + orderCols + " FROM orders WHERE id IN (" + in + ")"
}
func linesByOrder(in string) string {
	return "SELECT order_id, sku, quantity, unit_price, amount, reservation FROM order_lines WHERE order_id IN (" + in + ") ORDER BY order_id, line_no"
}
func idemByKey(in string) string {
	return "SELECT key, request_hash, status, body, created_at FROM idempotency_keys WHERE key IN (" + in + ")"
}

// inListMax bounds an IN list (a power of two, far below SQLite's bound variables).
const inListMax = 512

// chunks calls fn with consecutive slices of ids of at most inListMax.
func chunks(ids []string, fn func([]string) error) error {
	for start := 0; start < len(ids); start += inListMax {
		if err := fn(ids[start:min(start+inListMax, len(ids))]); err != nil {
			return err
		}
	}
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const skuCols = "id, name, price_amount, currency, total, reserved, sold, version, created_at, updated_at"

func scanSKU(rows interface{ Scan(...any) error }) (ordercore.SKU, error) {
	var s ordercore.SKU
	var created, updated int64
	err := rows.Scan(&s.ID, &s.Name, &s.Price.Amount, &s.Price.Currency, &s.Total, &s.Reserved, &s.Sold, &s.Version, &created, &updated)
	s.CreatedAt, s.UpdatedAt = fromMicros(created), fromMicros(updated)
	return s, err
}

// querySKUs reads SKUs; query selects skuCols from skus.
func querySKUs(ctx context.Context, q querier, query string, args ...any) ([]ordercore.SKU, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query skus: %w", err)
	}
	defer rows.Close()
	var out []ordercore.SKU
	for rows.Next() {
		s, err := scanSKU(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: scan sku: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

const orderCols = "id, user_id, status, currency, amount, expires_at, version, cancel_reason, created_at, updated_at"

// queryOrders reads orders and their lines; query selects orderCols from orders.
func queryOrders(ctx context.Context, q querier, query string, args ...any) ([]ordercore.Order, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query orders: %w", err)
	}
	var out []ordercore.Order
	for rows.Next() {
		var o ordercore.Order
		var exp, created, updated int64
		if err := rows.Scan(&o.ID, &o.UserID, &o.Status, &o.Amount.Currency, &o.Amount.Amount, &exp, &o.Version, &o.CancelReason, &created, &updated); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: scan order: %w", err)
		}
		o.ExpiresAt, o.CreatedAt, o.UpdatedAt = fromMicros(exp), fromMicros(created), fromMicros(updated)
		out = append(out, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return out, nil
	}
	idx := make(map[string]int, len(out))
	ids := make([]string, len(out))
	for i, o := range out {
		idx[o.ID], ids[i] = i, o.ID
	}
	err = chunks(ids, func(part []string) error {
		in, args := inList(part)
		rows, err := q.QueryContext(ctx, linesByOrder(in), args...)
		if err != nil {
			return fmt.Errorf("sqlite: query lines: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var l ordercore.Line
			if err := rows.Scan(&id, &l.SKU, &l.Quantity, &l.UnitPrice.Amount, &l.Amount.Amount, &l.Reservation); err != nil {
				return fmt.Errorf("sqlite: scan line: %w", err)
			}
			o := &out[idx[id]]
			l.UnitPrice.Currency, l.Amount.Currency = o.Amount.Currency, o.Amount.Currency
			o.Lines = append(o.Lines, l)
		}
		return rows.Err()
	})
	return out, err
}
