package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"ordercore/sqlite"
	"ordercore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return db
	})
}
