package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
)

// runHTTPCeiling measures the least any server that writes an order's rows durably can
// spend over HTTP: the trivial handler's decode, then the order handed to a hand-written
// group commit (the ceiling's writer, batching by the engine's rule) and 201 once its
// transaction is durable. No validation beyond the trivial handler's, no idempotency, no
// engine: what is left between it and the trivial handler is the durable write itself.
func runHTTPCeiling(ctx context.Context, cfg Config, out *progress, sc scenario) (res Result, err error) {
	res = Result{Path: PathHTTPCeiling, Scenario: sc.name, Note: "the trivial handler's decode, then a hand-written group commit of the same rows"}
	w, err := openCeiling(ctx, cfg, out, &res, sc)
	if err != nil {
		return res, err
	}
	defer w.close()
	gc := newGroupCommit(w)
	defer gc.close()
	base, stop, err := serveOrders(gc.handle)
	if err != nil {
		return res, err
	}
	defer stop() // before the committer closes: no handler is left waiting on it
	client := newClient(cfg.Clients)
	defer client.CloseIdleConnections()
	return measureHTTP(ctx, cfg, out, res, client, base+"/v1/orders", sc, gc.stats)
}

// groupCommit is a hand-written committer: one goroutine writes what the handlers queue,
// a transaction per batch, filling batches by the engine's rule (engine.fill) with the
// default batch delay and gap, and answers each order once its transaction is durable.
type groupCommit struct {
	w        *ceilingWriter
	queue    chan *pendingOrder
	arrivals atomic.Int64
	exited   chan struct{}

	// The committer goroutine's own.
	received, lingerUntil int64
	committed             time.Time

	mu sync.Mutex
	st engine.Stats
}

type pendingOrder struct {
	order ceilingOrder
	at    time.Time
	done  chan error
}

var errQueueFull = errors.New("queue full")

func newGroupCommit(w *ceilingWriter) *groupCommit {
	g := &groupCommit{w: w, queue: make(chan *pendingOrder, limit.QueueCommandsMax), exited: make(chan struct{})}
	g.st.BatchSizes = make([]int64, limit.BatchCommandsMax+1)
	go g.run()
	return g
}

// close stops the committer once the queue is empty; no submit may follow.
func (g *groupCommit) close() {
	close(g.queue)
	<-g.exited
}

// submit queues o and waits until its batch is durable.
func (g *groupCommit) submit(o ceilingOrder) error {
	p := &pendingOrder{order: o, at: time.Now(), done: make(chan error, 1)}
	g.arrivals.Add(1) // before the send, as in engine.Submit: fill counts it at once
	select {
	case g.queue <- p:
	default:
		g.arrivals.Add(-1)
		return errQueueFull
	}
	return <-p.done
}

// handle is POST /v1/orders: the trivial handler's decode, then the durable write.
func (g *groupCommit) handle(w http.ResponseWriter, r *http.Request) {
	var req orderRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit.RequestBodyBytesMax)).Decode(&req); err != nil || len(req.Lines) == 0 {
		http.Error(w, `{"code":"malformed_json"}`, http.StatusBadRequest)
		return
	}
	id := ordercore.NewID(time.Now())
	if err := g.submit(ceilingOrder{id: id, sku: req.Lines[0].SKU}); err != nil {
		http.Error(w, `{"code":"unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"id":%q,"status":"pending_payment"}`, id)
}

func (g *groupCommit) run() {
	defer close(g.exited)
	batch := make([]*pendingOrder, 0, limit.BatchCommandsMax)
	orders := make([]ceilingOrder, 0, limit.BatchCommandsMax)
	for {
		first, ok := <-g.queue
		if !ok {
			return
		}
		g.received++
		if time.Since(g.committed) > limit.BatchDelayDefault {
			g.lingerUntil = 0
		}
		batch = g.fill(append(batch[:0], first))
		orders = orders[:0]
		for _, p := range batch {
			orders = append(orders, p.order)
		}
		started := time.Now()
		err := g.w.batch(context.Background(), orders)
		ended := time.Now()
		var held time.Duration
		for _, p := range batch {
			held += ended.Sub(p.at)
		}
		g.mu.Lock()
		g.st.Batches++
		g.st.Commands += int64(len(batch))
		g.st.BatchSizes[len(batch)]++
		g.st.CommitTime += ended.Sub(started)
		g.st.Held += held
		g.mu.Unlock()
		g.lingerUntil, g.committed = g.arrivals.Load()+int64(len(batch)), ended
		for _, p := range batch {
			p.done <- err
		}
		clear(batch)
	}
}

// fill is engine.fill with the default batch delay and gap: it takes what is queued,
// then waits for more while they keep coming (no gap longer than BatchGapDefault, at most
// BatchDelayDefault in all) until as many have come as the last batch answered.
func (g *groupCommit) fill(batch []*pendingOrder) []*pendingOrder {
	var delay, gap *time.Timer
	for len(batch) < limit.BatchCommandsMax {
		var p *pendingOrder
		var ok bool
		select {
		case p, ok = <-g.queue:
		default:
			if g.received >= g.lingerUntil {
				return batch
			}
			if delay == nil {
				delay, gap = time.NewTimer(limit.BatchDelayDefault), time.NewTimer(limit.BatchGapDefault)
				defer delay.Stop()
				defer gap.Stop()
			} else {
				gap.Reset(limit.BatchGapDefault)
			}
			select {
			case p, ok = <-g.queue:
			case <-gap.C:
				return batch
			case <-delay.C:
				return batch
			}
		}
		if !ok {
			return batch
		}
		g.received++
		batch = append(batch, p)
	}
	return batch
}

// stats is a snapshot of the committer's counters, as engine.Stats has them.
func (g *groupCommit) stats() engine.Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.st
	s.BatchSizes = append([]int64(nil), g.st.BatchSizes...)
	return s
}
