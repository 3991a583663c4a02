package e2e

import (
	"ordercore/internal/pgtest"
	"testing"
)

// pgSchemaURL returns the test PostgreSQL's URL with a fresh schema of its own (named
// prefix and random hex), dropped when the test ends.
func pgSchemaURL(t *testing.T, prefix string) string { return pgtest.URL(t, prefix) }
