package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"ordercore/postgres"
	"ordercore/storetest"
)

// testDSN is the database the tests create their schemas in.
func testDSN() string {
	if dsn := os.Getenv("ORDERCORE_TEST_PG"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

var reachable = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
})

// requirePG skips the test when PostgreSQL is unreachable, or fails it under CI=true,
// where the services are meant to be up.
func requirePG(t *testing.T) {
	t.Helper()
	if err := reachable(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at ORDERCORE_TEST_PG (%s) is unreachable under CI=true: %v", testDSN(), err)
		}
		t.Skipf("PostgreSQL at ORDERCORE_TEST_PG (%s) is unreachable, skipping (set CI=true to fail instead): %v", testDSN(), err)
	}
}

// newDB opens a store in a schema of its own, dropped when the test ends, so tests run in
// parallel against one database.
func newDB(t *testing.T) *postgres.DB {
	t.Helper()
	requirePG(t)
	var b [8]byte
	rand.Read(b[:])
	schema := "ordercore_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	db, err := postgres.Open(ctx, testDSN(), postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, testDSN())
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	t.Cleanup(func() { db.Close() }) // first: cleanups run last-in first-out
	return db
}

func TestConformance(t *testing.T) {
	requirePG(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return newDB(t)
	})
}

// TestOpenTwice: a second instance opening a migrated schema finds nothing to do, and both
// see one database.
func TestOpenTwice(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	other, err := postgres.Open(context.Background(), testDSN(), postgres.Options{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := postgres.Open(context.Background(), testDSN(), postgres.Options{Schema: "Bad-Name"}); err == nil {
		t.Error("a schema name that needs quoting was accepted")
	}
}
