package recon

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
	"ordercore/internal/pgtest"
	"ordercore/postgres"
	"ordercore/sqlite"
)

func usd(n int64) ordercore.Money { return ordercore.Money{Amount: n, Currency: "USD"} }

// TestMatch covers every verdict of a row and both ways of the match.
func TestMatch(t *testing.T) {
	paid := ordercore.Payment{ID: "p-paid", OrderID: "o1", Channel: "sim", Status: ordercore.PaymentSucceeded, Amount: usd(1000), Captured: 1000}
	open := ordercore.Payment{ID: "p-open", OrderID: "o2", Channel: "sim", Status: ordercore.PaymentPending, Amount: usd(500)}
	other := ordercore.Payment{ID: "p-other", OrderID: "o3", Channel: "stripe", Status: ordercore.PaymentSucceeded, Amount: usd(700), Captured: 700}
	unlisted := ordercore.Payment{ID: "p-unlisted", OrderID: "o4", Channel: "sim", Status: ordercore.PaymentSucceeded, Amount: usd(300), Captured: 300}
	refunds := map[string]ordercore.Refund{
		"r-ok":      {ID: "r-ok", OrderID: "o1", PaymentID: "p-paid", Status: ordercore.RefundSucceeded, Amount: usd(100)},
		"r-pending": {ID: "r-pending", OrderID: "o1", PaymentID: "p-paid", Status: ordercore.RefundPending, Amount: usd(200)},
		"r-failed":  {ID: "r-failed", OrderID: "o1", PaymentID: "p-paid", Status: ordercore.RefundFailed, Amount: usd(50)},
		"r-other":   {ID: "r-other", OrderID: "o3", PaymentID: "p-other", Status: ordercore.RefundPending, Amount: usd(70)},
	}
	local := Local{Payments: map[string]ordercore.Payment{paid.ID: paid, open.ID: open, other.ID: other, unlisted.ID: unlisted}, Refunds: refunds,
		Moved: []ordercore.MoneyEntry{
			{Seq: 1, PaymentID: "p-paid", Movement: ordercore.MoneyCapture, Amount: 1000, Currency: "USD"},
			{Seq: 2, PaymentID: "p-unlisted", Movement: ordercore.MoneyCapture, Amount: 300, Currency: "USD"},
			{Seq: 3, PaymentID: "p-paid", RefundID: "r-ok", Movement: ordercore.MoneyRefundCommit, Amount: 100, Currency: "USD"},
			{Seq: 4, PaymentID: "p-paid", RefundID: "r-gone", Movement: ordercore.MoneyRefundCommit, Amount: 10, Currency: "USD"},
		}}
	pay := func(no string, m ordercore.Money) ordercore.StatementRow {
		return ordercore.StatementRow{Type: ordercore.StatementPayment, OutTradeNo: no, Amount: m}
	}
	refund := func(no, rno string, m ordercore.Money) ordercore.StatementRow {
		return ordercore.StatementRow{Type: ordercore.StatementRefund, OutTradeNo: no, OutRefundNo: rno, Amount: m}
	}
	rows := []struct {
		row     ordercore.StatementRow
		want    Verdict
		final   Verdict // the verdict once Apply rows were applied and still are not recorded
		kind    string
		comment string
	}{
		{pay("p-paid", usd(1000)), Matched, Matched, "", "recorded as the channel says"},
		{pay("p-paid", usd(1001)), Differs, Differs, ordercore.ReviewReconAmount, "the channel took another amount"},
		{pay("p-paid", ordercore.Money{Amount: 1000, Currency: "EUR"}), Differs, Differs, ordercore.ReviewReconAmount, "another currency"},
		{pay("p-open", usd(500)), Apply, Differs, ordercore.ReviewReconUnrecorded, "a notification was lost"},
		{pay("p-nobody", usd(5)), Unknown, Unknown, "", "a trade ordercore never opened"},
		{pay("p-other", usd(700)), Unknown, Unknown, "", "another channel's trade number"},
		{refund("p-paid", "r-ok", usd(100)), Matched, Matched, "", "refund recorded as paid out"},
		{refund("p-paid", "r-ok", usd(90)), Differs, Differs, ordercore.ReviewReconAmount, "refund of another amount"},
		{refund("p-paid", "r-pending", usd(200)), Apply, Differs, ordercore.ReviewReconUnrecorded, "refund's notification lost"},
		{refund("p-paid", "r-failed", usd(50)), Differs, Differs, ordercore.ReviewReconRefundStatus, "paid out a refund ordercore holds failed"},
		{refund("p-paid", "r-nobody", usd(5)), Unknown, Unknown, "", "a refund made outside ordercore"},
		{refund("p-other", "r-other", usd(70)), Unknown, Unknown, "", "another channel's refund"},
	}
	var st ordercore.Statement
	for _, r := range rows {
		st.Rows = append(st.Rows, r.row)
	}
	for _, final := range []bool{false, true} {
		plan := Match("sim", st, local, final)
		for i, r := range rows {
			got := plan.Rows[i]
			want := r.want
			if final {
				want = r.final
			}
			if got.Verdict != want {
				t.Errorf("final=%v, %s: verdict %d, want %d", final, r.comment, got.Verdict, want)
			}
			if want == Differs && (got.Discrepancy == nil || got.Discrepancy.Kind != r.kind || got.Discrepancy.Detail == "") {
				t.Errorf("final=%v, %s: discrepancy %+v, want kind %s with a detail", final, r.comment, got.Discrepancy, r.kind)
			}
			if want != Differs && got.Discrepancy != nil {
				t.Errorf("final=%v, %s: a discrepancy %+v with verdict %d", final, r.comment, got.Discrepancy, got.Verdict)
			}
		}
		var un []int64
		for _, m := range plan.Unlisted {
			un = append(un, m.Seq)
		}
		if !slices.Equal(un, []int64{2, 4}) {
			t.Errorf("final=%v: unlisted movements %v, want seq 2 (capture of p-unlisted) and 4 (refund r-gone)", final, un)
		}
	}
}

// TestUnlistedVerdict: money ordercore recorded that no row of the day lists is a
// discrepancy unless the channel's query confirms it.
func TestUnlistedVerdict(t *testing.T) {
	p := ordercore.Payment{ID: "p1", Captured: 300, Amount: usd(300)}
	capture := ordercore.MoneyEntry{PaymentID: "p1", Movement: ordercore.MoneyCapture, Amount: 300, Currency: "USD"}
	commit := ordercore.MoneyEntry{PaymentID: "p1", RefundID: "r1", Movement: ordercore.MoneyRefundCommit, Amount: 100, Currency: "USD"}
	for _, c := range []struct {
		name string
		m    ordercore.MoneyEntry
		cp   *ordercore.ChannelPayment
		cr   *ordercore.ChannelRefund
		err  error
		ok   bool
	}{
		{"PaidOnAnotherDay", capture, &ordercore.ChannelPayment{Status: ordercore.PaymentSucceeded, Amount: usd(300)}, nil, nil, true},
		{"ChannelSaysPending", capture, &ordercore.ChannelPayment{Status: ordercore.PaymentPending, Amount: usd(300)}, nil, nil, false},
		{"ChannelTookOtherAmount", capture, &ordercore.ChannelPayment{Status: ordercore.PaymentSucceeded, Amount: usd(200)}, nil, nil, false},
		{"TradeNotFound", capture, nil, nil, ordercore.ErrTradeNotFound, false},
		{"RefundPaidOnAnotherDay", commit, nil, &ordercore.ChannelRefund{Status: ordercore.RefundSucceeded, Amount: usd(100)}, nil, true},
		{"RefundSettledOutside", commit, nil, &ordercore.ChannelRefund{Status: ordercore.RefundAbnormal, Amount: usd(100)}, nil, true},
		{"RefundPendingAtChannel", commit, nil, &ordercore.ChannelRefund{Status: ordercore.RefundPending, Amount: usd(100)}, nil, false},
		{"RefundNotFound", commit, nil, nil, ordercore.ErrTradeNotFound, false},
	} {
		d, outside := UnlistedVerdict(c.m, p, c.cp, c.cr, c.err)
		if outside != (c.name == "RefundSettledOutside") {
			t.Errorf("%s: settled outside %v", c.name, outside)
		}
		if (d == nil) != c.ok {
			t.Errorf("%s: discrepancy %+v, want confirmed=%v", c.name, d, c.ok)
		}
		if d != nil && (d.Kind != ordercore.ReviewReconMissing || d.Detail == "" || d.Recorded == nil || d.Recorded.Amount != c.m.Amount) {
			t.Errorf("%s: %+v", c.name, d)
		}
	}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// statements is a channel that publishes empty statements, or fails while down; it
// records the days asked for.
type statements struct {
	mu   sync.Mutex
	down bool
	days []string
	// query answers QueryPayment (nil: the trade is not found); queries counts the calls.
	query   func(no string, n int) (ordercore.ChannelPayment, error)
	queries map[string]int
}

func (s *statements) Name() string { return "bill" }
func (s *statements) DailyStatement(_ context.Context, day time.Time) (ordercore.Statement, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.days = append(s.days, day.Format(time.DateOnly))
	if s.down {
		return ordercore.Statement{}, ordercore.ErrStatementNotReady
	}
	return ordercore.Statement{Day: day}, nil
}
func (s *statements) asked() []string { s.mu.Lock(); defer s.mu.Unlock(); return slices.Clone(s.days) }
func (s *statements) reset(down bool) { s.mu.Lock(); s.days, s.down = nil, down; s.mu.Unlock() }

func (*statements) CreatePayment(context.Context, ordercore.PaymentRequest) (ordercore.PaymentInstructions, error) {
	return ordercore.PaymentInstructions{TxnID: "t"}, nil
}
func (s *statements) QueryPayment(_ context.Context, no string) (ordercore.ChannelPayment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queries == nil {
		s.queries = map[string]int{}
	}
	s.queries[no]++
	if s.query == nil {
		return ordercore.ChannelPayment{}, ordercore.ErrTradeNotFound
	}
	return s.query(no, s.queries[no])
}
func (*statements) ClosePayment(context.Context, string) error { return nil }
func (*statements) Refund(context.Context, ordercore.RefundRequest) (ordercore.ChannelRefund, error) {
	return ordercore.ChannelRefund{}, errors.New("not used")
}
func (*statements) QueryRefund(context.Context, string, string) (ordercore.ChannelRefund, error) {
	return ordercore.ChannelRefund{}, ordercore.ErrTradeNotFound
}
func (*statements) ParseNotification(http.Header, []byte, time.Time) (ordercore.Notification, error) {
	return ordercore.Notification{}, errors.New("not used")
}
func (*statements) Ack(http.ResponseWriter) {}

// TestRunDue: the daily reconciler takes the day before from its hour on, catches up the
// week before it, records each day once, and tries a failed day again only after
// limit.ReconRetry.
func TestRunDue(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clk := &clock{now: time.Date(2026, 1, 10, 9, 30, 0, 0, time.UTC)}
	eng := engine.New(db, clk, engine.Config{})
	defer eng.Close()
	ch := &statements{}
	r := &Reconciler{Engine: eng, Reader: db, Clock: clk, Channels: map[string]ordercore.Channel{"bill": ch}, Hour: 10}

	days := func(from, to int) []string {
		var out []string
		for d := from; d <= to; d++ {
			out = append(out, time.Date(2026, 1, d, 0, 0, 0, 0, time.UTC).Format(time.DateOnly))
		}
		return out
	}
	if n := r.RunDue(ctx); n != limit.ReconDaysBack || !slices.Equal(ch.asked(), days(2, 8)) {
		t.Fatalf("at 09:30 on the 10th: %d recorded, asked for %v; want the 7 days up to the 8th (the 9th's statement is due at 10:00)", n, ch.asked())
	}
	ch.reset(true)
	clk.set(time.Date(2026, 1, 10, 10, 0, 0, 0, time.UTC))
	if n := r.RunDue(ctx); n != 0 || !slices.Equal(ch.asked(), days(9, 9)) {
		t.Fatalf("at 10:00 with the channel down: %d recorded, asked for %v; want only the 9th asked, nothing recorded", n, ch.asked())
	}
	ch.reset(false)
	clk.set(time.Date(2026, 1, 10, 10, 1, 0, 0, time.UTC))
	if n := r.RunDue(ctx); n != 0 || len(ch.asked()) != 0 {
		t.Fatalf("a minute after the failure: %d recorded, asked for %v; want nothing before %s", n, ch.asked(), limit.ReconRetry)
	}
	clk.set(time.Date(2026, 1, 10, 10, 0, 0, 0, time.UTC).Add(limit.ReconRetry))
	if n := r.RunDue(ctx); n != 1 || !slices.Equal(ch.asked(), days(9, 9)) {
		t.Fatalf("after the retry wait: %d recorded, asked for %v; want the 9th", n, ch.asked())
	}
	rep, found, err := r.Last(ctx, "bill", time.Date(2026, 1, 9, 0, 0, 0, 0, time.UTC))
	if err != nil || !found || rep.Day != "2026-01-09" || rep.Rows != 0 || rep.Discrepancies == nil {
		t.Fatalf("Last of the 9th: %+v %v %v", rep, found, err)
	}
	ch.reset(false)
	if n := r.RunDue(ctx); n != 0 || len(ch.asked()) != 0 {
		t.Fatalf("once every day is recorded: %d recorded, asked for %v; want nothing", n, ch.asked())
	}

	// A run of a day by hand before it ended does not count: the daily run does the day
	// again once its statement is whole.
	clk.set(time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC))
	partial, err := r.Reconcile(ctx, "bill", clk.Now())
	if err != nil || !partial.Partial {
		t.Fatalf("a run of today: %+v %v, want it partial", partial, err)
	}
	ch.reset(false)
	clk.set(time.Date(2026, 1, 11, 10, 30, 0, 0, time.UTC))
	if n := r.RunDue(ctx); n != 1 || !slices.Equal(ch.asked(), days(10, 10)) {
		t.Fatalf("the day after a partial run: %d recorded, asked for %v; want the 10th again", n, ch.asked())
	}
	rep, _, err = r.Last(ctx, "bill", time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC))
	if err != nil || rep.Partial || !rep.Started.Equal(clk.Now()) {
		t.Fatalf("Last of the 10th: %+v %v, want the whole day's run of %s", rep, err, clk.Now())
	}
	if _, err := r.Reconcile(ctx, "nope", clk.Now()); !errors.Is(err, ErrUnknownChannel) {
		t.Errorf("unknown channel: %v", err)
	}
}

// TestUnlistedMoneyIsAskedAbout: money ordercore recorded that the statement does not
// list is asked about at the channel, again while the channel gives no definite answer;
// what the channel does not confirm is a discrepancy, each with its review item even
// past what a report lists (listMax, made small here).
func TestUnlistedMoneyIsAskedAbout(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ordercore.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clk := &clock{now: time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)}
	eng := engine.New(db, clk, engine.Config{})
	defer eng.Close()
	ch := &statements{}
	trades := capturedPayments(t, eng, db, clk, ch, 4)
	r := &Reconciler{Engine: eng, Reader: db, Clock: clk, Channels: map[string]ordercore.Channel{"bill": ch}}
	defer func(n int) { listMax = n }(listMax)
	listMax = 2

	// The statement lists none of them (the fake's is empty). The channel confirms the
	// first, after failing twice to answer; the others it says are still pending.
	ch.mu.Lock()
	ch.query = func(no string, n int) (ordercore.ChannelPayment, error) {
		if no == trades[0] {
			if n <= 2 {
				return ordercore.ChannelPayment{}, ordercore.ErrOutcomeUnknown
			}
			return ordercore.ChannelPayment{OutTradeNo: no, Status: ordercore.PaymentSucceeded, Amount: usd(100)}, nil
		}
		return ordercore.ChannelPayment{OutTradeNo: no, Status: ordercore.PaymentPending, Amount: usd(100)}, nil
	}
	ch.mu.Unlock()
	rep, err := r.Reconcile(ctx, "bill", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Confirmed != 1 || rep.DiscrepanciesFound != 3 || len(rep.Discrepancies) != 2 {
		t.Fatalf("report: %+v, want 1 confirmed (after two unanswered queries), 3 discrepancies found and 2 listed", rep)
	}
	items, err := db.Reviews(ctx, ordercore.ReviewOpen, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	missing := map[string]bool{}
	for _, it := range items {
		if it.Kind == ordercore.ReviewReconMissing {
			missing[it.PaymentID] = true
		}
	}
	if len(missing) != 3 || missing[trades[0]] {
		t.Fatalf("open recon_missing_at_channel items for %v, want one for each of %v", missing, trades[1:])
	}

	// A channel that never answers fails the run after its tries, recording nothing.
	ch.mu.Lock()
	ch.query = func(string, int) (ordercore.ChannelPayment, error) {
		return ordercore.ChannelPayment{}, ordercore.ErrOutcomeUnknown
	}
	ch.queries = nil
	ch.mu.Unlock()
	clk.set(clk.Now().Add(time.Minute))
	if _, err := r.Reconcile(ctx, "bill", clk.Now()); !errors.Is(err, ErrChannel) {
		t.Fatalf("a channel that never answers: %v, want ErrChannel", err)
	}
	ch.mu.Lock()
	most := 0 // the first query to run out of tries ends the run, and the others with it
	for _, n := range ch.queries {
		most = max(most, n)
	}
	ch.mu.Unlock()
	if most != len(queryWaits)+1 {
		t.Errorf("a query was made at most %d times, want %d", most, len(queryWaits)+1)
	}
	last, _, err := r.Last(ctx, "bill", clk.Now())
	if err != nil || !last.Started.Equal(rep.Started) {
		t.Errorf("after a failed run, the latest report is %+v (%v), want the first run's", last, err)
	}
}

// capturedPayments places n orders of one unit and records a payment of each taken by
// the channel ch ("bill"): money ordercore recorded as captured on the clock's day.
func capturedPayments(t *testing.T, eng *engine.Engine, db ordercore.Reader, clk ordercore.Clock, ch ordercore.Channel, n int) []string {
	t.Helper()
	ctx := context.Background()
	pays := &engine.Payments{Engine: eng, Reader: db, Clock: clk, Channels: map[string]ordercore.Channel{"bill": ch}}
	if _, err := eng.Submit(ctx, engine.CreateSKU{ID: "k", Name: "k", Price: usd(100), Stock: 1000}, nil); err != nil {
		t.Fatal(err)
	}
	var trades []string
	for range n {
		res, err := eng.Submit(ctx, engine.PlaceOrder{UserID: "u", Lines: []engine.LineRequest{{SKU: "k", Quantity: 1}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		o := res.Value.(ordercore.Order)
		res, err = pays.Pay(ctx, o.ID, "bill", nil)
		if err != nil {
			t.Fatal(err)
		}
		p := res.Value.(ordercore.Payment)
		if _, err := eng.Submit(ctx, engine.ChannelPayment{Channel: "bill", Source: "notify", Payment: ordercore.ChannelPayment{
			OutTradeNo: p.ID, Status: ordercore.PaymentSucceeded, Amount: usd(100)}}, nil); err != nil {
			t.Fatal(err)
		}
		trades = append(trades, p.ID)
	}
	return trades
}

// TestRunsOfADayTakeTurnsAcrossInstances: two instances on one PostgreSQL schema run the
// same day at once, several times each: every discrepancy has exactly one review item.
func TestRunsOfADayTakeTurnsAcrossInstances(t *testing.T) {
	dsn, schema := pgtest.Schema(t, "recon_test_")
	ctx := context.Background()
	open := func() *postgres.DB {
		db, err := postgres.Open(ctx, dsn, postgres.Options{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db1 := open()
	db2 := open()
	defer db1.Close()
	defer db2.Close()
	clk := &clock{now: time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)}
	eng1, eng2 := engine.New(db1, clk, engine.Config{}), engine.New(db2, clk, engine.Config{})
	defer eng1.Close()
	defer eng2.Close()
	ch := &statements{query: func(no string, _ int) (ordercore.ChannelPayment, error) {
		return ordercore.ChannelPayment{OutTradeNo: no, Status: ordercore.PaymentPending, Amount: usd(100)}, nil
	}}
	trades := capturedPayments(t, eng1, db1, clk, ch, 4)
	rs := []*Reconciler{
		{Engine: eng1, Reader: db1, Clock: clk, Channels: map[string]ordercore.Channel{"bill": ch}, Locker: db1},
		{Engine: eng2, Reader: db2, Clock: clk, Channels: map[string]ordercore.Channel{"bill": ch}, Locker: db2},
	}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			if _, err := rs[i%2].Reconcile(ctx, "bill", clk.Now()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	items, err := db1.Reviews(ctx, ordercore.ReviewOpen, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, it := range items {
		if it.Kind == ordercore.ReviewReconMissing {
			per[it.PaymentID]++
		}
	}
	for _, tr := range trades {
		if per[tr] != 1 {
			t.Errorf("payment %s has %d recon_missing_at_channel items, want 1 (all: %v)", tr, per[tr], per)
		}
	}
}
