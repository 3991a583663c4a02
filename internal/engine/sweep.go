package engine

import (
	"context"
	"fmt"
	"time"

	"ordercore"
	"ordercore/internal/limit"
)

// Expirer closes unpaid orders after their expires_at. Deadlines are an index, not timers:
// each sweep reads the due orders over the pending-expiry index, at most
// limit.ExpiryBatchMax at a time, and submits one ExpireOrders command for them; then it
// sleeps until the next deadline or limit.ExpirySweepInterval, whichever is sooner.
//
// An order with a payment attempt open at a channel is closed there first (Payments,
// when set): if the channel says it was paid, the order is paid instead of expired.
type Expirer struct {
	Engine   *Engine
	Reader   ordercore.Reader
	Clock    ordercore.Clock
	Payments *Payments
	OnErr    func(error)
}

// Run sweeps until ctx ends.
func (x *Expirer) Run(ctx context.Context) {
	for {
		n, err := x.Sweep(ctx)
		if err != nil && ctx.Err() == nil && x.OnErr != nil {
			x.OnErr(err)
		}
		wait := time.Duration(0)
		if n < limit.ExpiryBatchMax {
			wait = x.untilNext(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Sweep expires one batch of due orders and returns how many were due.
func (x *Expirer) Sweep(ctx context.Context) (int, error) {
	ids, err := x.Reader.ExpiredOrders(ctx, x.Clock.Now(), limit.ExpiryBatchMax)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	if x.Payments != nil {
		if err := x.Payments.SettleForExpiry(ctx, ids); err != nil {
			return 0, err
		}
	}
	_, err = x.Engine.Submit(ctx, ExpireOrders{OrderIDs: ids}, nil)
	return len(ids), err
}

func (x *Expirer) untilNext(ctx context.Context) time.Duration {
	next, ok, err := x.Reader.NextExpiry(ctx)
	if err != nil || !ok {
		return limit.ExpirySweepInterval
	}
	d := next.Sub(x.Clock.Now())
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return min(d, limit.ExpirySweepInterval)
}

// Pruner deletes stored Idempotency-Key responses older than limit.IdemKeyTTL.
type Pruner struct {
	Engine *Engine
	Reader ordercore.Reader
	Clock  ordercore.Clock
	OnErr  func(error)
}

// Run prunes every limit.IdemPruneInterval until ctx ends.
func (p *Pruner) Run(ctx context.Context) {
	t := time.NewTicker(limit.IdemPruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := p.Prune(ctx); err != nil && ctx.Err() == nil && p.OnErr != nil {
			p.OnErr(err)
		}
	}
}

// Prune deletes every stored response older than limit.IdemKeyTTL, limit.IdemPruneMax
// per command, one command after the other so that other commands go between them, until
// none is left: keys stored faster than one command deletes them in an interval are
// still all pruned. It returns the number of commands submitted.
func (p *Pruner) Prune(ctx context.Context) (int, error) {
	before := p.Clock.Now().Add(-limit.IdemKeyTTL)
	for n := 1; ; n++ {
		if _, err := p.Engine.Submit(ctx, PruneIdempotency{Before: before}, nil); err != nil {
			return n, err
		}
		oldest, ok, err := p.Reader.OldestIdempotencyKey(ctx)
		if err != nil || !ok || !oldest.Before(before) {
			return n, err
		}
		if n == limit.IdemPrunePassMax {
			// Bounded, so that a store whose prunes delete nothing cannot keep a pass
			// going: the next interval goes on.
			return n, fmt.Errorf("idempotency prune: keys older than %s left after %d commands", before.Format(time.RFC3339), n)
		}
	}
}
