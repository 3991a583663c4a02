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

// OutcomeLocal asks the recorder to run an in-process step inside the transaction that
// records it: the step's effect and its outcome commit together, so an in-process step
// takes effect exactly once, with no barrier and no network between them.
const OutcomeLocal Outcome = "local"

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
	driving  map[string]bool // gids driven by this process now
	// next holds a saga claimed while this process was still driving it (its drive had
	// just recorded a backoff and not yet ended): the drive goes on with it.
	next    map[string]ordercore.Saga
	waiters map[string][]chan ordercore.Saga // Wait callers, by gid
	hosts   map[string]chan struct{}         // per-host call slots
	parked  map[string]int                   // calls waiting for their host's breaker, by host
	wg      sync.WaitGroup
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
		c.next = map[string]ordercore.Saga{}
		c.waiters = map[string][]chan ordercore.Saga{}
		c.hosts = map[string]chan struct{}{}
		c.parked = map[string]int{}
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
		// Its drive is ending (it recorded a backoff that has passed already, or it lost
		// a record): the claim holds the saga now, for ClaimHold, and only this process
		// will drive it, so the drive goes on with it rather than leave it to wait out
		// the hold.
		c.next[s.GID] = s
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
		for {
			c.drive(ctx, s)
			next, again := c.done(s.GID)
			if !again {
				return
			}
			if ctx.Err() != nil {
				c.done(s.GID) // shutting down: a claim elsewhere takes it after its hold
				return
			}
			s = next
		}
	})
}

// done ends the drive of gid, unless the saga was claimed meanwhile: then it returns the
// claimed saga, which the same drive takes on.
func (c *Coordinator) done(gid string) (ordercore.Saga, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.next[gid]; ok {
		delete(c.next, gid)
		return s, true
	}
	delete(c.driving, gid)
	return ordercore.Saga{}, false
}

// drive makes s's calls one after the other while each next call is due at once, and
// leaves a saga in backoff (or finished) to the claims.
func (c *Coordinator) drive(ctx context.Context, s ordercore.Saga) {
	if s.Status.Final() {
		c.notify(s) // it ended where it was recorded (in-process steps run there)
		return
	}
	// At most one success is recorded while the next call is made (pipelining): its
	// record is awaited before the next outcome is. A crash between them loses only the
	// record, and the claim that resumes the saga repeats a call its participant already
	// answered, which a participant must take (calls are at least once, and idempotent per
	// gid, branch and op).
	var pending chan recordResult
	var predicted int64
	for ctx.Err() == nil {
		call, ok := Next(&s)
		if !ok {
			break
		}
		o, errMsg := c.call(ctx, &s, call)
		if ctx.Err() != nil {
			return // shutting down: the saga's hold runs out and a claim resumes it
		}
		if pending != nil {
			r := <-pending
			pending = nil
			if r.err != nil || !r.Applied || !r.Held || r.Saga.Version != predicted {
				return // the pipelined record did not go as predicted: a claim takes over
			}
		}
		rec := Recording{GID: s.GID, Version: s.Version, Call: call, Outcome: o, Err: errMsg, Jitter: rand.Float64(), Hold: Hold(&s)}
		if next, ok := c.pipelinable(s, call, o); ok {
			pending = make(chan recordResult, 1)
			go func() {
				r, err := c.Record(ctx, rec)
				pending <- recordResult{r, err}
			}()
			s, predicted = next, next.Version
			continue
		}
		r, err := c.Record(ctx, rec)
		if err != nil {
			c.Logger.Warn("saga outcome not recorded; a claim retries the call", "gid", s.GID, "err", err)
			return
		}
		if r.Saga.Status.Final() {
			c.notify(r.Saga)
		}
		if !r.Applied || !r.Held {
			return
		}
		s = r.Saga
	}
	if pending != nil {
		<-pending
	}
}

type recordResult struct {
	Recorded
	err error
}

// pipelinable predicts the saga after a success whose next call is another HTTP call of
// the same phase, which can go out while the success is recorded.
func (c *Coordinator) pipelinable(s ordercore.Saga, call Call, o Outcome) (ordercore.Saga, bool) {
	if o != OutcomeOK {
		return s, false
	}
	next := s
	next.Steps = append([]ordercore.SagaStep(nil), s.Steps...)
	if !Apply(&next, call, o, "", time.Now(), 0) || next.Status != s.Status {
		return s, false
	}
	nc, ok := Next(&next)
	if !ok || nc.Target(&next).Local != "" {
		return s, false
	}
	return next, true
}

// Watch registers for the end of saga gid before it is started, so that its end cannot
// slip by unseen; Wait then waits on it. stop unregisters.
func (c *Coordinator) Watch(gid string) (w <-chan ordercore.Saga, stop func()) {
	c.init()
	ch := make(chan ordercore.Saga, 1)
	c.mu.Lock()
	c.waiters[gid] = append(c.waiters[gid], ch)
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		ws := c.waiters[gid]
		for i, x := range ws {
			if x == ch {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(c.waiters, gid)
		} else {
			c.waiters[gid] = ws
		}
	}
}

// Wait returns saga gid once it is final (completed or compensated), or as it is when
// ctx ends. w, from Watch, reports the end of a saga this process drives the moment its
// last outcome is recorded; a saga driven by another instance is found by reading it
// every waitPoll.
func (c *Coordinator) Wait(ctx context.Context, gid string, w <-chan ordercore.Saga, read func(context.Context, string) (ordercore.Saga, error)) (ordercore.Saga, error) {
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	for {
		select {
		case s := <-w:
			return s, nil
		case <-t.C:
			s, err := read(ctx, gid)
			if err != nil || s.Status.Final() {
				return s, err
			}
		case <-ctx.Done():
			return read(context.WithoutCancel(ctx), gid)
		}
	}
}

// waitPoll spaces the reads of Wait: a saga driven by this process is reported without
// them; these find one that another instance drives.
const waitPoll = time.Second

func (c *Coordinator) notify(s ordercore.Saga) {
	c.mu.Lock()
	ws := c.waiters[s.GID]
	c.mu.Unlock()
	for _, w := range ws {
		select {
		case w <- s:
		default:
		}
	}
}

// call makes one call and classifies its outcome.
func (c *Coordinator) call(ctx context.Context, s *ordercore.Saga, call Call) (Outcome, string) {
	target := call.Target(s)
	ctx, cancel := context.WithTimeout(ctx, s.Policy.StepTimeout)
	defer cancel()
	if target.Local != "" {
		return OutcomeLocal, ""
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
	waitUntil := time.Now().Add(limit.SagaBreakerWaitMax)
	for {
		select {
		case slot <- struct{}{}:
		case <-ctx.Done():
			return OutcomeRetry, "no free call slot for " + host + " before the step timeout"
		}
		if c.breakers.Allow(host) {
			break
		}
		<-slot
		if !c.awaitBreaker(ctx, host, time.Until(waitUntil)) {
			return OutcomeRetry, "circuit open: " + host + " failed repeatedly"
		}
	}
	defer func() { <-slot }()
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

// awaitBreaker waits, at most max, for host's open breaker to let a call through again
// (its open period over, or its probe back), rather than failing the attempt at once and
// sending the saga into backoff: when the host recovers, the sagas waiting for it go on
// the moment the probe succeeds. Waiting gives this saga's slot of the coordinator's
// calls in flight to others meanwhile, so a dead host does not stall the rest; at most
// limit.SagaCallsPerTargetMax calls wait for one host, and the others fail at once.
func (c *Coordinator) awaitBreaker(ctx context.Context, host string, max time.Duration) bool {
	if max <= 0 {
		return false
	}
	c.mu.Lock()
	if c.parked[host] >= limit.SagaCallsPerTargetMax {
		c.mu.Unlock()
		return false
	}
	c.parked[host]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.parked[host]--; c.parked[host] == 0 {
			delete(c.parked, host)
		}
		c.mu.Unlock()
	}()
	<-c.sem
	defer func() { c.sem <- struct{}{} }() // drive holds one slot until it returns
	return c.breakers.Wait(ctx, host, max)
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
