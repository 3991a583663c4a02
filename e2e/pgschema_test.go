package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgSchemaURL returns the test PostgreSQL's URL with a fresh schema of its own (named
// prefix and random hex), dropped when the test ends.
func pgSchemaURL(t *testing.T, prefix string) string {
	t.Helper()
	dsn := testPG()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	pg, err := pgx.Connect(ctx, dsn)
	if err != nil {
		unavailable(t, "PostgreSQL at %s (ORDERCORE_TEST_PG): %v", dsn, err)
	}
	var b [5]byte
	rand.Read(b[:])
	schema := prefix + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pg.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		pg.Close(ctx)
	})
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "schema=" + schema
}
