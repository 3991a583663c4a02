package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"ordercore"
)

const paymentCols = "id, order_id, channel, status, currency, amount, txn_id, accepted, captured, refunding, refunded, instructions, sync_attempts, next_sync_at, version, created_at, updated_at"

const refundCols = "id, order_id, payment_id, kind, currency, amount, reason, status, refund_id, restock_lines, sync_attempts, next_sync_at, version, created_at, updated_at"

const reviewCols = "id, kind, order_id, payment_id, refund_id, evidence, status, resolution, note, resolved_by, resolved_at, version, created_at"

func scanPayment(rows pgx.Rows) (ordercore.Payment, error) {
	var p ordercore.Payment
	var instr string
	var next *int64
	var created, updated int64
	if err := rows.Scan(&p.ID, &p.OrderID, &p.Channel, &p.Status, &p.Amount.Currency, &p.Amount.Amount, &p.TxnID,
		&p.Accepted, &p.Captured, &p.Refunding, &p.Refunded, &instr, &p.SyncAttempts, &next, &p.Version, &created, &updated); err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(instr), &p.Instructions); err != nil {
		return p, err
	}
	p.NextSyncAt, p.CreatedAt, p.UpdatedAt = fromNullMicros(next), fromMicros(created), fromMicros(updated)
	return p, nil
}

func scanRefund(rows pgx.Rows) (ordercore.Refund, error) {
	var r ordercore.Refund
	var next *int64
	var created, updated int64
	var restock string
	if err := rows.Scan(&r.ID, &r.OrderID, &r.PaymentID, &r.Kind, &r.Amount.Currency, &r.Amount.Amount, &r.Reason, &r.Status,
		&r.RefundID, &restock, &r.SyncAttempts, &next, &r.Version, &created, &updated); err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(restock), &r.RestockLines); err != nil {
		return r, err
	}
	r.NextSyncAt, r.CreatedAt, r.UpdatedAt = fromNullMicros(next), fromMicros(created), fromMicros(updated)
	return r, nil
}

func scanReview(rows pgx.Rows) (ordercore.ReviewItem, error) {
	var r ordercore.ReviewItem
	var evidence string
	var resolved *int64
	var created int64
	err := rows.Scan(&r.ID, &r.Kind, &r.OrderID, &r.PaymentID, &r.RefundID, &evidence, &r.Status, &r.Resolution, &r.Note,
		&r.ResolvedBy, &resolved, &r.Version, &created)
	r.Evidence, r.ResolvedAt, r.CreatedAt = []byte(evidence), fromNullMicros(resolved), fromMicros(created)
	return r, err
}

const moneyCols = "seq, payment_id, order_id, refund_id, movement, amount, currency, at"

func scanMoney(rows pgx.Rows) (ordercore.MoneyEntry, error) {
	var e ordercore.MoneyEntry
	var at int64
	err := rows.Scan(&e.Seq, &e.PaymentID, &e.OrderID, &e.RefundID, &e.Movement, &e.Amount, &e.Currency, &at)
	e.At = fromMicros(at)
	return e, err
}

func queryPayments(ctx context.Context, q querier, query string, args ...any) ([]ordercore.Payment, error) {
	return collect(ctx, q, "payments", query, args, scanPayment)
}

func queryRefunds(ctx context.Context, q querier, query string, args ...any) ([]ordercore.Refund, error) {
	return collect(ctx, q, "refunds", query, args, scanRefund)
}

func queryMoney(ctx context.Context, q querier, query string, args ...any) ([]ordercore.MoneyEntry, error) {
	return collect(ctx, q, "money ledger", query, args, scanMoney)
}

func queryReviews(ctx context.Context, q querier, query string, args ...any) ([]ordercore.ReviewItem, error) {
	out, err := collect(ctx, q, "review items", query, args, scanReview)
	if out == nil && err == nil {
		out = []ordercore.ReviewItem{}
	}
	return out, err
}

// PaymentOrders reads the orders of the attempts and refunds named, locking nothing.
func (w *writeTx) PaymentOrders(ctx context.Context, paymentIDs, refundIDs []string) ([]string, error) {
	if len(paymentIDs)+len(refundIDs) == 0 {
		return nil, nil
	}
	return collect(ctx, w.tx, "orders of payments", "SELECT order_id FROM payments WHERE id = ANY($1) UNION SELECT order_id FROM refunds WHERE id = ANY($2)",
		[]any{paymentIDs, refundIDs}, func(r pgx.Rows) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
}

// Payments loads and locks the attempts named and every attempt of the orders named, in
// id order (one statement, so one lock order whichever list named a row).
func (w *writeTx) Payments(ctx context.Context, ids, orderIDs []string) (map[string]ordercore.Payment, error) {
	out := map[string]ordercore.Payment{}
	if len(ids)+len(orderIDs) == 0 {
		return out, nil
	}
	ps, err := queryPayments(ctx, w.tx, "SELECT "+paymentCols+" FROM payments WHERE id = ANY($1) OR order_id = ANY($2) ORDER BY id FOR UPDATE", ids, orderIDs)
	for _, p := range ps {
		out[p.ID] = p
	}
	return out, err
}

// Refunds loads and locks refunds the same way.
func (w *writeTx) Refunds(ctx context.Context, ids, orderIDs []string) (map[string]ordercore.Refund, error) {
	out := map[string]ordercore.Refund{}
	if len(ids)+len(orderIDs) == 0 {
		return out, nil
	}
	rs, err := queryRefunds(ctx, w.tx, "SELECT "+refundCols+" FROM refunds WHERE id = ANY($1) OR order_id = ANY($2) ORDER BY id FOR UPDATE", ids, orderIDs)
	for _, r := range rs {
		out[r.ID] = r
	}
	return out, err
}

// ChannelEvents reports which notifications are in the inbox. As with idempotency keys,
// a notification not stored yet has no row to lock, so each key takes an advisory lock
// first: the same notification delivered to two instances at once is applied by one and
// seen as a duplicate by the other, instead of failing the other's whole batch.
func (w *writeTx) ChannelEvents(ctx context.Context, keys []ordercore.ChannelEventKey) (map[ordercore.ChannelEventKey]bool, error) {
	out := map[ordercore.ChannelEventKey]bool{}
	if len(keys) == 0 {
		return out, nil
	}
	channels, eventIDs, names := make([]string, len(keys)), make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		channels[i], eventIDs[i], names[i] = k.Channel, k.EventID, k.Channel+"\x00"+k.EventID
	}
	if err := w.lockKeys(ctx, "inbox", names); err != nil {
		return nil, err
	}
	seen, err := collect(ctx, w.tx, "inbox",
		"SELECT channel, event_id FROM channel_events WHERE (channel, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
		[]any{channels, eventIDs}, func(rows pgx.Rows) (ordercore.ChannelEventKey, error) {
			var k ordercore.ChannelEventKey
			return k, rows.Scan(&k.Channel, &k.EventID)
		})
	for _, k := range seen {
		out[k] = true
	}
	return out, err
}

// ReviewItems loads and locks review items in id order.
func (w *writeTx) ReviewItems(ctx context.Context, ids []string) (map[string]ordercore.ReviewItem, error) {
	out := map[string]ordercore.ReviewItem{}
	if len(ids) == 0 {
		return out, nil
	}
	rs, err := queryReviews(ctx, w.tx, "SELECT "+reviewCols+" FROM review_items WHERE id = ANY($1) ORDER BY id FOR UPDATE", ids)
	for _, r := range rs {
		out[r.ID] = r
	}
	return out, err
}

func instructions(p ordercore.Payment) string {
	b, err := json.Marshal(p.Instructions)
	if err != nil {
		return "{}"
	}
	return string(b)
}

func restockLines(r ordercore.Refund) string {
	b, err := json.Marshal(r.RestockLines)
	if err != nil || r.RestockLines == nil {
		return "[]"
	}
	return string(b)
}

// queuePayments writes a batch's payment rows: changes first, then new rows, because a
// batch may close an order's open attempt and open its next one, and the unique index on
// open attempts must see the close first. Changes rewrite what may change about an
// attempt, guarded by its version and by what may not change; the table's CHECKs refuse
// refunds beyond the capture.
func queuePayments(b *pgx.Batch, c *ordercore.Changeset) {
	for _, ch := range c.PaymentChanges {
		p := ch.Payment
		queue(b, "update payment "+p.ID, `UPDATE payments SET status = $4, txn_id = $7, accepted = $8, captured = $9, refunding = $10,
			refunded = $11, instructions = $12, sync_attempts = $13, next_sync_at = $14, version = $15, updated_at = $17
			WHERE id = $1 AND order_id = $2 AND channel = $3 AND currency = $5 AND amount = $6 AND created_at = $16 AND version = $18`,
			[]any{p.ID, p.OrderID, p.Channel, string(p.Status), string(p.Amount.Currency), p.Amount.Amount, p.TxnID, p.Accepted,
				p.Captured, p.Refunding, p.Refunded, instructions(p), int64(p.SyncAttempts), nullMicros(p.NextSyncAt), p.Version,
				micros(p.CreatedAt), micros(p.UpdatedAt), ch.FromVersion},
			affected(1, "payment %s is no longer at version %d", p.ID, ch.FromVersion))
	}
	n := len(c.NewPayments)
	if n == 0 {
		return
	}
	ids, orders, channels, statuses, currencies, txns, instrs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	amounts, captured, refunding, refunded, attempts, versions, created, updated := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	accepted, next := make([]bool, n), make([]*int64, n)
	for i, p := range c.NewPayments {
		ids[i], orders[i], channels[i], statuses[i], currencies[i], txns[i], instrs[i] = p.ID, p.OrderID, p.Channel, string(p.Status), string(p.Amount.Currency), p.TxnID, instructions(p)
		amounts[i], captured[i], refunding[i], refunded[i] = p.Amount.Amount, p.Captured, p.Refunding, p.Refunded
		attempts[i], versions[i], created[i], updated[i] = int64(p.SyncAttempts), p.Version, micros(p.CreatedAt), micros(p.UpdatedAt)
		accepted[i], next[i] = p.Accepted, nullMicros(p.NextSyncAt)
	}
	queue(b, "insert payments", "INSERT INTO payments ("+paymentCols+`)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::boolean[],
			$9::bigint[], $10::bigint[], $11::bigint[], $12::text[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[])`,
		[]any{ids, orders, channels, statuses, currencies, amounts, txns, accepted, captured, refunding, refunded, instrs, attempts, next, versions, created, updated},
		insertN(n, "payments"))
}

// queueRefunds inserts new refunds, then applies version-guarded changes of status,
// channel id and schedule (never of amount or payment).
func queueRefunds(b *pgx.Batch, c *ordercore.Changeset) {
	if n := len(c.NewRefunds); n > 0 {
		ids, orders, payments, kinds, currencies, reasons, statuses, refundIDs, restock := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		amounts, attempts, versions, created, updated := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		next := make([]*int64, n)
		for i, r := range c.NewRefunds {
			ids[i], orders[i], payments[i], kinds[i], currencies[i] = r.ID, r.OrderID, r.PaymentID, string(r.Kind), string(r.Amount.Currency)
			reasons[i], statuses[i], refundIDs[i], restock[i] = r.Reason, string(r.Status), r.RefundID, restockLines(r)
			amounts[i], attempts[i], versions[i], created[i], updated[i] = r.Amount.Amount, int64(r.SyncAttempts), r.Version, micros(r.CreatedAt), micros(r.UpdatedAt)
			next[i] = nullMicros(r.NextSyncAt)
		}
		queue(b, "insert refunds", "INSERT INTO refunds ("+refundCols+`)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[],
				$9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[])`,
			[]any{ids, orders, payments, kinds, currencies, amounts, reasons, statuses, refundIDs, restock, attempts, next, versions, created, updated},
			insertN(n, "refunds"))
	}
	for _, ch := range c.RefundChanges {
		r := ch.Refund
		queue(b, "update refund "+r.ID, `UPDATE refunds SET status = $1, refund_id = $2, sync_attempts = $3, next_sync_at = $4, version = $5, updated_at = $6
			WHERE id = $7 AND payment_id = $8 AND amount = $9 AND version = $10`,
			[]any{string(r.Status), r.RefundID, int64(r.SyncAttempts), nullMicros(r.NextSyncAt), r.Version, micros(r.UpdatedAt),
				r.ID, r.PaymentID, r.Amount.Amount, ch.FromVersion},
			affected(1, "refund %s is no longer at version %d", r.ID, ch.FromVersion))
	}
}

// queueMoneyLedger appends money ledger rows, numbered in the order given.
func queueMoneyLedger(b *pgx.Batch, c *ordercore.Changeset) {
	n := len(c.MoneyLedger)
	if n == 0 {
		return
	}
	payments, orders, refunds, movements, currencies := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	amounts, at := make([]int64, n), make([]int64, n)
	for i, e := range c.MoneyLedger {
		payments[i], orders[i], refunds[i], movements[i], currencies[i] = e.PaymentID, e.OrderID, e.RefundID, string(e.Movement), string(e.Currency)
		amounts[i], at[i] = e.Amount, micros(e.At)
	}
	queue(b, "insert money ledger", `INSERT INTO money_ledger (payment_id, order_id, refund_id, movement, amount, currency, at)
		SELECT payment_id, order_id, refund_id, movement, amount, currency, at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[])
			WITH ORDINALITY AS u(payment_id, order_id, refund_id, movement, amount, currency, at, n)
		ORDER BY n`,
		[]any{payments, orders, refunds, movements, amounts, currencies, at}, insertN(n, "money_ledger"))
}

func queueChannelEvents(b *pgx.Batch, c *ordercore.Changeset) {
	n := len(c.ChannelEvents)
	if n == 0 {
		return
	}
	channels, eventIDs, payments, refunds, outcomes := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	received := make([]int64, n)
	for i, e := range c.ChannelEvents {
		channels[i], eventIDs[i], payments[i], refunds[i], outcomes[i], received[i] = e.Channel, e.EventID, e.PaymentID, e.RefundID, e.Outcome, micros(e.ReceivedAt)
	}
	queue(b, "insert inbox", `INSERT INTO channel_events (channel, event_id, payment_id, refund_id, outcome, received_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])`,
		[]any{channels, eventIDs, payments, refunds, outcomes, received}, insertN(n, "channel_events"))
}

// queueReviews inserts new review items, then applies version-guarded changes.
func queueReviews(b *pgx.Batch, c *ordercore.Changeset) {
	if n := len(c.NewReviews); n > 0 {
		ids, kinds, orders, payments, refunds, evidence, statuses, resolutions, notes, by := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		resolvedAt, versions, created := make([]*int64, n), make([]int64, n), make([]int64, n)
		for i, r := range c.NewReviews {
			ids[i], kinds[i], orders[i], payments[i], refunds[i] = r.ID, r.Kind, r.OrderID, r.PaymentID, r.RefundID
			evidence[i], statuses[i], resolutions[i], notes[i], by[i] = string(r.Evidence), string(r.Status), r.Resolution, r.Note, r.ResolvedBy
			resolvedAt[i], versions[i], created[i] = nullMicros(r.ResolvedAt), r.Version, micros(r.CreatedAt)
		}
		queue(b, "insert review items", "INSERT INTO review_items ("+reviewCols+`)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
				$9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[])`,
			[]any{ids, kinds, orders, payments, refunds, evidence, statuses, resolutions, notes, by, resolvedAt, versions, created},
			insertN(n, "review_items"))
	}
	for _, ch := range c.ReviewChanges {
		r := ch.Item
		queue(b, "update review item "+r.ID, `UPDATE review_items SET status = $1, resolution = $2, note = $3, resolved_by = $4, resolved_at = $5, version = $6
			WHERE id = $7 AND version = $8`,
			[]any{string(r.Status), r.Resolution, r.Note, r.ResolvedBy, nullMicros(r.ResolvedAt), r.Version, r.ID, ch.FromVersion},
			affected(1, "review item %s is no longer at version %d", r.ID, ch.FromVersion))
	}
}

// Payment reads one payment attempt.
func (db *DB) Payment(ctx context.Context, id string) (ordercore.Payment, error) {
	ps, err := queryPayments(ctx, db.pool, "SELECT "+paymentCols+" FROM payments WHERE id = $1", id)
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
	ps, err := queryPayments(ctx, db.pool, "SELECT "+paymentCols+" FROM payments WHERE order_id = $1 ORDER BY id", orderID)
	if err != nil {
		return nil, nil, err
	}
	rs, err := queryRefunds(ctx, db.pool, "SELECT "+refundCols+" FROM refunds WHERE order_id = $1 ORDER BY id", orderID)
	return ps, rs, err
}

// DuePayments lists attempts due for a sync over the payments_sync partial index.
func (db *DB) DuePayments(ctx context.Context, now time.Time, limit int) ([]ordercore.Payment, error) {
	return queryPayments(ctx, db.pool, "SELECT "+paymentCols+" FROM payments WHERE next_sync_at IS NOT NULL AND next_sync_at <= $1 ORDER BY next_sync_at, id LIMIT $2", micros(now), limit)
}

// DueRefunds lists refunds due to be sent or queried over the refunds_sync partial index.
func (db *DB) DueRefunds(ctx context.Context, now time.Time, limit int) ([]ordercore.Refund, error) {
	return queryRefunds(ctx, db.pool, "SELECT "+refundCols+" FROM refunds WHERE status = 'pending' AND next_sync_at IS NOT NULL AND next_sync_at <= $1 ORDER BY next_sync_at, id LIMIT $2", micros(now), limit)
}

// OpenPayments lists the open attempts of the orders.
func (db *DB) OpenPayments(ctx context.Context, orderIDs []string) ([]ordercore.Payment, error) {
	if len(orderIDs) == 0 {
		return nil, nil
	}
	return queryPayments(ctx, db.pool, "SELECT "+paymentCols+" FROM payments WHERE order_id = ANY($1) AND status IN ('created', 'pending', 'unknown')", orderIDs)
}

// MoneyMovements lists a channel's captures and refund commits of [from, to) over the
// money_ledger_at index.
func (db *DB) MoneyMovements(ctx context.Context, channel string, from, to time.Time, afterSeq int64, limit int) ([]ordercore.MoneyEntry, error) {
	return queryMoney(ctx, db.pool, `SELECT m.seq, m.payment_id, m.order_id, m.refund_id, m.movement, m.amount, m.currency, m.at
		FROM money_ledger m JOIN payments p ON p.id = m.payment_id
		WHERE m.at >= $1 AND m.at < $2 AND m.seq > $3 AND m.movement IN ('capture', 'refund_commit') AND p.channel = $4
		ORDER BY m.seq LIMIT $5`, micros(from), micros(to), afterSeq, channel, limit)
}

// Reviews lists review items newest first.
func (db *DB) Reviews(ctx context.Context, status ordercore.ReviewStatus, afterID string, limit int) ([]ordercore.ReviewItem, error) {
	return queryReviews(ctx, db.pool, "SELECT "+reviewCols+" FROM review_items WHERE ($1 = '' OR status = $1) AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3",
		string(status), afterID, limit)
}

// OpenReviewCounts counts the open review items of each kind.
func (db *DB) OpenReviewCounts(ctx context.Context) (map[string]int64, error) {
	return db.countGroups(ctx, "open review counts", "SELECT kind, count(*) FROM review_items WHERE status = 'open' GROUP BY kind")
}

// countGroups runs a query of (key, count) rows into a map.
func (db *DB) countGroups(ctx context.Context, what, query string) (map[string]int64, error) {
	type count struct {
		key string
		n   int64
	}
	counts, err := collect(ctx, db.pool, what, query, nil, func(rows pgx.Rows) (count, error) {
		var c count
		return c, rows.Scan(&c.key, &c.n)
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(counts))
	for _, c := range counts {
		out[c.key] = c.n
	}
	return out, nil
}

// Review reads one review item.
func (db *DB) Review(ctx context.Context, id string) (ordercore.ReviewItem, error) {
	rs, err := queryReviews(ctx, db.pool, "SELECT "+reviewCols+" FROM review_items WHERE id = $1", id)
	if err != nil {
		return ordercore.ReviewItem{}, err
	}
	if len(rs) == 0 {
		return ordercore.ReviewItem{}, notFound("review item", id)
	}
	return rs[0], nil
}

// dumpPayments adds the payment tables to a snapshot.
func dumpPayments(ctx context.Context, tx pgx.Tx, snap *ordercore.Snapshot) error {
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
