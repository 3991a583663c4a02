package engine

import (
	"slices"
	"time"

	"ordercore"
	"ordercore/internal/limit"
)

// OpenDiscrepancies opens a review item for each discrepancy of a reconciliation that no
// item of an earlier run holds yet (ReviewID empty), in one transaction; the reconciler
// sends a run's discrepancies in chunks of at most limit.ReconDiscrepanciesMax, then
// records its report (RecordReconciliation). Result: []ordercore.Discrepancy, with their
// review ids.
type OpenDiscrepancies struct {
	Reconciliation string // ordercore.ReconciliationID, kept in each item's evidence
	Discrepancies  []ordercore.Discrepancy
}

func (c OpenDiscrepancies) keys(*keySet) {}

func (c OpenDiscrepancies) execute(b *batch) (any, error) {
	if len(c.Discrepancies) > limit.ReconDiscrepanciesMax {
		return nil, ordercore.Errorf(ordercore.EINVALID, "at most %d discrepancies at once, not %d", limit.ReconDiscrepanciesMax, len(c.Discrepancies))
	}
	out := slices.Clone(c.Discrepancies)
	for i := range out {
		d := &out[i]
		if d.ReviewID != "" {
			continue
		}
		item := b.review(d.Kind, d.OrderID, d.PaymentID, d.RefundID, map[string]any{
			"reconciliation": c.Reconciliation, "channel": d.Channel, "recorded": d.Recorded, "detail": d.Detail})
		d.ReviewID, d.ReviewStatus = item.cur.ID, ordercore.ReviewOpen
	}
	return out, nil
}

// RecordReconciliation records the report of one reconciliation of a channel's day
// (internal/recon): the reconciliation.completed event whose data is the report, on the
// aggregate ordercore.ReconciliationID. What the statement repaired was applied before,
// through ChannelPayment and ChannelRefund, and its discrepancies have their review items
// (OpenDiscrepancies). Result: ordercore.Reconciliation.
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
		return ordercore.Errorf(ordercore.EINVALID, "a reconciliation's report lists at most %d discrepancies, not %d",
			limit.ReconDiscrepanciesMax, len(r.Discrepancies))
	}
	for _, d := range r.Discrepancies {
		if d.ReviewID == "" {
			return ordercore.Errorf(ordercore.EINVALID, "discrepancy %s of %s/%s has no review item", d.Kind, d.PaymentID, d.RefundID)
		}
	}
	return nil
}

func (c RecordReconciliation) execute(b *batch) (any, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	r := c.Report
	r.Discrepancies = slices.Clone(r.Discrepancies)
	if r.Discrepancies == nil {
		r.Discrepancies = []ordercore.Discrepancy{}
	}
	b.event(ordercore.AggregateReconciliation, r.Channel+"/"+r.Day, ordercore.EventReconciliationCompleted, r)
	return r, nil
}
