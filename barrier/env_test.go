package barrier_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"ordercore/barrier"
	"ordercore/internal/pgtest"
)

// env is one real database with the barrier table and the test's business tables.
type env struct {
	db *sql.DB
	d  barrier.Dialect
}

// stockInitial is the one SKU's starting stock. No test reserves more than it holds, so
// available never reaches zero and a refused reservation always means a bug.
const stockInitial = 1_000_000

// business is the participant's own schema: a stock row the ops move units between, and a
// ledger with one row per business-function run, which is what the tests count.
var business = []string{
	`CREATE TABLE stock (sku TEXT PRIMARY KEY, available BIGINT NOT NULL, reserved BIGINT NOT NULL, sold BIGINT NOT NULL)`,
	`CREATE TABLE ledger (gid TEXT NOT NULL, branch_id TEXT NOT NULL, op TEXT NOT NULL)`,
	`INSERT INTO stock VALUES ('sku-1', ` + strconv.Itoa(stockInitial) + `, 0, 0)`,
}

// engines runs test once per engine, in parallel subtests named after the engine.
func engines(t *testing.T, test func(t *testing.T, e env)) {
	t.Helper()
	for _, name := range []barrier.Engine{barrier.SQLite, barrier.Postgres} {
		t.Run(string(name), func(t *testing.T) {
			t.Parallel()
			test(t, newEnv(t, name))
		})
	}
}

func newEnv(t *testing.T, engine barrier.Engine) env {
	t.Helper()
	var db *sql.DB
	switch engine {
	case barrier.SQLite:
		db = openSQLite(t, t.TempDir())
	case barrier.Postgres:
		db = openPostgres(t)
	}
	e := env{db: db, d: barrier.Dialect{Engine: engine}}
	e.migrate(t)
	return e
}

// migrate creates the barrier table and the business tables.
func (e env) migrate(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	if err := barrier.Migrate(ctx, e.db, e.d); err != nil {
		t.Fatal(err)
	}
	for _, s := range business {
		if _, err := e.db.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// connsMax bounds each test database's pool: with tests in parallel, PostgreSQL's
// max_connections (100 by default) is shared by every test of every package.
const connsMax = 6

// openSQLite opens a WAL database in dir. _txlock=immediate takes the write lock at BEGIN,
// as CallDB's documentation asks; busy_timeout makes waiting writers queue instead of
// failing. synchronous=NORMAL: no test here is about power loss.
func openSQLite(t testing.TB, dir string) *sql.DB {
	t.Helper()
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "busy_timeout(20000)")
	q.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "barrier.db")+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(connsMax)
	t.Cleanup(func() { db.Close() })
	return db
}

// openPostgres opens a pool whose search_path is a schema of the test's own, dropped when
// the test ends, so tests run in parallel against one database.
func openPostgres(t *testing.T) *sql.DB {
	t.Helper()
	pgtest.Require(t)
	var b [8]byte
	rand.Read(b[:])
	schema := "barrier_test_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", pgtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	db, err := sql.Open("pgx", withSearchPath(pgtest.DSN(), schema))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(connsMax)
	t.Cleanup(func() { db.Close() }) // before the drop: cleanups run last-in first-out
	return db
}

// withSearchPath adds search_path to a URL or keyword/value DSN; pgx sends unknown
// parameters to the server as run-time settings.
func withSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " search_path=" + schema
}

// rebind turns ? placeholders into PostgreSQL's $n.
func (e env) rebind(query string) string {
	if e.d.Engine != barrier.Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// errBusiness is the business function's own failure in tests that make it fail.
var errBusiness = errors.New("business function failed")

// effect is the participant's business function for br: it moves one unit of stock as
// the op means and writes a ledger row. fail makes it return errBusiness after doing its
// writes, so the test sees whether they roll back. ran records that it was called.
func (e env) effect(br barrier.Branch, fail bool, ran *bool) func(*sql.Tx) error {
	return func(tx *sql.Tx) error {
		*ran = true
		move := map[string]string{
			barrier.OpTry:        "available = available - 1, reserved = reserved + 1",
			barrier.OpCancel:     "available = available + 1, reserved = reserved - 1",
			barrier.OpConfirm:    "reserved = reserved - 1, sold = sold + 1",
			barrier.OpAction:     "available = available - 1, sold = sold + 1",
			barrier.OpCompensate: "available = available + 1, sold = sold - 1",
		}[br.Op]
		if _, err := tx.Exec("UPDATE stock SET " + move + " WHERE sku = 'sku-1'"); err != nil {
			return err
		}
		if _, err := tx.Exec(e.rebind("INSERT INTO ledger (gid, branch_id, op) VALUES (?, ?, ?)"), br.GID, br.BranchID, br.Op); err != nil {
			return err
		}
		if fail {
			return errBusiness
		}
		return nil
	}
}

// ledger counts the committed business-function runs of gid by branch and op.
func (e env) ledger(t testing.TB, gid string) map[string]map[string]int {
	t.Helper()
	rows, err := e.db.Query(e.rebind("SELECT branch_id, op, count(*) FROM ledger WHERE gid = ? GROUP BY branch_id, op"), gid)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]map[string]int{}
	for rows.Next() {
		var branch, op string
		var n int
		if err := rows.Scan(&branch, &op, &n); err != nil {
			t.Fatal(err)
		}
		if got[branch] == nil {
			got[branch] = map[string]int{}
		}
		got[branch][op] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// barrierRow is one row of the barrier table, as a test reads it.
type barrierRow struct {
	BranchID, Op, Reason, TransType string
}

func (e env) barrierRows(t testing.TB, gid string) []barrierRow {
	t.Helper()
	rows, err := e.db.Query(e.rebind("SELECT branch_id, op, reason, trans_type FROM "+barrier.DefaultTable+" WHERE gid = ? ORDER BY branch_id, op"), gid)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []barrierRow
	for rows.Next() {
		var r barrierRow
		if err := rows.Scan(&r.BranchID, &r.Op, &r.Reason, &r.TransType); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// stock reads the SKU's counters.
func (e env) stock(t testing.TB) (available, reserved, sold int) {
	t.Helper()
	if err := e.db.QueryRow("SELECT available, reserved, sold FROM stock WHERE sku = 'sku-1'").Scan(&available, &reserved, &sold); err != nil {
		t.Fatal(err)
	}
	return available, reserved, sold
}
