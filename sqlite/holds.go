package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"ordercore"
)

// Stock holds of outside TCC transactions and the barrier that guards them (engine's
// TCCTry, TCCConfirm, TCCCancel). The batch names its branches as one JSON array of [gid,
// branch_id] pairs, so a load is one prepared statement whatever the number of branches.

const (
	holdCols    = "id, gid, branch_id, status, lines, version, created_at, updated_at"
	barrierCols = "trans_type, gid, branch_id, op, reason, created_at"
	// branchesIn matches rows whose (gid, branch_id) is one of the pairs of the JSON array ?1.
	branchesIn = "(gid, branch_id) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))"
)

var (
	insertHolds    = newInsert("INSERT INTO holds ("+holdCols+")", 8)
	insertBarriers = newInsert("INSERT INTO barriers ("+barrierCols+")", 6)
	// updateHold resolves a hold once: only a reserved hold still at the loaded version.
	updateHold      = "UPDATE holds SET status = ?, version = ?, updated_at = ? WHERE id = ? AND version = ? AND status = 'reserved'"
	holdsByBranch   = "SELECT " + holdCols + " FROM holds WHERE " + branchesIn
	barrierByBranch = "SELECT " + barrierCols + " FROM barriers WHERE " + branchesIn
)

// holdStatements lists the statements to prepare at Open.
func holdStatements() []string {
	out := []string{updateHold, holdsByBranch, barrierByBranch}
	for _, in := range []insertSpec{insertHolds, insertBarriers} {
		for _, q := range in.texts {
			out = append(out, q)
		}
	}
	return out
}

// branchesJSON encodes branches as the JSON array branchesIn reads.
func branchesJSON(branches []ordercore.BranchKey) (string, error) {
	pairs := make([][2]string, len(branches))
	for i, b := range branches {
		pairs[i] = [2]string{b.GID, b.BranchID}
	}
	raw, err := json.Marshal(pairs)
	if err != nil {
		return "", fmt.Errorf("sqlite: encode branches: %w", err)
	}
	return string(raw), nil
}

func scanHold(rows interface{ Scan(...any) error }) (ordercore.StockHold, error) {
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

// queryHolds reads holds; query selects holdCols from holds. It never returns nil.
func queryHolds(ctx context.Context, q querier, query string, args ...any) ([]ordercore.StockHold, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query holds: %w", err)
	}
	defer rows.Close()
	out := []ordercore.StockHold{}
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: scan hold: %w", err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// queryBarriers reads barrier rows; query selects barrierCols from barriers. It never
// returns nil.
func queryBarriers(ctx context.Context, q querier, query string, args ...any) ([]ordercore.BarrierRow, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query barrier rows: %w", err)
	}
	defer rows.Close()
	out := []ordercore.BarrierRow{}
	for rows.Next() {
		var r ordercore.BarrierRow
		var created int64
		if err := rows.Scan(&r.TransType, &r.GID, &r.BranchID, &r.Op, &r.Reason, &created); err != nil {
			return nil, fmt.Errorf("sqlite: scan barrier row: %w", err)
		}
		r.CreatedAt = fromMicros(created)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Barriers loads the branches' barrier rows (SQLite's single writer already serialises
// the batch against every other).
func (w *writeTx) Barriers(ctx context.Context, branches []ordercore.BranchKey) ([]ordercore.BarrierRow, error) {
	if len(branches) == 0 {
		return nil, nil
	}
	arg, err := branchesJSON(branches)
	if err != nil {
		return nil, err
	}
	return queryBarriers(ctx, w, barrierByBranch, arg)
}

// Holds loads the branches' holds.
func (w *writeTx) Holds(ctx context.Context, branches []ordercore.BranchKey) (map[ordercore.BranchKey]ordercore.StockHold, error) {
	out := make(map[ordercore.BranchKey]ordercore.StockHold, len(branches))
	if len(branches) == 0 {
		return out, nil
	}
	arg, err := branchesJSON(branches)
	if err != nil {
		return nil, err
	}
	hs, err := queryHolds(ctx, w, holdsByBranch, arg)
	for _, h := range hs {
		out[ordercore.BranchKey{GID: h.GID, BranchID: h.BranchID}] = h
	}
	return out, err
}

// holds writes a batch's new holds (a second hold of a branch fails the insert, and the
// batch), their resolutions (each only from reserved, at the loaded version) and its
// barrier rows (a row that exists fails the batch: the engine decided on a view that was
// not the database's).
func (w *writeTx) holds(ctx context.Context, c *ordercore.Changeset) error {
	lines := make([]string, len(c.NewHolds))
	for i, h := range c.NewHolds {
		raw, err := json.Marshal(h.Lines)
		if err != nil {
			return fmt.Errorf("sqlite: hold %s lines: %w", h.ID, err)
		}
		lines[i] = string(raw)
	}
	err := w.insert(ctx, insertHolds, len(c.NewHolds), func(i int, a []any) []any {
		h := c.NewHolds[i]
		return append(a, h.ID, h.GID, h.BranchID, string(h.Status), lines[i], h.Version, micros(h.CreatedAt), micros(h.UpdatedAt))
	})
	if err != nil {
		return err
	}
	err = w.execRows(ctx, updateHold, len(c.HoldChanges), func(i int) []any {
		ch := c.HoldChanges[i]
		return []any{string(ch.Hold.Status), ch.Hold.Version, micros(ch.Hold.UpdatedAt), ch.Hold.ID, ch.FromVersion}
	}, func(i int, n int64) error {
		if n != 1 {
			ch := c.HoldChanges[i]
			return fmt.Errorf("sqlite: hold %s is no longer reserved at version %d", ch.Hold.ID, ch.FromVersion)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return w.insert(ctx, insertBarriers, len(c.NewBarriers), func(i int, a []any) []any {
		r := c.NewBarriers[i]
		return append(a, r.TransType, r.GID, r.BranchID, r.Op, r.Reason, micros(r.CreatedAt))
	})
}

// HoldsOf lists a global transaction's holds by branch id.
func (db *DB) HoldsOf(ctx context.Context, gid string, limit int) ([]ordercore.StockHold, error) {
	return queryHolds(ctx, db.read, "SELECT "+holdCols+" FROM holds WHERE gid = ? ORDER BY branch_id LIMIT ?", gid, limit)
}

// BarriersOf lists a global transaction's barrier rows by branch id and op.
func (db *DB) BarriersOf(ctx context.Context, gid string, limit int) ([]ordercore.BarrierRow, error) {
	return queryBarriers(ctx, db.read, "SELECT "+barrierCols+" FROM barriers WHERE gid = ? ORDER BY branch_id, op LIMIT ?", gid, limit)
}

// dumpHolds adds the holds (by id) and the barrier rows (by gid, branch id, op) to a
// snapshot.
func dumpHolds(ctx context.Context, tx *sql.Tx, snap *ordercore.Snapshot) error {
	var err error
	if snap.Holds, err = queryHolds(ctx, tx, "SELECT "+holdCols+" FROM holds ORDER BY id"); err != nil {
		return err
	}
	snap.Barriers, err = queryBarriers(ctx, tx, "SELECT "+barrierCols+" FROM barriers ORDER BY gid, branch_id, op")
	return err
}
