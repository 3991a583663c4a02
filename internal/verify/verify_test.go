package verify_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
	"ordercore/internal/verify"
)

// t0 is when the hand-built history starts.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture builds a Snapshot by hand, writing for each command exactly the rows
// internal/engine/commands.go writes: the state rows, one ledger row per stock movement and
// one event per change, in the same order and with the same payloads. Each command runs in
// its own "batch" one second after the previous one.
type fixture struct {
	t      *testing.T
	now    time.Time
	seq    int64
	snap   ordercore.Snapshot
	skus   map[string]int    // sku id -> index in snap.SKUs
	orders map[string]int    // order id -> index in snap.Orders
	names  map[string]string // fixture name -> order id
	pays   map[string]int    // payment id -> index in snap.Payments
	rfs    map[string]int    // refund id -> index in snap.Refunds
	mseq   int64             // the last money ledger seq
}

type lineReq struct {
	sku string
	qty int64
}

func usd(minor int64) ordercore.Money { return ordercore.Money{Amount: minor, Currency: "USD"} }

func (f *fixture) tick() { f.now = f.now.Add(time.Second) }

func (f *fixture) event(aggType, aggID, typ string, data any) {
	raw, err := json.Marshal(data)
	if err != nil {
		f.t.Fatal(err)
	}
	f.seq++
	f.snap.Events = append(f.snap.Events, ordercore.Event{Seq: f.seq, ID: ordercore.NewID(f.now), Type: typ,
		AggregateType: aggType, AggregateID: aggID, Time: f.now, Data: raw})
}

// move mirrors batch.move: one ledger row, and the SKU's balances moved by its deltas.
func (f *fixture) move(sku string, m ordercore.StockMovement, qty int64, orderID string, lineNo int) {
	e := ordercore.NewStockEntry(sku, m, qty, orderID, lineNo, f.now)
	s := &f.snap.SKUs[f.skus[sku]]
	s.Total += e.DTotal
	s.Reserved += e.DReserved
	s.Sold += e.DSold
	if s.CreatedAt != f.now && s.UpdatedAt != f.now {
		s.Version++ // once per batch, and not for a SKU the batch inserts
	}
	s.UpdatedAt = f.now
	f.snap.Ledger = append(f.snap.Ledger, e)
}

func (f *fixture) createSKU(id string, price ordercore.Money, stock int64) {
	f.tick()
	f.skus[id] = len(f.snap.SKUs)
	f.snap.SKUs = append(f.snap.SKUs, ordercore.SKU{ID: id, Name: "The " + id, Price: price, Version: 1, CreatedAt: f.now, UpdatedAt: f.now})
	if stock > 0 {
		f.move(id, ordercore.MoveRestock, stock, "", 0)
	}
	f.event(ordercore.AggregateSKU, id, ordercore.EventSKUCreated, ordercore.SKUCreated{Name: "The " + id, Price: price, Stock: stock})
}

func (f *fixture) restock(id string, qty int64) {
	f.tick()
	f.move(id, ordercore.MoveRestock, qty, "", 0)
	f.event(ordercore.AggregateSKU, id, ordercore.EventSKURestocked, ordercore.SKURestocked{Quantity: qty, Total: f.snap.SKUs[f.skus[id]].Total})
}

// place mirrors PlaceOrder, without its stock check (so a test can oversell on purpose).
func (f *fixture) place(name, user string, reqs ...lineReq) {
	f.tick()
	o := ordercore.Order{ID: ordercore.NewID(f.now), UserID: user, Status: ordercore.OrderPendingPayment,
		ExpiresAt: f.now.Add(15 * time.Minute), Version: 1, CreatedAt: f.now, UpdatedAt: f.now}
	for i, r := range reqs {
		price := f.snap.SKUs[f.skus[r.sku]].Price
		amount := usd(price.Amount * r.qty)
		if i == 0 {
			o.Amount = usd(0)
		}
		o.Amount.Amount += amount.Amount
		o.Lines = append(o.Lines, ordercore.Line{SKU: r.sku, Quantity: r.qty, UnitPrice: price, Amount: amount, Reservation: ordercore.ReservationReserved})
	}
	for i, l := range o.Lines {
		f.move(l.SKU, ordercore.MoveReserve, l.Quantity, o.ID, i+1)
	}
	f.orders[o.ID], f.names[name] = len(f.snap.Orders), o.ID
	f.snap.Orders = append(f.snap.Orders, o)
	f.event(ordercore.AggregateOrder, o.ID, ordercore.EventOrderPlaced, ordercore.OrderPlaced{
		UserID: o.UserID, Amount: o.Amount, Lines: slices.Clone(o.Lines), ExpiresAt: o.ExpiresAt, Version: o.Version})
}

// transition mirrors batch.transition for a legal move to status to, in a batch of its own.
func (f *fixture) transition(name string, to ordercore.OrderStatus, reason string, pay *ordercore.PaymentApplied) {
	f.tick()
	f.transitionIn(f.order(name), to, reason, pay)
}

// transitionIn mirrors batch.transition in the current batch.
func (f *fixture) transitionIn(o *ordercore.Order, to ordercore.OrderStatus, reason string, pay *ordercore.PaymentApplied) {
	from := o.Status
	o.Status, o.Version, o.UpdatedAt = to, o.Version+1, f.now
	var move ordercore.StockMovement
	var res ordercore.ReservationStatus
	switch to {
	case ordercore.OrderPaid:
		if from == ordercore.OrderCancelled { // revived by late money: released units sold again
			move, res = ordercore.MoveRevive, ordercore.ReservationCommitted
			o.CancelReason = ""
			break
		}
		move, res = ordercore.MoveCommit, ordercore.ReservationCommitted
	case ordercore.OrderCancelled:
		move, res = ordercore.MoveRelease, ordercore.ReservationReleased
		o.CancelReason = reason
	default:
		reason = ""
	}
	if move != "" {
		for i := range o.Lines {
			f.move(o.Lines[i].SKU, move, o.Lines[i].Quantity, o.ID, i+1)
			o.Lines[i].Reservation = res
		}
	}
	f.event(ordercore.AggregateOrder, o.ID, ordercore.OrderEventType(to), ordercore.OrderTransitioned{
		From: from, To: to, Version: o.Version, Reason: reason, Payment: pay})
}

func (f *fixture) pay(name string) {
	o := f.order(name)
	f.transition(name, ordercore.OrderPaid, "", &ordercore.PaymentApplied{Channel: "manual", Reference: "ref-" + name, Amount: o.Amount})
}

func (f *fixture) order(name string) *ordercore.Order {
	id, ok := f.names[name]
	if !ok {
		f.t.Fatalf("no order %q in the fixture", name)
	}
	return &f.snap.Orders[f.orders[id]]
}

func (f *fixture) sku(id string) *ordercore.SKU { return &f.snap.SKUs[f.skus[id]] }

// orderEvent returns the event of type typ of the named order.
func (f *fixture) orderEvent(name, typ string) *ordercore.Event {
	id := f.order(name).ID
	for i, e := range f.snap.Events {
		if e.AggregateID == id && e.Type == typ {
			return &f.snap.Events[i]
		}
	}
	f.t.Fatalf("order %s has no %s event", name, typ)
	return nil
}

// ledgerRow returns the index of the named order's ledger row of movement m for line no.
func (f *fixture) ledgerRow(name string, m ordercore.StockMovement, no int) int {
	id := f.order(name).ID
	for i, e := range f.snap.Ledger {
		if e.OrderID == id && e.Movement == m && e.LineNo == no {
			return i
		}
	}
	f.t.Fatalf("order %s has no %s row for line %d", name, m, no)
	return -1
}

// editEvent rewrites the data of e as a T.
func editEvent[T any](t *testing.T, e *ordercore.Event, edit func(*T)) {
	t.Helper()
	var d T
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatal(err)
	}
	edit(&d)
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	e.Data = raw
}

// consistent builds a sound database: two SKUs (one created with stock, one restocked),
// and an order in every status, cancelled both by the user and by expiry, one with the same
// SKU on two lines, all paid by the operator (ApplyPayment); then the orders of
// withPayments, paid and refunded through a channel.
func consistent(t *testing.T) *fixture {
	f := &fixture{t: t, now: t0, skus: map[string]int{}, orders: map[string]int{}, names: map[string]string{},
		pays: map[string]int{}, rfs: map[string]int{}}
	f.createSKU("apple", usd(250), 100)
	f.createSKU("pear", usd(120), 0)
	f.restock("pear", 50)

	f.place("pending", "u1", lineReq{"apple", 2}, lineReq{"pear", 1})

	f.place("paid", "u2", lineReq{"apple", 1})
	f.pay("paid")

	f.place("fulfilling", "u3", lineReq{"pear", 3})
	f.pay("fulfilling")
	f.transition("fulfilling", ordercore.OrderFulfilling, "", nil)

	f.place("shipped", "u1", lineReq{"apple", 4}, lineReq{"pear", 2})
	f.pay("shipped")
	f.transition("shipped", ordercore.OrderShipped, "", nil)

	f.place("completed", "u2", lineReq{"apple", 1}, lineReq{"apple", 2})
	f.pay("completed")
	f.transition("completed", ordercore.OrderShipped, "", nil)
	f.transition("completed", ordercore.OrderCompleted, "", nil)

	f.place("cancelled", "u3", lineReq{"pear", 5})
	f.transition("cancelled", ordercore.OrderCancelled, ordercore.CancelByUser, nil)

	f.place("expired", "u4", lineReq{"apple", 3}, lineReq{"pear", 1})
	f.transition("expired", ordercore.OrderCancelled, ordercore.CancelTimeout, nil)

	f.place("refunded", "u5", lineReq{"apple", 1})
	f.pay("refunded")
	f.transition("refunded", ordercore.OrderRefunding, "", nil)
	f.transition("refunded", ordercore.OrderRefunded, "", nil)

	f.place("partial", "u5", lineReq{"pear", 1})
	f.pay("partial")
	f.transition("partial", ordercore.OrderFulfilling, "", nil)
	f.transition("partial", ordercore.OrderRefunding, "", nil)
	f.transition("partial", ordercore.OrderPartiallyRefunded, "", nil)

	withPayments(f)
	return f
}

func rules(vs []verify.Violation) []string {
	set := map[string]bool{}
	for _, v := range vs {
		set[v.Rule] = true
	}
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

func TestCheckConsistentSnapshot(t *testing.T) {
	t.Parallel()
	f := consistent(t)
	if vs := verify.Check(&f.snap, f.now); len(vs) != 0 {
		t.Fatalf("a consistent snapshot has violations:\n%s", report(vs, &f.snap))
	}
	// The fixture must exercise what it claims to.
	var statuses []ordercore.OrderStatus
	for _, o := range f.snap.Orders {
		if !slices.Contains(statuses, o.Status) {
			statuses = append(statuses, o.Status)
		}
	}
	for _, s := range ordercore.OrderStatuses {
		if !slices.Contains(statuses, s) {
			t.Errorf("the fixture has no %s order", s)
		}
	}
}

func report(vs []verify.Violation, snap *ordercore.Snapshot) string {
	var b strings.Builder
	verify.Report(&b, vs, snap)
	return b.String()
}

// TestCheckCorruption corrupts one thing in a consistent snapshot and expects exactly the
// listed rules to fire. Where one corruption breaks two promises (a balance that disagrees
// with both the ledger and the events), both are listed, with the reason.
func TestCheckCorruption(t *testing.T) {
	t.Parallel()
	runCorruptions(t, []corruption{{
		// The skus row disagrees with the ledger and with the events.
		name:    "reserved off by one",
		corrupt: func(t *testing.T, f *fixture) { f.sku("apple").Reserved++ },
		want:    []string{verify.RuleEventReplay, verify.RuleStockConservation},
	}, {
		// The second release also leaves pear's ledger sum below the row's reserved.
		name: "duplicate release row",
		corrupt: func(t *testing.T, f *fixture) {
			f.snap.Ledger = append(f.snap.Ledger, f.snap.Ledger[f.ledgerRow("cancelled", ordercore.MoveRelease, 1)])
		},
		want: []string{verify.RuleReservationOnce, verify.RuleStockConservation},
	}, {
		name: "missing event",
		corrupt: func(t *testing.T, f *fixture) {
			e := f.orderEvent("completed", ordercore.OrderEventType(ordercore.OrderShipped))
			f.snap.Events = slices.DeleteFunc(f.snap.Events, func(x ordercore.Event) bool { return x.Seq == e.Seq })
		},
		want: []string{verify.RuleEventReplay},
	}, {
		name: "event with a skipped version",
		corrupt: func(t *testing.T, f *fixture) {
			editEvent(t, f.orderEvent("shipped", "order.shipped"), func(d *ordercore.OrderTransitioned) { d.Version++ })
		},
		want: []string{verify.RuleEventReplay},
	}, {
		// A pricing bug writes the same wrong amount to the row and to order.placed, so
		// only the sum over the lines gives it away.
		name: "order amount does not match its lines",
		corrupt: func(t *testing.T, f *fixture) {
			f.order("paid").Amount.Amount++
			editEvent(t, f.orderEvent("paid", ordercore.EventOrderPlaced), func(d *ordercore.OrderPlaced) { d.Amount.Amount++ })
		},
		want: []string{verify.RuleOrderTotal},
	}, {
		name: "line amount is not unit price times quantity",
		corrupt: func(t *testing.T, f *fixture) {
			o := f.order("shipped")
			o.Lines[1].Amount.Amount += 7
			o.Amount.Amount += 7
			editEvent(t, f.orderEvent("shipped", ordercore.EventOrderPlaced), func(d *ordercore.OrderPlaced) { d.Amount.Amount += 7 })
		},
		want: []string{verify.RuleOrderTotal},
	}, {
		// The ledger still has the line's commit row.
		name:    "paid order with a reserved line",
		corrupt: func(t *testing.T, f *fixture) { f.order("paid").Lines[0].Reservation = ordercore.ReservationReserved },
		want:    []string{verify.RuleOrderLinesStatus, verify.RuleReservationOnce},
	}, {
		name:    "overdue pending order",
		corrupt: func(t *testing.T, f *fixture) {},
		now:     func(f *fixture) time.Time { return f.order("pending").ExpiresAt.Add(verify.ExpiryGrace + time.Second) },
		want:    []string{verify.RuleStuckOrder},
	}, {
		name:    "pending order past its deadline but within the grace",
		corrupt: func(t *testing.T, f *fixture) {},
		now:     func(f *fixture) time.Time { return f.order("pending").ExpiresAt.Add(verify.ExpiryGrace - time.Second) },
		want:    []string{},
	}, {
		name:    "pending order without a deadline",
		corrupt: func(t *testing.T, f *fixture) { f.order("pending").ExpiresAt = time.Time{} },
		want:    []string{verify.RuleStuckOrder},
	}, {
		name: "illegal transition shipped to pending_payment",
		corrupt: func(t *testing.T, f *fixture) {
			f.tick()
			f.event(ordercore.AggregateOrder, f.order("shipped").ID, ordercore.OrderEventType(ordercore.OrderPendingPayment),
				ordercore.OrderTransitioned{From: ordercore.OrderShipped, To: ordercore.OrderPendingPayment, Version: 4})
		},
		want: []string{verify.RuleEventReplay},
	}, {
		// An order the engine should have refused for lack of stock, recorded consistently
		// in the ledger, the events and the row: only the balance rule can see it.
		name: "negative available",
		corrupt: func(t *testing.T, f *fixture) {
			f.place("oversold", "u9", lineReq{"pear", f.sku("pear").Available() + 1})
		},
		want: []string{verify.RuleNegativeBalance},
	}, {
		name: "ledger row for an unknown sku",
		corrupt: func(t *testing.T, f *fixture) {
			f.snap.Ledger = append(f.snap.Ledger, ordercore.StockEntry{SKU: "ghost", Movement: ordercore.MoveRestock, DTotal: 5, At: f.now})
		},
		want: []string{verify.RuleStockConservation},
	}, {
		name: "commit row moves the wrong quantity",
		corrupt: func(t *testing.T, f *fixture) {
			f.snap.Ledger[f.ledgerRow("fulfilling", ordercore.MoveCommit, 1)].DSold++
		},
		// pear's sold no longer matches its ledger sum either.
		want: []string{verify.RuleReservationOnce, verify.RuleStockConservation},
	}, {
		name:    "duplicate event id",
		corrupt: func(t *testing.T, f *fixture) { f.snap.Events[5].ID = f.snap.Events[4].ID },
		want:    []string{verify.RuleEventSequence},
	}, {
		name: "sequence numbers out of order",
		corrupt: func(t *testing.T, f *fixture) {
			f.snap.Events[3].Seq, f.snap.Events[4].Seq = f.snap.Events[4].Seq, f.snap.Events[3].Seq
		},
		want: []string{verify.RuleEventSequence},
	}, {
		// Replay skips the unreadable restock, so pear's replayed total is short too.
		name: "event data is not JSON",
		corrupt: func(t *testing.T, f *fixture) {
			for i, e := range f.snap.Events {
				if e.Type == ordercore.EventSKURestocked {
					f.snap.Events[i].Data = json.RawMessage(`{"quantity":`)
				}
			}
		},
		want: []string{verify.RuleEventReplay, verify.RuleEventSequence},
	}, {
		name: "order row without events",
		corrupt: func(t *testing.T, f *fixture) {
			id := f.order("cancelled").ID
			f.snap.Events = slices.DeleteFunc(f.snap.Events, func(e ordercore.Event) bool { return e.AggregateID == id })
		},
		want: []string{verify.RuleEventReplay},
	}, {
		name: "events without an order row",
		corrupt: func(t *testing.T, f *fixture) {
			id := f.order("cancelled").ID
			f.snap.Orders = slices.DeleteFunc(f.snap.Orders, func(o ordercore.Order) bool { return o.ID == id })
		},
		// Its ledger rows lose their order as well.
		want: []string{verify.RuleEventReplay, verify.RuleReservationOnce},
	}, {
		// Version is also checked against the replayed history.
		name:    "order at version zero",
		corrupt: func(t *testing.T, f *fixture) { f.order("pending").Version = 0 },
		want:    []string{verify.RuleEventReplay, verify.RuleVersion},
	}, {
		name:    "order with an unknown status",
		corrupt: func(t *testing.T, f *fixture) { f.order("paid").Status = "lost" },
		want:    []string{verify.RuleEventReplay, verify.RuleOrderLinesStatus},
	}})
}

// TestCheckDeterministic: the same snapshot gives the same violations in the same order,
// so two runs of `ordercore verify` can be diffed.
func TestCheckDeterministic(t *testing.T) {
	t.Parallel()
	f := consistent(t)
	f.sku("apple").Reserved += 2
	f.sku("pear").Sold++
	f.snap.Ledger = append(f.snap.Ledger, ordercore.StockEntry{SKU: "ghost", Movement: ordercore.MoveRestock, DTotal: 1},
		ordercore.StockEntry{SKU: "phantom", Movement: ordercore.MoveRestock, DTotal: 1})
	first := verify.Check(&f.snap, f.now)
	for range 5 {
		if diff := cmp.Diff(first, verify.Check(&f.snap, f.now)); diff != "" {
			t.Fatalf("second Check differs (-first +again):\n%s", diff)
		}
	}
}

func TestReport(t *testing.T) {
	t.Parallel()
	f := consistent(t)
	clean := fmt.Sprintf("checked 3 skus, 20 orders (24 lines), %d ledger rows, %d events, %d payments, %d refunds, %d money ledger rows\nno violations\n",
		len(f.snap.Ledger), len(f.snap.Events), len(f.snap.Payments), len(f.snap.Refunds), len(f.snap.MoneyLedger))
	if got, want := report(nil, &f.snap), clean; got != want {
		t.Errorf("clean report = %q, want %q", got, want)
	}

	var vs []verify.Violation
	vs = append(vs, verify.Violation{Rule: verify.RuleVersion, Subject: "order x", Detail: "version 0, want >= 1"})
	for i := range verify.ReportPerRuleMax + 2 {
		vs = append(vs, verify.Violation{Rule: verify.RuleStockConservation, Subject: fmt.Sprintf("sku s%d", i), Detail: "total is 1, its ledger rows sum to 0"})
	}
	var want strings.Builder
	want.WriteString("checked 0 skus, 0 orders (0 lines), 0 ledger rows, 0 events, 0 payments, 0 refunds, 0 money ledger rows\n53 violations of 2 rules\n\nstock_conservation: 52\n")
	for i := range verify.ReportPerRuleMax {
		fmt.Fprintf(&want, "  sku s%d: total is 1, its ledger rows sum to 0\n", i)
	}
	want.WriteString("  ... and 2 more\n\nversion: 1\n  order x: version 0, want >= 1\n")
	if diff := cmp.Diff(want.String(), report(vs, &ordercore.Snapshot{})); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}
