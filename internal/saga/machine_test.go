package saga_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/saga"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

var policy = ordercore.SagaPolicy{StepTimeout: time.Second, RetriesMax: 3, BackoffMin: 100 * time.Millisecond,
	BackoffMax: time.Second, CompensateAttemptsMax: 4}

func newSaga(kind ordercore.SagaKind, n int) *ordercore.Saga {
	s := &ordercore.Saga{GID: "g1", Kind: kind, Policy: policy}
	for i := range n {
		st := ordercore.SagaStep{Name: fmt.Sprint("step-", i+1), Action: ordercore.SagaCall{URL: "http://p/a"},
			Compensate: &ordercore.SagaCall{URL: "http://p/c"}}
		if kind == ordercore.SagaKindTCC {
			st.Confirm = &ordercore.SagaCall{URL: "http://p/f"}
		}
		s.Steps = append(s.Steps, st)
	}
	saga.Start(s, t0)
	return s
}

// run answers each call the saga needs with the next outcome of outs (OK once they run
// out) and returns the calls made, as "op step" strings.
func run(t *testing.T, s *ordercore.Saga, outs ...saga.Outcome) []string {
	t.Helper()
	var calls []string
	now := t0
	for i := 0; i < 1000; i++ {
		c, ok := saga.Next(s)
		if !ok {
			return calls
		}
		o := saga.OutcomeOK
		if len(outs) > 0 {
			o, outs = outs[0], outs[1:]
		}
		calls = append(calls, fmt.Sprint(c.Op, " ", c.Step))
		v := s.Version
		now = now.Add(time.Second)
		if !saga.Apply(s, c, o, "boom", now, 0.5) {
			t.Fatalf("Apply refused the call Next asked for: %+v", c)
		}
		if s.Version != v+1 {
			t.Fatalf("version %d -> %d, want +1", v, s.Version)
		}
		if s.Status == ordercore.SagaDeadLetter {
			return calls
		}
	}
	t.Fatal("the saga never settled")
	return nil
}

func TestSagaCompletes(t *testing.T) {
	s := newSaga(ordercore.SagaKindSaga, 3)
	if s.Status != ordercore.SagaRunning || !s.NextRunAt.Equal(t0) {
		t.Fatalf("started as %s due %v", s.Status, s.NextRunAt)
	}
	calls := run(t, s)
	if want := []string{"action 0", "action 1", "action 2"}; !slices.Equal(calls, want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	if s.Status != ordercore.SagaCompleted || !s.NextRunAt.IsZero() {
		t.Fatalf("ended %s due %v, want completed and nothing due", s.Status, s.NextRunAt)
	}
}

// Validate's messages number steps from 1, as reasons and DTM's branch ids do.
func TestValidateNumbersStepsFromOne(t *testing.T) {
	s := newSaga(ordercore.SagaKindSaga, 2)
	s.Steps[1].Name = s.Steps[0].Name
	if err := saga.Validate(s); ordercore.ErrorMessage(err) != `step 2: the name "step-1" is used twice` {
		t.Fatalf("duplicate name: %v", err)
	}
	s.Steps[1].Name, s.Steps[1].Action = "other", ordercore.SagaCall{}
	if err := saga.Validate(s); !strings.HasPrefix(ordercore.ErrorMessage(err), "step 2: action: ") {
		t.Fatalf("step without an action: %v", err)
	}
}

// A step that fails for good is compensated with every step before it, in reverse order
// (its own compensation is a null compensation at a barrier-protected participant).
func TestSagaFailureCompensatesInReverse(t *testing.T) {
	s := newSaga(ordercore.SagaKindSaga, 3)
	calls := run(t, s, saga.OutcomeOK, saga.OutcomeOK, saga.OutcomeFail)
	want := []string{"action 0", "action 1", "action 2", "compensate 2", "compensate 1", "compensate 0"}
	if !slices.Equal(calls, want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	// Steps are numbered from 1 in reasons, as in DTM's branch ids ("03" is the third).
	if want := "step 3 (step-3) failed for good: boom"; s.Status != ordercore.SagaCompensated || s.Reason != want {
		t.Fatalf("ended %s (%q), want compensated (%q)", s.Status, s.Reason, want)
	}
}

// Retries back off exponentially and, once RetriesMax is spent, count as a failure.
func TestSagaRetriesThenCompensates(t *testing.T) {
	s := newSaga(ordercore.SagaKindSaga, 2)
	saga.Apply(s, saga.Call{0, saga.OpAction}, saga.OutcomeOK, "", t0, 0)
	var waits []time.Duration
	for range policy.RetriesMax - 1 {
		saga.Apply(s, saga.Call{1, saga.OpAction}, saga.OutcomeRetry, "timeout", t0, 1)
		waits = append(waits, s.NextRunAt.Sub(t0))
		if s.Status != ordercore.SagaRunning {
			t.Fatalf("status %s after a retryable failure, want running", s.Status)
		}
	}
	if want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}; !slices.Equal(waits, want) {
		t.Fatalf("backoffs %v, want %v (jitter 1 = full)", waits, want)
	}
	saga.Apply(s, saga.Call{1, saga.OpAction}, saga.OutcomeRetry, "timeout", t0, 1)
	if s.Status != ordercore.SagaCompensating || s.Steps[1].Status != ordercore.StepFailed {
		t.Fatalf("after %d attempts: %s / step %s, want compensating / failed", policy.RetriesMax, s.Status, s.Steps[1].Status)
	}
	if want := "step 2 (step-2) no success after 3 attempts: timeout"; s.Reason != want {
		t.Fatalf("reason %q, want %q", s.Reason, want)
	}
	if c, _ := saga.Next(s); c != (saga.Call{1, saga.OpCompensate}) {
		t.Fatalf("next call %+v, want the compensation of the step that timed out (it may have taken effect)", c)
	}
}

// Past the deadline a retryable failure is final.
func TestSagaDeadline(t *testing.T) {
	s := newSaga(ordercore.SagaKindSaga, 1)
	s.Deadline = t0.Add(time.Minute)
	saga.Apply(s, saga.Call{0, saga.OpAction}, saga.OutcomeRetry, "503", t0.Add(time.Minute), 0)
	if s.Status != ordercore.SagaCompensating {
		t.Fatalf("status %s after a failure past the deadline, want compensating", s.Status)
	}
}

// A compensation that keeps failing puts the saga in dead_letter; an operator's retry
// resumes the compensation with fresh attempts.
func TestCompensationDeadLetterAndRetry(t *testing.T) {
	s := newSaga(ordercore.SagaKindSaga, 1)
	outs := []saga.Outcome{saga.OutcomeFail}
	for range policy.CompensateAttemptsMax {
		outs = append(outs, saga.OutcomeRetry)
	}
	run(t, s, outs...)
	if s.Status != ordercore.SagaDeadLetter || s.DeadFrom != ordercore.SagaCompensating || !s.NextRunAt.IsZero() {
		t.Fatalf("status %s from %s due %v, want dead_letter from compensating, nothing due", s.Status, s.DeadFrom, s.NextRunAt)
	}
	if want := "step 1 (step-1) compensate: no success after 4 attempts: boom"; s.Reason != want {
		t.Fatalf("reason %q, want %q", s.Reason, want)
	}
	if err := saga.Retry(s, t0); err != nil {
		t.Fatal(err)
	}
	if s.Status != ordercore.SagaCompensating || s.Steps[0].Attempts != 0 || !s.NextRunAt.Equal(t0) {
		t.Fatalf("after retry: %s attempts %d due %v", s.Status, s.Steps[0].Attempts, s.NextRunAt)
	}
	run(t, s)
	if s.Status != ordercore.SagaCompensated {
		t.Fatalf("ended %s, want compensated", s.Status)
	}
}

// A compensation has CompensateAttemptsMax attempts of its own, however many the action
// took before it ran out of retries.
func TestCompensationCountsItsOwnAttempts(t *testing.T) {
	s := newSaga(ordercore.SagaKindSaga, 1)
	var outs []saga.Outcome
	for range policy.RetriesMax + policy.CompensateAttemptsMax - 1 {
		outs = append(outs, saga.OutcomeRetry)
	}
	calls := run(t, s, outs...)
	if s.Status != ordercore.SagaCompensated {
		t.Fatalf("ended %s (%s) after calls %v: the compensation's %d attempts, its last a success, must be enough",
			s.Status, s.Reason, calls, policy.CompensateAttemptsMax)
	}
	if n := len(calls) - policy.RetriesMax; n != policy.CompensateAttemptsMax {
		t.Fatalf("%d compensation calls, want %d", n, policy.CompensateAttemptsMax)
	}
}

// A step whose action was never sent is not compensated: after a step fails for good, the
// steps after it were never sent.
func TestOnlyCalledStepsAreCompensated(t *testing.T) {
	s := newSaga(ordercore.SagaKindSaga, 3)
	calls := run(t, s, saga.OutcomeOK, saga.OutcomeFail)
	if want := []string{"action 0", "action 1", "compensate 1", "compensate 0"}; !slices.Equal(calls, want) {
		t.Fatalf("calls %v, want %v (step 2 was never sent)", calls, want)
	}
	if s.Steps[2].Called || s.Steps[2].Status != ordercore.StepPending {
		t.Fatalf("step 2 is %s, called %v; want pending and never called", s.Steps[2].Status, s.Steps[2].Called)
	}
}

// An operator's compensate (or a client's abort) in the forward phase compensates every
// step not recorded as succeeded, in reverse order: the coordinator sends a step before
// the success of the one before it is recorded, the outcome of the call in flight is
// dropped, and a crash loses what was not recorded, so any of them may have been sent.
func TestCompensateInForwardPhaseUndoesWhatMayHaveBeenSent(t *testing.T) {
	for _, c := range []struct {
		name     string
		kind     ordercore.SagaKind
		recorded int // successes recorded before the compensate
		want     []string
	}{
		{"a call in flight", ordercore.SagaKindSaga, 1, []string{"compensate 2", "compensate 1", "compensate 0"}},
		{"nothing recorded yet (deferred successes, or a crash)", ordercore.SagaKindSaga, 0, []string{"compensate 2", "compensate 1", "compensate 0"}},
		{"every action recorded but the last", ordercore.SagaKindSaga, 2, []string{"compensate 2", "compensate 1", "compensate 0"}},
		{"tcc tries in flight", ordercore.SagaKindTCC, 1, []string{"cancel 2", "cancel 1", "cancel 0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSaga(c.kind, 3)
			for i := range c.recorded {
				c0, _ := saga.Next(s)
				if !saga.Apply(s, c0, saga.OutcomeOK, "", t0, 0) || c0.Step != i {
					t.Fatalf("success of step %d not applied", i)
				}
			}
			v := s.Version
			if err := saga.Compensate(s, "operator", t0); err != nil {
				t.Fatal(err)
			}
			for i, st := range s.Steps {
				if !st.Called {
					t.Errorf("step %d (%s) is not counted as called after the compensate", i, st.Status)
				}
			}
			// The outcome of the call that was in flight is dropped.
			if saga.Apply(s, saga.Call{c.recorded, saga.OpAction}, saga.OutcomeOK, "", t0, 0) || s.Version != v+1 {
				t.Fatal("the outcome of the action in flight was applied after the compensate")
			}
			if calls := run(t, s); !slices.Equal(calls, c.want) || s.Status != ordercore.SagaCompensated {
				t.Fatalf("calls %v, ended %s; want %v, compensated", calls, s.Status, c.want)
			}
		})
	}
}

// An in-process step runs in the transaction that records it: a pending one has not run,
// and no call after it went out, so a compensate in the forward phase stops there.
func TestCompensateStopsAtAPendingInProcessStep(t *testing.T) {
	s := &ordercore.Saga{GID: "g", Kind: ordercore.SagaKindSaga, Policy: policy}
	for i, local := range []bool{false, false, true, false} {
		st := ordercore.SagaStep{Name: fmt.Sprint("s", i), Action: ordercore.SagaCall{URL: "http://p/a"},
			Compensate: &ordercore.SagaCall{URL: "http://p/c"}}
		if local {
			st.Action = ordercore.SagaCall{Local: saga.LocalNotify}
		}
		s.Steps = append(s.Steps, st)
	}
	saga.Start(s, t0)
	if err := saga.Compensate(s, "operator", t0); err != nil {
		t.Fatal(err)
	}
	if calls := run(t, s); !slices.Equal(calls, []string{"compensate 1", "compensate 0"}) {
		t.Fatalf("calls %v, want the steps before the in-process one compensated", calls)
	}
	if s.Steps[2].Called || s.Steps[3].Called {
		t.Fatal("the in-process step, or the step after it, counts as called")
	}
}

func TestTCC(t *testing.T) {
	s := newSaga(ordercore.SagaKindTCC, 2)
	if calls := run(t, s); !slices.Equal(calls, []string{"try 0", "try 1", "confirm 0", "confirm 1"}) {
		t.Fatalf("calls %v", calls)
	}
	if s.Status != ordercore.SagaCompleted {
		t.Fatalf("ended %s", s.Status)
	}
	s = newSaga(ordercore.SagaKindTCC, 3)
	calls := run(t, s, saga.OutcomeOK, saga.OutcomeFail)
	if want := []string{"try 0", "try 1", "cancel 1", "cancel 0"}; !slices.Equal(calls, want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	if s.Status != ordercore.SagaCompensated {
		t.Fatalf("ended %s", s.Status)
	}
	if err := saga.Compensate(s, "again", t0); err != nil {
		t.Fatalf("compensating a compensated saga again: %v, want the same answer", err)
	}
}

// DTM style: the client prepares, registers branches (and runs their tries), then submits
// or aborts; a prepared transaction left alone is aborted at its deadline.
func TestPreparedTCC(t *testing.T) {
	mk := func() *ordercore.Saga {
		s := &ordercore.Saga{GID: "g", Kind: ordercore.SagaKindTCC, Status: ordercore.SagaPrepared, Policy: policy, Deadline: t0.Add(time.Minute)}
		saga.Start(s, t0)
		for i := range 2 {
			err := saga.Register(s, ordercore.SagaStep{Name: fmt.Sprint("b", i), Action: ordercore.SagaCall{URL: "http://p/t"},
				Confirm: &ordercore.SagaCall{URL: "http://p/f"}, Compensate: &ordercore.SagaCall{URL: "http://p/c"}}, t0)
			if err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	s := mk()
	if !s.NextRunAt.Equal(s.Deadline) {
		t.Fatalf("a prepared TCC is due %v, want at its deadline", s.NextRunAt)
	}
	if _, ok := saga.Next(s); ok {
		t.Fatal("a prepared TCC has a call to make: its client makes the tries")
	}
	if err := saga.Register(s, ordercore.SagaStep{Name: "b0"}, t0); ordercore.ErrorCode(err) != ordercore.ECONFLICT {
		t.Fatalf("registering b0 again with other calls: %v", err)
	}
	v := s.Version
	if err := saga.Register(s, s.Steps[0], t0); err != nil || s.Version != v || len(s.Steps) != 2 {
		t.Fatalf("a retried registration: %v, version %d -> %d, %d branches", err, v, s.Version, len(s.Steps))
	}
	if err := saga.Submit(s, t0); err != nil {
		t.Fatal(err)
	}
	if calls := run(t, s); !slices.Equal(calls, []string{"confirm 0", "confirm 1"}) || s.Status != ordercore.SagaCompleted {
		t.Fatalf("after submit: calls %v, %s", calls, s.Status)
	}
	if err := saga.Register(s, ordercore.SagaStep{Name: "late"}, t0); ordercore.ErrorCode(err) != ordercore.ESagaState {
		t.Fatalf("registering after submit: %v", err)
	}

	s = mk()
	if err := saga.Compensate(s, "client abort", t0); err != nil {
		t.Fatal(err)
	}
	if calls := run(t, s); !slices.Equal(calls, []string{"cancel 1", "cancel 0"}) || s.Status != ordercore.SagaCompensated {
		t.Fatalf("after abort: calls %v, %s", calls, s.Status)
	}

	s = mk()
	if saga.Expire(s, t0.Add(59*time.Second)) {
		t.Fatal("expired before its deadline")
	}
	if !saga.Expire(s, t0.Add(time.Minute)) || s.Status != ordercore.SagaCompensating {
		t.Fatalf("at its deadline: %s, want compensating", s.Status)
	}
}

func TestStaleOutcomeIsRefused(t *testing.T) {
	s := newSaga(ordercore.SagaKindSaga, 2)
	saga.Apply(s, saga.Call{0, saga.OpAction}, saga.OutcomeOK, "", t0, 0)
	v := s.Version
	if saga.Apply(s, saga.Call{0, saga.OpAction}, saga.OutcomeFail, "late duplicate", t0, 0) {
		t.Fatal("a second outcome for a call already answered was applied")
	}
	if s.Version != v || s.Status != ordercore.SagaRunning {
		t.Fatal("a refused outcome changed the saga")
	}
}

func TestSkip(t *testing.T) {
	s := newSaga(ordercore.SagaKindSaga, 2)
	saga.Apply(s, saga.Call{0, saga.OpAction}, saga.OutcomeFail, "no", t0, 0) // its compensation is next
	for range policy.CompensateAttemptsMax {
		c, _ := saga.Next(s)
		saga.Apply(s, c, saga.OutcomeRetry, "down", t0, 0)
	}
	if s.Status != ordercore.SagaDeadLetter {
		t.Fatalf("status %s", s.Status)
	}
	step, err := saga.Skip(s, t0)
	if err != nil || step != 0 {
		t.Fatalf("skip: %d %v", step, err)
	}
	if s.Status != ordercore.SagaCompensated || s.Steps[0].Status != ordercore.StepSkipped {
		t.Fatalf("after skip: %s, step %s", s.Status, s.Steps[0].Status)
	}
	if _, err := saga.Skip(s, t0); ordercore.ErrorCode(err) != ordercore.ESagaState {
		t.Fatalf("skip on a compensated saga: %v", err)
	}
}

// A skipped action counts as done (the operator did it by hand): if the saga rolls back
// later, it is compensated like a step that succeeded. A skipped try is not confirmed
// (the operator may have skipped it for having nothing to do), but it is cancelled.
func TestSkippedActionIsCompensatedOnRollback(t *testing.T) {
	for _, c := range []struct {
		name    string
		kind    ordercore.SagaKind
		attempt bool // the action was sent (and answered 500) before the skip
		outs    []saga.Outcome
		want    []string
	}{
		{"attempted, then a later step fails", ordercore.SagaKindSaga, true, []saga.Outcome{saga.OutcomeFail},
			[]string{"action 1", "compensate 1", "compensate 0"}},
		{"never sent, then a later step fails", ordercore.SagaKindSaga, false, []saga.Outcome{saga.OutcomeFail},
			[]string{"action 1", "compensate 1", "compensate 0"}},
		{"tcc: not confirmed", ordercore.SagaKindTCC, true, nil,
			[]string{"try 1", "confirm 1"}},
		{"tcc: cancelled on rollback", ordercore.SagaKindTCC, true, []saga.Outcome{saga.OutcomeFail},
			[]string{"try 1", "cancel 1", "cancel 0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSaga(c.kind, 2)
			if c.attempt {
				first, _ := saga.Next(s)
				saga.Apply(s, first, saga.OutcomeRetry, "HTTP 500", t0, 0)
			}
			if step, err := saga.Skip(s, t0); err != nil || step != 0 || s.Steps[0].Status != ordercore.StepSkipped {
				t.Fatalf("skip: step %d, %v, status %s", step, err, s.Steps[0].Status)
			}
			if calls := run(t, s, c.outs...); !slices.Equal(calls, c.want) {
				t.Fatalf("calls %v, want %v", calls, c.want)
			}
		})
	}
	// An operator's compensate after a skip undoes the skipped step too.
	s := newSaga(ordercore.SagaKindSaga, 2)
	saga.Skip(s, t0)
	saga.Apply(s, saga.Call{1, saga.OpAction}, saga.OutcomeRetry, "HTTP 500", t0, 0)
	if err := saga.Compensate(s, "operator", t0); err != nil {
		t.Fatal(err)
	}
	if calls := run(t, s); !slices.Equal(calls, []string{"compensate 1", "compensate 0"}) {
		t.Fatalf("after skip and compensate: calls %v", calls)
	}
}

// FuzzSaga drives sagas of both kinds with random outcomes and operator actions and
// checks the promises: the saga always settles (completed, compensated or dead_letter),
// completed means no step was compensated or failed, compensated means every step whose
// action was sent (or may have been, or was skipped by an operator) is compensated (or
// its compensation skipped), compensations run in reverse step order, and the version
// rises with every change.
func FuzzSaga(f *testing.F) {
	f.Add(uint64(1), uint8(3), false)
	f.Add(uint64(7), uint8(5), true)
	f.Fuzz(func(t *testing.T, seed uint64, n uint8, tcc bool) {
		kind := ordercore.SagaKindSaga
		if tcc {
			kind = ordercore.SagaKindTCC
		}
		s := newSaga(kind, 1+int(n%6))
		rng := rand.New(rand.NewPCG(seed, 0))
		now := t0
		lastUndo := len(s.Steps)
		for i := 0; ; i++ {
			if i > 10_000 {
				t.Fatalf("saga did not settle: %+v", s)
			}
			if s.Status == ordercore.SagaDeadLetter {
				if rng.IntN(3) == 0 {
					return
				}
				v := s.Version
				if err := saga.Retry(s, now); err != nil || s.Version <= v {
					t.Fatalf("retry of a dead_letter saga: %v", err)
				}
				continue
			}
			c, ok := saga.Next(s)
			if !ok {
				break
			}
			if rng.IntN(50) == 0 {
				v := s.Version
				if saga.Compensate(s, "operator", now) == nil && s.Version < v {
					t.Fatal("version went back")
				}
				continue
			}
			if rng.IntN(50) == 0 {
				v := s.Version
				if step, err := saga.Skip(s, now); err != nil || step != c.Step || s.Version != v+1 {
					t.Fatalf("skip of the waiting step %d: step %d, %v, version %d -> %d", c.Step, step, err, v, s.Version)
				}
				if c.Op == saga.OpCompensate || c.Op == saga.OpCancel {
					lastUndo = c.Step
				}
				continue
			}
			if c.Op == saga.OpCompensate || c.Op == saga.OpCancel {
				if c.Step > lastUndo {
					t.Fatalf("compensation of step %d after step %d: not in reverse order", c.Step, lastUndo)
				}
				if !s.Steps[c.Step].Called {
					t.Fatalf("compensation of step %d whose action was never sent", c.Step)
				}
				lastUndo = c.Step
			}
			o := []saga.Outcome{saga.OutcomeOK, saga.OutcomeRetry, saga.OutcomeFail}[rng.IntN(3)]
			v := s.Version
			now = now.Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
			if !saga.Apply(s, c, o, "x", now, rng.Float64()) || s.Version != v+1 {
				t.Fatal("an outcome for the call Next named was refused or did not raise the version")
			}
		}
		switch s.Status {
		case ordercore.SagaCompleted:
			for _, st := range s.Steps {
				if st.Status == ordercore.StepCompensated || st.Status == ordercore.StepFailed {
					t.Fatalf("completed saga with a step %s", st.Status)
				}
			}
		case ordercore.SagaCompensated:
			for i, st := range s.Steps {
				if st.Called && st.Status != ordercore.StepCompensated && st.Status != ordercore.StepSkipped {
					t.Fatalf("compensated saga left step %d %s", i, st.Status)
				}
			}
		default:
			t.Fatalf("saga settled in %s", s.Status)
		}
		if !s.NextRunAt.IsZero() {
			t.Fatal("a final saga is still due")
		}
	})
}
