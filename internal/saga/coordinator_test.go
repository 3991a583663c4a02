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
}

func newParticipant(t *testing.T) *participant {
	p := &participant{plan: map[string][]string{}}
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
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
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

func newRig(t *testing.T) *rig {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(db, ordercore.SystemClock{}, engine.Config{})
	c := &saga.Coordinator{Claim: eng.ClaimSagasFor, Record: eng.RecordSaga, Poll: 20 * time.Millisecond}
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
	s := ordercore.Saga{GID: gid, Kind: kind, Policy: fast}
	for i := range n {
		st := ordercore.SagaStep{Name: fmt.Sprint("s", i), Action: ordercore.SagaCall{URL: p.srv.URL + "/act", Payload: []byte(`{"n":1}`)},
			Compensate: &ordercore.SagaCall{URL: p.srv.URL + "/undo"}}
		if kind == ordercore.SagaKindTCC {
			st.Confirm = &ordercore.SagaCall{URL: p.srv.URL + "/confirm"}
		}
		s.Steps = append(s.Steps, st)
	}
	res, err := r.eng.Submit(context.Background(), engine.SubmitSaga{Saga: s, Hold: saga.Hold(&ordercore.Saga{Policy: fast})}, nil)
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
	if got := res.Value.(ordercore.Saga); got.Status != ordercore.SagaCompensating {
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
// instead of failing: while the host is down no attempt is spent on "circuit open", and
// when it is back the probe's success releases every waiting saga at once, not after
// its backoff.
func TestOpenBreakerCallsWaitForTheHost(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var down atomic.Bool
	var refused atomic.Int64 // calls the host answered 503: their sagas back off
	down.Store(true)
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			refused.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"dtm_result":"SUCCESS"}`))
	}))
	t.Cleanup(host.Close)
	policy := ordercore.SagaPolicy{StepTimeout: 5 * time.Second, RetriesMax: 100, BackoffMin: 5 * time.Second,
		BackoffMax: 5 * time.Second, CompensateAttemptsMax: 10}
	const n = 20
	for i := range n {
		s := ordercore.Saga{GID: fmt.Sprint("wait-", i), Kind: ordercore.SagaKindSaga, Policy: policy}
		s.Steps = []ordercore.SagaStep{{Name: "a", Action: ordercore.SagaCall{URL: host.URL + "/act"}}}
		res, err := r.eng.Submit(context.Background(), engine.SubmitSaga{Saga: s, Hold: saga.Hold(&s)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.coord.Start(res.Value.(ordercore.Saga))
	}
	// The breaker opens after limit.SagaBreakerFailures failures; the calls already in
	// flight by then still reach the host (how many depends on the machine's load), and
	// after that none does until the probe, limit.SagaBreakerOpenFor after it opened.
	time.Sleep(150 * time.Millisecond)
	before := refused.Load()
	time.Sleep(150 * time.Millisecond)
	if after := refused.Load(); after != before || after >= n {
		t.Fatalf("calls reached the down host while its breaker was open (%d, then %d, of %d sagas); it opens after %d failures",
			before, after, n, limit.SagaBreakerFailures)
	}
	down.Store(false)
	// A saga whose own call failed (before the breaker opened) backs off for 5 s; the
	// others complete when the breaker's probe does.
	want := n - int(refused.Load())
	completed := 0
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) && completed < want {
		completed = 0
		for i := range n {
			if s, err := r.db.Saga(context.Background(), fmt.Sprint("wait-", i)); err == nil && s.Status == ordercore.SagaCompleted {
				completed++
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if completed < want {
		t.Fatalf("%d of %d sagas completed within 4 s of the host's return, want the %d whose calls the breaker refused", completed, n, want)
	}
	for i := range n {
		evs, err := r.db.AggregateEvents(context.Background(), fmt.Sprint("wait-", i), 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			var st ordercore.SagaStepEvent
			if e.Type == ordercore.EventSagaStep && json.Unmarshal(e.Data, &st) == nil && strings.Contains(st.Error, "circuit open") {
				t.Fatalf("saga wait-%d spent an attempt on the open breaker: %+v", i, st)
			}
		}
	}
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
