package recon

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
)

// Reader is what the reconciler reads of the store (ordercore.Reader has it all).
type Reader interface {
	Payment(ctx context.Context, id string) (ordercore.Payment, error)
	OrderPayments(ctx context.Context, orderID string) ([]ordercore.Payment, []ordercore.Refund, error)
	MoneyMovements(ctx context.Context, channel string, from, to time.Time, afterSeq int64, limit int) ([]ordercore.MoneyEntry, error)
	LastAggregateEvent(ctx context.Context, aggregateID, typ string) (ordercore.Event, bool, error)
	Reviews(ctx context.Context, status ordercore.ReviewStatus, afterID string, limit int) ([]ordercore.ReviewItem, error)
}

// Reconciler reconciles channels' daily statements with ordercore's records: Reconcile
// does one channel's day on demand; Run does every channel's ended days, once each, on the
// background node.
type Reconciler struct {
	Engine   *engine.Engine
	Reader   Reader
	Clock    ordercore.Clock
	Channels map[string]ordercore.Channel
	// Hour is the UTC hour from which the statement of the day before is fetched
	// (limit.ReconHourDefault when zero; negative: at midnight).
	Hour int
	// Locker, when set, makes the runs of one day take turns across every instance
	// sharing the database (PostgreSQL's advisory locks); without it they take turns
	// within this process, which is all there is on SQLite.
	Locker Locker
	Logger *slog.Logger

	runs chan struct{} // at most limit.ReconRunsMax runs at once; made on first use

	mu      sync.Mutex
	failed  map[string]time.Time // day id -> when it last failed
	running map[string]*dayLock  // day id -> the runs of the day in progress or waiting
}

// Locker holds a lock on a key shared by every instance until the returned func is
// called (postgres.DB.LockKey).
type Locker interface {
	LockKey(ctx context.Context, key string) (func(), error)
}

// Errors of Reconcile that callers tell apart.
var (
	ErrUnknownChannel = errors.New("recon: no such channel")
	ErrNoStatements   = errors.New("recon: the channel publishes no daily statement")
	// ErrChannel wraps a failure of the channel (the statement's download, a query):
	// nothing was recorded for the day, and it is tried again later.
	ErrChannel = errors.New("recon: the channel failed")
)

func (r *Reconciler) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// Day truncates t to its UTC day.
func Day(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

// Reconcile reconciles the channel's statement of day (a UTC day) with ordercore's
// records, both ways, and records the report (engine.RecordReconciliation):
//
//  1. every row is matched to the payment or refund it names (Match);
//  2. money ordercore has not recorded as moved is applied, through the same path as
//     the channel's notifications (engine.ChannelPayment and ChannelRefund, source
//     "statement"): a lost notification is repaired here; a trade or refund ordercore
//     does not know opens an orphan review item;
//  3. money ordercore recorded on the day that no row lists is asked about at the
//     channel: dated on another day, it is confirmed; otherwise it is a discrepancy;
//  4. every discrepancy is a review item (engine.OpenDiscrepancies), unless an item of an
//     earlier run holds it already, open or resolved by an operator who settled it.
//
// Running a day again is safe: what was repaired matches, and what still differs is
// reported again under its item. A run that fails (the channel does not answer) records
// no report; what it applied stands, and the next run finds it matched.
func (r *Reconciler) Reconcile(ctx context.Context, channel string, day time.Time) (ordercore.Reconciliation, error) {
	day = Day(day)
	ch, ok := r.Channels[channel]
	if !ok {
		return ordercore.Reconciliation{}, fmt.Errorf("%w: %q", ErrUnknownChannel, channel)
	}
	src, ok := ch.(ordercore.StatementSource)
	if !ok {
		return ordercore.Reconciliation{}, fmt.Errorf("%w: %q", ErrNoStatements, channel)
	}
	// Runs of one day take turns, here and on other instances: each reads the review
	// items before opening its own, so two at once could both open an item for the same
	// discrepancy, or the same orphan.
	if err := r.acquireRun(ctx); err != nil {
		return ordercore.Reconciliation{}, err
	}
	defer r.releaseRun()
	id := ordercore.ReconciliationID(channel, day)
	unlock := r.lockDay(id)
	defer unlock()
	if r.Locker != nil {
		unlockShared, err := r.Locker.LockKey(ctx, "reconciliation/"+id)
		if err != nil {
			return ordercore.Reconciliation{}, err
		}
		defer unlockShared()
	}
	rep := ordercore.Reconciliation{Channel: channel, Day: day.Format(time.DateOnly), Started: r.Clock.Now(),
		Paid: []ordercore.Money{}, Refunded: []ordercore.Money{}}
	rep.Partial = rep.Started.Before(day.AddDate(0, 0, 1))
	st, err := src.DailyStatement(ctx, day)
	if err != nil {
		return rep, fmt.Errorf("%w: the statement of %s: %w", ErrChannel, rep.Day, err)
	}
	known, err := r.knownReviews(ctx, day.AddDate(0, 0, -limit.ReconDaysBack))
	if err != nil {
		return rep, err
	}
	local, err := r.readLocal(ctx, channel, day, st)
	if err != nil {
		return rep, err
	}
	first := Match(channel, st, local, false)
	applied, orphans, err := r.apply(ctx, channel, first, local, known)
	if err != nil {
		return rep, err
	}
	plan := first
	if slices.ContainsFunc(first.Rows, func(v RowVerdict) bool { return v.Verdict == Apply }) {
		// What was applied is read back and matched once more: a row the engine could
		// not record is then a discrepancy, not applied twice.
		if local, err = r.readLocal(ctx, channel, day, st); err != nil {
			return rep, err
		}
		plan = Match(channel, st, local, true)
	}
	rep.Rows, rep.Orphans = len(st.Rows), orphans
	var found []ordercore.Discrepancy
	for i, v := range plan.Rows {
		if v.Row.Type == ordercore.StatementRefund {
			rep.Refunds++
		} else {
			rep.Payments++
		}
		switch {
		case v.Verdict == Matched && applied[i]:
			rep.Repaired++ // applied by this run; one applied by something else meanwhile just matches
		case v.Verdict == Matched:
			rep.Matched++
		case v.Verdict == Differs:
			found = append(found, *v.Discrepancy)
		}
	}
	unlisted, confirmed, settled, err := r.unlisted(ctx, ch, local, plan.Unlisted)
	if err != nil {
		return rep, err
	}
	rep.Confirmed, rep.SettledOutside = confirmed, settled
	found = append(found, unlisted...)
	rep.Paid, rep.Refunded = totals(st.Rows)
	for i := range found {
		d := &found[i]
		if it, ok := known[reviewKey{d.Kind, d.PaymentID, d.RefundID}]; ok {
			d.ReviewID, d.Existing, d.ReviewStatus = it.ID, true, it.Status
		}
	}
	for chunk := range slices.Chunk(found, listMax) {
		res, err := r.Engine.Submit(ctx, engine.OpenDiscrepancies{Reconciliation: id, Discrepancies: chunk}, nil)
		if err != nil {
			return rep, err
		}
		copy(chunk, res.Value.([]ordercore.Discrepancy))
	}
	rep.DiscrepanciesFound = len(found)
	rep.Discrepancies = found[:min(len(found), listMax)]
	if len(found) > listMax {
		r.logger().Warn("reconciliation found more discrepancies than its report lists; each has its review item", "channel", channel,
			"day", rep.Day, "found", len(found), "listed", listMax)
	}
	res, err := r.Engine.Submit(ctx, engine.RecordReconciliation{Report: rep}, nil)
	if err != nil {
		return rep, err
	}
	return res.Value.(ordercore.Reconciliation), nil
}

// Last returns the latest recorded reconciliation of the channel's day, if any.
func (r *Reconciler) Last(ctx context.Context, channel string, day time.Time) (ordercore.Reconciliation, bool, error) {
	ev, found, err := r.Reader.LastAggregateEvent(ctx, ordercore.ReconciliationID(channel, day), ordercore.EventReconciliationCompleted)
	if err != nil || !found {
		return ordercore.Reconciliation{}, false, err
	}
	var rep ordercore.Reconciliation
	if err := json.Unmarshal(ev.Data, &rep); err != nil {
		return ordercore.Reconciliation{}, false, fmt.Errorf("reconciliation %s/%s: %w", channel, day.Format(time.DateOnly), err)
	}
	return rep, true, nil
}

// listMax is how many discrepancies a report lists, and how many one transaction opens
// items for (a variable so that a test can make it small).
var listMax = limit.ReconDiscrepanciesMax

type reviewKey struct{ kind, payment, refund string }

// knownReviews maps the review items created since since by what they are about, so that
// a discrepancy (or an orphan) reported again opens no second item: an open item still
// holds it, and a resolved one says an operator settled it. An open item wins over a
// resolved one of the same key.
func (r *Reconciler) knownReviews(ctx context.Context, since time.Time) (map[reviewKey]ordercore.ReviewItem, error) {
	out := map[reviewKey]ordercore.ReviewItem{}
	after := ""
	for {
		page, err := r.Reader.Reviews(ctx, "", after, limit.PageSizeMax)
		if err != nil {
			return nil, err
		}
		for _, it := range page {
			if it.CreatedAt.Before(since) {
				return out, nil // newest first: the rest are older
			}
			k := reviewKey{it.Kind, it.PaymentID, it.RefundID}
			if prev, ok := out[k]; !ok || prev.Status != ordercore.ReviewOpen {
				out[k] = it
			}
		}
		if len(page) < limit.PageSizeMax {
			return out, nil
		}
		after = page[len(page)-1].ID
	}
}

// readLocal reads what ordercore recorded about the statement's rows, and the money it
// recorded as moved at the channel during the day.
func (r *Reconciler) readLocal(ctx context.Context, channel string, day time.Time, st ordercore.Statement) (Local, error) {
	local := Local{Payments: map[string]ordercore.Payment{}, Refunds: map[string]ordercore.Refund{}}
	for after := int64(0); ; {
		page, err := r.Reader.MoneyMovements(ctx, channel, day, day.AddDate(0, 0, 1), after, limit.PageSizeMax)
		if err != nil {
			return Local{}, err
		}
		local.Moved = append(local.Moved, page...)
		if len(page) < limit.PageSizeMax {
			break
		}
		after = page[len(page)-1].Seq
	}
	ids := map[string]bool{}
	for _, row := range st.Rows {
		ids[row.OutTradeNo] = true
	}
	for _, m := range local.Moved {
		ids[m.PaymentID] = true
	}
	var mu sync.Mutex
	err := each(ctx, sortedKeys(ids), func(ctx context.Context, id string) error {
		p, err := r.Reader.Payment(ctx, id)
		if ordercore.ErrorCode(err) == ordercore.ENOTFOUND {
			return nil
		}
		if err != nil {
			return err
		}
		_, refunds, err := r.Reader.OrderPayments(ctx, p.OrderID)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		local.Payments[p.ID] = p
		for _, rf := range refunds {
			if rf.PaymentID == p.ID {
				local.Refunds[rf.ID] = rf
			}
		}
		return nil
	})
	return local, err
}

// apply applies the rows ordercore has not recorded (Apply) and those of trades and
// refunds it does not know (Unknown, unless an item holds them already). It returns the
// rows the engine applied (by index), and how many rows are orphans (opened now, or held
// by an item of an earlier run).
func (r *Reconciler) apply(ctx context.Context, channel string, plan Plan, local Local, known map[reviewKey]ordercore.ReviewItem) (map[int]bool, int, error) {
	var todo []int
	orphans := 0
	for i, v := range plan.Rows {
		switch v.Verdict {
		case Apply:
			todo = append(todo, i)
		case Unknown:
			orphans++
			key := reviewKey{ordercore.ReviewOrphan, v.Row.OutTradeNo, ""}
			if v.Row.Type == ordercore.StatementRefund {
				// Its item names the trade when the trade is this channel's (ChannelRefund).
				key = reviewKey{ordercore.ReviewOrphan, "", v.Row.OutRefundNo}
				if p, known := local.Payments[v.Row.OutTradeNo]; known && p.Channel == channel {
					key.payment = p.ID
				}
			}
			if _, held := known[key]; !held {
				todo = append(todo, i)
			}
		}
	}
	var mu sync.Mutex
	applied := map[int]bool{}
	err := each(ctx, todo, func(ctx context.Context, i int) error {
		row := plan.Rows[i].Row
		var cmd engine.Command
		if row.Type == ordercore.StatementRefund {
			cmd = engine.ChannelRefund{Channel: channel, Source: "statement", Refund: ordercore.ChannelRefund{OutTradeNo: row.OutTradeNo,
				OutRefundNo: row.OutRefundNo, RefundID: row.RefundID, Status: ordercore.RefundSucceeded, Amount: row.Amount}}
		} else {
			cmd = engine.ChannelPayment{Channel: channel, Source: "statement", Payment: ordercore.ChannelPayment{OutTradeNo: row.OutTradeNo,
				TxnID: row.TxnID, Status: ordercore.PaymentSucceeded, Amount: row.Amount, PaidAt: row.Time}}
		}
		res, err := r.Engine.Submit(ctx, cmd, nil)
		if err != nil {
			return err
		}
		if res.Value == engine.OutcomeApplied {
			mu.Lock()
			applied[i] = true
			mu.Unlock()
		}
		return nil
	})
	return applied, orphans, err
}

// queryWaits are the waits between the attempts of a query that got no definite answer
// (a timeout, a 5xx): one attempt more than there are waits, then the run fails.
var queryWaits = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond}

// unlisted asks the channel about the money ordercore recorded on the day that no row
// lists. A query that gets no definite answer after its retries fails the run, to be
// tried again.
func (r *Reconciler) unlisted(ctx context.Context, ch ordercore.Channel, local Local, moved []ordercore.MoneyEntry) (out []ordercore.Discrepancy, confirmed, settled int, err error) {
	var mu sync.Mutex
	err = each(ctx, moved, func(ctx context.Context, m ordercore.MoneyEntry) error {
		var (
			cp  *ordercore.ChannelPayment
			cr  *ordercore.ChannelRefund
			err error
		)
		for attempt := 0; ; attempt++ {
			if m.Movement == ordercore.MoneyCapture {
				var got ordercore.ChannelPayment
				if got, err = ch.QueryPayment(ctx, m.PaymentID); err == nil {
					cp = &got
				}
			} else {
				var got ordercore.ChannelRefund
				if got, err = ch.QueryRefund(ctx, m.PaymentID, m.RefundID); err == nil {
					cr = &got
				}
			}
			if err == nil || errors.Is(err, ordercore.ErrTradeNotFound) {
				break
			}
			if attempt >= len(queryWaits) {
				return fmt.Errorf("%w: a query of %s: %w", ErrChannel, m.PaymentID, err)
			}
			select { // no definite answer: ask again before failing the run
			case <-time.After(queryWaits[attempt]):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		d, outside := UnlistedVerdict(m, local.Payments[m.PaymentID], cp, cr, err)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case outside:
			settled++
		case d == nil:
			confirmed++
		default:
			out = append(out, *d)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b ordercore.Discrepancy) int {
		if a.PaymentID != b.PaymentID {
			return cmp.Compare(a.PaymentID, b.PaymentID)
		}
		return cmp.Compare(a.RefundID, b.RefundID)
	})
	return out, confirmed, settled, err
}

// Run reconciles, once each, the ended days of every channel that publishes statements,
// until ctx ends: the day before from Hour (UTC) on, and days back to limit.ReconDaysBack
// that no run has recorded yet. A failed day is tried again after limit.ReconRetry.
func (r *Reconciler) Run(ctx context.Context) {
	for {
		r.RunDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}

// RunDue runs the reconciliations that are due now (Run's one pass) and returns how many
// it recorded.
func (r *Reconciler) RunDue(ctx context.Context) int {
	now := r.Clock.Now().UTC()
	hour := r.Hour
	if hour == 0 {
		hour = limit.ReconHourDefault
	}
	last := Day(now).AddDate(0, 0, -1) // the day before today
	if now.Hour() < hour {
		last = last.AddDate(0, 0, -1)
	}
	done := 0
	for _, name := range sortedKeys(r.Channels) {
		if _, ok := r.Channels[name].(ordercore.StatementSource); !ok {
			continue
		}
		for day := last.AddDate(0, 0, 1-limit.ReconDaysBack); !day.After(last); day = day.AddDate(0, 0, 1) {
			if ctx.Err() != nil {
				return done
			}
			id := ordercore.ReconciliationID(name, day)
			if r.recentlyFailed(id, now) {
				continue
			}
			if rep, found, err := r.Last(ctx, name, day); err != nil || found && !rep.Partial {
				continue // a report of the day before it ended (run by hand) does not count
			}
			if _, err := r.Reconcile(ctx, name, day); err != nil {
				r.markFailed(id, now)
				r.logger().Warn("reconciliation failed; it is tried again later", "channel", name, "day", day.Format(time.DateOnly),
					"retry_in", limit.ReconRetry, "err", err)
				continue
			}
			done++
		}
	}
	return done
}

// acquireRun waits for one of the limit.ReconRunsMax runs at once: each holds a pooled
// connection for its shared lock and reads with others.
func (r *Reconciler) acquireRun(ctx context.Context) error {
	r.mu.Lock()
	if r.runs == nil {
		r.runs = make(chan struct{}, limit.ReconRunsMax)
	}
	runs := r.runs
	r.mu.Unlock()
	select {
	case runs <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Reconciler) releaseRun() { <-r.runs }

func (r *Reconciler) lockDay(id string) func() {
	r.mu.Lock()
	if r.running == nil {
		r.running = map[string]*dayLock{}
	}
	l, ok := r.running[id]
	if !ok {
		l = &dayLock{}
		r.running[id] = l
	}
	l.users++
	r.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		r.mu.Lock()
		if l.users--; l.users == 0 {
			delete(r.running, id)
		}
		r.mu.Unlock()
	}
}

// dayLock makes the runs of one day take turns; users counts those holding or waiting.
type dayLock struct {
	sync.Mutex
	users int
}

func (r *Reconciler) recentlyFailed(id string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.failed[id]
	return ok && now.Sub(at) < limit.ReconRetry
}

func (r *Reconciler) markFailed(id string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed == nil {
		r.failed = map[string]time.Time{}
	}
	r.failed[id] = now
}

// each calls fn for every item, at most limit.ReconLookupConcurrency at a time; the
// first error cancels the others' context and is returned.
func each[T any](ctx context.Context, items []T, fn func(context.Context, T) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(limit.ReconLookupConcurrency)
	for _, it := range items {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return fn(gctx, it) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err() // the caller's context ended before every item started
}

// totals sums the statement's payments and refunds by currency, sorted by currency.
func totals(rows []ordercore.StatementRow) (paid, refunded []ordercore.Money) {
	sum := func(typ string) []ordercore.Money {
		by := map[ordercore.Currency]int64{}
		for _, row := range rows {
			if row.Type == typ {
				by[row.Amount.Currency] += row.Amount.Amount
			}
		}
		out := []ordercore.Money{}
		for _, c := range sortedKeys(by) {
			out = append(out, ordercore.Money{Amount: by[c], Currency: c})
		}
		return out
	}
	return sum(ordercore.StatementPayment), sum(ordercore.StatementRefund)
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K { return slices.Sorted(maps.Keys(m)) }
