package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"ordercore"
	"ordercore/internal/limit"
)

const sagaCols = "gid, kind, status, steps, order_id, policy, next_run_at, reason, dead_from, deadline, version, created_at, updated_at"

// sagasDue selects the sagas a claim takes, over the sagas_due partial index: ?1 is now,
// ?2 the limit. Ties on next_run_at go by gid, so a claim's set is the same however often
// it is evaluated in one transaction.
const sagasDue = "FROM sagas WHERE next_run_at IS NOT NULL AND next_run_at <= ?1 ORDER BY next_run_at, gid LIMIT ?2"

// The saga side's write statements, prepared at Open (sagaStatements).
var (
	insertSagas = newInsert("INSERT INTO sagas ("+sagaCols+")", 13)
	// updateSagas rewrites what may change about sagas, each guarded by its version and by
	// what may not change (its kind and creation): one statement for many sagas, as the
	// inserts are (a statement's fixed cost is most of a one-row update's).
	updateSagas = newRows("WITH v ("+sagaCols+", from_version) AS (", 14,
		`) UPDATE sagas SET status = v.status, steps = v.steps, order_id = v.order_id, policy = v.policy,
		next_run_at = v.next_run_at, reason = v.reason, dead_from = v.dead_from, deadline = v.deadline,
		version = v.version, updated_at = v.updated_at
		FROM v WHERE sagas.gid = v.gid AND sagas.kind = v.kind AND sagas.created_at = v.created_at AND sagas.version = v.from_version`)
	// claimOrder and claimSagas are the claim: SQLite's RETURNING yields rows in no
	// promised order and only their new values, so the due gids are read first, in claim
	// order, and the UPDATE takes the same set (one writer: nothing changes in between).
	claimOrder = "SELECT gid " + sagasDue
	claimSagas = "UPDATE sagas SET next_run_at = ?3, version = version + 1, updated_at = ?1 WHERE gid IN (SELECT gid " + sagasDue + ") RETURNING " + sagaCols
)

func sagasByGID(in string) string {
	return "SELECT " + sagaCols + " FROM sagas WHERE gid IN (" + in + ")"
}

func sagaVersionsByGID(in string) string {
	return "SELECT gid, version FROM sagas WHERE gid IN (" + in + ")"
}

// sagaStatements lists the saga side's statements to prepare at Open: the writes, the
// claim, and the batch load for every padded IN-list size (inList).
func sagaStatements() []string {
	out := []string{claimOrder, claimSagas}
	for _, in := range []insertSpec{insertSagas, updateSagas} {
		for _, q := range in.texts {
			out = append(out, q)
		}
	}
	for size := 1; size <= inListMax; size *= 2 {
		out = append(out, sagasByGID(marks(size)), sagaVersionsByGID(marks(size)))
	}
	return out
}

func scanSaga(rows interface{ Scan(...any) error }) (ordercore.Saga, error) {
	var s ordercore.Saga
	var steps, policy string
	var next, deadline sql.NullInt64
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
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query sagas: %w", err)
	}
	defer rows.Close()
	out := []ordercore.Saga{}
	for rows.Next() {
		s, err := scanSaga(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: scan saga: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// sagaArgs returns a saga's values in sagaCols order. Steps and policy are stored as JSON;
// a step payload that is not valid JSON cannot be, and fails the batch.
func sagaArgs(s ordercore.Saga) ([]any, error) {
	steps, err := json.Marshal(s.Steps)
	if err != nil {
		return nil, fmt.Errorf("sqlite: saga %s steps: %w", s.GID, err)
	}
	policy, err := json.Marshal(s.Policy)
	if err != nil {
		return nil, fmt.Errorf("sqlite: saga %s policy: %w", s.GID, err)
	}
	return []any{s.GID, string(s.Kind), string(s.Status), string(steps), s.OrderID, string(policy), nullMicros(s.NextRunAt),
		s.Reason, string(s.DeadFrom), nullMicros(s.Deadline), s.Version, micros(s.CreatedAt), micros(s.UpdatedAt)}, nil
}

// Sagas loads sagas by gid (SQLite's single writer already serialises the batch).
func (w *writeTx) Sagas(ctx context.Context, gids []string) (map[string]ordercore.Saga, error) {
	out := make(map[string]ordercore.Saga, len(gids))
	err := chunks(gids, func(part []string) error {
		in, args := inList(part)
		ss, err := querySagas(ctx, w, sagasByGID(in), args...)
		for _, s := range ss {
			out[s.GID] = s
		}
		return err
	})
	return out, err
}

// SagaVersions reads the version of each named saga that exists.
func (w *writeTx) SagaVersions(ctx context.Context, gids []string) (map[string]int64, error) {
	out := make(map[string]int64, len(gids))
	err := chunks(gids, func(part []string) error {
		in, args := inList(part)
		rows, err := w.QueryContext(ctx, sagaVersionsByGID(in), args...)
		if err != nil {
			return fmt.Errorf("sqlite: saga versions: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var gid string
			var v int64
			if err := rows.Scan(&gid, &v); err != nil {
				return fmt.Errorf("sqlite: scan saga version: %w", err)
			}
			out[gid] = v
		}
		return rows.Err()
	})
	return out, err
}

// ClaimSagas takes the due sagas, earliest first, moving them to until.
func (w *writeTx) ClaimSagas(ctx context.Context, now, until time.Time, limitN int) ([]ordercore.Saga, error) {
	// SQLite reads a negative LIMIT as no limit at all.
	limit.Assert(limitN > 0, "claim of %d sagas", limitN)
	rows, err := w.QueryContext(ctx, claimOrder, micros(now), limitN)
	if err != nil {
		return nil, fmt.Errorf("sqlite: due sagas: %w", err)
	}
	pos := map[string]int{}
	for rows.Next() {
		var gid string
		if err := rows.Scan(&gid); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: scan due saga: %w", err)
		}
		pos[gid] = len(pos)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: due sagas: %w", err)
	}
	if len(pos) == 0 {
		return nil, nil
	}
	claimed, err := querySagas(ctx, w, claimSagas, micros(now), limitN, micros(until))
	if err != nil {
		return nil, err
	}
	out := make([]ordercore.Saga, len(pos))
	for _, s := range claimed {
		i, ok := pos[s.GID]
		if !ok || out[i].GID != "" {
			return nil, fmt.Errorf("sqlite: claim took saga %s, which was not due", s.GID)
		}
		out[i] = s
	}
	if len(claimed) != len(pos) {
		return nil, fmt.Errorf("sqlite: claim took %d sagas of the %d due", len(claimed), len(pos))
	}
	return out, nil
}

// sagas writes a batch's new sagas (a gid that exists fails the insert, and the batch)
// and its version-guarded saga changes.
func (w *writeTx) sagas(ctx context.Context, c *ordercore.Changeset) error {
	rows := make([][]any, len(c.NewSagas))
	for i, s := range c.NewSagas {
		var err error
		if rows[i], err = sagaArgs(s); err != nil {
			return err
		}
	}
	err := w.insert(ctx, insertSagas, len(rows), func(i int, a []any) []any { return append(a, rows[i]...) })
	if err != nil {
		return err
	}
	changes := make([][]any, len(c.SagaChanges))
	for i, ch := range c.SagaChanges {
		args, err := sagaArgs(ch.Saga)
		if err != nil {
			return err
		}
		changes[i] = append(args, ch.FromVersion)
	}
	n, err := w.execChunks(ctx, updateSagas, len(changes), func(i int, a []any) []any { return append(a, changes[i]...) })
	if err != nil || n == int64(len(changes)) {
		return err
	}
	return w.staleSaga(ctx, c.SagaChanges)
}

// staleSaga names a saga change that the guarded update did not apply: one whose saga is
// not at the version written now (the batch is rolled back).
func (w *writeTx) staleSaga(ctx context.Context, changes []ordercore.SagaChange) error {
	gids := make([]string, len(changes))
	for i, ch := range changes {
		gids[i] = ch.Saga.GID
	}
	now, err := w.SagaVersions(ctx, gids)
	if err != nil {
		return err
	}
	for _, ch := range changes {
		if v, ok := now[ch.Saga.GID]; !ok || v != ch.Saga.Version {
			return fmt.Errorf("sqlite: saga %s is no longer at version %d (or its kind or creation changed)", ch.Saga.GID, ch.FromVersion)
		}
	}
	return fmt.Errorf("sqlite: %d saga changes matched fewer rows", len(changes))
}

// Saga reads one saga.
func (db *DB) Saga(ctx context.Context, gid string) (ordercore.Saga, error) {
	ss, err := querySagas(ctx, db.read, "SELECT "+sagaCols+" FROM sagas WHERE gid = ?", gid)
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
	if status != "" {
		where, args = append(where, "status = ?"), append(args, string(status))
	}
	if afterGID != "" {
		var created int64
		err := db.read.QueryRowContext(ctx, "SELECT created_at FROM sagas WHERE gid = ?", afterGID).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ordercore.Errorf(ordercore.EInvalidCursor, "no saga %q to list after", afterGID)
		} else if err != nil {
			return nil, fmt.Errorf("sqlite: read saga cursor: %w", err)
		}
		where, args = append(where, "(created_at, gid) < (?, ?)"), append(args, created, afterGID)
	}
	q := "SELECT " + sagaCols + " FROM sagas"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return querySagas(ctx, db.read, q+" ORDER BY created_at DESC, gid DESC LIMIT ?", append(args, limit)...)
}

// SagaCounts counts sagas per status; a status without sagas is absent from the map.
func (db *DB) SagaCounts(ctx context.Context) (map[ordercore.SagaStatus]int64, error) {
	counts, err := countGroups(ctx, db.read, "sagas", "SELECT status, COUNT(*) FROM sagas GROUP BY status")
	out := make(map[ordercore.SagaStatus]int64, len(counts))
	for status, n := range counts {
		out[ordercore.SagaStatus(status)] = n
	}
	return out, err
}

// dumpSagas adds the sagas to a snapshot, by gid.
func dumpSagas(ctx context.Context, tx *sql.Tx, snap *ordercore.Snapshot) error {
	var err error
	snap.Sagas, err = querySagas(ctx, tx, "SELECT "+sagaCols+" FROM sagas ORDER BY gid")
	return err
}
