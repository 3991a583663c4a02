package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"ordercore"
	"ordercore/internal/limit"
)

// Config tunes the committer. Zero values take the defaults of internal/limit.
type Config struct {
	// BatchMax bounds the commands of one transaction (1..limit.BatchCommandsMax).
	BatchMax int
	// BatchDelay is how long, at most, the committer goes on filling a batch once it has
	// taken what was queued, while more commands keep arriving (0..limit.BatchDelayMax),
	// and no longer once as many have come as the last batch answered (fill). Zero takes
	// only what already queued.
	BatchDelay time.Duration
	// BatchGap ends the filling early: no command for this long (limit.BatchGapDefault
	// when zero, at most BatchDelay). A batch therefore waits for commands only while
	// they come; a lone one right after a larger batch waits BatchGap, and one that
	// finds the committer idle for longer than BatchDelay waits for nothing.
	BatchGap time.Duration
	// QueueMax is the committer queue's depth; a full queue fails Submit with EOVERLOADED.
	QueueMax int
	// PaymentSync is when the payment sync queries an open attempt
	// (limit.PaymentSyncSchedule when nil); RefundSync is when a pending refund is sent
	// and then queried (limit.RefundSyncSchedule when nil).
	PaymentSync []time.Duration
	// PaymentSyncByChannel overrides PaymentSync for the channels it names: channels
	// differ in how soon a query knows (a search index that lags, a bank that settles
	// late).
	PaymentSyncByChannel map[string][]time.Duration
	RefundSync           []time.Duration
	// Fulfilment, when set, starts a fulfilment saga for every order that becomes paid.
	Fulfilment *Fulfilment
	// WebhookSchedule is when a webhook delivery is attempted (limit.WebhookSchedule
	// when nil): step n is the wait before attempt n+1.
	WebhookSchedule []time.Duration
	// WebhookAllowPrivate lets webhook endpoints name loopback and private addresses
	// (CheckWebhookTarget), for receivers on the premises and for tests.
	WebhookAllowPrivate bool
	Logger              *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.BatchMax <= 0 || c.BatchMax > limit.BatchCommandsMax {
		c.BatchMax = limit.BatchCommandsMax
	}
	if c.BatchDelay < 0 {
		c.BatchDelay = 0
	}
	if c.BatchDelay > limit.BatchDelayMax {
		c.BatchDelay = limit.BatchDelayMax
	}
	if c.BatchGap <= 0 {
		c.BatchGap = limit.BatchGapDefault
	}
	c.BatchGap = min(c.BatchGap, c.BatchDelay)
	if c.QueueMax <= 0 {
		c.QueueMax = limit.QueueCommandsMax
	}
	if len(c.PaymentSync) == 0 {
		c.PaymentSync = limit.PaymentSyncSchedule
	}
	if len(c.RefundSync) == 0 {
		c.RefundSync = limit.RefundSyncSchedule
	}
	if len(c.WebhookSchedule) == 0 {
		c.WebhookSchedule = limit.WebhookSchedule
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// paymentSync is the sync schedule of a channel's attempts.
func (c *Config) paymentSync(channel string) []time.Duration {
	if s := c.PaymentSyncByChannel[channel]; len(s) > 0 {
		return s
	}
	return c.PaymentSync
}

// Idem asks that a command's outcome be stored under an Idempotency-Key, with the hash of
// the request that carried it, and the HTTP status that a replay will answer.
type Idem struct {
	Key    string
	Hash   string
	Status int
}

// Result is a command's outcome. Value is the command's own result type (see each
// command). Replayed is set, and Value is nil, when an Idempotency-Key matched a stored
// response; the stored status and body are then in Replayed.
type Result struct {
	Value    any
	Replayed *ordercore.IdemRecord
}

// Engine executes commands through the committer.
type Engine struct {
	store ordercore.Store
	clock ordercore.Clock
	cfg   Config

	mu     sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	queue  chan *call
	exited chan struct{}

	stats statsRecorder
	sagas *sagaCache // the committer's

	// arrivals counts the commands ever put on the queue. The committer's own count of
	// those it took is received; after each commit it sets lingerUntil to the arrivals so
	// far plus the callers it just answered, and notes when in committed (see fill).
	arrivals    atomic.Int64
	received    int64
	lingerUntil int64
	committed   time.Time
}

type call struct {
	cmd  Command
	idem *Idem
	res  Result
	err  error
	done chan struct{}
	at   time.Time // when it was submitted (wall time, for Stats.Held)
}

// New starts an engine over store. Close stops it.
func New(store ordercore.Store, clock ordercore.Clock, cfg Config) *Engine {
	cfg = cfg.withDefaults()
	e := &Engine{store: store, clock: clock, cfg: cfg,
		queue: make(chan *call, cfg.QueueMax), exited: make(chan struct{}), sagas: newSagaCache(limit.SagaCacheMax)}
	go e.run()
	return e
}

// ErrOverloaded is returned by Submit when the queue is full.
var ErrOverloaded = &ordercore.Error{Code: ordercore.EOVERLOADED, Message: "the order engine is at capacity; retry shortly"}

// ErrClosed is returned by Submit after Close.
var ErrClosed = &ordercore.Error{Code: ordercore.EUnavailable, Message: "the order engine is shutting down"}

// Submit executes cmd and waits until its batch is committed. idem may be nil. If ctx ends
// first, Submit returns ctx's error but the command may still commit: callers that must
// know use an Idempotency-Key and retry.
func (e *Engine) Submit(ctx context.Context, cmd Command, idem *Idem) (Result, error) {
	c := &call{cmd: cmd, idem: idem, done: make(chan struct{}), at: time.Now()}
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return Result{}, ErrClosed
	}
	e.arrivals.Add(1)
	select {
	case e.queue <- c:
	default:
		e.arrivals.Add(-1)
		e.mu.RUnlock()
		e.stats.rejected.Add(1)
		return Result{}, ErrOverloaded
	}
	e.mu.RUnlock()
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// Close stops accepting commands, commits what is queued, and waits for the committer.
func (e *Engine) Close() {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.queue)
	}
	e.mu.Unlock()
	<-e.exited
}

// QueueLen is the number of commands waiting for the committer.
func (e *Engine) QueueLen() int { return len(e.queue) }

func (e *Engine) run() {
	defer close(e.exited)
	batch := make([]*call, 0, e.cfg.BatchMax)
	for {
		first, ok := <-e.queue
		if !ok {
			return
		}
		e.received++
		if time.Since(e.committed) > e.cfg.BatchDelay {
			// Idle longer than a batch may wait: the callers of the last one are not
			// coming back at once, and a command that finds the committer idle waits
			// for nothing.
			e.lingerUntil = 0
		}
		batch = e.fill(append(batch[:0], first))
		e.commit(batch)
		clear(batch)
	}
}

// fill adds queued commands to batch until it is full, or the queue is empty and, with a
// batch delay, either no command came for BatchGap, or BatchDelay has passed since the
// queue first ran dry, or as many commands have come since the last commit as it
// answered; or until the queue is closed.
//
// The last rule serves callers that submit again as soon as they are answered (a
// client's next order, a saga's next step): once that many have come back, waiting on
// would only idle the committer until a timer fires, and Go's timers do not fire sooner
// than about 1 ms on Linux when the process is otherwise idle (the runtime's poller
// sleeps in whole milliseconds), so a BatchGap below that is a lower bound on the wait,
// not its length. Commands that were already queued when the commit ended (callers other
// than the ones it answered) do not count, and a batch whose first command found the
// committer idle for longer than BatchDelay does not wait for them at all (run).
func (e *Engine) fill(batch []*call) []*call {
	var delay, gap *time.Timer
	for len(batch) < e.cfg.BatchMax {
		select {
		case c, ok := <-e.queue:
			if !ok {
				return batch
			}
			e.received++
			batch = append(batch, c)
			continue
		default:
		}
		if e.cfg.BatchDelay <= 0 || e.received >= e.lingerUntil {
			return batch
		}
		if delay == nil {
			delay, gap = time.NewTimer(e.cfg.BatchDelay), time.NewTimer(e.cfg.BatchGap)
			defer delay.Stop()
			defer gap.Stop()
		} else {
			gap.Reset(e.cfg.BatchGap) // since Go 1.23 no stale tick survives a Reset
		}
		select {
		case c, ok := <-e.queue:
			if !ok {
				return batch
			}
			e.received++
			batch = append(batch, c)
		case <-gap.C:
			return batch
		case <-delay.C:
			return batch
		}
	}
	return batch
}

// commit executes a batch in one transaction and answers every call after it is durable.
func (e *Engine) commit(calls []*call) {
	limit.Assert(len(calls) > 0 && len(calls) <= e.cfg.BatchMax, "batch of %d commands", len(calls))
	started := time.Now()
	if err := e.transact(calls); errors.Is(err, ordercore.ErrCommitUnknown) {
		// It may have committed: running any of it again could apply it twice.
		e.cfg.Logger.Error("batch's commit outcome is unknown; nothing of it is run again", "commands", len(calls), "err", err)
		unknown(calls, err)
	} else if err != nil {
		e.cfg.Logger.Error("batch failed; nothing in it was committed", "commands", len(calls), "err", err)
		budget := isolateBudget(len(calls))
		e.isolate(calls, &budget)
	}
	ended := time.Now()
	var held time.Duration
	for _, c := range calls {
		held += ended.Sub(c.at)
	}
	e.stats.record(len(calls), ended.Sub(started), held)
	// Counted before any caller is answered: a caller that submits again at once is one
	// of those fill expects back, not one that was already here.
	e.lingerUntil, e.committed = e.arrivals.Load()+int64(len(calls)), ended
	for _, c := range calls {
		close(c.done)
	}
}

// transact runs calls in one transaction, setting each one's outcome; if it returns an
// error, nothing was committed and the outcomes are void.
func (e *Engine) transact(calls []*call) error {
	var b *batch
	err := e.store.Write(context.Background(), func(tx ordercore.WriteTx) error {
		// Stores keep microseconds; a batch's time is truncated so that what a caller is
		// answered, what the events say and what is stored agree exactly.
		now := e.clock.Now().UTC().Truncate(time.Microsecond)
		var err error
		b, err = load(context.Background(), tx, now, &e.cfg, e.sagas, calls)
		if err != nil {
			return err
		}
		for _, c := range calls {
			c.res, c.err = b.execute(c)
		}
		b.fulfil()
		cs := b.changeset()
		if cs.Empty() {
			return nil
		}
		return tx.Apply(context.Background(), cs)
	})
	if err == nil {
		e.sagas.rememberSagas(b)
	}
	return err
}

// isolate runs the calls of a failed transaction again in halves, and the halves of a
// half that fails, so that a command the store refuses (a row the commands' checks did
// not foresee) fails alone instead of failing every command it was batched with; a
// failed batch of one command runs once more on its own. A command therefore always gets
// a transaction of its own before it fails: on PostgreSQL, a row another instance
// created meanwhile (the same new SKU id or saga gid, which no lock could cover before it
// existed) fails the first transaction, and the second reads the row and answers
// sku_exists or saga_exists instead of unavailable. Each retry spends one of budget's
// transactions: a store that refuses everything (a full disk, a lost connection) costs a
// few more failed transactions, not one per command, and the calls left when budget runs
// out fail as unavailable, to be retried.
func (e *Engine) isolate(calls []*call, budget *int) {
	half := len(calls) / 2
	for _, part := range [][]*call{calls[:half], calls[half:]} {
		if len(part) == 0 {
			continue // a batch of one: runs once more, whole
		}
		if *budget <= 0 {
			failed(part, errors.New("isolation budget spent"))
			continue
		}
		*budget--
		err := e.transact(part)
		switch {
		case err == nil:
		case errors.Is(err, ordercore.ErrCommitUnknown):
			unknown(part, err)
			*budget = 0 // and nothing more is run: the store is in doubt
		case len(part) == 1:
			e.cfg.Logger.Error("command failed in a transaction of its own; nothing of it was committed", "command", fmt.Sprintf("%T", part[0].cmd), "err", err)
			failed(part, err)
		default:
			e.isolate(part, budget)
		}
	}
}

// isolateBudget is the number of transactions isolate may spend on a failed batch of n
// calls: enough to find one refused command by halving (two halves a level), and a few
// more.
func isolateBudget(n int) int { return 2*bits.Len(uint(n)) + 4 }

// unknown answers calls whose transaction may or may not have committed as unavailable,
// saying so: a retry under the same Idempotency-Key is answered as the first was if it
// committed, and applied if not; a retry without one may apply the command twice.
func unknown(calls []*call, err error) {
	for _, c := range calls {
		c.res, c.err = Result{}, fmt.Errorf("commit batch: %w", errors.Join(err, &ordercore.Error{Code: ordercore.EUnavailable,
			Message: "the connection to the database was lost while committing, and whether this was applied is unknown: retry with the same Idempotency-Key, or read it back"}))
	}
}

// failed answers calls with err as unavailable: nothing of them was committed, and a
// retry may succeed.
func failed(calls []*call, err error) {
	for _, c := range calls {
		c.res, c.err = Result{}, fmt.Errorf("commit batch: %w", errors.Join(err, &ordercore.Error{Code: ordercore.EUnavailable, Message: "storage failed; nothing was changed, retry"}))
	}
}

// execute runs one call against the batch's working state, applying its Idempotency-Key.
func (b *batch) execute(c *call) (Result, error) {
	if c.idem != nil {
		if rec, ok := b.idem[c.idem.Key]; ok {
			if rec.RequestHash != c.idem.Hash {
				return Result{}, ordercore.Errorf(ordercore.EIdemKeyReused, "Idempotency-Key %q was used with a different request", c.idem.Key)
			}
			return Result{Replayed: &rec}, nil
		}
	}
	v, err := c.cmd.execute(b)
	if err != nil {
		return Result{}, err
	}
	if c.idem != nil {
		body, err := encodeJSON(v, responseBodyCap)
		limit.Assert(err == nil, "marshal result of %T: %v", c.cmd, err)
		rec := ordercore.IdemRecord{Key: c.idem.Key, RequestHash: c.idem.Hash, Status: c.idem.Status, Body: body, CreatedAt: b.now}
		b.idem[rec.Key] = rec
		b.cs.Idempotency = append(b.cs.Idempotency, rec)
	}
	return Result{Value: v}, nil
}

// Stats is a snapshot of the committer's counters.
type Stats struct {
	Batches  int64
	Commands int64
	Rejected int64
	// BatchSizes[n] counts batches of n commands.
	BatchSizes []int64
	CommitTime time.Duration
	// Held is summed over the commands answered: the time from Submit to the answer,
	// queued behind the transaction in progress, in the batch filling, and in its own
	// transaction. Held/Commands is what the engine adds to a request's latency.
	Held time.Duration
	// Queued is the commands waiting in the queue now, of QueueMax.
	Queued, QueueMax int
}

type statsRecorder struct {
	batches, commands, rejected atomic.Int64
	mu                          sync.Mutex
	sizes                       [limit.BatchCommandsMax + 1]int64
	commitTime, held            time.Duration
}

func (s *statsRecorder) record(n int, d, held time.Duration) {
	s.batches.Add(1)
	s.commands.Add(int64(n))
	s.mu.Lock()
	s.sizes[n]++
	s.commitTime += d
	s.held += held
	s.mu.Unlock()
}

// Stats returns the committer's counters since New.
func (e *Engine) Stats() Stats {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	return Stats{Batches: e.stats.batches.Load(), Commands: e.stats.commands.Load(),
		Rejected: e.stats.rejected.Load(), BatchSizes: append([]int64(nil), e.stats.sizes[:]...),
		CommitTime: e.stats.commitTime, Held: e.stats.held, Queued: len(e.queue), QueueMax: cap(e.queue)}
}
