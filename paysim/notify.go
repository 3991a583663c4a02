package paysim

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"time"

	"ordercore/channel/sim"
)

// Copies of a notification. Only the original is retried: the others are one-shot, as
// a channel's extra send or an attacker's replay would be.
const (
	CopyOriginal  = "original"
	CopyDuplicate = "duplicate" // the dup fault: the same event sent again
	CopyForged    = "forged"    // the forge fault: signed with a key that is not the merchant's
	CopyTampered  = "tampered"  // the tamper fault: validly signed, then the amount changed
)

// forgedSecret signs forged copies: any key but the merchant's would do.
const forgedSecret = "paysim-forged-secret"

// Delivery is what the simulator did with one copy of one notification.
type Delivery struct {
	EventID     string    `json:"event_id"`
	Type        string    `json:"type"`
	MerchantID  string    `json:"merchant_id"`
	OutTradeNo  string    `json:"out_trade_no"`
	OutRefundNo string    `json:"out_refund_no,omitempty"`
	URL         string    `json:"url"`
	Copy        string    `json:"copy"`
	Dropped     bool      `json:"dropped,omitempty"` // the drop fault, or a full queue
	Acked       bool      `json:"acked"`             // a 2xx was received
	GaveUp      bool      `json:"gave_up,omitempty"` // the retry schedule ran out
	Attempts    []Attempt `json:"attempts"`
	NextAt      time.Time `json:"next_at,omitzero"` // when the next attempt is due
}

// Attempt is one POST of a notification.
type Attempt struct {
	At     time.Time `json:"at"`
	Status int       `json:"status,omitempty"` // the merchant's HTTP status; 0 if none
	Error  string    `json:"error,omitempty"`
}

func (d *Delivery) done() bool {
	return d.Dropped || d.Acked || d.GaveUp || (d.Copy != CopyOriginal && len(d.Attempts) > 0)
}

type delivery struct {
	rec      Delivery
	secrets  []string
	signBody []byte // what the signature covers
	sendBody []byte // what is sent: differs from signBody only for a tampered copy
	retries  bool
	due      time.Time // real time: the schedule runs on the wall clock, scaled
	index    int       // in the queue; -1 when not queued
}

// notifyLocked makes the event and its copies and queues them, drawing the notification
// faults. Nothing is sent without a notify URL.
func (s *Server) notifyLocked(ms *merchantState, typ, url string, data any, outTradeNo, outRefundNo string, now time.Time) {
	if url == "" {
		return
	}
	raw, _ := json.Marshal(data) // Trade and Refund always marshal
	ev := sim.Event{ID: s.newID("evt_", now), Type: typ, Created: now, Data: raw}
	body, _ := json.Marshal(ev)
	f := s.cfg.Faults
	// Every kind is drawn on every notification so that the draws depend only on the
	// sequence of notifications, not on which other knobs are on.
	drop := s.dice.hit(dDrop, f.DropRate)
	delay := time.Duration(s.dice.n(dDelay, int64(f.DelayMax)))
	dup := s.dice.hit(dDup, f.DupRate)
	dupLater := time.Duration(s.dice.n(dDupTiming, 2*int64(dupLaterMax)))
	forge := s.dice.hit(dForge, f.ForgeRate)
	tamper := s.dice.hit(dTamper, f.TamperRate)

	rec := Delivery{EventID: ev.ID, Type: typ, MerchantID: ms.id, OutTradeNo: outTradeNo, OutRefundNo: outRefundNo, URL: url, Copy: CopyOriginal, Attempts: []Attempt{}}
	due := time.Now().Add(delay)
	orig := &delivery{rec: rec, secrets: ms.secrets(), signBody: body, sendBody: body, retries: true, due: due}
	orig.rec.Dropped = drop
	s.enqueueLocked(orig)
	if dup && !drop {
		d := *orig
		d.rec.Copy, d.retries = CopyDuplicate, false
		// Half the duplicates go at the same moment as the original, to race it.
		if dupLater > dupLaterMax {
			d.due = due.Add(dupLater - dupLaterMax)
		}
		s.enqueueLocked(&d)
	}
	if forge {
		d := *orig
		d.rec.Copy, d.rec.Dropped, d.retries, d.secrets = CopyForged, false, false, []string{forgedSecret}
		s.enqueueLocked(&d)
	}
	if tamper {
		d := *orig
		d.rec.Copy, d.rec.Dropped, d.retries = CopyTampered, false, false
		d.sendBody = tampered(ev, data)
		s.enqueueLocked(&d)
	}
}

// tampered returns the event with its amounts changed, to be sent under the signature
// of the original bytes.
func tampered(ev sim.Event, data any) []byte {
	switch v := data.(type) {
	case sim.Trade:
		v.Amount.Amount = v.Amount.Amount*10 + 1
		v.PaidAmount.Amount = v.Amount.Amount
		ev.Data, _ = json.Marshal(v)
	case sim.Refund:
		v.Amount.Amount = v.Amount.Amount*10 + 1
		ev.Data, _ = json.Marshal(v)
	}
	b, _ := json.Marshal(ev)
	return b
}

// enqueueLocked records d and queues it unless it is dropped; a full queue drops it.
func (s *Server) enqueueLocked(d *delivery) {
	d.index = -1
	if len(s.deliveries) >= DeliveriesMax {
		s.deliveries = slices.DeleteFunc(s.deliveries, func(o *delivery) bool { return o.rec.done() })
	}
	if len(s.deliveries) >= DeliveriesMax || len(s.queue)+s.inFlight >= QueueMax {
		s.log.Warn("paysim: notification not delivered: bounds reached", "event", d.rec.EventID, "copy", d.rec.Copy)
		d.rec.Dropped = true
	}
	if len(s.deliveries) < DeliveriesMax {
		s.deliveries = append(s.deliveries, d)
	}
	if d.rec.Dropped {
		return
	}
	s.pushLocked(d)
}

func (s *Server) pushLocked(d *delivery) {
	d.rec.NextAt = d.due.UTC()
	heap.Push(&s.queue, d)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Deliveries returns a copy of the notification records, oldest first.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delivery, len(s.deliveries))
	for i, d := range s.deliveries {
		out[i] = d.rec
		out[i].Attempts = slices.Clone(d.rec.Attempts)
	}
	return out
}

// dispatch hands due deliveries to the workers in due order.
func (s *Server) dispatch() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		var next *delivery
		wait := time.Hour
		if len(s.queue) > 0 {
			if w := time.Until(s.queue[0].due); w <= 0 {
				next = heap.Pop(&s.queue).(*delivery)
				s.inFlight++
			} else {
				wait = w
			}
		}
		s.mu.Unlock()
		if next != nil {
			select {
			case s.work <- next:
				continue
			case <-s.ctx.Done():
				return
			}
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-s.wake:
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *Server) deliver() {
	defer s.wg.Done()
	for {
		select {
		case d := <-s.work:
			s.attempt(d)
		case <-s.ctx.Done():
			return
		}
	}
}

// attempt POSTs d once, signed now, and records the answer; a failed original is queued
// again on the retry schedule.
func (s *Server) attempt(d *delivery) {
	now := s.now()
	status, errText := s.post(d, now)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
	if s.ctx.Err() != nil {
		return // closing: this attempt did not really happen
	}
	d.rec.Attempts = append(d.rec.Attempts, Attempt{At: now, Status: status, Error: errText})
	d.rec.NextAt = time.Time{}
	n := len(d.rec.Attempts)
	switch {
	case status >= 200 && status < 300:
		d.rec.Acked = true
	case !d.retries:
	case n-1 < len(RetrySchedule):
		d.due = time.Now().Add(s.scaled(RetrySchedule[n-1]))
		s.pushLocked(d)
	default:
		d.rec.GaveUp = true
		s.log.Warn("paysim: notification given up", "event", d.rec.EventID, "attempts", n)
	}
}

func (s *Server) post(d *delivery, now time.Time) (int, string) {
	ctx, cancel := context.WithTimeout(s.ctx, DeliveryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.rec.URL, bytes.NewReader(d.sendBody))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "paysim")
	req.Header.Set(sim.HeaderSignature, sim.SignRotating(d.secrets, now, d.signBody))
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, ackBytesMax))
	return resp.StatusCode, ""
}

// deliveryQueue is a min-heap of deliveries by due time.
type deliveryQueue []*delivery

func (q deliveryQueue) Len() int           { return len(q) }
func (q deliveryQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q deliveryQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *deliveryQueue) Push(x any) {
	d := x.(*delivery)
	d.index = len(*q)
	*q = append(*q, d)
}
func (q *deliveryQueue) Pop() any {
	old := *q
	d := old[len(old)-1]
	old[len(old)-1] = nil
	d.index = -1
	*q = old[:len(old)-1]
	return d
}
