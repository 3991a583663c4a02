package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/pgtest"
	"ordercore/postgres"
)

// TestInstancesShareOneSKU: two instances (two stores on one schema) reserve the last
// units of one SKU at once, each batch reading the SKU under its row lock and reserving
// only what it saw available. Exactly the stock is reserved, no batch fails on a guard,
// and a reader that pages the feed while they write gets every event once, in order.
func TestInstancesShareOneSKU(t *testing.T) {
	t.Parallel()
	const stock, writers = 40, 8
	db := newDB(t)
	other, err := postgres.Open(context.Background(), pgtest.DSN(), postgres.Options{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	sku := ordercore.SKU{ID: "hot", Name: "hot", Price: ordercore.Money{Amount: 1, Currency: "USD"}, Total: stock, Version: 1, CreatedAt: at, UpdatedAt: at}
	if err := db.Write(context.Background(), func(tx ordercore.WriteTx) error {
		return tx.Apply(context.Background(), &ordercore.Changeset{NewSKUs: []ordercore.SKU{sku}})
	}); err != nil {
		t.Fatal(err)
	}

	reserveOne := func(s *postgres.DB, n int) (bool, error) {
		var reserved bool
		err := s.Write(context.Background(), func(tx ordercore.WriteTx) error {
			skus, err := tx.SKUs(context.Background(), []string{"hot"})
			if err != nil {
				return err
			}
			if skus["hot"].Available() == 0 {
				return nil
			}
			reserved = true
			return tx.Apply(context.Background(), &ordercore.Changeset{
				StockChanges: []ordercore.StockChange{{SKU: "hot", DReserved: 1, At: at}},
				Events:       []ordercore.Event{ev(n)},
			})
		})
		return reserved, err
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	var mu sync.Mutex
	reservations := 0
	for w := range writers {
		wg.Go(func() {
			s := []*postgres.DB{db, other}[w%2]
			for i := 0; ; i++ {
				ok, err := reserveOne(s, w*1000+i)
				if err != nil {
					errs <- err
					return
				}
				if !ok {
					return
				}
				mu.Lock()
				reservations++
				mu.Unlock()
			}
		})
	}
	// Page the feed while the writers run, as the relay does.
	seen := map[string]bool{}
	var after int64
	read := func() {
		evs, err := db.Events(context.Background(), after, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Seq <= after || seen[e.ID] {
				t.Fatalf("feed repeated or went back: %+v after %d", e, after)
			}
			seen[e.ID], after = true, e.Seq
		}
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()
	for done := false; !done; {
		select {
		case <-writing:
			done = true
		default:
			read()
		}
	}
	for range stock {
		read()
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := db.SKU(context.Background(), "hot")
	if err != nil {
		t.Fatal(err)
	}
	if got.Reserved != stock || got.Available() != 0 || reservations != stock {
		t.Errorf("after the rush: %+v with %d reservations, want all %d reserved once", got, reservations, stock)
	}
	if len(seen) != stock {
		t.Errorf("the feed, paged while writing, returned %d events, want %d", len(seen), stock)
	}
}

// TestInstancesShareTheEndpointCount: two instances' transactions that each count the
// webhook endpoints and create one while fewer than a bound exist never overshoot it:
// WebhookEndpointCount makes one wait for the other's commit.
func TestInstancesShareTheEndpointCount(t *testing.T) {
	t.Parallel()
	const bound, writers, tries = 30, 8, 6
	db := newDB(t)
	other, err := postgres.Open(context.Background(), pgtest.DSN(), postgres.Options{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var n atomic.Int64
	create := func(s *postgres.DB) error {
		return s.Write(context.Background(), func(tx ordercore.WriteTx) error {
			count, err := tx.WebhookEndpointCount(context.Background())
			if err != nil || count >= bound {
				return err
			}
			time.Sleep(time.Millisecond) // widen the window between the count and the insert
			id := fmt.Sprintf("01900000-0000-7000-8000-%012d", n.Add(1))
			return tx.Apply(context.Background(), &ordercore.Changeset{NewWebhookEndpoints: []ordercore.WebhookEndpoint{{ID: id,
				URL: "https://hooks.example/" + id, EventTypes: []string{"*"}, Secret: strings.Repeat("a", 64), Enabled: true,
				Version: 1, CreatedAt: at, UpdatedAt: at}}})
		})
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			s := db
			if w%2 == 1 {
				s = other
			}
			for range tries {
				if err := create(s); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	es, err := db.ListWebhookEndpoints(context.Background(), "", 1000)
	if err != nil || len(es) != bound {
		t.Errorf("%d endpoints stored (%v), want exactly %d", len(es), err, bound)
	}
}
