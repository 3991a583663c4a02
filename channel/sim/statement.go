package sim

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"ordercore"
)

// The daily statement is a CSV file, in the manner of WeChat Pay's trade bill: one
// detail row per successful payment and per successful refund of one UTC day, then a
// summary header and one summary row per currency. The summary lets a reader prove the
// file complete: a truncated download misses it, a lost row breaks its count or totals.
//
//	time,type,txn_id,out_trade_no,out_refund_no,refund_id,amount,currency
//	2026-01-02T10:00:00Z,payment,txn_...,<no>,,,12.34,USD
//	2026-01-02T11:00:00Z,refund,txn_...,<no>,<refund no>,rf_...,2.00,USD
//	count,total_paid,total_refunded,currency
//	2,12.34,2.00,USD
//
// Amounts are decimals in major units (ordercore.FormatDecimal), never floats. A day
// without rows has the summary row 0,0,0 with no currency.
var (
	statementHeader        = []string{"time", "type", "txn_id", "out_trade_no", "out_refund_no", "refund_id", "amount", "currency"}
	statementSummaryHeader = []string{"count", "total_paid", "total_refunded", "currency"}
)

// Statement row types.
const (
	RowPayment = "payment"
	RowRefund  = "refund"
)

// statementRowsMax bounds what ParseStatement reads.
const statementRowsMax = 1_000_000

// StatementRow is one money movement of the day. For a payment Amount is what the shopper
// paid.
type StatementRow struct {
	Time        time.Time
	Type        string // RowPayment or RowRefund
	TxnID       string
	OutTradeNo  string
	OutRefundNo string
	RefundID    string
	Amount      ordercore.Money
}

// StatementTotal is the summary of one currency.
type StatementTotal struct {
	Count    int
	Paid     ordercore.Money
	Refunded ordercore.Money
}

// Statement is a parsed, checked statement.
type Statement struct {
	Rows   []StatementRow
	Totals []StatementTotal // by currency, sorted
}

// Totals sums rows by currency, sorted by currency.
func Totals(rows []StatementRow) ([]StatementTotal, error) {
	by := map[ordercore.Currency]*StatementTotal{}
	for _, r := range rows {
		t := by[r.Amount.Currency]
		if t == nil {
			t = &StatementTotal{Paid: ordercore.Money{Currency: r.Amount.Currency}, Refunded: ordercore.Money{Currency: r.Amount.Currency}}
			by[r.Amount.Currency] = t
		}
		var err error
		switch r.Type {
		case RowPayment:
			t.Paid, err = t.Paid.Add(r.Amount)
		case RowRefund:
			t.Refunded, err = t.Refunded.Add(r.Amount)
		default:
			err = fmt.Errorf("row type %q", r.Type)
		}
		if err != nil {
			return nil, err
		}
		t.Count++
	}
	out := make([]StatementTotal, 0, len(by))
	for _, t := range by {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b StatementTotal) int { return cmp.Compare(a.Paid.Currency, b.Paid.Currency) })
	return out, nil
}

// WriteStatement writes rows and their summary in the statement format.
func WriteStatement(w io.Writer, rows []StatementRow) error {
	totals, err := Totals(rows)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	cw.Write(statementHeader)
	for _, r := range rows {
		cw.Write([]string{
			r.Time.UTC().Format(time.RFC3339), r.Type, r.TxnID, r.OutTradeNo, r.OutRefundNo, r.RefundID,
			decimal(r.Amount), string(r.Amount.Currency),
		})
	}
	cw.Write(statementSummaryHeader)
	if len(totals) == 0 {
		cw.Write([]string{"0", "0", "0", ""})
	}
	for _, t := range totals {
		cw.Write([]string{strconv.Itoa(t.Count), decimal(t.Paid), decimal(t.Refunded), string(t.Paid.Currency)})
	}
	cw.Flush()
	return cw.Error()
}

func decimal(m ordercore.Money) string {
	exp, _ := m.Currency.Exponent()
	return ordercore.FormatDecimal(m.Amount, exp)
}

// ParseStatement reads a statement and checks it is complete: the summary rows must be
// present and equal to the sums of the detail rows.
func ParseStatement(data []byte) (Statement, error) {
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1 // the summary section has its own width
	recs, err := cr.ReadAll()
	if err != nil {
		return Statement{}, fmt.Errorf("statement: %w", err)
	}
	if len(recs) > statementRowsMax {
		return Statement{}, fmt.Errorf("statement: over %d rows", statementRowsMax)
	}
	if len(recs) == 0 || !slices.Equal(recs[0], statementHeader) {
		return Statement{}, fmt.Errorf("statement: no header")
	}
	sum := slices.IndexFunc(recs, func(r []string) bool { return slices.Equal(r, statementSummaryHeader) })
	if sum < 0 {
		return Statement{}, fmt.Errorf("statement: no summary (truncated?)")
	}
	var st Statement
	for i, rec := range recs[1:sum] {
		row, err := parseRow(rec)
		if err != nil {
			return Statement{}, fmt.Errorf("statement: row %d: %w", i+2, err)
		}
		st.Rows = append(st.Rows, row)
	}
	want, err := Totals(st.Rows)
	if err != nil {
		return Statement{}, fmt.Errorf("statement: %w", err)
	}
	got, err := parseTotals(recs[sum+1:])
	if err != nil {
		return Statement{}, fmt.Errorf("statement: summary: %w", err)
	}
	if !slices.Equal(got, want) {
		return Statement{}, fmt.Errorf("statement: summary %v does not match the rows %v", got, want)
	}
	st.Totals = want
	return st, nil
}

func parseRow(rec []string) (StatementRow, error) {
	if len(rec) != len(statementHeader) {
		return StatementRow{}, fmt.Errorf("%d fields, want %d", len(rec), len(statementHeader))
	}
	t, err := time.Parse(time.RFC3339, rec[0])
	if err != nil {
		return StatementRow{}, err
	}
	if rec[1] != RowPayment && rec[1] != RowRefund {
		return StatementRow{}, fmt.Errorf("type %q", rec[1])
	}
	m, err := ordercore.ParseMoney(rec[6], ordercore.Currency(rec[7]))
	if err != nil {
		return StatementRow{}, err
	}
	return StatementRow{Time: t, Type: rec[1], TxnID: rec[2], OutTradeNo: rec[3], OutRefundNo: rec[4], RefundID: rec[5], Amount: m}, nil
}

func parseTotals(recs [][]string) ([]StatementTotal, error) {
	if len(recs) == 1 && slices.Equal(recs[0], []string{"0", "0", "0", ""}) {
		return []StatementTotal{}, nil
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("no summary row")
	}
	out := make([]StatementTotal, 0, len(recs))
	for _, rec := range recs {
		if len(rec) != len(statementSummaryHeader) {
			return nil, fmt.Errorf("%d fields, want %d", len(rec), len(statementSummaryHeader))
		}
		n, err := strconv.Atoi(rec[0])
		if err != nil {
			return nil, err
		}
		c := ordercore.Currency(rec[3])
		paid, err := ordercore.ParseMoney(rec[1], c)
		if err != nil {
			return nil, err
		}
		refunded, err := ordercore.ParseMoney(rec[2], c)
		if err != nil {
			return nil, err
		}
		out = append(out, StatementTotal{Count: n, Paid: paid, Refunded: refunded})
	}
	return out, nil
}
