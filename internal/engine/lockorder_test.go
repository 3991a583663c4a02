package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/sqlite"
)

// lockRecorder is a store whose write transactions note every load of payments or
// refunds that names rows by id.
type lockRecorder struct {
	*sqlite.DB
	mu   sync.Mutex
	byID []string
}

func (s *lockRecorder) Write(ctx context.Context, fn func(ordercore.WriteTx) error) error {
	return s.DB.Write(ctx, func(tx ordercore.WriteTx) error { return fn(recordingTx{tx, s}) })
}

func (s *lockRecorder) note(what string, ids []string) {
	if len(ids) > 0 {
		s.mu.Lock()
		s.byID = append(s.byID, fmt.Sprintf("%s %v", what, ids))
		s.mu.Unlock()
	}
}

type recordingTx struct {
	ordercore.WriteTx
	s *lockRecorder
}

func (t recordingTx) Payments(ctx context.Context, ids, orderIDs []string) (map[string]ordercore.Payment, error) {
	t.s.note("payments", ids)
	return t.WriteTx.Payments(ctx, ids, orderIDs)
}

func (t recordingTx) Refunds(ctx context.Context, ids, orderIDs []string) (map[string]ordercore.Refund, error) {
	t.s.note("refunds", ids)
	return t.WriteTx.Refunds(ctx, ids, orderIDs)
}

// TestPaymentLoadsLockInOneOrder: a batch loads (on PostgreSQL, locks) payments and
// refunds only as every attempt and every refund of their orders, one statement each,
// never first the rows its commands name: two instances, one syncing a refund by its id
// and one taking a new refund of the same order, locked the same rows in opposite orders
// and deadlocked (PostgreSQL aborted one batch, its clients got 503).
func TestPaymentLoadsLockInOneOrder(t *testing.T) {
	t.Parallel()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	store := &lockRecorder{DB: db}
	clock := &manualClock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	eng := engine.New(store, clock, engine.Config{})
	ch := newFakeChannel()
	pay := &engine.Payments{Engine: eng, Reader: db, Clock: clock, Channels: map[string]ordercore.Channel{matrixChannel: ch}}
	m := &matrixWorker{db: db, eng: eng, clock: clock, channel: ch, pay: pay, expirer: &engine.Expirer{Engine: eng, Reader: db, Clock: clock, Payments: pay}}
	t.Cleanup(m.close)
	b := payBundle{m, t}

	o, a := b.paidForRefunds("kettle", 2)
	half := ordercore.Money{Amount: o.Amount.Amount / 2, Currency: o.Amount.Currency}
	v, err := b.submit(engine.RequestRefund{OrderID: o.ID, Amount: half})
	if err != nil {
		t.Fatal(err)
	}
	r := v.(ordercore.Refund)
	// Commands that name the attempt and the refund by id: the refund's sync giving up
	// on an answer, and the channel's notifications of both.
	if _, err := b.submit(engine.RefundSyncMissed{RefundID: r.ID}); err != nil {
		t.Fatal(err)
	}
	b.notify("r-ok", nil, &ordercore.ChannelRefund{OutTradeNo: a, OutRefundNo: r.ID, Status: ordercore.RefundSucceeded, Amount: half})
	b.notify("paid-again", &ordercore.ChannelPayment{OutTradeNo: a, Status: ordercore.PaymentSucceeded, Amount: o.Amount}, nil)
	_, refunds, err := b.db.OrderPayments(context.Background(), o.ID)
	if err != nil || len(refunds) != 1 || refunds[0].Status != ordercore.RefundSucceeded {
		t.Fatalf("refunds after the notification: %+v %v, want one, succeeded", refunds, err)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.byID) > 0 {
		t.Errorf("loads that named rows by id, locking them before the rest of their orders' rows: %v", store.byID)
	}
	b.finish()
}

// createdMeanwhile fails the first write, as PostgreSQL does when another instance
// inserts the same new row first (a unique violation), and commits that other
// instance's row before it answers.
type createdMeanwhile struct {
	*sqlite.DB
	once   sync.Once
	writes int
	row    ordercore.SKU
}

func (s *createdMeanwhile) Write(ctx context.Context, fn func(ordercore.WriteTx) error) error {
	s.writes++
	first := false
	s.once.Do(func() { first = true })
	if !first {
		return s.DB.Write(ctx, fn)
	}
	err := s.DB.Write(ctx, func(tx ordercore.WriteTx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errCrash
	})
	if err := s.DB.Write(ctx, func(tx ordercore.WriteTx) error {
		return tx.Apply(ctx, &ordercore.Changeset{NewSKUs: []ordercore.SKU{s.row}})
	}); err != nil {
		return err
	}
	return err
}

// TestCommandFailingAloneRunsOnceMore: a batch of one command that the store refuses
// runs once more on its own, and then reads what another instance created meanwhile:
// the client gets 409 sku_exists, not 503 unavailable.
func TestCommandFailingAloneRunsOnceMore(t *testing.T) {
	t.Parallel()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	price := ordercore.Money{Amount: 500, Currency: "USD"}
	store := &createdMeanwhile{DB: db, row: ordercore.SKU{ID: "cap", Name: "cap (other instance)", Price: price, Total: 3, Version: 1, CreatedAt: now, UpdatedAt: now}}
	eng := engine.New(store, &manualClock{now: now}, engine.Config{})
	t.Cleanup(func() { eng.Close(); db.Close() })

	_, err = eng.Submit(context.Background(), engine.CreateSKU{ID: "cap", Name: "cap", Price: price, Stock: 5}, nil)
	if ordercore.ErrorCode(err) != ordercore.ESKUExists {
		t.Fatalf("create of a SKU another instance created meanwhile: %v, want %s", err, ordercore.ESKUExists)
	}
	if store.writes != 2 {
		t.Errorf("%d transactions; want the failed one and one more", store.writes)
	}
	if s, err := db.SKU(context.Background(), "cap"); err != nil || s.Total != 3 {
		t.Errorf("sku %+v, %v; want the other instance's", s, err)
	}
}

// commitInDoubt commits its first write and then reports its outcome unknown, as the
// PostgreSQL store does when the answer to a COMMIT is lost and the server cannot be
// asked.
type commitInDoubt struct {
	*sqlite.DB
	writes atomic.Int64
}

func (s *commitInDoubt) Write(ctx context.Context, fn func(ordercore.WriteTx) error) error {
	err := s.DB.Write(ctx, fn)
	if s.writes.Add(1) == 1 && err == nil {
		return fmt.Errorf("postgres: commit: %w", ordercore.ErrCommitUnknown)
	}
	return err
}

// TestCommitInDoubtRunsNothingAgain: a batch whose commit outcome is unknown is not run
// again, whole or in halves (it may have committed: its restocks would count twice), and
// its callers are told the outcome is unknown.
func TestCommitInDoubtRunsNothingAgain(t *testing.T) {
	t.Parallel()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	store := &commitInDoubt{DB: db}
	store.writes.Store(-1) // the SKU's creation below commits as usual
	eng := engine.New(store, &manualClock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}, engine.Config{})
	t.Cleanup(func() { eng.Close(); db.Close() })
	if _, err := eng.Submit(context.Background(), engine.CreateSKU{ID: "cup", Name: "cup", Price: ordercore.Money{Amount: 100, Currency: "USD"}, Stock: 1}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = eng.Submit(context.Background(), engine.Restock{SKU: "cup", Quantity: 5}, nil)
	if ordercore.ErrorCode(err) != ordercore.EUnavailable || !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("restock in a batch whose commit is in doubt: %v, want unavailable, saying the outcome is unknown", err)
	}
	if n := store.writes.Load(); n != 1 {
		t.Errorf("%d transactions after the one in doubt, want none", n-1)
	}
	if s, err := db.SKU(context.Background(), "cup"); err != nil || s.Total != 6 {
		t.Errorf("sku %+v, %v; want 6 units: restocked once", s, err)
	}
}
