package engine_test

import (
	"context"
	"errors"
	"math/bits"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/sqlite"
)

type bundle struct {
	db  *sqlite.DB
	eng *engine.Engine
}

func setup(t testing.TB, cfg engine.Config) bundle {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(db, ordercore.SystemClock{}, cfg)
	t.Cleanup(func() { eng.Close(); db.Close() })
	return bundle{db: db, eng: eng}
}

func mustSKU(t testing.TB, e *engine.Engine, id string, stock int64) {
	t.Helper()
	_, err := e.Submit(context.Background(), engine.CreateSKU{ID: id, Name: id, Price: ordercore.Money{Amount: 1999, Currency: "USD"}, Stock: stock}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

// TestHotSKUNoOversell: 5,000 concurrent orders for one SKU with 1,000 units; exactly
// 1,000 succeed and every other gets insufficient_stock.
func TestHotSKUNoOversell(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	mustSKU(t, b.eng, "hot", 1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := 0; i < 5000; i++ {
		wg.Go(func() {
			_, err := b.eng.Submit(context.Background(), engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: "hot", Quantity: 1}}}, nil)
			mu.Lock()
			codes[ordercore.ErrorCode(err)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[""] != 1000 || codes[ordercore.EInsufficientStock] != 4000 {
		t.Fatalf("outcomes = %v, want 1000 ok and 4000 insufficient_stock", codes)
	}
	s, err := b.db.SKU(context.Background(), "hot")
	if err != nil {
		t.Fatal(err)
	}
	if s.Reserved != 1000 || s.Available() != 0 {
		t.Fatalf("sku = %+v, want 1000 reserved and 0 available", s)
	}
	st := b.eng.Stats()
	t.Logf("batches=%d commands=%d", st.Batches, st.Commands)
}

// TestPaymentRules: a payment must match the order's amount; a repeated notice for a
// paid order is acknowledged without change, and one of other money refused, not taken
// for a repeat; money for a cancelled order is refused (the payments layer revives or
// refunds it).
func TestPaymentRules(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	mustSKU(t, b.eng, "a", 10)
	o := place(t, b.eng, "a", 2, 0)
	payVia := func(channel, id string, amount int64) (ordercore.Order, error) {
		res, err := b.eng.Submit(context.Background(), engine.ApplyPayment{OrderID: id, Payment: ordercore.PaymentApplied{
			Channel: channel, Reference: "r", Amount: ordercore.Money{Amount: amount, Currency: "USD"}}}, nil)
		if err != nil {
			return ordercore.Order{}, err
		}
		return res.Value.(ordercore.Order), nil
	}
	pay := func(id string, amount int64) (ordercore.Order, error) {
		return payVia(engine.ManualChannel, id, amount)
	}
	if _, err := pay(o.ID, o.Amount.Amount-1); ordercore.ErrorCode(err) != ordercore.EAmountMismatch {
		t.Fatalf("short payment: %v, want amount_mismatch", err)
	}
	paid, err := pay(o.ID, o.Amount.Amount)
	if err != nil || paid.Status != ordercore.OrderPaid || paid.Version != 2 {
		t.Fatalf("payment: %+v %v", paid, err)
	}
	again, err := payVia("test", o.ID, o.Amount.Amount)
	if err != nil || again.Version != 2 {
		t.Fatalf("repeated notice: %+v %v, want the paid order unchanged", again, err)
	}
	// An operator's second record of money for a paid order is other money, refused
	// so that it is returned rather than dropped as a duplicate.
	if _, err := pay(o.ID, o.Amount.Amount); ordercore.ErrorCode(err) != ordercore.EIllegalTransition {
		t.Fatalf("second manual payment of a paid order: %v, want illegal_transition", err)
	}
	if _, err := pay(o.ID, 1); ordercore.ErrorCode(err) != ordercore.EAmountMismatch {
		t.Fatalf("other money for a paid order: %v, want amount_mismatch", err)
	}
	c := place(t, b.eng, "a", 1, 0)
	if _, err := b.eng.Submit(context.Background(), engine.Transition{OrderID: c.ID, Command: "cancel"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pay(c.ID, c.Amount.Amount); ordercore.ErrorCode(err) != ordercore.EIllegalTransition {
		t.Fatalf("payment of a cancelled order: %v, want illegal_transition", err)
	}
	s, _ := b.db.SKU(context.Background(), "a")
	if s.Sold != 2 || s.Reserved != 0 || s.Available() != 8 {
		t.Fatalf("stock: %+v", s)
	}
}

// TestDemandSumsLinesOfOneSKU: an order naming a SKU on several lines needs their sum.
func TestDemandSumsLinesOfOneSKU(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	mustSKU(t, b.eng, "a", 3)
	_, err := b.eng.Submit(context.Background(), engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: "a", Quantity: 2}, {SKU: "a", Quantity: 2}}}, nil)
	if ordercore.ErrorCode(err) != ordercore.EInsufficientStock {
		t.Fatalf("2+2 units of a 3-unit SKU: %v, want insufficient_stock", err)
	}
	res, err := b.eng.Submit(context.Background(), engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: "a", Quantity: 2}, {SKU: "a", Quantity: 1}}}, nil)
	if err != nil || len(res.Value.(ordercore.Order).Lines) != 2 {
		t.Fatalf("2+1 units of a 3-unit SKU: %v", err)
	}
	if s, _ := b.db.SKU(context.Background(), "a"); s.Available() != 0 || s.Reserved != 3 {
		t.Fatalf("sku %+v", s)
	}
}

// TestBatchEndsWhenItsCallersAreBack: callers that submit again as soon as they are
// answered (a closed loop, as shop clients and saga steps are) fill each batch without
// the committer waiting out its batch gap: the fake clock stands still, where waiting
// for the gap after each batch would move it by the gap every round.
func TestBatchEndsWhenItsCallersAreBack(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const gap, clients, rounds = 50 * time.Millisecond, 8, 40
		b := setup(t, engine.Config{BatchDelay: gap, BatchGap: gap})
		mustSKU(t, b.eng, "hot", clients*rounds+1)
		start := time.Now()
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for range rounds {
					place(t, b.eng, "hot", 1, 0)
				}
			})
		}
		wg.Wait()
		// A batch waits out the gap only when callers its last batch answered do not come
		// back. That happens only at the end: the first batches can split the clients into
		// groups a round or more apart (which ones are caught by the first commit is up to
		// the scheduler), the groups then run in one batch per round, and each group that
		// finishes before the others leaves them waiting once. So at most one gap fewer
		// than there are clients; one gap per round would be 40 of them.
		if took := time.Since(start); took > (clients-1)*gap {
			t.Errorf("%d clients placing %d orders each took %s on the fake clock; want at most %s", clients, rounds, took, (clients-1)*gap)
		}
		// An order that finds the committer idle waits for nobody, though its last batch
		// answered 8 callers.
		time.Sleep(2 * gap)
		start = time.Now()
		place(t, b.eng, "hot", 1, 0)
		if took := time.Since(start); took != 0 {
			t.Errorf("a lone order after a pause took %s on the fake clock; want no wait", took)
		}
		st := b.eng.Stats()
		t.Logf("batches=%d commands=%d", st.Batches, st.Commands)
	})
}

// gatedStore holds each transaction, before its commands run, until the test's gate
// function returns.
type gatedStore struct {
	*sqlite.DB
	gate func()
}

func (s gatedStore) Write(ctx context.Context, fn func(ordercore.WriteTx) error) error {
	return s.DB.Write(ctx, func(tx ordercore.WriteTx) error {
		s.gate()
		return fn(tx)
	})
}

// TestStatsHeld: Stats.Held sums, over the commands answered, the time from Submit to
// the answer: its own transaction, and the one it queued behind. Lower bounds only: a
// busy machine adds time, never removes it.
func TestStatsHeld(t *testing.T) {
	t.Parallel()
	const delay, behind = 20 * time.Millisecond, 7
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}, 1), make(chan struct{})
	var gated atomic.Bool
	gate := func() {
		if gated.CompareAndSwap(true, false) { // the first order's transaction
			started <- struct{}{}
			<-release
		}
		time.Sleep(delay)
	}
	eng := engine.New(gatedStore{DB: db, gate: gate}, ordercore.SystemClock{}, engine.Config{})
	t.Cleanup(func() { eng.Close(); db.Close() })
	mustSKU(t, eng, "a", 100)
	before := eng.Stats()
	place := func(wg *sync.WaitGroup, waited *time.Duration) {
		wg.Go(func() {
			start := time.Now()
			if _, err := eng.Submit(context.Background(), engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: "a", Quantity: 1}}}, nil); err != nil {
				t.Error(err)
			}
			*waited = time.Since(start)
		})
	}
	// One order's transaction starts and is held; 7 more queue behind it for at least
	// queued, then the first is let go, and the 7 take a transaction of their own.
	gated.Store(true)
	var wg sync.WaitGroup
	waited := make([]time.Duration, 1+behind)
	place(&wg, &waited[0])
	<-started
	queuedAt := time.Now()
	for i := range behind {
		place(&wg, &waited[1+i])
	}
	for eng.QueueLen() < behind {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(delay)
	queued := time.Since(queuedAt)
	close(release)
	wg.Wait()
	after := eng.Stats()
	if n := after.Commands - before.Commands; n != 1+behind {
		t.Fatalf("%d commands answered, want %d", n, 1+behind)
	}
	held := after.Held - before.Held
	// The first waited for its held transaction; each of the others queued at least as
	// long as the test held that transaction after submitting them, then waited for
	// its own, which took delay.
	if want := queued + delay + behind*(delay+delay); held < want {
		t.Errorf("held %s for %d commands; want at least %s", held, 1+behind, want)
	}
	var sum time.Duration
	for _, w := range waited {
		sum += w
	}
	if held > sum {
		t.Errorf("held %s, more than the %s its callers waited in all", held, sum)
	}
}

// refusingStore refuses, in Apply, every transaction whose changeset refuse picks, as a
// database refuses a row its constraints or encoding do not allow; it counts the
// transactions it was asked for.
type refusingStore struct {
	*sqlite.DB
	refuse func(*ordercore.Changeset) bool
	gate   func()
	writes *atomic.Int64
}

type refusingTx struct {
	ordercore.WriteTx
	refuse func(*ordercore.Changeset) bool
}

func (tx refusingTx) Apply(ctx context.Context, cs *ordercore.Changeset) error {
	if tx.refuse(cs) {
		return errors.New("refused by the store")
	}
	return tx.WriteTx.Apply(ctx, cs)
}

func (s refusingStore) Write(ctx context.Context, fn func(ordercore.WriteTx) error) error {
	s.writes.Add(1)
	return s.DB.Write(ctx, func(tx ordercore.WriteTx) error {
		s.gate()
		return fn(refusingTx{tx, s.refuse})
	})
}

// TestRefusedCommandFailsAlone: when the store refuses a batch's transaction, the
// committer runs its commands again in smaller transactions, so only the command the
// store refuses fails; every other command of the batch is committed and answered as if
// the batch had not held it. A store that refuses everything costs a bounded number of
// transactions, not one per command.
func TestRefusedCommandFailsAlone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		refuse func(*ordercore.Changeset) bool
	}{
		{"one poison", func(cs *ordercore.Changeset) bool {
			return slices.ContainsFunc(cs.NewSKUs, func(s ordercore.SKU) bool { return s.Name == "poison" })
		}},
		{"everything", func(cs *ordercore.Changeset) bool { return len(cs.NewOrders) > 0 || len(cs.NewSKUs) > 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var writes atomic.Int64
			var refusing, holding atomic.Bool
			started, release := make(chan struct{}, 1), make(chan struct{})
			store := refusingStore{DB: db, writes: &writes,
				refuse: func(cs *ordercore.Changeset) bool { return refusing.Load() && tc.refuse(cs) },
				gate: func() {
					if holding.CompareAndSwap(true, false) {
						started <- struct{}{}
						<-release
					}
				}}
			eng := engine.New(store, ordercore.SystemClock{}, engine.Config{})
			t.Cleanup(func() { eng.Close(); db.Close() })
			mustSKU(t, eng, "a", 1000)

			// A restock's transaction is held while 40 orders and the poison queue behind
			// it; then all of them go in one batch.
			holding.Store(true)
			refusing.Store(true)
			var wg sync.WaitGroup
			wg.Go(func() {
				if _, err := eng.Submit(context.Background(), engine.Restock{SKU: "a", Quantity: 1}, nil); err != nil {
					t.Error(err)
				}
			})
			<-started
			const orders = 40
			errs := make([]error, orders+1)
			for i := range orders + 1 {
				wg.Go(func() {
					var cmd engine.Command = engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: "a", Quantity: 1}}}
					if i == orders/2 {
						cmd = engine.CreateSKU{ID: "p", Name: "poison", Price: ordercore.Money{Amount: 1, Currency: "USD"}}
					}
					_, errs[i] = eng.Submit(context.Background(), cmd, nil)
				})
			}
			for eng.QueueLen() < orders+1 {
				time.Sleep(time.Millisecond)
			}
			before := writes.Load()
			close(release)
			wg.Wait()
			spent := writes.Load() - before

			sku, err := db.SKU(context.Background(), "a")
			if err != nil {
				t.Fatal(err)
			}
			placed := 0
			for i, err := range errs {
				switch {
				case err == nil:
					placed++
				case ordercore.ErrorCode(err) != ordercore.EUnavailable:
					t.Errorf("command %d: %v, want %s", i, err, ordercore.EUnavailable)
				}
			}
			if tc.name == "one poison" {
				if errs[orders/2] == nil {
					t.Error("the refused command was answered as committed")
				}
				if placed != orders {
					t.Errorf("%d of the %d orders batched with the refused command were placed", placed, orders)
				}
			} else if placed != 0 {
				t.Errorf("%d commands answered as committed by a store that refuses everything", placed)
			}
			if sku.Reserved != int64(placed) {
				t.Errorf("%d units reserved, %d orders answered as placed", sku.Reserved, placed)
			}
			// The batch, then its isolation within its budget (the restock was not in it).
			if max := int64(1 + 2*bits.Len(uint(orders+1)) + 4); spent > max {
				t.Errorf("%d transactions for a batch of %d; want at most %d", spent, orders+1, max)
			}
			t.Logf("%d transactions for a batch of %d", spent, orders+1)
		})
	}
}
