package verify_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/verify"
)

// TestCheckHolds drives the stock participant over a real SQLite store (a hold confirmed,
// one cancelled, a null compensation, a refused try) and checks that the database passes
// every rule; then breaks copies of it, one way each, and checks that the rule meant to
// catch each break does.
func TestCheckHolds(t *testing.T) {
	t.Parallel()
	db, submit, _ := realEngine(t)
	submit(engine.CreateSKU{ID: "apple", Name: "Apple", Price: usd(250), Stock: 10})
	br := func(branch string) engine.TCCBranch {
		return engine.TCCBranch{TransType: ordercore.BarrierTCC, GID: "g", BranchID: branch}
	}
	lines := []ordercore.HoldLine{{SKU: "apple", Quantity: 2}, {SKU: "apple", Quantity: 1}}
	submit(engine.TCCTry{Branch: br("sold"), Lines: lines})
	submit(engine.TCCConfirm{Branch: br("sold")})
	submit(engine.TCCTry{Branch: br("back"), Lines: lines})
	submit(engine.TCCCancel{Branch: br("back")})
	submit(engine.TCCTry{Branch: br("held"), Lines: lines})
	submit(engine.TCCCancel{Branch: br("null")})
	snap, err := db.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if vs := verify.Check(snap, time.Now()); len(vs) != 0 {
		t.Fatalf("the engine's own holds break rules: %v", vs)
	}
	if len(snap.Holds) != 3 || len(snap.Barriers) != 7 {
		t.Fatalf("%d holds and %d barrier rows, want 3 and 7", len(snap.Holds), len(snap.Barriers))
	}
	holdOf := func(s *ordercore.Snapshot, branch string) int {
		return slices.IndexFunc(s.Holds, func(h ordercore.StockHold) bool { return h.BranchID == branch })
	}
	rowOf := func(s *ordercore.Snapshot, branch, op string) int {
		return slices.IndexFunc(s.Barriers, func(r ordercore.BarrierRow) bool { return r.BranchID == branch && r.Op == op })
	}
	ledgerOf := func(s *ordercore.Snapshot, holdBranch string, m ordercore.StockMovement) int {
		id := s.Holds[holdOf(s, holdBranch)].ID
		return slices.IndexFunc(s.Ledger, func(e ordercore.StockEntry) bool { return e.HoldID == id && e.Movement == m })
	}
	tests := []struct {
		name    string
		breakIt func(s *ordercore.Snapshot)
		want    []string // sorted
	}{
		{"a hold line released twice (and the units with it)", func(s *ordercore.Snapshot) {
			e := s.Ledger[ledgerOf(s, "back", ordercore.MoveRelease)]
			s.Ledger = append(s.Ledger, e)
		}, []string{verify.RuleHoldOnce, verify.RuleStockConservation}},
		{"a committed hold whose ledger released it", func(s *ordercore.Snapshot) {
			s.Ledger[ledgerOf(s, "sold", ordercore.MoveCommit)].Movement = ordercore.MoveRelease
		}, []string{verify.RuleHoldOnce}},
		{"a ledger row of a hold that does not exist", func(s *ordercore.Snapshot) {
			e := ordercore.NewHoldEntry("apple", ordercore.MoveReserve, 1, "no-such-hold", 1, time.Now())
			s.Ledger = append(s.Ledger, e)
			s.SKUs[0].Reserved++ // balanced, but no event says so
		}, []string{verify.RuleEventReplay, verify.RuleHoldOnce}},
		{"a hold whose status says released but whose ledger holds the units", func(s *ordercore.Snapshot) {
			s.Holds[holdOf(s, "held")].Status = ordercore.ReservationReleased
		}, []string{verify.RuleEventReplay, verify.RuleHoldBarrier, verify.RuleHoldOnce}},
		{"a hanging hold: its try row was written by its cancel", func(s *ordercore.Snapshot) {
			s.Barriers[rowOf(s, "held", ordercore.BarrierTry)].Reason = ordercore.BarrierCancel
		}, []string{verify.RuleHoldBarrier}},
		{"a reserved hold whose cancel is recorded", func(s *ordercore.Snapshot) {
			r := s.Barriers[rowOf(s, "held", ordercore.BarrierTry)]
			r.Op, r.Reason = ordercore.BarrierCancel, ordercore.BarrierCancel
			s.Barriers = append(s.Barriers, r)
		}, []string{verify.RuleHoldBarrier}},
		{"a branch whose try row says it took effect, without a hold", func(s *ordercore.Snapshot) {
			s.Barriers[rowOf(s, "null", ordercore.BarrierTry)].Reason = ordercore.BarrierTry
		}, []string{verify.RuleHoldBarrier}},
		{"a hold with no stock.held event", func(s *ordercore.Snapshot) {
			id := s.Holds[holdOf(s, "held")].ID
			s.Events = slices.DeleteFunc(s.Events, func(e ordercore.Event) bool { return e.AggregateID == id })
		}, []string{verify.RuleEventReplay}},
		{"a hold of version 0", func(s *ordercore.Snapshot) {
			s.Holds[holdOf(s, "held")].Version = 0
		}, []string{verify.RuleEventReplay, verify.RuleVersion}},
	}
	for _, tt := range tests {
		s := cloneSnapshot(snap)
		tt.breakIt(s)
		got := rules(verify.Check(s, time.Now()))
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: rules %v, want %v\n%v", tt.name, got, tt.want, verify.Check(s, time.Now()))
		}
	}
}

// cloneSnapshot copies the slices a test breaks.
func cloneSnapshot(s *ordercore.Snapshot) *ordercore.Snapshot {
	c := *s
	c.SKUs, c.Ledger, c.Events = slices.Clone(s.SKUs), slices.Clone(s.Ledger), slices.Clone(s.Events)
	c.Barriers = slices.Clone(s.Barriers)
	c.Holds = make([]ordercore.StockHold, len(s.Holds))
	for i, h := range s.Holds {
		h.Lines = slices.Clone(h.Lines)
		c.Holds[i] = h
	}
	return &c
}
