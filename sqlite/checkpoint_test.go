package sqlite_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/sqlite"
)

// TestCheckpointerCopiesTheWAL: while the store is open and idle, what was committed
// reaches the database file itself (the checkpointer copied the WAL; the committer's own
// fallback checkpoint is far off), and once a checkpoint has copied everything the next
// commits start the WAL over instead of growing it.
func TestCheckpointerCopiesTheWAL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "ordercore.db")
	db, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(db, ordercore.SystemClock{}, engine.Config{})
	t.Cleanup(func() {
		eng.Close()
		if err := db.Close(); err != nil {
			t.Error(err)
		}
		if err := db.Close(); err != nil { // a second Close, as some callers do, is harmless
			t.Errorf("second Close: %v", err)
		}
	})
	if _, err := eng.Submit(ctx, engine.CreateSKU{ID: "sku", Name: "sku", Price: ordercore.Money{Amount: 100, Currency: "USD"}, Stock: 1_000_000}, nil); err != nil {
		t.Fatal(err)
	}
	// place commits n orders one at a time, so that each round writes as much WAL.
	place := func(n int) {
		t.Helper()
		for range n {
			if _, err := eng.Submit(ctx, engine.PlaceOrder{UserID: "u", Lines: []engine.LineRequest{{SKU: "sku", Quantity: 1}}}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// inFile counts the orders in a copy of the database file alone, without its WAL.
	inFile := func() (int, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		cp := filepath.Join(dir, "copy.db")
		os.Remove(cp + "-wal")
		if err := os.WriteFile(cp, b, 0o644); err != nil {
			return 0, err
		}
		c, err := sql.Open("sqlite", "file:"+cp)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		var n int
		err = c.QueryRow("SELECT count(*) FROM orders").Scan(&n)
		return n, err
	}
	waitInFile := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, err := inFile()
			if err == nil && n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the database file holds %d orders (%v) 10 s after %d were committed; the WAL was not copied into it", n, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	walSize := func() int64 {
		t.Helper()
		st, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}

	place(100)
	waitInFile(100)
	first := walSize()
	place(100)
	waitInFile(200)
	// Grown on, it would be about twice as long.
	if second := walSize(); second > first*3/2 {
		t.Errorf("the WAL grew from %d to %d bytes for as many orders again: it was not started over after a full checkpoint", first, second)
	}
}
