package ordercore

import (
	"encoding/json"
	"time"
)

// A Saga is a global transaction over steps that live in other services (or in ordercore
// itself), coordinated durably by ordercore: each step is an action with a compensation,
// and the saga ends completed (every action done) or compensated (every action that was
// attempted undone, in reverse order). A TCC transaction is the same record with try,
// confirm and cancel calls per branch. The whole record, steps included, is one row
// rewritten under its version; every change also appends an event (AggregateSaga).
//
//	saga: running -> completed
//	      running -> compensating -> compensated
//	tcc:  prepared (a client runs the tries itself, DTM style) -> confirming | compensating
//	      trying (ordercore runs the tries) -> confirming -> completed
//	      trying -> compensating -> compensated
//	any non-final status -> dead_letter when a bound is exhausted in a phase that cannot
//	fail (a compensation, a confirm); an operator resumes it.
type Saga struct {
	GID    string     `json:"gid"`
	Kind   SagaKind   `json:"kind"`
	Status SagaStatus `json:"status"`
	Steps  []SagaStep `json:"steps"`
	// OrderID links a fulfilment saga to its order: its events are on the order's
	// timeline too.
	OrderID string     `json:"order_id,omitempty"`
	Policy  SagaPolicy `json:"policy"`
	// NextRunAt is when a worker next looks at the saga: the retry time of a step that
	// failed, or the end of a worker's claim while a call runs. Zero in final statuses.
	NextRunAt time.Time `json:"next_run_at,omitzero"`
	// Reason says why the saga compensates or waits in dead_letter.
	Reason string `json:"reason,omitempty"`
	// DeadFrom is the status a dead_letter saga was in (compensating or confirming), and
	// resumes when an operator retries it.
	DeadFrom SagaStatus `json:"dead_from,omitempty"`
	// Deadline bounds the forward phase: past it, a step that still fails is failed for
	// good and the saga compensates. For a prepared TCC it is when an unfinished
	// transaction is aborted.
	Deadline  time.Time `json:"deadline,omitzero"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SagaKind is "saga" or "tcc".
type SagaKind string

// Saga kinds.
const (
	SagaKindSaga SagaKind = "saga"
	SagaKindTCC  SagaKind = "tcc"
)

// SagaStatus is where a saga is.
type SagaStatus string

// Saga statuses.
const (
	SagaPrepared     SagaStatus = "prepared"
	SagaTrying       SagaStatus = "trying"
	SagaRunning      SagaStatus = "running"
	SagaConfirming   SagaStatus = "confirming"
	SagaCompensating SagaStatus = "compensating"
	SagaCompleted    SagaStatus = "completed"
	SagaCompensated  SagaStatus = "compensated"
	SagaDeadLetter   SagaStatus = "dead_letter"
)

// Final reports whether the saga has ended (dead_letter has not: it waits for an operator).
func (s SagaStatus) Final() bool { return s == SagaCompleted || s == SagaCompensated }

// Valid reports whether s is a saga status.
func (s SagaStatus) Valid() bool {
	switch s {
	case SagaPrepared, SagaTrying, SagaRunning, SagaConfirming, SagaCompensating, SagaCompleted, SagaCompensated, SagaDeadLetter:
		return true
	}
	return false
}

// SagaStep is one step (a saga) or branch (TCC).
type SagaStep struct {
	Name string `json:"name"`
	// BranchID is the branch id participants get (the barrier's key, with the gid and the
	// op). Empty means DTM's default for step i, "%02d" of i+1; a TCC branch registered
	// by a DTM client keeps the id the client chose, which its try already used.
	BranchID string `json:"branch_id,omitempty"`
	// Action is the step's action (saga) or try (TCC); Compensate its compensation
	// (saga) or cancel (TCC); Confirm the TCC confirm. A step without a compensation has
	// nothing to undo.
	Action     SagaCall   `json:"action"`
	Compensate *SagaCall  `json:"compensate,omitempty"`
	Confirm    *SagaCall  `json:"confirm,omitempty"`
	Status     StepStatus `json:"status"`
	// Attempts counts the calls of the step's current operation that did not succeed (a
	// success ends the operation and sets it back to 0); Called records that its action
	// was sent at least once, or may have been (so it is compensated even if no answer
	// came back): a saga that an operator or its client compensates in its forward phase
	// counts every step not recorded as succeeded as called, since the coordinator sends
	// a step before the success of the one before it is recorded, and a crash loses the
	// outcomes it had not recorded.
	Attempts  int    `json:"attempts"`
	Called    bool   `json:"called,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// StepStatus is where a step is.
type StepStatus string

// Step statuses.
const (
	StepPending     StepStatus = "pending"     // action not done yet
	StepSucceeded   StepStatus = "succeeded"   // action (or try) done
	StepFailed      StepStatus = "failed"      // action failed for good, or ran out of retries
	StepConfirmed   StepStatus = "confirmed"   // TCC confirm done
	StepCompensated StepStatus = "compensated" // compensation (or cancel) done
	// An operator skipped its current call, with a reason: the call counts as done. A
	// skipped action (or try) is not confirmed, but if the saga rolls back it becomes
	// succeeded and is compensated (cancelled) like any done step.
	StepSkipped StepStatus = "skipped"
)

// SagaCall is one call of a step: an HTTP participant (URL, POSTed JSON) or an in-process
// operation of ordercore (Local, by name).
type SagaCall struct {
	URL     string          `json:"url,omitempty"`
	Local   string          `json:"local,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// SagaPolicy bounds a saga's calls.
type SagaPolicy struct {
	// StepTimeout bounds one call; RetriesMax the attempts of one forward call (action or
	// try) before it counts as failed for good. BackoffMin and BackoffMax bound the
	// exponential backoff (with jitter) between attempts. CompensateAttemptsMax bounds the
	// attempts of a compensation, cancel or confirm, after which the saga waits in
	// dead_letter for an operator.
	StepTimeout           time.Duration `json:"step_timeout"`
	RetriesMax            int           `json:"retries_max"`
	BackoffMin            time.Duration `json:"backoff_min"`
	BackoffMax            time.Duration `json:"backoff_max"`
	CompensateAttemptsMax int           `json:"compensate_attempts_max"`
}

// SagaChange rewrites a saga if its stored version is still FromVersion.
type SagaChange struct {
	Saga        Saga
	FromVersion int64
}

// Saga events.
const (
	AggregateSaga        = "saga"
	EventSagaSubmitted   = "saga.submitted"
	EventSagaStep        = "saga.step"   // a call's outcome
	EventSagaStatus      = "saga.status" // the saga moved to another status
	EventSagaOperator    = "saga.operator"
	EventSagaBranchAdded = "saga.branch_added"
	EventSagaNotify      = "saga.notify"      // an ordercore.notify step
	EventOrderFulfilment = "order.fulfilment" // a fulfilment saga's step, on the order's timeline
)

// SagaStepEvent is the payload of saga.step and order.fulfilment.
type SagaStepEvent struct {
	GID     string `json:"gid"`
	Step    int    `json:"step"`
	Name    string `json:"name"`
	Op      string `json:"op"`
	Outcome string `json:"outcome"`
	Attempt int    `json:"attempt"`
	Error   string `json:"error,omitempty"`
}

// SagaNotifyEvent is the payload of saga.notify: a notify step's payload, for
// subscribers of the event feed.
type SagaNotifyEvent struct {
	GID     string          `json:"gid"`
	Step    int             `json:"step"`
	Name    string          `json:"name"`
	Op      string          `json:"op"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// SagaStatusEvent is the payload of saga.submitted and saga.status.
type SagaStatusEvent struct {
	GID    string     `json:"gid"`
	Kind   SagaKind   `json:"kind"`
	Status SagaStatus `json:"status"`
	From   SagaStatus `json:"from,omitempty"`
	Reason string     `json:"reason,omitempty"`
}

// SagaOperatorEvent is the payload of saga.operator: an operator's audited action. Step
// is the index of the step a skip marked done (0 is the first); other actions have none.
type SagaOperatorEvent struct {
	GID    string `json:"gid"`
	Action string `json:"action"`
	Step   *int   `json:"step,omitempty"`
	By     string `json:"by"`
	Note   string `json:"note"`
}
