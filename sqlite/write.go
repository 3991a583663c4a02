package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"ordercore"
	"ordercore/internal/limit"
)

type writeTx struct {
	db *DB
	tx *sql.Tx
}

// QueryContext runs a query in the transaction, with its prepared statement if it has one.
func (w *writeTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if _, ok := w.db.stmts[query]; ok {
		return w.stmt(ctx, query).QueryContext(ctx, args...)
	}
	return w.tx.QueryContext(ctx, query, args...)
}

// The write path's statements, all prepared at Open.
var (
	insertSKUs   = newInsert("INSERT INTO skus ("+skuCols+")", 10)
	insertOrders = newInsert("INSERT INTO orders ("+orderCols+")", 10)
	insertLines  = newInsert("INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, amount, reservation)", 7)
	insertLedger = newInsert("INSERT INTO stock_ledger (sku, movement, d_total, d_reserved, d_sold, order_id, line_no, at, hold_id)", 9)
	insertEvents = newInsert("INSERT INTO events (id, type, aggregate_type, aggregate_id, time, data)", 6)
	insertIdem   = newInsert("INSERT INTO idempotency_keys (key, request_hash, status, body, created_at)", 5)
	inserts      = []insertSpec{insertSKUs, insertOrders, insertLines, insertLedger, insertEvents, insertIdem}
)

// updateStock is the conditional update: the database refuses a result with negative
// available, reserved or sold (P1, paired with the engine's assertion).
const updateStock = `UPDATE skus SET total = total + ?1, reserved = reserved + ?2, sold = sold + ?3,
	version = version + 1, updated_at = ?4
	WHERE id = ?5 AND (total + ?1) - (reserved + ?2) - (sold + ?3) >= 0 AND reserved + ?2 >= 0 AND sold + ?3 >= 0`

const updateOrder = "UPDATE orders SET status = ?, version = ?, cancel_reason = ?, updated_at = ? WHERE id = ? AND version = ?"

const reviveLines = "UPDATE order_lines SET reservation = 'committed' WHERE order_id = ? AND reservation = 'released'"

const resolveLines = "UPDATE order_lines SET reservation = ? WHERE order_id = ? AND reservation = 'reserved'"

func (w *writeTx) SKUs(ctx context.Context, ids []string) (map[string]ordercore.SKU, error) {
	out := make(map[string]ordercore.SKU, len(ids))
	err := chunks(ids, func(part []string) error {
		in, args := inList(part)
		skus, err := querySKUs(ctx, w, skusByID(in), args...)
		for _, s := range skus {
			out[s.ID] = s
		}
		return err
	})
	return out, err
}

func (w *writeTx) Orders(ctx context.Context, ids []string) (map[string]ordercore.Order, error) {
	out := make(map[string]ordercore.Order, len(ids))
	err := chunks(ids, func(part []string) error {
		in, args := inList(part)
		orders, err := queryOrders(ctx, w, ordersByID(in), args...)
		for _, o := range orders {
			out[o.ID] = o
		}
		return err
	})
	return out, err
}

func (w *writeTx) Idempotency(ctx context.Context, keys []string) (map[string]ordercore.IdemRecord, error) {
	out := make(map[string]ordercore.IdemRecord, len(keys))
	err := chunks(keys, func(part []string) error {
		in, args := inList(part)
		rows, err := w.QueryContext(ctx, idemByKey(in), args...)
		if err != nil {
			return fmt.Errorf("sqlite: query idempotency keys: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var r ordercore.IdemRecord
			var created int64
			if err := rows.Scan(&r.Key, &r.RequestHash, &r.Status, &r.Body, &created); err != nil {
				return fmt.Errorf("sqlite: scan idempotency key: %w", err)
			}
			r.CreatedAt = fromMicros(created)
			out[r.Key] = r
		}
		return rows.Err()
	})
	return out, err
}

// Apply writes a batch's changes. Every guard that fails returns an error, which rolls the
// whole batch back: the engine has already checked the same rules, so a failing guard
// means a bug, and the batch is better lost unacknowledged than written wrong.
func (w *writeTx) Apply(ctx context.Context, c *ordercore.Changeset) error {
	steps := []func(context.Context, *ordercore.Changeset) error{
		w.newSKUs, w.stockChanges, w.newOrders, w.orderChanges, w.ledger, w.payments, w.refunds, w.moneyLedger,
		w.channelEvents, w.reviews, w.sagas, w.webhooks, w.holds, w.events, w.idempotency, w.prune,
	}
	for _, step := range steps {
		if err := step(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

func (w *writeTx) newSKUs(ctx context.Context, c *ordercore.Changeset) error {
	return w.insert(ctx, insertSKUs, len(c.NewSKUs), func(i int, a []any) []any {
		s := c.NewSKUs[i]
		return append(a, s.ID, s.Name, s.Price.Amount, string(s.Price.Currency), s.Total, s.Reserved, s.Sold, s.Version, micros(s.CreatedAt), micros(s.UpdatedAt))
	})
}

// stockChanges applies one conditional UPDATE per touched SKU, however many orders of the
// batch moved its stock.
func (w *writeTx) stockChanges(ctx context.Context, c *ordercore.Changeset) error {
	for _, ch := range c.StockChanges {
		res, err := w.stmt(ctx, updateStock).ExecContext(ctx, ch.DTotal, ch.DReserved, ch.DSold, micros(ch.At), ch.SKU)
		if err != nil {
			return fmt.Errorf("sqlite: update stock of %s: %w", ch.SKU, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("sqlite: conditional stock update of %s by %+v matched %d rows", ch.SKU, ch, n)
		}
	}
	return nil
}

func (w *writeTx) newOrders(ctx context.Context, c *ordercore.Changeset) error {
	err := w.insert(ctx, insertOrders, len(c.NewOrders), func(i int, a []any) []any {
		o := c.NewOrders[i]
		return append(a, o.ID, o.UserID, string(o.Status), string(o.Amount.Currency), o.Amount.Amount, micros(o.ExpiresAt), o.Version, o.CancelReason, micros(o.CreatedAt), micros(o.UpdatedAt))
	})
	if err != nil {
		return err
	}
	type ref struct{ o, l int }
	var lines []ref
	for i, o := range c.NewOrders {
		for j := range o.Lines {
			lines = append(lines, ref{i, j})
		}
	}
	return w.insert(ctx, insertLines, len(lines), func(i int, a []any) []any {
		r := lines[i]
		o := &c.NewOrders[r.o]
		l := o.Lines[r.l]
		return append(a, o.ID, r.l+1, l.SKU, l.Quantity, l.UnitPrice.Amount, l.Amount.Amount, string(l.Reservation))
	})
}

// orderChanges rewrites each changed order if its version is still the one loaded, and
// resolves its reservations if they were resolved in this batch: all lines of an order
// resolve together, and each exactly once.
func (w *writeTx) orderChanges(ctx context.Context, c *ordercore.Changeset) error {
	for _, ch := range c.OrderChanges {
		o := ch.Order
		res, err := w.stmt(ctx, updateOrder).ExecContext(ctx, string(o.Status), o.Version, o.CancelReason, micros(o.UpdatedAt), o.ID, ch.FromVersion)
		if err != nil {
			return fmt.Errorf("sqlite: update order %s: %w", o.ID, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("sqlite: order %s is no longer at version %d", o.ID, ch.FromVersion)
		}
		if ch.Revive {
			res, err = w.stmt(ctx, reviveLines).ExecContext(ctx, o.ID)
			if err != nil {
				return fmt.Errorf("sqlite: revive reservations of %s: %w", o.ID, err)
			}
			if n, _ := res.RowsAffected(); n != int64(len(o.Lines)) {
				return fmt.Errorf("sqlite: order %s revived %d of its %d lines", o.ID, n, len(o.Lines))
			}
			continue
		}
		if ch.Resolve == "" {
			continue
		}
		for _, l := range o.Lines {
			limit.Assert(l.Reservation == ch.Resolve, "order %s resolves to %s but has a %s line", o.ID, ch.Resolve, l.Reservation)
		}
		res, err = w.stmt(ctx, resolveLines).ExecContext(ctx, string(ch.Resolve), o.ID)
		if err != nil {
			return fmt.Errorf("sqlite: resolve reservations of %s: %w", o.ID, err)
		}
		if n, _ := res.RowsAffected(); n != int64(len(o.Lines)) {
			return fmt.Errorf("sqlite: order %s resolved %d of its %d reservations", o.ID, n, len(o.Lines))
		}
	}
	return nil
}

func (w *writeTx) ledger(ctx context.Context, c *ordercore.Changeset) error {
	return w.insert(ctx, insertLedger, len(c.Ledger), func(i int, a []any) []any {
		e := c.Ledger[i]
		var orderID, holdID, lineNo any
		if e.OrderID != "" {
			orderID, lineNo = e.OrderID, e.LineNo
		}
		if e.HoldID != "" {
			holdID, lineNo = e.HoldID, e.LineNo
		}
		return append(a, e.SKU, string(e.Movement), e.DTotal, e.DReserved, e.DSold, orderID, lineNo, micros(e.At), holdID)
	})
}

func (w *writeTx) events(ctx context.Context, c *ordercore.Changeset) error {
	return w.insert(ctx, insertEvents, len(c.Events), func(i int, a []any) []any {
		e := c.Events[i]
		return append(a, e.ID, e.Type, e.AggregateType, e.AggregateID, micros(e.Time), string(e.Data))
	})
}

func (w *writeTx) idempotency(ctx context.Context, c *ordercore.Changeset) error {
	return w.insert(ctx, insertIdem, len(c.Idempotency), func(i int, a []any) []any {
		r := c.Idempotency[i]
		return append(a, r.Key, r.RequestHash, r.Status, r.Body, micros(r.CreatedAt))
	})
}

func (w *writeTx) prune(ctx context.Context, c *ordercore.Changeset) error {
	if c.IdemPruneBefore.IsZero() {
		return nil
	}
	_, err := w.tx.ExecContext(ctx, "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys WHERE created_at < ? ORDER BY created_at LIMIT ?)",
		micros(c.IdemPruneBefore), c.IdemPruneMax)
	if err != nil {
		return fmt.Errorf("sqlite: prune idempotency keys: %w", err)
	}
	return nil
}
