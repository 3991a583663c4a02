package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/guard"
	"ordercore/internal/limit"
	"ordercore/webhook"
)

// Deliverer sends events to webhook endpoints. It runs two loops:
//
//   - scheduling: for each enabled endpoint it reads the feed after the endpoint's cursor
//     and submits ScheduleWebhooks, which records a delivery per matching event and moves
//     the cursor in one transaction. Endpoints share one read of the feed from the lowest
//     cursor, so in the steady state a pass is one read however many endpoints there are.
//   - delivery: it reads due deliveries endpoint by endpoint, each at most what its host
//     has call slots for (so one endpoint's backlog never hides another's), claims those
//     it can send now through the committer (ClaimWebhooks: a claimed delivery is not due
//     again until the claim ends, so a second pass or a second instance never sends it
//     meanwhile), POSTs each signed
//     event (at most limit.WebhookCallsInFlightMax at once, limit.WebhookCallsPerHostMax to
//     one host, a breaker per host) and records the outcome (WebhookAttempted), guarded by
//     the claim's version.
//
// A host that hangs holds at most its own slots, and once its breaker opens (after
// limit.WebhookBreakerFailures calls in a row got no answer; an HTTP answer, a 5xx too,
// is the endpoint's failure, not the host's) its deliveries are put off at once until
// after the breaker's probe, without using up their retry schedule, instead of waiting
// for timeouts, so deliveries to other hosts go on.
type Deliverer struct {
	Engine *engine.Engine
	Reader ordercore.Reader
	Clock  ordercore.Clock
	// Client sends the POSTs; nil builds one that follows no redirect (a 3xx is a failed
	// attempt: a signed event is never forwarded to a host the endpoint does not name),
	// uses no proxy, and dials only addresses engine.WebhookAddrRefused allows, checked on
	// the address actually dialled, after resolution, so a name that resolves (or is
	// rebound) to an internal address is refused too.
	Client *http.Client
	// AllowPrivate lets the built Client dial loopback and private addresses (serve
	// --webhook-allow-private), for receivers on the premises and for tests.
	AllowPrivate bool
	Logger       *slog.Logger
	// Poll is the longest wait between passes (limit.WebhookPollInterval); Timeout bounds
	// one POST (limit.WebhookTimeout). Tests shorten both.
	Poll    time.Duration
	Timeout time.Duration

	once     sync.Once
	sem      chan struct{} // global call slots
	freed    chan struct{} // a call ended: a slot may be free
	breakers *guard.Breakers
	mu       sync.Mutex
	hosts    map[string]int // calls in flight per host
	turn     int            // rotates the order in which endpoints are read and picked
	wg       sync.WaitGroup
}

func (d *Deliverer) init() {
	d.once.Do(func() {
		d.sem = make(chan struct{}, limit.WebhookCallsInFlightMax)
		d.freed = make(chan struct{}, 1)
		d.breakers = &guard.Breakers{Failures: limit.WebhookBreakerFailures, OpenFor: limit.WebhookBreakerOpenFor, Max: 4096}
		d.hosts = map[string]int{}
		if d.Logger == nil {
			d.Logger = slog.New(slog.DiscardHandler)
		}
		if d.Poll <= 0 {
			d.Poll = limit.WebhookPollInterval
		}
		if d.Timeout <= 0 {
			d.Timeout = limit.WebhookTimeout
		}
		if d.Client == nil {
			dialer := &net.Dialer{Timeout: d.Timeout, KeepAlive: 30 * time.Second, Control: d.checkDial}
			d.Client = &http.Client{
				// No proxy: a proxy would resolve and dial the target itself, out of reach of
				// the address check.
				Transport: &http.Transport{Proxy: nil,
					DialContext:         dialer.DialContext,
					MaxIdleConnsPerHost: limit.WebhookCallsPerHostMax, IdleConnTimeout: 90 * time.Second,
					TLSHandshakeTimeout: d.Timeout, ResponseHeaderTimeout: d.Timeout},
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}
		}
	})
}

// Run schedules and delivers until ctx ends, then waits for the calls in flight (each
// ends by its timeout at the latest).
func (d *Deliverer) Run(ctx context.Context) {
	d.init()
	var loops sync.WaitGroup
	loops.Go(func() { d.loop(ctx, "webhook scheduling", d.Schedule, nil) })
	loops.Go(func() { d.loop(ctx, "webhook delivery", d.Deliver, d.freed) })
	loops.Wait()
	d.wg.Wait()
}

// loop runs pass until ctx ends: again at once while it reports more work, else after
// Poll or when wake fires.
func (d *Deliverer) loop(ctx context.Context, what string, pass func(context.Context) (bool, error), wake <-chan struct{}) {
	for ctx.Err() == nil {
		more, err := pass(ctx)
		if err != nil && ctx.Err() == nil {
			d.Logger.Warn(what+" failed", "err", err)
		}
		if more && err == nil {
			continue
		}
		t := time.NewTimer(d.Poll)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-wake:
		}
		t.Stop()
	}
}

// Schedule runs one scheduling pass and reports whether the feed has more to read.
func (d *Deliverer) Schedule(ctx context.Context) (bool, error) {
	d.init()
	endpoints, err := d.enabledEndpoints(ctx)
	if err != nil || len(endpoints) == 0 {
		return false, err
	}
	for range limit.WebhookScheduleRoundsMax {
		from := endpoints[0].Cursor
		for _, e := range endpoints {
			from = min(from, e.Cursor)
		}
		page, err := d.Reader.Events(ctx, from, limit.WebhookSchedulePageMax)
		if err != nil || len(page) == 0 {
			return false, err
		}
		if err := d.schedulePage(ctx, endpoints, page); err != nil {
			return false, err
		}
		if len(page) < limit.WebhookSchedulePageMax {
			return false, nil
		}
	}
	return true, nil
}

// enabledEndpoints lists the enabled endpoints, each positioned: an endpoint not scheduled
// yet starts at its own creation event (it gets what happens after it was created).
func (d *Deliverer) enabledEndpoints(ctx context.Context) ([]*ordercore.WebhookEndpoint, error) {
	out, err := d.readEnabled(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range out {
		if e.Cursor == 0 {
			if err := d.position(ctx, e); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// readEnabled reads every enabled endpoint, page by page, in id order.
func (d *Deliverer) readEnabled(ctx context.Context) ([]*ordercore.WebhookEndpoint, error) {
	var out []*ordercore.WebhookEndpoint
	after := ""
	for {
		page, err := d.Reader.ListWebhookEndpoints(ctx, after, limit.PageSizeMax)
		if err != nil {
			return nil, err
		}
		for i := range page {
			if page[i].Enabled {
				out = append(out, &page[i])
			}
		}
		if len(page) < limit.PageSizeMax {
			return out, nil
		}
		after = page[len(page)-1].ID
	}
}

func (d *Deliverer) position(ctx context.Context, e *ordercore.WebhookEndpoint) error {
	evs, err := d.Reader.AggregateEvents(ctx, e.ID, 1)
	if err != nil {
		return err
	}
	if len(evs) == 0 || evs[0].Type != ordercore.EventWebhookCreated {
		return fmt.Errorf("webhook endpoint %s has no %s event to start after", e.ID, ordercore.EventWebhookCreated)
	}
	res, err := d.Engine.Submit(ctx, engine.ScheduleWebhooks{EndpointID: e.ID, Through: evs[0].Seq}, nil)
	if err != nil {
		return fmt.Errorf("position webhook endpoint %s: %w", e.ID, err)
	}
	e.Cursor = res.Value.(engine.ScheduledWebhooks).Cursor
	return nil
}

// schedulePage submits, for every endpoint behind the page's end, the page's events after
// its cursor; the commands are submitted at once, so they share a transaction.
func (d *Deliverer) schedulePage(ctx context.Context, endpoints []*ordercore.WebhookEndpoint, page []ordercore.Event) error {
	through := page[len(page)-1].Seq
	// The commands need no event data; leaving it out keeps a batch's memory small.
	light := make([]ordercore.Event, len(page))
	for i, ev := range page {
		light[i] = ordercore.Event{Seq: ev.Seq, ID: ev.ID, Type: ev.Type, AggregateType: ev.AggregateType}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(endpoints))
	for i, e := range endpoints {
		if e.Cursor >= through {
			continue
		}
		first := 0
		for first < len(light) && light[first].Seq <= e.Cursor {
			first++
		}
		wg.Go(func() {
			res, err := d.Engine.Submit(ctx, engine.ScheduleWebhooks{EndpointID: e.ID, After: e.Cursor, Through: through, Events: light[first:]}, nil)
			if ordercore.ErrorCode(err) == ordercore.ENOTFOUND {
				return // deleted since it was listed
			}
			if err != nil {
				errs[i] = fmt.Errorf("schedule webhooks of %s: %w", e.ID, err)
				return
			}
			e.Cursor = res.Value.(engine.ScheduledWebhooks).Cursor
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// target is a delivery about to be sent.
type target struct {
	delivery ordercore.WebhookDelivery
	endpoint *ordercore.WebhookEndpoint
	host     string
}

// Deliver runs one delivery pass: it reads the due deliveries of every enabled endpoint
// whose host has a free call slot (each endpoint at most as many as its host and this
// instance have slots for), picks among them endpoint by endpoint in turn, claims those
// and starts their POSTs. An endpoint's backlog, however large and however early, is never
// read past its host's slots, so it cannot keep another endpoint's deliveries from being
// read or sent. It reports whether more may be due at once than it took.
func (d *Deliverer) Deliver(ctx context.Context) (bool, error) {
	d.init()
	free := cap(d.sem) - len(d.sem)
	if free == 0 {
		return false, nil // a finishing call wakes the loop
	}
	endpoints, err := d.deliveringEndpoints(ctx)
	if err != nil || len(endpoints) == 0 {
		return false, err
	}
	want := d.wants(endpoints, free)
	if len(want) == 0 {
		return false, nil // every host is at its limit: a finishing call wakes the loop
	}
	due, err := d.Reader.DueWebhookDeliveries(ctx, d.Clock.Now(), want)
	if err != nil || len(due) == 0 {
		return false, err
	}
	picked, more := d.pick(due, want, endpoints, free)
	if len(picked) == 0 {
		return false, nil
	}
	read := make([]ordercore.WebhookDelivery, len(picked))
	for i, t := range picked {
		read[i] = t.delivery
	}
	res, err := d.Engine.Submit(ctx, engine.ClaimWebhooks{Due: read, For: d.Timeout + limit.WebhookClaimMargin}, nil)
	if err != nil {
		d.release(picked)
		return false, fmt.Errorf("claim webhook deliveries: %w", err)
	}
	claimed := map[string]ordercore.WebhookDelivery{}
	for _, c := range res.Value.([]ordercore.WebhookDelivery) {
		claimed[c.ID] = c
	}
	for _, t := range picked {
		c, ok := claimed[t.delivery.ID]
		if !ok {
			d.release([]target{t}) // moved on since it was read
			continue
		}
		t.delivery = c
		d.wg.Go(func() { d.attempt(ctx, t) })
	}
	return more, nil
}

// deliveringEndpoints reads the enabled endpoints, by id.
func (d *Deliverer) deliveringEndpoints(ctx context.Context) (map[string]*ordercore.WebhookEndpoint, error) {
	es, err := d.readEnabled(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*ordercore.WebhookEndpoint, len(es))
	for _, e := range es {
		out[e.ID] = e
	}
	return out, nil
}

// wants says how many due deliveries to read of each endpoint: as many as its host has
// call slots left, at most free; none for an endpoint whose host is at its limit. A host
// whose breaker is open takes no real slot (its deliveries are put off without a call),
// so it is not held back. The endpoints come in an order that turns from pass to pass, so
// that when slots are short each endpoint gets its turn first.
func (d *Deliverer) wants(endpoints map[string]*ordercore.WebhookEndpoint, free int) []ordercore.WebhookDue {
	ids := make([]string, 0, len(endpoints))
	for id := range endpoints {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.turn++
	first := d.turn % len(ids)
	ids = append(ids[first:], ids[:first]...)
	var out []ordercore.WebhookDue
	for _, id := range ids {
		host := hostOf(endpoints[id].URL)
		room := limit.WebhookCallsPerHostMax - d.hosts[host]
		if d.breakers.Open(host) {
			room = free
		}
		if n := min(room, free); n > 0 {
			out = append(out, ordercore.WebhookDue{EndpointID: id, Max: n})
		}
	}
	return out
}

// pick chooses up to free of the due deliveries, one endpoint's at a time in the order
// of want, round and round, skipping an endpoint once its host is at its slot limit, and
// reserves the slots: a host whose calls hang keeps at most limit.WebhookCallsPerHostMax,
// and the other hosts and endpoints get theirs. more reports that an endpoint had all it
// was read for picked, so it may have more due now.
func (d *Deliverer) pick(due []ordercore.WebhookDelivery, want []ordercore.WebhookDue, endpoints map[string]*ordercore.WebhookEndpoint, free int) (out []target, more bool) {
	byEndpoint, read := map[string][]ordercore.WebhookDelivery{}, map[string]int{}
	for _, dl := range due {
		byEndpoint[dl.EndpointID] = append(byEndpoint[dl.EndpointID], dl)
		read[dl.EndpointID]++
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for taken := true; taken && len(out) < free; {
		taken = false
		for _, w := range want {
			queue := byEndpoint[w.EndpointID]
			if len(out) == free || len(queue) == 0 {
				continue
			}
			e := endpoints[w.EndpointID]
			host := hostOf(e.URL)
			if d.hosts[host] >= limit.WebhookCallsPerHostMax && !d.breakers.Open(host) {
				delete(byEndpoint, w.EndpointID)
				continue
			}
			d.hosts[host]++
			d.sem <- struct{}{} // never blocks: free slots were counted, and only this loop takes them
			out = append(out, target{delivery: queue[0], endpoint: e, host: host})
			byEndpoint[w.EndpointID], taken = queue[1:], true
			if len(queue) == 1 && read[w.EndpointID] == w.Max {
				more = true
			}
		}
	}
	return out, more
}

// refusedAddr is a dial the address policy stopped: nothing was sent.
type refusedAddr struct {
	addr netip.Addr
	why  string
}

func (e *refusedAddr) Error() string {
	hint := ""
	if e.why == "loopback" || e.why == "private" {
		hint = " (serve --webhook-allow-private allows private and loopback receivers)"
	}
	return fmt.Sprintf("address not allowed: %s is %s; webhooks go only to public addresses%s", e.addr, e.why, hint)
}

// checkDial is the dialer's Control: it runs on the address about to be dialled (after
// name resolution) and refuses those engine.WebhookAddrRefused refuses.
func (d *Deliverer) checkDial(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &refusedAddr{why: "not an address: " + address}
	}
	if why := engine.WebhookAddrRefused(ap.Addr(), d.AllowPrivate); why != "" {
		return &refusedAddr{addr: ap.Addr(), why: why}
	}
	return nil
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Host
}

func (d *Deliverer) unreserve(ts []target) {
	for _, t := range ts {
		if d.hosts[t.host]--; d.hosts[t.host] <= 0 {
			delete(d.hosts, t.host)
		}
		<-d.sem
	}
}

func (d *Deliverer) release(ts []target) {
	d.mu.Lock()
	d.unreserve(ts)
	d.mu.Unlock()
	select {
	case d.freed <- struct{}{}:
	default:
	}
}

// outcome is how a delivery's turn ended: a call's answer (ok for a 2xx, else status,
// 0 for none, and why in msg), or, when deferFor is set, no call at all (msg says why).
type outcome struct {
	ok       bool
	status   int
	msg      string
	deferFor time.Duration
}

// attempt makes one POST and records it, or records that it was put off. A POST cut
// short by shutdown is not recorded (the receiver may or may not have it); neither is an
// outcome that cannot be recorded. Both are left to the claim's end, after which the
// delivery is sent again.
func (d *Deliverer) attempt(ctx context.Context, t target) {
	defer d.release([]target{t})
	out, err := d.post(ctx, t)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		d.Logger.Warn("webhook delivery not attempted; it is retried when its claim ends", "delivery", t.delivery.ID, "err", err)
		return
	}
	// A finished attempt is recorded even if shutdown begins meanwhile (the engine closes
	// after the workers): its receiver has answered, and sending it again is avoidable.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit.WebhookClaimMargin)
	defer cancel()
	var cmd engine.Command = engine.WebhookAttempted{DeliveryID: t.delivery.ID, Version: t.delivery.Version, OK: out.ok,
		Status: out.status, Err: out.msg, Jitter: rand.Float64()}
	if out.deferFor > 0 {
		cmd = engine.DeferWebhook{DeliveryID: t.delivery.ID, Version: t.delivery.Version, For: out.deferFor, Reason: out.msg}
	}
	if _, err = d.Engine.Submit(rctx, cmd, nil); ordercore.ErrorCode(err) == ordercore.ENOTFOUND {
		d.Logger.Debug("webhook attempt dropped: its endpoint was deleted", "delivery", t.delivery.ID)
	} else if err != nil {
		d.Logger.Warn("webhook attempt not recorded; it is made again when its claim ends", "delivery", t.delivery.ID, "err", err)
	}
}

// post sends the delivery's event and says how the receiver answered. err is our own
// trouble (reading the event), which is not the receiver's failure and is not recorded.
//
// The breaker is the host's, and only a failure to get an answer at all counts against
// it (no connection, a reset, a timeout, an answer cut off): an HTTP answer, a 5xx
// included, shows the host is up, and is that endpoint's failure alone, on its own retry
// schedule, so a failing endpoint never shuts out a healthy one on the same host. While
// the breaker is open the delivery is not sent and is put off until after its probe,
// without counting an attempt.
func (d *Deliverer) post(ctx context.Context, t target) (outcome, error) {
	evs, err := d.Reader.Events(ctx, t.delivery.EventSeq-1, 1)
	if err != nil {
		return outcome{}, fmt.Errorf("read event %d: %w", t.delivery.EventSeq, err)
	}
	if len(evs) == 0 || evs[0].ID != t.delivery.EventID {
		// Events are never deleted: this is a bug, but one delivery's, so it ends in the
		// dead-letter list with its reason instead of crashing the instance.
		d.Logger.Error("a webhook delivery's event is not in the feed", "delivery", t.delivery.ID, "event", t.delivery.EventID, "seq", t.delivery.EventSeq)
		return outcome{msg: fmt.Sprintf("event %s (seq %d) is not in the event feed", t.delivery.EventID, t.delivery.EventSeq)}, nil
	}
	body, err := json.Marshal(evs[0].Envelope())
	limit.Assert(err == nil, "marshal event %s: %v", evs[0].ID, err)
	if !d.breakers.Allow(t.host) {
		// Open: until its probe is let through. Half-open: its probe is out, and its
		// answer comes within a timeout.
		wait := d.breakers.RemainingDelay(t.host)
		if wait <= 0 {
			wait = d.Timeout
		}
		wait += time.Duration(rand.Int64N(int64(time.Second))) // not all at the probe's instant
		return outcome{deferFor: wait, msg: fmt.Sprintf("circuit open: %s failed to answer %d times in a row; not called, put off without counting an attempt",
			t.host, limit.WebhookBreakerFailures)}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.endpoint.URL, bytes.NewReader(body))
	if err != nil {
		d.breakers.Record(t.host, true) // our request, not the host, is at fault
		return outcome{msg: "bad request: " + err.Error()}, nil
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ordercore-webhooks/1")
	req.Header.Set(webhook.HeaderEventID, t.delivery.EventID)
	req.Header.Set(webhook.HeaderDeliveryID, t.delivery.ID)
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(t.endpoint.Secret, d.Clock.Now(), body))
	resp, err := d.Client.Do(req)
	if refused := (*refusedAddr)(nil); errors.As(err, &refused) {
		d.breakers.Record(t.host, true) // not called: the host is not at fault
		return outcome{msg: refused.Error()}, nil
	}
	if err != nil {
		d.breakers.Record(t.host, false)
		if errors.Is(err, context.DeadlineExceeded) {
			return outcome{msg: fmt.Sprintf("no answer within %s", d.Timeout)}, nil
		}
		return outcome{msg: err.Error()}, nil
	}
	answer, rerr := io.ReadAll(io.LimitReader(resp.Body, limit.WebhookResponseBytesMax))
	resp.Body.Close()
	d.breakers.Record(t.host, rerr == nil) // it answered; an answer cut off is a connection failure
	if resp.StatusCode/100 == 2 {
		return outcome{ok: true, status: resp.StatusCode}, nil
	}
	return outcome{status: resp.StatusCode, msg: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, short(string(answer)))}, nil
}

func short(s string) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "?")
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
