package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"ordercore"
)

func notFound(kind, id string) error {
	return ordercore.Errorf(ordercore.ENOTFOUND, "%s %q not found", kind, id)
}

// SKU reads one SKU.
func (db *DB) SKU(ctx context.Context, id string) (ordercore.SKU, error) {
	s, err := scanSKU(db.read.QueryRowContext(ctx, skusByID("?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return s, notFound("sku", id)
	} else if err != nil {
		return s, fmt.Errorf("sqlite: read sku: %w", err)
	}
	return s, nil
}

// Order reads one order with its lines.
func (db *DB) Order(ctx context.Context, id string) (ordercore.Order, error) {
	orders, err := queryOrders(ctx, db.read, ordersByID("?"), id)
	if err != nil {
		return ordercore.Order{}, err
	}
	if len(orders) == 0 {
		return ordercore.Order{}, notFound("order", id)
	}
	return orders[0], nil
}

// OrdersByUser lists a user's orders newest first, after the cursor afterID.
func (db *DB) OrdersByUser(ctx context.Context, userID, afterID string, limit int) ([]ordercore.Order, error) {
	if afterID == "" {
		return queryOrders(ctx, db.read, "SELECT "+orderCols+" FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT ?", userID, limit)
	}
	return queryOrders(ctx, db.read, "SELECT "+orderCols+" FROM orders WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?", userID, afterID, limit)
}

const eventCols = "seq, id, type, aggregate_type, aggregate_id, time, data"

func queryEvents(ctx context.Context, q querier, where string, args ...any) ([]ordercore.Event, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+eventCols+" FROM events "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query events: %w", err)
	}
	defer rows.Close()
	out := []ordercore.Event{}
	for rows.Next() {
		var e ordercore.Event
		var t int64
		var data string
		if err := rows.Scan(&e.Seq, &e.ID, &e.Type, &e.AggregateType, &e.AggregateID, &t, &data); err != nil {
			return nil, fmt.Errorf("sqlite: scan event: %w", err)
		}
		e.Time, e.Data = fromMicros(t), []byte(data)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Events reads the feed after a sequence number. On SQLite one writer assigns sequence
// numbers in commit order, so no gap can fill in later behind a reader's cursor.
func (db *DB) Events(ctx context.Context, after int64, limit int) ([]ordercore.Event, error) {
	return queryEvents(ctx, db.read, "WHERE seq > ? ORDER BY seq LIMIT ?", after, limit)
}

// RecentAggregateEvents reads the end of one aggregate's timeline, backwards over the
// events_aggregate index.
func (db *DB) RecentAggregateEvents(ctx context.Context, id string, limit int) ([]ordercore.Event, error) {
	evs, err := queryEvents(ctx, db.read, "WHERE aggregate_id = ? ORDER BY seq DESC LIMIT ?", id, limit)
	slices.Reverse(evs)
	return evs, err
}

// AggregateEvents reads one aggregate's timeline.
func (db *DB) AggregateEvents(ctx context.Context, id string, limit int) ([]ordercore.Event, error) {
	return queryEvents(ctx, db.read, "WHERE aggregate_id = ? ORDER BY seq LIMIT ?", id, limit)
}

// LastAggregateEvent reads the latest event of a type on an aggregate, backwards over
// the events_aggregate index.
func (db *DB) LastAggregateEvent(ctx context.Context, id, typ string) (ordercore.Event, bool, error) {
	evs, err := queryEvents(ctx, db.read, "WHERE aggregate_id = ? AND type = ? ORDER BY seq DESC LIMIT 1", id, typ)
	if err != nil || len(evs) == 0 {
		return ordercore.Event{}, false, err
	}
	return evs[0], true, nil
}

// notAwaitingSync leaves out orders whose payment attempt is unknown: its close at the
// channel did not get an answer, and the payment sync resolves it on its schedule. Without
// it, a channel that is down would have the expiry sweeper retry the same orders without
// pause, and starve the orders behind them.
const notAwaitingSync = "NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = orders.id AND p.status = 'unknown')"

// ExpiredOrders lists due unpaid orders over the orders_expiry partial index.
func (db *DB) ExpiredOrders(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := db.read.QueryContext(ctx, "SELECT id FROM orders WHERE status = 'pending_payment' AND expires_at <= ? AND "+notAwaitingSync+" ORDER BY expires_at LIMIT ?", micros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query expired orders: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// NextExpiry returns the earliest deadline of an unpaid order.
func (db *DB) NextExpiry(ctx context.Context) (time.Time, bool, error) {
	var us sql.NullInt64
	err := db.read.QueryRowContext(ctx, "SELECT MIN(expires_at) FROM orders WHERE status = 'pending_payment' AND "+notAwaitingSync).Scan(&us)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("sqlite: next expiry: %w", err)
	}
	return fromMicros(us.Int64), us.Valid, nil
}

// OldestIdempotencyKey returns when the oldest stored response was stored.
func (db *DB) OldestIdempotencyKey(ctx context.Context) (time.Time, bool, error) {
	var us sql.NullInt64
	err := db.read.QueryRowContext(ctx, "SELECT MIN(created_at) FROM idempotency_keys").Scan(&us)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("sqlite: oldest idempotency key: %w", err)
	} else if !us.Valid {
		return time.Time{}, false, nil
	}
	return fromMicros(us.Int64), true, nil
}

// Dump reads the whole database in one read transaction, so the snapshot is consistent.
func (db *DB) Dump(ctx context.Context) (*ordercore.Snapshot, error) {
	tx, err := db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: begin dump: %w", err)
	}
	defer tx.Rollback()
	snap := &ordercore.Snapshot{}
	if snap.SKUs, err = querySKUs(ctx, tx, "SELECT "+skuCols+" FROM skus ORDER BY id"); err != nil {
		return nil, err
	}
	if snap.Orders, err = queryOrders(ctx, tx, "SELECT "+orderCols+" FROM orders ORDER BY id"); err != nil {
		return nil, err
	}
	if snap.Events, err = queryEvents(ctx, tx, "ORDER BY seq"); err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, "SELECT sku, movement, d_total, d_reserved, d_sold, COALESCE(order_id, ''), COALESCE(hold_id, ''), COALESCE(line_no, 0), at FROM stock_ledger ORDER BY seq")
	if err != nil {
		return nil, fmt.Errorf("sqlite: query ledger: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e ordercore.StockEntry
		var at int64
		if err := rows.Scan(&e.SKU, &e.Movement, &e.DTotal, &e.DReserved, &e.DSold, &e.OrderID, &e.HoldID, &e.LineNo, &at); err != nil {
			return nil, fmt.Errorf("sqlite: scan ledger: %w", err)
		}
		e.At = fromMicros(at)
		snap.Ledger = append(snap.Ledger, e)
	}
	if err := rows.Err(); err != nil {
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
	return snap, nil
}
