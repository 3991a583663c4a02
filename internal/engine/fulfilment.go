package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"ordercore"
	"ordercore/internal/limit"
	"ordercore/internal/order"
	"ordercore/internal/saga"
)

// Fulfilment is what happens after payment, declared in configuration: the steps of a saga
// started for every order that becomes paid, in the transaction that makes it paid (so no
// paid order goes without one). Every step is an event on the order's timeline. When a
// step fails for good, the completed steps are compensated and the order goes to
// refunding with an automatic refund of what its payment has left.
type Fulfilment struct {
	Steps  []ordercore.SagaStep
	Policy ordercore.SagaPolicy
	// Deadline, when set, is how long after the order is paid an action that still
	// fails is failed for good (POST /v1/sagas's policy.deadline_seconds).
	Deadline time.Duration
}

// fulfilmentPrefix begins the gid of every fulfilment saga. Only the engine makes sagas
// with it (fulfil): a client's saga under that gid would be taken for the order's
// fulfilment, whose failure refunds the order.
const fulfilmentPrefix = "fulfilment-"

// FulfilmentGID is the gid of an order's fulfilment saga.
func FulfilmentGID(orderID string) string { return fulfilmentPrefix + orderID }

// ReservedGID reports whether gid is reserved for the engine's own sagas: clients may
// neither submit a saga under it nor act on one as its client (an operator's audited
// actions still apply).
func ReservedGID(gid string) bool { return strings.HasPrefix(gid, fulfilmentPrefix) }

func reservedGID(gid string) error {
	return ordercore.Errorf(ordercore.ESagaGIDReserved, "gid %q: the prefix %q is reserved for ordercore's fulfilment sagas", gid, fulfilmentPrefix)
}

// FulfilmentPayload is what each fulfilment step receives: the order, and the data the
// configuration gives the step.
type FulfilmentPayload struct {
	Order ordercore.Order `json:"order"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// Validate checks a configured fulfilment as a submitted saga would be.
func (f *Fulfilment) Validate() error {
	s := ordercore.Saga{GID: "fulfilment-check", Kind: ordercore.SagaKindSaga, Steps: f.Steps, Policy: saga.Defaults(f.Policy)}
	return saga.Validate(&s)
}

// loadFulfilment loads the fulfilment sagas of the batch's orders, so that fulfil and a
// saga's end see them.
func (b *batch) loadFulfilment(ctx context.Context, tx ordercore.WriteTx) error {
	if b.cfg.Fulfilment == nil {
		return nil
	}
	var gids []string
	for id := range b.orders {
		if _, ok := b.sagas[FulfilmentGID(id)]; !ok {
			gids = append(gids, FulfilmentGID(id))
		}
	}
	if len(gids) == 0 {
		return nil
	}
	got, err := tx.Sagas(ctx, gids)
	if err != nil {
		return fmt.Errorf("load fulfilment sagas: %w", err)
	}
	for gid, s := range got {
		b.sagas[gid] = &sagaState{origVersion: s.Version, cur: s}
	}
	return nil
}

// fulfil starts the fulfilment saga of every order this batch made paid.
func (b *batch) fulfil() {
	f := b.cfg.Fulfilment
	if f == nil {
		return
	}
	for _, id := range sortedKeys(b.orders) {
		o := b.orders[id]
		if o.cur.Status != ordercore.OrderPaid || o.origStatus == ordercore.OrderPaid {
			continue
		}
		gid := FulfilmentGID(id)
		if _, ok := b.sagas[gid]; ok {
			continue // an order is paid once; its saga exists already
		}
		s := ordercore.Saga{GID: gid, Kind: ordercore.SagaKindSaga, OrderID: id, Policy: saga.Defaults(f.Policy)}
		if f.Deadline > 0 {
			s.Deadline = b.now.Add(f.Deadline)
		}
		for _, st := range f.Steps {
			st.Action.Payload = fulfilmentPayload(o.cur, st.Action.Payload)
			if st.Compensate != nil {
				c := *st.Compensate
				c.Payload = fulfilmentPayload(o.cur, c.Payload)
				st.Compensate = &c
			}
			s.Steps = append(s.Steps, st)
		}
		limit.Assert(saga.Validate(&s) == nil, "fulfilment of order %s does not validate: %v", id, saga.Validate(&s))
		saga.Start(&s, b.now)
		b.sagaEvent(&s, ordercore.EventSagaSubmitted, ordercore.SagaStatusEvent{GID: s.GID, Kind: s.Kind, Status: s.Status})
		from := s.Status
		b.runLocals(&s)
		b.sagas[gid] = &sagaState{isNew: true, cur: s}
		b.statusChanged(&s, from) // in-process steps alone may have ended it
	}
}

func fulfilmentPayload(o ordercore.Order, data json.RawMessage) json.RawMessage {
	raw, err := json.Marshal(FulfilmentPayload{Order: o, Data: data})
	limit.Assert(err == nil, "marshal fulfilment payload: %v", err)
	return raw
}

// fulfilmentEnded refunds the order of a fulfilment saga that was compensated: its steps
// failed for good, so what the shopper paid goes back. Only fulfil makes sagas under a
// fulfilment gid (SubmitSaga refuses the prefix), so such a saga is the engine's own.
func (b *batch) fulfilmentEnded(s *ordercore.Saga) {
	if s.OrderID == "" || s.Status != ordercore.SagaCompensated || s.GID != FulfilmentGID(s.OrderID) {
		return
	}
	o, ok := b.orders[s.OrderID]
	if !ok {
		return
	}
	var p *paymentState
	for _, q := range b.paymentsOf(s.OrderID) {
		if q.cur.Accepted {
			p = q
		}
	}
	if p == nil {
		return // paid by hand (no channel payment): an operator refunds it
	}
	rest := p.cur.Captured - p.cur.Refunding - p.cur.Refunded
	if rest <= 0 {
		return
	}
	if _, _, err := order.Transition(o.cur.Status, order.RequestRefund); err != nil {
		return // already refunding or shipped by hand meanwhile: nothing automatic to do
	}
	err := b.transition(o, order.RequestRefund, "", nil)
	limit.Assert(err == nil, "fulfilment refund of order %s: %v", o.cur.ID, err)
	r := b.refund(p, ordercore.RefundRequested, rest, ordercore.CleanText("fulfilment failed: "+s.Reason, limit.ReasonBytesMax))
	// The fulfilment was undone (its shipment cancelled by its compensation): the units
	// go back on the shelf once the refund is paid, but for lines another refund
	// returns already.
	for i, l := range o.cur.Lines {
		if l.Reservation == ordercore.ReservationCommitted {
			r.cur.RestockLines = append(r.cur.RestockLines, i+1)
		}
	}
	r.cur.RestockLines = b.unrestocked(p, r)
}
