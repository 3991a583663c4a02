package saga

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ordercore"
	"ordercore/internal/guard"
	"ordercore/internal/limit"
)

// Recording is one call's outcome for the engine to record (engine.SagaOutcome), after
// the ones in Earlier.
type Recording struct {
	GID     string
	Version int64
	Call    Call
	Outcome Outcome
	Err     string
	Jitter  float64
	Hold    time.Duration
	// Earlier are successes of the same saga, made before this call and not recorded yet,
	// each at its own version (this one's Version follows the last): they are recorded
	// first, in order, in the same transaction. Their own Earlier is empty.
	Earlier []Recording
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
	// Defer is how long a success whose next call went out waits to be recorded with that
	// call's outcome, in one record, before it is recorded alone (limit.SagaRecordDefer).
	Defer time.Duration
	// Wake, if set, makes due now the sagas that are still at the versions given (the
	// engine's WakeSagasAt). When a host's breaker closes, the coordinator wakes the sagas
	// whose calls that open breaker refused and that wait out a backoff for it.
	Wake func(ctx context.Context, versions map[string]int64) error

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
	backlog atomic.Bool                      // the last claim took all it asked for
	// refused holds, by host, the sagas backing off because the host's open breaker
	// refused their call, at the version their retry was recorded at.
	refused map[string]map[string]int64
	probing map[string]bool // hosts whose refused sagas probeRefused watches
	wg      sync.WaitGroup
}

// holdMargin is added to a step's timeout when a saga is held for its next call: the call
// ends (by its own timeout at the latest) and is recorded before the hold runs out.
const holdMargin = 2 * time.Second

func (c *Coordinator) init() {
	c.once.Do(func() {
		c.sem = make(chan struct{}, limit.SagaCallsInFlightMax)
		c.kick = make(chan struct{}, 1)
		c.breakers = &guard.Breakers{Failures: limit.SagaBreakerFailures, OpenFor: limit.SagaBreakerOpenFor, Max: 4096,
			OnClose: func(host string) { go c.wakeRefused(host) }}
		c.refused = map[string]map[string]int64{}
		c.probing = map[string]bool{}
		c.driving = map[string]bool{}
		c.next = map[string]ordercore.Saga{}
		c.waiters = map[string][]chan ordercore.Saga{}
		c.hosts = map[string]chan struct{}{}
		c.parked = map[string]int{}
		if c.Client == nil {
			c.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: limit.SagaCallsPerTargetMax,
				IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: limit.SagaStepTimeoutMax},
				// A redirect is an answer like any other that is not 2xx, retried: followed,
				// a step's POST would land on a URL the saga never named.
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		}
		if c.Logger == nil {
			c.Logger = slog.New(slog.DiscardHandler)
		}
		if c.Poll <= 0 {
			c.Poll = limit.SagaPollInterval
		}
		if c.Defer <= 0 {
			c.Defer = limit.SagaRecordDefer
		}
	})
}

// Hold is how long a saga is held for one call under its policy.
func Hold(s *ordercore.Saga) time.Duration { return s.Policy.StepTimeout + holdMargin }

// ClaimHold is how long a claim holds the sagas it takes, at the least: the engine holds
// a saga whose own Hold is longer (a longer step timeout) for that.
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
			want := min(free, limit.SagaClaimBatchMax)
			sagas, err := c.Claim(ctx, want, ClaimHold)
			if err != nil && ctx.Err() == nil {
				c.Logger.Warn("saga claim failed", "err", err)
			}
			for _, s := range sagas {
				c.start(ctx, s)
			}
			n = len(sagas)
			c.backlog.Store(n == want)
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
		// a record): the claim holds the saga now, for its Hold (ClaimHold at the least),
		// and only this process will drive it, so the drive goes on with it rather than
		// leave it to wait out the hold.
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
		defer func() {
			<-c.sem
			// With a backlog (the last claim took all it asked for), the next claim goes
			// out once a quarter of the slots are free, not at the next poll: a backlog
			// drains at the pace of its calls rather than a claim per poll interval.
			if c.backlog.Load() && cap(c.sem)-len(c.sem) >= cap(c.sem)/4 {
				c.Kick()
			}
		}()
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
	// A success whose next call is another HTTP call of the same phase is not recorded
	// before that call goes out (pipelining): it waits to be recorded with the next
	// outcome, in one record, or alone once Defer has passed (a slow next call), and that
	// record is awaited before the next outcome is recorded. Every record but a saga's
	// first and last can so be saved. A crash before the record loses only the record: the
	// claim that resumes the saga repeats calls their participant already answered, which
	// a participant must take (calls are at least once, and idempotent per gid, branch and
	// op). Defer is below holdMargin, so a success is recorded, and the saga's hold
	// renewed, before the hold the last record gave runs out.
	var deferred []Recording      // successes not recorded yet, oldest first
	var timer *time.Timer         // records them alone when it fires
	var pending chan recordResult // what that record did
	var predicted int64           // the saga's version once they are recorded
	for ctx.Err() == nil {
		call, ok := Next(&s)
		if !ok {
			break
		}
		o, errMsg := c.call(ctx, &s, call)
		if ctx.Err() != nil {
			if timer != nil {
				timer.Stop()
			}
			return // shutting down: the saga's hold runs out and a claim resumes it
		}
		rec := Recording{GID: s.GID, Version: s.Version, Call: call, Outcome: o, Err: errMsg, Jitter: rand.Float64(), Hold: Hold(&s)}
		if timer != nil {
			if timer.Stop() {
				rec.Earlier = deferred
			} else if r := <-pending; r.err != nil || !r.Applied || !r.Held || r.Saga.Version != predicted {
				return // the record of the deferred successes did not go as predicted: a claim takes over
			}
			deferred, timer, pending = nil, nil, nil
		}
		if next, ok := c.pipelinable(s, call, o); ok {
			alone := rec
			alone.Earlier = nil
			deferred = append(slices.Clip(rec.Earlier), alone)
			last := deferred[len(deferred)-1]
			last.Earlier = deferred[:len(deferred)-1]
			done := make(chan recordResult, 1)
			timer = time.AfterFunc(c.Defer, func() {
				r, err := c.Record(ctx, last)
				done <- recordResult{r, err}
			})
			pending, s, predicted = done, next, next.Version
			continue
		}
		r, err := c.Record(ctx, rec)
		if err != nil {
			c.Logger.Warn("saga outcome not recorded; a claim retries the call", "gid", s.GID, "err", err)
			return
		}
		if host, ok := strings.CutPrefix(errMsg, circuitOpen); ok && r.Applied && !r.Held {
			c.noteRefused(strings.TrimSuffix(host, circuitOpenEnd), s.GID, r.Saga.Version)
		}
		if r.Saga.Status.Final() || r.Saga.Status == ordercore.SagaDeadLetter {
			c.notify(r.Saga) // ended, or waits for an operator: a waiter has its answer
		}
		if !r.Applied || !r.Held {
			return
		}
		s = r.Saga
	}
	if timer != nil && !timer.Stop() {
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
// every waitPoll. The end of ctx is the end of the wait, never an error: the last read
// runs without ctx's deadline, also when ctx ran out during a poll's read (the poll and
// the deadline often fall together, as both count whole seconds).
func (c *Coordinator) Wait(ctx context.Context, gid string, w <-chan ordercore.Saga, read func(context.Context, string) (ordercore.Saga, error)) (ordercore.Saga, error) {
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	last := func() (ordercore.Saga, error) { return read(context.WithoutCancel(ctx), gid) }
	for {
		select {
		case s := <-w:
			return s, nil
		case <-t.C:
			if ctx.Err() != nil {
				return last()
			}
			s, err := read(ctx, gid)
			if err != nil && ctx.Err() != nil {
				return last()
			}
			if err != nil || s.Status.Final() || s.Status == ordercore.SagaDeadLetter {
				return s, err
			}
		case <-ctx.Done():
			return last()
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

// A call the open breaker of its host refused ends with this error: circuitOpen, the
// host, circuitOpenEnd.
const (
	circuitOpen    = "circuit open: "
	circuitOpenEnd = " failed repeatedly"
)

// noteRefused remembers a saga that backs off because host's open breaker refused its
// call, at the version its retry was recorded at, for wakeRefused; at most
// limit.SagaRefusedMax per host (the others wait out their backoff). If the breaker has
// closed since the refusal (its close may have come before this note), the host's noted
// sagas are woken now.
func (c *Coordinator) noteRefused(host, gid string, version int64) {
	c.mu.Lock()
	m := c.refused[host]
	if m == nil {
		m = map[string]int64{}
		c.refused[host] = m
	}
	if _, ok := m[gid]; ok || len(m) < limit.SagaRefusedMax {
		m[gid] = version
	}
	probe := c.Wake != nil && !c.probing[host]
	if probe {
		c.probing[host] = true
	}
	c.mu.Unlock()
	if probe {
		go c.probeRefused(host)
	}
	if c.breakers.Closed(host) {
		go c.wakeRefused(host)
	}
}

// probeRefused watches host while sagas its open breaker refused are noted. A breaker
// closes only when a call probes it, and once every call to host was refused nothing may
// call it before the refused sagas' backoffs end. So while none of this process's calls
// to host is in flight or waiting for its breaker, it makes one refused saga due at a
// time, whose call is the probe: if the host is back, the breaker closes and
// wakeRefused wakes the rest. The probes are spaced from limit.SagaBreakerOpenFor,
// doubling after each up to limit.SagaProbeEveryMax, so a long outage costs the refused
// sagas about one attempt per that interval between them all.
func (c *Coordinator) probeRefused(host string) {
	c.mu.Lock()
	ctx := c.runCtx
	c.mu.Unlock()
	every := limit.SagaBreakerOpenFor
	for {
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			c.mu.Lock()
			delete(c.probing, host)
			c.mu.Unlock()
			return
		case <-t.C:
		}
		c.mu.Lock()
		m := c.refused[host]
		if len(m) == 0 {
			delete(c.probing, host)
			c.mu.Unlock()
			return
		}
		var gid string
		var version int64
		if c.parked[host] == 0 && len(c.hosts[host]) == 0 && !c.breakers.Closed(host) {
			for gid, version = range m {
				break
			}
			delete(m, gid)
		}
		c.mu.Unlock()
		if gid == "" {
			continue // a call of this process will probe, or the breaker closed and wakeRefused runs
		}
		if err := c.Wake(ctx, map[string]int64{gid: version}); err != nil && ctx.Err() == nil {
			c.Logger.Warn("saga not woken to probe its host's breaker", "host", host, "gid", gid, "err", err)
		}
		c.Kick()
		every = min(2*every, limit.SagaProbeEveryMax)
	}
}

// wakeRefused runs when host's breaker has closed: the sagas its open breaker refused are
// made due now, in batches, and the claim loop is woken to take them.
func (c *Coordinator) wakeRefused(host string) {
	c.mu.Lock()
	m := c.refused[host]
	delete(c.refused, host)
	ctx := c.runCtx
	c.mu.Unlock()
	if len(m) > 0 && c.Wake != nil && ctx != nil {
		part := make(map[string]int64, min(len(m), limit.SagaClaimBatchMax))
		flush := func() {
			if err := c.Wake(ctx, part); err != nil && ctx.Err() == nil {
				c.Logger.Warn("sagas refused by a breaker not woken; they wait out their backoff", "host", host, "err", err)
			}
			clear(part)
		}
		for gid, v := range m {
			part[gid] = v
			if len(part) == limit.SagaClaimBatchMax {
				flush()
			}
		}
		if len(part) > 0 {
			flush()
		}
	}
	c.Kick()
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
// (DTM's convention, with status 409 or, from older participants, any other).
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
			return OutcomeRetry, circuitOpen + host + circuitOpenEnd
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
	// DTM's reading of an answer (dtmimp.RespAsErrorCompatible), in its order: 425 or
	// ONGOING anywhere in the body is "not finished, ask again"; 409 or FAILURE anywhere
	// is failed for good, whatever the status; other answers but 2xx are errors, retried.
	// Not finished is a retry after the backoff (it spends an attempt), from a host that
	// answered as it meant to, so it does not count against the host's breaker.
	// A body that states its outcome as a JSON dtm_result (DTM's own participants, and
	// ordercore's stock) is taken at its word first: its message may quote a gid or a
	// SKU that happens to hold the other word.
	switch declared(answer) {
	case ongoingMarker:
		c.breakers.Record(host, true)
		return OutcomeRetry, fmt.Sprintf("HTTP %d, not finished yet: %s", resp.StatusCode, short(text))
	case ErrFailureMarker:
		c.breakers.Record(host, true)
		return OutcomeFail, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, short(text))
	}
	switch {
	case resp.StatusCode == http.StatusTooEarly || strings.Contains(text, ongoingMarker):
		c.breakers.Record(host, true)
		return OutcomeRetry, fmt.Sprintf("HTTP %d, not finished yet: %s", resp.StatusCode, short(text))
	case resp.StatusCode == http.StatusConflict || strings.Contains(text, ErrFailureMarker):
		c.breakers.Record(host, true)
		return OutcomeFail, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, short(text))
	case resp.StatusCode/100 == 2:
		c.breakers.Record(host, true)
		return OutcomeOK, ""
	default:
		c.breakers.Record(host, resp.StatusCode < 500)
		return OutcomeRetry, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, short(text))
	}
}

// declared is the dtm_result a JSON object body states (ONGOING or FAILURE), or "".
func declared(body []byte) string {
	if len(body) == 0 || body[0] != '{' || !bytes.Contains(body, []byte(`"dtm_result"`)) ||
		!bytes.Contains(body, []byte(ongoingMarker)) && !bytes.Contains(body, []byte(ErrFailureMarker)) {
		return "" // nothing that DTM's rules below could misread: no need to parse
	}
	var v struct {
		Result string `json:"dtm_result"`
	}
	if json.Unmarshal(body, &v) != nil || (v.Result != ongoingMarker && v.Result != ErrFailureMarker) {
		return ""
	}
	return v.Result
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
