package saga

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"ordercore"
	"ordercore/internal/guard"
	"ordercore/internal/limit"
)

// Recording is one call's outcome for the engine to record (engine.SagaOutcome).
type Recording struct {
	GID     string
	Version int64
	Call    Call
	Outcome Outcome
	Err     string
	Jitter  float64
	Hold    time.Duration
}

// Recorded is what recording an outcome did: the saga after it, whether the outcome was
// applied (false: another worker moved the saga meanwhile), and whether the saga is held
// for the recorder because its next call is due at once.
type Recorded struct {
	Saga    ordercore.Saga
	Applied bool
	Held    bool
}

// Local is an in-process step of ordercore itself (a refund, a stock movement): it does the
// call's work for s and says how it ended; a non-nil error is the reason of a Retry or
// Fail.
type Local func(ctx context.Context, s *ordercore.Saga, c Call) (Outcome, error)

// Coordinator runs sagas: it claims due ones in batches, drives each through its calls
// (at most limit.SagaCallsInFlightMax at once, at most limit.SagaCallsPerTargetMax to one
// host, a breaker per host), and records every outcome through Record, whose durable
// answer is what moves a saga on. A saga whose outcome is not applied (another worker
// claimed it after this one's claim ran out) is left to that worker: participants are
// idempotent per (gid, branch, op), so the only cost of such an overlap is a repeated call.
type Coordinator struct {
	// Claim takes up to n due sagas for hold; Record records one outcome.
	Claim  func(ctx context.Context, n int, hold time.Duration) ([]ordercore.Saga, error)
	Record func(ctx context.Context, r Recording) (Recorded, error)
	Locals map[string]Local
	Client *http.Client
	Logger *slog.Logger
	// Poll is the longest wait between claims when there is no work (limit.SagaPollInterval).
	Poll time.Duration
	// DTM, when set, is this server's DTM-compatible endpoint (http://host/api/dtmsvr),
	// passed to participants as the "dtm" query parameter, as DTM's server does.
	DTM string

	once     sync.Once
	runCtx   context.Context // Run's, for the sagas Start drives
	sem      chan struct{}
	kick     chan struct{}
	breakers *guard.Breakers
	mu       sync.Mutex
	driving  map[string]bool          // gids driven by this process now
	hosts    map[string]chan struct{} // per-host call slots
	wg       sync.WaitGroup
}

// holdMargin is added to a step's timeout when a saga is held for its next call: the call
// ends (by its own timeout at the latest) and is recorded before the hold runs out.
const holdMargin = 2 * time.Second

func (c *Coordinator) init() {
	c.once.Do(func() {
		c.sem = make(chan struct{}, limit.SagaCallsInFlightMax)
		c.kick = make(chan struct{}, 1)
		c.breakers = &guard.Breakers{Failures: limit.SagaBreakerFailures, OpenFor: limit.SagaBreakerOpenFor, Max: 4096}
		c.driving = map[string]bool{}
		c.hosts = map[string]chan struct{}{}
		if c.Client == nil {
			c.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: limit.SagaCallsPerTargetMax,
				IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: limit.SagaStepTimeoutMax}}
		}
		if c.Logger == nil {
			c.Logger = slog.New(slog.DiscardHandler)
		}
		if c.Poll <= 0 {
			c.Poll = limit.SagaPollInterval
		}
	})
}

// Hold is how long a saga is held for one call under its policy.
func Hold(s *ordercore.Saga) time.Duration { return s.Policy.StepTimeout + holdMargin }

// ClaimHold is how long a claim holds the sagas it takes.
const ClaimHold = limit.SagaStepTimeoutDefault + holdMargin

// Run claims and drives sagas until ctx ends, then waits for the calls in flight.
func (c *Coordinator) Run(ctx context.Context) {
	c.init()
	c.mu.Lock()
	c.runCtx = ctx
	c.mu.Unlock()
	defer c.wg.Wait()
	for ctx.Err() == nil {
		free := cap(c.sem) - len(c.sem)
		n := 0
		if free > 0 {
			sagas, err := c.Claim(ctx, min(free, limit.SagaClaimBatchMax), ClaimHold)
			if err != nil && ctx.Err() == nil {
				c.Logger.Warn("saga claim failed", "err", err)
			}
			for _, s := range sagas {
				c.start(ctx, s)
			}
			n = len(sagas)
		}
		if n > 0 && n == min(free, limit.SagaClaimBatchMax) {
			continue // a full claim: there is more
		}
		t := time.NewTimer(c.Poll)
		select {
		case <-ctx.Done():
		case <-c.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// Running reports whether Run has started and not ended.
func (c *Coordinator) Running() bool {
	c.init()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runCtx != nil && c.runCtx.Err() == nil
}

// Kick makes Run claim now (a saga became due).
func (c *Coordinator) Kick() {
	c.init()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Start drives s, which this instance holds (it was submitted here with a hold), unless
// this process drives it already; it waits for a free slot, which pushes back on
// submitters when every slot is busy. It reports false when the coordinator is not
// running (the saga then waits for its hold to run out and a claim to take it).
func (c *Coordinator) Start(s ordercore.Saga) bool {
	c.init()
	c.mu.Lock()
	ctx := c.runCtx
	c.mu.Unlock()
	if ctx == nil || ctx.Err() != nil {
		return false
	}
	c.start(ctx, s)
	return true
}

func (c *Coordinator) start(ctx context.Context, s ordercore.Saga) {
	c.mu.Lock()
	if c.driving[s.GID] {
		c.mu.Unlock()
		return
	}
	c.driving[s.GID] = true
	c.mu.Unlock()
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		c.done(s.GID)
		return
	}
	c.wg.Go(func() {
		defer func() { <-c.sem }()
		defer c.done(s.GID)
		c.drive(ctx, s)
	})
}

func (c *Coordinator) done(gid string) {
	c.mu.Lock()
	delete(c.driving, gid)
	c.mu.Unlock()
}

// drive makes s's calls one after the other while each next call is due at once, and
// leaves a saga in backoff (or finished) to the claims.
func (c *Coordinator) drive(ctx context.Context, s ordercore.Saga) {
	for ctx.Err() == nil {
		call, ok := Next(&s)
		if !ok {
			return
		}
		o, errMsg := c.call(ctx, &s, call)
		if ctx.Err() != nil {
			return // shutting down: the saga's hold runs out and a claim resumes it
		}
		r, err := c.Record(ctx, Recording{GID: s.GID, Version: s.Version, Call: call, Outcome: o, Err: errMsg,
			Jitter: rand.Float64(), Hold: Hold(&s)})
		if err != nil {
			c.Logger.Warn("saga outcome not recorded; a claim retries the call", "gid", s.GID, "err", err)
			return
		}
		if !r.Applied || !r.Held {
			return
		}
		s = r.Saga
	}
}

// call makes one call and classifies its outcome.
func (c *Coordinator) call(ctx context.Context, s *ordercore.Saga, call Call) (Outcome, string) {
	target := call.Target(s)
	ctx, cancel := context.WithTimeout(ctx, s.Policy.StepTimeout)
	defer cancel()
	if target.Local != "" {
		fn, ok := c.Locals[target.Local]
		if !ok {
			return OutcomeRetry, fmt.Sprintf("no in-process operation %q on this instance", target.Local)
		}
		o, err := fn(ctx, s, call)
		if err != nil {
			return o, err.Error()
		}
		return o, ""
	}
	return c.callHTTP(ctx, s, call, target)
}

// BranchID is DTM's default branch id of step i: two digits, 1-based.
func BranchID(step int) string { return fmt.Sprintf("%02d", step+1) }

// StepBranchID is the branch id participants see for step i of s.
func StepBranchID(s *ordercore.Saga, step int) string {
	if id := s.Steps[step].BranchID; id != "" {
		return id
	}
	return BranchID(step)
}

// ErrFailureMarker is what a participant's answer body contains to say "failed for good"
// (DTM's convention, with status 409 or, from older participants, 200).
const ErrFailureMarker = "FAILURE"

// ongoingMarker is DTM's "not finished yet, ask again".
const ongoingMarker = "ONGOING"

func (c *Coordinator) callHTTP(ctx context.Context, s *ordercore.Saga, call Call, target *ordercore.SagaCall) (Outcome, string) {
	u, err := url.Parse(target.URL)
	if err != nil {
		return OutcomeRetry, "bad url: " + err.Error()
	}
	q := u.Query()
	q.Set("gid", s.GID)
	q.Set("trans_type", string(s.Kind))
	branch := StepBranchID(s, call.Step)
	q.Set("branch_id", branch)
	if c.DTM != "" {
		q.Set("dtm", c.DTM) // DTM participants read the coordinator's address from it
	}
	q.Set("op", string(call.Op))
	u.RawQuery = q.Encode()
	host := u.Host
	slot := c.hostSlot(host)
	select {
	case slot <- struct{}{}:
		defer func() { <-slot }()
	case <-ctx.Done():
		return OutcomeRetry, "no free call slot for " + host + " before the step timeout"
	}
	if !c.breakers.Allow(host) {
		return OutcomeRetry, "circuit open: " + host + " failed repeatedly"
	}
	body := []byte(target.Payload)
	if len(body) == 0 {
		body = []byte("{}")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		c.breakers.Record(host, true)
		return OutcomeRetry, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", s.GID+"/"+branch+"/"+string(call.Op))
	req.Header.Set("Ordercore-Gid", s.GID)
	req.Header.Set("Ordercore-Branch", branch)
	req.Header.Set("Ordercore-Op", string(call.Op))
	req.Header.Set("traceparent", traceparent(s.GID))
	resp, err := c.Client.Do(req)
	if err != nil {
		c.breakers.Record(host, false)
		if errors.Is(err, context.DeadlineExceeded) {
			return OutcomeRetry, fmt.Sprintf("no answer within the step timeout (%s)", s.Policy.StepTimeout)
		}
		return OutcomeRetry, err.Error()
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, limit.SagaResponseBytesMax))
	text := string(answer)
	switch {
	case resp.StatusCode == http.StatusConflict || resp.StatusCode/100 == 2 && strings.Contains(text, ErrFailureMarker):
		c.breakers.Record(host, true)
		return OutcomeFail, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, short(text))
	case resp.StatusCode/100 == 2 && !strings.Contains(text, ongoingMarker):
		c.breakers.Record(host, true)
		return OutcomeOK, ""
	default:
		c.breakers.Record(host, resp.StatusCode < 500)
		return OutcomeRetry, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, short(text))
	}
}

func (c *Coordinator) hostSlot(host string) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	slot, ok := c.hosts[host]
	if !ok {
		slot = make(chan struct{}, limit.SagaCallsPerTargetMax)
		c.hosts[host] = slot
	}
	return slot
}

func short(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// traceparent is a W3C trace context header for a call: the trace id derives from the gid
// (every call of a saga is one trace), the span id is fresh.
func traceparent(gid string) string {
	h := fnv.New128a()
	h.Write([]byte(gid))
	var span [8]byte
	crand.Read(span[:])
	return "00-" + hex.EncodeToString(h.Sum(nil)) + "-" + hex.EncodeToString(span[:]) + "-01"
}
