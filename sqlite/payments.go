package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"ordercore"
)

const paymentCols = "id, order_id, channel, status, currency, amount, txn_id, accepted, captured, refunding, refunded, instructions, sync_attempts, next_sync_at, version, created_at, updated_at"

const refundCols = "id, order_id, payment_id, kind, currency, amount, reason, status, refund_id, restock_lines, sync_attempts, next_sync_at, version, created_at, updated_at"

const reviewCols = "id, kind, order_id, payment_id, refund_id, evidence, status, resolution, note, resolved_by, resolved_at, version, created_at"

// The payment side's write statements, prepared at Open with its loads (paymentStatements).
var (
	insertPayment = "INSERT INTO payments (" + paymentCols + ") VALUES (" + marks(17) + ")"
	updatePayment = `UPDATE payments SET status = ?4, txn_id = ?7, accepted = ?8, captured = ?9, refunding = ?10, refunded = ?11,
		instructions = ?12, sync_attempts = ?13, next_sync_at = ?14, version = ?15, updated_at = ?17
		WHERE id = ?1 AND order_id = ?2 AND channel = ?3 AND currency = ?5 AND amount = ?6 AND created_at = ?16 AND version = ?18`
	insertRefund = "INSERT INTO refunds (" + refundCols + ") VALUES (" + marks(15) + ")"
	updateRefund = `UPDATE refunds SET status = ?8, refund_id = ?9, sync_attempts = ?11, next_sync_at = ?12, version = ?13, updated_at = ?15
		WHERE id = ?1 AND payment_id = ?3 AND amount = ?6 AND version = ?16`
	insertMoney  = "INSERT INTO money_ledger (payment_id, order_id, refund_id, movement, amount, currency, at) VALUES (?,?,?,?,?,?,?)"
	insertInbox  = "INSERT INTO channel_events (channel, event_id, payment_id, refund_id, outcome, received_at) VALUES (?,?,?,?,?,?)"
	inboxLookup  = "SELECT 1 FROM channel_events WHERE channel = ? AND event_id = ?"
	insertReview = "INSERT INTO review_items (" + reviewCols + ") VALUES (" + marks(13) + ")"
	updateReview = `UPDATE review_items SET status = ?7, resolution = ?8, note = ?9, resolved_by = ?10, resolved_at = ?11, version = ?12
		WHERE id = ?1 AND version = ?14`
)

// paymentStatements lists the payment side's statements to prepare at Open: the writes,
// and the batch loads for every padded IN-list size (inList).
func paymentStatements() []string {
	out := []string{insertPayment, updatePayment, insertRefund, updateRefund, insertMoney, insertInbox, inboxLookup, insertReview, updateReview}
	for size := 1; size <= inListMax; size *= 2 {
		in := marks(size)
		out = append(out,
			"SELECT "+paymentCols+" FROM payments WHERE id IN ("+in+")",
			"SELECT "+paymentCols+" FROM payments WHERE order_id IN ("+in+")",
			"SELECT "+refundCols+" FROM refunds WHERE id IN ("+in+")",
			"SELECT "+refundCols+" FROM refunds WHERE order_id IN ("+in+")",
			"SELECT "+reviewCols+" FROM review_items WHERE id IN ("+in+")")
	}
	return out
}

// nullMicros stores a zero time as NULL (no sync due).
func nullMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return micros(t)
}

func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

func queryPayments(ctx context.Context, q querier, query string, args ...any) ([]ordercore.Payment, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query payments: %w", err)
	}
	defer rows.Close()
	var out []ordercore.Payment
	for rows.Next() {
		var p ordercore.Payment
		var instr string
		var next sql.NullInt64
		var created, updated int64
		if err := rows.Scan(&p.ID, &p.OrderID, &p.Channel, &p.Status, &p.Amount.Currency, &p.Amount.Amount, &p.TxnID,
			&p.Accepted, &p.Captured, &p.Refunding, &p.Refunded, &instr, &p.SyncAttempts, &next, &p.Version, &created, &updated); err != nil {
			return nil, fmt.Errorf("sqlite: scan payment: %w", err)
		}
		if err := json.Unmarshal([]byte(instr), &p.Instructions); err != nil {
			return nil, fmt.Errorf("sqlite: payment %s instructions: %w", p.ID, err)
		}
		p.NextSyncAt, p.CreatedAt, p.UpdatedAt = fromNullMicros(next), fromMicros(created), fromMicros(updated)
		out = append(out, p)
	}
	return out, rows.Err()
}

func queryRefunds(ctx context.Context, q querier, query string, args ...any) ([]ordercore.Refund, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query refunds: %w", err)
	}
	defer rows.Close()
	var out []ordercore.Refund
	for rows.Next() {
		var r ordercore.Refund
		var next sql.NullInt64
		var created, updated int64
		var restock string
		if err := rows.Scan(&r.ID, &r.OrderID, &r.PaymentID, &r.Kind, &r.Amount.Currency, &r.Amount.Amount, &r.Reason, &r.Status,
			&r.RefundID, &restock, &r.SyncAttempts, &next, &r.Version, &created, &updated); err != nil {
			return nil, fmt.Errorf("sqlite: scan refund: %w", err)
		}
		if err := json.Unmarshal([]byte(restock), &r.RestockLines); err != nil {
			return nil, fmt.Errorf("sqlite: refund %s restock lines: %w", r.ID, err)
		}
		r.NextSyncAt, r.CreatedAt, r.UpdatedAt = fromNullMicros(next), fromMicros(created), fromMicros(updated)
		out = append(out, r)
	}
	return out, rows.Err()
}

func queryReviews(ctx context.Context, q querier, query string, args ...any) ([]ordercore.ReviewItem, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query review items: %w", err)
	}
	defer rows.Close()
	out := []ordercore.ReviewItem{}
	for rows.Next() {
		var r ordercore.ReviewItem
		var evidence string
		var resolved sql.NullInt64
		var created int64
		if err := rows.Scan(&r.ID, &r.Kind, &r.OrderID, &r.PaymentID, &r.RefundID, &evidence, &r.Status, &r.Resolution, &r.Note,
			&r.ResolvedBy, &resolved, &r.Version, &created); err != nil {
			return nil, fmt.Errorf("sqlite: scan review item: %w", err)
		}
		r.Evidence, r.ResolvedAt, r.CreatedAt = []byte(evidence), fromNullMicros(resolved), fromMicros(created)
		out = append(out, r)
	}
	return out, rows.Err()
}

const moneyCols = "seq, payment_id, order_id, refund_id, movement, amount, currency, at"

// queryMoney reads money ledger entries; query selects moneyCols from money_ledger.
func queryMoney(ctx context.Context, q querier, query string, args ...any) ([]ordercore.MoneyEntry, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query money ledger: %w", err)
	}
	defer rows.Close()
	var out []ordercore.MoneyEntry
	for rows.Next() {
		var e ordercore.MoneyEntry
		var at int64
		if err := rows.Scan(&e.Seq, &e.PaymentID, &e.OrderID, &e.RefundID, &e.Movement, &e.Amount, &e.Currency, &at); err != nil {
			return nil, fmt.Errorf("sqlite: scan money ledger: %w", err)
		}
		e.At = fromMicros(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// byIDsOrOrders runs query (which ends in "WHERE ") once for the ids and once for the
// orders, in chunks; fn receives each chunk's rows.
func byIDsOrOrders(ids, orderIDs []string, fn func(where string, args []any) error) error {
	for _, set := range []struct {
		col  string
		keys []string
	}{{"id", ids}, {"order_id", orderIDs}} {
		err := chunks(set.keys, func(part []string) error {
			in, args := inList(part)
			return fn(set.col+" IN ("+in+")", args)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *writeTx) PaymentOrders(ctx context.Context, paymentIDs, refundIDs []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, set := range []struct {
		table string
		ids   []string
	}{{"payments", paymentIDs}, {"refunds", refundIDs}} {
		err := chunks(set.ids, func(part []string) error {
			in, args := inList(part)
			rows, err := w.QueryContext(ctx, "SELECT order_id FROM "+set.table+" WHERE id IN ("+in+")", args...)
			if err != nil {
				return fmt.Errorf("sqlite: query orders of %s: %w", set.table, err)
			}
			defer rows.Close()
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					return fmt.Errorf("sqlite: scan orders of %s: %w", set.table, err)
				}
				if !seen[id] {
					seen[id] = true
					out = append(out, id)
				}
			}
			return rows.Err()
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (w *writeTx) Payments(ctx context.Context, ids, orderIDs []string) (map[string]ordercore.Payment, error) {
	out := map[string]ordercore.Payment{}
	err := byIDsOrOrders(ids, orderIDs, func(where string, args []any) error {
		ps, err := queryPayments(ctx, w, "SELECT "+paymentCols+" FROM payments WHERE "+where, args...)
		for _, p := range ps {
			out[p.ID] = p
		}
		return err
	})
	return out, err
}

func (w *writeTx) Refunds(ctx context.Context, ids, orderIDs []string) (map[string]ordercore.Refund, error) {
	out := map[string]ordercore.Refund{}
	err := byIDsOrOrders(ids, orderIDs, func(where string, args []any) error {
		rs, err := queryRefunds(ctx, w, "SELECT "+refundCols+" FROM refunds WHERE "+where, args...)
		for _, r := range rs {
			out[r.ID] = r
		}
		return err
	})
	return out, err
}

func (w *writeTx) ChannelEvents(ctx context.Context, keys []ordercore.ChannelEventKey) (map[ordercore.ChannelEventKey]bool, error) {
	out := map[ordercore.ChannelEventKey]bool{}
	if len(keys) == 0 {
		return out, nil
	}
	st := w.stmt(ctx, inboxLookup)
	for _, k := range keys {
		var one int
		err := st.QueryRowContext(ctx, k.Channel, k.EventID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("sqlite: inbox lookup: %w", err)
		}
		out[k] = true
	}
	return out, nil
}

func (w *writeTx) ReviewItems(ctx context.Context, ids []string) (map[string]ordercore.ReviewItem, error) {
	out := map[string]ordercore.ReviewItem{}
	err := chunks(ids, func(part []string) error {
		in, args := inList(part)
		rs, err := queryReviews(ctx, w, "SELECT "+reviewCols+" FROM review_items WHERE id IN ("+in+")", args...)
		for _, r := range rs {
			out[r.ID] = r
		}
		return err
	})
	return out, err
}

// execRows runs one prepared statement once per row: payment rows are few per batch next
// to orders, so they are not worth multi-row statements.
func (w *writeTx) execRows(ctx context.Context, query string, n int, row func(i int) []any, check func(i int, affected int64) error) error {
	if n == 0 {
		return nil
	}
	st := w.stmt(ctx, query)
	for i := range n {
		res, err := st.ExecContext(ctx, row(i)...)
		if err != nil {
			return fmt.Errorf("sqlite: %.40s: %w", query, err)
		}
		if check != nil {
			n, _ := res.RowsAffected()
			if err := check(i, n); err != nil {
				return err
			}
		}
	}
	return nil
}

func versionGuard(kind string, id func(int) string, from func(int) int64) func(int, int64) error {
	return func(i int, n int64) error {
		if n != 1 {
			return fmt.Errorf("sqlite: %s %s is no longer at version %d", kind, id(i), from(i))
		}
		return nil
	}
}

func paymentArgs(p ordercore.Payment) []any {
	instr, err := json.Marshal(p.Instructions)
	if err != nil {
		instr = []byte("{}")
	}
	return []any{p.ID, p.OrderID, p.Channel, string(p.Status), string(p.Amount.Currency), p.Amount.Amount, p.TxnID, p.Accepted,
		p.Captured, p.Refunding, p.Refunded, string(instr), p.SyncAttempts, nullMicros(p.NextSyncAt), p.Version, micros(p.CreatedAt), micros(p.UpdatedAt)}
}

func refundArgs(r ordercore.Refund) []any {
	restock, err := json.Marshal(r.RestockLines)
	if err != nil || r.RestockLines == nil {
		restock = []byte("[]")
	}
	return []any{r.ID, r.OrderID, r.PaymentID, string(r.Kind), string(r.Amount.Currency), r.Amount.Amount, r.Reason, string(r.Status),
		r.RefundID, string(restock), r.SyncAttempts, nullMicros(r.NextSyncAt), r.Version, micros(r.CreatedAt), micros(r.UpdatedAt)}
}

func reviewArgs(r ordercore.ReviewItem) []any {
	return []any{r.ID, r.Kind, r.OrderID, r.PaymentID, r.RefundID, string(r.Evidence), string(r.Status), r.Resolution, r.Note,
		r.ResolvedBy, nullMicros(r.ResolvedAt), r.Version, micros(r.CreatedAt)}
}

// payments writes a batch's payment rows: changes first, then new rows, because a batch
// may close an order's open attempt and open its next one, and the unique index on open
// attempts must see the close first. Changes rewrite every column but the id and the
// order, guarded by the version; the table's CHECKs refuse refunds beyond the capture.
func (w *writeTx) payments(ctx context.Context, c *ordercore.Changeset) error {
	err := w.execRows(ctx, updatePayment, len(c.PaymentChanges),
		func(i int) []any { ch := c.PaymentChanges[i]; return append(paymentArgs(ch.Payment), ch.FromVersion) },
		versionGuard("payment", func(i int) string { return c.PaymentChanges[i].Payment.ID }, func(i int) int64 { return c.PaymentChanges[i].FromVersion }))
	if err != nil {
		return err
	}
	return w.execRows(ctx, insertPayment, len(c.NewPayments),
		func(i int) []any { return paymentArgs(c.NewPayments[i]) }, nil)
}

func (w *writeTx) refunds(ctx context.Context, c *ordercore.Changeset) error {
	err := w.execRows(ctx, insertRefund, len(c.NewRefunds),
		func(i int) []any { return refundArgs(c.NewRefunds[i]) }, nil)
	if err != nil {
		return err
	}
	return w.execRows(ctx, updateRefund, len(c.RefundChanges),
		func(i int) []any { ch := c.RefundChanges[i]; return append(refundArgs(ch.Refund), ch.FromVersion) },
		versionGuard("refund", func(i int) string { return c.RefundChanges[i].Refund.ID }, func(i int) int64 { return c.RefundChanges[i].FromVersion }))
}

func (w *writeTx) moneyLedger(ctx context.Context, c *ordercore.Changeset) error {
	return w.execRows(ctx, insertMoney, len(c.MoneyLedger), func(i int) []any {
		e := c.MoneyLedger[i]
		return []any{e.PaymentID, e.OrderID, e.RefundID, string(e.Movement), e.Amount, string(e.Currency), micros(e.At)}
	}, nil)
}

func (w *writeTx) channelEvents(ctx context.Context, c *ordercore.Changeset) error {
	return w.execRows(ctx, insertInbox, len(c.ChannelEvents), func(i int) []any {
		e := c.ChannelEvents[i]
		return []any{e.Channel, e.EventID, e.PaymentID, e.RefundID, e.Outcome, micros(e.ReceivedAt)}
	}, nil)
}

func (w *writeTx) reviews(ctx context.Context, c *ordercore.Changeset) error {
	err := w.execRows(ctx, insertReview, len(c.NewReviews),
		func(i int) []any { return reviewArgs(c.NewReviews[i]) }, nil)
	if err != nil {
		return err
	}
	return w.execRows(ctx, updateReview, len(c.ReviewChanges),
		func(i int) []any { ch := c.ReviewChanges[i]; return append(reviewArgs(ch.Item), ch.FromVersion) },
		versionGuard("review item", func(i int) string { return c.ReviewChanges[i].Item.ID }, func(i int) int64 { return c.ReviewChanges[i].FromVersion }))
}

// Payment reads one payment attempt.
func (db *DB) Payment(ctx context.Context, id string) (ordercore.Payment, error) {
	ps, err := queryPayments(ctx, db.read, "SELECT "+paymentCols+" FROM payments WHERE id = ?", id)
	if err != nil {
		return ordercore.Payment{}, err
	}
	if len(ps) == 0 {
		return ordercore.Payment{}, notFound("payment", id)
	}
	return ps[0], nil
}

// OrderPayments reads an order's attempts and refunds, oldest first (ids are UUIDv7).
func (db *DB) OrderPayments(ctx context.Context, orderID string) ([]ordercore.Payment, []ordercore.Refund, error) {
	ps, err := queryPayments(ctx, db.read, "SELECT "+paymentCols+" FROM payments WHERE order_id = ? ORDER BY id", orderID)
	if err != nil {
		return nil, nil, err
	}
	rs, err := queryRefunds(ctx, db.read, "SELECT "+refundCols+" FROM refunds WHERE order_id = ? ORDER BY id", orderID)
	return ps, rs, err
}

// DuePayments lists attempts due for a sync over the payments_sync partial index.
func (db *DB) DuePayments(ctx context.Context, now time.Time, limit int) ([]ordercore.Payment, error) {
	return queryPayments(ctx, db.read, "SELECT "+paymentCols+" FROM payments WHERE next_sync_at IS NOT NULL AND next_sync_at <= ? ORDER BY next_sync_at LIMIT ?", micros(now), limit)
}

// DueRefunds lists refunds due to be sent or queried over the refunds_sync partial index.
func (db *DB) DueRefunds(ctx context.Context, now time.Time, limit int) ([]ordercore.Refund, error) {
	return queryRefunds(ctx, db.read, "SELECT "+refundCols+" FROM refunds WHERE status = 'pending' AND next_sync_at IS NOT NULL AND next_sync_at <= ? ORDER BY next_sync_at LIMIT ?", micros(now), limit)
}

// OpenPayments lists the open attempts of the orders.
func (db *DB) OpenPayments(ctx context.Context, orderIDs []string) ([]ordercore.Payment, error) {
	var out []ordercore.Payment
	err := chunks(orderIDs, func(part []string) error {
		in, args := inList(part)
		ps, err := queryPayments(ctx, db.read, "SELECT "+paymentCols+" FROM payments WHERE order_id IN ("+in+") AND status IN ('created', 'pending', 'unknown')", args...)
		out = append(out, ps...)
		return err
	})
	return out, err
}

// MoneyMovements lists a channel's captures and refund commits of [from, to) over the
// money_ledger_at index.
func (db *DB) MoneyMovements(ctx context.Context, channel string, from, to time.Time, afterSeq int64, limit int) ([]ordercore.MoneyEntry, error) {
	q := `SELECT m.seq, m.payment_id, m.order_id, m.refund_id, m.movement, m.amount, m.currency, m.at
		FROM money_ledger m JOIN payments p ON p.id = m.payment_id
		WHERE m.at >= ? AND m.at < ? AND m.seq > ? AND m.movement IN ('capture', 'refund_commit') AND p.channel = ?
		ORDER BY m.seq LIMIT ?`
	return queryMoney(ctx, db.read, q, micros(from), micros(to), afterSeq, channel, limit)
}

// Reviews lists review items newest first.
func (db *DB) Reviews(ctx context.Context, status ordercore.ReviewStatus, afterID string, limit int) ([]ordercore.ReviewItem, error) {
	q := "SELECT " + reviewCols + " FROM review_items WHERE (? = '' OR status = ?) AND (? = '' OR id < ?) ORDER BY id DESC LIMIT ?"
	return queryReviews(ctx, db.read, q, string(status), string(status), afterID, afterID, limit)
}

// Review reads one review item.
func (db *DB) Review(ctx context.Context, id string) (ordercore.ReviewItem, error) {
	rs, err := queryReviews(ctx, db.read, "SELECT "+reviewCols+" FROM review_items WHERE id = ?", id)
	if err != nil {
		return ordercore.ReviewItem{}, err
	}
	if len(rs) == 0 {
		return ordercore.ReviewItem{}, notFound("review item", id)
	}
	return rs[0], nil
}

// OpenReviewCounts counts the open review items of each kind.
func (db *DB) OpenReviewCounts(ctx context.Context) (map[string]int64, error) {
	return countGroups(ctx, db.read, "open review items", "SELECT kind, COUNT(*) FROM review_items WHERE status = 'open' GROUP BY kind")
}

// countGroups runs a query of (key, count) rows into a map.
func countGroups(ctx context.Context, q querier, what, query string) (map[string]int64, error) {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("sqlite: count %s: %w", what, err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var key string
		var n int64
		if err := rows.Scan(&key, &n); err != nil {
			return nil, fmt.Errorf("sqlite: scan %s count: %w", what, err)
		}
		out[key] = n
	}
	return out, rows.Err()
}

// dumpPayments adds the payment tables to a snapshot.
func dumpPayments(ctx context.Context, tx *sql.Tx, snap *ordercore.Snapshot) error {
	var err error
	if snap.Payments, err = queryPayments(ctx, tx, "SELECT "+paymentCols+" FROM payments ORDER BY id"); err != nil {
		return err
	}
	if snap.Refunds, err = queryRefunds(ctx, tx, "SELECT "+refundCols+" FROM refunds ORDER BY id"); err != nil {
		return err
	}
	if snap.Reviews, err = queryReviews(ctx, tx, "SELECT "+reviewCols+" FROM review_items ORDER BY id"); err != nil {
		return err
	}
	snap.MoneyLedger, err = queryMoney(ctx, tx, "SELECT "+moneyCols+" FROM money_ledger ORDER BY seq")
	return err
}
