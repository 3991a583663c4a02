package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"ordercore"
)

const (
	skuCols   = "id, name, price_amount, currency, total, reserved, sold, version, created_at, updated_at"
	orderCols = "id, user_id, status, currency, amount, expires_at, version, cancel_reason, created_at, updated_at"
	lineCols  = "order_id, sku, quantity, unit_price, amount, reservation"
	linesOf   = "SELECT " + lineCols + " FROM order_lines WHERE order_id = ANY($1) ORDER BY order_id, line_no"
)

func scanSKU(rows pgx.Rows) (ordercore.SKU, error) {
	var s ordercore.SKU
	var created, updated int64
	err := rows.Scan(&s.ID, &s.Name, &s.Price.Amount, &s.Price.Currency, &s.Total, &s.Reserved, &s.Sold, &s.Version, &created, &updated)
	s.CreatedAt, s.UpdatedAt = fromMicros(created), fromMicros(updated)
	return s, err
}

func scanOrder(rows pgx.Rows) (ordercore.Order, error) {
	var o ordercore.Order
	var exp, created, updated int64
	err := rows.Scan(&o.ID, &o.UserID, &o.Status, &o.Amount.Currency, &o.Amount.Amount, &exp, &o.Version, &o.CancelReason, &created, &updated)
	o.ExpiresAt, o.CreatedAt, o.UpdatedAt = fromMicros(exp), fromMicros(created), fromMicros(updated)
	return o, err
}

// queryOrders reads orders with query (which selects orderCols) and then their lines
// with lines (which selects lineCols of the orders whose ids are $1).
func queryOrders(ctx context.Context, q querier, query, lines string, args ...any) ([]ordercore.Order, error) {
	out, err := collect(ctx, q, "orders", query, args, scanOrder)
	if err != nil || len(out) == 0 {
		return out, err
	}
	idx := make(map[string]int, len(out))
	ids := make([]string, len(out))
	for i, o := range out {
		idx[o.ID], ids[i] = i, o.ID
	}
	type line struct {
		order string
		ordercore.Line
	}
	ls, err := collect(ctx, q, "order lines", lines, []any{ids}, func(rows pgx.Rows) (line, error) {
		var l line
		err := rows.Scan(&l.order, &l.SKU, &l.Quantity, &l.UnitPrice.Amount, &l.Amount.Amount, &l.Reservation)
		return l, err
	})
	if err != nil {
		return nil, err
	}
	for _, l := range ls {
		o := &out[idx[l.order]]
		l.UnitPrice.Currency, l.Amount.Currency = o.Amount.Currency, o.Amount.Currency
		o.Lines = append(o.Lines, l.Line)
	}
	return out, nil
}

// SKU reads one SKU.
func (db *DB) SKU(ctx context.Context, id string) (ordercore.SKU, error) {
	skus, err := collect(ctx, db.pool, "sku", "SELECT "+skuCols+" FROM skus WHERE id = $1", []any{id}, scanSKU)
	if err != nil {
		return ordercore.SKU{}, err
	}
	if len(skus) == 0 {
		return ordercore.SKU{}, notFound("sku", id)
	}
	return skus[0], nil
}

// Order reads one order with its lines.
func (db *DB) Order(ctx context.Context, id string) (ordercore.Order, error) {
	orders, err := queryOrders(ctx, db.pool, "SELECT "+orderCols+" FROM orders WHERE id = $1", linesOf, id)
	if err != nil {
		return ordercore.Order{}, err
	}
	if len(orders) == 0 {
		return ordercore.Order{}, notFound("order", id)
	}
	return orders[0], nil
}

// OrdersByUser lists a user's orders newest first, after the cursor afterID, over the
// orders_user index.
func (db *DB) OrdersByUser(ctx context.Context, userID, afterID string, limit int) ([]ordercore.Order, error) {
	if afterID == "" {
		return queryOrders(ctx, db.pool, "SELECT "+orderCols+" FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT $2", linesOf, userID, limit)
	}
	return queryOrders(ctx, db.pool, "SELECT "+orderCols+" FROM orders WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3", linesOf, userID, afterID, limit)
}

// notAwaitingSync leaves out orders whose payment attempt is unknown: its close at the
// channel did not get an answer, and the payment sync resolves it on its schedule. Without
// it, a channel that is down would have the expiry sweeper retry the same orders without
// pause, and starve the orders behind them.
const notAwaitingSync = "NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = orders.id AND p.status = 'unknown')"

// ExpiredOrders lists due unpaid orders over the orders_expiry partial index.
func (db *DB) ExpiredOrders(ctx context.Context, now time.Time, limit int) ([]string, error) {
	return collect(ctx, db.pool, "expired orders",
		"SELECT id FROM orders WHERE status = 'pending_payment' AND expires_at <= $1 AND "+notAwaitingSync+" ORDER BY expires_at, id LIMIT $2",
		[]any{micros(now), limit}, func(rows pgx.Rows) (string, error) {
			var id string
			return id, rows.Scan(&id)
		})
}

// NextExpiry returns the earliest deadline of an unpaid order.
func (db *DB) NextExpiry(ctx context.Context) (time.Time, bool, error) {
	var us *int64
	err := db.pool.QueryRow(ctx, "SELECT MIN(expires_at) FROM orders WHERE status = 'pending_payment' AND "+notAwaitingSync).Scan(&us)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("postgres: next expiry: %w", err)
	}
	return fromNullMicros(us), us != nil, nil
}

// OldestIdempotencyKey returns when the oldest stored response was stored.
func (db *DB) OldestIdempotencyKey(ctx context.Context) (time.Time, bool, error) {
	var us *int64
	err := db.pool.QueryRow(ctx, "SELECT MIN(created_at) FROM idempotency_keys").Scan(&us)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("postgres: oldest idempotency key: %w", err)
	}
	return fromNullMicros(us), us != nil, nil
}

// Dump reads the whole database in one REPEATABLE READ, read-only transaction, so the
// snapshot is consistent while instances keep writing.
func (db *DB) Dump(ctx context.Context) (*ordercore.Snapshot, error) {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("postgres: begin dump: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	snap := &ordercore.Snapshot{}
	if snap.SKUs, err = collect(ctx, tx, "skus", "SELECT "+skuCols+" FROM skus ORDER BY id", nil, scanSKU); err != nil {
		return nil, err
	}
	if snap.Orders, err = queryOrders(ctx, tx, "SELECT "+orderCols+" FROM orders ORDER BY id", linesOf); err != nil {
		return nil, err
	}
	if snap.Events, err = queryEvents(ctx, tx, "ORDER BY seq"); err != nil {
		return nil, err
	}
	snap.Ledger, err = collect(ctx, tx, "stock ledger",
		"SELECT sku, movement, d_total, d_reserved, d_sold, COALESCE(order_id, ''), COALESCE(hold_id, ''), COALESCE(line_no, 0), at FROM stock_ledger ORDER BY seq", nil,
		func(rows pgx.Rows) (ordercore.StockEntry, error) {
			var e ordercore.StockEntry
			var at int64
			err := rows.Scan(&e.SKU, &e.Movement, &e.DTotal, &e.DReserved, &e.DSold, &e.OrderID, &e.HoldID, &e.LineNo, &at)
			e.At = fromMicros(at)
			return e, err
		})
	if err != nil {
		return nil, err
	}
	if err := dumpPayments(ctx, tx, snap); err != nil {
		return nil, err
	}
	if err := dumpSagas(ctx, tx, snap); err != nil {
		return nil, err
	}
	if err := dumpWebhooks(ctx, tx, snap); err != nil {
		return nil, err
	}
	if err := dumpHolds(ctx, tx, snap); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return nil, fmt.Errorf("postgres: end dump: %w", err)
	}
	return snap, nil
}
