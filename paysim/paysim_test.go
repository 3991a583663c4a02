package paysim_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
	"ordercore/channel/sim"
	"ordercore/paysim"
)

var bg = context.Background()

// A merchant that fails the first deliveries gets retries on the scaled schedule, and
// none after its ack.
func TestRetryScheduleUntilAck(t *testing.T) {
	t.Parallel()
	const scale = 0.005 // 15s -> 75ms
	e := setup(t, paysim.Config{TimeScale: scale})
	e.inbox.setFailFirst(3)
	e.create(t, "retry1", "o1", 100)
	e.pay(t, "retry1", true)
	got := e.inbox.waitFor(t, "the ack", func(r []received) bool { return len(r) > 0 && r[len(r)-1].Status == http.StatusOK })
	if len(got) != 4 {
		t.Fatalf("got %d deliveries, want 3 failures and an ack", len(got))
	}
	for i := 1; i < len(got); i++ {
		want := time.Duration(float64(paysim.RetrySchedule[i-1]) * scale)
		if gap := got[i].At.Sub(got[i-1].At); gap < want-5*time.Millisecond {
			t.Errorf("retry %d came %v after the previous attempt, want at least %v", i, gap, want)
		}
	}
	// The next retry would have been 3m*scale = 900ms later.
	time.Sleep(time.Duration(float64(paysim.RetrySchedule[3])*scale) + 200*time.Millisecond)
	if n := len(e.inbox.all()); n != 4 {
		t.Errorf("got %d deliveries after the ack, want 4", n)
	}
	ds := e.deliveries("retry1")
	if len(ds) != 1 || !ds[0].Acked || len(ds[0].Attempts) != 4 || ds[0].Attempts[0].Status != http.StatusInternalServerError {
		t.Errorf("record: %+v", ds)
	}
}

// A merchant that never acks gets 1 + 15 deliveries, then the simulator gives up.
func TestRetryScheduleGivesUp(t *testing.T) {
	t.Parallel()
	e := setup(t, paysim.Config{TimeScale: 0.00002}) // 24h4m -> 1.7s
	e.inbox.setFailFirst(1000)
	e.create(t, "giveup1", "o1", 100)
	e.pay(t, "giveup1", true)
	waitUntil(t, "giving up", func() bool {
		ds := e.deliveries("giveup1")
		return len(ds) == 1 && ds[0].GaveUp
	})
	if n, want := len(e.deliveries("giveup1")[0].Attempts), 1+len(paysim.RetrySchedule); n != want {
		t.Errorf("%d attempts, want %d", n, want)
	}
	var total time.Duration
	for _, d := range paysim.RetrySchedule {
		total += d
	}
	if total != 24*time.Hour+4*time.Minute {
		t.Errorf("the schedule spans %v, want WeChat Pay's 24h4m", total)
	}
}

func TestDupDeliversTwice(t *testing.T) {
	t.Parallel()
	e := setup(t, paysim.Config{Faults: paysim.Faults{DupRate: 1}})
	e.create(t, "dup1", "o1", 100)
	e.pay(t, "dup1", true)
	got := e.inbox.waitFor(t, "two copies", func(r []received) bool { return len(r) == 2 })
	for _, r := range got {
		if r.Err != nil {
			t.Fatalf("a duplicate is authentic: %v", r.Err)
		}
	}
	if got[0].Parsed.EventID != got[1].Parsed.EventID {
		t.Errorf("event ids %s and %s: a duplicate carries the same id", got[0].Parsed.EventID, got[1].Parsed.EventID)
	}
	copies := kinds(e.deliveries("dup1"))
	if diff := cmp.Diff([]string{paysim.CopyOriginal, paysim.CopyDuplicate}, copies); diff != "" {
		t.Error(diff)
	}
}

func TestDropNeverDelivers(t *testing.T) {
	t.Parallel()
	e := setup(t, paysim.Config{Faults: paysim.Faults{DropRate: 1}})
	e.create(t, "drop1", "o1", 100)
	e.pay(t, "drop1", true)
	time.Sleep(300 * time.Millisecond) // the whole scaled schedule's first retries
	if n := len(e.inbox.all()); n != 0 {
		t.Errorf("received %d notifications of a dropped one", n)
	}
	ds := e.deliveries("drop1")
	if len(ds) != 1 || !ds[0].Dropped || len(ds[0].Attempts) != 0 {
		t.Errorf("record: %+v", ds)
	}
	// The query is the merchant's way to learn the truth.
	p, err := e.ch.QueryPayment(bg, "drop1")
	if err != nil || p.Status != ordercore.PaymentSucceeded {
		t.Errorf("query: %+v, %v", p, err)
	}
}

// Forged and tampered copies reach the merchant and are refused by the adapter; the
// original still gets through.
func TestForgeAndTamperAreRejected(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		faults paysim.Faults
		copy   string
	}{
		{"forge", paysim.Faults{ForgeRate: 1}, paysim.CopyForged},
		{"tamper", paysim.Faults{TamperRate: 1}, paysim.CopyTampered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, paysim.Config{Faults: tc.faults})
			e.create(t, "f1", "o1", 100)
			e.pay(t, "f1", true)
			got := e.inbox.waitFor(t, "two copies", func(r []received) bool { return len(r) == 2 })
			var ok, bad int
			for _, r := range got {
				switch code := ordercore.ErrorCode(r.Err); {
				case r.Err == nil:
					ok++
					if r.Parsed.Payment.Amount != usd(100) {
						t.Errorf("accepted amount %v", r.Parsed.Payment.Amount)
					}
				case code == ordercore.EInvalidSignature:
					bad++
				default:
					t.Errorf("unexpected error %v", r.Err)
				}
			}
			if ok != 1 || bad != 1 {
				t.Errorf("%d accepted, %d refused; want 1 and 1", ok, bad)
			}
			if diff := cmp.Diff([]string{paysim.CopyOriginal, tc.copy}, kinds(e.deliveries("f1"))); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestUnderpay(t *testing.T) {
	t.Parallel()
	e := setup(t, paysim.Config{Faults: paysim.Faults{UnderpayRate: 1}})
	e.create(t, "under1", "o1", 1000)
	e.pay(t, "under1", true)
	got := e.inbox.waitFor(t, "the notification", func(r []received) bool { return len(r) == 1 })
	if got[0].Err != nil {
		t.Fatalf("an underpayment is validly signed: %v", got[0].Err)
	}
	p := got[0].Parsed.Payment
	if p.Status != ordercore.PaymentSucceeded || p.Amount.Amount >= 1000 || p.Amount.Amount < 500 {
		t.Errorf("notified %+v, want succeeded with 500 <= amount < 1000", p)
	}
	q, err := e.ch.QueryPayment(bg, "under1")
	if err != nil || q.Amount != p.Amount {
		t.Errorf("query %+v, %v; want the paid amount %v", q, err, p.Amount)
	}
}

func TestPayAfterClose(t *testing.T) {
	t.Parallel()
	e := setup(t, paysim.Config{TimeScale: 0.1, Faults: paysim.Faults{PayAfterCloseRate: 1}})
	e.create(t, "late1", "o1", 100)
	if err := e.ch.ClosePayment(bg, "late1"); err != nil {
		t.Fatalf("close is still answered as done: %v", err)
	}
	got := e.inbox.waitFor(t, "the late payment", func(r []received) bool { return len(r) == 1 })
	if p := got[0].Parsed.Payment; got[0].Err != nil || p.Status != ordercore.PaymentSucceeded {
		t.Errorf("notified %+v, %v; want succeeded", p, got[0].Err)
	}
	q, err := e.ch.QueryPayment(bg, "late1")
	if err != nil || q.Status != ordercore.PaymentSucceeded {
		t.Errorf("query %+v, %v; want succeeded", q, err)
	}
}

func TestDoublePay(t *testing.T) {
	t.Parallel()
	e := setup(t, paysim.Config{Faults: paysim.Faults{DoublePayRate: 1}})
	e.create(t, "tab1", "order1", 100)
	e.create(t, "tab2", "order1", 100)
	e.create(t, "other", "order2", 100)
	e.pay(t, "tab1", true)
	for no, want := range map[string]ordercore.PaymentStatus{"tab1": ordercore.PaymentSucceeded, "tab2": ordercore.PaymentSucceeded, "other": ordercore.PaymentPending} {
		q, err := e.ch.QueryPayment(bg, no)
		if err != nil || q.Status != want {
			t.Errorf("%s: %+v, %v; want %s", no, q, err, want)
		}
	}
	e.inbox.waitFor(t, "two notifications", func(r []received) bool { return len(r) == 2 })
}

func TestRefundAbnormal(t *testing.T) {
	t.Parallel()
	e := setup(t, paysim.Config{Faults: paysim.Faults{RefundAbnormalRate: 1}})
	e.create(t, "ab1", "o1", 100)
	e.pay(t, "ab1", true)
	if _, err := e.ch.Refund(bg, ordercore.RefundRequest{OutTradeNo: "ab1", OutRefundNo: "r1", Amount: usd(40)}); err != nil {
		t.Fatal(err)
	}
	got := e.inbox.waitFor(t, "the refund notification", func(r []received) bool {
		return slices.ContainsFunc(r, func(x received) bool { return x.Parsed.Refund != nil })
	})
	i := slices.IndexFunc(got, func(x received) bool { return x.Parsed.Refund != nil })
	if r := got[i].Parsed.Refund; r.Status != ordercore.RefundAbnormal || r.Amount != usd(40) {
		t.Errorf("refund %+v, want abnormal 40", r)
	}
}

// The delay knob postpones first deliveries by up to DelayMax, which reorders them.
func TestDelay(t *testing.T) {
	t.Parallel()
	const delayMax = 300 * time.Millisecond
	e := setup(t, paysim.Config{Faults: paysim.Faults{DelayMax: delayMax}})
	const n = 8
	for i := range n {
		no := fmt.Sprintf("d%d", i)
		e.create(t, no, no, 100)
	}
	start := time.Now()
	for i := range n {
		e.pay(t, fmt.Sprintf("d%d", i), true)
	}
	got := e.inbox.waitFor(t, "all", func(r []received) bool { return len(r) == n })
	var order []string
	late := 0
	for _, r := range got {
		order = append(order, r.Parsed.Payment.OutTradeNo)
		if r.At.Sub(start) > 20*time.Millisecond {
			late++
		}
	}
	if late == 0 {
		t.Errorf("no delivery was delayed")
	}
	if slices.IsSorted(order) {
		t.Logf("deliveries kept their order this time: %v", order)
	}
}

// The same seed makes the same decisions; each knob has its own source, so turning
// another knob on does not change them.
func TestSeedReproduces(t *testing.T) {
	t.Parallel()
	faults := paysim.Faults{DupRate: 0.5, DropRate: 0.3, ForgeRate: 0.5, TamperRate: 0.5, UnderpayRate: 0.5}
	run := func(seed int64, f paysim.Faults) []string {
		srv, err := paysim.New(paysim.Config{Seed: seed, Faults: f, Merchants: map[string]paysim.Merchant{merchantID: {APIKey: apiKey, Secret: secret}}})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close() // never started: nothing is sent, decisions are recorded
		ch, base := clientOf(t, srv)
		var out []string
		for i := range 20 {
			no := fmt.Sprintf("s%d", i)
			_, err := ch.CreatePayment(bg, ordercore.PaymentRequest{OutTradeNo: no, OrderID: no, Amount: usd(1000), NotifyURL: "http://127.0.0.1:1/notify"})
			if err != nil {
				t.Fatal(err)
			}
			tr, err := paysim.Pay(bg, nil, base, no, true)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s paid %d", no, tr.PaidAmount.Amount))
		}
		for _, d := range srv.Deliveries() {
			out = append(out, fmt.Sprintf("%s %s dropped=%v", d.OutTradeNo, d.Copy, d.Dropped))
		}
		return out
	}
	a, b := run(7, faults), run(7, faults)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, other decisions:\n%s", diff)
	}
	if c := run(8, faults); cmp.Equal(a, c) {
		t.Errorf("another seed made the very same decisions")
	}
	more := faults
	more.DoublePayRate, more.ErrorRate, more.DelayMax = 0, 0, time.Second // delay draws its own source
	if diff := cmp.Diff(a, run(7, more)); diff != "" {
		t.Errorf("another knob shifted the draws:\n%s", diff)
	}
}

// clientOf serves srv on an httptest server and returns the adapter and the URL.
func clientOf(t *testing.T, srv *paysim.Server) (*sim.Channel, string) {
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	ch, err := sim.New(sim.Config{BaseURL: ts.URL, MerchantID: merchantID, APIKey: apiKey, Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	return ch, ts.URL
}

func kinds(ds []paysim.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Copy)
	}
	return out
}

// The statement of a day lists exactly its successful payments and refunds, and its
// summary matches them.
func TestStatement(t *testing.T) {
	t.Parallel()
	e := setup(t, paysim.Config{})
	e.create(t, "st1", "o1", 1234)
	e.create(t, "st2", "o2", 500)
	e.create(t, "st3", "o3", 700)
	e.create(t, "st4", "o4", 900)
	e.pay(t, "st1", true)
	e.pay(t, "st2", true)
	e.pay(t, "st3", false)
	if err := e.ch.ClosePayment(bg, "st4"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ch.Refund(bg, ordercore.RefundRequest{OutTradeNo: "st1", OutRefundNo: "r1", Amount: usd(234)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the refund to settle", func() bool {
		r, err := e.ch.QueryRefund(bg, "st1", "r1")
		return err == nil && r.Status == ordercore.RefundSucceeded
	})
	st, err := e.ch.Statement(bg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Type, Trade, Refund, Amount string }
	var got []row
	for _, r := range st.Rows {
		got = append(got, row{r.Type, r.OutTradeNo, r.OutRefundNo, r.Amount.String()})
		if r.TxnID == "" || (r.Type == sim.RowRefund && r.RefundID == "") {
			t.Errorf("row without ids: %+v", r)
		}
	}
	want := []row{{"payment", "st1", "", "12.34 USD"}, {"payment", "st2", "", "5.00 USD"}, {"refund", "st1", "r1", "2.34 USD"}}
	sortRows := func(a, b row) int { return strings.Compare(a.Type+a.Trade, b.Type+b.Trade) }
	slices.SortFunc(got, sortRows)
	slices.SortFunc(want, sortRows)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	wantTotals := []sim.StatementTotal{{Count: 3, Paid: usd(1734), Refunded: usd(234)}}
	if diff := cmp.Diff(wantTotals, st.Totals); diff != "" {
		t.Errorf("totals (-want +got):\n%s", diff)
	}
	// Another day is empty but complete.
	other, err := e.ch.Statement(bg, time.Now().AddDate(0, 0, -2))
	if err != nil || len(other.Rows) != 0 {
		t.Errorf("empty day: %+v, %v", other, err)
	}
	// A truncated download is detected.
	raw := rawStatement(t, e, time.Now())
	cut := raw[:strings.Index(raw, "count,")]
	if _, err := sim.ParseStatement([]byte(cut)); err == nil {
		t.Error("a statement without its summary parsed")
	}
	lines := strings.Split(raw, "\n")
	missing := strings.Join(append(lines[:1:1], lines[2:]...), "\n")
	if _, err := sim.ParseStatement([]byte(missing)); err == nil {
		t.Error("a statement missing a row parsed")
	}
}

func rawStatement(t *testing.T, e *env, day time.Time) string {
	req, _ := http.NewRequest(http.MethodGet, e.url+"/v1/statements/"+day.UTC().Format(time.DateOnly), nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set(sim.HeaderMerchant, merchantID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("statement: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// The paid trades listed, page by page, are exactly those paid.
func TestListPaidTrades(t *testing.T) {
	t.Parallel()
	e := setup(t, paysim.Config{})
	var paid []string
	for i := range 7 {
		no := fmt.Sprintf("l%d", i)
		e.create(t, no, no, 100)
		if i%2 == 0 {
			e.pay(t, no, true)
			paid = append(paid, no)
		}
	}
	var got []string
	cursor := ""
	for range 10 {
		page, err := e.ch.ListTrades(bg, sim.TradeSucceeded, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range page.Trades {
			got = append(got, tr.OutTradeNo)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if diff := cmp.Diff(paid, got); diff != "" {
		t.Errorf("paid trades (-want +got):\n%s", diff)
	}
}

// The hosted page pays through its form, and refuses a second payment.
func TestHostedPage(t *testing.T) {
	t.Parallel()
	e := setup(t, paysim.Config{})
	pi := e.create(t, "page1", "o1", 250)
	resp, err := http.Get(pi.RedirectURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`action="/pay/page1"`, `value="success"`, `value="fail"`, "2.50 USD"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
	resp, err = http.PostForm(pi.RedirectURL, url.Values{"result": {"success"}}) // follows the 303
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `<dd id="status">succeeded</dd>`) {
		t.Errorf("after paying:\n%s", page)
	}
	_, err = paysim.Pay(bg, nil, e.url, "page1", true)
	var ce *ordercore.ChannelError
	if !errors.As(err, &ce) || ce.Code != sim.CodeTradePaid {
		t.Errorf("second payment: %v, want %s", err, sim.CodeTradePaid)
	}
}

// A trade past its deadline is closed: it cannot be paid, and the merchant is told.
func TestExpiry(t *testing.T) {
	t.Parallel()
	e := setup(t, paysim.Config{})
	_, err := e.ch.CreatePayment(bg, ordercore.PaymentRequest{OutTradeNo: "exp1", OrderID: "o1", Amount: usd(100), ExpiresAt: time.Now().Add(50 * time.Millisecond), NotifyURL: e.inbox.URL})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_, err = paysim.Pay(bg, nil, e.url, "exp1", true)
	var ce *ordercore.ChannelError
	if !errors.As(err, &ce) || ce.Code != sim.CodeTradeClosed {
		t.Errorf("pay after expiry: %v, want %s", err, sim.CodeTradeClosed)
	}
	got := e.inbox.waitFor(t, "trade.closed", func(r []received) bool { return len(r) == 1 })
	if p := got[0].Parsed.Payment; p == nil || p.Status != ordercore.PaymentClosed {
		t.Errorf("notified %+v, want closed", p)
	}
}

func TestConfigRejected(t *testing.T) {
	t.Parallel()
	m := map[string]paysim.Merchant{"m": {APIKey: "k", Secret: "s"}}
	for name, cfg := range map[string]paysim.Config{
		"no merchant": {},
		"no secret":   {Merchants: map[string]paysim.Merchant{"m": {APIKey: "k"}}},
		"rate over 1": {Merchants: m, Faults: paysim.Faults{DupRate: 1.5}},
		"negative":    {Merchants: m, TimeScale: -1},
		"NaN rate":    {Merchants: m, Faults: paysim.Faults{DropRate: nan()}},
	} {
		if _, err := paysim.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func nan() float64 { z := 0.0; return z / z }
