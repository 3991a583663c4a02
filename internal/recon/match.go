package recon

import (
	"fmt"

	"ordercore"
)

// Local is ordercore's side of one channel's day, as the reconciler read it.
type Local struct {
	// Payments by id (the channel's out_trade_no): those the statement's rows name, and
	// those of Moved, that ordercore knows.
	Payments map[string]ordercore.Payment
	// Refunds by id (the channel's out_refund_no), likewise.
	Refunds map[string]ordercore.Refund
	// Moved is the money ordercore recorded as taken (captures) or paid back (refund
	// commits) on payments at the channel during the day.
	Moved []ordercore.MoneyEntry
}

// Verdict is what one statement row asks of ordercore.
type Verdict int

// Verdicts of a row.
const (
	// Matched: ordercore recorded the row's money as the statement lists it.
	Matched Verdict = iota
	// Apply: ordercore has not recorded the money as moved yet (a notification lost, a
	// query not yet made): the row is applied through the channel's own path.
	Apply
	// Unknown: ordercore knows no such trade or refund at the channel: applied, it opens
	// an orphan review item as a notification of it would.
	Unknown
	// Differs: the records disagree in a way the statement cannot repair.
	Differs
)

// RowVerdict is Match's decision on one row.
type RowVerdict struct {
	Row         ordercore.StatementRow
	Verdict     Verdict
	Discrepancy *ordercore.Discrepancy // with Differs
}

// Plan is what a statement asks of ordercore.
type Plan struct {
	Rows []RowVerdict
	// Unlisted is money ordercore recorded as moved during the day that no row lists:
	// the channel's answer to a query decides (UnlistedVerdict) whether it dates it on
	// another day or does not have it.
	Unlisted []ordercore.MoneyEntry
}

// Match compares a channel's statement with ordercore's records, both ways: each row
// against the payment or refund it names, and each movement ordercore recorded on the
// day against the rows. It is pure: the reconciler reads Local, and acts on the Plan.
//
// final says the rows to Apply were applied already: a row still not recorded is then a
// discrepancy (recon_not_recorded, see unrecorded), never a second application.
func Match(channel string, st ordercore.Statement, local Local, final bool) Plan {
	var plan Plan
	listedPay, listedRefund := map[string]bool{}, map[string]bool{}
	for _, row := range st.Rows {
		var v RowVerdict
		switch row.Type {
		case ordercore.StatementPayment:
			listedPay[row.OutTradeNo] = true
			v = matchPayment(channel, row, local, final)
		case ordercore.StatementRefund:
			listedRefund[row.OutRefundNo] = true
			v = matchRefund(channel, row, local, final)
		default:
			v = RowVerdict{Row: row, Verdict: Differs, Discrepancy: &ordercore.Discrepancy{Kind: ordercore.ReviewReconAmount,
				PaymentID: row.OutTradeNo, Channel: moneyPtr(row.Amount), Detail: fmt.Sprintf("a statement row of unknown type %q", row.Type)}}
		}
		plan.Rows = append(plan.Rows, v)
	}
	for _, m := range local.Moved {
		switch m.Movement {
		case ordercore.MoneyCapture:
			if !listedPay[m.PaymentID] {
				plan.Unlisted = append(plan.Unlisted, m)
			}
		case ordercore.MoneyRefundCommit:
			if !listedRefund[m.RefundID] {
				plan.Unlisted = append(plan.Unlisted, m)
			}
		}
	}
	return plan
}

func matchPayment(channel string, row ordercore.StatementRow, local Local, final bool) RowVerdict {
	v := RowVerdict{Row: row}
	p, ok := local.Payments[row.OutTradeNo]
	switch {
	case !ok || p.Channel != channel:
		v.Verdict = Unknown
	case p.Captured == 0 && !final:
		v.Verdict = Apply
	case p.Captured == 0:
		v.Verdict, v.Discrepancy = Differs, unrecorded(row, p.OrderID, p.ID, "", string(p.Status))
	case p.Captured != row.Amount.Amount || p.Amount.Currency != row.Amount.Currency:
		recorded := ordercore.Money{Amount: p.Captured, Currency: p.Amount.Currency}
		v.Verdict, v.Discrepancy = Differs, &ordercore.Discrepancy{Kind: ordercore.ReviewReconAmount, OrderID: p.OrderID,
			PaymentID: p.ID, Channel: moneyPtr(row.Amount), Recorded: &recorded,
			Detail: fmt.Sprintf("the statement lists %s taken on payment %s; ordercore recorded %s", row.Amount, p.ID, recorded)}
	default:
		v.Verdict = Matched
	}
	return v
}

func matchRefund(channel string, row ordercore.StatementRow, local Local, final bool) RowVerdict {
	v := RowVerdict{Row: row}
	r, ok := local.Refunds[row.OutRefundNo]
	if ok {
		if p, known := local.Payments[r.PaymentID]; !known || p.Channel != channel {
			ok = false
		}
	}
	switch {
	case !ok:
		v.Verdict = Unknown
	case r.Status == ordercore.RefundFailed:
		v.Verdict, v.Discrepancy = Differs, &ordercore.Discrepancy{Kind: ordercore.ReviewReconRefundStatus, OrderID: r.OrderID,
			PaymentID: r.PaymentID, RefundID: r.ID, Channel: moneyPtr(row.Amount),
			Detail: fmt.Sprintf("the statement lists refund %s paid out (%s); ordercore holds it as failed and its money as not paid back", r.ID, row.Amount)}
	case r.Status != ordercore.RefundSucceeded && !final:
		v.Verdict = Apply
	case r.Status != ordercore.RefundSucceeded:
		v.Verdict, v.Discrepancy = Differs, unrecorded(row, r.OrderID, r.PaymentID, r.ID, string(r.Status))
	case r.Amount != row.Amount:
		v.Verdict, v.Discrepancy = Differs, &ordercore.Discrepancy{Kind: ordercore.ReviewReconAmount, OrderID: r.OrderID,
			PaymentID: r.PaymentID, RefundID: r.ID, Channel: moneyPtr(row.Amount), Recorded: moneyPtr(r.Amount),
			Detail: fmt.Sprintf("the statement lists refund %s paid out as %s; ordercore recorded %s", r.ID, row.Amount, r.Amount)}
	default:
		v.Verdict = Matched
	}
	return v
}

// unrecorded is a row whose money ordercore did not record even when told by the
// statement: its records moved on in a way the channel's report cannot follow (for
// example an attempt's status that the transition table does not let a success change).
func unrecorded(row ordercore.StatementRow, orderID, paymentID, refundID, status string) *ordercore.Discrepancy {
	what := "payment " + paymentID
	if refundID != "" {
		what = "refund " + refundID
	}
	return &ordercore.Discrepancy{Kind: ordercore.ReviewReconUnrecorded, OrderID: orderID, PaymentID: paymentID, RefundID: refundID,
		Channel: moneyPtr(row.Amount),
		Detail:  fmt.Sprintf("the statement lists %s of %s, which ordercore holds as %s and could not record as moved", what, row.Amount, status)}
}

// UnlistedVerdict judges money ordercore recorded on the day that the statement does
// not list, by the channel's answer to a query about it: the channel may date it on
// another day (a payment at 23:59:59 noticed at 00:00:01); otherwise it is a discrepancy.
// For a capture, cp is the channel's view of the trade; for a refund commit, cr is its
// view of the refund. queryErr is the query's definite answer when it had none
// (ordercore.ErrTradeNotFound); callers retry other errors rather than judge. outside
// says a refund the channel could not pay out was settled with the shopper outside it.
func UnlistedVerdict(m ordercore.MoneyEntry, p ordercore.Payment, cp *ordercore.ChannelPayment, cr *ordercore.ChannelRefund, queryErr error) (d *ordercore.Discrepancy, outside bool) {
	recorded := ordercore.Money{Amount: m.Amount, Currency: m.Currency}
	d = &ordercore.Discrepancy{Kind: ordercore.ReviewReconMissing, OrderID: m.OrderID, PaymentID: m.PaymentID, RefundID: m.RefundID,
		Recorded: &recorded}
	switch {
	case m.Movement == ordercore.MoneyCapture && cp != nil && queryErr == nil:
		if cp.Status == ordercore.PaymentSucceeded && cp.Amount.Currency == m.Currency && cp.Amount.Amount == p.Captured {
			return nil, false // taken, and dated on another day's statement
		}
		d.Detail = fmt.Sprintf("ordercore recorded %s taken on payment %s; the statement does not list it and the channel's query says %s of %s",
			recorded, m.PaymentID, cp.Status, cp.Amount)
		if cp.Status == ordercore.PaymentSucceeded {
			d.Channel = moneyPtr(cp.Amount)
		}
	case m.Movement == ordercore.MoneyRefundCommit && cr != nil && queryErr == nil:
		switch {
		case cr.Status == ordercore.RefundSucceeded && cr.Amount == recorded:
			return nil, false // paid out, and dated on another day's statement
		case cr.Status == ordercore.RefundAbnormal:
			// The channel took the refund but could not pay it out; ordercore records such
			// a refund as paid back only when an operator settled it with the shopper
			// outside the channel (a dismissed refund_abnormal review item).
			return nil, true
		}
		d.Detail = fmt.Sprintf("ordercore recorded refund %s of %s paid back; the statement does not list it and the channel's query says %s of %s",
			m.RefundID, recorded, cr.Status, cr.Amount)
		if cr.Status == ordercore.RefundSucceeded {
			d.Channel = moneyPtr(cr.Amount)
		}
	default:
		what := "payment " + m.PaymentID + " taken"
		if m.Movement == ordercore.MoneyRefundCommit {
			what = "refund " + m.RefundID + " paid back"
		}
		d.Detail = fmt.Sprintf("ordercore recorded %s (%s); the statement does not list it and the channel does not know it: %v", what, recorded, queryErr)
	}
	return d, false
}

func moneyPtr(m ordercore.Money) *ordercore.Money { return &m }
