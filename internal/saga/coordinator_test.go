package saga_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
	"ordercore/internal/saga"
	"ordercore/sqlite"
)

// participant is an HTTP saga participant whose answers the test scripts per (branch,
// op): a list of behaviours consumed one per call, the last one repeating.
type participant struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []string // "gid/branch/op" in arrival order
	plan  map[string][]string
	gate  chan struct{} // a "block" call answers once it is closed
}

func newParticipant(t *testing.T) *participant {
	p := &participant{plan: map[string][]string{}, gate: make(chan struct{})}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		key := q.Get("branch_id") + "/" + q.Get("op")
		if got := r.Header.Get("Idempotency-Key"); got != q.Get("gid")+"/"+key {
			t.Errorf("Idempotency-Key %q, want gid/branch/op", got)
		}
		p.mu.Lock()
		p.calls = append(p.calls, q.Get("gid")+"/"+key)
		do := "ok"
		if plan := p.plan[key]; len(plan) > 0 {
			do = plan[0]
			if len(plan) > 1 {
				p.plan[key] = plan[1:]
			}
		}
		p.mu.Unlock()
		switch do {
		case "ok":
			w.Write([]byte(`{"dtm_result":"SUCCESS"}`))
		case "fail":
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"dtm_result":"FAILURE"}`))
		case "fail200":
			w.Write([]byte(`{"dtm_result":"FAILURE"}`))
		case "503":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "slow":
			time.Sleep(300 * time.Millisecond) // beyond the test policy's step timeout
			w.Write([]byte(`{}`))
		case "block": // succeeds once the test opens the gate
			select {
			case <-p.gate:
				w.Write([]byte(`{"dtm_result":"SUCCESS"}`))
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// flakyHost is a participant host that answers 503 while down (calling onDown) and
// succeeds otherwise; it starts down.
func flakyHost(t *testing.T, onDown func()) (*httptest.Server, *atomic.Bool) {
	var down atomic.Bool
	down.Store(true)
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			onDown()
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"dtm_result":"SUCCESS"}`))
	}))
	t.Cleanup(host.Close)
	return host, &down
}

func (p *participant) script(key string, behaviours ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plan[key] = behaviours
}

func (p *participant) seen(gid string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, c := range p.calls {
		if len(c) > len(gid) && c[:len(gid)+1] == gid+"/" {
			out = append(out, c[len(gid)+1:])
		}
	}
	return out
}

type rig struct {
	db    *sqlite.DB
	eng   *engine.Engine
	coord *saga.Coordinator
}

// newRig runs a coordinator on a fresh SQLite store; configure may change it (its Poll,
// Defer, or a Record that watches) before it runs.
func newRig(t *testing.T, configure ...func(*saga.Coordinator)) *rig {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(db, ordercore.SystemClock{}, engine.Config{})
	c := &saga.Coordinator{Claim: eng.ClaimSagasFor, Record: eng.RecordSaga, Wake: eng.WakeSagasAt, Poll: 20 * time.Millisecond}
	for _, f := range configure {
		f(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; eng.Close(); db.Close() })
	for !c.Running() {
		time.Sleep(time.Millisecond)
	}
	return &rig{db: db, eng: eng, coord: c}
}

var fast = ordercore.SagaPolicy{StepTimeout: 150 * time.Millisecond, RetriesMax: 4, BackoffMin: 10 * time.Millisecond,
	BackoffMax: 40 * time.Millisecond, CompensateAttemptsMax: 5}

func (r *rig) submit(t *testing.T, p *participant, gid string, kind ordercore.SagaKind, n int) {
	t.Helper()
	r.submitWith(t, p, gid, kind, n, fast)
}

func (r *rig) submitWith(t *testing.T, p *participant, gid string, kind ordercore.SagaKind, n int, policy ordercore.SagaPolicy) {
	t.Helper()
	s := ordercore.Saga{GID: gid, Kind: kind, Policy: policy}
	for i := range n {
		st := ordercore.SagaStep{Name: fmt.Sprint("s", i), Action: ordercore.SagaCall{URL: p.srv.URL + "/act", Payload: []byte(`{"n":1}`)},
			Compensate: &ordercore.SagaCall{URL: p.srv.URL + "/undo"}}
		if kind == ordercore.SagaKindTCC {
			st.Confirm = &ordercore.SagaCall{URL: p.srv.URL + "/confirm"}
		}
		s.Steps = append(s.Steps, st)
	}
	res, err := r.eng.Submit(context.Background(), engine.SubmitSaga{Saga: s, Hold: saga.Hold(&ordercore.Saga{Policy: policy})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.coord.Start(res.Value.(ordercore.Saga)) {
		t.Fatal("the coordinator is not running")
	}
}

func (r *rig) wait(t *testing.T, gid string, want ordercore.SagaStatus) ordercore.Saga {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := r.db.Saga(context.Background(), gid)
		if err == nil && s.Status == want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("saga %s is %s (%s), want %s", gid, s.Status, s.Reason, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCoordinatorFaults runs sagas against a participant that fails, times out, answers
// slowly, answers 5xx, or says FAILURE the old way (200 with FAILURE in the body): each
// ends completed or compensated, with exactly the calls the rules ask for.
func TestCoordinatorFaults(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	for _, c := range []struct {
		name   string
		kind   ordercore.SagaKind
		script map[string][]string
		want   ordercore.SagaStatus
		calls  []string
	}{
		{"success", ordercore.SagaKindSaga, nil, ordercore.SagaCompleted,
			[]string{"01/action", "02/action"}},
		{"second fails for good", ordercore.SagaKindSaga, map[string][]string{"02/action": {"fail"}}, ordercore.SagaCompensated,
			[]string{"01/action", "02/action", "02/compensate", "01/compensate"}},
		{"FAILURE in a 200 body", ordercore.SagaKindSaga, map[string][]string{"01/action": {"fail200"}}, ordercore.SagaCompensated,
			[]string{"01/action", "01/compensate"}},
		{"503 twice then ok", ordercore.SagaKindSaga, map[string][]string{"01/action": {"503", "503", "ok"}}, ordercore.SagaCompleted,
			[]string{"01/action", "01/action", "01/action", "02/action"}},
		{"slow answer is a timeout, retried", ordercore.SagaKindSaga, map[string][]string{"02/action": {"slow", "ok"}}, ordercore.SagaCompleted,
			[]string{"01/action", "02/action", "02/action"}},
		{"always 503: retries run out, compensated", ordercore.SagaKindSaga, map[string][]string{"02/action": {"503"}}, ordercore.SagaCompensated,
			[]string{"01/action", "02/action", "02/action", "02/action", "02/action", "02/compensate", "01/compensate"}},
		{"compensation retried until it succeeds", ordercore.SagaKindSaga, map[string][]string{"01/action": {"fail"}, "01/compensate": {"503", "ok"}}, ordercore.SagaCompensated,
			[]string{"01/action", "01/compensate", "01/compensate"}},
		{"tcc confirm", ordercore.SagaKindTCC, nil, ordercore.SagaCompleted,
			[]string{"01/try", "02/try", "01/confirm", "02/confirm"}},
		{"tcc try fails: cancel", ordercore.SagaKindTCC, map[string][]string{"02/try": {"fail"}}, ordercore.SagaCompensated,
			[]string{"01/try", "02/try", "02/cancel", "01/cancel"}},
		{"tcc confirm retried", ordercore.SagaKindTCC, map[string][]string{"01/confirm": {"503", "ok"}}, ordercore.SagaCompleted,
			[]string{"01/try", "02/try", "01/confirm", "01/confirm", "02/confirm"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := newParticipant(t)
			for k, v := range c.script {
				p.script(k, v...)
			}
			gid := "g-" + fmt.Sprint(time.Now().UnixNano())
			r.submit(t, p, gid, c.kind, 2)
			s := r.wait(t, gid, c.want)
			if got := p.seen(gid); !slices.Equal(got, c.calls) {
				t.Errorf("calls %v, want %v", got, c.calls)
			}
			if !s.NextRunAt.IsZero() {
				t.Errorf("a %s saga is still due at %v", s.Status, s.NextRunAt)
			}
		})
	}
}

// TestSuccessesRecordedWithTheNextOutcome: a success whose next call goes out at once is
// recorded with that call's outcome, in one record: a saga of three quick steps takes one
// record after its submit, and its step events stay in order. A success whose next call
// is slow is recorded alone once Defer has passed, so it can be read while that call is
// out.
func TestSuccessesRecordedWithTheNextOutcome(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	records := map[string][]saga.Recording{}
	recordsOf := func(gid string) []saga.Recording {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(records[gid])
	}
	r := newRig(t, func(c *saga.Coordinator) {
		c.Defer = 1500 * time.Millisecond // a quick call answers well within it, even on a loaded machine
		record := c.Record
		c.Record = func(ctx context.Context, rec saga.Recording) (saga.Recorded, error) {
			mu.Lock()
			records[rec.GID] = append(records[rec.GID], rec)
			mu.Unlock()
			return record(ctx, rec)
		}
	})
	policy := ordercore.SagaPolicy{StepTimeout: 10 * time.Second, RetriesMax: 4, BackoffMin: 10 * time.Millisecond,
		BackoffMax: 40 * time.Millisecond, CompensateAttemptsMax: 5}

	t.Run("quick steps: one record", func(t *testing.T) {
		p := newParticipant(t)
		r.submitWith(t, p, "pipelined", ordercore.SagaKindSaga, 3, policy)
		r.wait(t, "pipelined", ordercore.SagaCompleted)
		recs := recordsOf("pipelined")
		if len(recs) != 1 || len(recs[0].Earlier) != 2 {
			t.Fatalf("%d records (the first with %d earlier outcomes), want 1 carrying the 2 earlier successes", len(recs), len(recs[0].Earlier))
		}
		evs, err := r.db.AggregateEvents(context.Background(), "pipelined", 100)
		if err != nil {
			t.Fatal(err)
		}
		var steps []int
		for _, e := range evs {
			var st ordercore.SagaStepEvent
			if e.Type == ordercore.EventSagaStep {
				if err := json.Unmarshal(e.Data, &st); err != nil {
					t.Fatal(err)
				}
				if st.Op != "action" || st.Outcome != "ok" {
					t.Errorf("step event %+v, want an action that succeeded", st)
				}
				steps = append(steps, st.Step)
			}
		}
		if !slices.Equal(steps, []int{0, 1, 2}) {
			t.Fatalf("step events for steps %v, want 0, 1, 2 in order", steps)
		}
	})

	t.Run("slow next call: the success is recorded alone", func(t *testing.T) {
		release := make(chan struct{})
		var out atomic.Bool // the second step's call is out
		host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Query().Get("branch_id") == "02" {
				out.Store(true)
				<-release
			}
			w.Write([]byte(`{"dtm_result":"SUCCESS"}`))
		}))
		t.Cleanup(host.Close)
		t.Cleanup(func() {
			select {
			case <-release:
			default:
				close(release)
			}
		})
		s := ordercore.Saga{GID: "slow-next", Kind: ordercore.SagaKindSaga, Policy: policy, Steps: []ordercore.SagaStep{
			{Name: "a", Action: ordercore.SagaCall{URL: host.URL + "/a"}},
			{Name: "b", Action: ordercore.SagaCall{URL: host.URL + "/b"}}}}
		res, err := r.eng.Submit(context.Background(), engine.SubmitSaga{Saga: s, Hold: saga.Hold(&s)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.coord.Start(res.Value.(ordercore.Saga))
		deadline := time.Now().Add(8 * time.Second)
		for {
			got, err := r.db.Saga(context.Background(), "slow-next")
			if err == nil && got.Steps[0].Status == ordercore.StepSucceeded {
				if !out.Load() || got.Steps[1].Status == ordercore.StepSucceeded {
					t.Fatalf("step a read succeeded, but step b's call is not out (%v, %s)", out.Load(), got.Steps[1].Status)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("step a's success not readable while step b's call is out (b called: %v)", out.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
		close(release)
		r.wait(t, "slow-next", ordercore.SagaCompleted)
		recs := recordsOf("slow-next")
		if len(recs) != 2 || len(recs[0].Earlier) != 0 || len(recs[1].Earlier) != 0 {
			t.Fatalf("%d records, want 2 alone: step a's success, then step b's", len(recs))
		}
	})
}

// TestOperatorCompensateWhileACallIsInFlight: an operator compensates a saga while its
// second step's action is out. That action succeeds after the compensate, and its
// outcome is dropped; it and the first step are compensated all the same, in reverse
// order, whether the first step's success was recorded already or still waited to be
// recorded with the second's outcome (pipelining). The same holds for a TCC's tries.
func TestOperatorCompensateWhileACallIsInFlight(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name        string
		kind        ordercore.SagaKind
		recordAlone time.Duration
		calls       []string
	}{
		{"first success recorded", ordercore.SagaKindSaga, 20 * time.Millisecond,
			[]string{"01/action", "02/action", "02/compensate", "01/compensate"}},
		{"first success not recorded yet", ordercore.SagaKindSaga, time.Hour,
			[]string{"01/action", "02/action", "02/compensate", "01/compensate"}},
		{"tcc", ordercore.SagaKindTCC, time.Hour,
			[]string{"01/try", "02/try", "02/cancel", "01/cancel"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, func(co *saga.Coordinator) { co.Defer = c.recordAlone })
			p := newParticipant(t)
			second := "02/action"
			if c.kind == ordercore.SagaKindTCC {
				second = "02/try"
			}
			p.script(second, "block", "ok")
			slow := fast
			slow.StepTimeout = 10 * time.Second
			gid := "opcomp-" + strings.ReplaceAll(c.name, " ", "-")
			r.submitWith(t, p, gid, c.kind, 2, slow)
			waitFor(t, "the second step's call", 5*time.Second, func() bool { return len(p.seen(gid)) == 2 })
			if c.recordAlone < time.Hour {
				waitFor(t, "the first step's success recorded", 5*time.Second, func() bool {
					s, err := r.db.Saga(context.Background(), gid)
					return err == nil && s.Steps[0].Status == ordercore.StepSucceeded
				})
			}
			_, err := r.eng.Submit(context.Background(), engine.SagaAction{GID: gid, Action: engine.SagaCompensate,
				By: "ops-ana", Note: "customer cancelled", Audited: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			close(p.gate) // the action in flight succeeds, after the compensate
			r.coord.Kick()
			s := r.wait(t, gid, ordercore.SagaCompensated)
			if got := p.seen(gid); !slices.Equal(got, c.calls) {
				t.Errorf("calls %v, want %v", got, c.calls)
			}
			for i, st := range s.Steps {
				if st.Status != ordercore.StepCompensated {
					t.Errorf("step %d is %s, want compensated", i, st.Status)
				}
			}
		})
	}
}

// TestSkippedStepCompensatedOnRollback: an operator skips a step that keeps answering 500
// (done by hand); when a later step fails for good, the skipped step is compensated too.
func TestSkippedStepCompensatedOnRollback(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := newParticipant(t)
	p.script("01/action", "503")
	p.script("02/action", "fail")
	patient := fast
	patient.RetriesMax, patient.BackoffMin, patient.BackoffMax = 10, time.Minute, time.Minute
	r.submitWith(t, p, "skip-1", ordercore.SagaKindSaga, 2, patient)
	waitFor(t, "the first attempt's backoff", 5*time.Second, func() bool {
		s, err := r.db.Saga(context.Background(), "skip-1")
		return err == nil && s.Steps[0].Attempts == 1
	})
	_, err := r.eng.Submit(context.Background(), engine.SagaAction{GID: "skip-1", Action: engine.SagaSkip,
		By: "ops-dave", Note: "did step 1 by hand", Audited: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.coord.Kick()
	r.wait(t, "skip-1", ordercore.SagaCompensated)
	if got, want := p.seen("skip-1"), []string{"01/action", "02/action", "02/compensate", "01/compensate"}; !slices.Equal(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
}

// TestDeadLetterAndOperatorRetry: a compensation that never succeeds puts the saga in
// dead_letter, visible to operators; their audited retry resumes it.
func TestDeadLetterAndOperatorRetry(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := newParticipant(t)
	p.script("01/action", "fail")
	p.script("01/compensate", "503")
	r.submit(t, p, "dead-1", ordercore.SagaKindSaga, 1)
	s := r.wait(t, "dead-1", ordercore.SagaDeadLetter)
	if s.DeadFrom != ordercore.SagaCompensating || s.Reason == "" {
		t.Fatalf("dead_letter from %q (%q)", s.DeadFrom, s.Reason)
	}
	p.script("01/compensate", "ok")
	res, err := r.eng.Submit(context.Background(), engine.SagaAction{GID: "dead-1", Action: engine.SagaRetry, By: "ops-ana", Note: "participant fixed", Audited: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Value.(engine.SagaActed); got.Status != ordercore.SagaCompensating {
		t.Fatalf("after retry: %s", got.Status)
	}
	r.coord.Kick()
	r.wait(t, "dead-1", ordercore.SagaCompensated)
	evs, err := r.db.AggregateEvents(context.Background(), "dead-1", 100)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(e ordercore.Event) bool { return e.Type == ordercore.EventSagaOperator }) {
		t.Error("the operator's retry is not in the saga's events")
	}
}

// TestBacklogClaimedAsSlotsFree: with a backlog (the last claim took all it asked for), a
// drive that ends with a quarter of the call slots free wakes the claim loop: the backlog
// drains at the pace of its calls, not a claim per poll (an hour here).
func TestBacklogClaimedAsSlotsFree(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *saga.Coordinator) { c.Poll = time.Hour })
	p := newParticipant(t)
	n := 2*limit.SagaCallsInFlightMax + 50 // three claims' worth
	// A minute's step timeout: a loaded machine's slow call is not a retry an hour away.
	policy := ordercore.SagaPolicy{StepTimeout: time.Minute, RetriesMax: 4, BackoffMin: 10 * time.Millisecond,
		BackoffMax: 40 * time.Millisecond, CompensateAttemptsMax: 5}
	var wg sync.WaitGroup
	const submitters = 16
	for w := range submitters {
		wg.Go(func() {
			for i := w; i < n; i += submitters {
				s := ordercore.Saga{GID: fmt.Sprint("backlog-", i), Kind: ordercore.SagaKindSaga, Policy: policy,
					Steps: []ordercore.SagaStep{{Name: "a", Action: ordercore.SagaCall{URL: p.srv.URL + "/act"}}}}
				// No hold: the saga is due now, for a claim to take.
				if _, err := r.eng.Submit(context.Background(), engine.SubmitSaga{Saga: s}, nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	r.coord.Kick()
	deadline := time.Now().Add(30 * time.Second)
	for {
		counts, err := r.db.SagaCounts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if counts[ordercore.SagaCompleted] == int64(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d due sagas completed with an hour between polls, want all", counts[ordercore.SagaCompleted], n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeadParticipantDoesNotStallOthers: sagas whose participant is down (connection
// refused, breaker opens) wait in backoff while sagas of a healthy participant complete.
func TestDeadParticipantDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	dead := newParticipant(t)
	dead.srv.Close()
	good := newParticipant(t)
	for i := range 20 {
		s := ordercore.Saga{GID: fmt.Sprint("dead-", i), Kind: ordercore.SagaKindSaga, Policy: ordercore.SagaPolicy{StepTimeout: time.Second,
			RetriesMax: 100, BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second, CompensateAttemptsMax: 10}}
		s.Steps = []ordercore.SagaStep{{Name: "a", Action: ordercore.SagaCall{URL: dead.srv.URL + "/act"}}}
		res, err := r.eng.Submit(context.Background(), engine.SubmitSaga{Saga: s, Hold: saga.Hold(&s)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.coord.Start(res.Value.(ordercore.Saga))
	}
	for i := range 50 {
		r.submit(t, good, fmt.Sprint("good-", i), ordercore.SagaKindSaga, 2)
	}
	for i := range 50 {
		r.wait(t, fmt.Sprint("good-", i), ordercore.SagaCompleted)
	}
	s, err := r.db.Saga(context.Background(), "dead-0")
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != ordercore.SagaRunning || s.Steps[0].Attempts == 0 {
		t.Fatalf("a saga of the dead participant is %s after %d attempts, want running in backoff", s.Status, s.Steps[0].Attempts)
	}
}

// TestOpenBreakerCallsWaitForTheHost: calls refused by a host's open breaker wait for it
// instead of failing: while the host is down only the breaker's probes reach it, no
// attempt is spent on "circuit open", and when it is back the probe's success releases
// every waiting saga at once, not after its backoff.
func TestOpenBreakerCallsWaitForTheHost(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var failed atomic.Int64 // calls the host answered 503: their sagas back off
	host, down := flakyHost(t, func() { failed.Add(1) })
	policy := ordercore.SagaPolicy{StepTimeout: 5 * time.Second, RetriesMax: 100, BackoffMin: 5 * time.Second,
		BackoffMax: 5 * time.Second, CompensateAttemptsMax: 10}
	const n = 20
	gid := func(i int) string { return fmt.Sprint("wait-", i) }
	start := func(i int) {
		s := ordercore.Saga{GID: gid(i), Kind: ordercore.SagaKindSaga, Policy: policy}
		s.Steps = []ordercore.SagaStep{{Name: "a", Action: ordercore.SagaCall{URL: host.URL + "/act"}}}
		res, err := r.eng.Submit(context.Background(), engine.SubmitSaga{Saga: s, Hold: saga.Hold(&s)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.coord.Start(res.Value.(ordercore.Saga))
	}
	// The first sagas' failures open the breaker; once they are recorded, no call of
	// theirs is in flight, and the others start against the open breaker.
	failures := int(limit.SagaBreakerFailures)
	for i := range failures {
		start(i)
	}
	waitFor(t, "the breaker's opening failures recorded", 10*time.Second, func() bool {
		for i := range failures {
			if s, err := r.db.Saga(context.Background(), gid(i)); err != nil || s.Steps[0].Attempts == 0 {
				return false
			}
		}
		return true
	})
	opened := time.Now()
	for i := failures; i < n; i++ {
		start(i)
	}
	// While the host stays down (well within limit.SagaBreakerWaitMax), only one probe
	// per limit.SagaBreakerOpenFor reaches it.
	time.Sleep(time.Second)
	down.Store(false)
	downFor := time.Since(opened)
	probes := int(failed.Load()) - failures
	if most := int(downFor/limit.SagaBreakerOpenFor) + 1; probes > most {
		t.Fatalf("%d calls reached the down host in the %s its breaker was open, want at most %d probes",
			probes, downFor.Round(time.Millisecond), most)
	}
	// A saga whose own call failed (an opening failure, or a probe) backs off for 5 s;
	// the others complete when the breaker's probe does.
	want := n - int(failed.Load())
	completed := 0
	waitFor(t, fmt.Sprintf("the %d sagas that waited for the breaker completed", want), 4*time.Second, func() bool {
		completed = 0
		for i := range n {
			if s, err := r.db.Saga(context.Background(), gid(i)); err == nil && s.Status == ordercore.SagaCompleted {
				completed++
			}
		}
		return completed >= want
	})
	for i := range n {
		evs, err := r.db.AggregateEvents(context.Background(), gid(i), 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			var st ordercore.SagaStepEvent
			if e.Type == ordercore.EventSagaStep && json.Unmarshal(e.Data, &st) == nil && strings.Contains(st.Error, "circuit open") {
				t.Fatalf("saga %s spent an attempt on the open breaker: %+v", gid(i), st)
			}
		}
	}
}

// waitFor polls done until it holds, failing the test after within.
func waitFor(t *testing.T, what string, within time.Duration, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRefusedSagasResumeWhenTheBreakerCloses: more sagas than may wait for a down host's
// open breaker are refused by it and back off (30 s here); when the host is back and its
// breaker closes, they are made due at once instead of waiting out their backoff. That
// holds while calls still wait for the breaker (one of them probes it), and after every
// call gave up waiting (the coordinator then wakes refused sagas one at a time to probe).
func TestRefusedSagasResumeWhenTheBreakerCloses(t *testing.T) {
	t.Parallel()
	for _, afterAllGaveUp := range []bool{false, true} {
		name := map[bool]string{false: "while calls wait for the breaker", true: "after every call gave up"}[afterAllGaveUp]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testRefusedSagasResume(t, afterAllGaveUp)
		})
	}
}

func testRefusedSagasResume(t *testing.T, afterAllGaveUp bool) {
	r := newRig(t)
	var failed atomic.Int64 // calls the host answered 503: their sagas back off
	host, down := flakyHost(t, func() { failed.Add(1) })
	policy := ordercore.SagaPolicy{StepTimeout: 10 * time.Second, RetriesMax: 100, BackoffMin: 30 * time.Second,
		BackoffMax: 30 * time.Second, CompensateAttemptsMax: 10}
	n := int(limit.SagaBreakerFailures) + limit.SagaCallsPerTargetMax + 30
	gid := func(i int) string { return fmt.Sprint("refused-", i) }
	start := func(i int) {
		s := ordercore.Saga{GID: gid(i), Kind: ordercore.SagaKindSaga, Policy: policy,
			Steps: []ordercore.SagaStep{{Name: "a", Action: ordercore.SagaCall{URL: host.URL + "/act"}}}}
		res, err := r.eng.Submit(context.Background(), engine.SubmitSaga{Saga: s, Hold: saga.Hold(&s)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.coord.Start(res.Value.(ordercore.Saga))
	}
	// The first sagas' failed calls open the breaker; the others find it open: as many as
	// may wait for it do, and the rest are refused and back off.
	const failures = int(limit.SagaBreakerFailures)
	for i := range failures {
		start(i)
	}
	refusedSteps := func() (refused int) {
		for i := range n {
			s, err := r.db.Saga(context.Background(), gid(i))
			if err == nil && strings.HasPrefix(s.Steps[0].LastError, "circuit open") {
				refused++
			}
		}
		return refused
	}
	waitFor(t, "the breaker's opening failures recorded", 10*time.Second, func() bool {
		for i := range failures {
			if s, err := r.db.Saga(context.Background(), gid(i)); err != nil || s.Steps[0].Attempts == 0 {
				return false
			}
		}
		return true
	})
	for i := failures; i < n; i++ {
		start(i)
	}
	refused := 0
	if afterAllGaveUp {
		// Every call waiting for the breaker gives up after limit.SagaBreakerWaitMax and its
		// saga backs off too; the coordinator's probes meanwhile fail (the host is down).
		waitFor(t, "every call refused or failed", limit.SagaBreakerWaitMax+10*time.Second, func() bool {
			refused = refusedSteps()
			return refused+int(failed.Load()) >= n
		})
	} else {
		waitFor(t, "sagas refused by the open breaker", 10*time.Second, func() bool {
			refused = refusedSteps()
			return refused >= n-failures-limit.SagaCallsPerTargetMax
		})
	}
	down.Store(false)
	back := time.Now()
	// Every saga but those whose own call failed completes long before a 30 s backoff
	// would have let it.
	completed := 0
	waitFor(t, fmt.Sprintf("the %d sagas the open breaker held or refused completed", n-int(failed.Load())), 10*time.Second, func() bool {
		completed = 0
		for i := range n {
			if s, err := r.db.Saga(context.Background(), gid(i)); err == nil && s.Status == ordercore.SagaCompleted {
				completed++
			}
		}
		return completed >= n-int(failed.Load())
	})
	t.Logf("%d sagas refused by the open breaker, %d calls failed; %d completed %s after the host came back",
		refused, failed.Load(), completed, time.Since(back).Round(time.Millisecond))
}

// TestClaimWhileItsDriveEnds: a saga claimed while this process is still ending its drive
// (the drive recorded a backoff that had passed by the claim, or lost its record to the
// claim) is driven on at once by that drive, not left to wait out the claim's hold.
func TestClaimWhileItsDriveEnds(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { calls.Add(1) }))
	defer srv.Close()
	v1 := ordercore.Saga{GID: "claimed-while-driven", Kind: ordercore.SagaKindSaga, Status: ordercore.SagaRunning, Version: 1,
		Policy: fast, Steps: []ordercore.SagaStep{{Name: "s0", Status: ordercore.StepPending, Action: ordercore.SagaCall{URL: srv.URL}}}}
	v2 := v1
	v2.Version = 2 // as the claim wrote it
	recording, claimed := make(chan struct{}), make(chan struct{})
	var claimOnce sync.Once
	second := make(chan saga.Recording, 1)
	c := &saga.Coordinator{Poll: time.Millisecond,
		Claim: func(context.Context, int, time.Duration) ([]ordercore.Saga, error) {
			select {
			case <-recording: // the first drive is recording its outcome: claim the saga now
			default:
				return nil, nil
			}
			var out []ordercore.Saga
			claimOnce.Do(func() { out = []ordercore.Saga{v2}; close(claimed) })
			return out, nil
		},
		Record: func(_ context.Context, r saga.Recording) (saga.Recorded, error) {
			if r.Version == 1 {
				close(recording)
				<-claimed
				return saga.Recorded{}, nil // the claim moved the saga on: not applied
			}
			second <- r
			done := v2
			done.Version, done.Status = 3, ordercore.SagaCompleted
			done.Steps = []ordercore.SagaStep{v2.Steps[0]}
			done.Steps[0].Status = ordercore.StepSucceeded
			return saga.Recorded{Saga: done, Applied: true}, nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	for !c.Running() {
		time.Sleep(time.Millisecond)
	}
	c.Start(v1)
	select {
	case r := <-second:
		if r.Outcome != saga.OutcomeOK || calls.Load() != 2 {
			t.Fatalf("the claimed saga was recorded %s after %d calls; want ok after 2", r.Outcome, calls.Load())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the saga claimed during its drive was not driven (%d calls)", calls.Load())
	}
}
