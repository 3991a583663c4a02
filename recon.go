package ordercore

import (
	"context"
	"errors"
	"time"
)

// Statement row types: money a channel took, and money it paid back.
const (
	StatementPayment = "payment"
	StatementRefund  = "refund"
)

// StatementRow is one money movement on a channel's daily statement: a payment the
// channel took (OutTradeNo, what the shopper paid) or a refund it paid out (OutTradeNo and
// OutRefundNo, the refund's amount).
type StatementRow struct {
	Type        string    `json:"type"`
	OutTradeNo  string    `json:"out_trade_no"`
	OutRefundNo string    `json:"out_refund_no,omitempty"`
	TxnID       string    `json:"txn_id,omitempty"`
	RefundID    string    `json:"refund_id,omitempty"`
	Amount      Money     `json:"amount"`
	Time        time.Time `json:"time"`
}

// Statement is a channel's statement of one UTC day, downloaded and checked complete by
// its adapter (a summary's counts and totals, or a checksum, as the channel provides).
type Statement struct {
	Day  time.Time
	Rows []StatementRow
}

// StatementSource is a Channel that publishes a daily statement of the money it moved,
// in the manner of Alipay's and WeChat Pay's T+1 bills: daily reconciliation reads it.
type StatementSource interface {
	// DailyStatement downloads, checks and parses the statement of the UTC day that
	// starts at day. A statement the channel has not published yet is
	// ErrStatementNotReady; a download that fails its check is an error, never a partial
	// statement.
	DailyStatement(ctx context.Context, day time.Time) (Statement, error)
}

// ErrStatementNotReady says a channel has not published a day's statement yet.
var ErrStatementNotReady = errors.New("channel: statement not ready")

// Discrepancy kinds found by reconciliation, each also a review item's kind. A channel's
// money on a trade or refund ordercore does not know opens an orphan_notification item
// (ReviewOrphan), as a notification of it would.
const (
	// ReviewReconAmount: the statement's amount for a payment or refund differs from what
	// ordercore recorded as taken or paid back.
	ReviewReconAmount = "recon_amount_mismatch"
	// ReviewReconMissing: ordercore recorded money taken or paid back that the channel's
	// statement does not list and its query does not confirm.
	ReviewReconMissing = "recon_missing_at_channel"
	// ReviewReconRefundStatus: the channel paid out a refund ordercore holds as failed.
	ReviewReconRefundStatus = "recon_refund_status"
	// ReviewReconUnrecorded: the statement lists money the channel moved that ordercore
	// could not record even when told (its records had moved on in a way the channel's
	// report cannot follow).
	ReviewReconUnrecorded = "recon_not_recorded"
)

// Discrepancy is one difference between a statement and ordercore's records that
// reconciliation could not repair: it goes to the review queue (ReviewID).
type Discrepancy struct {
	Kind      string `json:"kind" enum:"recon_amount_mismatch,recon_missing_at_channel,recon_refund_status,recon_not_recorded" doc:"The review item's kind"`
	OrderID   string `json:"order_id,omitempty"`
	PaymentID string `json:"payment_id,omitempty" doc:"The payment attempt: the channel's out_trade_no"`
	RefundID  string `json:"refund_id,omitempty" doc:"The refund: the channel's out_refund_no"`
	// Channel is what the channel says moved (absent when it lists nothing); Recorded is
	// what ordercore recorded.
	Channel  *Money `json:"channel,omitempty" doc:"What the channel says moved"`
	Recorded *Money `json:"recorded,omitempty" doc:"What ordercore recorded"`
	Detail   string `json:"detail" doc:"The difference, in words"`
	// ReviewID is the review item that holds it. Existing says an item of an earlier run
	// held it already, so none was opened again; ReviewStatus is that item's status (an
	// operator who settled it with the channel resolved it: it is not opened again).
	ReviewID     string       `json:"review_id,omitempty" doc:"The review item that holds it"`
	Existing     bool         `json:"existing_review,omitempty" doc:"An item of an earlier run holds it; none was opened"`
	ReviewStatus ReviewStatus `json:"review_status,omitempty" enum:"open,resolved" doc:"That item's status: resolved when an operator settled it"`
}

// Reconciliation is the report of one reconciliation of a channel's day, the data of its
// reconciliation.completed event (aggregate "reconciliation", id ReconciliationID).
type Reconciliation struct {
	Channel string `json:"channel"`
	Day     string `json:"day" doc:"The UTC day, YYYY-MM-DD"`
	// Rows is the statement's rows: Payments and Refunds of them.
	Rows     int `json:"rows" doc:"Rows of the statement"`
	Payments int `json:"payments" doc:"Payment rows"`
	Refunds  int `json:"refunds" doc:"Refund rows"`
	// Matched rows agreed with ordercore's records as they were.
	Matched int `json:"matched" doc:"Rows ordercore had recorded as the channel says"`
	// Repaired rows told ordercore what it had missed (a lost notification, a query not
	// yet made): they were applied through the same path as the channel's notifications.
	Repaired int `json:"repaired" doc:"Rows this run applied: money ordercore had missed"`
	// Confirmed is money ordercore recorded on the day that the statement does not list,
	// and the channel's query confirmed (a payment the channel dates on another day).
	Confirmed int `json:"confirmed" doc:"Money ordercore recorded on the day that the statement does not list and the channel dates on another day"`
	// SettledOutside is refunds ordercore recorded as paid back on the day that the
	// channel took but could not pay out: an operator settled them with the shopper
	// outside the channel (a dismissed refund_abnormal item).
	SettledOutside int `json:"settled_outside" doc:"Refunds the channel could not pay out that an operator settled outside it"`
	// Orphans are rows of trades or refunds ordercore does not know, each an
	// orphan_notification review item.
	Orphans int `json:"orphans" doc:"Rows of trades or refunds ordercore does not know, each an orphan_notification item"`
	// Discrepancies lists at most limit.ReconDiscrepanciesMax of the DiscrepanciesFound;
	// every one found has its review item.
	Discrepancies      []Discrepancy `json:"discrepancies" doc:"At most 500 of the discrepancies found"`
	DiscrepanciesFound int           `json:"discrepancies_found" doc:"Every discrepancy found; each has its review item"`
	// Partial says the run began before the day ended: the statement may not hold the
	// whole day yet, and the daily reconciler runs the day again once it has ended.
	Partial bool `json:"partial" doc:"The run began before the day ended; the daily run does the day again"`
	// Paid and Refunded are the statement's totals by currency.
	Paid     []Money   `json:"paid" doc:"The statement's payments, by currency"`
	Refunded []Money   `json:"refunded" doc:"The statement's refunds, by currency"`
	Started  time.Time `json:"started" doc:"When the run began"`
}

// Aggregate and event of reconciliations.
const (
	AggregateReconciliation      = "reconciliation"
	EventReconciliationCompleted = "reconciliation.completed"
)

// ReconciliationID is the aggregate id of a channel's day: "sim/2026-01-02".
func ReconciliationID(channel string, day time.Time) string {
	return channel + "/" + day.UTC().Format(time.DateOnly)
}
