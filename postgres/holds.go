package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"ordercore"
)

// Stock holds of outside TCC transactions and the barrier that guards them (engine's
// TCCTry, TCCConfirm, TCCCancel). A batch names its branches as two parallel arrays of
// gids and branch ids.

const (
	holdCols    = "id, gid, branch_id, status, lines, version, created_at, updated_at"
	barrierCols = "trans_type, gid, branch_id, op, reason, created_at"
	// branchesIn matches rows whose (gid, branch_id) is a pair of the arrays $1 and $2.
	branchesIn = "(gid, branch_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
	// holdsForUpdate locks the holds in id order, as the other loads lock theirs.
	holdsForUpdate  = "SELECT " + holdCols + " FROM holds WHERE " + branchesIn + " ORDER BY id FOR UPDATE"
	barrierByBranch = "SELECT " + barrierCols + " FROM barriers WHERE " + branchesIn
)

func branchArrays(branches []ordercore.BranchKey) []any {
	gids, ids := make([]string, len(branches)), make([]string, len(branches))
	for i, b := range branches {
		gids[i], ids[i] = b.GID, b.BranchID
	}
	return []any{gids, ids}
}

func scanHold(rows pgx.Rows) (ordercore.StockHold, error) {
	var h ordercore.StockHold
	var lines string
	var created, updated int64
	if err := rows.Scan(&h.ID, &h.GID, &h.BranchID, &h.Status, &lines, &h.Version, &created, &updated); err != nil {
		return h, err
	}
	if err := json.Unmarshal([]byte(lines), &h.Lines); err != nil {
		return h, fmt.Errorf("hold %s lines: %w", h.ID, err)
	}
	h.CreatedAt, h.UpdatedAt = fromMicros(created), fromMicros(updated)
	return h, nil
}

func scanBarrier(rows pgx.Rows) (ordercore.BarrierRow, error) {
	var r ordercore.BarrierRow
	var created int64
	err := rows.Scan(&r.TransType, &r.GID, &r.BranchID, &r.Op, &r.Reason, &created)
	r.CreatedAt = fromMicros(created)
	return r, err
}

// queryHolds and queryBarriers never return nil.
func queryHolds(ctx context.Context, q querier, query string, args ...any) ([]ordercore.StockHold, error) {
	out, err := collect(ctx, q, "holds", query, args, scanHold)
	if out == nil && err == nil {
		out = []ordercore.StockHold{}
	}
	return out, err
}

func queryBarriers(ctx context.Context, q querier, query string, args ...any) ([]ordercore.BarrierRow, error) {
	out, err := collect(ctx, q, "barrier rows", query, args, scanBarrier)
	if out == nil && err == nil {
		out = []ordercore.BarrierRow{}
	}
	return out, err
}

// Barriers locks each branch with a transaction-scoped advisory lock, then reads its
// barrier rows. A branch whose rows do not exist yet has nothing FOR UPDATE could lock,
// and a try and its cancel arriving at two instances at once must not both decide on
// "no rows": the second waits for the first to commit, and under READ COMMITTED its read,
// a later statement, sees the first's rows (the barrier package gets the same from the
// unique key its inserts race for).
func (w *writeTx) Barriers(ctx context.Context, branches []ordercore.BranchKey) ([]ordercore.BarrierRow, error) {
	if len(branches) == 0 {
		return nil, nil
	}
	keys := make([]string, len(branches))
	for i, b := range branches {
		keys[i] = b.GID + "\x00" + b.BranchID
	}
	if err := w.lockKeys(ctx, "barrier", keys); err != nil {
		return nil, err
	}
	return queryBarriers(ctx, w.tx, barrierByBranch, branchArrays(branches)...)
}

// Holds loads and locks the branches' holds.
func (w *writeTx) Holds(ctx context.Context, branches []ordercore.BranchKey) (map[ordercore.BranchKey]ordercore.StockHold, error) {
	out := make(map[ordercore.BranchKey]ordercore.StockHold, len(branches))
	if len(branches) == 0 {
		return out, nil
	}
	hs, err := queryHolds(ctx, w.tx, holdsForUpdate, branchArrays(branches)...)
	for _, h := range hs {
		out[ordercore.BranchKey{GID: h.GID, BranchID: h.BranchID}] = h
	}
	return out, err
}

// queueHolds inserts new holds (a second hold of a branch fails the insert, and the
// batch), resolves changed ones (each only from reserved, at the loaded version) and
// inserts barrier rows (a row that exists fails the batch: the engine decided on a view
// that was not the database's).
func queueHolds(b *pgx.Batch, c *ordercore.Changeset) error {
	if n := len(c.NewHolds); n > 0 {
		ids, gids, branches, statuses, lines := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		versions, created, updated := make([]int64, n), make([]int64, n), make([]int64, n)
		for i, h := range c.NewHolds {
			raw, err := json.Marshal(h.Lines)
			if err != nil {
				return fmt.Errorf("postgres: hold %s lines: %w", h.ID, err)
			}
			ids[i], gids[i], branches[i], statuses[i], lines[i] = h.ID, h.GID, h.BranchID, string(h.Status), string(raw)
			versions[i], created[i], updated[i] = h.Version, micros(h.CreatedAt), micros(h.UpdatedAt)
		}
		queue(b, "insert holds", "INSERT INTO holds ("+holdCols+`)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[])`,
			[]any{ids, gids, branches, statuses, lines, versions, created, updated}, insertN(n, "holds"))
	}
	for _, ch := range c.HoldChanges {
		h := ch.Hold
		queue(b, "resolve hold "+h.ID, "UPDATE holds SET status = $1, version = $2, updated_at = $3 WHERE id = $4 AND version = $5 AND status = 'reserved'",
			[]any{string(h.Status), h.Version, micros(h.UpdatedAt), h.ID, ch.FromVersion},
			affected(1, "hold %s is no longer reserved at version %d", h.ID, ch.FromVersion))
	}
	if n := len(c.NewBarriers); n > 0 {
		types, gids, branches, ops, reasons := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		created := make([]int64, n)
		for i, r := range c.NewBarriers {
			types[i], gids[i], branches[i], ops[i], reasons[i], created[i] = r.TransType, r.GID, r.BranchID, r.Op, r.Reason, micros(r.CreatedAt)
		}
		queue(b, "insert barrier rows", "INSERT INTO barriers ("+barrierCols+`)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])`,
			[]any{types, gids, branches, ops, reasons, created}, insertN(n, "barriers"))
	}
	return nil
}

// HoldsOf lists a global transaction's holds by branch id.
func (db *DB) HoldsOf(ctx context.Context, gid string, limit int) ([]ordercore.StockHold, error) {
	return queryHolds(ctx, db.pool, "SELECT "+holdCols+" FROM holds WHERE gid = $1 ORDER BY branch_id LIMIT $2", gid, int64(limit))
}

// BarriersOf lists a global transaction's barrier rows by branch id and op.
func (db *DB) BarriersOf(ctx context.Context, gid string, limit int) ([]ordercore.BarrierRow, error) {
	return queryBarriers(ctx, db.pool, "SELECT "+barrierCols+" FROM barriers WHERE gid = $1 ORDER BY branch_id, op LIMIT $2", gid, int64(limit))
}

// dumpHolds adds the holds (by id) and the barrier rows (by gid, branch id, op) to a
// snapshot.
func dumpHolds(ctx context.Context, tx pgx.Tx, snap *ordercore.Snapshot) error {
	var err error
	if snap.Holds, err = queryHolds(ctx, tx, "SELECT "+holdCols+" FROM holds ORDER BY id"); err != nil {
		return err
	}
	snap.Barriers, err = queryBarriers(ctx, tx, "SELECT "+barrierCols+" FROM barriers ORDER BY gid, branch_id, op")
	return err
}
