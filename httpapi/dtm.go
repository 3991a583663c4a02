package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
	"ordercore/internal/saga"
)

// DTM's server HTTP API under /api/dtmsvr, so that clients written for DTM (dtmcli and
// its ports) run their sagas and TCC transactions on ordercore unchanged. docs/dtm-compat.md
// lists what is and is not covered. Answers follow DTM: 200 {"dtm_result":"SUCCESS"},
// or 409 {"dtm_result":"FAILURE","message":...} for a refusal (DTM clients treat 409,
// or FAILURE in a body, as final).

// DTMPrefix is where the DTM-compatible API is served.
const DTMPrefix = "/api/dtmsvr"

const (
	dtmSuccess = "SUCCESS"
	dtmFailure = "FAILURE"
	dtmOngoing = "ONGOING"
	// dtmWaitMax bounds how long submit with wait_result waits for the outcome.
	dtmWaitMax = 30 * time.Second
	// dtmWaitPoll spaces the reads of a waited-for saga.
	dtmWaitPoll = 10 * time.Millisecond
)

// The bounds of DTM's options, in seconds (retry_limit in attempts): those of the policy of
// POST /v1/sagas (its schema's maximums of deadline_seconds, step_timeout_ms,
// backoff_min_ms and retries_max). 0 or absent takes the default; a negative value or one
// above its bound is refused, so no conversion to a time.Duration can overflow.
const (
	dtmTimeoutToFailMax  = 7 * 24 * 60 * 60
	dtmRequestTimeoutMax = int64(limit.SagaStepTimeoutMax / time.Second)
	dtmRetryIntervalMax  = 60 * 60
	dtmRetryLimitMax     = limit.SagaRetriesMax
)

// dtmTrans is the body of prepare, submit, abort: DTM's TransBase and TransOptions.
type dtmTrans struct {
	GID            string              `json:"gid"`
	TransType      string              `json:"trans_type"`
	Steps          []map[string]string `json:"steps"`
	Payloads       []string            `json:"payloads"`
	WaitResult     bool                `json:"wait_result"`
	TimeoutToFail  int64               `json:"timeout_to_fail"`
	RequestTimeout int64               `json:"request_timeout"`
	RetryInterval  int64               `json:"retry_interval"`
	RetryLimit     int64               `json:"retry_limit"`
	Concurrent     bool                `json:"concurrent"`
	BranchHeaders  map[string]string   `json:"branch_headers"`
	CustomData     string              `json:"custom_data"`
	Protocol       string              `json:"protocol"`
	RollbackReason string              `json:"rollback_reason"`
	QueryPrepared  string              `json:"query_prepared"`
}

func (s *Server) dtmRoutes() {
	s.mux.HandleFunc("GET "+DTMPrefix+"/newGid", s.dtmNewGID)
	s.mux.HandleFunc("POST "+DTMPrefix+"/prepare", s.dtmHandler(s.dtmPrepare))
	s.mux.HandleFunc("POST "+DTMPrefix+"/submit", s.dtmHandler(s.dtmSubmit))
	s.mux.HandleFunc("POST "+DTMPrefix+"/abort", s.dtmHandler(s.dtmAbort))
	s.mux.HandleFunc("POST "+DTMPrefix+"/registerBranch", s.dtmRegister)
	s.mux.HandleFunc("POST "+DTMPrefix+"/registerTccBranch", s.dtmRegister)
	s.mux.HandleFunc("GET "+DTMPrefix+"/query", s.dtmQuery)
}

func dtmWrite(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// dtmError answers a refusal as DTM does: 409 FAILURE for what the client must not retry
// (bad input, a state that forbids it), 503 for what it may retry (overload, storage).
func dtmError(w http.ResponseWriter, err error) {
	code := ordercore.ErrorCode(err)
	status := http.StatusConflict
	switch code {
	case ordercore.EOVERLOADED, ordercore.EUnavailable:
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	case ordercore.EINTERNAL:
		// A fixed message: DTM clients read FAILURE anywhere in a body as final, so an
		// internal error must not carry text that could contain it.
		dtmWrite(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
		return
	}
	msg := dtmQuiet(ordercore.ErrorMessage(err))
	if status == http.StatusServiceUnavailable {
		// Retried by coordinators: no FAILURE in the body, which DTM reads as final
		// whatever the status.
		dtmWrite(w, status, map[string]string{"error": msg, "code": code})
		return
	}
	dtmWrite(w, status, map[string]string{"dtm_result": dtmFailure, "message": msg, "code": code})
}

// dtmQuiet keeps client-chosen text quoted in a message (a gid, a SKU) from reading as an
// outcome: DTM coordinators look for ONGOING before FAILURE anywhere in a body, so a
// refusal naming a SKU "ONGOING-tee" would be retried as not finished. The words are
// written in lower case.
func dtmQuiet(msg string) string {
	msg = strings.ReplaceAll(msg, dtmOngoing, strings.ToLower(dtmOngoing))
	return strings.ReplaceAll(msg, dtmFailure, strings.ToLower(dtmFailure))
}

func (s *Server) dtmNewGID(w http.ResponseWriter, r *http.Request) {
	dtmWrite(w, http.StatusOK, map[string]string{"dtm_result": dtmSuccess, "gid": ordercore.NewID(s.cfg.Clock.Now())})
}

func readDTM(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit.RequestBodyBytesMax+1))
	if err != nil {
		return ordercore.Errorf(ordercore.EMalformedJSON, "read body: %v", err)
	}
	if len(body) > limit.RequestBodyBytesMax {
		return ordercore.Errorf(ordercore.EBodyTooLarge, "body exceeds %d bytes", limit.RequestBodyBytesMax)
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// Named by its JSON field, not by Go's type names.
			return ordercore.Errorf(ordercore.EMalformedJSON, "body is not the JSON DTM clients send: %s cannot be a JSON %s", te.Field, te.Value)
		}
		return ordercore.Errorf(ordercore.EMalformedJSON, "body is not the JSON DTM clients send: %v", err)
	}
	return nil
}

func (s *Server) dtmHandler(fn func(context.Context, *dtmTrans) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var t dtmTrans
		if err := readDTM(r, &t); err != nil {
			dtmError(w, err)
			return
		}
		if !saga.ValidGID(t.GID) {
			dtmError(w, ordercore.Errorf(ordercore.EINVALID, "gid must be 1..%d characters of letters, digits and -_.:", limit.SagaGIDBytesMax))
			return
		}
		if t.WaitResult {
			extendDeadlines(w, dtmWaitMax)
		}
		out, err := fn(r.Context(), &t)
		if err != nil {
			dtmError(w, err)
			return
		}
		if out == nil {
			out = map[string]string{"dtm_result": dtmSuccess}
		}
		dtmWrite(w, http.StatusOK, out)
	}
}

// policy maps DTM's options onto a saga policy.
func (t *dtmTrans) policy() (ordercore.SagaPolicy, error) {
	if t.Concurrent {
		return ordercore.SagaPolicy{}, ordercore.Errorf(ordercore.EINVALID, "concurrent sagas are not supported: steps run in order")
	}
	if t.Protocol != "" && t.Protocol != "http" {
		return ordercore.SagaPolicy{}, ordercore.Errorf(ordercore.EINVALID, "protocol %q is not supported: HTTP only", t.Protocol)
	}
	for _, o := range []struct {
		name  string
		v     int64
		bound int64
	}{{"timeout_to_fail", t.TimeoutToFail, dtmTimeoutToFailMax}, {"request_timeout", t.RequestTimeout, dtmRequestTimeoutMax},
		{"retry_interval", t.RetryInterval, dtmRetryIntervalMax}, {"retry_limit", t.RetryLimit, dtmRetryLimitMax}} {
		if o.v < 0 || o.v > o.bound {
			return ordercore.SagaPolicy{}, ordercore.Errorf(ordercore.EINVALID, "%s must be 0 (the default) to %d", o.name, o.bound)
		}
	}
	p := ordercore.SagaPolicy{StepTimeout: time.Duration(t.RequestTimeout) * time.Second, RetriesMax: int(t.RetryLimit),
		BackoffMin: time.Duration(t.RetryInterval) * time.Second}
	if p.BackoffMin > 0 {
		p.BackoffMax = max(p.BackoffMin, limit.SagaBackoffMaxDefault)
	}
	return saga.Defaults(p), nil
}

// dtmDeadline is the deadline timeout_to_fail sets (policy has bounded it).
func (s *Server) dtmDeadline(t *dtmTrans) time.Time {
	if t.TimeoutToFail > 0 {
		return s.cfg.Clock.Now().Add(time.Duration(t.TimeoutToFail) * time.Second)
	}
	return time.Time{}
}

// dtmPrepare opens a TCC global transaction whose client runs the tries.
func (s *Server) dtmPrepare(ctx context.Context, t *dtmTrans) (any, error) {
	if t.TransType != string(ordercore.SagaKindTCC) {
		return nil, ordercore.Errorf(ordercore.EINVALID, "prepare is supported for tcc transactions, not %q", t.TransType)
	}
	p, err := t.policy()
	if err != nil {
		return nil, err
	}
	sg := ordercore.Saga{GID: t.GID, Kind: ordercore.SagaKindTCC, Status: ordercore.SagaPrepared, Policy: p, Deadline: s.dtmDeadline(t)}
	_, err = s.cfg.Engine.Submit(ctx, engine.SubmitSaga{Saga: sg}, nil)
	if ordercore.ErrorCode(err) == ordercore.ESagaExists {
		return nil, s.dtmSame(ctx, t, ordercore.SagaPrepared) // a retried prepare
	}
	return nil, err
}

// dtmSame accepts a retried call on an existing transaction if it is where the call
// would have put it.
func (s *Server) dtmSame(ctx context.Context, t *dtmTrans, want ...ordercore.SagaStatus) error {
	have, err := s.cfg.Reader.Saga(ctx, t.GID)
	if err != nil {
		return err
	}
	if string(have.Kind) != t.TransType {
		return ordercore.Errorf(ordercore.ESagaExists, "gid %q is a %s transaction", t.GID, have.Kind)
	}
	for _, st := range want {
		if have.Status == st {
			return nil
		}
	}
	return ordercore.Errorf(ordercore.ESagaState, "current status '%s', cannot do that again", dtmStatus(have))
}

// dtmSubmit submits a saga (with its steps), or the confirm phase of a prepared TCC.
func (s *Server) dtmSubmit(ctx context.Context, t *dtmTrans) (any, error) {
	switch t.TransType {
	case string(ordercore.SagaKindTCC):
		_, err := s.clientSagaAction(ctx, engine.SagaAction{GID: t.GID, Kind: ordercore.SagaKindTCC, Action: engine.SagaSubmitTCC})
		if ordercore.ErrorCode(err) == ordercore.ESagaState {
			err = s.dtmResubmit(ctx, t, nil) // a retried submit
		}
		if err != nil {
			return nil, err
		}
		return s.dtmWait(ctx, t)
	case string(ordercore.SagaKindSaga):
	default:
		return nil, ordercore.Errorf(ordercore.EINVALID, "trans_type %q is not supported (saga and tcc are)", t.TransType)
	}
	p, err := t.policy()
	if err != nil {
		return nil, err
	}
	if len(t.Payloads) != 0 && len(t.Payloads) != len(t.Steps) {
		return nil, ordercore.Errorf(ordercore.EINVALID, "%d payloads for %d steps", len(t.Payloads), len(t.Steps))
	}
	sg := ordercore.Saga{GID: t.GID, Kind: ordercore.SagaKindSaga, Policy: p, Deadline: s.dtmDeadline(t)}
	for i, st := range t.Steps {
		step := ordercore.SagaStep{Name: saga.BranchID(i), Action: ordercore.SagaCall{URL: st["action"]}}
		for k := range st {
			if k != "action" && k != "compensate" {
				return nil, ordercore.Errorf(ordercore.EINVALID, "step %d: %q is not supported (action and compensate are)", i+1, k)
			}
		}
		if len(t.Payloads) > 0 {
			step.Action.Payload = json.RawMessage(t.Payloads[i])
		}
		if u := st["compensate"]; u != "" {
			step.Compensate = &ordercore.SagaCall{URL: u, Payload: step.Action.Payload}
		}
		sg.Steps = append(sg.Steps, step)
	}
	if _, err := s.startSaga(ctx, sg, "", nil); err != nil {
		var p *Problem
		if errors.As(err, &p) && p.Code == ordercore.ESagaExists {
			if err := s.dtmResubmit(ctx, t, &sg); err != nil {
				return nil, err
			}
			return s.dtmWait(ctx, t)
		}
		if errors.As(err, &p) {
			return nil, ordercore.Errorf(p.Code, "%s", p.Detail)
		}
		return nil, err
	}
	return s.dtmWait(ctx, t)
}

// dtmResubmit accepts a submit of a gid submitted already as DTM does: a retry of the
// same transaction (for a saga, the same steps, payloads and options; nil compares
// nothing) while it is still submitted in DTM's words answers SUCCESS; another
// transaction under the gid is saga_exists, and one that is aborting or over (DTM's
// "current status 'succeed', cannot submit") is saga_state, both 409 FAILURE.
func (s *Server) dtmResubmit(ctx context.Context, t *dtmTrans, want *ordercore.Saga) error {
	have, err := s.cfg.Reader.Saga(ctx, t.GID)
	if err != nil {
		return err
	}
	if string(have.Kind) != t.TransType {
		return ordercore.Errorf(ordercore.ESagaExists, "gid %q is a %s transaction", t.GID, have.Kind)
	}
	if want != nil && !sameTransaction(&have, want) {
		return ordercore.Errorf(ordercore.ESagaExists, "gid %q was submitted with other steps, payloads or options", t.GID)
	}
	if st := dtmStatus(have); st != "submitted" {
		return ordercore.Errorf(ordercore.ESagaState, "current status '%s', cannot submit", st)
	}
	return nil
}

// sameTransaction reports whether a stored saga is the one a submit describes: the same
// steps with the same calls, and the same policy (the deadline counts from each submit,
// so it is not compared).
func sameTransaction(have, want *ordercore.Saga) bool {
	if have.Policy != want.Policy || len(have.Steps) != len(want.Steps) {
		return false
	}
	same := func(a, b *ordercore.SagaCall) bool {
		if a == nil || b == nil {
			return a == b
		}
		return a.URL == b.URL && a.Local == b.Local && bytes.Equal(compactJSON(a.Payload), compactJSON(b.Payload))
	}
	for i := range have.Steps {
		h, w := &have.Steps[i], &want.Steps[i]
		if h.Name != w.Name || !same(&h.Action, &w.Action) || !same(h.Compensate, w.Compensate) || !same(h.Confirm, w.Confirm) {
			return false
		}
	}
	return true
}

// compactJSON is raw without insignificant space (a store may keep payloads compacted).
func compactJSON(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

// dtmWait answers a submit with wait_result as DTM does: SUCCESS if the transaction
// succeeded, else 409 FAILURE with its status: at once once it is rolling back or waits
// for an operator (it cannot succeed without one), or at the end of the wait while it is
// still going.
func (s *Server) dtmWait(ctx context.Context, t *dtmTrans) (any, error) {
	if !t.WaitResult {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, dtmWaitMax)
	defer cancel()
	for {
		sg, err := s.cfg.Reader.Saga(ctx, t.GID)
		if err != nil {
			return nil, err
		}
		switch sg.Status {
		case ordercore.SagaCompleted:
			return nil, nil
		case ordercore.SagaCompensated, ordercore.SagaCompensating, ordercore.SagaDeadLetter:
			return nil, ordercore.Errorf(ordercore.ESagaState, "wait result not success: status '%s' (%s): %s", dtmStatus(sg), sg.Status, sg.Reason)
		}
		select {
		case <-ctx.Done():
			return nil, ordercore.Errorf(ordercore.ESagaState, "wait result not success: status '%s' after %s", dtmStatus(sg), dtmWaitMax)
		case <-time.After(dtmWaitPoll):
		}
	}
}

// dtmAbort rolls back a prepared TCC: every registered branch is cancelled.
func (s *Server) dtmAbort(ctx context.Context, t *dtmTrans) (any, error) {
	if t.TransType != string(ordercore.SagaKindTCC) {
		return nil, ordercore.Errorf(ordercore.EINVALID, "abort is supported for tcc transactions, not %q", t.TransType)
	}
	_, err := s.clientSagaAction(ctx, engine.SagaAction{GID: t.GID, Kind: ordercore.SagaKindTCC, Action: engine.SagaCompensate})
	return nil, err
}

// dtmRegister registers a TCC branch before the client calls its try.
func (s *Server) dtmRegister(w http.ResponseWriter, r *http.Request) {
	var b map[string]string
	if err := readDTM(r, &b); err != nil {
		dtmError(w, err)
		return
	}
	gid := b["gid"]
	if !saga.ValidGID(gid) {
		dtmError(w, ordercore.Errorf(ordercore.EINVALID, "gid must be 1..%d characters of letters, digits and -_.:", limit.SagaGIDBytesMax))
		return
	}
	if b["trans_type"] != string(ordercore.SagaKindTCC) {
		dtmError(w, ordercore.Errorf(ordercore.EINVALID, "branches are registered for tcc transactions, not %q", b["trans_type"]))
		return
	}
	data := json.RawMessage(b["data"])
	if len(data) == 0 {
		data = nil
	}
	st := ordercore.SagaStep{Name: b["branch_id"], BranchID: b["branch_id"],
		Confirm: &ordercore.SagaCall{URL: b["confirm"], Payload: data}, Compensate: &ordercore.SagaCall{URL: b["cancel"], Payload: data}}
	if _, err := s.clientSagaAction(r.Context(), engine.SagaAction{GID: gid, Kind: ordercore.SagaKindTCC, Action: engine.SagaRegister, Branch: st}); err != nil {
		dtmError(w, err)
		return
	}
	dtmWrite(w, http.StatusOK, map[string]string{"dtm_result": dtmSuccess})
}

// clientSagaAction runs a DTM client's action on its transaction (of the kind its
// trans_type names) and hands the saga to the coordinator when the action left it held
// for this instance. An action that changed nothing (a retried abort) is not driven
// again: the saga is where its drive or a claim has it.
func (s *Server) clientSagaAction(ctx context.Context, cmd engine.SagaAction) (ordercore.Saga, error) {
	if s.cfg.Sagas != nil {
		cmd.Hold = saga.ClaimHold
	}
	res, err := s.cfg.Engine.Submit(ctx, cmd, nil)
	if err != nil {
		return ordercore.Saga{}, err
	}
	acted := res.Value.(engine.SagaActed)
	if s.cfg.Sagas != nil && acted.Held {
		if !s.cfg.Sagas.Start(acted.Saga) {
			s.cfg.Sagas.Kick()
		}
	}
	return acted.Saga, nil
}

// dtmStatus is a saga's status in DTM's words.
func dtmStatus(sg ordercore.Saga) string {
	switch sg.Status {
	case ordercore.SagaPrepared:
		return "prepared"
	case ordercore.SagaCompleted:
		return "succeed"
	case ordercore.SagaCompensated:
		return "failed"
	case ordercore.SagaCompensating:
		return "aborting"
	case ordercore.SagaDeadLetter:
		if sg.DeadFrom == ordercore.SagaCompensating {
			return "aborting"
		}
	}
	return "submitted"
}

type dtmBranch struct {
	GID      string `json:"gid"`
	BranchID string `json:"branch_id"`
	Op       string `json:"op"`
	URL      string `json:"url"`
	Data     string `json:"data"`
	Status   string `json:"status"`
}

// dtmQuery answers DTM's query: the transaction and one row per branch operation.
func (s *Server) dtmQuery(w http.ResponseWriter, r *http.Request) {
	gid := r.URL.Query().Get("gid")
	if !saga.ValidGID(gid) {
		dtmError(w, ordercore.Errorf(ordercore.EINVALID, "gid must be 1..%d characters of letters, digits and -_.:", limit.SagaGIDBytesMax))
		return
	}
	sg, err := s.cfg.Reader.Saga(r.Context(), gid)
	if ordercore.ErrorCode(err) == ordercore.ENOTFOUND {
		dtmWrite(w, http.StatusOK, map[string]any{"branches": []dtmBranch{}, "transaction": nil})
		return
	}
	if err != nil {
		dtmError(w, err)
		return
	}
	branches := []dtmBranch{}
	add := func(i int, op saga.Op, c *ordercore.SagaCall, done bool) {
		if c == nil || c.URL == "" && c.Local == "" {
			return
		}
		status := "prepared"
		if done {
			status = "succeed"
		}
		branches = append(branches, dtmBranch{GID: gid, BranchID: saga.StepBranchID(&sg, i), Op: string(op), URL: c.URL, Data: string(c.Payload), Status: status})
	}
	for i, st := range sg.Steps {
		forward, undo := saga.OpAction, saga.OpCompensate
		if sg.Kind == ordercore.SagaKindTCC {
			forward, undo = saga.OpTry, saga.OpCancel
		}
		// A compensated step's action shows as prepared: whether it took effect before it
		// was undone is the participant's to know (its barrier rows).
		add(i, forward, &st.Action, st.Status == ordercore.StepSucceeded || st.Status == ordercore.StepConfirmed)
		add(i, saga.OpConfirm, st.Confirm, st.Status == ordercore.StepConfirmed)
		add(i, undo, st.Compensate, st.Status == ordercore.StepCompensated)
	}
	dtmWrite(w, http.StatusOK, map[string]any{"branches": branches, "transaction": map[string]any{
		"gid": gid, "trans_type": sg.Kind, "status": dtmStatus(sg), "protocol": "http", "rollback_reason": sg.Reason,
		"create_time": sg.CreatedAt, "update_time": sg.UpdatedAt}})
}
