package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"ordercore"
	"ordercore/internal/limit"
)

const sagaCols = "gid, kind, status, steps, order_id, policy, next_run_at, reason, dead_from, deadline, version, created_at, updated_at"

// sagasForUpdate is the batch load: it locks the sagas in gid order, as the other loads
// lock their rows in id order.
const sagasForUpdate = "SELECT " + sagaCols + " FROM sagas WHERE gid = ANY($1) ORDER BY gid FOR UPDATE"

// sagaVersionsForUpdate locks the same rows as sagasForUpdate, in the same order.
const sagaVersionsForUpdate = "SELECT gid, version FROM sagas WHERE gid = ANY($1) ORDER BY gid FOR UPDATE"

// claimSagas is the claim, one statement: due picks at most $2 sagas due at $1 over the
// sagas_due partial index, earliest first, skipping rows another transaction has locked
// (an instance claiming at the same moment, or a batch that loaded the saga), so claims
// neither wait for each other nor take the same saga; the UPDATE moves them to $3 and up
// one version. RETURNING yields rows in no promised order and only their new values, so
// the claim keeps each row's due time beside it to return them earliest first.
// MATERIALIZED makes the CTE (and its locks) run exactly once.
var claimSagas = `WITH due AS MATERIALIZED (
		SELECT gid, next_run_at FROM sagas WHERE next_run_at IS NOT NULL AND next_run_at <= $1
		ORDER BY next_run_at, gid LIMIT $2 FOR UPDATE SKIP LOCKED),
	claimed AS (
		UPDATE sagas s SET next_run_at = $3, version = s.version + 1, updated_at = $1 FROM due WHERE s.gid = due.gid
		RETURNING ` + qualified("s", sagaCols) + `, due.next_run_at AS due_at)
	SELECT ` + sagaCols + ` FROM claimed ORDER BY due_at, gid`

// qualified prefixes each column of cols with table.
func qualified(table, cols string) string {
	parts := strings.Split(cols, ", ")
	for i, c := range parts {
		parts[i] = table + "." + c
	}
	return strings.Join(parts, ", ")
}

func scanSaga(rows pgx.Rows) (ordercore.Saga, error) {
	var s ordercore.Saga
	var steps, policy string
	var next, deadline *int64
	var created, updated int64
	if err := rows.Scan(&s.GID, &s.Kind, &s.Status, &steps, &s.OrderID, &policy, &next, &s.Reason, &s.DeadFrom, &deadline,
		&s.Version, &created, &updated); err != nil {
		return s, err
	}
	if err := json.Unmarshal([]byte(steps), &s.Steps); err != nil {
		return s, fmt.Errorf("saga %s steps: %w", s.GID, err)
	}
	if err := json.Unmarshal([]byte(policy), &s.Policy); err != nil {
		return s, fmt.Errorf("saga %s policy: %w", s.GID, err)
	}
	s.NextRunAt, s.Deadline = fromNullMicros(next), fromNullMicros(deadline)
	s.CreatedAt, s.UpdatedAt = fromMicros(created), fromMicros(updated)
	return s, nil
}

// querySagas reads sagas; query selects sagaCols from sagas. It never returns nil.
func querySagas(ctx context.Context, q querier, query string, args ...any) ([]ordercore.Saga, error) {
	out, err := collect(ctx, q, "sagas", query, args, scanSaga)
	if out == nil && err == nil {
		out = []ordercore.Saga{}
	}
	return out, err
}

// sagaJSON encodes a saga's steps and policy for their TEXT columns; a step payload that
// is not valid JSON cannot be stored, and fails the batch.
func sagaJSON(s ordercore.Saga) (steps, policy string, err error) {
	b, err := json.Marshal(s.Steps)
	if err != nil {
		return "", "", fmt.Errorf("postgres: saga %s steps: %w", s.GID, err)
	}
	p, err := json.Marshal(s.Policy)
	if err != nil {
		return "", "", fmt.Errorf("postgres: saga %s policy: %w", s.GID, err)
	}
	return string(b), string(p), nil
}

// Sagas loads and locks sagas in gid order.
func (w *writeTx) Sagas(ctx context.Context, gids []string) (map[string]ordercore.Saga, error) {
	out := make(map[string]ordercore.Saga, len(gids))
	if len(gids) == 0 {
		return out, nil
	}
	ss, err := querySagas(ctx, w.tx, sagasForUpdate, gids)
	for _, s := range ss {
		out[s.GID] = s
	}
	return out, err
}

// SagaVersions reads the version of each named saga that exists, locking the rows as
// Sagas does.
func (w *writeTx) SagaVersions(ctx context.Context, gids []string) (map[string]int64, error) {
	out := make(map[string]int64, len(gids))
	if len(gids) == 0 {
		return out, nil
	}
	rows, err := w.tx.Query(ctx, sagaVersionsForUpdate, gids)
	if err != nil {
		return nil, fmt.Errorf("postgres: saga versions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var gid string
		var v int64
		if err := rows.Scan(&gid, &v); err != nil {
			return nil, fmt.Errorf("postgres: scan saga version: %w", err)
		}
		out[gid] = v
	}
	return out, rows.Err()
}

// ClaimSagas takes the due sagas no other transaction holds, earliest first, moving them
// to until.
func (w *writeTx) ClaimSagas(ctx context.Context, now, until time.Time, limitN int) ([]ordercore.Saga, error) {
	limit.Assert(limitN > 0, "claim of %d sagas", limitN)
	ss, err := querySagas(ctx, w.tx, claimSagas, micros(now), int64(limitN), micros(until))
	if err != nil || len(ss) == 0 {
		return nil, err
	}
	return ss, nil
}

// queueSagas inserts new sagas (one multi-row insert: a gid that exists fails it, and the
// batch), then applies version-guarded changes that rewrite what may change about a saga,
// guarded also by what may not (its kind and creation).
func queueSagas(b *pgx.Batch, c *ordercore.Changeset) error {
	if n := len(c.NewSagas); n > 0 {
		gids, kinds, statuses, steps, orders, policies, reasons, deadFrom := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		next, deadlines := make([]*int64, n), make([]*int64, n)
		versions, created, updated := make([]int64, n), make([]int64, n), make([]int64, n)
		for i, s := range c.NewSagas {
			var err error
			if steps[i], policies[i], err = sagaJSON(s); err != nil {
				return err
			}
			gids[i], kinds[i], statuses[i], orders[i], reasons[i], deadFrom[i] = s.GID, string(s.Kind), string(s.Status), s.OrderID, s.Reason, string(s.DeadFrom)
			next[i], deadlines[i] = nullMicros(s.NextRunAt), nullMicros(s.Deadline)
			versions[i], created[i], updated[i] = s.Version, micros(s.CreatedAt), micros(s.UpdatedAt)
		}
		queue(b, "insert sagas", "INSERT INTO sagas ("+sagaCols+`)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[],
				$9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[])`,
			[]any{gids, kinds, statuses, steps, orders, policies, next, reasons, deadFrom, deadlines, versions, created, updated},
			insertN(n, "sagas"))
	}
	for _, ch := range c.SagaChanges {
		s := ch.Saga
		steps, policy, err := sagaJSON(s)
		if err != nil {
			return err
		}
		queue(b, "update saga "+s.GID, `UPDATE sagas SET status = $3, steps = $4, order_id = $5, policy = $6, next_run_at = $7, reason = $8,
			dead_from = $9, deadline = $10, version = $11, updated_at = $13
			WHERE gid = $1 AND kind = $2 AND created_at = $12 AND version = $14`,
			[]any{s.GID, string(s.Kind), string(s.Status), steps, s.OrderID, policy, nullMicros(s.NextRunAt), s.Reason,
				string(s.DeadFrom), nullMicros(s.Deadline), s.Version, micros(s.CreatedAt), micros(s.UpdatedAt), ch.FromVersion},
			affected(1, "saga %s is no longer at version %d", s.GID, ch.FromVersion))
	}
	return nil
}

// Saga reads one saga.
func (db *DB) Saga(ctx context.Context, gid string) (ordercore.Saga, error) {
	ss, err := querySagas(ctx, db.pool, "SELECT "+sagaCols+" FROM sagas WHERE gid = $1", gid)
	if err != nil {
		return ordercore.Saga{}, err
	}
	if len(ss) == 0 {
		return ordercore.Saga{}, notFound("saga", gid)
	}
	return ss[0], nil
}

// ListSagas lists sagas newest first (created_at, then gid, both descending), over
// sagas_status when a status is given and sagas_created otherwise. The cursor is a gid:
// its creation time is looked up, and a gid that names no saga is refused.
func (db *DB) ListSagas(ctx context.Context, status ordercore.SagaStatus, afterGID string, limit int) ([]ordercore.Saga, error) {
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if status != "" {
		where = append(where, "status = "+arg(string(status)))
	}
	if afterGID != "" {
		var created int64
		err := db.pool.QueryRow(ctx, "SELECT created_at FROM sagas WHERE gid = $1", afterGID).Scan(&created)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ordercore.Errorf(ordercore.EInvalidCursor, "no saga %q to list after", afterGID)
		} else if err != nil {
			return nil, fmt.Errorf("postgres: read saga cursor: %w", err)
		}
		where = append(where, "(created_at, gid) < ("+arg(created)+", "+arg(afterGID)+")")
	}
	q := "SELECT " + sagaCols + " FROM sagas"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, gid DESC LIMIT " + arg(int64(limit))
	return querySagas(ctx, db.pool, q, args...)
}

// SagaCounts counts sagas per status; a status without sagas is absent from the map.
func (db *DB) SagaCounts(ctx context.Context) (map[ordercore.SagaStatus]int64, error) {
	counts, err := db.countGroups(ctx, "saga counts", "SELECT status, count(*) FROM sagas GROUP BY status")
	out := make(map[ordercore.SagaStatus]int64, len(counts))
	for status, n := range counts {
		out[ordercore.SagaStatus(status)] = n
	}
	return out, err
}

// dumpSagas adds the sagas to a snapshot, by gid.
func dumpSagas(ctx context.Context, tx pgx.Tx, snap *ordercore.Snapshot) error {
	var err error
	snap.Sagas, err = querySagas(ctx, tx, "SELECT "+sagaCols+" FROM sagas ORDER BY gid")
	return err
}
