package verify

import (
	"cmp"
	"slices"
	"strconv"

	"ordercore"
)

// balance is a SKU's three stock balances.
type balance struct{ total, reserved, sold int64 }

// stockConservation: for every SKU, total, reserved and sold equal the sums of d_total,
// d_reserved and d_sold over its ledger rows. The ledger is the truth and the skus row its
// projection (DESIGN "Ledgers, not counters"); a difference means units appeared or
// vanished without a record, and nobody can say which number is right. Ledger rows for a
// SKU that does not exist, rows of an unknown movement, and restock rows that do anything
// but raise total for no order are violations too.
func (c *checker) stockConservation() {
	sums := make(map[string]*balance, len(c.skus))
	unknown := map[string]int{}
	for i, e := range c.snap.Ledger {
		switch e.Movement {
		case ordercore.MoveRestock:
			if e.OrderID != "" || e.HoldID != "" || e.LineNo != 0 || e.DTotal <= 0 || e.DReserved != 0 || e.DSold != 0 {
				c.add(RuleStockConservation, ledgerSubject(i), "restock of sku %s must only raise total, for no order or hold: %s", e.SKU, deltas(e))
			}
		case ordercore.MoveReserve, ordercore.MoveCommit, ordercore.MoveRelease, ordercore.MoveRevive, ordercore.MoveReturn:
			// reservationOnce checks their shape against the order line.
		default:
			c.add(RuleStockConservation, ledgerSubject(i), "unknown movement %q on sku %s", e.Movement, e.SKU)
		}
		if _, ok := c.skus[e.SKU]; !ok {
			unknown[e.SKU]++
			continue
		}
		b := sums[e.SKU]
		if b == nil {
			b = &balance{}
			sums[e.SKU] = b
		}
		b.total += e.DTotal
		b.reserved += e.DReserved
		b.sold += e.DSold
	}
	for i := range c.snap.SKUs {
		s := &c.snap.SKUs[i]
		if c.skus[s.ID] != s {
			continue // a duplicate row, already reported
		}
		b := sums[s.ID]
		if b == nil {
			b = &balance{}
		}
		c.compareBalance(RuleStockConservation, *s, *b, "its ledger rows sum to")
	}
	for _, id := range sortedKeys(unknown) {
		c.add(RuleStockConservation, skuSubject(id), "%d ledger rows move this sku, which is not in the skus table", unknown[id])
	}
}

// compareBalance reports each of s's balances that differs from want.
func (c *checker) compareBalance(rule string, s ordercore.SKU, want balance, source string) {
	for _, f := range []struct {
		name      string
		got, want int64
	}{{"total", s.Total, want.total}, {"reserved", s.Reserved, want.reserved}, {"sold", s.Sold, want.sold}} {
		if f.got != f.want {
			c.add(rule, skuSubject(s.ID), "%s is %d, %s %d", f.name, f.got, source, f.want)
		}
	}
}

// negativeBalance: total, reserved and sold are never negative, and neither is
// available = total - reserved - sold. A negative available is overselling (P1): more
// units promised to shoppers than the shop has.
func (c *checker) negativeBalance() {
	for _, s := range c.snap.SKUs {
		if s.Total < 0 || s.Reserved < 0 || s.Sold < 0 {
			c.add(RuleNegativeBalance, skuSubject(s.ID), "negative balance: total %d, reserved %d, sold %d", s.Total, s.Reserved, s.Sold)
		}
		if a := s.Available(); a < 0 {
			c.add(RuleNegativeBalance, skuSubject(s.ID), "oversold: available = %d - %d - %d = %d", s.Total, s.Reserved, s.Sold, a)
		}
	}
}

// lineKey names one reservation: an order line (line numbers start at 1).
type lineKey struct {
	order string
	line  int
}

// lineRows are the ledger rows (indexes into Snapshot.Ledger) of one reservation.
type lineRows struct{ reserve, commit, release, revive, ret []int }

// reservationOnce: every line of every order has exactly one reserve row and at most one
// commit or release row (DESIGN: "Each reservation resolves at most once"); the line's
// Reservation says which (reserved: none, committed: one commit, released: one release);
// each row is for the line's SKU and moves exactly its quantity with the signs of its
// movement (reserve +reserved; commit -reserved +sold; release -reserved). A double
// release would hand the same units back twice, a double commit would sell them twice.
// Reservation rows of orders or lines that do not exist are violations too. A released
// line may be revived once (late money sold it again: +sold) and is then committed. A
// committed line may be returned once (a refund put it back on the shelf: -sold).
func (c *checker) reservationOnce() {
	rows := map[lineKey]*lineRows{}
	for i, e := range c.snap.Ledger {
		if e.Movement == ordercore.MoveRestock || e.HoldID != "" {
			continue // a hold's row is hold_once's
		}
		if e.OrderID == "" || e.LineNo < 1 {
			c.add(RuleReservationOnce, ledgerSubject(i), "%s of sku %s names no order line (order %q, line %d)", e.Movement, e.SKU, e.OrderID, e.LineNo)
			continue
		}
		k := lineKey{e.OrderID, e.LineNo}
		r := rows[k]
		if r == nil {
			r = &lineRows{}
			rows[k] = r
		}
		switch e.Movement {
		case ordercore.MoveReserve:
			r.reserve = append(r.reserve, i)
		case ordercore.MoveCommit:
			r.commit = append(r.commit, i)
		case ordercore.MoveRevive:
			r.revive = append(r.revive, i)
		case ordercore.MoveReturn:
			r.ret = append(r.ret, i)
		default:
			r.release = append(r.release, i)
		}
	}
	for _, o := range c.snap.Orders {
		for j, l := range o.Lines {
			k := lineKey{o.ID, j + 1}
			r := rows[k]
			if r == nil {
				r = &lineRows{}
			}
			delete(rows, k)
			c.checkLineRows(o.ID, j+1, l, r)
		}
	}
	orphans := make([]lineKey, 0, len(rows))
	for k := range rows {
		orphans = append(orphans, k)
	}
	slices.SortFunc(orphans, func(a, b lineKey) int {
		return cmp.Or(cmp.Compare(a.order, b.order), cmp.Compare(a.line, b.line))
	})
	for _, k := range orphans {
		r := rows[k]
		n := len(r.reserve) + len(r.commit) + len(r.release) + len(r.revive) + len(r.ret)
		if _, ok := c.orders[k.order]; ok {
			c.add(RuleReservationOnce, lineSubject(k.order, k.line), "%d ledger rows move a line the order does not have", n)
		} else {
			c.add(RuleReservationOnce, lineSubject(k.order, k.line), "%d ledger rows move a line of an order that is not in the orders table", n)
		}
	}
}

func (c *checker) checkLineRows(orderID string, no int, l ordercore.Line, r *lineRows) {
	subj := lineSubject(orderID, no)
	if len(r.reserve) != 1 {
		c.add(RuleReservationOnce, subj, "has %d reserve rows in the ledger, want exactly 1", len(r.reserve))
	}
	resolved := len(r.commit) + len(r.release)
	if len(r.ret) > 1 || len(r.ret) == 1 && l.Reservation != ordercore.ReservationCommitted {
		c.add(RuleReservationOnce, subj, "is %s with %d return rows, want a return only once, of a sold line", l.Reservation, len(r.ret))
	}
	if len(r.revive) > 1 || len(r.revive) == 1 && len(r.release) != 1 {
		c.add(RuleReservationOnce, subj, "has %d revive rows and %d release rows, want a revive only once, after a release", len(r.revive), len(r.release))
	} else if resolved > 1 {
		c.add(RuleReservationOnce, subj, "is resolved %d times (%d commit, %d release rows), want at most once", resolved, len(r.commit), len(r.release))
	} else {
		var want [2]int // commit, release rows the status implies
		switch l.Reservation {
		case ordercore.ReservationReserved:
		case ordercore.ReservationCommitted:
			want = [2]int{1, 0}
			if len(r.revive) == 1 {
				want = [2]int{0, 1} // released, then sold again by late money
			}
		case ordercore.ReservationReleased:
			want = [2]int{0, 1}
		default:
			c.add(RuleReservationOnce, subj, "has unknown reservation status %q", l.Reservation)
			want = [2]int{len(r.commit), len(r.release)}
		}
		if l.Reservation == ordercore.ReservationReleased && len(r.revive) > 0 {
			c.add(RuleReservationOnce, subj, "is released but the ledger revives it")
		}
		if got := [2]int{len(r.commit), len(r.release)}; got != want {
			c.add(RuleReservationOnce, subj, "is %s but the ledger has %d commit and %d release rows for it", l.Reservation, got[0], got[1])
		}
	}
	// The deltas of each movement are stated here again rather than taken from
	// ordercore.NewStockEntry: a checker that reused the code it checks would pass
	// whatever that code got wrong.
	q := l.Quantity
	for _, m := range []struct {
		idx  []int
		want balance
	}{{r.reserve, balance{0, q, 0}}, {r.commit, balance{0, -q, q}}, {r.release, balance{0, -q, 0}}, {r.revive, balance{0, 0, q}}, {r.ret, balance{0, 0, -q}}} {
		for _, i := range m.idx {
			e := c.snap.Ledger[i]
			if e.SKU != l.SKU {
				c.add(RuleReservationOnce, subj, "%s row (ledger row %d) moves sku %s, the line is for %s", e.Movement, i+1, e.SKU, l.SKU)
			}
			if got := (balance{e.DTotal, e.DReserved, e.DSold}); got != m.want {
				c.add(RuleReservationOnce, subj, "%s row (ledger row %d) moves %s, want %s for quantity %d",
					e.Movement, i+1, deltas(e), deltas(ordercore.StockEntry{DTotal: m.want.total, DReserved: m.want.reserved, DSold: m.want.sold}), q)
			}
		}
	}
}

func deltas(e ordercore.StockEntry) string {
	return "total " + signed(e.DTotal) + ", reserved " + signed(e.DReserved) + ", sold " + signed(e.DSold)
}

func signed(n int64) string {
	if n >= 0 {
		return "+" + strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
