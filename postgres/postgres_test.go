package postgres_test

import (
	"context"
	"testing"

	"ordercore/internal/pgtest"
	"ordercore/postgres"
	"ordercore/storetest"
)

// newDB opens a store in a schema of its own, dropped when the test ends, so tests run in
// parallel against one database.
func newDB(t *testing.T) *postgres.DB {
	t.Helper()
	dsn, schema := pgtest.Schema(t, "ordercore_test_")
	db, err := postgres.Open(context.Background(), dsn, postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // first: cleanups run last-in first-out
	return db
}

func TestConformance(t *testing.T) {
	pgtest.Require(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return newDB(t)
	})
}

// TestOpenTwice: a second instance opening a migrated schema finds nothing to do, and both
// see one database.
func TestOpenTwice(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	other, err := postgres.Open(context.Background(), pgtest.DSN(), postgres.Options{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := postgres.Open(context.Background(), pgtest.DSN(), postgres.Options{Schema: "Bad-Name"}); err == nil {
		t.Error("a schema name that needs quoting was accepted")
	}
}
