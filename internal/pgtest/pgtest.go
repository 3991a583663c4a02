// Package pgtest gives tests a PostgreSQL schema of their own on the test database
// (ORDERCORE_TEST_PG), so that tests run in parallel against one server, and drops it
// when the test ends. When the server is unreachable a test is skipped, or fails under
// CI=true, where the services are meant to be up. Only tests import it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DSN is the test database: ORDERCORE_TEST_PG, or the local server's test database.
func DSN() string {
	if dsn := os.Getenv("ORDERCORE_TEST_PG"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

var reachable = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, DSN())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
})

// Require skips t when the test database is unreachable, or fails it under CI=true.
func Require(t testing.TB) {
	t.Helper()
	if err := reachable(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at ORDERCORE_TEST_PG (%s) is unreachable under CI=true: %v", DSN(), err)
		}
		t.Skipf("PostgreSQL at ORDERCORE_TEST_PG (%s) is unreachable, skipping (set CI=true to fail instead): %v", DSN(), err)
	}
}

// Schema names a fresh schema (prefix and random hex) of the test database, which the
// first store that opens it creates, and drops it when the test ends.
func Schema(t testing.TB, prefix string) (dsn, schema string) {
	t.Helper()
	Require(t)
	var b [8]byte
	rand.Read(b[:])
	dsn, schema = DSN(), prefix+hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return dsn, schema
}

// URL is Schema as one URL, the schema in its schema parameter (as `serve --db` takes it).
func URL(t testing.TB, prefix string) string {
	t.Helper()
	dsn, schema := Schema(t, prefix)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "schema=" + schema
}
