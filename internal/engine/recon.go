package engine

import (
	"slices"
	"time"

	"ordercore"
	"ordercore/internal/limit"
)

// RecordReconciliation records one reconciliation of a channel's day (internal/recon):
// a review item for each discrepancy that no open item holds yet, and the
// reconciliation.completed event whose data is the report, on the aggregate
// ordercore.ReconciliationID. What the statement repaired was applied before, through
// ChannelPayment and ChannelRefund. Result: ordercore.Reconciliation, with the review ids.
type RecordReconciliation struct {
	Report ordercore.Reconciliation
}

func (c RecordReconciliation) keys(*keySet) {}

// Validate checks the report's shape; the engine checks nothing else of it, since only
// the reconciler, not a client, makes one.
func (c RecordReconciliation) Validate() error {
	r := c.Report
	if r.Channel == "" || len(r.Channel) > limit.IDBytesMax {
		return ordercore.Errorf(ordercore.EINVALID, "a reconciliation needs a channel name of 1 to %d bytes", limit.IDBytesMax)
	}
	if _, err := time.Parse(time.DateOnly, r.Day); err != nil {
		return ordercore.Errorf(ordercore.EINVALID, "a reconciliation's day must be YYYY-MM-DD, not %q", r.Day)
	}
	if len(r.Discrepancies) > limit.ReconDiscrepanciesMax {
		return ordercore.Errorf(ordercore.EINVALID, "a reconciliation records at most %d discrepancies, not %d",
			limit.ReconDiscrepanciesMax, len(r.Discrepancies))
	}
	return nil
}

func (c RecordReconciliation) execute(b *batch) (any, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	r := c.Report
	r.Discrepancies = slices.Clone(r.Discrepancies)
	id := r.Channel + "/" + r.Day
	for i := range r.Discrepancies {
		d := &r.Discrepancies[i]
		if d.ReviewID != "" {
			d.Reopened = true // an open item of an earlier run holds it
			continue
		}
		item := b.review(d.Kind, d.OrderID, d.PaymentID, d.RefundID, map[string]any{
			"reconciliation": id, "channel": d.Channel, "recorded": d.Recorded, "detail": d.Detail})
		d.ReviewID = item.cur.ID
	}
	if r.Discrepancies == nil {
		r.Discrepancies = []ordercore.Discrepancy{}
	}
	b.event(ordercore.AggregateReconciliation, id, ordercore.EventReconciliationCompleted, r)
	return r, nil
}
