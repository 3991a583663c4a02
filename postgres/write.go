package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"ordercore"
	"ordercore/internal/limit"
)

type writeTx struct {
	db *DB
	tx *lazyTx
}

// The loads lock every row they return until the batch commits (FOR UPDATE), in id order,
// so that two instances whose batches touch the same rows take their locks in the same
// order and one waits for the other instead of deadlocking. A row changed by an instance
// that committed while this one waited is read as committed (READ COMMITTED re-reads it).
const (
	skusForUpdate   = "SELECT " + skuCols + " FROM skus WHERE id = ANY($1) ORDER BY id FOR UPDATE"
	ordersForUpdate = "SELECT " + orderCols + " FROM orders WHERE id = ANY($1) ORDER BY id FOR UPDATE"
	linesForUpdate  = "SELECT " + lineCols + " FROM order_lines WHERE order_id = ANY($1) ORDER BY order_id, line_no FOR UPDATE"
)

func (w *writeTx) SKUs(ctx context.Context, ids []string) (map[string]ordercore.SKU, error) {
	out := make(map[string]ordercore.SKU, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	skus, err := collect(ctx, w.tx, "skus", skusForUpdate, []any{ids}, scanSKU)
	for _, s := range skus {
		out[s.ID] = s
	}
	return out, err
}

func (w *writeTx) Orders(ctx context.Context, ids []string) (map[string]ordercore.Order, error) {
	out := make(map[string]ordercore.Order, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	orders, err := queryOrders(ctx, w.tx, ordersForUpdate, linesForUpdate, ids)
	for _, o := range orders {
		out[o.ID] = o
	}
	return out, err
}

// Idempotency reads the stored responses of keys. A key that is not stored yet cannot be
// locked as a row, so the load first takes a transaction-scoped advisory lock per key: two
// instances handling retries of one request at once run them one after the other, and the
// second replays the first's stored response instead of failing its whole batch on the
// primary key.
func (w *writeTx) Idempotency(ctx context.Context, keys []string) (map[string]ordercore.IdemRecord, error) {
	out := make(map[string]ordercore.IdemRecord, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	if err := w.lockKeys(ctx, "idempotency", keys); err != nil {
		return nil, err
	}
	recs, err := collect(ctx, w.tx, "idempotency keys",
		"SELECT key, request_hash, status, body, created_at FROM idempotency_keys WHERE key = ANY($1)", []any{keys},
		func(rows pgx.Rows) (ordercore.IdemRecord, error) {
			var r ordercore.IdemRecord
			var created int64
			err := rows.Scan(&r.Key, &r.RequestHash, &r.Status, &r.Body, &created)
			r.CreatedAt = fromMicros(created)
			return r, err
		})
	for _, r := range recs {
		out[r.Key] = r
	}
	return out, err
}

// lockKeys takes one advisory lock per key of the kind, in the order of the lock ids, so
// that transactions locking overlapping sets never wait on each other in a cycle. The
// lock is a separate statement: under READ COMMITTED the next statement's snapshot then
// sees what the previous holder committed.
func (w *writeTx) lockKeys(ctx context.Context, kind string, keys []string) error {
	ids := make([]int64, len(keys))
	for i, k := range keys {
		ids[i] = lockKey(w.db.Schema, kind+"\x00"+k)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if err := w.tx.Exec(ctx, "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS u(k, n) ORDER BY n", ids); err != nil {
		return fmt.Errorf("postgres: lock %s keys: %w", kind, err)
	}
	return nil
}

// Apply writes a batch's changes in one pipelined round trip (a pgx batch inside the
// transaction): multi-row inserts from arrays (unnest), one conditional UPDATE of all the
// touched SKUs, one version-guarded UPDATE per changed order, payment, refund, review
// item or saga. A guard that fails fails the write and the whole transaction rolls back: the
// engine has already checked the same rules, so a failing guard means a race lost to
// another instance or a bug, and the batch is better lost unacknowledged than written
// wrong.
//
// The batch goes out with the next statement of the transaction or with its commit
// (lazyTx); when it is the last and the server judges every statement of it
// (commitsWithApply), the COMMIT goes in the same round trip: a batch of placed orders
// then costs the load's round trip and this one. A guard that fails then fails Write.
func (w *writeTx) Apply(ctx context.Context, c *ordercore.Changeset) error {
	b := &pgx.Batch{}
	for _, step := range []func(*pgx.Batch, *ordercore.Changeset){
		queueSKUs, queueStock, queueOrders, queueOrderChanges, queueLedger, queuePayments, queueRefunds,
		queueMoneyLedger, queueChannelEvents, queueReviews, queueIdempotency, queuePrune,
	} {
		step(b, c)
	}
	if err := queueSagas(b, c); err != nil {
		return err // a saga that cannot be encoded; nothing was sent
	}
	queueWebhooks(b, c)
	if err := queueHolds(b, c); err != nil {
		return err // a hold that cannot be encoded; nothing was sent
	}
	// The events go last: their lock is held from here to the commit, and the shorter
	// that is, the less other instances' appends wait (events.go).
	w.db.queueEvents(b, c.Events)
	if b.Len() == 0 {
		return nil
	}
	return w.tx.apply(ctx, b, commitsWithApply(c))
}

// commitsWithApply reports whether every statement Apply sends for c is judged by the
// server, so that the COMMIT may follow them in one round trip: a statement that fails
// makes the server skip the rest of the pipeline, COMMIT included, and the transaction
// rolls back. The stock update raises its own guard (expect_rows); a plain INSERT ...
// SELECT FROM unnest writes every row it selects or fails (a key or CHECK it breaks),
// so its row-count check can never fail on its own. Everything else carries a guard
// only ordercore judges, from a row count that must be back before the commit (a
// version-guarded UPDATE matching no row is not an error to the server), and keeps the
// COMMIT a round trip of its own. The list is of what may fold, so that a kind of change
// added later commits apart until it is shown to be safe here (fold_test.go).
func commitsWithApply(c *ordercore.Changeset) bool {
	rest := *c
	rest.NewSKUs, rest.StockChanges, rest.Ledger, rest.NewOrders, rest.Events, rest.Idempotency = nil, nil, nil, nil, nil, nil
	return rest.Empty()
}

// queue adds one statement to b; check, if set, judges its command tag.
func queue(b *pgx.Batch, what, query string, args []any, check func(pgconn.CommandTag) error) {
	qq := b.Queue(query, args...)
	qq.Fn = func(br pgx.BatchResults) error {
		ct, err := br.Exec()
		if err != nil {
			return fmt.Errorf("postgres: %s: %w", what, err)
		}
		if check != nil {
			return check(ct)
		}
		return nil
	}
}

// affected is a check that the statement touched exactly want rows.
func affected(want int64, format string, args ...any) func(pgconn.CommandTag) error {
	return func(ct pgconn.CommandTag) error {
		if ct.RowsAffected() != want {
			return fmt.Errorf("postgres: "+format+" (%d rows matched, want %d)", append(args, ct.RowsAffected(), want)...)
		}
		return nil
	}
}

// insertN checks that a multi-row insert wrote every row.
func insertN(n int, table string) func(pgconn.CommandTag) error {
	return affected(int64(n), "insert into %s", table)
}

func queueSKUs(b *pgx.Batch, c *ordercore.Changeset) {
	n := len(c.NewSKUs)
	if n == 0 {
		return
	}
	ids, names, currencies := make([]string, n), make([]string, n), make([]string, n)
	prices, totals, reserved, sold, versions, created, updated := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, s := range c.NewSKUs {
		ids[i], names[i], currencies[i] = s.ID, s.Name, string(s.Price.Currency)
		prices[i], totals[i], reserved[i], sold[i], versions[i] = s.Price.Amount, s.Total, s.Reserved, s.Sold, s.Version
		created[i], updated[i] = micros(s.CreatedAt), micros(s.UpdatedAt)
	}
	queue(b, "insert skus", `INSERT INTO skus (id, name, price_amount, currency, total, reserved, sold, version, created_at, updated_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])`,
		[]any{ids, names, prices, currencies, totals, reserved, sold, versions, created, updated}, insertN(n, "skus"))
}

// updateStock is the conditional update, one statement for all of a batch's SKUs: the
// database refuses a result with negative available, reserved or sold (P1, paired with
// the engine's assertion), and a SKU that does not exist matches no row. The server
// counts the rows it changed and raises unless that is every SKU sent (expect_rows,
// migration 00007), so a refused change fails the transaction even when its COMMIT was
// sent in the same round trip. The rows are already locked by the batch's load
// (skusForUpdate), in id order.
const updateStock = `WITH changed AS (
	UPDATE skus SET total = skus.total + v.dt, reserved = skus.reserved + v.dr, sold = skus.sold + v.ds,
		version = skus.version + 1, updated_at = v.at
	FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) AS v(id, dt, dr, ds, at)
	WHERE skus.id = v.id AND (skus.total + v.dt) - (skus.reserved + v.dr) - (skus.sold + v.ds) >= 0
		AND skus.reserved + v.dr >= 0 AND skus.sold + v.ds >= 0
	RETURNING 1)
SELECT expect_rows((SELECT count(*) FROM changed), $6, 'conditional stock update')`

// queueStock adds one conditional UPDATE of every touched SKU, however many orders of
// the batch moved its stock; it must change every one of them. The engine sends each
// SKU once; a SKU sent twice would be changed once (one join row per target row) and
// fail the count like a refused change.
func queueStock(b *pgx.Batch, c *ordercore.Changeset) {
	n := len(c.StockChanges)
	if n == 0 {
		return
	}
	ids := make([]string, n)
	dTotal, dReserved, dSold, at := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, ch := range c.StockChanges {
		ids[i], dTotal[i], dReserved[i], dSold[i], at[i] = ch.SKU, ch.DTotal, ch.DReserved, ch.DSold, micros(ch.At)
	}
	qq := b.Queue(updateStock, ids, dTotal, dReserved, dSold, at, int64(n))
	qq.Fn = func(br pgx.BatchResults) error {
		var changed int64
		if err := br.QueryRow().Scan(&changed); err != nil || changed != int64(n) {
			return fmt.Errorf("postgres: conditional stock update of %d SKUs (changes %+v): a SKU does not exist or would go negative: %w",
				n, c.StockChanges, cmp.Or(err, fmt.Errorf("%d changed", changed)))
		}
		return nil
	}
}

func queueOrders(b *pgx.Batch, c *ordercore.Changeset) {
	n := len(c.NewOrders)
	if n == 0 {
		return
	}
	ids, users, statuses, currencies, reasons := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	amounts, expires, versions, created, updated := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	lines := 0
	for i, o := range c.NewOrders {
		ids[i], users[i], statuses[i], currencies[i], reasons[i] = o.ID, o.UserID, string(o.Status), string(o.Amount.Currency), o.CancelReason
		amounts[i], expires[i], versions[i], created[i], updated[i] = o.Amount.Amount, micros(o.ExpiresAt), o.Version, micros(o.CreatedAt), micros(o.UpdatedAt)
		lines += len(o.Lines)
	}
	queue(b, "insert orders", `INSERT INTO orders (id, user_id, status, currency, amount, expires_at, version, cancel_reason, created_at, updated_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::bigint[])`,
		[]any{ids, users, statuses, currencies, amounts, expires, versions, reasons, created, updated}, insertN(n, "orders"))
	if lines == 0 {
		return
	}
	orderIDs, skus, reservations := make([]string, 0, lines), make([]string, 0, lines), make([]string, 0, lines)
	lineNos, quantities, prices, lineAmounts := make([]int64, 0, lines), make([]int64, 0, lines), make([]int64, 0, lines), make([]int64, 0, lines)
	for _, o := range c.NewOrders {
		for j, l := range o.Lines {
			orderIDs, lineNos, skus = append(orderIDs, o.ID), append(lineNos, int64(j+1)), append(skus, l.SKU)
			quantities, prices, lineAmounts = append(quantities, l.Quantity), append(prices, l.UnitPrice.Amount), append(lineAmounts, l.Amount.Amount)
			reservations = append(reservations, string(l.Reservation))
		}
	}
	queue(b, "insert order lines", `INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, amount, reservation)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[])`,
		[]any{orderIDs, lineNos, skus, quantities, prices, lineAmounts, reservations}, insertN(lines, "order_lines"))
}

const (
	updateOrder  = "UPDATE orders SET status = $1, version = $2, cancel_reason = $3, updated_at = $4 WHERE id = $5 AND version = $6"
	reviveLines  = "UPDATE order_lines SET reservation = 'committed' WHERE order_id = $1 AND reservation = 'released'"
	resolveLines = "UPDATE order_lines SET reservation = $1 WHERE order_id = $2 AND reservation = 'reserved'"
)

// queueOrderChanges rewrites each changed order if its version is still the one loaded,
// and resolves (or revives) its reservations if this batch did: all lines of an order
// move together, and each exactly once.
func queueOrderChanges(b *pgx.Batch, c *ordercore.Changeset) {
	for _, ch := range c.OrderChanges {
		o := ch.Order
		queue(b, "update order "+o.ID, updateOrder, []any{string(o.Status), o.Version, o.CancelReason, micros(o.UpdatedAt), o.ID, ch.FromVersion},
			affected(1, "order %s is no longer at version %d", o.ID, ch.FromVersion))
		if ch.Revive {
			queue(b, "revive reservations of "+o.ID, reviveLines, []any{o.ID},
				affected(int64(len(o.Lines)), "order %s revived only some of its %d lines", o.ID, len(o.Lines)))
			continue
		}
		if ch.Resolve == "" {
			continue
		}
		for _, l := range o.Lines {
			limit.Assert(l.Reservation == ch.Resolve, "order %s resolves to %s but has a %s line", o.ID, ch.Resolve, l.Reservation)
		}
		queue(b, "resolve reservations of "+o.ID, resolveLines, []any{string(ch.Resolve), o.ID},
			affected(int64(len(o.Lines)), "order %s resolved only some of its %d reservations", o.ID, len(o.Lines)))
	}
}

// queueLedger appends stock ledger rows, numbered in the order given.
func queueLedger(b *pgx.Batch, c *ordercore.Changeset) {
	n := len(c.Ledger)
	if n == 0 {
		return
	}
	skus, movements, orderIDs, holdIDs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	dTotal, dReserved, dSold, lineNos, at := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, e := range c.Ledger {
		skus[i], movements[i], orderIDs[i], holdIDs[i] = e.SKU, string(e.Movement), e.OrderID, e.HoldID
		dTotal[i], dReserved[i], dSold[i], lineNos[i], at[i] = e.DTotal, e.DReserved, e.DSold, int64(e.LineNo), micros(e.At)
	}
	// A restock names no reservation: order, hold and line are NULL, as on SQLite, so the
	// reservation indexes leave restocks alone.
	queue(b, "insert stock ledger", `INSERT INTO stock_ledger (sku, movement, d_total, d_reserved, d_sold, order_id, line_no, at, hold_id)
		SELECT sku, movement, dt, dr, ds, NULLIF(o, ''), CASE WHEN o = '' AND h = '' THEN NULL ELSE l END, at, NULLIF(h, '')
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[], $8::bigint[], $9::text[])
			WITH ORDINALITY AS u(sku, movement, dt, dr, ds, o, l, at, h, n)
		ORDER BY n`,
		[]any{skus, movements, dTotal, dReserved, dSold, orderIDs, lineNos, at, holdIDs}, insertN(n, "stock_ledger"))
}

func queueIdempotency(b *pgx.Batch, c *ordercore.Changeset) {
	n := len(c.Idempotency)
	if n == 0 {
		return
	}
	keys, hashes := make([]string, n), make([]string, n)
	statuses, created := make([]int64, n), make([]int64, n)
	bodies := make([][]byte, n)
	for i, r := range c.Idempotency {
		keys[i], hashes[i], statuses[i], created[i] = r.Key, r.RequestHash, int64(r.Status), micros(r.CreatedAt)
		bodies[i] = r.Body
		if bodies[i] == nil {
			bodies[i] = []byte{} // an empty body, not a missing one
		}
	}
	queue(b, "insert idempotency keys", `INSERT INTO idempotency_keys (key, request_hash, status, body, created_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[], $5::bigint[])`,
		[]any{keys, hashes, statuses, bodies, created}, insertN(n, "idempotency_keys"))
}

func queuePrune(b *pgx.Batch, c *ordercore.Changeset) {
	if c.IdemPruneBefore.IsZero() {
		return
	}
	queue(b, "prune idempotency keys", `DELETE FROM idempotency_keys WHERE key IN
		(SELECT key FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2)`,
		[]any{micros(c.IdemPruneBefore), int64(c.IdemPruneMax)}, nil)
}
