package barrier

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Engine names the SQL database the barrier table lives in.
type Engine string

const (
	// SQLite is SQLite 3.24 or later (for ON CONFLICT DO NOTHING), for example through
	// modernc.org/sqlite, driver "sqlite". Placeholders are ?.
	SQLite Engine = "sqlite"
	// Postgres is PostgreSQL, for example through github.com/jackc/pgx/v5/stdlib, driver
	// "pgx". Placeholders are $1, $2, ...
	Postgres Engine = "postgres"
)

// DefaultTable is the barrier table's name when Dialect.Table is empty.
const DefaultTable = "ordercore_barrier"

// identBytesMax is PostgreSQL's longest identifier (NAMEDATALEN-1).
const identBytesMax = 63

// Dialect says where the barrier table is and how to speak to it. The table goes in the
// participant's own database, next to the data its business functions change, because the
// barrier works only by committing in the same transaction.
type Dialect struct {
	Engine Engine
	// Table is the barrier table's name, optionally qualified by a schema (PostgreSQL) or
	// an attached database (SQLite): lower-case letters, digits and underscores, not
	// starting with a digit, each part at most 63 bytes. Empty means DefaultTable.
	Table string
}

// queries are the barrier's two statements in one dialect.
type queries struct {
	insert string // args: trans_type, gid, branch_id, op, reason
	reason string // args: gid, branch_id, op
}

func (d Dialect) table() (string, error) {
	if d.Table == "" {
		return DefaultTable, nil
	}
	parts := strings.Split(d.Table, ".")
	if len(parts) > 2 {
		return "", fmt.Errorf("barrier: table name %q has more than one dot", d.Table)
	}
	for _, p := range parts {
		if !isIdent(p) {
			return "", fmt.Errorf("barrier: table name %q: %q is not 1 to %d of [a-z0-9_], starting with a letter or _", d.Table, p, identBytesMax)
		}
	}
	return d.Table, nil
}

// isIdent reports whether s needs no quoting in either engine. The table name is pasted
// into SQL, so only such names are accepted.
func isIdent(s string) bool {
	if s == "" || len(s) > identBytesMax || ('0' <= s[0] && s[0] <= '9') {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (d Dialect) queries() (queries, error) {
	t, err := d.table()
	if err != nil {
		return queries{}, err
	}
	// ON CONFLICT DO NOTHING without a conflict target: both engines accept it, and the
	// primary key is the table's only unique constraint.
	var q queries
	switch d.Engine {
	case SQLite:
		q.insert = "INSERT INTO " + t + " (trans_type, gid, branch_id, op, reason) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
		q.reason = "SELECT reason FROM " + t + " WHERE gid = ? AND branch_id = ? AND op = ?"
	case Postgres:
		q.insert = "INSERT INTO " + t + " (trans_type, gid, branch_id, op, reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
		q.reason = "SELECT reason FROM " + t + " WHERE gid = $1 AND branch_id = $2 AND op = $3"
	default:
		return queries{}, fmt.Errorf("barrier: unknown engine %q, want %q or %q", d.Engine, SQLite, Postgres)
	}
	return q, nil
}

// The CHECK constraints repeat Branch.Validate's rules in the database: if the two ever
// disagree, the insert fails loudly instead of storing a row no request could match.
const (
	checkOp        = "IN ('try', 'confirm', 'cancel', 'action', 'compensate')"
	checkTransType = "IN ('tcc', 'saga')"
)

func (d Dialect) createTable() (string, error) {
	t, err := d.table()
	if err != nil {
		return "", err
	}
	switch d.Engine {
	case SQLite:
		return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	trans_type TEXT NOT NULL CHECK (trans_type %s),
	gid        TEXT NOT NULL CHECK (length(gid) BETWEEN 1 AND %d),
	branch_id  TEXT NOT NULL CHECK (length(branch_id) BETWEEN 1 AND %d),
	op         TEXT NOT NULL CHECK (op %s),
	reason     TEXT NOT NULL CHECK (reason %s),
	created_at TEXT NOT NULL DEFAULT (strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now')),
	PRIMARY KEY (gid, branch_id, op)
) WITHOUT ROWID`, t, checkTransType, GIDBytesMax, BranchIDBytesMax, checkOp, checkOp), nil
	case Postgres:
		return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	trans_type text NOT NULL CHECK (trans_type %s),
	gid        varchar(%d) NOT NULL CHECK (gid <> ''),
	branch_id  varchar(%d) NOT NULL CHECK (branch_id <> ''),
	op         text NOT NULL CHECK (op %s),
	reason     text NOT NULL CHECK (reason %s),
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (gid, branch_id, op)
)`, t, checkTransType, GIDBytesMax, BranchIDBytesMax, checkOp, checkOp), nil
	}
	return "", fmt.Errorf("barrier: unknown engine %q, want %q or %q", d.Engine, SQLite, Postgres)
}

// Migrate creates the barrier table if it does not exist. It is safe to run at every start
// (not from several processes at the same instant on PostgreSQL, where concurrent CREATE
// TABLE IF NOT EXISTS can fail with a duplicate-type error). A schema in d.Table must
// already exist.
//
// Rows are kept forever: deleting the rows of a transaction that might still receive a
// request would reopen the hanging and duplicate cases. Pruning rows of transactions
// finished long ago is left to the owner of the table.
func Migrate(ctx context.Context, db *sql.DB, d Dialect) error {
	stmt, err := d.createTable()
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("barrier: create table: %w", err)
	}
	return nil
}
