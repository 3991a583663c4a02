package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"ordercore"
	"ordercore/internal/limit"
)

// Command is a state change executed by the committer. execute runs inside the batch's
// transaction against the working state: it must check everything it needs before it
// changes anything, so that a command that fails leaves the working state as it found it.
type Command interface {
	// keys adds the rows the command touches to k, so the batch loads them at once.
	keys(k *keySet)
	execute(b *batch) (any, error)
}

type keySet struct {
	skus   map[string]struct{}
	orders map[string]struct{}
	idem   map[string]struct{}
}

func (k *keySet) sku(id string)   { k.skus[id] = struct{}{} }
func (k *keySet) order(id string) { k.orders[id] = struct{}{} }

func list(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out) // a fixed lock order on stores that lock rows
	return out
}

type skuState struct {
	orig  ordercore.SKU
	cur   ordercore.SKU
	isNew bool
}

type orderState struct {
	origVersion  int64
	origReserved bool // its lines were reserved when loaded
	cur          ordercore.Order
	isNew        bool
}

// batch is the working state of one transaction: the rows its commands touch, as loaded
// and as changed so far, and the rows to append.
type batch struct {
	now    time.Time
	skus   map[string]*skuState
	orders map[string]*orderState
	idem   map[string]ordercore.IdemRecord
	cs     ordercore.Changeset
}

// load reads every row the calls touch: their orders, then the SKUs of those orders and of
// the commands, then their idempotency records.
func load(ctx context.Context, tx ordercore.WriteTx, now time.Time, calls []*call) (*batch, error) {
	k := keySet{skus: map[string]struct{}{}, orders: map[string]struct{}{}, idem: map[string]struct{}{}}
	for _, c := range calls {
		c.cmd.keys(&k)
		if c.idem != nil {
			k.idem[c.idem.Key] = struct{}{}
		}
	}
	b := &batch{now: now, skus: make(map[string]*skuState, len(k.skus)),
		orders: make(map[string]*orderState, len(k.orders))}
	if len(k.orders) > 0 {
		orders, err := tx.Orders(ctx, list(k.orders))
		if err != nil {
			return nil, fmt.Errorf("load orders: %w", err)
		}
		for id, o := range orders {
			b.orders[id] = &orderState{origVersion: o.Version, cur: o,
				origReserved: len(o.Lines) > 0 && o.Lines[0].Reservation == ordercore.ReservationReserved}
			for _, l := range o.Lines {
				k.sku(l.SKU)
			}
		}
	}
	if len(k.skus) > 0 {
		skus, err := tx.SKUs(ctx, list(k.skus))
		if err != nil {
			return nil, fmt.Errorf("load skus: %w", err)
		}
		for id, s := range skus {
			limit.Assert(s.Available() >= 0 && s.Reserved >= 0 && s.Sold >= 0, "sku %s loaded with negative balance %+v", id, s)
			b.skus[id] = &skuState{orig: s, cur: s}
		}
	}
	b.idem = map[string]ordercore.IdemRecord{}
	if len(k.idem) > 0 {
		recs, err := tx.Idempotency(ctx, list(k.idem))
		if err != nil {
			return nil, fmt.Errorf("load idempotency keys: %w", err)
		}
		b.idem = recs
	}
	return b, nil
}

// changeset turns the working state into the rows to write: one StockChange per SKU whose
// balance moved (the conditional update that makes a hot SKU cheap), one OrderChange per
// existing order that moved, and the appended rows.
func (b *batch) changeset() *ordercore.Changeset {
	cs := &b.cs
	for _, id := range sortedKeys(b.skus) {
		s := b.skus[id]
		limit.Assert(s.cur.Available() >= 0, "sku %s would end the batch oversold: %+v", id, s.cur)
		if s.isNew {
			cs.NewSKUs = append(cs.NewSKUs, s.cur)
			continue
		}
		ch := ordercore.StockChange{SKU: id, DTotal: s.cur.Total - s.orig.Total,
			DReserved: s.cur.Reserved - s.orig.Reserved, DSold: s.cur.Sold - s.orig.Sold, At: b.now}
		if ch.DTotal != 0 || ch.DReserved != 0 || ch.DSold != 0 {
			cs.StockChanges = append(cs.StockChanges, ch)
		}
	}
	for _, id := range sortedKeys(b.orders) {
		o := b.orders[id]
		if o.isNew {
			cs.NewOrders = append(cs.NewOrders, o.cur)
		} else if o.cur.Version != o.origVersion {
			limit.Assert(o.cur.Version > o.origVersion, "order %s version went back", id)
			ch := ordercore.OrderChange{Order: o.cur, FromVersion: o.origVersion}
			if now := o.cur.Lines[0].Reservation; o.origReserved && now != ordercore.ReservationReserved {
				ch.Resolve = now
			}
			cs.OrderChanges = append(cs.OrderChanges, ch)
		}
	}
	return cs
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// event appends an event of the batch.
func (b *batch) event(aggType, aggID, typ string, data any) {
	raw, err := json.Marshal(data)
	limit.Assert(err == nil, "marshal %s event: %v", typ, err)
	b.cs.Events = append(b.cs.Events, ordercore.Event{ID: ordercore.NewID(b.now), Type: typ,
		AggregateType: aggType, AggregateID: aggID, Time: b.now, Data: raw})
}

// move applies a stock movement of qty units to a loaded SKU and appends its ledger entry.
// The caller has checked that the movement is allowed; move asserts it again.
func (b *batch) move(s *skuState, m ordercore.StockMovement, qty int64, orderID string, lineNo int) {
	e := ordercore.NewStockEntry(s.cur.ID, m, qty, orderID, lineNo, b.now)
	s.cur.Total += e.DTotal
	s.cur.Reserved += e.DReserved
	s.cur.Sold += e.DSold
	s.cur.UpdatedAt = b.now
	if !s.isNew && s.cur.Version == s.orig.Version {
		s.cur.Version++ // the store's conditional UPDATE raises it once per batch
	}
	limit.Assert(s.cur.Available() >= 0 && s.cur.Reserved >= 0 && s.cur.Sold >= 0,
		"%s of %d on sku %s breaks its balance: %+v", m, qty, s.cur.ID, s.cur)
	b.cs.Ledger = append(b.cs.Ledger, e)
}
