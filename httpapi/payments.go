package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"sort"
	"sync"

	"github.com/danielgtaylor/huma/v2"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/idem"
	"ordercore/internal/limit"
)

type payInput struct {
	ID      string `path:"id" maxLength:"36"`
	IdemKey string `header:"Idempotency-Key" maxLength:"255" doc:"A retry with the same key returns the same attempt"`
	Body    struct {
		Channel string `json:"channel" minLength:"1" maxLength:"32" doc:"A configured payment channel: sim, stripe, alipay, wechat"`
	}
}

type paymentOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Body     ordercore.Payment
}

// pay opens a payment attempt. With an Idempotency-Key, the attempt is stored under the
// key when it is created: a retry finds it and asks the channel for the same trade again
// (the channel's own idempotency key is the attempt's id), so it never opens a second one.
func (s *Server) pay(ctx context.Context, in *payInput) (*paymentOutput, error) {
	if s.cfg.Payments == nil {
		return nil, problemOf(ordercore.Errorf(ordercore.EUnknownChannel, "no payment channel is configured"))
	}
	if !ordercore.ValidID(in.ID) {
		return nil, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "order %q not found", in.ID))
	}
	var ik *engine.Idem
	if in.IdemKey != "" {
		if err := idem.ValidKey(in.IdemKey); err != nil {
			return nil, problemOf(err)
		}
		canon, _ := json.Marshal(in.Body)
		if !s.inFlight.Begin(in.IdemKey) {
			return nil, problemOf(ordercore.Errorf(ordercore.EIdemKeyInUse, "a request with Idempotency-Key %q is still executing", in.IdemKey))
		}
		defer s.inFlight.End(in.IdemKey)
		ik = &engine.Idem{Key: in.IdemKey, Hash: idem.Fingerprint("pay "+in.ID, canon), Status: http.StatusCreated}
	}
	res, err := s.cfg.Payments.Pay(ctx, in.ID, in.Body.Channel, ik)
	if err != nil {
		return nil, problemOf(err)
	}
	p, ok := res.Value.(ordercore.Payment)
	limit.Assert(ok, "pay returned %T", res.Value)
	return &paymentOutput{Status: http.StatusCreated, Replayed: replayedHeader(res.Replayed != nil), Body: p}, nil
}

// OrderMoney is an order's payment attempts and refunds.
type OrderMoney struct {
	Payments []ordercore.Payment `json:"payments"`
	Refunds  []ordercore.Refund  `json:"refunds"`
}

type orderMoneyOutput struct {
	Body OrderMoney
}

func (s *Server) orderPayments(ctx context.Context, in *orderIDInput) (*orderMoneyOutput, error) {
	if !ordercore.ValidID(in.ID) {
		return nil, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "order %q not found", in.ID))
	}
	if _, err := s.cfg.Reader.Order(ctx, in.ID); err != nil {
		return nil, problemOf(err)
	}
	ps, rs, err := s.cfg.Reader.OrderPayments(ctx, in.ID)
	if err != nil {
		return nil, problemOf(err)
	}
	out := OrderMoney{Payments: ps, Refunds: rs}
	if out.Payments == nil {
		out.Payments = []ordercore.Payment{}
	}
	if out.Refunds == nil {
		out.Refunds = []ordercore.Refund{}
	}
	return &orderMoneyOutput{Body: out}, nil
}

type refundInput struct {
	ID      string `path:"id" maxLength:"36"`
	IdemKey string `header:"Idempotency-Key" maxLength:"255" doc:"A retry with the same key returns the same refund"`
	Body    struct {
		Amount       AmountBody `json:"amount" doc:"At most what remains refundable of the order's payment"`
		Reason       string     `json:"reason,omitempty" maxLength:"500"`
		RestockLines []int      `json:"restock_lines,omitempty" maxItems:"100" doc:"Line numbers (from 1) whose units go back on the shelf when the refund succeeds"`
	}
}

type refundOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Body     ordercore.Refund
}

func (s *Server) requestRefund(ctx context.Context, in *refundInput) (*refundOutput, error) {
	if !ordercore.ValidID(in.ID) {
		return nil, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "order %q not found", in.ID))
	}
	cmd := engine.RequestRefund{OrderID: in.ID, Reason: in.Body.Reason, RestockLines: in.Body.RestockLines,
		Amount: ordercore.Money{Amount: in.Body.Amount.Amount, Currency: ordercore.Currency(in.Body.Amount.Currency)}}
	if err := cmd.Validate(); err != nil {
		return nil, problemOf(err)
	}
	status, r, replayed, err := submit[ordercore.Refund](ctx, s, cmd, "refund "+in.ID, in.IdemKey, in.Body, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	if s.cfg.Payments != nil {
		s.cfg.Payments.Nudge() // send it now rather than at the next sweep
	}
	return &refundOutput{Status: status, Replayed: replayedHeader(replayed), Body: r}, nil
}

type listReviewsInput struct {
	Status string `query:"status" enum:"open,resolved," doc:"open, resolved, or empty for both"`
	Cursor string `query:"cursor" doc:"next_cursor of the previous page"`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50"`
}

type listReviewsOutput struct {
	Body struct {
		Items      []ordercore.ReviewItem `json:"items"`
		NextCursor string                 `json:"next_cursor,omitempty"`
	}
}

func (s *Server) listReviews(ctx context.Context, in *listReviewsInput) (*listReviewsOutput, error) {
	if in.Cursor != "" && !ordercore.ValidID(in.Cursor) {
		return nil, problemOf(ordercore.Errorf(ordercore.EInvalidCursor, "cursor %q is not one this API returned", in.Cursor))
	}
	items, err := s.cfg.Reader.Reviews(ctx, ordercore.ReviewStatus(in.Status), in.Cursor, in.Limit+1)
	if err != nil {
		return nil, problemOf(err)
	}
	out := &listReviewsOutput{}
	if len(items) > in.Limit {
		items = items[:in.Limit]
		out.Body.NextCursor = items[len(items)-1].ID
	}
	out.Body.Items = items
	return out, nil
}

type reviewIDInput struct {
	ID string `path:"id" maxLength:"36"`
}

type reviewOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Body     ordercore.ReviewItem
}

func (s *Server) getReview(ctx context.Context, in *reviewIDInput) (*reviewOutput, error) {
	if !ordercore.ValidID(in.ID) {
		return nil, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "review item %q not found", in.ID))
	}
	r, err := s.cfg.Reader.Review(ctx, in.ID)
	if err != nil {
		return nil, problemOf(err)
	}
	return &reviewOutput{Status: http.StatusOK, Body: r}, nil
}

type resolveReviewInput struct {
	ID      string `path:"id" maxLength:"36"`
	IdemKey string `header:"Idempotency-Key" maxLength:"255" doc:"A retry with the same key returns the same resolution"`
	Body    struct {
		Action string `json:"action" enum:"dismiss,retry" doc:"dismiss: settled outside ordercore; retry: query the payment or refund again from the first step of its schedule"`
		Note   string `json:"note" minLength:"1" maxLength:"500" doc:"Why: kept in the audit"`
		By     string `json:"by" minLength:"1" maxLength:"64" doc:"The operator resolving it: kept in the audit"`
	}
}

func (s *Server) resolveReview(ctx context.Context, in *resolveReviewInput) (*reviewOutput, error) {
	if !ordercore.ValidID(in.ID) {
		return nil, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "review item %q not found", in.ID))
	}
	cmd := engine.ResolveReview{ID: in.ID, Action: in.Body.Action, Note: in.Body.Note, By: in.Body.By}
	if err := cmd.Validate(); err != nil {
		return nil, problemOf(err)
	}
	status, r, replayed, err := submit[ordercore.ReviewItem](ctx, s, cmd, "resolve-review "+in.ID, in.IdemKey, in.Body, http.StatusOK)
	if err != nil {
		return nil, err
	}
	if s.cfg.Payments != nil && cmd.Action == engine.ReviewRetry {
		s.cfg.Payments.Nudge()
	}
	return &reviewOutput{Status: status, Replayed: replayedHeader(replayed), Body: r}, nil
}

// notifyStats counts channel notifications by channel and outcome: accepted ones by what
// applying them did, rejected ones by error code. Operators watch the rejections: a burst
// of invalid_signature is an attack or a rotated secret.
type notifyStats struct {
	mu     sync.Mutex
	counts map[string]map[string]int64
}

func (n *notifyStats) add(channel, outcome string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.counts == nil {
		n.counts = map[string]map[string]int64{}
	}
	if n.counts[channel] == nil {
		n.counts[channel] = map[string]int64{}
	}
	n.counts[channel][outcome]++
}

// NotifyCounts counts, per channel, what its notifications did since start: applied,
// stale, duplicate, orphan, or the code they were rejected with (as GET /v1/channels).
func (s *Server) NotifyCounts() map[string]map[string]int64 {
	s.notifyStats.mu.Lock()
	defer s.notifyStats.mu.Unlock()
	out := make(map[string]map[string]int64, len(s.notifyStats.counts))
	for ch, m := range s.notifyStats.counts {
		out[ch] = maps.Clone(m)
	}
	return out
}

func (n *notifyStats) snapshot(channel string) map[string]int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]int64{}
	for k, v := range n.counts[channel] {
		out[k] = v
	}
	return out
}

// notify receives a channel's asynchronous notification. It is a plain handler, not a huma
// operation: the signature covers the raw bytes, which must reach the channel's verifier
// untouched, and each channel has its own acknowledgement. The acknowledgement is written
// only after the notification is durably applied; anything else makes the channel retry.
func (s *Server) notify(w http.ResponseWriter, r *http.Request) {
	channel := r.PathValue("channel")
	if s.cfg.Payments == nil {
		writeProblem(w, problemOf(ordercore.Errorf(ordercore.EUnknownChannel, "no payment channel is configured")))
		return
	}
	if _, ok := s.cfg.Payments.Channels[channel]; !ok {
		// Not counted: the counters are per configured channel, so that requests to made-up
		// paths cannot grow them.
		writeProblem(w, problemOf(ordercore.Errorf(ordercore.EUnknownChannel, "no payment channel %q is configured", channel)))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit.NotificationBytesMax))
	if err != nil {
		s.notifyStats.add(channel, ordercore.EBodyTooLarge)
		writeProblem(w, problemOf(ordercore.Errorf(ordercore.EBodyTooLarge, "a notification is at most %d bytes", limit.NotificationBytesMax)))
		return
	}
	ch, outcome, err := s.cfg.Payments.Notify(r.Context(), channel, r.Header, body)
	if err != nil {
		s.notifyStats.add(channel, ordercore.ErrorCode(err))
		writeProblem(w, problemOf(err))
		return
	}
	s.notifyStats.add(channel, outcome)
	ch.Ack(w)
}

// writeProblem writes a problem outside huma (the notify handler).
func writeProblem(w http.ResponseWriter, err error) {
	var p *Problem
	var h huma.HeadersError
	if errors.As(err, &h) {
		for k, vs := range h.GetHeaders() {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
	}
	if !errors.As(err, &p) {
		p = newProblem(http.StatusInternalServerError, ordercore.EINTERNAL, "internal error", nil)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}

// ChannelInfo is a configured payment channel and what its notifications did.
type ChannelInfo struct {
	Name          string           `json:"name"`
	NotifyPath    string           `json:"notify_path"`
	Notifications map[string]int64 `json:"notifications" doc:"Since the server started: applied, stale, duplicate_event, orphan, ignored, or the rejection's error code"`
}

type listChannelsOutput struct {
	Body struct {
		Channels []ChannelInfo `json:"channels"`
	}
}

func (s *Server) listChannels(ctx context.Context, _ *struct{}) (*listChannelsOutput, error) {
	out := &listChannelsOutput{}
	out.Body.Channels = []ChannelInfo{}
	if s.cfg.Payments == nil {
		return out, nil
	}
	names := make([]string, 0, len(s.cfg.Payments.Channels))
	for name := range s.cfg.Payments.Channels {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		out.Body.Channels = append(out.Body.Channels, ChannelInfo{Name: name, NotifyPath: "/v1/channels/" + name + "/notify",
			Notifications: s.notifyStats.snapshot(name)})
	}
	return out, nil
}
