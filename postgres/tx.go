package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// lazyTx is a write transaction on one connection whose BEGIN spends no round trip of its
// own: it goes out in one batch with the first statement (pgx's Batch.BeginTx), and a
// transaction that sends nothing sends no BEGIN either. The COMMIT stays a round trip of
// its own: the row-count guards of Apply's statements are judged by the client from their
// results, which must come back before the transaction commits.
type lazyTx struct {
	conn *pgx.Conn
	opts pgx.TxOptions
	tx   pgx.Tx // once BEGIN was sent
}

// Query sends query (with BEGIN, if it is the first statement) and returns its rows.
func (t *lazyTx) Query(ctx context.Context, query string, args ...any) (pgx.Rows, error) {
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
	b.Queue(query, args...)
	br := t.conn.SendBatch(ctx, b)
	t.tx = br.Tx()
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("begin: %w", err)
	}
	return br, nil
}

// SendBatch sends b in the transaction, with BEGIN first if none was sent yet, and
// closes its results (running their callbacks).
func (t *lazyTx) SendBatch(ctx context.Context, b *pgx.Batch) error {
	if t.tx != nil {
		return t.tx.SendBatch(ctx, b).Close()
	}
	withBegin := &pgx.Batch{}
	withBegin.BeginTx(t.opts)
	withBegin.QueuedQueries = append(withBegin.QueuedQueries, b.QueuedQueries...)
	br := t.conn.SendBatch(ctx, withBegin)
	t.tx = br.Tx()
	return br.Close()
}

// commit commits what was sent; a transaction that sent nothing has nothing to commit.
func (t *lazyTx) commit(ctx context.Context) error {
	if t.tx == nil {
		return nil
	}
	return t.tx.Commit(ctx)
}

// rollback ends a transaction that is still open (BEGIN sent, no COMMIT); pgx closes a
// connection whose rollback fails, and the pool drops it.
func (t *lazyTx) rollback(ctx context.Context) {
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
