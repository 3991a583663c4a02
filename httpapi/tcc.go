package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"ordercore"
	"ordercore/barrier"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
)

// ordercore's stock as a TCC participant, by DTM's participant conventions, so that an
// outside order system's global transaction (coordinated by DTM, by ordercore's own
// /api/dtmsvr or /v1/sagas, or by any DTM-style client) can reserve, sell and give back
// ordercore's stock:
//
//	POST /v1/tcc/stock/try?gid=&trans_type=tcc&branch_id=&op=try      {"lines":[{"sku":"...","quantity":N}]}
//	POST /v1/tcc/stock/confirm?gid=&trans_type=tcc&branch_id=&op=confirm
//	POST /v1/tcc/stock/cancel?gid=&trans_type=tcc&branch_id=&op=cancel
//
// Confirm and cancel ignore their bodies (a coordinator sends the branch's data again; the
// hold knows its lines). Each call is one engine command behind the barrier (engine's
// TCCTry, TCCConfirm, TCCCancel). Answers: 200 {"dtm_result":"SUCCESS","outcome":...}
// (applied, duplicate or null_compensation); 409 {"dtm_result":"FAILURE","message":...,
// "code":...} when the call failed for good (insufficient_stock, unknown_sku,
// hanging_try, hold_state, not_found, invalid_branch, malformed input), so a coordinator
// rolls back instead of retrying (client text in the message has ONGOING and FAILURE in
// lower case); 503 with Retry-After for overload or a storage failure, with no FAILURE in
// its body, which coordinators retry (the barrier makes the retry safe); 500 with a fixed
// body for anything else.
//
// The success body carries no client-chosen text (no gid, branch or SKU): DTM clients read
// "FAILURE" or "ONGOING" anywhere in a 200 body as an outcome, so a gid that happened to
// contain either word must not turn a success into a rollback or an endless retry.

// TCCStockPrefix is where the stock participant is served.
const TCCStockPrefix = "/v1/tcc/stock"

func (s *Server) tccRoutes() {
	s.mux.HandleFunc("POST "+TCCStockPrefix+"/try", s.tccTry)
	s.mux.HandleFunc("POST "+TCCStockPrefix+"/confirm", s.tccResolve(barrier.OpConfirm))
	s.mux.HandleFunc("POST "+TCCStockPrefix+"/cancel", s.tccResolve(barrier.OpCancel))
	huma.Register(s.api, huma.Operation{OperationID: "get-tcc-holds", Method: http.MethodGet, Path: TCCStockPrefix + "/holds/{gid}",
		Summary: "The stock holds and barrier rows of a global transaction (ordercore's stock as a TCC participant)"}, s.getHolds)
}

// tccBranch reads DTM's query parameters with the barrier package's own rules and checks
// that they name the op this endpoint serves, of a TCC branch.
func tccBranch(r *http.Request, op string) (engine.TCCBranch, error) {
	br, err := barrier.FromQuery(r.URL.Query())
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), barrier.ErrInvalid.Error()+": ")
		return engine.TCCBranch{}, ordercore.Errorf(ordercore.EInvalidBranch, "%s", msg)
	}
	if br.TransType != barrier.TransTCC {
		return engine.TCCBranch{}, ordercore.Errorf(ordercore.EInvalidBranch, "trans_type is %q: stock is a TCC participant (try, confirm, cancel)", br.TransType)
	}
	if br.Op != op {
		return engine.TCCBranch{}, ordercore.Errorf(ordercore.EInvalidBranch, "op is %q, this endpoint serves %q", br.Op, op)
	}
	return engine.TCCBranch{TransType: br.TransType, GID: br.GID, BranchID: br.BranchID}, nil
}

// tccTryBody is what a try receives: the lines to hold. Other fields (a coordinator's own
// data) are ignored.
type tccTryBody struct {
	Lines []ordercore.HoldLine `json:"lines"`
}

func (s *Server) tccTry(w http.ResponseWriter, r *http.Request) {
	br, err := tccBranch(r, barrier.OpTry)
	if err != nil {
		dtmError(w, err)
		return
	}
	var body tccTryBody
	if err := readDTM(r, &body); err != nil {
		dtmError(w, err)
		return
	}
	// The lines are checked by the command, after the barrier: a duplicate try succeeds
	// whatever it carries, and a hanging one is refused as hanging, as the barrier
	// package decides.
	s.tccSubmit(r.Context(), w, engine.TCCTry{Branch: br, Lines: body.Lines})
}

func (s *Server) tccResolve(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		br, err := tccBranch(r, op)
		if err != nil {
			dtmError(w, err)
			return
		}
		// The body is the branch's data again; the hold already knows its lines. It is
		// drained (bounded) so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, limit.RequestBodyBytesMax))
		var cmd engine.Command = engine.TCCConfirm{Branch: br}
		if op == barrier.OpCancel {
			cmd = engine.TCCCancel{Branch: br}
		}
		s.tccSubmit(r.Context(), w, cmd)
	}
}

func (s *Server) tccSubmit(ctx context.Context, w http.ResponseWriter, cmd engine.Command) {
	res, err := s.cfg.Engine.Submit(ctx, cmd, nil)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			// The caller left; the command may still commit. Its retry is decided by the
			// barrier like any duplicate.
			err = ordercore.Errorf(ordercore.EUnavailable, "the request ended before its outcome was known; retry")
		}
		dtmError(w, err)
		return
	}
	out, ok := res.Value.(engine.BranchResult)
	limit.Assert(ok, "%T returned %T", cmd, res.Value)
	dtmWrite(w, http.StatusOK, map[string]string{"dtm_result": dtmSuccess, "outcome": out.Outcome})
}

// HoldsView is what ordercore's stock participant holds for one global transaction.
type HoldsView struct {
	GID   string     `json:"gid"`
	Holds []HoldView `json:"holds" doc:"By branch id; at most 100"`
	// Barrier is the branches' barrier rows: try (reason try, or cancel when the cancel
	// came first), confirm and cancel. A branch with rows but no hold was cancelled
	// before its try took effect (a null compensation).
	Barrier   []ordercore.BarrierRow `json:"barrier"`
	Truncated bool                   `json:"truncated,omitempty" doc:"More holds or rows exist than are shown"`
}

// HoldView is one hold with its event timeline.
type HoldView struct {
	ordercore.StockHold
	Timeline []TimelineEvent `json:"timeline"`
}

type holdsOutput struct {
	Body HoldsView
}

// holdEventsMax bounds one hold's timeline: a hold has its stock.held and at most one
// resolution.
const holdEventsMax = 4

func (s *Server) getHolds(ctx context.Context, in *gidInput) (*holdsOutput, error) {
	holds, err := s.cfg.Reader.HoldsOf(ctx, in.GID, limit.HoldsPerGIDMax+1)
	if err != nil {
		return nil, problemOf(err)
	}
	rows, err := s.cfg.Reader.BarriersOf(ctx, in.GID, 3*limit.HoldsPerGIDMax+1)
	if err != nil {
		return nil, problemOf(err)
	}
	if len(holds) == 0 && len(rows) == 0 {
		return nil, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "no stock holds or barrier rows for gid %q", in.GID))
	}
	v := HoldsView{GID: in.GID, Holds: []HoldView{}, Barrier: rows}
	if len(holds) > limit.HoldsPerGIDMax || len(rows) > 3*limit.HoldsPerGIDMax {
		v.Truncated = true
		holds, v.Barrier = holds[:min(len(holds), limit.HoldsPerGIDMax)], rows[:min(len(rows), 3*limit.HoldsPerGIDMax)]
	}
	for _, h := range holds {
		evs, err := s.cfg.Reader.AggregateEvents(ctx, h.ID, holdEventsMax)
		if err != nil {
			return nil, problemOf(err)
		}
		hv := HoldView{StockHold: h, Timeline: make([]TimelineEvent, len(evs))}
		for i, e := range evs {
			hv.Timeline[i] = TimelineEvent{Seq: e.Seq, Type: e.Type, Time: e.Time, Data: e.Data}
		}
		v.Holds = append(v.Holds, hv)
	}
	return &holdsOutput{Body: v}, nil
}
