package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/saga"
)

// TestClaimHoldsASagaForItsStepTimeout: a claim holds each saga at least for its own
// hold (its step timeout and a margin), not only for the claim's: a call slower than
// ClaimHold but within its step timeout is not claimed again while it runs, and its
// outcome is recorded. The same holds for a saga resumed after a backoff, and for a
// saga an action makes due with a hold shorter than its own.
func TestClaimHoldsASagaForItsStepTimeout(t *testing.T) {
	b := setupPay(t)
	policy := ordercore.SagaPolicy{StepTimeout: 30 * time.Second, RetriesMax: 5, BackoffMin: 100 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond}
	s := ordercore.Saga{GID: "slow-step", Kind: ordercore.SagaKindSaga, Policy: policy, Steps: []ordercore.SagaStep{
		{Name: "a", Action: ordercore.SagaCall{URL: "http://p.test/a"}}}}
	if _, err := b.submit(engine.SubmitSaga{Saga: s}); err != nil { // no hold: due now, for a claim
		t.Fatal(err)
	}
	claimOne := func(what string) ordercore.Saga {
		t.Helper()
		v, err := b.submit(&engine.ClaimSagas{Limit: 10, For: saga.ClaimHold})
		if err != nil {
			t.Fatal(err)
		}
		got := v.([]ordercore.Saga)
		if len(got) != 1 {
			t.Fatalf("%s: claimed %d sagas, want the one", what, len(got))
		}
		if want := b.clock.Now().Add(saga.Hold(&got[0])); got[0].NextRunAt.Before(want) {
			t.Fatalf("%s: held until %v, want at least %v (its step timeout and the margin)", what, got[0].NextRunAt, want)
		}
		// 15 s into the call, past ClaimHold: nobody claims it.
		b.clock.Advance(15 * time.Second)
		if v, err := b.submit(&engine.ClaimSagas{Limit: 10, For: saga.ClaimHold}); err != nil || len(v.([]ordercore.Saga)) != 0 {
			t.Fatalf("%s: claimed again 15 s into a call of up to 30 s: %v %v", what, v, err)
		}
		return got[0]
	}
	outcome := func(s ordercore.Saga, o saga.Outcome) saga.Recorded {
		t.Helper()
		v, err := b.submit(engine.SagaOutcome{GID: s.GID, Version: s.Version, Call: saga.Call{Step: 0, Op: saga.OpAction},
			Outcome: o, Err: "HTTP 500", Jitter: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		r := v.(saga.Recorded)
		if !r.Applied {
			t.Fatalf("the outcome of the slow call (%s) was dropped: the saga moved on to version %d", o, r.Saga.Version)
		}
		return r
	}

	outcome(claimOne("first claim"), saga.OutcomeRetry) // a 500, after 15 s: backoff
	b.clock.Advance(time.Second)
	if r := outcome(claimOne("claim after the backoff"), saga.OutcomeOK); r.Saga.Status != ordercore.SagaCompleted {
		t.Fatalf("after the slow success: %s", r.Saga.Status)
	}

	// An action (a DTM client's) that makes a saga due with the default claim hold holds
	// it for its own.
	tcc := ordercore.Saga{GID: "slow-tcc", Kind: ordercore.SagaKindTCC, Status: ordercore.SagaPrepared, Policy: policy}
	if _, err := b.submit(engine.SubmitSaga{Saga: tcc}); err != nil {
		t.Fatal(err)
	}
	branch := ordercore.SagaStep{Name: "01", BranchID: "01", Confirm: &ordercore.SagaCall{URL: "http://p.test/c"},
		Compensate: &ordercore.SagaCall{URL: "http://p.test/x"}}
	if _, err := b.submit(engine.SagaAction{GID: tcc.GID, Action: engine.SagaRegister, Branch: branch}); err != nil {
		t.Fatal(err)
	}
	v, err := b.submit(engine.SagaAction{GID: tcc.GID, Action: engine.SagaSubmitTCC, Hold: saga.ClaimHold})
	if err != nil {
		t.Fatal(err)
	}
	got := v.(engine.SagaActed).Saga
	if want := b.clock.Now().Add(saga.Hold(&got)); got.NextRunAt.Before(want) {
		t.Fatalf("submitted TCC held until %v, want at least %v", got.NextRunAt, want)
	}
	b.finish()
}

// TestOperatorEventNamesTheSkippedStep: the audit event of a skip names the step it
// marked done, the first one (0) included; a retry or compensate names none.
func TestOperatorEventNamesTheSkippedStep(t *testing.T) {
	b := setupPay(t)
	s := ordercore.Saga{GID: "skip-first", Kind: ordercore.SagaKindSaga, Steps: []ordercore.SagaStep{
		{Name: "a", Action: ordercore.SagaCall{URL: "http://p.test/a"}},
		{Name: "b", Action: ordercore.SagaCall{URL: "http://p.test/b"}}}}
	if _, err := b.submit(engine.SubmitSaga{Saga: s}); err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{engine.SagaSkip, engine.SagaRetry, engine.SagaSkip} {
		if _, err := b.submit(engine.SagaAction{GID: s.GID, Action: action, By: "ops", Note: "by hand", Audited: true}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := b.db.AggregateEvents(context.Background(), s.GID, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		if e.Type == ordercore.EventSagaOperator {
			var m map[string]any
			if err := json.Unmarshal(e.Data, &m); err != nil {
				t.Fatal(err)
			}
			step, ok := m["step"]
			got = append(got, fmt.Sprintf("%s %v %v", m["action"], step, ok))
		}
	}
	if want := []string{"skip 0 true", "retry <nil> false", "skip 1 true"}; !slices.Equal(got, want) {
		t.Fatalf("operator events (action, step, has step) %q, want %q", got, want)
	}
	b.finish()
}

// TestClientAbortLeavesADeadLetterToItsOperator: a client's abort (DTM's) of a saga
// already rolling back answers as while it compensates, and changes nothing: one that
// waits in dead_letter stays there, its attempts spent, for an operator, whose compensate
// resumes it (audited).
func TestClientAbortLeavesADeadLetterToItsOperator(t *testing.T) {
	b := setupPay(t)
	s := ordercore.Saga{GID: "abort-dead", Kind: ordercore.SagaKindSaga,
		Policy: ordercore.SagaPolicy{RetriesMax: 1, CompensateAttemptsMax: 1},
		Steps:  []ordercore.SagaStep{{Name: "a", Action: ordercore.SagaCall{URL: "http://p.test/a"}, Compensate: &ordercore.SagaCall{URL: "http://p.test/c"}}}}
	if _, err := b.submit(engine.SubmitSaga{Saga: s}); err != nil {
		t.Fatal(err)
	}
	record(t, b, s.GID, saga.OutcomeFail)
	dead := record(t, b, s.GID, saga.OutcomeRetry)
	if dead.Status != ordercore.SagaDeadLetter {
		t.Fatalf("after its compensation's one attempt: %s, want dead_letter", dead.Status)
	}
	v, err := b.submit(engine.SagaAction{GID: s.GID, Action: engine.SagaCompensate})
	if err != nil {
		t.Fatalf("client abort of a dead_letter saga: %v", err)
	}
	if got := v.(engine.SagaActed).Saga; got.Status != ordercore.SagaDeadLetter || got.Version != dead.Version {
		t.Fatalf("after the client's abort: %s v%d, want dead_letter v%d unchanged", got.Status, got.Version, dead.Version)
	}
	v, err = b.submit(engine.SagaAction{GID: s.GID, Action: engine.SagaCompensate, By: "ops", Note: "participant fixed", Audited: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.(engine.SagaActed).Saga; got.Status != ordercore.SagaCompensating || got.Steps[0].Attempts != 0 {
		t.Fatalf("after the operator's compensate: %s, %d attempts; want compensating afresh", got.Status, got.Steps[0].Attempts)
	}
	b.finish()
}
