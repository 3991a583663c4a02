package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"ordercore"
)

// TestWriteBeginsWithItsFirstStatement: a write transaction's BEGIN goes out with its
// first statement. When that statement fails, the write fails, keeps nothing, and leaves
// its connection fit for the next write; a write that sends nothing succeeds; and writes
// that load first and then apply commit what they applied, each once.
func TestWriteBeginsWithItsFirstStatement(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := db.Write(ctx, func(ordercore.WriteTx) error { return nil }); err != nil {
		t.Fatalf("a write that sends nothing: %v", err)
	}
	// More rounds than the pool has connections, so that every one is reused after a
	// failed first statement.
	for i := range 40 {
		err := db.Write(ctx, func(tx ordercore.WriteTx) error {
			_, err := tx.SKUs(ctx, []string{"bad\x00id"}) // the server refuses a NUL in text
			return err
		})
		if err == nil {
			t.Fatal("a first statement the server refuses did not fail its write")
		}
		id := fmt.Sprint("sku-", i)
		err = db.Write(ctx, func(tx ordercore.WriteTx) error {
			got, err := tx.SKUs(ctx, []string{id})
			if err != nil {
				return err
			}
			if len(got) != 0 {
				return fmt.Errorf("SKU %s exists before it was created", id)
			}
			return tx.Apply(ctx, &ordercore.Changeset{NewSKUs: []ordercore.SKU{{ID: id, Name: id,
				Price: ordercore.Money{Amount: 1, Currency: "USD"}, Total: 1, Version: 1, CreatedAt: at, UpdatedAt: at}}})
		})
		if err != nil {
			t.Fatalf("round %d: a write after a failed one: %v", i, err)
		}
		if _, err := db.SKU(ctx, id); err != nil {
			t.Fatalf("round %d: the SKU written is not there: %v", i, err)
		}
	}
	snap, err := db.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.SKUs) != 40 {
		t.Errorf("%d SKUs stored, want the 40 written", len(snap.SKUs))
	}
}
