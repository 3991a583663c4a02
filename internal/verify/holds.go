package verify

import (
	"cmp"
	"fmt"
	"slices"

	"ordercore"
	"ordercore/internal/limit"
)

// Stock holds (ordercore's stock as a TCC participant) are checked like order
// reservations: their ledger rows are part of stock_conservation's sums already; hold_once
// is reservation_once for hold lines; hold_barrier checks that a hold and its branch's
// barrier rows tell the same story, which is what keeps a hold from hanging (reserved
// after its cancel) and a branch from taking effect twice.

const (
	// RuleHoldOnce: every line of every stock hold is reserved exactly once and resolved
	// at most once, as the hold's status says (reserved: no resolution, committed: one
	// commit, released: one release), by ledger rows that move exactly the line's quantity
	// of its SKU. A hold has 1..limit.LinesPerOrderMax lines of quantity
	// 1..limit.QuantityMax and one hold per branch; ledger rows naming a hold (or a hold
	// line) that does not exist, naming an order and a hold at once, or moving a hold by
	// anything but reserve, commit and release are violations too.
	RuleHoldOnce = "hold_once"
	// RuleHoldBarrier: a hold agrees with its branch's barrier rows. A hold exists exactly
	// when the branch's try row was written by the try (reason try); a reserved hold has
	// neither a cancel nor a confirm row (a cancel recorded over a reservation that stays
	// is the hanging case the barrier exists to prevent); a released hold has its cancel
	// row and no confirm row; a committed hold has its confirm row and no cancel row. A
	// branch without a hold has a try row only as its cancel's (reason cancel, with the
	// cancel row: a null compensation) and no confirm row. Every row is a TCC row whose
	// reason is its own op, or cancel for a try row.
	RuleHoldBarrier = "hold_barrier"
)

func holdSubject(id string) string { return "hold " + id }
func holdLineSubject(id string, no int) string {
	return fmt.Sprintf("hold %s line %d", id, no)
}
func branchSubject(k ordercore.BranchKey) string {
	return fmt.Sprintf("branch %q/%q", k.GID, k.BranchID)
}

// holdRows are the ledger rows (indexes into Snapshot.Ledger) of one hold line.
type holdRows struct{ reserve, commit, release []int }

// holdOnce checks RuleHoldOnce.
func (c *checker) holdOnce() {
	rows := map[lineKey]*holdRows{}
	for i, e := range c.snap.Ledger {
		if e.HoldID == "" {
			continue
		}
		switch {
		case e.OrderID != "":
			c.add(RuleHoldOnce, ledgerSubject(i), "%s of sku %s names order %s and hold %s; a row names one reservation", e.Movement, e.SKU, e.OrderID, e.HoldID)
			continue
		case e.LineNo < 1:
			c.add(RuleHoldOnce, ledgerSubject(i), "%s of sku %s names hold %s but no line (line %d)", e.Movement, e.SKU, e.HoldID, e.LineNo)
			continue
		}
		k := lineKey{e.HoldID, e.LineNo}
		r := rows[k]
		if r == nil {
			r = &holdRows{}
			rows[k] = r
		}
		switch e.Movement {
		case ordercore.MoveReserve:
			r.reserve = append(r.reserve, i)
		case ordercore.MoveCommit:
			r.commit = append(r.commit, i)
		case ordercore.MoveRelease:
			r.release = append(r.release, i)
		default:
			c.add(RuleHoldOnce, ledgerSubject(i), "%s of sku %s for hold %s: a hold only reserves, commits and releases", e.Movement, e.SKU, e.HoldID)
		}
	}
	ids := map[string]bool{}
	branches := map[ordercore.BranchKey]string{}
	for _, h := range c.snap.Holds {
		if ids[h.ID] {
			c.add(RuleHoldOnce, holdSubject(h.ID), "appears twice in the holds table")
			continue
		}
		ids[h.ID] = true
		k := ordercore.BranchKey{GID: h.GID, BranchID: h.BranchID}
		if other, dup := branches[k]; dup {
			c.add(RuleHoldOnce, holdSubject(h.ID), "holds stock for %s, as hold %s does: a branch's try takes effect once", branchSubject(k), other)
		}
		branches[k] = h.ID
		c.checkHold(h)
		for j, l := range h.Lines {
			k := lineKey{h.ID, j + 1}
			r := rows[k]
			if r == nil {
				r = &holdRows{}
			}
			delete(rows, k)
			c.checkHoldLineRows(h, j+1, l, r)
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
		n := len(r.reserve) + len(r.commit) + len(r.release)
		if ids[k.order] {
			c.add(RuleHoldOnce, holdLineSubject(k.order, k.line), "%d ledger rows move a line the hold does not have", n)
		} else {
			c.add(RuleHoldOnce, holdLineSubject(k.order, k.line), "%d ledger rows move a line of a hold that is not in the holds table", n)
		}
	}
}

// checkHold checks a hold's own fields.
func (c *checker) checkHold(h ordercore.StockHold) {
	subj := holdSubject(h.ID)
	switch h.Status {
	case ordercore.ReservationReserved, ordercore.ReservationCommitted, ordercore.ReservationReleased:
	default:
		c.add(RuleHoldOnce, subj, "has unknown status %q", h.Status)
	}
	if n := len(h.Lines); n < 1 || n > limit.LinesPerOrderMax {
		c.add(RuleHoldOnce, subj, "has %d lines, want 1..%d", n, limit.LinesPerOrderMax)
	}
	for j, l := range h.Lines {
		if l.Quantity < 1 || l.Quantity > limit.QuantityMax {
			c.add(RuleHoldOnce, holdLineSubject(h.ID, j+1), "quantity %d is outside 1..%d", l.Quantity, limit.QuantityMax)
		}
	}
}

// checkHoldLineRows compares one hold line's ledger rows with the hold's status. The
// deltas of each movement are stated again here, as in checkLineRows, rather than taken
// from the code that writes them.
func (c *checker) checkHoldLineRows(h ordercore.StockHold, no int, l ordercore.HoldLine, r *holdRows) {
	subj := holdLineSubject(h.ID, no)
	if len(r.reserve) != 1 {
		c.add(RuleHoldOnce, subj, "has %d reserve rows in the ledger, want exactly 1", len(r.reserve))
	}
	if resolved := len(r.commit) + len(r.release); resolved > 1 {
		c.add(RuleHoldOnce, subj, "is resolved %d times (%d commit, %d release rows), want at most once", resolved, len(r.commit), len(r.release))
	} else {
		var want [2]int
		switch h.Status {
		case ordercore.ReservationCommitted:
			want = [2]int{1, 0}
		case ordercore.ReservationReleased:
			want = [2]int{0, 1}
		}
		if got := [2]int{len(r.commit), len(r.release)}; got != want {
			c.add(RuleHoldOnce, subj, "hold is %s but the ledger has %d commit and %d release rows for the line", h.Status, got[0], got[1])
		}
	}
	q := l.Quantity
	for _, m := range []struct {
		idx  []int
		want balance
	}{{r.reserve, balance{0, q, 0}}, {r.commit, balance{0, -q, q}}, {r.release, balance{0, -q, 0}}} {
		for _, i := range m.idx {
			e := c.snap.Ledger[i]
			if e.SKU != l.SKU {
				c.add(RuleHoldOnce, subj, "%s row (ledger row %d) moves sku %s, the line is for %s", e.Movement, i+1, e.SKU, l.SKU)
			}
			if got := (balance{e.DTotal, e.DReserved, e.DSold}); got != m.want {
				c.add(RuleHoldOnce, subj, "%s row (ledger row %d) moves %s, want %s for quantity %d",
					e.Movement, i+1, deltas(e), deltas(ordercore.StockEntry{DTotal: m.want.total, DReserved: m.want.reserved, DSold: m.want.sold}), q)
			}
		}
	}
}

// holdBarrier checks RuleHoldBarrier.
func (c *checker) holdBarrier() {
	type branchRows map[string]string // op -> reason
	rows := map[ordercore.BranchKey]branchRows{}
	var keys []ordercore.BranchKey
	for _, r := range c.snap.Barriers {
		k := ordercore.BranchKey{GID: r.GID, BranchID: r.BranchID}
		subj := branchSubject(k)
		if r.TransType != ordercore.BarrierTCC {
			c.add(RuleHoldBarrier, subj, "%s row has trans_type %q; the stock participant serves TCC branches only", r.Op, r.TransType)
		}
		switch {
		case r.Op != ordercore.BarrierTry && r.Op != ordercore.BarrierConfirm && r.Op != ordercore.BarrierCancel:
			c.add(RuleHoldBarrier, subj, "has a row of unknown op %q", r.Op)
		case r.Reason != r.Op && !(r.Op == ordercore.BarrierTry && r.Reason == ordercore.BarrierCancel):
			c.add(RuleHoldBarrier, subj, "%s row was written by %q; only a try row may be written by another op (its cancel)", r.Op, r.Reason)
		}
		br := rows[k]
		if br == nil {
			br = branchRows{}
			rows[k] = br
			keys = append(keys, k)
		}
		if _, dup := br[r.Op]; dup {
			c.add(RuleHoldBarrier, subj, "has two %s rows", r.Op)
		}
		br[r.Op] = r.Reason
	}
	held := map[ordercore.BranchKey]bool{}
	for _, h := range c.snap.Holds {
		k := ordercore.BranchKey{GID: h.GID, BranchID: h.BranchID}
		held[k] = true
		br := rows[k]
		subj := holdSubject(h.ID)
		switch reason, ok := br[ordercore.BarrierTry]; {
		case !ok:
			c.add(RuleHoldBarrier, subj, "holds stock for %s, which has no try row: a retried try would reserve again", branchSubject(k))
		case reason != ordercore.BarrierTry:
			c.add(RuleHoldBarrier, subj, "holds stock for %s, whose try row was written by its %s: a hanging reservation", branchSubject(k), reason)
		}
		_, cancelled := br[ordercore.BarrierCancel]
		_, confirmed := br[ordercore.BarrierConfirm]
		want := map[ordercore.ReservationStatus][2]bool{
			ordercore.ReservationReserved:  {false, false},
			ordercore.ReservationCommitted: {false, true},
			ordercore.ReservationReleased:  {true, false},
		}
		if w, ok := want[h.Status]; ok && (cancelled != w[0] || confirmed != w[1]) {
			c.add(RuleHoldBarrier, subj, "is %s, but %s has a cancel row: %v, a confirm row: %v (want %v, %v)",
				h.Status, branchSubject(k), cancelled, confirmed, w[0], w[1])
		}
	}
	slices.SortFunc(keys, func(a, b ordercore.BranchKey) int {
		return cmp.Or(cmp.Compare(a.GID, b.GID), cmp.Compare(a.BranchID, b.BranchID))
	})
	for _, k := range keys {
		if held[k] {
			continue
		}
		br, subj := rows[k], branchSubject(k)
		tryReason, tried := br[ordercore.BarrierTry]
		_, cancelled := br[ordercore.BarrierCancel]
		switch {
		case tried && tryReason == ordercore.BarrierTry:
			c.add(RuleHoldBarrier, subj, "its try row says the try took effect, but it has no hold")
		case tried != cancelled:
			c.add(RuleHoldBarrier, subj, "has a try row: %v and a cancel row: %v without a hold; a null compensation writes both", tried, cancelled)
		}
		if _, ok := br[ordercore.BarrierConfirm]; ok {
			c.add(RuleHoldBarrier, subj, "has a confirm row but no hold to have confirmed")
		}
	}
}

// holdVersions is RuleVersion for holds.
func (c *checker) holdVersions() {
	for _, h := range c.snap.Holds {
		if h.Version < 1 {
			c.add(RuleVersion, holdSubject(h.ID), "version %d, want >= 1", h.Version)
		}
	}
}

// replayedHold is a hold rebuilt from its events alone.
type replayedHold struct {
	firstSeq int64
	branch   ordercore.BranchKey
	status   ordercore.ReservationStatus
	version  int64
	lines    []ordercore.HoldLine
}

// holdEvent replays one event of a hold: stock.held creates it (version 1, reserved) and
// reserves its lines; stock.hold_committed moves them from reserved to sold and
// stock.hold_released back to available, each from a reserved hold, with the version one
// up. The data's gid, branch and lines must stay those of stock.held.
func (r *replay) holdEvent(e ordercore.Event) {
	var d ordercore.HoldEvent
	if !r.decode(e, &d) {
		return
	}
	id := e.AggregateID
	k := ordercore.BranchKey{GID: d.GID, BranchID: d.BranchID}
	h := r.holds[id]
	if e.Type == ordercore.EventStockHeld {
		if h != nil {
			r.bad(e, "second stock.held for hold %s", id)
			return
		}
		if d.Version != 1 || d.Status != ordercore.ReservationReserved {
			r.bad(e, "stock.held for hold %s at version %d, %s; want version 1, reserved", id, d.Version, d.Status)
		}
		h = &replayedHold{firstSeq: e.Seq, branch: k, status: ordercore.ReservationReserved, version: d.Version, lines: d.Lines}
		r.holds[id] = h
		for _, l := range d.Lines {
			s := r.sku(l.SKU)
			if !s.created {
				r.bad(e, "stock.held for hold %s reserves sku %s before its sku.created", id, l.SKU)
			}
			s.reserved += l.Quantity
		}
		return
	}
	to := map[string]ordercore.ReservationStatus{ordercore.EventHoldCommitted: ordercore.ReservationCommitted,
		ordercore.EventHoldReleased: ordercore.ReservationReleased}[e.Type]
	switch {
	case to == "":
		r.bad(e, "unknown hold event type %q", e.Type)
		return
	case h == nil:
		r.bad(e, "%s for hold %s before its stock.held", e.Type, id)
		return
	}
	if d.Status != to || d.Version != h.version+1 || k != h.branch || !slices.Equal(d.Lines, h.lines) {
		r.bad(e, "%s for hold %s says %s at version %d for %s with %d lines; replay has version %d + 1, %s, %d lines",
			e.Type, id, d.Status, d.Version, branchSubject(k), len(d.Lines), h.version, branchSubject(h.branch), len(h.lines))
	}
	if h.status != ordercore.ReservationReserved {
		r.bad(e, "%s for hold %s, which replay has %s: a hold resolves once", e.Type, id, h.status)
		h.version = d.Version
		return
	}
	for _, l := range h.lines {
		s := r.sku(l.SKU)
		s.reserved -= l.Quantity
		if to == ordercore.ReservationCommitted {
			s.sold += l.Quantity
		}
	}
	h.status, h.version = to, d.Version
}

// compareHolds: every holds row equals its replay (branch, status, version, lines), and
// every replayed hold has a row.
func (r *replay) compareHolds() {
	rows := map[string]bool{}
	for _, row := range r.c.snap.Holds {
		if rows[row.ID] {
			continue // a duplicate, reported by hold_once
		}
		rows[row.ID] = true
		h := r.holds[row.ID]
		subj := holdSubject(row.ID)
		if h == nil {
			r.c.add(RuleEventReplay, subj, "has no stock.held event")
			continue
		}
		k := ordercore.BranchKey{GID: row.GID, BranchID: row.BranchID}
		if k != h.branch || row.Status != h.status || row.Version != h.version || !slices.Equal(row.Lines, h.lines) {
			r.c.add(RuleEventReplay, subj, "is %s, %s at version %d with lines %v in the holds table; replaying its events gives %s, %s at version %d with lines %v",
				branchSubject(k), row.Status, row.Version, row.Lines, branchSubject(h.branch), h.status, h.version, h.lines)
		}
	}
	for _, id := range sortedKeys(r.holds) {
		if !rows[id] {
			r.c.add(RuleEventReplay, holdSubject(id), "has events from seq %d but no row in the holds table", r.holds[id].firstSeq)
		}
	}
}
