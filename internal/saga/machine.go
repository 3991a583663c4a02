// Package saga is the saga and TCC coordinator: the pure rules of what a saga calls next
// and what a call's outcome does to it (this file), and the Coordinator that claims due
// sagas, calls their participants with bounded concurrency and per-host breakers, and
// records every outcome through the engine's committer (coordinator.go).
//
// The rules are pure: no I/O, time and jitter come in as arguments, so table tests and a
// fuzz target can check that every saga ends completed or compensated (or waits in
// dead_letter for an operator), that only actions that were (or may have been) sent are
// compensated, in reverse order, and that the version rises with every change.
//
// It imports the root package and internal/limit; the Coordinator reaches the engine and
// the network through interfaces that app wires.
package saga

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"ordercore"
	"ordercore/internal/limit"
)

// Op is what a call does, in DTM's words (the "op" query parameter participants get).
type Op string

// Ops.
const (
	OpAction     Op = "action"
	OpCompensate Op = "compensate"
	OpTry        Op = "try"
	OpConfirm    Op = "confirm"
	OpCancel     Op = "cancel"
)

// Call is one participant call a saga needs.
type Call struct {
	Step int
	Op   Op
}

// Target is the call's endpoint in s.
func (c Call) Target(s *ordercore.Saga) *ordercore.SagaCall {
	st := &s.Steps[c.Step]
	switch c.Op {
	case OpAction, OpTry:
		return &st.Action
	case OpConfirm:
		return st.Confirm
	}
	return st.Compensate
}

// Outcome is how a call ended.
type Outcome string

// Outcomes. Retry covers every answer that is not definite: a timeout, a lost
// connection, a 5xx, an open breaker. Fail is the participant's "failed for good" (DTM:
// 409, or a body containing FAILURE).
const (
	OutcomeOK    Outcome = "ok"
	OutcomeRetry Outcome = "retry"
	OutcomeFail  Outcome = "fail"
)

// Locals are the in-process operations a step may name, with what each does. The engine
// runs them inside the transaction that records their outcome.
var Locals = map[string]string{
	LocalNotify: "appends a saga.notify event (its payload as data) to the saga's timeline, and the order's for a fulfilment saga: the event feed, the NATS relay and webhooks carry it to subscribers",
}

// In-process operations.
const (
	LocalNotify = "ordercore.notify"
)

// Next is the call s needs now, if any. A saga in backoff still has a next call; when to
// make it is NextRunAt's business.
func Next(s *ordercore.Saga) (Call, bool) {
	switch s.Status {
	case ordercore.SagaRunning, ordercore.SagaTrying:
		op := OpAction
		if s.Kind == ordercore.SagaKindTCC {
			op = OpTry
		}
		for i, st := range s.Steps {
			if st.Status == ordercore.StepPending {
				return Call{i, op}, true
			}
		}
	case ordercore.SagaConfirming:
		for i, st := range s.Steps {
			if st.Status == ordercore.StepSucceeded && st.Confirm != nil {
				return Call{i, OpConfirm}, true
			}
		}
	case ordercore.SagaCompensating:
		op := OpCompensate
		if s.Kind == ordercore.SagaKindTCC {
			op = OpCancel
		}
		for i := len(s.Steps) - 1; i >= 0; i-- {
			if needsUndo(s.Steps[i]) {
				return Call{i, op}, true
			}
		}
	}
	return Call{}, false
}

// needsUndo: a step whose action was sent (answered or not), or may have been, is
// compensated, unless it has nothing to undo or was undone or skipped already. (A step
// whose action an operator skipped is a succeeded one once the saga rolls back.)
//
// Called is set when an outcome of the step's action is recorded, which is not always
// before the action goes out: the coordinator sends a step's action before the success
// of the step before it is recorded (pipelining), and a crash loses the outcomes it had
// not recorded. So the store cannot know how far a saga's forward phase really got. When
// it fails on its own that does not matter: a step failed for good, and no later step was
// sent. But when an operator or the saga's client compensates a saga in its forward
// phase, every step from the first one not recorded as succeeded to the last may have
// been sent (and the outcome of a call in flight is dropped, as the saga has moved on),
// so Compensate marks them all as called (mayHaveBeenSent) and every one is compensated,
// in reverse order. A participant must take a compensation whose action never ran (a
// null compensation: the barrier's rule), as it must for a step that timed out.
func needsUndo(st ordercore.SagaStep) bool {
	return st.Called && st.Compensate != nil &&
		st.Status != ordercore.StepCompensated && st.Status != ordercore.StepSkipped
}

// Backoff is the wait before attempt n+1 after n failed ones: exponential from BackoffMin,
// capped at BackoffMax, with "equal jitter" (half fixed, half random; jitter in [0,1)).
func Backoff(p ordercore.SagaPolicy, attempts int, jitter float64) time.Duration {
	d := p.BackoffMin
	for i := 1; i < attempts && d < p.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.BackoffMax)
	return d/2 + time.Duration(float64(d/2)*jitter)
}

// Apply records that call c of s ended with outcome o (errMsg says why, for anything but
// OK) at now, and moves the saga on. It returns false, changing nothing, if c is not the
// call s needs (a stale outcome: another worker moved the saga meanwhile).
func Apply(s *ordercore.Saga, c Call, o Outcome, errMsg string, now time.Time, jitter float64) bool {
	want, ok := Next(s)
	if !ok || want != c {
		return false
	}
	st := &s.Steps[c.Step]
	forward := c.Op == OpAction || c.Op == OpTry
	if forward {
		st.Called = true
	}
	switch {
	case o == OutcomeOK:
		st.Attempts, st.LastError = 0, ""
		switch c.Op {
		case OpAction, OpTry:
			st.Status = ordercore.StepSucceeded
		case OpConfirm:
			st.Status = ordercore.StepConfirmed
		default:
			st.Status = ordercore.StepCompensated
		}
		s.NextRunAt = now
	case forward:
		st.Attempts++
		st.LastError = errMsg
		exhausted := st.Attempts >= s.Policy.RetriesMax || !s.Deadline.IsZero() && !now.Before(s.Deadline)
		if o == OutcomeFail || exhausted {
			st.Status = ordercore.StepFailed
			why := "failed for good"
			if o != OutcomeFail {
				why = fmt.Sprintf("no success after %d attempts", st.Attempts)
			}
			rollBack(s, fmt.Sprintf("step %d (%s) %s: %s", c.Step+1, st.Name, why, errMsg))
			s.NextRunAt = now
		} else {
			s.NextRunAt = now.Add(Backoff(s.Policy, st.Attempts, jitter))
		}
	default: // a compensation, cancel or confirm must succeed in the end: retry, bounded
		st.Attempts++
		st.LastError = errMsg
		if st.Attempts >= s.Policy.CompensateAttemptsMax {
			s.DeadFrom = s.Status
			setStatus(s, ordercore.SagaDeadLetter, fmt.Sprintf("step %d (%s) %s: no success after %d attempts: %s", c.Step+1, st.Name, c.Op, st.Attempts, errMsg))
			s.NextRunAt = time.Time{}
		} else {
			s.NextRunAt = now.Add(Backoff(s.Policy, st.Attempts, jitter))
		}
	}
	settle(s, now)
	touch(s, now)
	return true
}

// settle moves a saga whose phase has no call left to its next status.
func settle(s *ordercore.Saga, now time.Time) {
	for {
		if _, more := Next(s); more {
			return
		}
		switch s.Status {
		case ordercore.SagaRunning:
			setStatus(s, ordercore.SagaCompleted, "")
		case ordercore.SagaTrying:
			setStatus(s, ordercore.SagaConfirming, "")
			continue
		case ordercore.SagaConfirming:
			setStatus(s, ordercore.SagaCompleted, "")
		case ordercore.SagaCompensating:
			setStatus(s, ordercore.SagaCompensated, s.Reason)
		default:
			return
		}
		if s.Status.Final() {
			s.NextRunAt = time.Time{}
			return
		}
	}
}

// rollBack moves a saga in its forward phase to compensating. A step whose action an
// operator skipped counts as done (the operator said its effect is in place: done by
// hand, or nothing to do), so from here on it is a step that succeeded, and is
// compensated like one (a compensation of nothing is a null compensation).
//
// Attempts start again from zero: they counted the forward calls, and a compensation gets
// its own CompensateAttemptsMax.
func rollBack(s *ordercore.Saga, reason string) {
	for i := range s.Steps {
		st := &s.Steps[i]
		if st.Status == ordercore.StepSkipped {
			st.Status, st.Called = ordercore.StepSucceeded, true
		}
		st.Attempts = 0
	}
	setStatus(s, ordercore.SagaCompensating, reason)
}

func setStatus(s *ordercore.Saga, to ordercore.SagaStatus, reason string) {
	limit.Assert(!s.Status.Final(), "saga %s: %s is final, cannot move to %s", s.GID, s.Status, to)
	s.Status = to
	if reason != "" || to.Final() {
		s.Reason = reason
	}
	if to != ordercore.SagaDeadLetter {
		s.DeadFrom = ""
	}
}

// Wake cuts short the backoff of a saga waiting for a retry: it is due at now.
func Wake(s *ordercore.Saga, now time.Time) {
	s.NextRunAt = now
	touch(s, now)
}

// HoldUntil keeps a saga that a worker holds (its NextRunAt is the end of the hold) held
// until at least until: a claim holds the sagas it takes for one time, and a saga whose
// call may take longer needs longer. It reports whether s changed.
func HoldUntil(s *ordercore.Saga, until, now time.Time) bool {
	if s.NextRunAt.IsZero() || !s.NextRunAt.Before(until) {
		return false
	}
	s.NextRunAt = until
	touch(s, now)
	return true
}

func touch(s *ordercore.Saga, now time.Time) {
	s.Version++
	s.UpdatedAt = now
}

// Start returns a submitted saga in its first status, due now: running (a saga), trying
// (a TCC that ordercore drives) or prepared (a TCC whose client runs the tries; due at its
// deadline, when an unfinished one is aborted).
func Start(s *ordercore.Saga, now time.Time) {
	for i := range s.Steps {
		s.Steps[i].Status = ordercore.StepPending
	}
	switch {
	case s.Kind == ordercore.SagaKindSaga:
		s.Status = ordercore.SagaRunning
		s.NextRunAt = now
	case s.Status == ordercore.SagaPrepared:
		s.NextRunAt = s.Deadline
	default:
		s.Status = ordercore.SagaTrying
		s.NextRunAt = now
	}
	s.Version, s.CreatedAt, s.UpdatedAt = 1, now, now
	settle(s, now) // a saga of no steps is complete at once
}

// Expire aborts a prepared TCC whose deadline passed (its client never submitted nor
// aborted it): every registered branch is cancelled. It reports whether s changed.
func Expire(s *ordercore.Saga, now time.Time) bool {
	if s.Status != ordercore.SagaPrepared || now.Before(s.Deadline) {
		return false
	}
	rollBack(s, "prepared transaction not submitted before its deadline")
	s.NextRunAt = now
	settle(s, now)
	touch(s, now)
	return true
}

// Register adds a branch to a prepared TCC (DTM's registerBranch: the client registers
// a branch before it calls the try, so a try whose answer is lost is still cancelled).
func Register(s *ordercore.Saga, st ordercore.SagaStep, now time.Time) error {
	if s.Status != ordercore.SagaPrepared {
		return ordercore.Errorf(ordercore.ESagaState, "saga %s is %s: branches are registered while it is prepared", s.GID, s.Status)
	}
	if len(s.Steps) >= limit.SagaStepsMax {
		return ordercore.Errorf(ordercore.EINVALID, "a saga has at most %d branches", limit.SagaStepsMax)
	}
	for _, have := range s.Steps {
		if have.Name == st.Name {
			if sameCall(have.Confirm, st.Confirm) && sameCall(have.Compensate, st.Compensate) {
				return nil // a client's retry of the same registration
			}
			return ordercore.Errorf(ordercore.ECONFLICT, "branch %q is registered already, with other calls", st.Name)
		}
	}
	st.Status, st.Called = ordercore.StepPending, true
	s.Steps = append(s.Steps, st)
	touch(s, now)
	return nil
}

func sameCall(a, b *ordercore.SagaCall) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.URL == b.URL && a.Local == b.Local && string(a.Payload) == string(b.Payload)
}

// Submit ends the try phase of a prepared TCC: its client reports every try succeeded, so
// every branch is confirmed.
func Submit(s *ordercore.Saga, now time.Time) error {
	if s.Status != ordercore.SagaPrepared {
		return ordercore.Errorf(ordercore.ESagaState, "saga %s is %s, not prepared", s.GID, s.Status)
	}
	for i := range s.Steps {
		s.Steps[i].Status = ordercore.StepSucceeded
	}
	setStatus(s, ordercore.SagaConfirming, "")
	s.NextRunAt = now
	settle(s, now)
	touch(s, now)
	return nil
}

// Compensate starts compensation of a saga that has not completed (an operator's call or a
// TCC client's abort). A TCC past its try phase is confirmed and cannot be. In the forward
// phase every step not recorded as succeeded may have been sent, and is compensated (see
// needsUndo): the outcome of a call in flight, and successes not recorded yet, are
// dropped, as the version moves on.
func Compensate(s *ordercore.Saga, reason string, now time.Time) error {
	switch {
	case s.Status == ordercore.SagaCompensating || s.Status == ordercore.SagaCompensated:
		return nil // asked twice: the answer is the same
	case s.Status == ordercore.SagaDeadLetter && s.DeadFrom == ordercore.SagaCompensating:
		return Retry(s, now)
	case s.Status.Final() || s.Status == ordercore.SagaConfirming || s.Status == ordercore.SagaDeadLetter:
		return ordercore.Errorf(ordercore.ESagaState, "saga %s is %s: it can no longer be compensated", s.GID, s.Status)
	}
	if s.Status == ordercore.SagaRunning || s.Status == ordercore.SagaTrying {
		mayHaveBeenSent(s)
	}
	rollBack(s, reason)
	s.NextRunAt = now
	settle(s, now)
	touch(s, now)
	return nil
}

// mayHaveBeenSent marks as called every step of a saga in its forward phase whose action
// may have gone out without its outcome being recorded (see needsUndo): each pending step
// from the first, up to an in-process one. An in-process step runs in the transaction
// that records it, so a pending one has not run, and no call after it went out: the
// coordinator records every outcome before a saga's in-process step runs.
func mayHaveBeenSent(s *ordercore.Saga) {
	for i := range s.Steps {
		st := &s.Steps[i]
		if st.Status != ordercore.StepPending {
			continue
		}
		if st.Action.Local != "" {
			return
		}
		st.Called = true
	}
}

// Retry makes a saga's next call due now: a saga in backoff goes at once, a dead_letter
// one resumes the phase it stopped in with a fresh count of attempts.
func Retry(s *ordercore.Saga, now time.Time) error {
	if s.Status.Final() || s.Status == ordercore.SagaPrepared {
		return ordercore.Errorf(ordercore.ESagaState, "saga %s is %s: there is nothing to retry", s.GID, s.Status)
	}
	if s.Status == ordercore.SagaDeadLetter {
		limit.Assert(s.DeadFrom != "", "saga %s is dead_letter with no status to resume", s.GID)
		s.Status, s.DeadFrom = s.DeadFrom, ""
	}
	if c, ok := Next(s); ok {
		s.Steps[c.Step].Attempts = 0
	}
	s.NextRunAt = now
	touch(s, now)
	return nil
}

// Skip marks the step the saga waits on as done without calling it (an operator did its
// work by hand, or it has nothing to do), and the saga moves on. It returns the step. A
// skipped action (or try) counts as done: it is not confirmed, but if the saga rolls back
// later it is compensated (cancelled) like a step that succeeded (rollBack). A skipped
// compensation, cancel or confirm is simply done.
func Skip(s *ordercore.Saga, now time.Time) (int, error) {
	if s.Status == ordercore.SagaDeadLetter {
		s.Status, s.DeadFrom = s.DeadFrom, ""
	}
	c, ok := Next(s)
	if !ok {
		return 0, ordercore.Errorf(ordercore.ESagaState, "saga %s is %s: no step waits", s.GID, s.Status)
	}
	st := &s.Steps[c.Step]
	st.Status, st.Attempts = ordercore.StepSkipped, 0
	s.NextRunAt = now
	settle(s, now)
	touch(s, now)
	return c.Step, nil
}

// Defaults fills a policy's zero fields with the defaults of internal/limit.
func Defaults(p ordercore.SagaPolicy) ordercore.SagaPolicy {
	if p.StepTimeout <= 0 {
		p.StepTimeout = limit.SagaStepTimeoutDefault
	}
	if p.RetriesMax <= 0 {
		p.RetriesMax = limit.SagaRetriesDefault
	}
	if p.BackoffMin <= 0 {
		p.BackoffMin = limit.SagaBackoffMinDefault
	}
	if p.BackoffMax <= 0 {
		p.BackoffMax = max(limit.SagaBackoffMaxDefault, p.BackoffMin)
	}
	if p.CompensateAttemptsMax <= 0 {
		p.CompensateAttemptsMax = limit.SagaCompensateDefault
	}
	return p
}

// Validate checks a submitted saga (after Defaults): what a client may send. Its messages,
// like a saga's reasons, number steps from 1, as DTM's branch ids ("01", "02"...) do.
func Validate(s *ordercore.Saga) error {
	bad := func(format string, args ...any) error { return ordercore.Errorf(ordercore.EINVALID, format, args...) }
	p := s.Policy
	switch {
	case !ValidGID(s.GID):
		return bad("gid must be 1..%d characters of letters, digits and -_.:", limit.SagaGIDBytesMax)
	case s.Kind != ordercore.SagaKindSaga && s.Kind != ordercore.SagaKindTCC:
		return bad("kind must be %q or %q", ordercore.SagaKindSaga, ordercore.SagaKindTCC)
	case len(s.Steps) > limit.SagaStepsMax || len(s.Steps) == 0 && s.Status != ordercore.SagaPrepared:
		return bad("a saga has 1..%d steps", limit.SagaStepsMax)
	case p.StepTimeout > limit.SagaStepTimeoutMax:
		return bad("step_timeout must be at most %s", limit.SagaStepTimeoutMax)
	case p.RetriesMax > limit.SagaRetriesMax:
		return bad("retries_max must be at most %d", limit.SagaRetriesMax)
	case p.CompensateAttemptsMax > limit.SagaCompensateMax:
		return bad("compensate_attempts_max must be at most %d", limit.SagaCompensateMax)
	case p.BackoffMin > p.BackoffMax:
		return bad("backoff_min must not exceed backoff_max")
	}
	names := map[string]bool{}
	for i, st := range s.Steps {
		if err := ValidStep(s.Kind, st); err != nil {
			return bad("step %d: %s", i+1, ordercore.ErrorMessage(err))
		}
		if names[st.Name] {
			return bad("step %d: the name %q is used twice", i+1, st.Name)
		}
		names[st.Name] = true
	}
	return nil
}

// ValidRegistered checks a TCC branch a DTM client registers: its try is the client's
// own call, so only its confirm and cancel are ours to make.
func ValidRegistered(st ordercore.SagaStep) error {
	bad := func(format string, args ...any) error { return ordercore.Errorf(ordercore.EINVALID, format, args...) }
	switch {
	case !ValidGID(st.BranchID) || len(st.BranchID) > limit.IDBytesMax:
		return bad("branch_id must be 1..%d characters of letters, digits and -_.:", limit.IDBytesMax)
	case st.Confirm == nil || st.Compensate == nil:
		return bad("a TCC branch needs a confirm and a cancel")
	}
	if err := validCall("confirm", *st.Confirm); err != nil {
		return err
	}
	return validCall("cancel", *st.Compensate)
}

// ValidStep checks one step or branch.
func ValidStep(kind ordercore.SagaKind, st ordercore.SagaStep) error {
	bad := func(format string, args ...any) error { return ordercore.Errorf(ordercore.EINVALID, format, args...) }
	if st.Name == "" || len(st.Name) > limit.IDBytesMax || !ordercore.ValidText(st.Name) {
		return bad("name must be 1..%d bytes of text without control characters", limit.IDBytesMax)
	}
	if err := validCall("action", st.Action); err != nil {
		return err
	}
	if st.Compensate != nil {
		if err := validCall("compensate", *st.Compensate); err != nil {
			return err
		}
	}
	if kind == ordercore.SagaKindTCC {
		if st.Confirm == nil || st.Compensate == nil {
			return bad("a TCC branch needs a confirm and a cancel")
		}
		if err := validCall("confirm", *st.Confirm); err != nil {
			return err
		}
	} else if st.Confirm != nil {
		return bad("confirm belongs to TCC branches")
	}
	return nil
}

func validCall(what string, c ordercore.SagaCall) error {
	bad := func(format string, args ...any) error {
		return ordercore.Errorf(ordercore.EINVALID, what+": "+format, args...)
	}
	switch {
	case (c.URL == "") == (c.Local == ""):
		return bad("set exactly one of url (an HTTP participant) and local (an ordercore operation)")
	case len(c.Payload) > limit.SagaPayloadBytesMax:
		return bad("payload exceeds %d bytes", limit.SagaPayloadBytesMax)
	case len(c.Payload) > 0 && !json.Valid(c.Payload):
		return bad("payload is not JSON")
	case c.Local != "" && Locals[c.Local] == "":
		return bad("no in-process operation %q (GET /v1/sagas/locals lists them)", c.Local)
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(c.URL) > limit.SagaURLBytesMax {
			return bad("url must be an absolute http(s) URL of at most %d bytes", limit.SagaURLBytesMax)
		}
	}
	return nil
}

// ValidGID reports whether gid is usable as a global transaction id.
func ValidGID(gid string) bool {
	if gid == "" || len(gid) > limit.SagaGIDBytesMax {
		return false
	}
	for _, r := range gid {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:", r)) {
			return false
		}
	}
	return true
}
