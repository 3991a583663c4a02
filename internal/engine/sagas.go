package engine

import (
	"context"
	"fmt"
	"time"

	"ordercore"
	"ordercore/internal/limit"
	"ordercore/internal/saga"
)

// Saga commands: the coordinator (internal/saga) records every step of every saga through
// the committer, so a saga's progress is as durable as an order's, and many sagas' steps
// share one transaction.

type sagaState struct {
	origVersion int64
	cur         ordercore.Saga
	isNew       bool
	claimed     bool // by this batch's claim, which wrote it
}

// loadSagas runs the batch's claims first (their rows are then this transaction's), then
// loads the sagas the commands name, and the orders (with their payments) of fulfilment
// sagas, which a saga's end may move.
func (b *batch) loadSagas(ctx context.Context, tx ordercore.WriteTx, k *keySet) error {
	b.claimed = map[*ClaimSagas][]ordercore.Saga{}
	for _, c := range k.claims {
		got, err := tx.ClaimSagas(ctx, b.now, b.now.Add(c.For), c.Limit)
		if err != nil {
			return fmt.Errorf("claim sagas: %w", err)
		}
		b.claimed[c] = got
		for _, s := range got {
			b.sagas[s.GID] = &sagaState{origVersion: s.Version, cur: s, claimed: true}
		}
	}
	var ids []string
	for _, gid := range list(k.sagas) {
		if _, ok := b.sagas[gid]; !ok {
			ids = append(ids, gid)
		}
	}
	if len(ids) > 0 && b.sagaCache != nil {
		vs, err := tx.SagaVersions(ctx, ids)
		if err != nil {
			return fmt.Errorf("load saga versions: %w", err)
		}
		var missing []string
		for _, gid := range ids {
			v, ok := vs[gid]
			if !ok {
				continue // no such saga
			}
			if s, ok := b.sagaCache.get(gid, v); ok {
				b.sagas[gid] = &sagaState{origVersion: v, cur: s}
			} else {
				missing = append(missing, gid)
			}
		}
		ids = missing
	}
	if len(ids) > 0 {
		got, err := tx.Sagas(ctx, ids)
		if err != nil {
			return fmt.Errorf("load sagas: %w", err)
		}
		for gid, s := range got {
			b.sagas[gid] = &sagaState{origVersion: s.Version, cur: s}
		}
	}
	for _, s := range b.sagas {
		if s.cur.OrderID != "" {
			k.payOrder(s.cur.OrderID)
		}
	}
	return nil
}

func (b *batch) sagaChanges(cs *ordercore.Changeset) {
	for _, gid := range sortedKeys(b.sagas) {
		s := b.sagas[gid]
		if s.isNew {
			cs.NewSagas = append(cs.NewSagas, s.cur)
		} else if s.cur.Version != s.origVersion {
			limit.Assert(s.cur.Version > s.origVersion, "saga %s version went back", gid)
			cs.SagaChanges = append(cs.SagaChanges, ordercore.SagaChange{Saga: s.cur, FromVersion: s.origVersion})
		}
	}
}

// sagaEvent appends an event of a saga, and of its order for a fulfilment saga (the
// order's timeline shows its fulfilment).
func (b *batch) sagaEvent(s *ordercore.Saga, typ string, data any) {
	b.event(ordercore.AggregateSaga, s.GID, typ, data)
	if s.OrderID != "" {
		b.event(ordercore.AggregateOrder, s.OrderID, ordercore.EventOrderFulfilment, data)
	}
}

// statusChanged appends saga.status when s left status from.
func (b *batch) statusChanged(s *ordercore.Saga, from ordercore.SagaStatus) {
	if s.Status != from {
		b.sagaEvent(s, ordercore.EventSagaStatus, ordercore.SagaStatusEvent{GID: s.GID, Kind: s.Kind, Status: s.Status, From: from, Reason: s.Reason})
		b.fulfilmentEnded(s)
	}
}

// claimNext keeps a saga whose next call is due now claimed for `hold`, and at least for
// its own saga.Hold (the worker that recorded the outcome makes that call at once, and
// the call may take the saga's step timeout); a saga in backoff stays due at its retry
// time for any worker.
func (b *batch) claimNext(s *ordercore.Saga, hold time.Duration) bool {
	if hold > 0 && !s.NextRunAt.IsZero() && !s.NextRunAt.After(b.now) {
		s.NextRunAt = b.now.Add(max(hold, saga.Hold(s)))
		return true
	}
	return false
}

// SubmitSaga stores a new saga (or a prepared TCC) and makes it due. Hold, when set,
// keeps it claimed for that long by the submitting instance, whose coordinator runs it
// at once. Result: ordercore.Saga.
type SubmitSaga struct {
	Saga ordercore.Saga
	Hold time.Duration
}

func (c SubmitSaga) keys(k *keySet) {
	k.saga(c.Saga.GID)
	if ordercore.ValidID(c.Saga.OrderID) {
		k.order(c.Saga.OrderID) // only a well-formed id reaches the database
	}
}

func (c SubmitSaga) execute(b *batch) (any, error) {
	if ReservedGID(c.Saga.GID) {
		return nil, reservedGID(c.Saga.GID)
	}
	if _, ok := b.sagas[c.Saga.GID]; ok {
		return nil, ordercore.Errorf(ordercore.ESagaExists, "a saga with gid %q exists", c.Saga.GID)
	}
	s := c.Saga
	s.Policy = saga.Defaults(s.Policy)
	if err := saga.Validate(&s); err != nil {
		return nil, err
	}
	if s.OrderID != "" {
		// The saga's events go on the order's timeline: the order must exist.
		if !ordercore.ValidID(s.OrderID) {
			return nil, ordercore.Errorf(ordercore.EINVALID, "order_id must be an order's id (a UUID in canonical form)")
		}
		if _, ok := b.orders[s.OrderID]; !ok {
			return nil, ordercore.Errorf(ordercore.EINVALID, "order_id %q names no order", s.OrderID)
		}
	}
	if s.Status == ordercore.SagaPrepared && s.Deadline.IsZero() {
		s.Deadline = b.now.Add(limit.SagaPreparedTimeout)
	}
	s.Steps = append([]ordercore.SagaStep(nil), s.Steps...)
	saga.Start(&s, b.now)
	b.sagaEvent(&s, ordercore.EventSagaSubmitted, ordercore.SagaStatusEvent{GID: s.GID, Kind: s.Kind, Status: s.Status})
	from := s.Status
	b.runLocals(&s)
	b.statusChanged(&s, from) // in-process steps alone may have ended it
	b.claimNext(&s, c.Hold)
	b.sagas[s.GID] = &sagaState{isNew: true, cur: s}
	return s, nil
}

// SagaOutcome records how one call of a saga ended, if the saga is still at Version (a
// worker whose claim lapsed finds that another moved it, and its outcome is dropped),
// after the outcomes in Earlier: successes of the same saga its coordinator made before
// this call and had not recorded yet, each at its own version, applied first and in
// order. An earlier one not applied stops the rest. Hold keeps the saga claimed when its
// next call is due at once. Result: saga.Recorded.
type SagaOutcome struct {
	GID     string
	Version int64
	Call    saga.Call
	Outcome saga.Outcome
	Err     string
	Jitter  float64 // in [0,1): the random part of a backoff, drawn by the caller
	Hold    time.Duration
	Earlier []SagaOutcome
}

func (c SagaOutcome) keys(k *keySet) { k.saga(c.GID) }

func (c SagaOutcome) execute(b *batch) (any, error) {
	s, ok := b.sagas[c.GID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "saga %q not found", c.GID)
	}
	for _, e := range c.Earlier {
		limit.Assert(e.GID == c.GID && len(e.Earlier) == 0, "earlier outcome of saga %s names %s", c.GID, e.GID)
		if r := e.apply(b, s); !r.Applied {
			return r, nil
		}
	}
	return c.apply(b, s), nil
}

// apply records one outcome (not its Earlier ones) on the loaded saga s.
func (c SagaOutcome) apply(b *batch, s *sagaState) saga.Recorded {
	if s.cur.Version != c.Version {
		return saga.Recorded{Saga: s.cur}
	}
	from := s.cur.Status
	if c.Call.Step < 0 || c.Call.Step >= len(s.cur.Steps) {
		return saga.Recorded{Saga: s.cur}
	}
	errMsg := ordercore.CleanText(c.Err, limit.ReasonBytesMax) // a participant's answer: any bytes
	if c.Outcome == saga.OutcomeLocal {
		if want, ok := saga.Next(&s.cur); !ok || want != c.Call {
			return saga.Recorded{Saga: s.cur}
		}
		b.runLocals(&s.cur, true)
	} else {
		if !b.applyOutcome(&s.cur, c.Call, c.Outcome, errMsg, c.Jitter) {
			return saga.Recorded{Saga: s.cur}
		}
		b.runLocals(&s.cur)
	}
	b.statusChanged(&s.cur, from)
	held := b.claimNext(&s.cur, c.Hold)
	return saga.Recorded{Saga: s.cur, Applied: true, Held: held}
}

// applyOutcome applies one call's outcome to s and appends its saga.step event.
func (b *batch) applyOutcome(s *ordercore.Saga, c saga.Call, o saga.Outcome, errMsg string, jitter float64) bool {
	st := s.Steps[c.Step]
	if !saga.Apply(s, c, o, errMsg, b.now, jitter) {
		return false
	}
	attempt := s.Steps[c.Step].Attempts
	if o == saga.OutcomeOK {
		attempt = st.Attempts + 1
	}
	b.sagaEvent(s, ordercore.EventSagaStep, ordercore.SagaStepEvent{GID: s.GID, Step: c.Step, Name: st.Name,
		Op: string(c.Op), Outcome: string(o), Attempt: attempt, Error: errMsg})
	return true
}

// runLocals runs the in-process calls s needs now, one after the other, in this batch:
// their effects and outcomes commit together, and a saga of in-process steps only
// completes (or compensates) in the transaction that submitted it. A call in backoff (an
// in-process compensation that failed) waits for its time, unless the coordinator
// claimed the saga for it (claimed).
func (b *batch) runLocals(s *ordercore.Saga, claimed ...bool) {
	due := len(claimed) > 0 && claimed[0]
	for range 4 * limit.SagaStepsMax { // each step's action and compensation at most, with room
		c, ok := saga.Next(s)
		if !ok || c.Target(s).Local == "" || s.NextRunAt.After(b.now) && !due {
			return
		}
		due = false
		o, errMsg := b.runLocal(s, c)
		b.applyOutcome(s, c, o, errMsg, 0.5)
	}
}

// runLocal does an in-process step's work in this batch and says how it ended; what it
// changes commits with the outcome, or not at all.
func (b *batch) runLocal(s *ordercore.Saga, c saga.Call) (saga.Outcome, string) {
	target := c.Target(s)
	switch target.Local {
	case saga.LocalNotify:
		b.sagaEvent(s, ordercore.EventSagaNotify, ordercore.SagaNotifyEvent{GID: s.GID, Step: c.Step,
			Name: s.Steps[c.Step].Name, Op: string(c.Op), Payload: target.Payload})
		return saga.OutcomeOK, ""
	}
	return saga.OutcomeFail, fmt.Sprintf("no in-process operation %q", target.Local)
}

// ClaimSagas takes at most Limit due sagas for For, and each at least for its own
// saga.Hold: the coordinator calls their participants meanwhile, and another worker may
// take them again after it. A saga whose step timeout is longer than For is held longer
// in the same transaction, so a slow call is not claimed again (and its outcome dropped)
// while it runs. A prepared TCC whose deadline passed is aborted by the claim. Result:
// []ordercore.Saga.
type ClaimSagas struct {
	Limit int
	For   time.Duration
}

func (c *ClaimSagas) keys(k *keySet) { k.claims = append(k.claims, c) }

func (c *ClaimSagas) execute(b *batch) (any, error) {
	got := b.claimed[c]
	out := make([]ordercore.Saga, 0, len(got))
	for _, claimed := range got {
		s := b.sagas[claimed.GID]
		from := s.cur.Status
		if saga.Expire(&s.cur, b.now) {
			b.claimNext(&s.cur, c.For)
			b.statusChanged(&s.cur, from)
		} else {
			saga.HoldUntil(&s.cur, b.now.Add(saga.Hold(&s.cur)), b.now)
		}
		out = append(out, s.cur)
	}
	return out, nil
}

// WakeSagas makes sagas due now that wait for a retry, each if it is still at the version
// given: the coordinator's, for the sagas whose calls a participant's open breaker refused,
// once that breaker has closed, so they do not wait out their backoff. A saga that moved
// since (claimed, recorded, ended) is left alone. Result: int, the sagas made due.
type WakeSagas struct {
	Versions map[string]int64
}

func (c WakeSagas) keys(k *keySet) {
	for _, gid := range sortedKeys(c.Versions) {
		k.saga(gid)
	}
}

func (c WakeSagas) execute(b *batch) (any, error) {
	n := 0
	for _, gid := range sortedKeys(c.Versions) {
		s, ok := b.sagas[gid]
		if !ok || s.cur.Version != c.Versions[gid] || s.cur.Status.Final() || s.cur.NextRunAt.IsZero() || !s.cur.NextRunAt.After(b.now) {
			continue
		}
		saga.Wake(&s.cur, b.now)
		n++
	}
	return n, nil
}

// WakeSagasAt makes the sagas due now that are still at the versions given (the
// coordinator's Wake).
func (e *Engine) WakeSagasAt(ctx context.Context, versions map[string]int64) error {
	_, err := e.Submit(ctx, WakeSagas{Versions: versions}, nil)
	return err
}

// Saga actions of operators and of TCC clients.
const (
	SagaRetry      = "retry"      // operator: make the next call now; resume a dead_letter saga
	SagaCompensate = "compensate" // operator: undo what was done; TCC client: abort
	SagaSkip       = "skip"       // operator: mark the waiting step done without calling it
	SagaSubmitTCC  = "submit"     // TCC client: every try succeeded, confirm
	SagaRegister   = "register"   // TCC client: add a branch before calling its try
)

// SagaAction applies an operator's or a TCC client's action. Operator actions (retry,
// compensate, skip) are audited: By and Note are required and become an event. Result:
// SagaActed.
type SagaAction struct {
	GID    string
	Action string
	// Kind, when set, is the kind the client takes the saga for (DTM's trans_type): a
	// saga of another kind is refused (saga_exists), as a submit under its gid would be.
	Kind   ordercore.SagaKind
	Branch ordercore.SagaStep // for register
	By     string
	Note   string
	// Audited marks an operator's action (By and Note required); a TCC client's abort
	// or submit is not.
	Audited bool
	Hold    time.Duration
}

// SagaActed is what a SagaAction did: the saga after it, and whether the action left it
// held for the caller, whose coordinator then makes its next call (Start). An action that
// changed nothing (a repeated abort) holds nothing: the saga is where another drive or a
// claim has it, and starting a drive of this copy would repeat calls already made. It
// encodes as the saga alone.
type SagaActed struct {
	ordercore.Saga
	Held bool `json:"-"`
}

func (c SagaAction) keys(k *keySet) { k.saga(c.GID) }

// Validate checks what needs no database.
func (c SagaAction) Validate() error {
	switch c.Action {
	case SagaRetry, SagaCompensate, SagaSkip, SagaSubmitTCC, SagaRegister:
	default:
		return ordercore.Errorf(ordercore.EINVALID, "unknown saga action %q", c.Action)
	}
	if c.Audited {
		return validateAudit(c.By, c.Note)
	}
	return nil
}

func (c SagaAction) execute(b *batch) (any, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Audited && ReservedGID(c.GID) {
		return nil, reservedGID(c.GID) // a client's abort would fail an order's fulfilment
	}
	s, ok := b.sagas[c.GID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "saga %q not found", c.GID)
	}
	if c.Kind != "" && s.cur.Kind != c.Kind {
		return nil, ordercore.Errorf(ordercore.ESagaExists, "gid %q is a %s transaction, not %s", c.GID, s.cur.Kind, c.Kind)
	}
	from, version := s.cur.Status, s.cur.Version
	var step *int // the step a skip marked done
	var err error
	switch c.Action {
	case SagaRetry:
		err = saga.Retry(&s.cur, b.now)
	case SagaCompensate:
		reason := "aborted by its client"
		if c.Audited {
			reason = "operator " + c.By + ": " + c.Note
		}
		if !c.Audited && s.cur.Status == ordercore.SagaDeadLetter && s.cur.DeadFrom == ordercore.SagaCompensating {
			// A client's abort of a transaction already rolling back: the same answer as
			// while it compensates. Resuming it from dead_letter is an operator's call.
			return SagaActed{Saga: s.cur}, nil
		}
		err = saga.Compensate(&s.cur, reason, b.now)
	case SagaSkip:
		var i int
		if i, err = saga.Skip(&s.cur, b.now); err == nil {
			step = &i
		}
	case SagaSubmitTCC:
		err = saga.Submit(&s.cur, b.now)
	case SagaRegister:
		if err = saga.ValidRegistered(c.Branch); err == nil {
			err = saga.Register(&s.cur, c.Branch, b.now)
		}
	}
	if err != nil {
		s.cur.Status, s.cur.Version = from, version // the rules change nothing when they refuse
		return nil, err
	}
	if s.cur.Version == version {
		return SagaActed{Saga: s.cur}, nil // nothing to do (compensating an already compensating saga)
	}
	if s.cur.Status != ordercore.SagaPrepared {
		b.runLocals(&s.cur) // an in-process step the action made due runs now
	}
	held := b.claimNext(&s.cur, c.Hold)
	if c.Audited {
		b.sagaEvent(&s.cur, ordercore.EventSagaOperator, ordercore.SagaOperatorEvent{GID: c.GID, Action: c.Action, Step: step, By: c.By, Note: c.Note})
	}
	if c.Action == SagaRegister {
		b.sagaEvent(&s.cur, ordercore.EventSagaBranchAdded, ordercore.SagaStepEvent{GID: c.GID, Step: len(s.cur.Steps) - 1, Name: c.Branch.Name, Op: "register"})
	}
	b.statusChanged(&s.cur, from)
	return SagaActed{Saga: s.cur, Held: held}, nil
}

// ClaimSagasFor claims up to n due sagas for hold (the coordinator's Claim).
func (e *Engine) ClaimSagasFor(ctx context.Context, n int, hold time.Duration) ([]ordercore.Saga, error) {
	r, err := e.Submit(ctx, &ClaimSagas{Limit: n, For: hold}, nil)
	if err != nil {
		return nil, err
	}
	return r.Value.([]ordercore.Saga), nil
}

// RecordSaga records one call's outcome, after its Earlier ones (the coordinator's Record).
func (e *Engine) RecordSaga(ctx context.Context, r saga.Recording) (saga.Recorded, error) {
	cmd := sagaOutcome(r)
	for _, e := range r.Earlier {
		cmd.Earlier = append(cmd.Earlier, sagaOutcome(e))
	}
	res, err := e.Submit(ctx, cmd, nil)
	if err != nil {
		return saga.Recorded{}, err
	}
	return res.Value.(saga.Recorded), nil
}

func sagaOutcome(r saga.Recording) SagaOutcome {
	return SagaOutcome{GID: r.GID, Version: r.Version, Call: r.Call, Outcome: r.Outcome, Err: r.Err, Jitter: r.Jitter, Hold: r.Hold}
}
