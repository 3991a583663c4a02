package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"ordercore"
	"ordercore/internal/limit"
)

// Stock as a TCC participant: an outside global transaction reserves stock with a try
// (TCCTry), sells it with a confirm (TCCConfirm) or gives it back with a cancel
// (TCCCancel). Each operation passes the sub-transaction barrier inside the batch's own
// transaction, with the public barrier package's semantics exactly (barrier/doc.go; that
// package is the reference, and the engine's tests run both against the same cases):
//
//	first run of an op               it runs; its barrier row commits with its effect, or
//	                                 neither does (a refused try writes no row, so a
//	                                 later cancel of the branch is a null compensation)
//	duplicate                        nothing runs; success
//	cancel before try (null comp.)   the try's row is written with reason cancel; success
//	try after cancel (hanging)       refused for good (hanging_try), nothing reserved
//	try retried after its cancel     a duplicate (its row has reason try); success
//	confirm                          duplicates only, as in the barrier package
//
// The barrier package cannot be imported here (it is built on database/sql, and the
// engine speaks only to ordercore.WriteTx), so its rules are restated in this file: the
// barrier rows are loaded with the batch and written in its Changeset. The package's
// "insert first, decide after" becomes "decide on rows loaded under a lock": commands of
// one batch see each other's rows in the working state, SQLite has one writer, and on
// PostgreSQL WriteTx.Barriers locks each branch until commit, so a try and its cancel on
// two instances are decided one after the other. The table's primary key stays the second
// guard: a row written twice fails the batch.

// Branch operation outcomes that are successes.
const (
	// BranchApplied: the operation took effect now.
	BranchApplied = "applied"
	// BranchDuplicate: it had taken effect before; nothing changed.
	BranchDuplicate = "duplicate"
	// BranchNullCompensation: a cancel before its try. Nothing was reserved, nothing is
	// released, and the try is refused from now on.
	BranchNullCompensation = "null_compensation"
)

// TCCBranch names the branch an operation is for, as a coordinator sends it (DTM's gid,
// trans_type and branch_id query parameters; the op is the command's).
type TCCBranch struct {
	TransType string
	GID       string
	BranchID  string
}

func (b TCCBranch) key() ordercore.BranchKey {
	return ordercore.BranchKey{GID: b.GID, BranchID: b.BranchID}
}

func (b TCCBranch) String() string { return b.GID + "/" + b.BranchID }

// Validate checks the branch as barrier.Branch.Validate does, for a TCC branch (the stock
// participant serves no saga branches): trans_type tcc; gid and branch_id 1..128 bytes of
// valid UTF-8 without control characters. The engine's tests hold the two together.
func (b TCCBranch) Validate() error {
	if b.TransType != ordercore.BarrierTCC {
		return ordercore.Errorf(ordercore.EInvalidBranch, "trans_type %q is not %q: stock is a TCC participant", clipID(b.TransType), ordercore.BarrierTCC)
	}
	if err := checkBarrierID("gid", b.GID); err != nil {
		return err
	}
	return checkBarrierID("branch_id", b.BranchID)
}

// checkBarrierID restates the barrier package's checkID: PostgreSQL refuses NUL and
// invalid UTF-8 in text (an error a retry would repeat forever), and control characters in
// an id forge log lines.
func checkBarrierID(name, v string) error {
	switch {
	case v == "":
		return ordercore.Errorf(ordercore.EInvalidBranch, "%s is missing", name)
	case len(v) > ordercore.BarrierIDBytesMax:
		return ordercore.Errorf(ordercore.EInvalidBranch, "%s is %d bytes, more than %d", name, len(v), ordercore.BarrierIDBytesMax)
	case !utf8.ValidString(v):
		return ordercore.Errorf(ordercore.EInvalidBranch, "%s is not valid UTF-8", name)
	case strings.ContainsFunc(v, unicode.IsControl):
		return ordercore.Errorf(ordercore.EInvalidBranch, "%s %q contains a control character", name, v)
	}
	return nil
}

func clipID(s string) string {
	const bytesMax = 32
	if len(s) > bytesMax {
		return s[:bytesMax] + "..."
	}
	return s
}

// BranchResult is the result of the TCC commands: how the operation ended, and the hold
// as it is after it (nil when the branch has none: a null compensation).
type BranchResult struct {
	Outcome string               `json:"outcome"`
	Hold    *ordercore.StockHold `json:"hold,omitempty"`
}

// TCCTry reserves Lines for the branch and records its hold. Result: BranchResult.
// Refused for good: invalid_branch, hanging_try, too_many_lines, invalid_quantity,
// unknown_sku, insufficient_stock; a refused try leaves nothing behind.
type TCCTry struct {
	Branch TCCBranch
	Lines  []ordercore.HoldLine
}

func (c TCCTry) keys(k *keySet) {
	if c.Branch.Validate() != nil {
		return // refused by execute before anything is read; an invalid id must not reach a load
	}
	k.tcc.add(c.Branch.key())
	if len(c.Lines) > limit.LinesPerOrderMax {
		return // refused by execute; its SKUs are not worth a load
	}
	for _, l := range c.Lines {
		if validKey(l.SKU) {
			k.sku(l.SKU)
		}
	}
}

func (c TCCTry) execute(b *batch) (any, error) {
	if err := c.Branch.Validate(); err != nil {
		return nil, err
	}
	if row, ok := b.barrier(c.Branch, ordercore.BarrierTry); ok {
		if row.Reason == ordercore.BarrierTry {
			return b.branchResult(c.Branch, BranchDuplicate), nil
		}
		return nil, ordercore.Errorf(ordercore.EHangingTry, "branch %s was cancelled before its try came: nothing is reserved, and its try is refused for good", c.Branch)
	}
	h, err := b.reserveHold(c.Branch, c.Lines)
	if err != nil {
		return nil, err
	}
	b.writeBarrier(c.Branch, ordercore.BarrierTry, ordercore.BarrierTry)
	return BranchResult{Outcome: BranchApplied, Hold: holdCopy(h)}, nil
}

// checkHoldLines checks what a try asks for, before anything is changed.
func (b *batch) checkHoldLines(lines []ordercore.HoldLine) error {
	if len(lines) == 0 || len(lines) > limit.LinesPerOrderMax {
		return ordercore.Errorf(ordercore.ETooManyLines, "a hold has 1..%d lines", limit.LinesPerOrderMax)
	}
	demand := make(map[string]int64, len(lines))
	for i, l := range lines {
		if l.Quantity < 1 || l.Quantity > limit.QuantityMax {
			return ordercore.Errorf(ordercore.EInvalidQuantity, "lines[%d].quantity must be 1..%d", i, limit.QuantityMax)
		}
		if !validKey(l.SKU) {
			return ordercore.Errorf(ordercore.EUnknownSKU, "lines[%d].sku %q is not a valid sku id", i, l.SKU)
		}
		if _, ok := b.skus[l.SKU]; !ok {
			return ordercore.Errorf(ordercore.EUnknownSKU, "lines[%d].sku %q does not exist", i, l.SKU)
		}
		demand[l.SKU] += l.Quantity
	}
	for _, sku := range sortedKeys(demand) {
		if avail := b.skus[sku].cur.Available(); avail < demand[sku] {
			return ordercore.Errorf(ordercore.EInsufficientStock, "sku %q has %d available, the hold needs %d", sku, avail, demand[sku])
		}
	}
	return nil
}

// reserveHold is the try's business: it checks the lines, then reserves them and records
// the new hold and its event.
func (b *batch) reserveHold(br TCCBranch, lines []ordercore.HoldLine) (*ordercore.StockHold, error) {
	if err := b.checkHoldLines(lines); err != nil {
		return nil, err
	}
	key := br.key()
	if _, ok := b.holds[key]; ok {
		// The try's barrier row and the hold are written together, so a hold without the
		// row is a broken database, not a request to answer.
		return nil, ordercore.Errorf(ordercore.EINTERNAL, "branch %s has a hold but no try barrier row", br)
	}
	h := ordercore.StockHold{ID: ordercore.NewID(b.now), GID: br.GID, BranchID: br.BranchID, Status: ordercore.ReservationReserved,
		Lines: slices.Clone(lines), Version: 1, CreatedAt: b.now, UpdatedAt: b.now}
	for i, l := range h.Lines {
		b.moveHold(b.skus[l.SKU], ordercore.MoveReserve, l.Quantity, h.ID, i+1)
	}
	hs := &holdState{cur: h, isNew: true}
	b.holds[key] = hs
	b.holdEvent(&hs.cur, ordercore.EventStockHeld)
	return &hs.cur, nil
}

// TCCConfirm commits the branch's hold: its units are sold. Result: BranchResult. Refused
// for good: invalid_branch, not_found (the try never took effect), hold_state (the hold
// was released).
type TCCConfirm struct {
	Branch TCCBranch
}

func (c TCCConfirm) keys(k *keySet) {
	if c.Branch.Validate() == nil {
		k.tcc.add(c.Branch.key())
	}
}

func (c TCCConfirm) execute(b *batch) (any, error) {
	if err := c.Branch.Validate(); err != nil {
		return nil, err
	}
	if _, ok := b.barrier(c.Branch, ordercore.BarrierConfirm); ok {
		return b.branchResult(c.Branch, BranchDuplicate), nil
	}
	h, err := b.resolveHold(c.Branch, ordercore.ReservationCommitted)
	if err != nil {
		return nil, err
	}
	b.writeBarrier(c.Branch, ordercore.BarrierConfirm, ordercore.BarrierConfirm)
	return BranchResult{Outcome: BranchApplied, Hold: holdCopy(h)}, nil
}

// TCCCancel releases the branch's hold, or, if its try never took effect, records that it
// never will (null compensation). Result: BranchResult. Refused for good: invalid_branch,
// hold_state (the hold was committed: its units are sold).
type TCCCancel struct {
	Branch TCCBranch
}

func (c TCCCancel) keys(k *keySet) {
	if c.Branch.Validate() == nil {
		k.tcc.add(c.Branch.key())
	}
}

func (c TCCCancel) execute(b *batch) (any, error) {
	if err := c.Branch.Validate(); err != nil {
		return nil, err
	}
	// As barrier.Call: the origin's (try's) row first, then the op's own row, both
	// written even for a null compensation, so that a duplicate of this cancel finds its
	// row and a late try finds the try row with reason cancel.
	if _, ok := b.barrier(c.Branch, ordercore.BarrierTry); !ok {
		b.writeBarrier(c.Branch, ordercore.BarrierTry, ordercore.BarrierCancel)
		b.writeBarrier(c.Branch, ordercore.BarrierCancel, ordercore.BarrierCancel)
		return BranchResult{Outcome: BranchNullCompensation}, nil
	}
	if _, ok := b.barrier(c.Branch, ordercore.BarrierCancel); ok {
		return b.branchResult(c.Branch, BranchDuplicate), nil
	}
	h, err := b.resolveHold(c.Branch, ordercore.ReservationReleased)
	if err != nil {
		return nil, err
	}
	b.writeBarrier(c.Branch, ordercore.BarrierCancel, ordercore.BarrierCancel)
	return BranchResult{Outcome: BranchApplied, Hold: holdCopy(h)}, nil
}

// resolveHold is the business of confirm (to committed) and cancel (to released): every
// line of a reserved hold moves at once, with one ledger row each.
func (b *batch) resolveHold(br TCCBranch, to ordercore.ReservationStatus) (*ordercore.StockHold, error) {
	hs, ok := b.holds[br.key()]
	if !ok {
		if to == ordercore.ReservationReleased {
			// A cancel comes here only when the try's row exists, and the try's row with
			// reason try is written with the hold; reason cancel comes with the cancel's
			// own row. Either way a missing hold is a broken database.
			return nil, ordercore.Errorf(ordercore.EINTERNAL, "branch %s has a try barrier row but no hold", br)
		}
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "branch %s holds no stock: its try did not take effect, so there is nothing to confirm", br)
	}
	if hs.cur.Status != ordercore.ReservationReserved {
		verb := map[ordercore.ReservationStatus]string{ordercore.ReservationCommitted: "confirm", ordercore.ReservationReleased: "cancel"}[to]
		return nil, ordercore.Errorf(ordercore.EHoldState, "the hold of branch %s is %s; a %s cannot change it", br, hs.cur.Status, verb)
	}
	move, typ := ordercore.MoveCommit, ordercore.EventHoldCommitted
	if to == ordercore.ReservationReleased {
		move, typ = ordercore.MoveRelease, ordercore.EventHoldReleased
	}
	for i, l := range hs.cur.Lines {
		s, ok := b.skus[l.SKU]
		limit.Assert(ok, "sku %s of hold %s not loaded", l.SKU, hs.cur.ID)
		b.moveHold(s, move, l.Quantity, hs.cur.ID, i+1)
	}
	hs.cur.Status, hs.cur.Version, hs.cur.UpdatedAt = to, hs.cur.Version+1, b.now
	b.holdEvent(&hs.cur, typ)
	return &hs.cur, nil
}

func (b *batch) holdEvent(h *ordercore.StockHold, typ string) {
	b.event(ordercore.AggregateHold, h.ID, typ, ordercore.HoldEvent{GID: h.GID, BranchID: h.BranchID, Status: h.Status,
		Lines: h.Lines, Version: h.Version})
}

// branchResult answers a duplicate with the branch's hold as it is now.
func (b *batch) branchResult(br TCCBranch, outcome string) BranchResult {
	r := BranchResult{Outcome: outcome}
	if hs, ok := b.holds[br.key()]; ok {
		r.Hold = holdCopy(&hs.cur)
	}
	return r
}

// holdCopy returns a copy a caller may keep: later commands of the batch change the
// working state.
func holdCopy(h *ordercore.StockHold) *ordercore.StockHold {
	c := *h
	c.Lines = slices.Clone(h.Lines)
	return &c
}

// moveHold moves a hold line's stock and appends its ledger row, naming the hold.
func (b *batch) moveHold(s *skuState, m ordercore.StockMovement, qty int64, holdID string, lineNo int) {
	b.moveEntry(s, ordercore.NewHoldEntry(s.cur.ID, m, qty, holdID, lineNo, b.now))
}

// tccKeys are the branches whose barrier rows and holds a batch loads.
type tccKeys struct {
	branches map[ordercore.BranchKey]struct{}
}

func (k *tccKeys) add(key ordercore.BranchKey) {
	if k.branches == nil {
		k.branches = map[ordercore.BranchKey]struct{}{}
	}
	k.branches[key] = struct{}{}
}

func (k *tccKeys) wanted() bool { return len(k.branches) > 0 }

// list returns the branches sorted, a fixed lock order on stores that lock.
func (k *tccKeys) list() []ordercore.BranchKey {
	out := make([]ordercore.BranchKey, 0, len(k.branches))
	for key := range k.branches {
		out = append(out, key)
	}
	slices.SortFunc(out, compareBranch)
	return out
}

func compareBranch(a, b ordercore.BranchKey) int {
	if c := strings.Compare(a.GID, b.GID); c != 0 {
		return c
	}
	return strings.Compare(a.BranchID, b.BranchID)
}

type barrierKey struct {
	branch ordercore.BranchKey
	op     string
}

type holdState struct {
	origVersion int64
	cur         ordercore.StockHold
	isNew       bool
}

// tccState is the batch's working state of barrier rows and holds: as loaded, plus what
// its commands wrote so far, so a later command of the batch sees an earlier one's rows.
type tccState struct {
	barriers    map[barrierKey]ordercore.BarrierRow
	newBarriers []ordercore.BarrierRow
	holds       map[ordercore.BranchKey]*holdState
}

// loadTCC reads the branches' barrier rows, then their holds, and adds the holds' SKUs to
// k, so that the SKU load reads (and locks) them.
func (b *batch) loadTCC(ctx context.Context, tx ordercore.WriteTx, k *keySet) error {
	b.barriers, b.holds = map[barrierKey]ordercore.BarrierRow{}, map[ordercore.BranchKey]*holdState{}
	branches := k.tcc.list()
	rows, err := tx.Barriers(ctx, branches)
	if err != nil {
		return fmt.Errorf("load barrier rows: %w", err)
	}
	for _, r := range rows {
		b.barriers[barrierKey{ordercore.BranchKey{GID: r.GID, BranchID: r.BranchID}, r.Op}] = r
	}
	holds, err := tx.Holds(ctx, branches)
	if err != nil {
		return fmt.Errorf("load holds: %w", err)
	}
	for key, h := range holds {
		b.holds[key] = &holdState{origVersion: h.Version, cur: h}
		for _, l := range h.Lines {
			k.sku(l.SKU)
		}
	}
	return nil
}

// barrier returns the row of op for the branch, if it was loaded or written in the batch.
func (b *batch) barrier(br TCCBranch, op string) (ordercore.BarrierRow, bool) {
	r, ok := b.barriers[barrierKey{br.key(), op}]
	return r, ok
}

// writeBarrier adds the row of op for the branch, written by reason. The caller has found
// no such row.
func (b *batch) writeBarrier(br TCCBranch, op, reason string) {
	k := barrierKey{br.key(), op}
	_, exists := b.barriers[k]
	limit.Assert(!exists, "barrier row %s %s written twice", br, op)
	r := ordercore.BarrierRow{TransType: br.TransType, GID: br.GID, BranchID: br.BranchID, Op: op, Reason: reason, CreatedAt: b.now}
	b.barriers[k] = r
	b.newBarriers = append(b.newBarriers, r)
}

// tccChanges adds the batch's holds and barrier rows to cs.
func (b *batch) tccChanges(cs *ordercore.Changeset) {
	keys := make([]ordercore.BranchKey, 0, len(b.holds))
	for k := range b.holds {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareBranch)
	for _, k := range keys {
		h := b.holds[k]
		if h.isNew {
			cs.NewHolds = append(cs.NewHolds, h.cur)
		} else if h.cur.Version != h.origVersion {
			limit.Assert(h.cur.Version == h.origVersion+1, "hold %s version moved from %d to %d", h.cur.ID, h.origVersion, h.cur.Version)
			cs.HoldChanges = append(cs.HoldChanges, ordercore.HoldChange{Hold: h.cur, FromVersion: h.origVersion})
		}
	}
	cs.NewBarriers = append(cs.NewBarriers, b.newBarriers...)
}
