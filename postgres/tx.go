package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// lazyTx is a write transaction on one connection that spends as few round trips as it
// can. Its BEGIN goes out in one batch with the first statement (pgx's Batch.BeginTx),
// and a transaction that sends nothing sends no BEGIN either. Apply's batch is held back
// (pending) until the next statement or the end of the write: when the write ends, the
// COMMIT goes in the same batch if the server judges every statement of it (fold), and
// in a round trip of its own otherwise, because the client must see the row-count guards'
// results before it commits. A write whose function fails after Apply sends nothing of it.
type lazyTx struct {
	conn *pgx.Conn
	opts pgx.TxOptions
	tx   pgx.Tx // once BEGIN was sent
	// pending is Apply's batch, not sent yet; fold says whether its COMMIT may go with it.
	pending *pgx.Batch
	fold    bool
	// xid is the transaction's id (pg_current_xact_id), read with its BEGIN: if the
	// connection is lost once the COMMIT was sent, another connection asks the server
	// what became of it (DB.commitOutcome). Empty when the COMMIT went in the very
	// batch that began the transaction and no answer came back.
	xid string
}

// xidQuery reads the transaction's id; queued right after BEGIN, it costs no round trip.
const xidQuery = "SELECT pg_current_xact_id()::text"

// apply holds b back until the next statement or the commit (see lazyTx).
func (t *lazyTx) apply(ctx context.Context, b *pgx.Batch, fold bool) error {
	if err := t.flush(ctx); err != nil {
		return err
	}
	t.pending, t.fold = b, fold
	return nil
}

// flush sends a pending batch without its COMMIT: another statement follows it.
func (t *lazyTx) flush(ctx context.Context) error {
	if t.pending == nil {
		return nil
	}
	b := t.pending
	t.pending = nil
	return t.SendBatch(ctx, b)
}

// Query sends query (with BEGIN, if it is the first statement) and returns its rows.
func (t *lazyTx) Query(ctx context.Context, query string, args ...any) (pgx.Rows, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	if t.tx != nil {
		return t.tx.Query(ctx, query, args...)
	}
	br, err := t.begin(ctx, query, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// Exec sends query (with BEGIN, if it is the first statement).
func (t *lazyTx) Exec(ctx context.Context, query string, args ...any) error {
	if err := t.flush(ctx); err != nil {
		return err
	}
	if t.tx != nil {
		_, err := t.tx.Exec(ctx, query, args...)
		return err
	}
	br, err := t.begin(ctx, query, args)
	if err != nil {
		return err
	}
	_, err = br.Exec()
	return errors.Join(err, br.Close())
}

// begin sends BEGIN and query in one batch and reads BEGIN's result; query's is next.
func (t *lazyTx) begin(ctx context.Context, query string, args []any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	b.BeginTx(t.opts)
	b.Queue(xidQuery)
	b.Queue(query, args...)
	br := t.conn.SendBatch(ctx, b)
	t.tx = br.Tx()
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("begin: %w", err)
	}
	if err := br.QueryRow().Scan(&t.xid); err != nil {
		br.Close()
		return nil, fmt.Errorf("begin: transaction id: %w", err)
	}
	return br, nil
}

// SendBatch sends b in the transaction, with BEGIN first if none was sent yet, and
// closes its results (running their callbacks).
func (t *lazyTx) SendBatch(ctx context.Context, b *pgx.Batch) error {
	if err := t.flush(ctx); err != nil {
		return err
	}
	if t.tx != nil {
		return t.tx.SendBatch(ctx, b).Close()
	}
	withBegin := &pgx.Batch{}
	withBegin.BeginTx(t.opts)
	withBegin.Queue(xidQuery).QueryRow(func(row pgx.Row) error { return row.Scan(&t.xid) })
	withBegin.QueuedQueries = append(withBegin.QueuedQueries, b.QueuedQueries...)
	br := t.conn.SendBatch(ctx, withBegin)
	t.tx = br.Tx()
	return br.Close()
}

// commit sends what is pending and commits; a transaction that sent nothing has nothing
// to commit. With fold, the COMMIT ends the pending batch: if a statement of it fails,
// the server skips the rest, COMMIT included, and the transaction is left for rollback.
// sent says whether the COMMIT went out: an error after that, other than the server's
// own answer, leaves the outcome unknown.
func (t *lazyTx) commit(ctx context.Context) (sent bool, err error) {
	if t.pending != nil && t.fold {
		b := t.pending
		t.pending = nil
		b.Queue("COMMIT")
		if err := t.SendBatch(ctx, b); err != nil {
			return true, err
		}
		t.tx = nil // over: nothing is left to commit or roll back
		return true, nil
	}
	if err := t.flush(ctx); err != nil {
		return false, err
	}
	if t.tx == nil {
		return false, nil
	}
	return true, t.tx.Commit(ctx)
}

// rollback ends a transaction that is still open (BEGIN sent, no COMMIT); pgx closes a
// connection whose rollback fails, and the pool drops it.
func (t *lazyTx) rollback(ctx context.Context) {
	t.pending = nil // never sent
	if t.tx != nil {
		_ = t.tx.Rollback(context.WithoutCancel(ctx))
	}
}

// batchRows are the rows of a statement sent in a batch; closing them closes the batch.
type batchRows struct {
	pgx.Rows
	br  pgx.BatchResults
	err error
}

// Next also closes the batch after the last row, so that Err reports its error.
func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Close() {
	r.Rows.Close()
	if r.br != nil {
		r.err = r.br.Close()
		r.br = nil
	}
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}
