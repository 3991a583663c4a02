package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

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
	skus      map[string]struct{}
	orders    map[string]struct{}
	idem      map[string]struct{}
	payments  map[string]struct{} // payment ids
	payOrders map[string]struct{} // orders whose payments and refunds are loaded
	refunds   map[string]struct{}
	reviews   map[string]struct{}
	inboxes   map[ordercore.ChannelEventKey]struct{}
	sagas     map[string]struct{}
	claims    []*ClaimSagas
	webhooks  webhookKeys
	tcc       tccKeys
}

func newKeySet() keySet {
	return keySet{skus: map[string]struct{}{}, orders: map[string]struct{}{}, idem: map[string]struct{}{},
		payments: map[string]struct{}{}, payOrders: map[string]struct{}{}, refunds: map[string]struct{}{},
		reviews: map[string]struct{}{}, inboxes: map[ordercore.ChannelEventKey]struct{}{}, sagas: map[string]struct{}{}}
}

func (k *keySet) sku(id string)                       { k.skus[id] = struct{}{} }
func (k *keySet) order(id string)                     { k.orders[id] = struct{}{} }
func (k *keySet) payment(id string)                   { k.payments[id] = struct{}{} }
func (k *keySet) payOrder(id string)                  { k.payOrders[id] = struct{}{} }
func (k *keySet) refund(id string)                    { k.refunds[id] = struct{}{} }
func (k *keySet) reviewItem(id string)                { k.reviews[id] = struct{}{} }
func (k *keySet) inbox(key ordercore.ChannelEventKey) { k.inboxes[key] = struct{}{} }
func (k *keySet) saga(gid string)                     { k.sagas[gid] = struct{}{} }

// storableKey reports whether a row could have key s: valid UTF-8 without NUL.
func storableKey(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

func (k *keySet) wantsPayments() bool {
	return len(k.payments)+len(k.payOrders)+len(k.refunds)+len(k.reviews)+len(k.inboxes) > 0
}

// list returns the keys to load, sorted. A key no row can have is left out: one that is
// not valid UTF-8 or holds a NUL (every stored key was validated as text), which
// PostgreSQL would refuse with an error that fails the whole batch; its command finds
// nothing, as for any unknown key.
func list(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if storableKey(k) {
			out = append(out, k)
		}
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
	origStatus   ordercore.OrderStatus // as loaded ("" for an order created in the batch)
	origVersion  int64
	origReserved bool // its lines were reserved when loaded
	origReleased bool // its lines were released when loaded (a cancelled order)
	cur          ordercore.Order
	isNew        bool
}

// batch is the working state of one transaction: the rows its commands touch, as loaded
// and as changed so far, and the rows to append.
type batch struct {
	now      time.Time
	cfg      *Config
	skus     map[string]*skuState
	orders   map[string]*orderState
	idem     map[string]ordercore.IdemRecord
	payments map[string]*paymentState
	refunds  map[string]*refundState
	// orderPays and payRefunds index the loaded payments by order and refunds by payment.
	orderPays  map[string][]*paymentState
	payRefunds map[string][]*refundState
	reviews    map[string]*reviewState
	inbox      map[ordercore.ChannelEventKey]bool
	sagas      map[string]*sagaState
	// sagaCache holds sagas as last committed (nil: read every saga).
	sagaCache *sagaCache
	// claimed holds each ClaimSagas command's sagas, claimed by the load.
	claimed map[*ClaimSagas][]ordercore.Saga
	webhookState
	tccState
	cs ordercore.Changeset
}

// load reads every row the calls touch: their orders, then the SKUs of those orders and of
// the commands, then their idempotency records.
func load(ctx context.Context, tx ordercore.WriteTx, now time.Time, cfg *Config, sagas *sagaCache, calls []*call) (*batch, error) {
	k := newKeySet()
	for _, c := range calls {
		c.cmd.keys(&k)
		if c.idem != nil {
			k.idem[c.idem.Key] = struct{}{}
		}
	}
	b := &batch{now: now, cfg: cfg, skus: make(map[string]*skuState, len(k.skus)),
		orders: make(map[string]*orderState, len(k.orders)), payments: map[string]*paymentState{},
		refunds: map[string]*refundState{}, orderPays: map[string][]*paymentState{}, payRefunds: map[string][]*refundState{}, reviews: map[string]*reviewState{}, inbox: map[ordercore.ChannelEventKey]bool{},
		sagas: map[string]*sagaState{}, sagaCache: sagas}
	if len(k.sagas) > 0 || len(k.claims) > 0 {
		if err := b.loadSagas(ctx, tx, &k); err != nil {
			return nil, err
		}
	}
	if k.webhooks.wanted() {
		if err := b.loadWebhooks(ctx, tx, &k); err != nil {
			return nil, err
		}
	}
	if k.tcc.wanted() {
		if err := b.loadTCC(ctx, tx, &k); err != nil {
			return nil, err
		}
	}
	if k.wantsPayments() {
		if err := b.loadPayments(ctx, tx, &k); err != nil {
			return nil, err
		}
	}
	if len(k.orders) > 0 {
		orders, err := tx.Orders(ctx, list(k.orders))
		if err != nil {
			return nil, fmt.Errorf("load orders: %w", err)
		}
		for id, o := range orders {
			b.orders[id] = &orderState{origStatus: o.Status, origVersion: o.Version, cur: o,
				origReserved: len(o.Lines) > 0 && o.Lines[0].Reservation == ordercore.ReservationReserved,
				origReleased: len(o.Lines) > 0 && o.Lines[0].Reservation == ordercore.ReservationReleased}
			for _, l := range o.Lines {
				k.sku(l.SKU)
			}
		}
	}
	if err := b.loadFulfilment(ctx, tx); err != nil {
		return nil, err
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
			} else if o.origReleased && now == ordercore.ReservationCommitted {
				ch.Revive = true
			}
			cs.OrderChanges = append(cs.OrderChanges, ch)
		}
	}
	b.paymentChanges(cs)
	b.sagaChanges(cs)
	b.webhookChanges(cs)
	b.tccChanges(cs)
	return cs
}

// paymentChanges adds the batch's payment, refund and review rows to cs.
func (b *batch) paymentChanges(cs *ordercore.Changeset) {
	for _, id := range sortedKeys(b.payments) {
		p := b.payments[id]
		if p.isNew {
			cs.NewPayments = append(cs.NewPayments, p.cur)
		} else if p.cur.Version != p.origVersion {
			cs.PaymentChanges = append(cs.PaymentChanges, ordercore.PaymentChange{Payment: p.cur, FromVersion: p.origVersion})
		}
	}
	for _, id := range sortedKeys(b.refunds) {
		r := b.refunds[id]
		if r.isNew {
			cs.NewRefunds = append(cs.NewRefunds, r.cur)
		} else if r.cur.Version != r.origVersion {
			cs.RefundChanges = append(cs.RefundChanges, ordercore.RefundChange{Refund: r.cur, FromVersion: r.origVersion})
		}
	}
	for _, id := range sortedKeys(b.reviews) {
		r := b.reviews[id]
		if r.isNew {
			cs.NewReviews = append(cs.NewReviews, r.cur)
		} else if r.cur.Version != r.origVersion {
			cs.ReviewChanges = append(cs.ReviewChanges, ordercore.ReviewChange{Item: r.cur, FromVersion: r.origVersion})
		}
	}
}

// loadPayments reads the payment side of the batch: review items, refunds and payments
// named by the commands, then every payment and refund of their orders (a success must
// see the order's other attempts to tell a duplicate), and the inbox rows. The orders
// are added to k so that the order load reads them too.
func (b *batch) loadPayments(ctx context.Context, tx ordercore.WriteTx, k *keySet) error {
	if len(k.reviews) > 0 {
		items, err := tx.ReviewItems(ctx, list(k.reviews))
		if err != nil {
			return fmt.Errorf("load review items: %w", err)
		}
		for id, r := range items {
			b.reviews[id] = &reviewState{origVersion: r.Version, cur: r}
			if r.OrderID != "" {
				k.payOrder(r.OrderID)
			}
			if r.PaymentID != "" {
				k.payment(r.PaymentID)
			}
			if r.RefundID != "" {
				k.refund(r.RefundID)
			}
		}
	}
	// The orders of the attempts and refunds named first, unlocked; then every attempt
	// and refund of those orders, locked in one statement each: every batch takes these
	// locks in the same order (ordercore.WriteTx.PaymentOrders).
	named, err := tx.PaymentOrders(ctx, list(k.payments), list(k.refunds))
	if err != nil {
		return fmt.Errorf("find orders of payments: %w", err)
	}
	for _, id := range named {
		k.payOrder(id)
	}
	orders := list(k.payOrders)
	payments, err := tx.Payments(ctx, nil, orders)
	if err != nil {
		return fmt.Errorf("load payments of orders: %w", err)
	}
	refunds, err := tx.Refunds(ctx, nil, orders)
	if err != nil {
		return fmt.Errorf("load refunds of orders: %w", err)
	}
	for _, p := range payments {
		b.addPayment(&paymentState{origVersion: p.Version, cur: p})
	}
	for _, r := range refunds {
		b.addRefund(&refundState{origVersion: r.Version, cur: r})
	}
	for _, id := range orders {
		k.order(id)
	}
	if len(k.inboxes) > 0 {
		keys := make([]ordercore.ChannelEventKey, 0, len(k.inboxes))
		for key := range k.inboxes {
			if storableKey(key.Channel) && storableKey(key.EventID) {
				keys = append(keys, key)
			}
		}
		seen, err := tx.ChannelEvents(ctx, keys)
		if err != nil {
			return fmt.Errorf("load inbox: %w", err)
		}
		b.inbox = seen
	}
	return nil
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
	raw, err := encodeJSON(data, eventDataCap)
	limit.Assert(err == nil, "marshal %s event: %v", typ, err)
	b.cs.Events = append(b.cs.Events, ordercore.Event{ID: ordercore.NewID(b.now), Type: typ,
		AggregateType: aggType, AggregateID: aggID, Time: b.now, Data: raw})
}

// jsonAppender is a value that encodes itself as encoding/json would, faster: the data of
// an order.placed event, and an ordercore.Order stored as an idempotent response.
type jsonAppender interface{ AppendJSON([]byte) []byte }

// encodeJSON encodes v as encoding/json does, through its appender when it has one
// (with room for capacity bytes).
func encodeJSON(v any, capacity int) ([]byte, error) {
	if a, ok := v.(jsonAppender); ok {
		return a.AppendJSON(make([]byte, 0, capacity)), nil
	}
	return json.Marshal(v)
}

// eventDataCap and responseBodyCap hold an order.placed event and an order of one line
// without growing.
const (
	eventDataCap    = 320
	responseBodyCap = 512
)

// move applies a stock movement of qty units to a loaded SKU and appends its ledger entry.
// The caller has checked that the movement is allowed; move asserts it again.
func (b *batch) move(s *skuState, m ordercore.StockMovement, qty int64, orderID string, lineNo int) {
	b.moveEntry(s, ordercore.NewStockEntry(s.cur.ID, m, qty, orderID, lineNo, b.now))
}

// moveEntry applies a ledger entry to a loaded SKU and appends it.
func (b *batch) moveEntry(s *skuState, e ordercore.StockEntry) {
	s.cur.Total += e.DTotal
	s.cur.Reserved += e.DReserved
	s.cur.Sold += e.DSold
	s.cur.UpdatedAt = b.now
	if !s.isNew && s.cur.Version == s.orig.Version {
		s.cur.Version++ // the store's conditional UPDATE raises it once per batch
	}
	limit.Assert(s.cur.Available() >= 0 && s.cur.Reserved >= 0 && s.cur.Sold >= 0,
		"%+v breaks the balance of sku %s: %+v", e, s.cur.ID, s.cur)
	b.cs.Ledger = append(b.cs.Ledger, e)
}
