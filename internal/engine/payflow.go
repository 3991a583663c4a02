package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"ordercore"
	"ordercore/internal/limit"
)

// Payments is the channel side of payments: it opens attempts at channels, closes old
// ones, turns notifications into commands, and runs the payment sync (the "janitor") that
// queries open attempts and sends and queries refunds. It calls channels only through
// ordercore.Channel and changes state only through the engine, so every answer a channel
// gives goes through the same idempotent commands whatever brought it (P2). Nothing here
// lives only in memory: an attempt or refund is a row before its channel call is made.
type Payments struct {
	Engine   *Engine
	Reader   ordercore.Reader
	Clock    ordercore.Clock
	Channels map[string]ordercore.Channel
	// NotifyURL returns the URL a channel posts notifications for it to.
	NotifyURL func(channel string) string
	// Interval is the longest the sync sleeps between sweeps (limit.PaymentSyncInterval
	// when zero).
	Interval time.Duration
	Logger   *slog.Logger

	nudgeOnce sync.Once
	nudges    chan struct{}
}

func (s *Payments) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Payments) nudgeChan() chan struct{} {
	s.nudgeOnce.Do(func() { s.nudges = make(chan struct{}, 1) })
	return s.nudges
}

// Nudge wakes the sync now (a refund was just requested) instead of at its next interval.
func (s *Payments) Nudge() {
	select {
	case s.nudgeChan() <- struct{}{}:
	default:
	}
}

// CloseOpen closes the order's payment attempts that are open at their channels. A
// channel that says an attempt was paid pays the order instead, and CloseOpen answers
// illegal_transition; one that cannot be reached leaves the attempt open (unknown, for
// the sync to ask) and CloseOpen answers its error.
func (s *Payments) CloseOpen(ctx context.Context, orderID string) error {
	open, err := s.Reader.OpenPayments(ctx, []string{orderID})
	if err != nil {
		return err
	}
	for _, p := range open {
		if err := s.close(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// refusedAtCreate reports whether attempt p failed without the channel ever giving
// instructions for it: every channel answers a trade it opened with some.
func refusedAtCreate(p ordercore.Payment) bool {
	in := p.Instructions
	return p.Status == ordercore.PaymentFailed && in.TxnID == "" && in.RedirectURL == "" && len(in.Params) == 0
}

func (s *Payments) channel(name string) (ordercore.Channel, error) {
	ch, ok := s.Channels[name]
	if !ok {
		return nil, ordercore.Errorf(ordercore.EUnknownChannel, "no payment channel %q is configured", name)
	}
	return ch, nil
}

// Pay opens a payment attempt for a pending order at a channel: it records the attempt,
// closing the order's open attempt at its channel first when there is one (one open
// attempt per order: a trade left open could be paid too), then asks the channel for the
// trade under the attempt's id. idem, when set, stores the new attempt under an
// Idempotency-Key: a retry finds it and asks the channel for the same trade again, which
// the channel answers from its own idempotency on that id, so a retry never opens a
// second trade. Result.Value is the attempt (ordercore.Payment).
func (s *Payments) Pay(ctx context.Context, orderID, channel string, idem *Idem) (Result, error) {
	ch, err := s.channel(channel)
	if err != nil {
		return Result{}, err
	}
	start := StartPayment{OrderID: orderID, Channel: channel}
	res, err := s.Engine.Submit(ctx, start, idem)
	if ordercore.ErrorCode(err) == ordercore.EPaymentInProgress {
		if err := s.CloseOpen(ctx, orderID); err != nil {
			return Result{}, err
		}
		res, err = s.Engine.Submit(ctx, start, idem)
	}
	if err != nil {
		return Result{}, err
	}
	var p ordercore.Payment
	if res.Replayed != nil {
		if err := json.Unmarshal(res.Replayed.Body, &p); err != nil {
			return Result{}, fmt.Errorf("stored payment attempt: %w", err)
		}
		if p, err = s.Reader.Payment(ctx, p.ID); err != nil {
			return Result{}, err
		}
		if refusedAtCreate(p) {
			// The key's first request was answered channel_refused (or, when the channel
			// did not answer, found since to have opened no trade): its retry is answered
			// the same, not as a created attempt.
			return Result{}, ordercore.Errorf(ordercore.EChannelRefused, "channel %s refused the payment attempt %s", channel, p.ID)
		}
		if !p.Status.Open() {
			return Result{Value: p, Replayed: res.Replayed}, nil // ended since: nothing to ask the channel
		}
	} else {
		p = res.Value.(ordercore.Payment)
	}
	o, err := s.Reader.Order(ctx, orderID)
	if err != nil {
		return Result{}, err
	}
	instr, err := ch.CreatePayment(ctx, ordercore.PaymentRequest{OutTradeNo: p.ID, OrderID: orderID, Amount: p.Amount,
		Description: "order " + orderID, ExpiresAt: o.ExpiresAt, NotifyURL: s.notifyURL(channel)})
	switch {
	case errors.Is(err, ordercore.ErrOutcomeUnknown):
		// The trade may exist: the sync asks the channel; it is never re-created under a
		// new key meanwhile.
		if _, serr := s.Engine.Submit(ctx, UnknownPayment{PaymentID: p.ID, Source: "create"}, nil); serr != nil {
			return Result{}, serr
		}
		return Result{}, ordercore.Errorf(ordercore.EChannelUnavailable, "channel %s did not answer; the attempt is being checked, retry shortly", channel)
	case err != nil:
		if _, serr := s.Engine.Submit(ctx, ChannelPayment{Channel: channel, Source: "create",
			Payment: ordercore.ChannelPayment{OutTradeNo: p.ID, Status: ordercore.PaymentFailed}}, nil); serr != nil {
			return Result{}, serr
		}
		return Result{}, ordercore.Errorf(ordercore.EChannelRefused, "channel %s refused the payment: %v", channel, err)
	}
	opened, err := s.Engine.Submit(ctx, OpenedPayment{PaymentID: p.ID, Instructions: instr}, nil)
	if err != nil {
		return Result{}, err
	}
	return Result{Value: opened.Value, Replayed: res.Replayed}, nil
}

func (s *Payments) notifyURL(channel string) string {
	if s.NotifyURL == nil {
		return ""
	}
	return s.NotifyURL(channel)
}

// close ends an open attempt at its channel before anything else is decided about its
// order (a new attempt, expiry). A channel that says the trade is paid is asked for it
// and the money is applied; one that does not answer leaves the attempt unknown.
func (s *Payments) close(ctx context.Context, p ordercore.Payment) error {
	ch, err := s.channel(p.Channel)
	if err != nil {
		return err
	}
	err = ch.ClosePayment(ctx, p.ID)
	switch {
	case err == nil || errors.Is(err, ordercore.ErrTradeNotFound):
		_, err = s.Engine.Submit(ctx, ChannelPayment{Channel: p.Channel, Source: "close",
			Payment: ordercore.ChannelPayment{OutTradeNo: p.ID, Status: ordercore.PaymentClosed}}, nil)
		return err
	case errors.Is(err, ordercore.ErrTradePaid):
		cp, qerr := ch.QueryPayment(ctx, p.ID)
		if qerr != nil || cp.Status != ordercore.PaymentSucceeded {
			return s.inProgress(ctx, p, fmt.Errorf("trade paid, query: %v (%s)", qerr, cp.Status))
		}
		if _, err := s.Engine.Submit(ctx, ChannelPayment{Channel: p.Channel, Source: "close", Payment: cp}, nil); err != nil {
			return err
		}
		return ordercore.Errorf(ordercore.EIllegalTransition, "the order was paid by payment %s", p.ID)
	default:
		return s.inProgress(ctx, p, err)
	}
}

func (s *Payments) inProgress(ctx context.Context, p ordercore.Payment, cause error) error {
	s.logger().Warn("closing a payment attempt at its channel failed; it stays open", "payment", p.ID, "channel", p.Channel, "err", cause)
	// Unknown until a query says otherwise: the payment sync asks on its schedule, and the
	// expiry sweeper leaves the order alone meanwhile instead of retrying the close.
	if _, err := s.Engine.Submit(ctx, UnknownPayment{PaymentID: p.ID, Source: "close"}, nil); err != nil {
		return err
	}
	return ordercore.Errorf(ordercore.EPaymentInProgress, "payment %s of order %s could not be closed at %s yet; retry shortly", p.ID, p.OrderID, p.Channel)
}

// Notify authenticates a channel notification from its raw bytes and applies it through
// the committer. It returns nil only once the notification is durably recorded: only then
// may the channel be acknowledged. A rejected notification changes nothing.
func (s *Payments) Notify(ctx context.Context, channel string, h http.Header, body []byte) (ordercore.Channel, string, error) {
	ch, err := s.channel(channel)
	if err != nil {
		return nil, "", err
	}
	n, err := ch.ParseNotification(h, body, s.Clock.Now())
	if err != nil {
		return ch, "", err
	}
	var cmd Command
	switch {
	case n.Payment != nil:
		cmd = ChannelPayment{Channel: channel, EventID: n.EventID, Source: "notify", Payment: *n.Payment}
	case n.Refund != nil:
		cmd = ChannelRefund{Channel: channel, EventID: n.EventID, Source: "notify", Refund: *n.Refund}
	default:
		return ch, "ignored", nil // an event type that moves no payment: acknowledged
	}
	res, err := s.Engine.Submit(ctx, cmd, nil)
	if err != nil {
		return ch, "", err
	}
	outcome, _ := res.Value.(string)
	return ch, outcome, nil
}

// Run sweeps until ctx ends.
func (s *Payments) Run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = limit.PaymentSyncInterval
	}
	for {
		n, err := s.Sync(ctx)
		if err != nil && ctx.Err() == nil {
			s.logger().Error("payment sync sweep failed", "err", err)
		}
		wait := interval
		if n >= limit.PaymentSyncBatchMax {
			wait = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-s.nudgeChan():
		case <-time.After(wait):
		}
	}
}

// Sync runs one sweep: the due payment attempts are queried, the due refunds sent or
// queried, at most limit.PaymentSyncConcurrency channel calls at a time. It returns how
// many were due.
func (s *Payments) Sync(ctx context.Context) (int, error) {
	now := s.Clock.Now()
	payments, err := s.Reader.DuePayments(ctx, now, limit.PaymentSyncBatchMax)
	if err != nil {
		return 0, err
	}
	refunds, err := s.Reader.DueRefunds(ctx, now, limit.PaymentSyncBatchMax)
	if err != nil {
		return 0, err
	}
	sem := make(chan struct{}, limit.PaymentSyncConcurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	run := func(fn func() error) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	for _, p := range payments {
		run(func() error { return s.syncPayment(ctx, p) })
	}
	for _, r := range refunds {
		run(func() error { return s.syncRefund(ctx, r) })
	}
	wg.Wait()
	return max(len(payments), len(refunds)), errors.Join(errs...)
}

func (s *Payments) syncPayment(ctx context.Context, p ordercore.Payment) error {
	ch, err := s.channel(p.Channel)
	if err != nil {
		return s.missed(ctx, p, err.Error())
	}
	if !p.Status.Open() {
		return s.confirmEnded(ctx, ch, p)
	}
	if o, err := s.Reader.Order(ctx, p.OrderID); err == nil && o.Status != ordercore.OrderPendingPayment {
		// Its order no longer waits for money (another attempt paid it, or it was
		// cancelled): close the trade so it cannot be paid too; a channel that says it
		// already was has its money applied (and refunded as a duplicate).
		if err := s.close(ctx, p); err != nil && ordercore.ErrorCode(err) != ordercore.EIllegalTransition &&
			ordercore.ErrorCode(err) != ordercore.EPaymentInProgress {
			return err
		}
		return nil
	}
	cp, err := ch.QueryPayment(ctx, p.ID)
	switch {
	case errors.Is(err, ordercore.ErrTradeNotFound) && p.Status != ordercore.PaymentPending:
		// The create call never took effect: the trade does not exist and never will
		// under this id, so the attempt is closed here.
		return s.apply(ctx, ChannelPayment{Channel: p.Channel, Source: "query",
			Payment: ordercore.ChannelPayment{OutTradeNo: p.ID, Status: ordercore.PaymentClosed}})
	case err != nil:
		return s.missed(ctx, p, err.Error())
	case cp.OutTradeNo != p.ID:
		return s.missed(ctx, p, fmt.Sprintf("query answered for trade %q", cp.OutTradeNo))
	case cp.Status == ordercore.PaymentPending:
		if p.Status != ordercore.PaymentPending {
			if err := s.apply(ctx, ChannelPayment{Channel: p.Channel, Source: "query", Payment: cp}); err != nil {
				return err
			}
			p.Status = ordercore.PaymentPending // what the report just made it
		}
		return s.missed(ctx, p, "pending")
	}
	return s.apply(ctx, ChannelPayment{Channel: p.Channel, Source: "query", Payment: cp})
}

// confirmEnded makes sure an ended attempt stays unpaid. A failed trade is closed at the
// channel (another try of the card could still pay it), which schedules one more step; a
// closed trade is queried once more, a while after the close, because channels take money
// for a trade closed in the same moment, and that notification may never come.
func (s *Payments) confirmEnded(ctx context.Context, ch ordercore.Channel, p ordercore.Payment) error {
	if p.Status == ordercore.PaymentFailed {
		err := ch.ClosePayment(ctx, p.ID)
		switch {
		case err == nil || errors.Is(err, ordercore.ErrTradeNotFound):
			return s.apply(ctx, ChannelPayment{Channel: p.Channel, Source: "close",
				Payment: ordercore.ChannelPayment{OutTradeNo: p.ID, Status: ordercore.PaymentClosed}})
		case !errors.Is(err, ordercore.ErrTradePaid):
			return s.apply(ctx, PaymentSyncMissed{PaymentID: p.ID, Evidence: err.Error(), Keep: true, Seen: p.Status})
		}
	}
	cp, err := ch.QueryPayment(ctx, p.ID)
	switch {
	case errors.Is(err, ordercore.ErrTradeNotFound):
		return s.missed(ctx, p, "not found")
	case err != nil:
		return s.apply(ctx, PaymentSyncMissed{PaymentID: p.ID, Evidence: err.Error(), Keep: true, Seen: p.Status})
	case cp.OutTradeNo == p.ID && cp.Status == ordercore.PaymentSucceeded:
		return s.apply(ctx, ChannelPayment{Channel: p.Channel, Source: "query", Payment: cp})
	}
	return s.missed(ctx, p, string(cp.Status))
}

func (s *Payments) apply(ctx context.Context, cmd Command) error {
	_, err := s.Engine.Submit(ctx, cmd, nil)
	return err
}

func (s *Payments) missed(ctx context.Context, p ordercore.Payment, evidence string) error {
	return s.apply(ctx, PaymentSyncMissed{PaymentID: p.ID, Evidence: evidence, Seen: p.Status})
}

// syncRefund sends a refund the first time, then queries it; a query for a refund the
// channel never received sends it again under the same refund number.
func (s *Payments) syncRefund(ctx context.Context, r ordercore.Refund) error {
	p, err := s.Reader.Payment(ctx, r.PaymentID)
	if err != nil {
		return err
	}
	ch, err := s.channel(p.Channel)
	if err != nil {
		return s.apply(ctx, RefundSyncMissed{RefundID: r.ID, Evidence: err.Error()})
	}
	var cr ordercore.ChannelRefund
	send := r.SyncAttempts == 0
	if !send {
		cr, err = ch.QueryRefund(ctx, p.ID, r.ID)
		send = errors.Is(err, ordercore.ErrTradeNotFound)
	}
	if send {
		cr, err = ch.Refund(ctx, ordercore.RefundRequest{OutTradeNo: p.ID, OutRefundNo: r.ID, Amount: r.Amount,
			Total: ordercore.Money{Amount: p.Captured, Currency: p.Amount.Currency}, Reason: r.Reason, NotifyURL: s.notifyURL(p.Channel)})
	}
	var refused *ordercore.ChannelError
	switch {
	case errors.As(err, &refused) && send:
		// A definite refusal of the refund itself: it failed, the money is released
		// and an operator is told.
		return s.apply(ctx, ChannelRefund{Channel: p.Channel, Source: "refund",
			Refund: ordercore.ChannelRefund{OutTradeNo: p.ID, OutRefundNo: r.ID, Status: ordercore.RefundFailed, Amount: r.Amount}})
	case err != nil:
		return s.apply(ctx, RefundSyncMissed{RefundID: r.ID, Evidence: err.Error()})
	case cr.Status.Terminal():
		return s.apply(ctx, ChannelRefund{Channel: p.Channel, Source: "query", Refund: cr})
	}
	return s.apply(ctx, RefundSyncMissed{RefundID: r.ID, RefundNo: cr.RefundID, Evidence: string(cr.Status)})
}

// SettleForExpiry closes the open attempts of orders that are due to expire, at their
// channels, before the expiry releases the stock: a channel that says paid pays the order
// instead. Attempts that cannot be closed yet keep their orders open until they can.
func (s *Payments) SettleForExpiry(ctx context.Context, orderIDs []string) error {
	open, err := s.Reader.OpenPayments(ctx, orderIDs)
	if err != nil || len(open) == 0 {
		return err
	}
	sem := make(chan struct{}, limit.PaymentSyncConcurrency)
	var wg sync.WaitGroup
	for _, p := range open {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.close(ctx, p); err != nil && ordercore.ErrorCode(err) != ordercore.EIllegalTransition {
				s.logger().Info("expiry waits for a payment attempt", "order", p.OrderID, "payment", p.ID, "err", err)
			}
		})
	}
	wg.Wait()
	return nil
}
