package order

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
)

// outcome is what Transition should say about one (status, command) cell.
type outcome struct {
	next  ordercore.OrderStatus // the new status; for stale and illegal, the old one
	stale bool
	code  string // ordercore.ErrorCode of the error; "" when there is none
}

func moves(s ordercore.OrderStatus) outcome { return outcome{next: s} }

// ignored and illegal are filled in with the "from" status when the table is checked, so
// that the cells below read as the intent only.
var (
	ignored = outcome{stale: true}
	illegal = outcome{code: ordercore.EIllegalTransition}
)

// wantTable spells out every cell of the order state machine, including the illegal ones,
// so that a change to the machine's table is a deliberate change here too.
var wantTable = map[ordercore.OrderStatus]map[Command]outcome{
	ordercore.OrderPendingPayment: {
		Pay:             moves(ordercore.OrderPaid),
		Cancel:          moves(ordercore.OrderCancelled),
		Expire:          moves(ordercore.OrderCancelled),
		FailPayment:     moves(ordercore.OrderCancelled),
		StartFulfilment: illegal,
		Ship:            illegal,
		Complete:        illegal,
		RequestRefund:   illegal,
		RefundAll:       illegal,
		RefundPart:      illegal,
		Revive:          illegal, // a pending order is paid by Pay
	},
	ordercore.OrderPaid: {
		Pay:             ignored, // a second notification of the same payment
		Cancel:          illegal, // money was taken: only a refund undoes a paid order
		Expire:          ignored, // the expiry sweeper lost the race with the payment
		FailPayment:     ignored,
		StartFulfilment: moves(ordercore.OrderFulfilling),
		// DESIGN.md draws paid -> fulfilling -> shipped; the machine also lets a merchant
		// ship straight from paid.
		Ship:          moves(ordercore.OrderShipped),
		Complete:      illegal,
		RequestRefund: moves(ordercore.OrderRefunding),
		RefundAll:     illegal,
		RefundPart:    illegal,
		Revive:        ignored,
	},
	ordercore.OrderFulfilling: {
		Pay:             ignored,
		Cancel:          illegal,
		Expire:          ignored,
		FailPayment:     ignored,
		StartFulfilment: ignored,
		Ship:            moves(ordercore.OrderShipped),
		Complete:        illegal,
		RequestRefund:   moves(ordercore.OrderRefunding),
		RefundAll:       illegal,
		RefundPart:      illegal,
		Revive:          ignored,
	},
	ordercore.OrderShipped: {
		Pay:             ignored,
		Cancel:          illegal,
		Expire:          ignored,
		FailPayment:     ignored,
		StartFulfilment: ignored,
		Ship:            ignored,
		Complete:        moves(ordercore.OrderCompleted),
		RequestRefund:   illegal,
		RefundAll:       illegal,
		RefundPart:      illegal,
		Revive:          ignored,
	},
	ordercore.OrderCompleted: {
		Pay:             ignored,
		Cancel:          illegal,
		Expire:          ignored,
		FailPayment:     ignored,
		StartFulfilment: ignored,
		Ship:            ignored,
		Complete:        ignored,
		RequestRefund:   illegal,
		RefundAll:       illegal,
		RefundPart:      illegal,
		Revive:          ignored,
	},
	ordercore.OrderCancelled: {
		// A payment that arrives after the order closed is not absorbed here: the engine
		// must see the error and either revive the order or refund the money.
		Pay:             illegal,
		Cancel:          ignored,
		Expire:          ignored,
		FailPayment:     ignored,
		StartFulfilment: illegal,
		Ship:            illegal,
		Complete:        illegal,
		RequestRefund:   illegal,
		RefundAll:       illegal,
		RefundPart:      illegal,
		Revive:          moves(ordercore.OrderPaid), // late money, when the stock is there again
	},
	ordercore.OrderRefunding: {
		Pay:             ignored,
		Cancel:          illegal,
		Expire:          ignored,
		FailPayment:     ignored,
		StartFulfilment: illegal,
		Ship:            illegal,
		Complete:        illegal,
		RequestRefund:   ignored,
		RefundAll:       moves(ordercore.OrderRefunded),
		RefundPart:      moves(ordercore.OrderPartiallyRefunded),
		Revive:          ignored,
	},
	ordercore.OrderRefunded: {
		Pay:             ignored,
		Cancel:          illegal,
		Expire:          ignored,
		FailPayment:     ignored,
		StartFulfilment: illegal,
		Ship:            illegal,
		Complete:        illegal,
		RequestRefund:   ignored,
		RefundAll:       ignored,
		RefundPart:      ignored,
		Revive:          ignored,
	},
	ordercore.OrderPartiallyRefunded: {
		Pay:             ignored,
		Cancel:          illegal,
		Expire:          ignored,
		FailPayment:     ignored,
		StartFulfilment: illegal,
		Ship:            illegal,
		Complete:        illegal,
		RequestRefund:   moves(ordercore.OrderRefunding), // refund the rest
		RefundAll:       illegal,
		RefundPart:      illegal,
		Revive:          ignored,
	},
}

func TestTransitionTable(t *testing.T) {
	t.Parallel()
	// The expected table must be as complete as the vocabulary, or a new status or
	// command would slip through untested.
	if got, want := len(wantTable), len(ordercore.OrderStatuses); got != want {
		t.Fatalf("wantTable has %d statuses, ordercore.OrderStatuses has %d", got, want)
	}
	for _, from := range ordercore.OrderStatuses {
		row, ok := wantTable[from]
		if !ok {
			t.Fatalf("wantTable has no row for status %q", from)
		}
		if got, want := len(row), len(Commands); got != want {
			t.Fatalf("wantTable[%q] has %d commands, Commands has %d", from, got, want)
		}
		for _, c := range Commands {
			want, ok := row[c]
			if !ok {
				t.Fatalf("wantTable[%q] has no cell for command %q", from, c)
			}
			if want.stale || want.code != "" {
				want.next = from
			}
			next, isStale, err := Transition(from, c)
			got := outcome{next: next, stale: isStale, code: ordercore.ErrorCode(err)}
			if got != want {
				t.Errorf("Transition(%q, %q) = %+v (err %v), want %+v", from, c, got, err, want)
			}
		}
	}
}

func TestTransitionUnknown(t *testing.T) {
	t.Parallel()
	// Input from outside (a corrupted row, a new command an old binary does not know) must
	// be refused, never treated as a no-op.
	tests := []struct {
		from ordercore.OrderStatus
		c    Command
	}{
		{"", Pay},
		{"paying", Pay},
		{ordercore.OrderPendingPayment, ""},
		{ordercore.OrderPendingPayment, "PAY"},
		{ordercore.OrderPaid, "teleport"},
	}
	for _, tt := range tests {
		next, isStale, err := Transition(tt.from, tt.c)
		if code := ordercore.ErrorCode(err); code != ordercore.EIllegalTransition || isStale || next != tt.from {
			t.Errorf("Transition(%q, %q) = %q, stale %v, code %q; want %q, not stale, code %q",
				tt.from, tt.c, next, isStale, code, tt.from, ordercore.EIllegalTransition)
		}
	}
}

func TestTerminalStatusesNeverMove(t *testing.T) {
	t.Parallel()
	for _, from := range ordercore.OrderStatuses {
		var exits []Command
		for _, c := range Commands {
			next, _, err := Transition(from, c)
			if err == nil && next != from {
				exits = append(exits, c)
			}
		}
		// Terminal() is the promise "no transition ever leaves s": it must agree with the
		// table in both directions, or the expiry and sync sweepers (which look for orders
		// needing a next action, P3) would skip live orders or chase finished ones.
		if from == ordercore.OrderCancelled && slices.Equal(exits, []Command{Revive}) {
			continue // late money's one way out, documented on Terminal
		}
		if from.Terminal() && len(exits) > 0 {
			t.Errorf("terminal status %q leaves under %v", from, exits)
		}
		if !from.Terminal() && len(exits) == 0 {
			t.Errorf("status %q is not Terminal() but no command moves it", from)
		}
	}
	for _, s := range []ordercore.OrderStatus{ordercore.OrderCompleted, ordercore.OrderCancelled, ordercore.OrderRefunded} {
		if !s.Terminal() {
			t.Errorf("%q.Terminal() = false, want true", s)
		}
		o := placed()
		o.Status = s
		for _, c := range Commands {
			if c == Revive && s == ordercore.OrderCancelled {
				continue
			}
			got, _, _ := Apply(o, c, ordercore.CancelByUser, later)
			if diff := cmp.Diff(o, got); diff != "" {
				t.Errorf("Apply(%s order, %s) changed it (-before +after):\n%s", s, c, diff)
			}
		}
	}
}

var (
	placedAt = time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	later    = placedAt.Add(time.Minute)
)

// placed returns a freshly placed order: pending payment, version 1, two reserved lines.
func placed() ordercore.Order {
	price := func(a int64) ordercore.Money { return ordercore.Money{Amount: a, Currency: "USD"} }
	return ordercore.Order{
		ID:     "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b",
		UserID: "u1",
		Status: ordercore.OrderPendingPayment,
		Amount: price(2*1500 + 250),
		Lines: []ordercore.Line{
			{SKU: "mug", Quantity: 2, UnitPrice: price(1500), Amount: price(3000), Reservation: ordercore.ReservationReserved},
			{SKU: "pen", Quantity: 1, UnitPrice: price(250), Amount: price(250), Reservation: ordercore.ReservationReserved},
		},
		ExpiresAt: placedAt.Add(15 * time.Minute),
		Version:   1,
		CreatedAt: placedAt,
		UpdatedAt: placedAt,
	}
}

// withStatus returns a placed order moved to s the way the machine would have left it.
func withStatus(s ordercore.OrderStatus, version int64, res ordercore.ReservationStatus) ordercore.Order {
	o := placed()
	o.Status = s
	o.Version = version
	for i := range o.Lines {
		o.Lines[i].Reservation = res
	}
	return o
}

func TestApply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		before    ordercore.Order
		c         Command
		reason    string
		want      func(o *ordercore.Order) // edits the before order into the expected one
		wantStale bool
		wantCode  string
	}{
		{
			name: "paid commits every line", before: placed(), c: Pay,
			want: func(o *ordercore.Order) {
				o.Status, o.Version, o.UpdatedAt = ordercore.OrderPaid, 2, later
				o.Lines[0].Reservation = ordercore.ReservationCommitted
				o.Lines[1].Reservation = ordercore.ReservationCommitted
			},
		},
		{
			name: "cancel releases every line and keeps the reason", before: placed(), c: Cancel, reason: ordercore.CancelByUser,
			want: func(o *ordercore.Order) {
				o.Status, o.Version, o.UpdatedAt = ordercore.OrderCancelled, 2, later
				o.CancelReason = ordercore.CancelByUser
				o.Lines[0].Reservation = ordercore.ReservationReleased
				o.Lines[1].Reservation = ordercore.ReservationReleased
			},
		},
		{
			name: "expire cancels with timeout", before: placed(), c: Expire, reason: ordercore.CancelTimeout,
			want: func(o *ordercore.Order) {
				o.Status, o.Version, o.UpdatedAt = ordercore.OrderCancelled, 2, later
				o.CancelReason = ordercore.CancelTimeout
				o.Lines[0].Reservation = ordercore.ReservationReleased
				o.Lines[1].Reservation = ordercore.ReservationReleased
			},
		},
		{
			name: "failed payment cancels", before: placed(), c: FailPayment, reason: ordercore.CancelPaymentFailed,
			want: func(o *ordercore.Order) {
				o.Status, o.Version, o.UpdatedAt = ordercore.OrderCancelled, 2, later
				o.CancelReason = ordercore.CancelPaymentFailed
				o.Lines[0].Reservation = ordercore.ReservationReleased
				o.Lines[1].Reservation = ordercore.ReservationReleased
			},
		},
		{
			// A reason only means something for a cancellation; other moves ignore it.
			name: "ship leaves lines and reason alone", before: withStatus(ordercore.OrderFulfilling, 3, ordercore.ReservationCommitted),
			c: Ship, reason: ordercore.CancelByUser,
			want: func(o *ordercore.Order) { o.Status, o.Version, o.UpdatedAt = ordercore.OrderShipped, 4, later },
		},
		{
			name: "refund leaves committed lines", before: withStatus(ordercore.OrderPaid, 2, ordercore.ReservationCommitted),
			c:    RequestRefund,
			want: func(o *ordercore.Order) { o.Status, o.Version, o.UpdatedAt = ordercore.OrderRefunding, 3, later },
		},
		{
			name: "second payment is stale", before: withStatus(ordercore.OrderPaid, 2, ordercore.ReservationCommitted),
			c: Pay, wantStale: true,
		},
		{
			name: "expiry after payment is stale", before: withStatus(ordercore.OrderShipped, 4, ordercore.ReservationCommitted),
			c: Expire, reason: ordercore.CancelTimeout, wantStale: true,
		},
		{
			name: "second cancel is stale and keeps the first reason",
			before: func() ordercore.Order {
				o := withStatus(ordercore.OrderCancelled, 2, ordercore.ReservationReleased)
				o.CancelReason = ordercore.CancelTimeout
				return o
			}(),
			c: Cancel, reason: ordercore.CancelByUser, wantStale: true,
		},
		{
			name: "cancel after payment is illegal", before: withStatus(ordercore.OrderPaid, 2, ordercore.ReservationCommitted),
			c: Cancel, reason: ordercore.CancelByUser, wantCode: ordercore.EIllegalTransition,
		},
		{
			name: "ship before payment is illegal", before: placed(), c: Ship, wantCode: ordercore.EIllegalTransition,
		},
		{
			name: "payment after cancel is illegal", before: withStatus(ordercore.OrderCancelled, 2, ordercore.ReservationReleased),
			c: Pay, wantCode: ordercore.EIllegalTransition,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := clone(tt.before)
			want := clone(tt.before)
			if tt.want != nil {
				tt.want(&want)
			}
			got, isStale, err := Apply(tt.before, tt.c, tt.reason, later)
			if code := ordercore.ErrorCode(err); code != tt.wantCode || isStale != tt.wantStale {
				t.Fatalf("Apply(%s, %s): stale %v, code %q (err %v); want stale %v, code %q",
					tt.before.Status, tt.c, isStale, code, err, tt.wantStale, tt.wantCode)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Apply(%s, %s) order mismatch (-want +got):\n%s", tt.before.Status, tt.c, diff)
			}
			if d := got.Version - tt.before.Version; tt.want != nil && d != 1 {
				t.Errorf("Apply(%s, %s) raised Version by %d, want exactly 1", tt.before.Status, tt.c, d)
			}
			// Apply returns a new order; the caller's copy (which the engine may still
			// hold, e.g. to roll back a failed batch) must not change under it.
			if diff := cmp.Diff(before, tt.before); diff != "" {
				t.Errorf("Apply(%s, %s) modified its input (-before +after):\n%s", tt.before.Status, tt.c, diff)
			}
		})
	}
}

func clone(o ordercore.Order) ordercore.Order {
	o.Lines = slices.Clone(o.Lines)
	return o
}

// reachableFrom returns every status reachable from start by moves the machine makes,
// computed by breadth-first search over Transition itself rather than a second copy of
// the table.
func reachableFrom(start ordercore.OrderStatus) map[ordercore.OrderStatus]bool {
	seen := map[ordercore.OrderStatus]bool{start: true}
	queue := []ordercore.OrderStatus{start}
	for len(queue) > 0 {
		from := queue[0]
		queue = queue[1:]
		for _, c := range Commands {
			next, isStale, err := Transition(from, c)
			if err != nil || isStale || seen[next] {
				continue
			}
			seen[next] = true
			queue = append(queue, next)
		}
	}
	return seen
}

// cancelReasons gives the reason each cancelling command is sent with, as the engine would.
var cancelReasons = map[Command]string{
	Cancel:      ordercore.CancelByUser,
	Expire:      ordercore.CancelTimeout,
	FailPayment: ordercore.CancelPaymentFailed,
}

// commandBytes encodes commands the way FuzzMachine decodes them.
func commandBytes(cs ...Command) []byte {
	b := make([]byte, len(cs))
	for i, c := range cs {
		b[i] = byte(slices.Index(Commands, c))
	}
	return b
}

// FuzzMachine runs arbitrary command sequences against a fresh order and checks the
// invariants the rest of ordercore builds on: statuses stay in the reachable graph,
// version counts applied transitions, terminal means terminal, and every reservation
// resolves exactly once and the right way (P1 depends on it).
func FuzzMachine(f *testing.F) {
	f.Add([]byte{})
	f.Add(commandBytes(Pay, Pay, StartFulfilment, Ship, Complete, Complete))
	f.Add(commandBytes(Pay, Ship, Expire, Complete, Cancel))
	f.Add(commandBytes(Cancel, Cancel, Pay, Expire))
	f.Add(commandBytes(Expire, Pay))
	f.Add(commandBytes(Pay, RequestRefund, RefundPart, RequestRefund, RefundAll, RefundPart))
	f.Add(commandBytes(Pay, StartFulfilment, RequestRefund, Cancel, RefundAll))
	f.Add([]byte{255, 128, 37, 10, 9})
	f.Add(commandBytes(Expire, Revive, Revive, Cancel, RequestRefund, RefundAll))

	reachable := reachableFrom(ordercore.OrderPendingPayment)
	f.Fuzz(func(t *testing.T, input []byte) {
		o := placed()
		var (
			everPaid        bool
			cancelledUnpaid bool
			cancelReason    string
			terminal        ordercore.OrderStatus // the first terminal status reached, if any
		)
		for step, b := range input {
			c := Commands[int(b)%len(Commands)]
			at := placedAt.Add(time.Duration(step+1) * time.Second)
			before := clone(o)
			next, isStale, err := Apply(o, c, cancelReasons[c], at)
			applied := err == nil && !isStale
			if err != nil && ordercore.ErrorCode(err) != ordercore.EIllegalTransition {
				t.Fatalf("step %d: Apply(%s, %s) error %v, want only %s errors", step, before.Status, c, err, ordercore.EIllegalTransition)
			}
			if err != nil && isStale {
				t.Fatalf("step %d: Apply(%s, %s) is both stale and an error", step, before.Status, c)
			}
			o = next

			if !reachable[o.Status] {
				t.Fatalf("step %d: %s moved the order to %q, not reachable from %s", step, c, o.Status, ordercore.OrderPendingPayment)
			}
			if applied {
				if o.Version != before.Version+1 {
					t.Fatalf("step %d: applied %s moved version %d -> %d, want +1", step, c, before.Version, o.Version)
				}
				if !o.UpdatedAt.Equal(at) {
					t.Fatalf("step %d: applied %s left UpdatedAt %v, want %v", step, c, o.UpdatedAt, at)
				}
			} else if !reflect.DeepEqual(before, o) {
				// DeepEqual on every step, cmp only to explain a failure: cmp.Diff in
				// this loop cut the fuzzer's throughput several times over.
				diff := cmp.Diff(before, o)
				t.Fatalf("step %d: %s (stale %v, err %v) changed the order (-before +after):\n%s", step, c, isStale, err, diff)
			}
			if applied && c == Revive {
				// Late money's one way out of cancelled (see Terminal): the order is paid
				// and its released stock sold again.
				if before.Status != ordercore.OrderCancelled || o.Status != ordercore.OrderPaid {
					t.Fatalf("step %d: revive moved %s to %s, want cancelled to paid", step, before.Status, o.Status)
				}
				terminal, cancelReason = "", ""
			}
			if terminal != "" && o.Status != terminal {
				t.Fatalf("step %d: %s moved the order out of terminal status %s to %s", step, c, terminal, o.Status)
			}
			if o.Status.Terminal() {
				terminal = o.Status
			}

			switch o.Status {
			case ordercore.OrderPaid:
				everPaid = true
			case ordercore.OrderCancelled:
				if everPaid {
					t.Fatalf("step %d: %s cancelled an order that was paid", step, c)
				}
				if applied {
					cancelledUnpaid = true
					cancelReason = cancelReasons[c]
				}
			}
			want := ordercore.ReservationReserved
			switch {
			case everPaid:
				want = ordercore.ReservationCommitted
			case cancelledUnpaid:
				want = ordercore.ReservationReleased
			case o.Status != ordercore.OrderPendingPayment:
				t.Fatalf("step %d: order is %s without having been paid or cancelled", step, o.Status)
			}
			for i, l := range o.Lines {
				if l.Reservation != want {
					t.Fatalf("step %d: after %s the order is %s and line %d is %s, want %s", step, c, o.Status, i, l.Reservation, want)
				}
			}
			if o.CancelReason != cancelReason {
				t.Fatalf("step %d: CancelReason = %q, want %q", step, o.CancelReason, cancelReason)
			}
		}
	})
}
