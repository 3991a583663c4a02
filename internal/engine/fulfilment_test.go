package engine_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
	"ordercore/internal/saga"
)

var fulfilment = &engine.Fulfilment{Steps: []ordercore.SagaStep{
	{Name: "points", Action: ordercore.SagaCall{URL: "http://loyalty.test/award", Payload: json.RawMessage(`{"per_unit":10}`)},
		Compensate: &ordercore.SagaCall{URL: "http://loyalty.test/revoke"}},
	{Name: "shipment", Action: ordercore.SagaCall{URL: "http://warehouse.test/ship"},
		Compensate: &ordercore.SagaCall{URL: "http://warehouse.test/cancel"}},
	{Name: "notify", Action: ordercore.SagaCall{Local: saga.LocalNotify, Payload: json.RawMessage(`{"template":"shipped"}`)}},
}}

// record answers the call a saga waits for, as the coordinator would; errText, if
// given, is the call's error.
func record(t *testing.T, b payBundle, gid string, o saga.Outcome, errText ...string) ordercore.Saga {
	t.Helper()
	s, err := b.db.Saga(context.Background(), gid)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := saga.Next(&s)
	if !ok {
		t.Fatalf("saga %s (%s) waits for no call", gid, s.Status)
	}
	e := "x"
	if len(errText) > 0 {
		e = errText[0]
	}
	v, err := b.submit(engine.SagaOutcome{GID: gid, Version: s.Version, Call: c, Outcome: o, Err: e})
	if err != nil {
		t.Fatal(err)
	}
	r := v.(saga.Recorded)
	if !r.Applied {
		t.Fatalf("outcome for %+v of %s not applied", c, gid)
	}
	return r.Saga
}

// TestFulfilment: an order that becomes paid gets its fulfilment saga in the same
// transaction, with the order in every step's payload and every step on the order's
// timeline; when a step fails for good, the done steps are compensated and the order goes
// to refunding with a refund of everything it paid.
func TestFulfilment(t *testing.T) {
	b := payBundle{newMatrixWorkerWith(t, 0, engine.Config{Fulfilment: fulfilment}), t}
	t.Cleanup(b.close)
	paid := func(sku string) ordercore.Order {
		o := b.order(sku, 10, 2)
		a := b.attempt(o.ID)
		b.notify("e-"+sku, &ordercore.ChannelPayment{OutTradeNo: a, Status: ordercore.PaymentSucceeded, Amount: o.Amount}, nil)
		return o
	}

	ok := paid("tea")
	s, err := b.db.Saga(context.Background(), engine.FulfilmentGID(ok.ID))
	if err != nil {
		t.Fatalf("no fulfilment saga for a paid order: %v", err)
	}
	var p engine.FulfilmentPayload
	if err := json.Unmarshal(s.Steps[0].Action.Payload, &p); err != nil || p.Order.ID != ok.ID || string(p.Data) != `{"per_unit":10}` {
		t.Fatalf("step payload %s: %v", s.Steps[0].Action.Payload, err)
	}
	record(t, b, s.GID, saga.OutcomeOK)
	if s = record(t, b, s.GID, saga.OutcomeOK); s.Status != ordercore.SagaCompleted {
		t.Fatalf("after both HTTP steps: %s, want completed (the notify step runs in the same transaction)", s.Status)
	}
	if o, _ := b.db.Order(context.Background(), ok.ID); o.Status != ordercore.OrderPaid {
		t.Fatalf("a fulfilled order is %s", o.Status)
	}

	bad := paid("mug")
	gid := engine.FulfilmentGID(bad.ID)
	record(t, b, gid, saga.OutcomeOK) // points awarded
	// The warehouse refuses for good, with a long error: the refund's reason, which names
	// it, stays within what a refund reason may be.
	record(t, b, gid, saga.OutcomeFail, "HTTP 422 from http://warehouse.test/ship?gid="+gid+": "+strings.Repeat("out of boxes; ", 80))
	record(t, b, gid, saga.OutcomeOK) // shipment's compensation (a null compensation at the warehouse)
	if s = record(t, b, gid, saga.OutcomeOK); s.Status != ordercore.SagaCompensated {
		t.Fatalf("after the compensations: %s", s.Status)
	}
	o, err := b.db.Order(context.Background(), bad.ID)
	if err != nil || o.Status != ordercore.OrderRefunding {
		t.Fatalf("order after a failed fulfilment: %s %v, want refunding", o.Status, err)
	}
	_, refunds, err := b.db.OrderPayments(context.Background(), bad.ID)
	if err != nil || len(refunds) != 1 || refunds[0].Amount != bad.Amount || !slices.Equal(refunds[0].RestockLines, []int{1}) {
		t.Fatalf("refunds %+v %v, want one of %s restocking line 1 (nothing was shipped)", refunds, err, bad.Amount)
	}
	if r := refunds[0].Reason; !strings.HasPrefix(r, "fulfilment failed: ") || len(r) > limit.ReasonBytesMax {
		t.Errorf("refund reason of %d bytes: %.80q...; want \"fulfilment failed: \" and the saga's reason, at most %d bytes", len(r), r, limit.ReasonBytesMax)
	}
	evs, err := b.db.AggregateEvents(context.Background(), bad.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	for _, e := range evs {
		if e.Type == ordercore.EventOrderFulfilment {
			steps++
		}
	}
	if steps < 5 { // submitted, 2 actions, 2 compensations, status changes
		t.Fatalf("%d fulfilment events on the order's timeline, want every step", steps)
	}
	b.finish()
}

// TestSkipRunsTheNextInProcessStep: an operator's skip that leaves an in-process step
// next runs it in the same transaction, so the saga does not wait for a claim that could
// not run it.
func TestSkipRunsTheNextInProcessStep(t *testing.T) {
	b := setupPay(t)
	s := ordercore.Saga{GID: "skip-local", Kind: ordercore.SagaKindSaga, Steps: []ordercore.SagaStep{
		{Name: "a", Action: ordercore.SagaCall{URL: "http://p.test/a"}},
		{Name: "b", Action: ordercore.SagaCall{Local: saga.LocalNotify}}}}
	if _, err := b.submit(engine.SubmitSaga{Saga: s, Hold: saga.ClaimHold}); err != nil {
		t.Fatal(err)
	}
	v, err := b.submit(engine.SagaAction{GID: s.GID, Action: engine.SagaSkip, By: "ops", Note: "done by hand", Audited: true, Hold: saga.ClaimHold})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.(engine.SagaActed); got.Status != ordercore.SagaCompleted || !got.NextRunAt.IsZero() {
		t.Fatalf("after skipping the HTTP step: %s due %v, want completed (the notify step runs at once)", got.Status, got.NextRunAt)
	}
	b.finish()
}

// TestFulfilmentDeadline: a fulfilment's deadline counts from the moment its order is
// paid.
func TestFulfilmentDeadline(t *testing.T) {
	f := *fulfilment
	f.Deadline = 2 * time.Hour
	b := payBundle{newMatrixWorkerWith(t, 0, engine.Config{Fulfilment: &f}), t}
	t.Cleanup(b.close)
	o := b.order("clock", 10, 1)
	b.clock.Advance(time.Minute)
	a := b.attempt(o.ID)
	b.notify("e-clock", &ordercore.ChannelPayment{OutTradeNo: a, Status: ordercore.PaymentSucceeded, Amount: o.Amount}, nil)
	s, err := b.db.Saga(context.Background(), engine.FulfilmentGID(o.ID))
	if err != nil {
		t.Fatal(err)
	}
	if want := b.clock.Now().Add(2 * time.Hour); !s.Deadline.Equal(want) {
		t.Errorf("fulfilment deadline %s, want %s (2h after the payment)", s.Deadline, want)
	}
}
