package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/saga"
)

// SagaStarter runs a saga this instance holds at once (saga.Coordinator).
type SagaStarter interface {
	Start(s ordercore.Saga) bool
	Kick()
	Watch(gid string) (<-chan ordercore.Saga, func())
	Wait(ctx context.Context, gid string, w <-chan ordercore.Saga, read func(context.Context, string) (ordercore.Saga, error)) (ordercore.Saga, error)
}

// CallBody is one call of a step on the wire: an HTTP participant or an in-process
// operation, with the JSON it receives.
type CallBody struct {
	URL     string          `json:"url,omitempty" maxLength:"2048" doc:"An HTTP participant: POSTed the payload, with gid, trans_type, branch_id and op as query parameters (DTM's convention)"`
	Local   string          `json:"local,omitempty" maxLength:"64" doc:"An in-process operation of ordercore, by name (GET /v1/sagas/locals lists them)"`
	Payload json.RawMessage `json:"payload,omitempty" doc:"JSON the call receives (at most 16 KiB)"`
}

// StepBody is one step (saga) or branch (TCC) on the wire.
type StepBody struct {
	Name       string    `json:"name" minLength:"1" maxLength:"64"`
	Action     CallBody  `json:"action" doc:"The action (saga) or try (TCC)"`
	Compensate *CallBody `json:"compensate,omitempty" doc:"The compensation (saga) or cancel (TCC); a step without one has nothing to undo"`
	Confirm    *CallBody `json:"confirm,omitempty" doc:"TCC only: the confirm"`
}

// PolicyBody bounds a saga's calls; zero fields take the defaults.
type PolicyBody struct {
	StepTimeoutMs         int64 `json:"step_timeout_ms,omitempty" minimum:"0" maximum:"300000" doc:"One call's timeout (default 10,000)"`
	RetriesMax            int   `json:"retries_max,omitempty" minimum:"0" maximum:"100" doc:"Attempts of an action or try before it counts as failed for good (default 5)"`
	BackoffMinMs          int64 `json:"backoff_min_ms,omitempty" minimum:"0" maximum:"3600000" doc:"First wait between attempts, doubled each time (default 200), with jitter"`
	BackoffMaxMs          int64 `json:"backoff_max_ms,omitempty" minimum:"0" maximum:"3600000" doc:"Longest wait between attempts (default 60,000)"`
	CompensateAttemptsMax int   `json:"compensate_attempts_max,omitempty" minimum:"0" maximum:"100000" doc:"Attempts of a compensation or confirm before the saga waits in dead_letter for an operator (default 1,440: about a day)"`
	DeadlineSeconds       int64 `json:"deadline_seconds,omitempty" minimum:"0" maximum:"604800" doc:"After this long, an action that still fails is failed for good (at most limit.SagaDeadlineSecondsMax, a week)"`
}

func (p PolicyBody) policy() ordercore.SagaPolicy {
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	return ordercore.SagaPolicy{StepTimeout: ms(p.StepTimeoutMs), RetriesMax: p.RetriesMax, BackoffMin: ms(p.BackoffMinMs),
		BackoffMax: ms(p.BackoffMaxMs), CompensateAttemptsMax: p.CompensateAttemptsMax}
}

func (c *CallBody) call() *ordercore.SagaCall {
	if c == nil {
		return nil
	}
	return &ordercore.SagaCall{URL: c.URL, Local: c.Local, Payload: c.Payload}
}

func (b StepBody) step() ordercore.SagaStep {
	return ordercore.SagaStep{Name: b.Name, Action: *b.Action.call(), Compensate: b.Compensate.call(), Confirm: b.Confirm.call()}
}

type submitSagaInput struct {
	IdemKey     string `header:"Idempotency-Key" maxLength:"255" doc:"A retry with the same key returns the same saga"`
	WaitSeconds int    `query:"wait_seconds" minimum:"0" maximum:"60" doc:"Answer when the saga has ended (200), or after this long, or once it waits in dead_letter for an operator, with the saga as it is (201)"`
	Body        struct {
		GID     string     `json:"gid,omitempty" maxLength:"128" pattern:"^[A-Za-z0-9_.:-]+$" doc:"The global transaction id; one is generated when absent. A second submit of a gid is 409 saga_exists; gids beginning with fulfilment- are reserved (422 saga_gid_reserved)"`
		Kind    string     `json:"kind" enum:"saga,tcc" doc:"saga: actions with compensations; tcc: try, then confirm or cancel every branch"`
		Steps   []StepBody `json:"steps" minItems:"1" maxItems:"32"`
		Policy  PolicyBody `json:"policy,omitempty"`
		OrderID string     `json:"order_id,omitempty" maxLength:"36" doc:"Show the saga's steps on this order's timeline: the id of an existing order (else 422 invalid_request)"`
	}
}

// SagaView is a saga on the wire: the stored saga with its policy in milliseconds, and
// (for one saga) its event timeline.
type SagaView struct {
	GID       string               `json:"gid"`
	Kind      ordercore.SagaKind   `json:"kind"`
	Status    ordercore.SagaStatus `json:"status"`
	Reason    string               `json:"reason,omitempty"`
	DeadFrom  string               `json:"dead_from,omitempty"`
	OrderID   string               `json:"order_id,omitempty"`
	Steps     []ordercore.SagaStep `json:"steps"`
	Policy    PolicyBody           `json:"policy"`
	NextRunAt *time.Time           `json:"next_run_at,omitempty"`
	Deadline  *time.Time           `json:"deadline,omitempty"`
	Version   int64                `json:"version"`
	CreatedAt time.Time            `json:"created_at"`
	UpdatedAt time.Time            `json:"updated_at"`
	Timeline  []TimelineEvent      `json:"timeline,omitempty"`
	// TimelineTruncated: the saga has more events than Timeline shows (its latest 200).
	TimelineTruncated bool `json:"timeline_truncated,omitempty" doc:"The saga has more events than the timeline shows (its latest 200): the feed (GET /v1/events) has them all"`
}

func viewOf(s ordercore.Saga) SagaView {
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	v := SagaView{GID: s.GID, Kind: s.Kind, Status: s.Status, Reason: s.Reason, DeadFrom: string(s.DeadFrom), OrderID: s.OrderID,
		Steps: s.Steps, Version: s.Version, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
		Policy: PolicyBody{StepTimeoutMs: ms(s.Policy.StepTimeout), RetriesMax: s.Policy.RetriesMax, BackoffMinMs: ms(s.Policy.BackoffMin),
			BackoffMaxMs: ms(s.Policy.BackoffMax), CompensateAttemptsMax: s.Policy.CompensateAttemptsMax}}
	if !s.NextRunAt.IsZero() {
		t := s.NextRunAt
		v.NextRunAt = &t
	}
	if !s.Deadline.IsZero() {
		t := s.Deadline
		v.Deadline = &t
	}
	return v
}

type sagaOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Location string `header:"Location"`
	Body     SagaView
}

// submitSaga stores the saga, then hands it to this instance's coordinator, which makes
// its first call at once (the saga is held for it by the submit).
func (s *Server) submitSaga(ctx context.Context, in *submitSagaInput) (*sagaOutput, error) {
	b := in.Body
	sg := ordercore.Saga{GID: b.GID, Kind: ordercore.SagaKind(b.Kind), Policy: b.Policy.policy(), OrderID: b.OrderID}
	for _, st := range b.Steps {
		sg.Steps = append(sg.Steps, st.step())
	}
	if b.Policy.DeadlineSeconds > 0 {
		sg.Deadline = s.cfg.Clock.Now().Add(time.Duration(b.Policy.DeadlineSeconds) * time.Second)
	}
	if sg.GID == "" {
		sg.GID = ordercore.NewID(s.cfg.Clock.Now())
	}
	var w <-chan ordercore.Saga
	if in.WaitSeconds > 0 && s.cfg.Sagas != nil {
		var stop func()
		w, stop = s.cfg.Sagas.Watch(sg.GID)
		defer stop()
	}
	out, err := s.startSaga(ctx, sg, in.IdemKey, b)
	if err != nil || w == nil {
		return out, err
	}
	if out.Body.Status.Final() { // its in-process steps ended it in the submit
		if out.Replayed == "" {
			out.Status = http.StatusOK
		}
		return out, nil
	}
	wait := time.Duration(in.WaitSeconds) * time.Second
	extendWait(ctx, wait)
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	done, err := s.cfg.Sagas.Wait(wctx, out.Body.GID, w, s.cfg.Reader.Saga)
	if err != nil {
		// The saga is stored and goes on: a failed read of it ends the wait, not the
		// request (an error here would have the client retry into saga_exists).
		return out, nil
	}
	// Ended: 200. Otherwise (the wait ran out, or the saga waits in dead_letter for an
	// operator) 201, with the saga as it is now.
	out.Body = viewOf(done)
	if done.Status.Final() {
		out.Status = http.StatusOK
	}
	return out, nil
}

func (s *Server) startSaga(ctx context.Context, sg ordercore.Saga, key string, body any) (*sagaOutput, error) {
	if sg.GID == "" {
		// A keyed retry gets the first saga back: the key is matched before the command
		// runs, so the gid generated for the retry is never used.
		sg.GID = ordercore.NewID(s.cfg.Clock.Now())
	}
	hold := time.Duration(0)
	if s.cfg.Sagas != nil {
		hold = saga.Hold(&ordercore.Saga{Policy: saga.Defaults(sg.Policy)})
	}
	cmd := engine.SubmitSaga{Saga: sg, Hold: hold}
	status, out, replayed, err := submit[ordercore.Saga](ctx, s, cmd, "submit-saga", key, body, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	if !replayed && s.cfg.Sagas != nil && !out.Status.Final() {
		s.cfg.Sagas.Start(out)
	}
	return &sagaOutput{Status: status, Replayed: replayedHeader(replayed), Location: "/v1/sagas/" + out.GID, Body: viewOf(out)}, nil
}

type gidInput struct {
	GID string `path:"gid" maxLength:"128"`
}

func (s *Server) getSaga(ctx context.Context, in *gidInput) (*sagaOutput, error) {
	if !saga.ValidGID(in.GID) {
		return nil, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "saga %q not found", in.GID))
	}
	sg, err := s.cfg.Reader.Saga(ctx, in.GID)
	if err != nil {
		return nil, problemOf(err)
	}
	evs, truncated, err := s.recentTimeline(ctx, in.GID)
	if err != nil {
		return nil, problemOf(err)
	}
	v := viewOf(sg)
	v.TimelineTruncated = truncated
	for _, e := range evs {
		if e.AggregateType == ordercore.AggregateSaga {
			v.Timeline = append(v.Timeline, TimelineEvent{Seq: e.Seq, Type: e.Type, Time: e.Time, Data: e.Data})
		}
	}
	return &sagaOutput{Status: http.StatusOK, Body: v}, nil
}

type listSagasInput struct {
	Status string `query:"status" enum:"prepared,trying,running,confirming,compensating,completed,compensated,dead_letter," doc:"Only sagas in this status"`
	Cursor string `query:"cursor" maxLength:"128" doc:"next_cursor of the previous page"`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50"`
}

type listSagasOutput struct {
	Body struct {
		Sagas      []SagaView                     `json:"sagas"`
		Counts     map[ordercore.SagaStatus]int64 `json:"counts" doc:"Sagas in each status, all pages"`
		NextCursor string                         `json:"next_cursor,omitempty"`
	}
}

func (s *Server) listSagas(ctx context.Context, in *listSagasInput) (*listSagasOutput, error) {
	if in.Cursor != "" && !saga.ValidGID(in.Cursor) {
		return nil, problemOf(ordercore.Errorf(ordercore.EInvalidCursor, "cursor %q is not one this API returned", in.Cursor))
	}
	sagas, err := s.cfg.Reader.ListSagas(ctx, ordercore.SagaStatus(in.Status), in.Cursor, in.Limit+1)
	if err != nil {
		return nil, problemOf(err)
	}
	out := &listSagasOutput{}
	if len(sagas) > in.Limit {
		sagas = sagas[:in.Limit]
		out.Body.NextCursor = sagas[len(sagas)-1].GID
	}
	out.Body.Sagas = make([]SagaView, len(sagas))
	for i, sg := range sagas {
		out.Body.Sagas[i] = viewOf(sg)
	}
	if out.Body.Counts, err = s.cfg.Reader.SagaCounts(ctx); err != nil {
		return nil, problemOf(err)
	}
	return out, nil
}

type sagaActionInput struct {
	GID     string `path:"gid" maxLength:"128"`
	IdemKey string `header:"Idempotency-Key" maxLength:"255"`
	Body    struct {
		By   string `json:"by" minLength:"1" maxLength:"64" doc:"The operator: kept in the audit"`
		Note string `json:"note" minLength:"1" maxLength:"500" doc:"Why: kept in the audit"`
	}
}

// sagaAction serves the operator actions retry-now, compensate and skip-with-reason.
func (s *Server) sagaAction(action string) func(context.Context, *sagaActionInput) (*sagaOutput, error) {
	return func(ctx context.Context, in *sagaActionInput) (*sagaOutput, error) {
		if !saga.ValidGID(in.GID) {
			return nil, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "saga %q not found", in.GID))
		}
		cmd := engine.SagaAction{GID: in.GID, Action: action, By: in.Body.By, Note: in.Body.Note, Audited: true}
		if err := cmd.Validate(); err != nil {
			return nil, problemOf(err)
		}
		// Operators' actions hold nothing (no Hold): a saga they make due is claimed, so
		// no drive starts from this copy.
		status, out, replayed, err := submit[engine.SagaActed](ctx, s, cmd, "saga-"+action+" "+in.GID, in.IdemKey, in.Body, http.StatusOK)
		if err != nil {
			return nil, err
		}
		if s.cfg.Sagas != nil && !out.NextRunAt.IsZero() {
			s.cfg.Sagas.Kick()
		}
		return &sagaOutput{Status: status, Replayed: replayedHeader(replayed), Body: viewOf(out.Saga)}, nil
	}
}

type localsOutput struct {
	Body struct {
		Locals map[string]string `json:"locals" doc:"In-process operations a step may name in local, with what each does"`
	}
}

func (s *Server) listLocals(ctx context.Context, _ *struct{}) (*localsOutput, error) {
	out := &localsOutput{}
	out.Body.Locals = saga.Locals
	return out, nil
}
