package barrier

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Transaction types a Branch may belong to, as DTM names them in its trans_type parameter.
const (
	TransTCC  = "tcc"
	TransSaga = "saga"
)

// Branch operations. A TCC branch has try, confirm and cancel; a saga branch has action and
// compensate. Cancel undoes try, compensate undoes action.
const (
	OpTry        = "try"
	OpConfirm    = "confirm"
	OpCancel     = "cancel"
	OpAction     = "action"
	OpCompensate = "compensate"
)

// Bounds of a branch's identifiers. They match DTM's varchar(128) columns, and the barrier
// table checks them again (Migrate), so the code check and the constraint guard one rule.
const (
	GIDBytesMax      = 128
	BranchIDBytesMax = 128
)

var (
	// ErrFailure means "failed for good": retrying the same request cannot succeed, so the
	// coordinator should stop retrying and roll the global transaction back. A participant
	// wraps its business refusals in it (fmt.Errorf("%w: out of stock", barrier.ErrFailure)).
	// Its text is DTM's result word, so it shows in any response body that carries it.
	ErrFailure = errors.New("FAILURE")

	// ErrHanging is returned to a try (or saga action) that arrives after the cancel (or
	// compensate) of its branch already ran. Its business function is not run, so it can
	// leave no reservation behind that nothing would ever release. It is a failure for good
	// (errors.Is(err, ErrFailure) holds): the coordinator sees the branch failed. DTM
	// instead answers success here; see the package documentation.
	ErrHanging = fmt.Errorf("%w: barrier: hanging request: the branch was already cancelled or compensated", ErrFailure)

	// ErrInvalid is returned for a Branch that can never be served (missing or unknown
	// fields, an op that does not belong to its transaction type). It is a failure for
	// good: the same request retried stays invalid.
	ErrInvalid = fmt.Errorf("%w: barrier: invalid branch", ErrFailure)
)

var (
	tccOps  = []string{OpTry, OpConfirm, OpCancel}
	sagaOps = []string{OpAction, OpCompensate}
)

// Branch identifies one operation on one branch of a global transaction: the unit the
// barrier makes idempotent and orders against its compensation.
type Branch struct {
	TransType string // TransTCC or TransSaga
	GID       string // the global transaction's id
	BranchID  string // the branch within it
	Op        string // one of the Op constants allowed for TransType
}

// FromQuery reads the query parameters DTM adds to every call of a participant: gid,
// trans_type, branch_id and op. The result is validated.
func FromQuery(q url.Values) (Branch, error) {
	b := Branch{
		TransType: q.Get("trans_type"),
		GID:       q.Get("gid"),
		BranchID:  q.Get("branch_id"),
		Op:        q.Get("op"),
	}
	if err := b.Validate(); err != nil {
		return Branch{}, err
	}
	return b, nil
}

// Validate reports, wrapped in ErrInvalid, what makes b unusable.
func (b Branch) Validate() error {
	var ops []string
	switch b.TransType {
	case TransTCC:
		ops = tccOps
	case TransSaga:
		ops = sagaOps
	default:
		return fmt.Errorf("%w: trans_type %q is neither %q nor %q", ErrInvalid, clip(b.TransType), TransTCC, TransSaga)
	}
	if !slices.Contains(ops, b.Op) {
		return fmt.Errorf("%w: op %q is not one of %q for trans_type %q", ErrInvalid, clip(b.Op), ops, b.TransType)
	}
	if err := checkID("gid", b.GID, GIDBytesMax); err != nil {
		return err
	}
	return checkID("branch_id", b.BranchID, BranchIDBytesMax)
}

// checkID rejects empty, oversized, non-UTF-8 and control-character ids: PostgreSQL
// refuses NUL and invalid UTF-8 in text (an error a retry would repeat forever), and
// control characters in an id forge log lines.
func checkID(name, v string, bytesMax int) error {
	switch {
	case v == "":
		return fmt.Errorf("%w: %s is missing", ErrInvalid, name)
	case len(v) > bytesMax:
		return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrInvalid, name, len(v), bytesMax)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, name)
	case strings.ContainsFunc(v, unicode.IsControl):
		return fmt.Errorf("%w: %s %q contains a control character", ErrInvalid, name, v)
	}
	return nil
}

// clip shortens a rejected value before it goes into an error message.
func clip(s string) string {
	const bytesMax = 32
	if len(s) > bytesMax {
		return s[:bytesMax] + "..."
	}
	return s
}

func (b Branch) String() string {
	return fmt.Sprintf("%s %s/%s %s", b.TransType, b.GID, b.BranchID, b.Op)
}

// origin returns the op that b's op undoes, or "" if it undoes nothing.
func origin(op string) string {
	switch op {
	case OpCancel:
		return OpTry
	case OpCompensate:
		return OpAction
	}
	return ""
}

// Call runs fn inside tx at most once per branch operation, and never runs a try (or
// action) after its cancel (or compensate). It writes barrier rows in tx and leaves the
// commit to the caller, so the rows and fn's effects commit or roll back together:
//
//   - first run of an op: its row is inserted and fn's result is returned;
//   - a duplicate (the op's row is already committed): fn is skipped, nil;
//   - cancel or compensate before its try or action (null compensation): the origin's row
//     is inserted too, with reason cancel or compensate; fn is skipped, nil;
//   - try or action after its cancel or compensate: fn is skipped, ErrHanging;
//   - confirm: only the duplicate check.
//
// The caller must commit tx if and only if Call returns nil, null compensation included:
// its rows are what later rejects the hanging try. After an error it must roll back, which
// also removes the barrier row, so a retry runs fn again. CallDB does both.
func (b Branch) Call(ctx context.Context, tx *sql.Tx, d Dialect, fn func(*sql.Tx) error) error {
	if err := b.Validate(); err != nil {
		return err
	}
	q, err := d.queries()
	if err != nil {
		return err
	}
	// Insert first, decide after ("change instead of check", DTM): two concurrent requests
	// both insert, the unique key lets exactly one succeed, and the other waits for its
	// transaction to end. A read-then-write would let both see "nothing yet".
	orig := origin(b.Op)
	var origInserted bool
	if orig != "" {
		if origInserted, err = b.insert(ctx, tx, q, orig); err != nil {
			return err
		}
	}
	// The op's own row is written even for a null compensation: a duplicate of that
	// cancel must find it, or it would run fn and release a reservation never made.
	inserted, err := b.insert(ctx, tx, q, b.Op)
	if err != nil {
		return err
	}
	switch {
	case origInserted:
		return nil // null compensation: the origin never ran, and from now on never will
	case !inserted && (b.Op == OpTry || b.Op == OpAction):
		return b.duplicateOrHanging(ctx, tx, q)
	case !inserted:
		return nil // duplicate
	}
	return fn(tx)
}

// insert writes the barrier row of op for b's branch unless one exists, and reports
// whether it did.
func (b Branch) insert(ctx context.Context, tx *sql.Tx, q queries, op string) (bool, error) {
	res, err := tx.ExecContext(ctx, q.insert, b.TransType, b.GID, b.BranchID, op, b.Op)
	if err != nil {
		return false, fmt.Errorf("barrier: insert %s row for %s: %w", op, b, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("barrier: insert %s row for %s: rows affected: %w", op, b, err)
	}
	if n != 0 && n != 1 {
		return false, fmt.Errorf("barrier: insert %s row for %s: %d rows affected, want 0 or 1", op, b, n)
	}
	return n == 1, nil
}

// duplicateOrHanging tells a repeated try (or action), whose row its own earlier run
// wrote, from a late one, whose row a cancel (or compensate) wrote first.
func (b Branch) duplicateOrHanging(ctx context.Context, tx *sql.Tx, q queries) error {
	var reason string
	if err := tx.QueryRowContext(ctx, q.reason, b.GID, b.BranchID, b.Op).Scan(&reason); err != nil {
		// The insert just found the row, committed, so it is visible to this statement in
		// SQLite and in PostgreSQL at READ COMMITTED; under REPEATABLE READ the insert
		// itself fails with a serialization error instead.
		return fmt.Errorf("barrier: read %s row for %s: %w", b.Op, b, err)
	}
	if reason == b.Op {
		return nil // duplicate
	}
	return fmt.Errorf("%w: %s (its row was written by %s)", ErrHanging, b, reason)
}

// CallDB runs b.Call in a transaction of its own on db: it commits when Call returns nil
// and rolls back otherwise, also when fn panics (the panic goes on).
//
// On SQLite, open db with _txlock=immediate so the transaction takes the write lock at
// BEGIN: a deferred transaction that upgrades can fail with SQLITE_BUSY, which is safe
// (the error is retryable) but wasteful.
func CallDB(ctx context.Context, db *sql.DB, d Dialect, b Branch, fn func(*sql.Tx) error) error {
	if err := b.Validate(); err != nil {
		return err // before BEGIN, which on SQLite takes the write lock
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("barrier: begin for %s: %w", b, err)
	}
	// After a commit this returns sql.ErrTxDone and does nothing; on an error or a panic
	// it discards fn's effects and the barrier rows together.
	defer tx.Rollback()
	if err := b.Call(ctx, tx, d, fn); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		// The outcome is unknown; retrying is safe, as the barrier decides again.
		return fmt.Errorf("barrier: commit %s: %w", b, err)
	}
	return nil
}
