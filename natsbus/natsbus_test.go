package natsbus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	_ "modernc.org/sqlite"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/sqlite"
)

// connect returns a JetStream context on the real server, skipping (or failing under
// CI=true) when none answers.
func connect(t *testing.T) jetstream.JetStream {
	t.Helper()
	url := os.Getenv("ORDERCORE_TEST_NATS")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		msg := fmt.Sprintf("NATS with JetStream is not reachable at %s (set ORDERCORE_TEST_NATS): %v", url, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

var unique atomic.Int64

// newRelay makes a relay over a fresh stream with a unique name and prefix.
func newRelay(t *testing.T, js jetstream.JetStream, rd ordercore.Reader, batch int) *Relay {
	t.Helper()
	n := fmt.Sprintf("%d_%d", time.Now().UnixNano(), unique.Add(1))
	r := NewRelay(Config{Reader: rd, JS: js, Stream: "TEST_" + n, SubjectPrefix: "test" + n + ".events", Batch: batch, Poll: 20 * time.Millisecond})
	ctx := context.Background()
	if err := r.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), r.cfg.Stream) })
	return r
}

type world struct {
	db  *sqlite.DB
	eng *engine.Engine
}

func setup(t *testing.T) world {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(db, ordercore.SystemClock{}, engine.Config{})
	t.Cleanup(func() { eng.Close(); db.Close() })
	return world{db: db, eng: eng}
}

// produce creates a SKU and places orders; every command appends events.
func (w world) produce(t *testing.T, sku string, orders int) {
	t.Helper()
	ctx := context.Background()
	if _, err := w.eng.Submit(ctx, engine.CreateSKU{ID: sku, Name: sku, Price: ordercore.Money{Amount: 500, Currency: "USD"}, Stock: 100000}, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < orders; i++ {
		if _, err := w.eng.Submit(ctx, engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: sku, Quantity: 1}}}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func (w world) events(t *testing.T) []ordercore.Event {
	t.Helper()
	evs, err := w.db.Events(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// streamMsgs reads every message of the stream in stream order.
func streamMsgs(t *testing.T, js jetstream.JetStream, r *Relay) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, r.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// checkStream asserts that the stream holds exactly evs, once each, in order.
func checkStream(t *testing.T, js jetstream.JetStream, r *Relay, evs []ordercore.Event) {
	t.Helper()
	msgs := streamMsgs(t, js, r)
	if len(msgs) != len(evs) {
		t.Fatalf("stream has %d messages, want %d", len(msgs), len(evs))
	}
	for i, m := range msgs {
		e := evs[i]
		if got := m.Header.Get(HeaderMsgID); got != e.ID {
			t.Fatalf("message %d: %s = %q, want %q", i, HeaderMsgID, got, e.ID)
		}
		if got := m.Header.Get(HeaderSeq); got != strconv.FormatInt(e.Seq, 10) {
			t.Fatalf("message %d: %s = %q, want %d", i, HeaderSeq, got, e.Seq)
		}
		want, _ := r.Subject(e)
		if m.Subject != want {
			t.Fatalf("message %d: subject %q, want %q", i, m.Subject, want)
		}
		if !strings.Contains(string(m.Data), `"id":"`+e.ID+`"`) {
			t.Fatalf("message %d is not the CloudEvent of %s: %s", i, e.ID, m.Data)
		}
	}
}

// runUntil runs the relay until the stream's cursor reaches seq, then stops it.
func runUntil(t *testing.T, r *Relay, seq int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitCursor(t, r, seq)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func waitCursor(t *testing.T, r *Relay, seq int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := r.Cursor(context.Background())
		if err == nil && c >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursor = %d (%v), want %d", c, err, seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRelayPublishesEveryEventOnceInOrder(t *testing.T) {
	t.Parallel()
	js := connect(t)
	w := setup(t)
	w.produce(t, "a", 40)
	evs := w.events(t)
	r := newRelay(t, js, w.db, 7)
	runUntil(t, r, evs[len(evs)-1].Seq)
	checkStream(t, js, r, evs)
}

func TestRelayResumesFromStreamCursor(t *testing.T) {
	t.Parallel()
	js := connect(t)
	w := setup(t)
	w.produce(t, "a", 60)
	evs := w.events(t)
	r := newRelay(t, js, w.db, 5)

	// Kill the first relay mid-run: its context ends while its fourth batch is being
	// published, so some of that batch may be stored and the rest not.
	ctx, cancel := context.WithCancel(context.Background())
	killer := &killingReader{Reader: w.db, after: 4, cancel: cancel}
	r1 := NewRelay(Config{Reader: killer, JS: js, Stream: r.cfg.Stream, SubjectPrefix: r.cfg.SubjectPrefix, Batch: 5, Poll: r.cfg.Poll})
	if err := r1.Run(ctx); err != nil {
		t.Fatal(err)
	}
	mid, err := r.Cursor(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if mid < evs[14].Seq || mid >= evs[len(evs)-1].Seq {
		t.Fatalf("cursor after the kill = %d; want at least three batches (%d) and not all (%d)", mid, evs[14].Seq, evs[len(evs)-1].Seq)
	}

	// More events arrive while no relay runs; a new relay picks up where the stream is.
	w.produce(t, "b", 10)
	evs = w.events(t)
	r2 := NewRelay(r.cfg)
	runUntil(t, r2, evs[len(evs)-1].Seq)
	checkStream(t, js, r2, evs)
}

// killingReader cancels the relay's context on its after-th call, after reading: the
// relay dies while publishing that batch, its acks unread.
type killingReader struct {
	ordercore.Reader
	after  int
	calls  int
	cancel context.CancelFunc
}

func (k *killingReader) Events(ctx context.Context, after int64, limit int) ([]ordercore.Event, error) {
	evs, err := k.Reader.Events(ctx, after, limit)
	k.calls++
	if k.calls == k.after {
		k.cancel()
	}
	return evs, err
}

func TestRepublishIsAbsorbedByDedupe(t *testing.T) {
	t.Parallel()
	js := connect(t)
	w := setup(t)
	w.produce(t, "a", 20)
	evs := w.events(t)
	r := newRelay(t, js, w.db, 256)
	runUntil(t, r, evs[len(evs)-1].Seq)

	// A lost ack: the same events are published again, as a retry would.
	ctx := context.Background()
	if _, err := r.publish(ctx, evs[:10], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.publish(ctx, evs, 0); err != nil {
		t.Fatal(err)
	}
	checkStream(t, js, r, evs)

	// The relay's next rounds after the duplicates still find nothing to add.
	w.produce(t, "b", 3)
	evs = w.events(t)
	runUntil(t, NewRelay(r.cfg), evs[len(evs)-1].Seq)
	checkStream(t, js, r, evs)
}

// consumerDB opens the consumer's own database with a counter the handler writes.
func consumerDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "consumer.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(wal)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE applied (event_id TEXT PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return db
}

// count is the handler's effect: it bumps a counter per event in the consumer's tx.
func count(ctx context.Context, tx *sql.Tx, ev ordercore.CloudEvent) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO applied (event_id, n) VALUES ($1, 1)
		ON CONFLICT (event_id) DO UPDATE SET n = n + 1`, ev.ID)
	return err
}

func applied(t *testing.T, db *sql.DB) map[string]int {
	t.Helper()
	rows, err := db.Query(`SELECT event_id, n FROM applied`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func waitApplied(t *testing.T, db *sql.DB, evs []ordercore.Event) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := applied(t, db)
		if len(got) == len(evs) {
			for _, e := range evs {
				if got[e.ID] != 1 {
					t.Fatalf("event %s applied %d times, want 1", e.ID, got[e.ID])
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events applied", len(got), len(evs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startConsumer(t *testing.T, js jetstream.JetStream, cfg ConsumerConfig, h Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var err error
	wg.Go(func() { err = Consume(ctx, js, cfg, h) })
	return func() {
		cancel()
		wg.Wait()
		if err != nil {
			t.Error(err)
		}
	}
}

func TestConsumerAppliesEachEventOnce(t *testing.T) {
	t.Parallel()
	js := connect(t)
	w := setup(t)
	w.produce(t, "a", 15)
	evs := w.events(t)
	r := newRelay(t, js, w.db, 256)
	runUntil(t, r, evs[len(evs)-1].Seq)
	db := consumerDB(t)
	cfg := ConsumerConfig{Stream: r.cfg.Stream, Durable: "billing", FilterSubject: r.cfg.SubjectPrefix + ".>", DB: db}

	// The handler fails once for one event: rolled back, nakked, redelivered, applied once.
	var failed atomic.Bool
	flaky := func(ctx context.Context, tx *sql.Tx, ev ordercore.CloudEvent) error {
		if err := count(ctx, tx, ev); err != nil {
			return err
		}
		if ev.ID == evs[3].ID && failed.CompareAndSwap(false, true) {
			return errors.New("transient")
		}
		return nil
	}
	stop := startConsumer(t, js, cfg, flaky)
	waitApplied(t, db, evs)
	stop()
	if !failed.Load() {
		t.Fatal("the handler never failed; the test did not exercise a redelivery")
	}
}

// TestConsumerRedeliveryAfterCommitBeforeAck: the consumer commits and is restarted
// before acking; the redelivered messages find their ids in the inbox and are skipped.
func TestConsumerRedeliveryAfterCommitBeforeAck(t *testing.T) {
	t.Parallel()
	js := connect(t)
	w := setup(t)
	w.produce(t, "a", 10)
	evs := w.events(t)
	r := newRelay(t, js, w.db, 256)
	runUntil(t, r, evs[len(evs)-1].Seq)
	db := consumerDB(t)
	cfg := ConsumerConfig{Stream: r.cfg.Stream, Durable: "shipping", DB: db, Table: "inbox_test"}
	ctx := context.Background()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS inbox_test (consumer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (consumer, event_id))`); err != nil {
		t.Fatal(err)
	}
	// A crashed first run: every event committed (inbox row and effect), no ack sent.
	for _, e := range evs {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO inbox_test (consumer, event_id) VALUES ($1, $2)`, cfg.Durable, e.ID); err != nil {
			t.Fatal(err)
		}
		if err := count(ctx, tx, e.Envelope()); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	var calls atomic.Int64
	h := func(ctx context.Context, tx *sql.Tx, ev ordercore.CloudEvent) error {
		calls.Add(1)
		return count(ctx, tx, ev)
	}
	// The restarted consumer gets every message (none was acked) and applies none again.
	stop := startConsumer(t, js, cfg, h)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var info *jetstream.ConsumerInfo
		cons, err := js.Consumer(ctx, cfg.Stream, cfg.Durable)
		if err == nil {
			info, err = cons.Info(ctx)
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if info.AckFloor.Stream >= uint64(len(evs)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ack floor %d, want %d", info.AckFloor.Stream, len(evs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if calls.Load() != 0 {
		t.Fatalf("handler called %d times for redelivered events, want 0", calls.Load())
	}
	waitApplied(t, db, evs)

	// New events after the restart are applied once each.
	w.produce(t, "b", 2)
	evs = w.events(t)
	runUntil(t, NewRelay(r.cfg), evs[len(evs)-1].Seq)
	stop = startConsumer(t, js, cfg, h)
	waitApplied(t, db, evs)
	stop()
}
