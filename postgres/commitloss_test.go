package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/pgtest"
	"ordercore/postgres"
)

// cutProxy forwards TCP connections to PostgreSQL and, once armed, cuts the connection
// that carries a COMMIT: before the server gets it ("before"), or after the server has
// committed, dropping its answer ("after"). Either way the client's COMMIT gets no answer.
type cutProxy struct {
	ln     net.Listener
	target string
	mode   atomic.Value // "", "before" or "after"
	cuts   atomic.Int64
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.mode.Store("")
	p.wg.Go(p.accept)
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		var once sync.Once
		cut := func() { once.Do(func() { c.Close(); s.Close() }) }
		// Client to server: a COMMIT in "before" mode is never delivered.
		p.wg.Go(func() { p.pump(c, s, cut, "before", []byte("COMMIT")) })
		// Server to client: the answer to a COMMIT ("COMMIT" command tag) in "after" mode.
		p.wg.Go(func() { p.pump(s, c, cut, "after", []byte("COMMIT\x00")) })
	}
}

func (p *cutProxy) pump(from, to net.Conn, cut func(), mode string, marker []byte) {
	defer cut()
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			if p.mode.Load() == mode && bytes.Contains(buf[:n], marker) {
				p.mode.Store("") // one cut per arming
				p.cuts.Add(1)
				return
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			return
		}
	}
}

// TestCommitWithNoAnswerIsAskedAbout: a write whose COMMIT gets no answer (the connection
// is lost) is not taken for rolled back: the store asks the server, on another
// connection, what became of the transaction, and answers as it ended. Taken for rolled
// back, a committed batch was run again (its orders placed twice, restocked units that
// never existed) or answered "nothing was changed".
func TestCommitWithNoAnswerIsAskedAbout(t *testing.T) {
	t.Parallel()
	dsn, schema := pgtest.Schema(t, "ordercore_test_")
	target := "127.0.0.1:5432"
	if !strings.Contains(dsn, target) {
		t.Skipf("the test database %s is not at %s, where the proxy would forward", dsn, target)
	}
	proxy := newCutProxy(t, target)
	ctx := context.Background()
	db, err := postgres.Open(ctx, strings.Replace(dsn, target, proxy.ln.Addr().String(), 1), postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC().Truncate(time.Microsecond)
	create := func(id string) error {
		return db.Write(ctx, func(tx ordercore.WriteTx) error {
			if _, err := tx.SKUs(ctx, []string{id}); err != nil { // a load first, as every batch
				return err
			}
			return tx.Apply(ctx, &ordercore.Changeset{NewSKUs: []ordercore.SKU{{ID: id, Name: id,
				Price: ordercore.Money{Amount: 100, Currency: "USD"}, Version: 1, CreatedAt: now, UpdatedAt: now}}})
		})
	}

	// Committed, answer lost: the write succeeds, once.
	proxy.mode.Store("after")
	if err := create("kept"); err != nil {
		t.Fatalf("a write that committed, its answer lost: %v, want nil", err)
	}
	// Never committed: the write fails, and says nothing of an unknown outcome.
	proxy.mode.Store("before")
	err = create("lost")
	if err == nil || errors.Is(err, ordercore.ErrCommitUnknown) {
		t.Fatalf("a write whose COMMIT never arrived: %v, want a plain failure (rolled back)", err)
	}
	if proxy.cuts.Load() != 2 {
		t.Fatalf("%d connections cut, want 2: the test did not exercise what it names", proxy.cuts.Load())
	}
	if s, err := db.SKU(ctx, "kept"); err != nil || s.ID != "kept" {
		t.Errorf("the committed SKU: %+v, %v", s, err)
	}
	if _, err := db.SKU(ctx, "lost"); ordercore.ErrorCode(err) != ordercore.ENOTFOUND {
		t.Errorf("the rolled back SKU: %v, want not found", err)
	}
}

// TestStalledTransactionReleasesItsLocks: a write transaction that stops between
// statements (its process frozen, its host cut off) loses its session after the idle
// timeout, and with it the row locks that every other instance's writes wait for; it
// commits nothing.
func TestStalledTransactionReleasesItsLocks(t *testing.T) {
	t.Parallel()
	dsn, schema := pgtest.Schema(t, "ordercore_test_")
	ctx := context.Background()
	open := func() *postgres.DB {
		db, err := postgres.Open(ctx, dsn, postgres.Options{Schema: schema, IdleInTransactionTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	frozen, other := open(), open()
	now := time.Now().UTC().Truncate(time.Microsecond)
	hot := ordercore.SKU{ID: "hot", Name: "hot", Price: ordercore.Money{Amount: 100, Currency: "USD"}, Total: 10, Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := other.Write(ctx, func(tx ordercore.WriteTx) error {
		return tx.Apply(ctx, &ordercore.Changeset{NewSKUs: []ordercore.SKU{hot}})
	}); err != nil {
		t.Fatal(err)
	}
	restock := func(db *postgres.DB, stall time.Duration) error {
		return db.Write(ctx, func(tx ordercore.WriteTx) error {
			if _, err := tx.SKUs(ctx, []string{"hot"}); err != nil { // locks the row
				return err
			}
			time.Sleep(stall)
			return tx.Apply(ctx, &ordercore.Changeset{StockChanges: []ordercore.StockChange{{SKU: "hot", DTotal: 1, At: now}}})
		})
	}
	stalled := make(chan error, 1)
	go func() { stalled <- restock(frozen, 6*time.Second) }()
	time.Sleep(200 * time.Millisecond) // the stalled transaction holds the row
	began := time.Now()
	if err := restock(other, 0); err != nil {
		t.Fatalf("the other instance's write: %v", err)
	}
	if waited := time.Since(began); waited > 4*time.Second {
		t.Errorf("the other instance's write waited %s for the stalled one, want about its idle timeout (1s)", waited)
	}
	if err := <-stalled; err == nil {
		t.Error("the stalled transaction committed after its session ended")
	}
	if s, err := other.SKU(ctx, "hot"); err != nil || s.Total != 11 {
		t.Errorf("sku %+v, %v; want 11 units: the other write's restock only", s, err)
	}
}
