package storetest

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"ordercore"
)

// The stock-hold half of the suite (ordercore's stock as a TCC participant): a hold, its
// ledger rows and its branch's barrier rows come back from every read exactly as written;
// the database refuses a second hold of a branch, a barrier row written twice, a hold
// resolved twice or from a stale version, a hold line reserved or resolved twice, and a
// ledger row that names an order and a hold at once, keeping nothing of the batch.

// holdTests are registered by Run beside the order, payment and saga tests.
func holdTests() []storeTest {
	return []storeTest{
		{"HoldRoundTrip", testHoldRoundTrip},
		{"HoldResolvesOnce", testHoldResolvesOnce},
		{"HoldBranchUnique", testHoldBranchUnique},
		{"BarrierRowUnique", testBarrierUnique},
		{"HoldLedgerGuards", testHoldLedger},
		{"HoldCheckConstraints", testHoldChecks},
	}
}

func hold(n int, gid, branch string, lines ...ordercore.HoldLine) ordercore.StockHold {
	return ordercore.StockHold{ID: id(n), GID: gid, BranchID: branch, Status: ordercore.ReservationReserved, Lines: lines,
		Version: 1, CreatedAt: t0, UpdatedAt: t0}
}

func barrierRow(gid, branch, op, reason string) ordercore.BarrierRow {
	return ordercore.BarrierRow{TransType: ordercore.BarrierTCC, GID: gid, BranchID: branch, Op: op, Reason: reason, CreatedAt: t0}
}

// held is the changeset of a try: the hold, its reserve rows and its try row.
func held(h ordercore.StockHold) ordercore.Changeset {
	c := ordercore.Changeset{NewHolds: []ordercore.StockHold{h},
		NewBarriers: []ordercore.BarrierRow{barrierRow(h.GID, h.BranchID, ordercore.BarrierTry, ordercore.BarrierTry)}}
	for i, l := range h.Lines {
		c.Ledger = append(c.Ledger, ordercore.NewHoldEntry(l.SKU, ordercore.MoveReserve, l.Quantity, h.ID, i+1, t0))
	}
	return c
}

func testHoldRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	mustWrite(t, s, &ordercore.Changeset{NewSKUs: []ordercore.SKU{sku("a", 10), sku("b", 10)}})
	// Ids as the barrier package allows them: any UTF-8 without control characters, up
	// to 128 bytes.
	gid := "ünï gid/" + strings.Repeat("g", 118) // 128 bytes
	h := hold(1, gid, "01", ordercore.HoldLine{SKU: "a", Quantity: 2}, ordercore.HoldLine{SKU: "b", Quantity: 3})
	c := held(h)
	null := barrierRow(gid, "02", ordercore.BarrierTry, ordercore.BarrierCancel)
	c.NewBarriers = append(c.NewBarriers, null, barrierRow(gid, "02", ordercore.BarrierCancel, ordercore.BarrierCancel))
	mustWrite(t, s, &c)

	var loadedRows []ordercore.BarrierRow
	var loadedHolds map[ordercore.BranchKey]ordercore.StockHold
	err := s.Write(ctx, func(tx ordercore.WriteTx) error {
		var err error
		branches := []ordercore.BranchKey{{GID: gid, BranchID: "01"}, {GID: gid, BranchID: "02"}, {GID: "other", BranchID: "01"}}
		if loadedRows, err = tx.Barriers(ctx, branches); err != nil {
			return err
		}
		loadedHolds, err = tx.Holds(ctx, branches)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := gocmp.Diff(map[ordercore.BranchKey]ordercore.StockHold{{GID: gid, BranchID: "01"}: h}, loadedHolds); diff != "" {
		t.Errorf("WriteTx.Holds (-wrote +read):\n%s", diff)
	}
	wantRows := []ordercore.BarrierRow{c.NewBarriers[0], c.NewBarriers[2], c.NewBarriers[1]} // by branch, op
	if diff := gocmp.Diff(wantRows, sortRows(loadedRows)); diff != "" {
		t.Errorf("WriteTx.Barriers (-wrote +read):\n%s", diff)
	}
	holds, err := s.HoldsOf(ctx, gid, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := gocmp.Diff([]ordercore.StockHold{h}, holds); diff != "" {
		t.Errorf("HoldsOf (-wrote +read):\n%s", diff)
	}
	rows, err := s.BarriersOf(ctx, gid, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := gocmp.Diff(wantRows, rows); diff != "" {
		t.Errorf("BarriersOf (-wrote +read), want by branch and op:\n%s", diff)
	}
	if rows, err := s.BarriersOf(ctx, gid, 1); err != nil || len(rows) != 1 {
		t.Errorf("BarriersOf with limit 1: %d rows, %v", len(rows), err)
	}
	if holds, err := s.HoldsOf(ctx, "nothing", 10); err != nil || len(holds) != 0 {
		t.Errorf("HoldsOf an unknown gid: %v, %v", holds, err)
	}
	snap := dump(t, s)
	if diff := gocmp.Diff([]ordercore.StockHold{h}, snap.Holds); diff != "" {
		t.Errorf("Dump's holds (-wrote +read):\n%s", diff)
	}
	if diff := gocmp.Diff(wantRows, snap.Barriers); diff != "" {
		t.Errorf("Dump's barrier rows (-wrote +read):\n%s", diff)
	}
	if diff := gocmp.Diff(c.Ledger, snap.Ledger); diff != "" {
		t.Errorf("Dump's ledger (-wrote +read): the rows must name the hold and its lines:\n%s", diff)
	}
}

// sortRows orders barrier rows by branch and op (a load promises no order).
func sortRows(rows []ordercore.BarrierRow) []ordercore.BarrierRow {
	out := slices.Clone(rows)
	slices.SortFunc(out, func(a, b ordercore.BarrierRow) int {
		return cmp.Or(strings.Compare(a.GID, b.GID), strings.Compare(a.BranchID, b.BranchID), strings.Compare(a.Op, b.Op))
	})
	return out
}

// testHoldResolvesOnce: a hold moves from reserved once, at the version it was loaded at;
// a second resolution, a stale one or one of a hold that does not exist refuses the batch.
func testHoldResolvesOnce(t *testing.T, s Store) {
	ctx := context.Background()
	mustWrite(t, s, &ordercore.Changeset{NewSKUs: []ordercore.SKU{sku("a", 10)}})
	h := hold(1, "g", "01", ordercore.HoldLine{SKU: "a", Quantity: 2})
	c := held(h)
	mustWrite(t, s, &c)
	committed := h
	committed.Status, committed.Version, committed.UpdatedAt = ordercore.ReservationCommitted, 2, t0.Add(time.Minute)
	released := committed
	released.Status = ordercore.ReservationReleased
	missing := committed
	missing.ID = id(99)
	refuses(t, s, "a resolution from a version never stored", ordercore.Changeset{HoldChanges: []ordercore.HoldChange{{Hold: committed, FromVersion: 7}}})
	refuses(t, s, "a resolution of a hold that does not exist", ordercore.Changeset{HoldChanges: []ordercore.HoldChange{{Hold: missing, FromVersion: 1}}})
	mustWrite(t, s, &ordercore.Changeset{HoldChanges: []ordercore.HoldChange{{Hold: committed, FromVersion: 1}},
		Ledger: []ordercore.StockEntry{ordercore.NewHoldEntry("a", ordercore.MoveCommit, 2, h.ID, 1, t0)}})
	again := released
	again.Version = 3
	refuses(t, s, "a second resolution of a committed hold", ordercore.Changeset{HoldChanges: []ordercore.HoldChange{{Hold: again, FromVersion: 2}}})
	holds, err := s.HoldsOf(ctx, "g", 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := gocmp.Diff([]ordercore.StockHold{committed}, holds); diff != "" {
		t.Errorf("hold after its resolution (-want +got):\n%s", diff)
	}
}

// testHoldBranchUnique: a branch has at most one hold, and a refused batch keeps nothing.
func testHoldBranchUnique(t *testing.T, s Store) {
	mustWrite(t, s, &ordercore.Changeset{NewSKUs: []ordercore.SKU{sku("a", 10)}})
	first := hold(1, "g", "01", ordercore.HoldLine{SKU: "a", Quantity: 1})
	mustWrite(t, s, &ordercore.Changeset{NewHolds: []ordercore.StockHold{first}})
	second := hold(2, "g", "01", ordercore.HoldLine{SKU: "a", Quantity: 1})
	refuses(t, s, "a second hold of a branch", ordercore.Changeset{NewHolds: []ordercore.StockHold{second}})
	sameID := hold(1, "g", "02", ordercore.HoldLine{SKU: "a", Quantity: 1})
	refuses(t, s, "a hold whose id exists", ordercore.Changeset{NewHolds: []ordercore.StockHold{sameID}})
	// A new hold may be stored already resolved: its try and its cancel shared a batch.
	other := hold(3, "g", "03", ordercore.HoldLine{SKU: "a", Quantity: 1})
	other.Status, other.Version = ordercore.ReservationReleased, 2
	mustWrite(t, s, &ordercore.Changeset{NewHolds: []ordercore.StockHold{other}})
}

// testBarrierUnique: a barrier row that exists, or one written twice in a batch, refuses
// the batch; rows of other ops or branches are independent.
func testBarrierUnique(t *testing.T, s Store) {
	try := barrierRow("g", "01", ordercore.BarrierTry, ordercore.BarrierTry)
	mustWrite(t, s, &ordercore.Changeset{NewBarriers: []ordercore.BarrierRow{try}})
	byCancel := barrierRow("g", "01", ordercore.BarrierTry, ordercore.BarrierCancel)
	refuses(t, s, "a try row written again (by a cancel)", ordercore.Changeset{NewBarriers: []ordercore.BarrierRow{byCancel}})
	confirm := barrierRow("g", "01", ordercore.BarrierConfirm, ordercore.BarrierConfirm)
	refuses(t, s, "one row twice in a batch", ordercore.Changeset{NewBarriers: []ordercore.BarrierRow{confirm, confirm}})
	mustWrite(t, s, &ordercore.Changeset{NewBarriers: []ordercore.BarrierRow{confirm, barrierRow("g", "02", ordercore.BarrierTry, ordercore.BarrierTry),
		barrierRow("h", "01", ordercore.BarrierTry, ordercore.BarrierTry)}})
	if snap := dump(t, s); len(snap.Barriers) != 4 {
		t.Errorf("%d barrier rows, want 4", len(snap.Barriers))
	}
}

// testHoldLedger: each hold line is reserved once and resolved at most once (its own
// unique index, beside the orders'); a hold only reserves, commits and releases; a row
// names an order or a hold, never both, and a hold's row names its line.
func testHoldLedger(t *testing.T, s Store) {
	mustWrite(t, s, &ordercore.Changeset{NewSKUs: []ordercore.SKU{sku("a", 10)}})
	h := id(1)
	reserve := ordercore.NewHoldEntry("a", ordercore.MoveReserve, 1, h, 1, t0)
	commit := ordercore.NewHoldEntry("a", ordercore.MoveCommit, 1, h, 1, t0)
	release := ordercore.NewHoldEntry("a", ordercore.MoveRelease, 1, h, 1, t0)
	mustWrite(t, s, &ordercore.Changeset{Ledger: []ordercore.StockEntry{reserve, ordercore.NewHoldEntry("a", ordercore.MoveReserve, 1, h, 2, t0)}})
	refuses(t, s, "a second reserve of a hold line", ordercore.Changeset{Ledger: []ordercore.StockEntry{reserve}})
	// An order's line 1 with the hold's id as its order id is another reservation.
	mustWrite(t, s, &ordercore.Changeset{Ledger: []ordercore.StockEntry{ordercore.NewStockEntry("a", ordercore.MoveReserve, 1, h, 1, t0)}})
	mustWrite(t, s, &ordercore.Changeset{Ledger: []ordercore.StockEntry{commit}})
	for _, e := range []ordercore.StockEntry{commit, release} {
		refuses(t, s, "a second resolution ("+string(e.Movement)+") of a committed hold line", ordercore.Changeset{Ledger: []ordercore.StockEntry{e}})
	}
	both := ordercore.NewHoldEntry("a", ordercore.MoveReserve, 1, id(2), 1, t0)
	both.OrderID = id(3)
	refuses(t, s, "a ledger row naming an order and a hold", ordercore.Changeset{Ledger: []ordercore.StockEntry{both}})
	revive := ordercore.NewStockEntry("a", ordercore.MoveRevive, 1, "", 1, t0)
	revive.HoldID = id(2)
	refuses(t, s, "a revive of a hold line", ordercore.Changeset{Ledger: []ordercore.StockEntry{revive}})
	noLine := ordercore.NewHoldEntry("a", ordercore.MoveReserve, 1, id(2), 0, t0)
	refuses(t, s, "a hold row without a line", ordercore.Changeset{Ledger: []ordercore.StockEntry{noLine}})
	restock := ordercore.NewStockEntry("a", ordercore.MoveRestock, 1, "", 0, t0)
	restock.HoldID = id(2)
	refuses(t, s, "a restock naming a hold", ordercore.Changeset{Ledger: []ordercore.StockEntry{restock}})
}

// testHoldChecks: the tables' constraints refuse what the engine never writes.
func testHoldChecks(t *testing.T, s Store) {
	long := strings.Repeat("g", ordercore.BarrierIDBytesMax+1)
	for _, bad := range []struct {
		what string
		c    ordercore.Changeset
	}{
		{"a hold of unknown status", ordercore.Changeset{NewHolds: []ordercore.StockHold{func() ordercore.StockHold {
			h := hold(1, "g", "01", ordercore.HoldLine{SKU: "a", Quantity: 1})
			h.Status = "pending"
			return h
		}()}}},
		{"a hold of no lines", ordercore.Changeset{NewHolds: []ordercore.StockHold{hold(1, "g", "01")}}},
		{"a hold of version 0", ordercore.Changeset{NewHolds: []ordercore.StockHold{func() ordercore.StockHold {
			h := hold(1, "g", "01", ordercore.HoldLine{SKU: "a", Quantity: 1})
			h.Version = 0
			return h
		}()}}},
		{"a hold with a 129-byte gid", ordercore.Changeset{NewHolds: []ordercore.StockHold{hold(1, long, "01", ordercore.HoldLine{SKU: "a", Quantity: 1})}}},
		{"a hold with an empty branch id", ordercore.Changeset{NewHolds: []ordercore.StockHold{hold(1, "g", "", ordercore.HoldLine{SKU: "a", Quantity: 1})}}},
		{"a barrier row of unknown op", ordercore.Changeset{NewBarriers: []ordercore.BarrierRow{barrierRow("g", "01", "prepare", "prepare")}}},
		{"a barrier row of unknown trans_type", ordercore.Changeset{NewBarriers: []ordercore.BarrierRow{func() ordercore.BarrierRow {
			r := barrierRow("g", "01", ordercore.BarrierTry, ordercore.BarrierTry)
			r.TransType = "xa"
			return r
		}()}}},
		{"a barrier row with a 129-byte branch id", ordercore.Changeset{NewBarriers: []ordercore.BarrierRow{barrierRow("g", long, ordercore.BarrierTry, ordercore.BarrierTry)}}},
		{"a barrier row with an empty gid", ordercore.Changeset{NewBarriers: []ordercore.BarrierRow{barrierRow("", "01", ordercore.BarrierTry, ordercore.BarrierTry)}}},
	} {
		refuses(t, s, bad.what, bad.c)
	}
	// 128 bytes of two-byte characters is 64 characters: the bound is in bytes.
	ok := strings.Repeat("é", ordercore.BarrierIDBytesMax/2)
	mustWrite(t, s, &ordercore.Changeset{NewBarriers: []ordercore.BarrierRow{barrierRow(ok, ok, ordercore.BarrierTry, ordercore.BarrierTry)}})
	tooLong := ok + "x"
	refuses(t, s, "a 129-byte gid of two-byte characters", ordercore.Changeset{NewBarriers: []ordercore.BarrierRow{barrierRow(tooLong, "01", ordercore.BarrierTry, ordercore.BarrierTry)}})
}
