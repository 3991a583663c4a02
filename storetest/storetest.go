// Package storetest is the conformance suite every ordercore store must pass (SQLite now,
// PostgreSQL later): the store half of each pair assertion refuses what it must (an
// oversold SKU, a stale order version, a reservation resolved twice), a failed write
// leaves nothing behind, and reads return exactly what was written.
//
// A store's own test calls Run with a constructor of fresh, empty stores. The suite uses
// only the root package's interfaces.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
)

// Store is what the suite exercises.
type Store interface {
	ordercore.Store
	ordercore.Dumper
}

// Run runs every conformance test against stores made by newStore, which must return a
// fresh, empty store; Run closes it.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, Store)
	}{
		{"SKURoundTrip", testSKURoundTrip},
		{"StockChange", testStockChange},
		{"StockGuardRefusesOversell", testStockGuard},
		{"StockChangesInBulk", testStockChangesInBulk},
		{"CheckConstraints", testCheckConstraints},
		{"OrderRoundTrip", testOrderRoundTrip},
		{"OrderVersionGuard", testOrderVersionGuard},
		{"ReservationResolvesOnce", testResolveOnce},
		{"LedgerReservationUnique", testLedgerUnique},
		{"FailedWriteLeavesNothing", testFailedWrite},
		{"EventFeed", testEventFeed},
		{"Idempotency", testIdempotency},
		{"Expiry", testExpiry},
		{"OrdersByUser", testOrdersByUser},
	}
	tests = append(tests, paymentTests()...)
	tests = append(tests, sagaTests()...)
	tests = append(tests, holdTests()...)
	tests = append(tests, webhookTests()...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

var t0 = time.Date(2030, 3, 4, 5, 6, 7, 123456000, time.UTC)

func usd(n int64) ordercore.Money { return ordercore.Money{Amount: n, Currency: "USD"} }

func sku(id string, total int64) ordercore.SKU {
	return ordercore.SKU{ID: id, Name: "SKU " + id, Price: usd(250), Total: total, Version: 1, CreatedAt: t0, UpdatedAt: t0}
}

// order returns a pending order with the given lines of (sku, quantity), all reserved.
func order(id, user string, expires time.Time, lines ...any) ordercore.Order {
	o := ordercore.Order{ID: id, UserID: user, Status: ordercore.OrderPendingPayment, Amount: usd(0),
		ExpiresAt: expires, Version: 1, CreatedAt: t0, UpdatedAt: t0}
	for i := 0; i+1 < len(lines); i += 2 {
		q := int64(lines[i+1].(int))
		l := ordercore.Line{SKU: lines[i].(string), Quantity: q, UnitPrice: usd(250), Amount: usd(250 * q), Reservation: ordercore.ReservationReserved}
		o.Lines = append(o.Lines, l)
		o.Amount.Amount += l.Amount.Amount
	}
	return o
}

func write(t *testing.T, s Store, c *ordercore.Changeset) error {
	t.Helper()
	return s.Write(context.Background(), func(tx ordercore.WriteTx) error { return tx.Apply(context.Background(), c) })
}

func mustWrite(t *testing.T, s Store, c *ordercore.Changeset) {
	t.Helper()
	if err := write(t, s, c); err != nil {
		t.Fatal(err)
	}
}

func mustSKU(t *testing.T, s Store, id string) ordercore.SKU {
	t.Helper()
	got, err := s.SKU(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func id(n int) string { return fmt.Sprintf("01900000-0000-7000-8000-%012d", n) }

func testSKURoundTrip(t *testing.T, s Store) {
	a := sku("a", 10)
	mustWrite(t, s, &ordercore.Changeset{NewSKUs: []ordercore.SKU{a, sku("b", 0)}})
	if diff := cmp.Diff(a, mustSKU(t, s, "a")); diff != "" {
		t.Errorf("read back (-wrote +read):\n%s", diff)
	}
	_, err := s.SKU(context.Background(), "zz")
	if ordercore.ErrorCode(err) != ordercore.ENOTFOUND {
		t.Errorf("missing SKU: %v, want not_found", err)
	}
	err = s.Write(context.Background(), func(tx ordercore.WriteTx) error {
		got, err := tx.SKUs(context.Background(), []string{"a", "zz", "b"})
		if err != nil {
			return err
		}
		if len(got) != 2 || got["a"] != a {
			t.Errorf("tx.SKUs = %v, want a and b only", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testStockChange(t *testing.T, s Store) {
	mustWrite(t, s, &ordercore.Changeset{NewSKUs: []ordercore.SKU{sku("a", 10)}})
	at := t0.Add(time.Second)
	mustWrite(t, s, &ordercore.Changeset{StockChanges: []ordercore.StockChange{{SKU: "a", DTotal: 5, DReserved: 7, At: at}}})
	mustWrite(t, s, &ordercore.Changeset{StockChanges: []ordercore.StockChange{{SKU: "a", DReserved: -3, DSold: 3, At: at}}})
	got := mustSKU(t, s, "a")
	if got.Total != 15 || got.Reserved != 4 || got.Sold != 3 || got.Version != 3 || !got.UpdatedAt.Equal(at) {
		t.Errorf("after two changes: %+v, want total 15, reserved 4, sold 3, version 3", got)
	}
}

// testStockGuard: the conditional update refuses any change that would leave available,
// reserved or sold negative, and the whole write with it.
func testStockGuard(t *testing.T, s Store) {
	mustWrite(t, s, &ordercore.Changeset{NewSKUs: []ordercore.SKU{sku("a", 10)}})
	for _, ch := range []ordercore.StockChange{
		{SKU: "a", DReserved: 11},          // oversell
		{SKU: "a", DReserved: -1},          // negative reserved
		{SKU: "a", DSold: -1},              // negative sold
		{SKU: "a", DTotal: -11},            // negative total
		{SKU: "a", DReserved: 6, DSold: 5}, // reserved + sold > total
		{SKU: "missing", DTotal: 1},        // no such SKU
	} {
		ch.At = t0
		err := write(t, s, &ordercore.Changeset{NewSKUs: []ordercore.SKU{sku("side-effect", 1)}, StockChanges: []ordercore.StockChange{ch}})
		if err == nil {
			t.Errorf("stock change %+v was accepted", ch)
		}
	}
	if got := mustSKU(t, s, "a"); got.Total != 10 || got.Reserved != 0 || got.Sold != 0 || got.Version != 1 {
		t.Errorf("refused changes moved the SKU: %+v", got)
	}
	if _, err := s.SKU(context.Background(), "side-effect"); ordercore.ErrorCode(err) != ordercore.ENOTFOUND {
		t.Errorf("a refused write still created a SKU: %v", err)
	}
}

// testStockChangesInBulk: a batch's stock changes of many SKUs are all written, and one
// refused change, wherever it is among them, refuses the whole write.
func testStockChangesInBulk(t *testing.T, s Store) {
	const n = 150
	skus := make([]ordercore.SKU, n)
	for i := range skus {
		skus[i] = sku(fmt.Sprintf("bulk-%03d", i), 10)
	}
	mustWrite(t, s, &ordercore.Changeset{NewSKUs: skus})
	at := t0.Add(time.Second)
	changes := func(bad int) []ordercore.StockChange {
		out := make([]ordercore.StockChange, n)
		for i := range out {
			out[i] = ordercore.StockChange{SKU: skus[i].ID, DReserved: int64(i%10 + 1), At: at}
			if i == bad {
				out[i].DReserved = 11 // more than the SKU holds
			}
		}
		return out
	}
	mustWrite(t, s, &ordercore.Changeset{StockChanges: changes(-1)})
	check := func(when string) {
		t.Helper()
		for i, k := range skus {
			got := mustSKU(t, s, k.ID)
			if want := int64(i%10 + 1); got.Reserved != want || got.Version != 2 {
				t.Fatalf("%s: %s reserved %d at version %d; want %d at version 2", when, k.ID, got.Reserved, got.Version, want)
			}
		}
	}
	check("after 150 changes in one write")
	for _, bad := range []int{0, 63, 64, n - 1} {
		back := changes(-1)
		for i := range back {
			back[i].DReserved = -back[i].DReserved
		}
		back[bad].DReserved-- // one more than it holds: reserved would go negative
		if err := write(t, s, &ordercore.Changeset{StockChanges: back}); err == nil {
			t.Fatalf("a write with a refused stock change at %d was accepted", bad)
		}
		check(fmt.Sprintf("after a refused change at %d", bad))
	}
}

// testCheckConstraints: rows that break the schema's own rules are refused even if the
// code above the store let them through.
func testCheckConstraints(t *testing.T, s Store) {
	bad := []ordercore.Changeset{
		{NewSKUs: []ordercore.SKU{{ID: "x", Name: "x", Price: usd(1), Total: 1, Reserved: 2, Version: 1}}},
		{NewSKUs: []ordercore.SKU{{ID: "x", Name: "x", Price: usd(-1), Total: 1, Version: 1}}},
		{NewSKUs: []ordercore.SKU{{ID: "x", Name: "x", Price: usd(1), Total: 1, Version: 0}}},
	}
	o := order(id(1), "u", t0, "a", 1)
	o.Status = "lost"
	bad = append(bad, ordercore.Changeset{NewOrders: []ordercore.Order{o}})
	o = order(id(2), "u", t0, "a", 1)
	o.Lines[0].Quantity = 1000
	bad = append(bad, ordercore.Changeset{NewOrders: []ordercore.Order{o}})
	bad = append(bad, ordercore.Changeset{Ledger: []ordercore.StockEntry{{SKU: "a", Movement: "steal", DTotal: -1, At: t0}}})
	bad = append(bad, ordercore.Changeset{Ledger: []ordercore.StockEntry{{SKU: "a", Movement: ordercore.MoveRestock, DTotal: 1, OrderID: id(3), LineNo: 1, At: t0}}})
	for i, c := range bad {
		if err := write(t, s, &c); err == nil {
			t.Errorf("changeset %d breaking a CHECK was accepted: %+v", i, c)
		}
	}
	snap, err := s.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.SKUs)+len(snap.Orders)+len(snap.Ledger) != 0 {
		t.Errorf("refused writes left rows: %+v", snap)
	}
}

func testOrderRoundTrip(t *testing.T, s Store) {
	o := order(id(1), "u1", t0.Add(15*time.Minute), "a", 2, "b", 1, "a", 3)
	mustWrite(t, s, &ordercore.Changeset{NewOrders: []ordercore.Order{o}})
	got, err := s.Order(context.Background(), o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(o, got); diff != "" {
		t.Errorf("read back (-wrote +read):\n%s", diff)
	}
	if _, err := s.Order(context.Background(), id(9)); ordercore.ErrorCode(err) != ordercore.ENOTFOUND {
		t.Errorf("missing order: %v, want not_found", err)
	}
	err = s.Write(context.Background(), func(tx ordercore.WriteTx) error {
		m, err := tx.Orders(context.Background(), []string{o.ID, id(9)})
		if err != nil {
			return err
		}
		if diff := cmp.Diff(map[string]ordercore.Order{o.ID: o}, m); diff != "" {
			t.Errorf("tx.Orders (-want +got):\n%s", diff)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func paid(o ordercore.Order, at time.Time) ordercore.Order {
	o.Status, o.Version, o.UpdatedAt = ordercore.OrderPaid, o.Version+1, at
	lines := append([]ordercore.Line(nil), o.Lines...)
	for i := range lines {
		lines[i].Reservation = ordercore.ReservationCommitted
	}
	o.Lines = lines
	return o
}

// testOrderVersionGuard: a change computed from a version that is no longer stored is
// refused (on PostgreSQL two instances may race; on SQLite it would be a bug).
func testOrderVersionGuard(t *testing.T, s Store) {
	o := order(id(1), "u1", t0, "a", 1)
	mustWrite(t, s, &ordercore.Changeset{NewOrders: []ordercore.Order{o}})
	p := paid(o, t0.Add(time.Second))
	if err := write(t, s, &ordercore.Changeset{OrderChanges: []ordercore.OrderChange{{Order: p, FromVersion: 7, Resolve: ordercore.ReservationCommitted}}}); err == nil {
		t.Fatal("a change from a stale version was accepted")
	}
	mustWrite(t, s, &ordercore.Changeset{OrderChanges: []ordercore.OrderChange{{Order: p, FromVersion: 1, Resolve: ordercore.ReservationCommitted}}})
	got, _ := s.Order(context.Background(), o.ID)
	if diff := cmp.Diff(p, got); diff != "" {
		t.Errorf("after payment (-want +got):\n%s", diff)
	}
}

// testResolveOnce: resolving reservations that are no longer held is refused, whatever
// the version says.
func testResolveOnce(t *testing.T, s Store) {
	o := order(id(1), "u1", t0, "a", 1, "b", 2)
	mustWrite(t, s, &ordercore.Changeset{NewOrders: []ordercore.Order{o}})
	p := paid(o, t0)
	mustWrite(t, s, &ordercore.Changeset{OrderChanges: []ordercore.OrderChange{{Order: p, FromVersion: 1, Resolve: ordercore.ReservationCommitted}}})
	again := p
	again.Version++
	if err := write(t, s, &ordercore.Changeset{OrderChanges: []ordercore.OrderChange{{Order: again, FromVersion: p.Version, Resolve: ordercore.ReservationCommitted}}}); err == nil {
		t.Fatal("resolving committed reservations again was accepted")
	}
	shipped := p
	shipped.Status, shipped.Version = ordercore.OrderShipped, p.Version+1
	mustWrite(t, s, &ordercore.Changeset{OrderChanges: []ordercore.OrderChange{{Order: shipped, FromVersion: p.Version}}})
	got, _ := s.Order(context.Background(), o.ID)
	if got.Status != ordercore.OrderShipped || got.Lines[1].Reservation != ordercore.ReservationCommitted {
		t.Errorf("after shipping: %+v", got)
	}
}

// testLedgerUnique: a reservation is made once and resolved at most once, in the ledger
// itself.
func testLedgerUnique(t *testing.T, s Store) {
	reserve := ordercore.NewStockEntry("a", ordercore.MoveReserve, 1, id(1), 1, t0)
	commit := ordercore.NewStockEntry("a", ordercore.MoveCommit, 1, id(1), 1, t0)
	release := ordercore.NewStockEntry("a", ordercore.MoveRelease, 1, id(1), 1, t0)
	mustWrite(t, s, &ordercore.Changeset{Ledger: []ordercore.StockEntry{reserve, ordercore.NewStockEntry("a", ordercore.MoveReserve, 1, id(1), 2, t0)}})
	if err := write(t, s, &ordercore.Changeset{Ledger: []ordercore.StockEntry{reserve}}); err == nil {
		t.Error("a second reserve of the same line was accepted")
	}
	mustWrite(t, s, &ordercore.Changeset{Ledger: []ordercore.StockEntry{commit}})
	for _, e := range []ordercore.StockEntry{commit, release} {
		if err := write(t, s, &ordercore.Changeset{Ledger: []ordercore.StockEntry{e}}); err == nil {
			t.Errorf("a second resolution (%s) of a committed line was accepted", e.Movement)
		}
	}
	// Restocks are not reservations: any number of them.
	r := ordercore.NewStockEntry("a", ordercore.MoveRestock, 5, "", 0, t0)
	mustWrite(t, s, &ordercore.Changeset{Ledger: []ordercore.StockEntry{r, r}})
	snap, err := s.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Ledger) != 5 {
		t.Errorf("ledger has %d rows, want 5", len(snap.Ledger))
	}
}

// testFailedWrite: if fn fails after applying a changeset, nothing of it is stored.
func testFailedWrite(t *testing.T, s Store) {
	boom := errors.New("boom")
	err := s.Write(context.Background(), func(tx ordercore.WriteTx) error {
		if err := tx.Apply(context.Background(), &ordercore.Changeset{NewSKUs: []ordercore.SKU{sku("a", 1)},
			Events: []ordercore.Event{{ID: id(1), Type: "sku.created", AggregateType: "sku", AggregateID: "a", Time: t0, Data: []byte(`{}`)}}}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write = %v, want the function's error", err)
	}
	snap, err := s.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.SKUs) != 0 || len(snap.Events) != 0 {
		t.Errorf("a failed write left %d SKUs and %d events", len(snap.SKUs), len(snap.Events))
	}
}

func event(n int, agg string) ordercore.Event {
	return ordercore.Event{ID: id(n), Type: "order.placed", AggregateType: "order", AggregateID: agg, Time: t0, Data: []byte(fmt.Sprintf(`{"n":%d}`, n))}
}

// testEventFeed: sequence numbers rise in commit order across writes; the feed pages by
// them without gaps or repeats; an aggregate's timeline is its events in order.
func testEventFeed(t *testing.T, s Store) {
	n := 0
	for w := 0; w < 4; w++ {
		var evs []ordercore.Event
		for i := 0; i < 3; i++ {
			n++
			evs = append(evs, event(n, id(n%2)))
		}
		mustWrite(t, s, &ordercore.Changeset{Events: evs})
	}
	var all []ordercore.Event
	after := int64(0)
	for page := 0; page < 10; page++ {
		evs, err := s.Events(context.Background(), after, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].Seq
	}
	if len(all) != n {
		t.Fatalf("feed returned %d events, want %d", len(all), n)
	}
	for i, e := range all {
		if i > 0 && e.Seq <= all[i-1].Seq {
			t.Fatalf("feed out of order at %d: %d after %d", i, e.Seq, all[i-1].Seq)
		}
		if e.ID != id(i+1) || string(e.Data) != fmt.Sprintf(`{"n":%d}`, i+1) || !e.Time.Equal(t0) {
			t.Fatalf("event %d = %+v, want the %d-th written", i, e, i+1)
		}
	}
	tl, err := s.AggregateEvents(context.Background(), id(1), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(tl) != n/2 {
		t.Fatalf("timeline of %s has %d events, want %d", id(1), len(tl), n/2)
	}
	for i := 1; i < len(tl); i++ {
		if tl[i].Seq <= tl[i-1].Seq || tl[i].AggregateID != id(1) {
			t.Fatalf("timeline out of order or mixed: %+v", tl)
		}
	}
	recent, err := s.RecentAggregateEvents(context.Background(), id(1), 3)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tl[len(tl)-3:], recent); diff != "" {
		t.Fatalf("RecentAggregateEvents of %s, 3: want the timeline's last 3 in order (-want +got):\n%s", id(1), diff)
	}
	last, found, err := s.LastAggregateEvent(context.Background(), id(1), tl[0].Type)
	if err != nil || !found || last.Seq != tl[len(tl)-1].Seq || last.ID != tl[len(tl)-1].ID {
		t.Fatalf("LastAggregateEvent of %s: %+v %v %v, want the timeline's last %+v", id(1), last, found, err, tl[len(tl)-1])
	}
	if _, found, err := s.LastAggregateEvent(context.Background(), id(1), "no.such_type"); err != nil || found {
		t.Fatalf("LastAggregateEvent of a type the aggregate has none of: found %v, %v", found, err)
	}
	if _, found, err := s.LastAggregateEvent(context.Background(), "no-such-aggregate", tl[0].Type); err != nil || found {
		t.Fatalf("LastAggregateEvent of an aggregate with no events: found %v, %v", found, err)
	}
}

func testIdempotency(t *testing.T, s Store) {
	recs := []ordercore.IdemRecord{
		{Key: "old", RequestHash: "h1", Status: 201, Body: []byte(`{"a":1}`), CreatedAt: t0},
		{Key: "older", RequestHash: "h2", Status: 200, Body: []byte(`{}`), CreatedAt: t0.Add(-time.Hour)},
		{Key: "new", RequestHash: "h3", Status: 201, Body: []byte(`{"b":2}`), CreatedAt: t0.Add(48 * time.Hour)},
	}
	oldest := func(want time.Time) {
		t.Helper()
		got, ok, err := s.OldestIdempotencyKey(context.Background())
		if err != nil || ok != !want.IsZero() || !got.Equal(want) {
			t.Errorf("OldestIdempotencyKey = %v %v %v, want %v", got, ok, err, want)
		}
	}
	oldest(time.Time{})
	mustWrite(t, s, &ordercore.Changeset{Idempotency: recs})
	oldest(t0.Add(-time.Hour))
	if err := write(t, s, &ordercore.Changeset{Idempotency: recs[:1]}); err == nil {
		t.Error("a second record under the same key was accepted")
	}
	load := func() map[string]ordercore.IdemRecord {
		var got map[string]ordercore.IdemRecord
		err := s.Write(context.Background(), func(tx ordercore.WriteTx) error {
			var err error
			got, err = tx.Idempotency(context.Background(), []string{"old", "older", "new", "none"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if diff := cmp.Diff(map[string]ordercore.IdemRecord{"old": recs[0], "older": recs[1], "new": recs[2]}, load()); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	// Prune what is older than a day after t0, at most one at a time, oldest first.
	mustWrite(t, s, &ordercore.Changeset{IdemPruneBefore: t0.Add(24 * time.Hour), IdemPruneMax: 1})
	if got := load(); len(got) != 2 || got["older"].Key != "" {
		t.Errorf("after pruning one: %v, want older gone", got)
	}
	oldest(t0)
	mustWrite(t, s, &ordercore.Changeset{IdemPruneBefore: t0.Add(24 * time.Hour), IdemPruneMax: 100})
	if got := load(); len(got) != 1 || got["new"].Key != "new" {
		t.Errorf("after pruning: %v, want only the new record", got)
	}
	oldest(t0.Add(48 * time.Hour))
}

func testExpiry(t *testing.T, s Store) {
	a := order(id(1), "u", t0.Add(3*time.Minute), "a", 1)
	b := order(id(2), "u", t0.Add(1*time.Minute), "a", 1)
	c := order(id(3), "u", t0.Add(2*time.Minute), "a", 1)
	d := order(id(4), "u", t0.Add(10*time.Minute), "a", 1)
	mustWrite(t, s, &ordercore.Changeset{NewOrders: []ordercore.Order{a, b, c, d}})
	mustWrite(t, s, &ordercore.Changeset{OrderChanges: []ordercore.OrderChange{{Order: paid(c, t0), FromVersion: 1, Resolve: ordercore.ReservationCommitted}}})
	next, ok, err := s.NextExpiry(context.Background())
	if err != nil || !ok || !next.Equal(b.ExpiresAt) {
		t.Errorf("NextExpiry = %v %v %v, want %v", next, ok, err, b.ExpiresAt)
	}
	due, err := s.ExpiredOrders(context.Background(), t0.Add(5*time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{b.ID, a.ID}, due); diff != "" {
		t.Errorf("due orders, oldest first, paid excluded (-want +got):\n%s", diff)
	}
	if due, _ := s.ExpiredOrders(context.Background(), t0.Add(5*time.Minute), 1); len(due) != 1 {
		t.Errorf("limit 1 returned %d", len(due))
	}
}

func testOrdersByUser(t *testing.T, s Store) {
	var orders []ordercore.Order
	for i := 1; i <= 7; i++ {
		orders = append(orders, order(id(i), "u1", t0, "a", 1))
	}
	orders = append(orders, order(id(8), "u2", t0, "a", 1))
	mustWrite(t, s, &ordercore.Changeset{NewOrders: orders})
	var got []string
	after := ""
	for page := 0; page < 10; page++ {
		os, err := s.OrdersByUser(context.Background(), "u1", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(os) == 0 {
			break
		}
		for _, o := range os {
			got = append(got, o.ID)
		}
		after = os[len(os)-1].ID
	}
	want := []string{id(7), id(6), id(5), id(4), id(3), id(2), id(1)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("orders of u1, newest first (-want +got):\n%s", diff)
	}
}
