package events_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/events"
	"ordercore/internal/limit"
	"ordercore/sqlite"
	"ordercore/webhook"
)

type bundle struct {
	db  *sqlite.DB
	eng *engine.Engine
	d   *events.Deliverer
}

// setup runs a deliverer over a fresh SQLite store with a compressed retry schedule, until
// the test ends.
func setup(t *testing.T, timeout time.Duration, schedule ...time.Duration) *bundle {
	t.Helper()
	return setupPolicy(t, true, timeout, schedule...)
}

// setupPolicy is setup with the deliverer's address policy: allowPrivate false refuses
// loopback receivers when they are dialled (the engine still lets them be created).
func setupPolicy(t *testing.T, allowPrivate bool, timeout time.Duration, schedule ...time.Duration) *bundle {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The receivers are local: private targets are allowed, for the engine and the
	// deliverer alike (TestPrivateTargetsRefusedByDefault checks the default).
	eng := engine.New(db, ordercore.SystemClock{}, engine.Config{WebhookSchedule: schedule, WebhookAllowPrivate: true})
	d := &events.Deliverer{Engine: eng, Reader: db, Clock: ordercore.SystemClock{}, Poll: 20 * time.Millisecond, Timeout: timeout,
		AllowPrivate: allowPrivate}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done // Run returns only after its calls ended
		eng.Close()
		db.Close()
	})
	return &bundle{db: db, eng: eng, d: d}
}

func (b *bundle) submit(t *testing.T, cmd engine.Command) any {
	t.Helper()
	res, err := b.eng.Submit(context.Background(), cmd, nil)
	if err != nil {
		t.Fatalf("%T: %v", cmd, err)
	}
	return res.Value
}

func (b *bundle) endpoint(t *testing.T, url string, types ...string) ordercore.WebhookEndpoint {
	t.Helper()
	return b.submit(t, engine.CreateWebhookEndpoint{ID: ordercore.NewID(time.Now()), URL: url, EventTypes: types,
		Secret: ordercore.NewWebhookSecret()}).(ordercore.WebhookEndpoint)
}

func (b *bundle) sku(t *testing.T, id string) {
	t.Helper()
	b.submit(t, engine.CreateSKU{ID: id, Name: id, Price: ordercore.Money{Amount: 500, Currency: "EUR"}, Stock: 1000})
}

func (b *bundle) orders(t *testing.T, sku string, n int) {
	t.Helper()
	for range n {
		b.submit(t, engine.PlaceOrder{UserID: "u", Lines: []engine.LineRequest{{SKU: sku, Quantity: 1}}})
	}
}

func (b *bundle) deliveries(t *testing.T, endpointID string, status ordercore.WebhookStatus) []ordercore.WebhookDelivery {
	t.Helper()
	ds, err := b.db.ListWebhookDeliveries(context.Background(), endpointID, status, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// receiver is an endpoint's HTTP server: it checks every request's signature with the
// public webhook package and answers what answer says for the n-th request of an event.
type receiver struct {
	srv    *httptest.Server
	secret string
	answer func(eventID string, n int) int
	mu     sync.Mutex
	got    map[string][]time.Time // event id -> arrival times
	bodies map[string]ordercore.CloudEvent
	bad    []string
}

func newReceiver(t *testing.T, answer func(eventID string, n int) int) *receiver {
	r := &receiver{answer: answer, got: map[string][]time.Time{}, bodies: map[string]ordercore.CloudEvent{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := webhook.Verify(r.secret, req.Header.Get(webhook.HeaderSignature), body, webhook.DefaultTolerance, time.Now()); err != nil {
		r.bad = append(r.bad, "signature: "+err.Error())
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ce ordercore.CloudEvent
	if err := json.Unmarshal(body, &ce); err != nil || ce.SpecVersion != "1.0" || ce.ID != req.Header.Get(webhook.HeaderEventID) ||
		req.Header.Get(webhook.HeaderDeliveryID) == "" || req.Header.Get("Content-Type") != "application/json" {
		r.bad = append(r.bad, "request: "+string(body))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.got[ce.ID] = append(r.got[ce.ID], time.Now())
	r.bodies[ce.ID] = ce
	w.WriteHeader(r.answer(ce.ID, len(r.got[ce.ID])))
}

func (r *receiver) arrivals(id string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.got[id]...)
}

func (r *receiver) problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

func always(status int) func(string, int) int { return func(string, int) int { return status } }

// TestDeliversSignedEvents: every event an endpoint selects after its creation arrives as
// its CloudEvent, signed so that webhook.Verify accepts it, once; events before the
// endpoint existed and events it does not select do not arrive.
func TestDeliversSignedEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, 2*time.Second, 0, 100*time.Millisecond)
	rc := newReceiver(t, always(http.StatusNoContent))
	b.sku(t, "before") // before the endpoint: not delivered
	ep := b.endpoint(t, rc.srv.URL+"/hooks?src=ordercore", "order.*")
	rc.mu.Lock()
	rc.secret = ep.Secret
	rc.mu.Unlock()
	b.sku(t, "a") // sku.created: not selected
	b.orders(t, "a", 5)
	waitFor(t, 10*time.Second, "five orders delivered", func() bool { return len(b.deliveries(t, ep.ID, ordercore.WebhookDelivered)) == 5 })
	if p := rc.problems(); len(p) > 0 {
		t.Fatalf("the receiver refused requests: %v", p)
	}
	for _, d := range b.deliveries(t, ep.ID, "") {
		if d.Status != ordercore.WebhookDelivered || d.Attempts != 1 || d.LastStatus != http.StatusNoContent || d.DeliveredAt.IsZero() {
			t.Errorf("delivery %+v", d)
		}
		if got := rc.arrivals(d.EventID); len(got) != 1 {
			t.Errorf("event %s arrived %d times", d.EventID, len(got))
		}
		rc.mu.Lock()
		ce := rc.bodies[d.EventID]
		rc.mu.Unlock()
		if ce.Type != "ordercore."+ordercore.EventOrderPlaced || ce.Sequence != d.EventSeq || len(ce.Data) == 0 {
			t.Errorf("CloudEvent %+v for delivery %+v", ce, d)
		}
	}
	time.Sleep(100 * time.Millisecond) // a few more passes: nothing else comes
	rc.mu.Lock()
	n := len(rc.got)
	rc.mu.Unlock()
	if n != 5 {
		t.Errorf("the receiver got %d events, want the 5 orders only", n)
	}
}

// TestRetriesOnTheScheduleThenDelivers: a receiver that fails twice gets the event a
// third time, each retry after the schedule's wait.
func TestRetriesOnTheScheduleThenDelivers(t *testing.T) {
	t.Parallel()
	step := 300 * time.Millisecond
	b := setup(t, 2*time.Second, 0, step, step, step, step)
	rc := newReceiver(t, func(_ string, n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	ep := b.endpoint(t, rc.srv.URL, "sku.created")
	rc.mu.Lock()
	rc.secret = ep.Secret
	rc.mu.Unlock()
	b.sku(t, "a")
	waitFor(t, 10*time.Second, "delivered on the third attempt", func() bool { return len(b.deliveries(t, ep.ID, ordercore.WebhookDelivered)) == 1 })
	d := b.deliveries(t, ep.ID, "")[0]
	if d.Attempts != 3 || d.LastStatus != http.StatusOK || d.LastError != "" {
		t.Errorf("delivery %+v, want 3 attempts, the last a 200", d)
	}
	at := rc.arrivals(d.EventID)
	if len(at) != 3 {
		t.Fatalf("arrivals %v, want 3", at)
	}
	for i := 1; i < len(at); i++ {
		// The schedule's wait, less its jitter (10%), at least.
		if gap := at[i].Sub(at[i-1]); gap < step*9/10 {
			t.Errorf("retry %d came %s after the previous attempt, want >= %s", i, gap, step*9/10)
		}
	}
}

// TestDeadLetterThenRedelivery: a receiver that always fails gets every attempt of the
// schedule; the delivery is then dead, in its endpoint's dead-letter list, and sent no
// more; redelivered by an operator once the receiver is fixed, it is delivered.
func TestDeadLetterThenRedelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, 2*time.Second, 0, 50*time.Millisecond, 50*time.Millisecond)
	var mu sync.Mutex
	fixed := false
	rc := newReceiver(t, func(string, int) int {
		mu.Lock()
		defer mu.Unlock()
		if fixed {
			return http.StatusAccepted
		}
		return http.StatusInternalServerError
	})
	ep := b.endpoint(t, rc.srv.URL, "*")
	rc.mu.Lock()
	rc.secret = ep.Secret
	rc.mu.Unlock()
	b.sku(t, "a")
	waitFor(t, 10*time.Second, "dead", func() bool { return len(b.deliveries(t, ep.ID, ordercore.WebhookDead)) == 1 })
	dead := b.deliveries(t, ep.ID, ordercore.WebhookDead)[0]
	if dead.Attempts != 3 || dead.LastStatus != http.StatusInternalServerError || dead.LastError == "" {
		t.Errorf("dead delivery %+v, want 3 attempts and the last error", dead)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(rc.arrivals(dead.EventID)); n != 3 {
		t.Errorf("the receiver got the event %d times, want 3 (none after it died)", n)
	}

	mu.Lock()
	fixed = true
	mu.Unlock()
	b.submit(t, engine.RedeliverWebhook{DeliveryID: dead.ID, By: "ops", Note: "receiver fixed"})
	waitFor(t, 10*time.Second, "redelivered", func() bool { return len(b.deliveries(t, ep.ID, ordercore.WebhookDelivered)) == 1 })
	if n := len(rc.arrivals(dead.EventID)); n != 4 {
		t.Errorf("the receiver got the event %d times, want 4", n)
	}
	if got := b.deliveries(t, ep.ID, ordercore.WebhookDead); len(got) != 0 {
		t.Errorf("dead-letter list after redelivery: %v", got)
	}
}

// TestDeadHostDoesNotStallOthers: an endpoint whose host takes connections and never
// answers holds at most its own call slots; every delivery to a healthy endpoint arrives
// before the first call to the dead one even times out.
func TestDeadHostDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	timeout := 5 * time.Second
	b := setup(t, timeout, 0, time.Hour)
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); hang.Close() })
	healthy := newReceiver(t, always(http.StatusOK))
	dead := b.endpoint(t, hang.URL, "order.*")
	ok := b.endpoint(t, healthy.srv.URL, "order.*")
	healthy.mu.Lock()
	healthy.secret = ok.Secret
	healthy.mu.Unlock()
	b.sku(t, "a")
	started := time.Now()
	b.orders(t, "a", 40)
	waitFor(t, timeout, "the healthy endpoint's 40 deliveries", func() bool { return len(b.deliveries(t, ok.ID, ordercore.WebhookDelivered)) == 40 })
	took := time.Since(started)
	attempted := 0
	for _, d := range b.deliveries(t, dead.ID, "") {
		attempted += d.Attempts
	}
	if attempted != 0 || took >= timeout {
		t.Errorf("healthy deliveries took %s; the dead endpoint had %d attempts recorded meanwhile, want none (its calls are still hanging)", took, attempted)
	}
	if p := healthy.problems(); len(p) > 0 {
		t.Errorf("the healthy receiver refused requests: %v", p)
	}
	// Its calls time out, the breaker opens, and the rest are put off at once until after
	// its probe, without using up an attempt: every delivery to the dead host is settled
	// within about two timeouts, one way or the other.
	waitFor(t, 3*timeout, "every dead-host delivery attempted or put off", func() bool {
		for _, d := range b.deliveries(t, dead.ID, "") {
			if d.Attempts == 0 && d.LastError == "" {
				return false
			}
		}
		return true
	})
	putOff := 0
	for _, d := range b.deliveries(t, dead.ID, "") {
		switch {
		case d.Status != ordercore.WebhookPending:
			t.Errorf("dead-host delivery %+v, want pending", d)
		case d.Attempts == 1:
			if d.NextAttemptAt.Before(time.Now().Add(50 * time.Minute)) {
				t.Errorf("attempted dead-host delivery %+v, want the next attempt in about an hour", d)
			}
		case d.Attempts == 0 && strings.HasPrefix(d.LastError, "circuit open"):
			putOff++
			if wait := time.Until(d.NextAttemptAt); wait < 10*time.Second || wait > 32*time.Second {
				t.Errorf("put-off dead-host delivery %+v, due in %s, want after the breaker's probe (at most 30s away)", d, wait)
			}
		default:
			t.Errorf("dead-host delivery %+v, want one attempt, or none and put off by the breaker", d)
		}
	}
	if putOff == 0 {
		t.Error("no dead-host delivery was put off by the open breaker")
	}
}

// sharedHost serves an endpoint that always answers 500 at /always500 and a checking
// receiver at /good, on one host:port.
func sharedHost(t *testing.T) (*httptest.Server, *receiver) {
	rc := &receiver{answer: always(http.StatusOK), got: map[string][]time.Time{}, bodies: map[string]ordercore.CloudEvent{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/always500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "broken", http.StatusInternalServerError) })
	mux.HandleFunc("/good", rc.serve)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	rc.srv = srv
	return srv, rc
}

// TestFailingEndpointDoesNotShutOutItsHost: an endpoint that answers 500 to everything
// fails on its own schedule, every attempt a call; a healthy endpoint on the same
// host:port gets every delivery, because answers, 5xx included, never open the host's
// breaker.
func TestFailingEndpointDoesNotShutOutItsHost(t *testing.T) {
	t.Parallel()
	b := setup(t, 2*time.Second, 0, 50*time.Millisecond, 50*time.Millisecond)
	srv, rc := sharedHost(t)
	bad := b.endpoint(t, srv.URL+"/always500", "order.*")
	b.sku(t, "a")
	b.orders(t, "a", 8)
	waitFor(t, 10*time.Second, "the failing endpoint's 8 deliveries dead", func() bool { return len(b.deliveries(t, bad.ID, ordercore.WebhookDead)) == 8 })
	good := b.endpoint(t, srv.URL+"/good", "order.*")
	rc.mu.Lock()
	rc.secret = good.Secret
	rc.mu.Unlock()
	b.orders(t, "a", 5)
	waitFor(t, 10*time.Second, "the healthy endpoint's 5 deliveries", func() bool { return len(b.deliveries(t, good.ID, ordercore.WebhookDelivered)) == 5 })
	waitFor(t, 10*time.Second, "the failing endpoint's 13 deliveries dead", func() bool { return len(b.deliveries(t, bad.ID, ordercore.WebhookDead)) == 13 })
	for _, d := range b.deliveries(t, good.ID, "") {
		if d.Attempts != 1 {
			t.Errorf("healthy delivery %+v, want delivered at the first attempt", d)
		}
	}
	for _, d := range b.deliveries(t, bad.ID, "") {
		if d.Attempts != 3 || d.LastStatus != http.StatusInternalServerError {
			t.Errorf("failing delivery %+v, want three attempts, each a call answered 500", d)
		}
	}
	if p := rc.problems(); len(p) > 0 {
		t.Errorf("the healthy receiver refused requests: %v", p)
	}
}

// TestOpenBreakerDoesNotUseUpRetries: once calls to a host that refuses connections have
// opened its breaker, later deliveries to it are not called and not counted as attempts:
// they stay pending, put off until after the breaker's probe, their schedule intact.
func TestOpenBreakerDoesNotUseUpRetries(t *testing.T) {
	t.Parallel()
	b := setup(t, 2*time.Second, 0, time.Hour)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every call is refused
	ep := b.endpoint(t, "http://"+addr+"/in", "order.*")
	b.sku(t, "a")
	b.orders(t, "a", 5)
	waitFor(t, 10*time.Second, "5 refused attempts", func() bool {
		n := 0
		for _, d := range b.deliveries(t, ep.ID, "") {
			n += d.Attempts
		}
		return n == 5
	})
	b.orders(t, "a", 3)
	waitFor(t, 10*time.Second, "8 deliveries settled", func() bool {
		settled := 0
		for _, d := range b.deliveries(t, ep.ID, "") {
			if d.LastError != "" {
				settled++
			}
		}
		return settled == 8
	})
	putOff := 0
	for _, d := range b.deliveries(t, ep.ID, "") {
		if !strings.HasPrefix(d.LastError, "circuit open") {
			continue
		}
		putOff++
		if d.Attempts != 0 || d.Status != ordercore.WebhookPending || time.Until(d.NextAttemptAt) < 20*time.Second {
			t.Errorf("delivery put off by the breaker %+v, want pending, no attempt, due after the probe (~30s)", d)
		}
	}
	if putOff != 3 {
		t.Errorf("%d deliveries put off by the open breaker, want the 3 made after it opened", putOff)
	}
}

// TestSlowEndpointDoesNotStarveOthers: an endpoint that answers 2xx, but slowly, holds at
// most its host's call slots, and a backlog of its deliveries, all due earlier and more
// than one pass reads, does not keep another endpoint's delivery from going out at once.
func TestSlowEndpointDoesNotStarveOthers(t *testing.T) {
	t.Parallel()
	b := setup(t, 5*time.Second, 0, time.Hour)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	fast := newReceiver(t, always(http.StatusOK))
	busy := b.endpoint(t, slow.URL, "order.placed")
	ok := b.endpoint(t, fast.srv.URL, "sku.restocked")
	fast.mu.Lock()
	fast.secret = ok.Secret
	fast.mu.Unlock()
	b.sku(t, "a")
	first := time.Now() // no delivery of the slow endpoint can start before this
	b.orders(t, "a", 400)
	waitFor(t, 10*time.Second, "the slow endpoint's 400 deliveries scheduled", func() bool { return len(b.deliveries(t, busy.ID, "")) == 400 })
	b.submit(t, engine.Restock{SKU: "a", Quantity: 1})
	started := time.Now()
	waitFor(t, 3*time.Second, "the fast endpoint's delivery while the slow one has a backlog", func() bool {
		return len(b.deliveries(t, ok.ID, ordercore.WebhookDelivered)) == 1
	})
	t.Logf("delivered %s after the restock", time.Since(started))
	// The slow endpoint answers one call a second on each of its host's slots: however
	// slow this machine was to place the orders, it cannot have sent more than that since
	// the first one, and its backlog was still there when the fast delivery went out.
	sent := limit.WebhookCallsPerHostMax * (int(time.Since(first)/time.Second) + 1)
	if n := len(b.deliveries(t, busy.ID, ordercore.WebhookPending)); n < 400-sent || n == 0 {
		t.Errorf("the slow endpoint has %d deliveries pending, want its backlog still there (at least %d, and some)", n, 400-sent)
	}
	if p := fast.problems(); len(p) > 0 {
		t.Errorf("the fast receiver refused requests: %v", p)
	}
}

// TestPrivateTargetsRefusedByDefault: by default the deliverer dials no loopback address,
// whether the URL names it or a name resolves to it: each delivery fails without a byte
// sent, its error saying why, and the receiver gets nothing.
func TestPrivateTargetsRefusedByDefault(t *testing.T) {
	t.Parallel()
	b := setupPolicy(t, false, 2*time.Second, 0, time.Hour)
	rc := newReceiver(t, always(http.StatusOK))
	_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
	literal := b.endpoint(t, rc.srv.URL+"/in", "sku.*")
	named := b.endpoint(t, "http://localhost:"+port+"/in", "sku.*")
	b.sku(t, "a")
	for _, ep := range []ordercore.WebhookEndpoint{literal, named} {
		waitFor(t, 10*time.Second, "the delivery to "+ep.URL+" attempted", func() bool {
			ds := b.deliveries(t, ep.ID, "")
			return len(ds) == 1 && ds[0].Attempts == 1
		})
		d := b.deliveries(t, ep.ID, "")[0]
		if d.LastStatus != 0 || !strings.HasPrefix(d.LastError, "address not allowed: ") || !strings.Contains(d.LastError, "is loopback") {
			t.Errorf("delivery to %s: %+v, want refused by the address policy", ep.URL, d)
		}
	}
	rc.mu.Lock()
	n := len(rc.got) + len(rc.bad)
	rc.mu.Unlock()
	if n != 0 {
		t.Errorf("the loopback receiver got %d requests, want none", n)
	}
}

// TestDeletedEndpointGetsNothingMore: once an endpoint is deleted, none of its pending
// deliveries and nothing after is sent to it, and the deliverer goes on for the others.
func TestDeletedEndpointGetsNothingMore(t *testing.T) {
	t.Parallel()
	b := setup(t, 2*time.Second, 0, 300*time.Millisecond)
	failing := newReceiver(t, always(http.StatusServiceUnavailable))
	healthy := newReceiver(t, always(http.StatusOK))
	gone := b.endpoint(t, failing.srv.URL, "order.*")
	ok := b.endpoint(t, healthy.srv.URL, "order.*")
	for rc, ep := range map[*receiver]ordercore.WebhookEndpoint{failing: gone, healthy: ok} {
		rc.mu.Lock()
		rc.secret = ep.Secret
		rc.mu.Unlock()
	}
	b.sku(t, "a")
	b.orders(t, "a", 3)
	waitFor(t, 10*time.Second, "the first attempts", func() bool {
		return len(b.deliveries(t, ok.ID, ordercore.WebhookDelivered)) == 3 && len(failing.arrivalsAll()) == 3
	})
	b.submit(t, engine.DeleteWebhookEndpoint{ID: gone.ID})
	b.orders(t, "a", 2)
	waitFor(t, 10*time.Second, "the healthy endpoint's later deliveries", func() bool { return len(b.deliveries(t, ok.ID, ordercore.WebhookDelivered)) == 5 })
	time.Sleep(500 * time.Millisecond) // past the deleted endpoint's retry step
	if n := len(failing.arrivalsAll()); n != 3 {
		t.Errorf("the deleted endpoint got %d requests, want its 3 first attempts only", n)
	}
}

func (r *receiver) arrivalsAll() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Time
	for _, at := range r.got {
		out = append(out, at...)
	}
	return out
}
