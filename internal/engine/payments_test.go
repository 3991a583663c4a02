package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
)

// payBundle is a worker of the matrix used one case at a time.
type payBundle struct {
	*matrixWorker
	t *testing.T
}

func setupPay(t *testing.T) payBundle {
	t.Helper()
	m := newMatrixWorker(t, 0)
	t.Cleanup(m.close)
	return payBundle{m, t}
}

func (b payBundle) order(sku string, stock, qty int64) ordercore.Order {
	b.t.Helper()
	if _, err := b.submit(engine.CreateSKU{ID: sku, Name: sku, Price: ordercore.Money{Amount: 1000, Currency: "USD"}, Stock: stock}); err != nil {
		b.t.Fatal(err)
	}
	v, err := b.submit(engine.PlaceOrder{UserID: "shopper", Lines: []engine.LineRequest{{SKU: sku, Quantity: qty}}})
	if err != nil {
		b.t.Fatal(err)
	}
	return v.(ordercore.Order)
}

// agedAttempt places an order for the one unit of a new SKU, due at the longest expiry,
// and opens an attempt that spends all of the sync schedule but its last step, pending
// at the channel. It returns the order, the attempt and the time left until the order
// is due.
func (b payBundle) agedAttempt(sku string) (ordercore.Order, string, time.Duration) {
	b.t.Helper()
	ctx := context.Background()
	sched := limit.PaymentSyncSchedule
	if _, err := b.submit(engine.CreateSKU{ID: sku, Name: sku, Price: ordercore.Money{Amount: 1000, Currency: "USD"}, Stock: 1}); err != nil {
		b.t.Fatal(err)
	}
	v, err := b.submit(engine.PlaceOrder{UserID: "shopper", Lines: []engine.LineRequest{{SKU: sku, Quantity: 1}}, ExpiresIn: limit.ExpiresInMax})
	if err != nil {
		b.t.Fatal(err)
	}
	o := v.(ordercore.Order)
	a := b.attempt(o.ID)
	var spent time.Duration
	for _, step := range sched[:len(sched)-1] {
		b.clock.Advance(step)
		spent += step
		if _, err := b.pay.Sync(ctx); err != nil {
			b.t.Fatal(err)
		}
	}
	if p, _ := b.db.Payment(ctx, a); p.Status != ordercore.PaymentPending || p.SyncAttempts != len(sched)-1 {
		b.t.Fatalf("before expiry: %+v, want pending after %d queries", p, len(sched)-1)
	}
	return o, a, limit.ExpiresInMax - spent
}

func (b payBundle) attempt(orderID string) string {
	b.t.Helper()
	res, err := b.pay.Pay(context.Background(), orderID, matrixChannel, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return res.Value.(ordercore.Payment).ID
}

func (b payBundle) notify(id string, p *ordercore.ChannelPayment, r *ordercore.ChannelRefund) string {
	b.t.Helper()
	body, _ := json.Marshal(note{id: id, pay: p, refund: r})
	_, outcome, err := b.pay.Notify(context.Background(), matrixChannel, nil, body)
	if err != nil {
		b.t.Fatal(err)
	}
	return outcome
}

func (b payBundle) sku(id string) ordercore.SKU {
	b.t.Helper()
	s, err := b.db.SKU(context.Background(), id)
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

func (b payBundle) reviews() []ordercore.ReviewItem {
	b.t.Helper()
	items, err := b.db.Reviews(context.Background(), ordercore.ReviewOpen, "", 100)
	if err != nil {
		b.t.Fatal(err)
	}
	return items
}

func (b payBundle) finish() {
	b.t.Helper()
	b.verify(b.t)
}

// TestRefundRestocksLines: a refund that restocks a line puts its units back on the shelf
// when (and only when) it succeeds, once per line.
func TestRefundRestocksLines(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	o := b.order("mug", 5, 2)
	a := b.attempt(o.ID)
	b.channel.set(a, ordercore.PaymentSucceeded, o.Amount)
	if got := b.notify("e1", &ordercore.ChannelPayment{OutTradeNo: a, Status: ordercore.PaymentSucceeded, Amount: o.Amount}, nil); got != engine.OutcomeApplied {
		t.Fatalf("outcome %q", got)
	}
	if s := b.sku("mug"); s.Sold != 2 || s.Available() != 3 {
		t.Fatalf("after payment sku = %+v, want 2 sold, 3 available", s)
	}
	v, err := b.submit(engine.RequestRefund{OrderID: o.ID, Amount: o.Amount, RestockLines: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	r := v.(ordercore.Refund)
	if _, err := b.submit(engine.RequestRefund{OrderID: o.ID, Amount: ordercore.Money{Amount: 1, Currency: "USD"}}); ordercore.ErrorCode(err) != ordercore.ERefundExceeds {
		t.Fatalf("refund beyond the capture: err %v, want %s", err, ordercore.ERefundExceeds)
	}
	if s := b.sku("mug"); s.Sold != 2 {
		t.Fatalf("a pending refund restocked: %+v", s)
	}
	b.notify("e2", nil, &ordercore.ChannelRefund{OutTradeNo: a, OutRefundNo: r.ID, Status: ordercore.RefundSucceeded, Amount: r.Amount})
	if s := b.sku("mug"); s.Sold != 0 || s.Available() != 5 {
		t.Fatalf("after the refund sku = %+v, want 0 sold, 5 available", s)
	}
	got, _ := b.db.Order(context.Background(), o.ID)
	if got.Status != ordercore.OrderRefunded {
		t.Fatalf("order %s, want refunded", got.Status)
	}
	b.finish()
}

// TestRestockRules: a line is restocked at most once, and only lines that exist.
func TestRestockRules(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	o := b.order("cap", 5, 1)
	a := b.attempt(o.ID)
	b.notify("e1", &ordercore.ChannelPayment{OutTradeNo: a, Status: ordercore.PaymentSucceeded, Amount: o.Amount}, nil)
	half := ordercore.Money{Amount: o.Amount.Amount / 2, Currency: "USD"}
	if _, err := b.submit(engine.RequestRefund{OrderID: o.ID, Amount: half, RestockLines: []int{2}}); ordercore.ErrorCode(err) != ordercore.EINVALID {
		t.Fatalf("restock of a missing line: err %v", err)
	}
	if _, err := b.submit(engine.RequestRefund{OrderID: o.ID, Amount: half, RestockLines: []int{1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.submit(engine.RequestRefund{OrderID: o.ID, Amount: half, RestockLines: []int{1}}); ordercore.ErrorCode(err) != ordercore.EINVALID {
		t.Fatalf("second restock of line 1: err %v", err)
	}
	b.finish()
}

// TestAmountMismatchNeverPays: money that differs from the order's amount does not pay the
// order; it is refunded and an operator is told.
func TestAmountMismatchNeverPays(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	o := b.order("hat", 5, 1)
	a := b.attempt(o.ID)
	under := ordercore.Money{Amount: o.Amount.Amount - 1, Currency: o.Amount.Currency}
	b.notify("e1", &ordercore.ChannelPayment{OutTradeNo: a, Status: ordercore.PaymentSucceeded, Amount: under}, nil)
	got, _ := b.db.Order(context.Background(), o.ID)
	if got.Status != ordercore.OrderPendingPayment {
		t.Fatalf("order %s after an underpayment, want pending_payment", got.Status)
	}
	ps, rs, _ := b.db.OrderPayments(context.Background(), o.ID)
	if len(ps) != 1 || ps[0].Accepted || ps[0].Captured != under.Amount || len(rs) != 1 || rs[0].Amount != under || rs[0].Kind != ordercore.RefundMismatch {
		t.Fatalf("payments %+v refunds %+v, want the underpayment captured and refunded in full", ps, rs)
	}
	items := b.reviews()
	if len(items) != 1 || items[0].Kind != ordercore.ReviewAmountMismatch || items[0].PaymentID != a {
		t.Fatalf("review items %+v, want one amount_mismatch for %s", items, a)
	}
	// Another currency captures nothing (it cannot sit on this payment's balance).
	o2 := b.order("scarf", 5, 1)
	a2 := b.attempt(o2.ID)
	b.notify("e2", &ordercore.ChannelPayment{OutTradeNo: a2, Status: ordercore.PaymentSucceeded, Amount: ordercore.Money{Amount: o2.Amount.Amount, Currency: "EUR"}}, nil)
	ps, _, _ = b.db.OrderPayments(context.Background(), o2.ID)
	if ps[0].Captured != 0 || ps[0].Accepted {
		t.Fatalf("payment in another currency: %+v", ps[0])
	}
	if n := len(b.reviews()); n != 2 {
		t.Fatalf("%d open review items, want 2", n)
	}
	b.finish()
}

// TestLateMoneyRevivesOrRefunds: money after the order closed revives it when its stock is
// still there, and is refunded when it is not.
func TestLateMoneyRevivesOrRefunds(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	revive := b.order("lamp", 1, 1)
	gone := b.order("desk", 1, 1)
	ar, ag := b.attempt(revive.ID), b.attempt(gone.ID)
	b.clock.Advance(limit.ExpiresInDefault + time.Second)
	if _, err := b.expirer.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{revive.ID, gone.ID} {
		if o, _ := b.db.Order(ctx, id); o.Status != ordercore.OrderCancelled {
			t.Fatalf("order %s is %s after expiry", id, o.Status)
		}
	}
	if _, err := b.submit(engine.PlaceOrder{UserID: "other", Lines: []engine.LineRequest{{SKU: "desk", Quantity: 1}}}); err != nil {
		t.Fatal(err)
	}
	b.notify("e1", &ordercore.ChannelPayment{OutTradeNo: ar, Status: ordercore.PaymentSucceeded, Amount: revive.Amount}, nil)
	b.notify("e2", &ordercore.ChannelPayment{OutTradeNo: ag, Status: ordercore.PaymentSucceeded, Amount: gone.Amount}, nil)
	if o, _ := b.db.Order(ctx, revive.ID); o.Status != ordercore.OrderPaid {
		t.Fatalf("revivable order is %s, want paid", o.Status)
	}
	if s := b.sku("lamp"); s.Sold != 1 || s.Available() != 0 {
		t.Fatalf("revived stock %+v", s)
	}
	if o, _ := b.db.Order(ctx, gone.ID); o.Status != ordercore.OrderCancelled {
		t.Fatalf("order whose stock is gone is %s, want cancelled", o.Status)
	}
	_, rs, _ := b.db.OrderPayments(ctx, gone.ID)
	if len(rs) != 1 || rs[0].Kind != ordercore.RefundLate || rs[0].Amount != gone.Amount {
		t.Fatalf("refunds of the late payment: %+v", rs)
	}
	b.finish()
}

// TestSyncExhaustedGoesToReview: an attempt the channel never settles is queried on the
// schedule, then handed to an operator with its evidence; retry puts it back on schedule,
// and the resolution is audited.
func TestSyncExhaustedGoesToReview(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	o := b.order("kite", 5, 1)
	a := b.attempt(o.ID)
	for _, step := range limit.PaymentSyncSchedule {
		b.clock.Advance(step)
		if _, err := b.pay.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := b.db.Payment(ctx, a)
	if p.Status != ordercore.PaymentPending || !p.NextSyncAt.IsZero() || p.SyncAttempts != len(limit.PaymentSyncSchedule) {
		t.Fatalf("after the schedule: %+v", p)
	}
	items := b.reviews()
	if len(items) != 1 || items[0].Kind != ordercore.ReviewSyncExhausted {
		t.Fatalf("review items %+v", items)
	}
	if _, err := b.submit(engine.ResolveReview{ID: items[0].ID, Action: engine.ReviewRetry, Note: "channel was down", By: "ops-ana"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.submit(engine.ResolveReview{ID: items[0].ID, Action: engine.ReviewDismiss, Note: "again", By: "ops-ana"}); ordercore.ErrorCode(err) != ordercore.EReviewResolved {
		t.Fatalf("second resolve: err %v", err)
	}
	got, _ := b.db.Review(ctx, items[0].ID)
	if got.Status != ordercore.ReviewResolved || got.ResolvedBy != "ops-ana" || got.Note != "channel was down" || got.ResolvedAt.IsZero() {
		t.Fatalf("resolved item %+v", got)
	}
	b.channel.set(a, ordercore.PaymentSucceeded, o.Amount)
	if _, err := b.pay.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if o, _ := b.db.Order(ctx, o.ID); o.Status != ordercore.OrderPaid {
		t.Fatalf("after retry the order is %s, want paid", o.Status)
	}
	b.finish()
}

// TestOrphanNotification: money for a trade ordercore never made is acknowledged and kept
// for an operator, never dropped.
func TestOrphanNotification(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	got := b.notify("e9", &ordercore.ChannelPayment{OutTradeNo: "not-ours", Status: ordercore.PaymentSucceeded, Amount: ordercore.Money{Amount: 5, Currency: "USD"}}, nil)
	if got != engine.OutcomeOrphan {
		t.Fatalf("outcome %q, want orphan", got)
	}
	if again := b.notify("e9", &ordercore.ChannelPayment{OutTradeNo: "not-ours", Status: ordercore.PaymentSucceeded}, nil); again != engine.OutcomeDuplicate {
		t.Fatalf("second delivery: %q", again)
	}
	items := b.reviews()
	if len(items) != 1 || items[0].Kind != ordercore.ReviewOrphan {
		t.Fatalf("review items %+v", items)
	}
	b.finish()
}

// TestPayClosesTheOpenAttempt: a new attempt closes the old one at the channel first, and
// a channel that says the old one is paid pays the order instead.
func TestPayClosesTheOpenAttempt(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	o := b.order("pen", 5, 1)
	a1 := b.attempt(o.ID)
	a2 := b.attempt(o.ID)
	if tr, _ := b.channel.trade(a1); tr.Status != ordercore.PaymentClosed {
		t.Fatalf("old trade is %s at the channel, want closed", tr.Status)
	}
	b.channel.set(a2, ordercore.PaymentSucceeded, o.Amount)
	_, err := b.pay.Pay(ctx, o.ID, matrixChannel, nil)
	if ordercore.ErrorCode(err) != ordercore.EIllegalTransition {
		t.Fatalf("third attempt while the second is paid: err %v", err)
	}
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderPaid {
		t.Fatalf("order %s, want paid by the attempt the close found paid", got.Status)
	}
	b.finish()
}

// TestUnknownCreateIsNeverReissued: a create whose answer is lost leaves the attempt
// unknown; a new attempt waits until a query or close settles it.
func TestUnknownCreateIsNeverReissued(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	o := b.order("cup", 5, 1)
	slow := &unknownChannel{fakeChannel: b.channel}
	b.pay.Channels[matrixChannel] = slow
	_, err := b.pay.Pay(ctx, o.ID, matrixChannel, nil)
	if ordercore.ErrorCode(err) != ordercore.EChannelUnavailable {
		t.Fatalf("pay with a timing-out channel: err %v", err)
	}
	ps, _, _ := b.db.OrderPayments(ctx, o.ID)
	if len(ps) != 1 || ps[0].Status != ordercore.PaymentUnknown {
		t.Fatalf("payments %+v, want one unknown", ps)
	}
	_, err = b.pay.Pay(ctx, o.ID, matrixChannel, nil)
	if ordercore.ErrorCode(err) != ordercore.EPaymentInProgress {
		t.Fatalf("second pay while unknown: err %v", err)
	}
	if ps, _, _ := b.db.OrderPayments(ctx, o.ID); len(ps) != 1 {
		t.Fatalf("%d attempts, want the unknown one only", len(ps))
	}
	b.pay.Channels[matrixChannel] = b.channel // the channel answers again
	b.clock.Advance(limit.PaymentSyncSchedule[0])
	if _, err := b.pay.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := b.db.Payment(ctx, ps[0].ID); p.Status != ordercore.PaymentPending {
		t.Fatalf("after the query the attempt is %s, want pending (the trade existed)", p.Status)
	}
	b.finish()
}

// TestRefusedPaymentReplaysRefused: a keyed payment request the channel refused is
// answered channel_refused again when it is retried with its key, not replayed as a
// created attempt; and no second trade is asked for.
func TestRefusedPaymentReplaysRefused(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	o := b.order("mug", 5, 1)
	refusing := &refusingChannel{fakeChannel: b.channel}
	b.pay.Channels[matrixChannel] = refusing
	key := &engine.Idem{Key: "pay-1", Hash: "h", Status: 201}
	for i := range 2 {
		if _, err := b.pay.Pay(ctx, o.ID, matrixChannel, key); ordercore.ErrorCode(err) != ordercore.EChannelRefused {
			t.Fatalf("request %d: err %v, want channel_refused", i+1, err)
		}
	}
	if refusing.creates != 1 {
		t.Errorf("the channel was asked for %d trades, want 1", refusing.creates)
	}
	ps, _, _ := b.db.OrderPayments(ctx, o.ID)
	if len(ps) != 1 || ps[0].Status != ordercore.PaymentFailed {
		t.Fatalf("payments %+v, want one failed attempt", ps)
	}
	b.finish()
}

// TestFreeOrderIsNotSentToAChannel: an order that costs nothing is refused a channel
// payment (channels refuse a trade of 0) before any attempt is made, and can be recorded
// as paid with a manual payment of 0.
func TestFreeOrderIsNotSentToAChannel(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	if _, err := b.submit(engine.CreateSKU{ID: "gift", Name: "gift", Price: ordercore.Money{Amount: 0, Currency: "USD"}, Stock: 5}); err != nil {
		t.Fatal(err)
	}
	v, err := b.submit(engine.PlaceOrder{UserID: "shopper", Lines: []engine.LineRequest{{SKU: "gift", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	o := v.(ordercore.Order)
	if _, err := b.pay.Pay(ctx, o.ID, matrixChannel, nil); ordercore.ErrorCode(err) != ordercore.ENothingToPay {
		t.Fatalf("channel payment of a free order: err %v, want nothing_to_pay", err)
	}
	if ps, _, _ := b.db.OrderPayments(ctx, o.ID); len(ps) != 0 {
		t.Fatalf("payments %+v, want none", ps)
	}
	v, err = b.submit(engine.ApplyPayment{OrderID: o.ID, Payment: ordercore.PaymentApplied{Channel: "manual", Reference: "free", Amount: o.Amount}})
	if err != nil || v.(ordercore.Order).Status != ordercore.OrderPaid {
		t.Fatalf("manual payment of 0: %v %v", v, err)
	}
	b.finish()
}

// refusingChannel refuses every trade it is asked to create.
type refusingChannel struct {
	*fakeChannel
	creates int
}

func (r *refusingChannel) CreatePayment(context.Context, ordercore.PaymentRequest) (ordercore.PaymentInstructions, error) {
	r.creates++
	return ordercore.PaymentInstructions{}, errors.New("invalid api key")
}

// unknownChannel took the create but its answer is lost, and it cannot be closed either.
type unknownChannel struct{ *fakeChannel }

func (u *unknownChannel) CreatePayment(ctx context.Context, req ordercore.PaymentRequest) (ordercore.PaymentInstructions, error) {
	u.fakeChannel.CreatePayment(ctx, req)
	return ordercore.PaymentInstructions{}, errors.Join(ordercore.ErrOutcomeUnknown, errors.New("timeout"))
}

func (u *unknownChannel) ClosePayment(context.Context, string) error {
	return errors.Join(ordercore.ErrOutcomeUnknown, errors.New("timeout"))
}

// TestReviewActionsKeepANextStep: an item whose payment still waits on the channel cannot
// be dismissed (it would be left with no next step); a failed refund is retried under a
// new refund number.
func TestReviewActionsKeepANextStep(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	o := b.order("bell", 5, 1)
	a := b.attempt(o.ID)
	for _, step := range limit.PaymentSyncSchedule {
		b.clock.Advance(step)
		if _, err := b.pay.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	items := b.reviews()
	if len(items) != 1 {
		t.Fatalf("review items %+v", items)
	}
	if _, err := b.submit(engine.ResolveReview{ID: items[0].ID, Action: engine.ReviewDismiss, Note: "gone", By: "ops"}); ordercore.ErrorCode(err) != ordercore.ECONFLICT {
		t.Fatalf("dismiss of an open attempt: err %v, want %s", err, ordercore.ECONFLICT)
	}

	b.notify("p1", &ordercore.ChannelPayment{OutTradeNo: a, Status: ordercore.PaymentSucceeded, Amount: o.Amount}, nil)
	v, err := b.submit(engine.RequestRefund{OrderID: o.ID, Amount: o.Amount})
	if err != nil {
		t.Fatal(err)
	}
	r := v.(ordercore.Refund)
	b.notify("r1", nil, &ordercore.ChannelRefund{OutTradeNo: a, OutRefundNo: r.ID, Status: ordercore.RefundFailed, Amount: r.Amount})
	var failed ordercore.ReviewItem
	for _, it := range b.reviews() {
		if it.Kind == ordercore.ReviewRefundFailed {
			failed = it
		}
	}
	if failed.RefundID != r.ID {
		t.Fatalf("no refund_failed item for %s: %+v", r.ID, b.reviews())
	}
	if _, err := b.submit(engine.ResolveReview{ID: failed.ID, Action: engine.ReviewRetry, Note: "card replaced", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	_, rs, _ := b.db.OrderPayments(ctx, o.ID)
	var again ordercore.Refund
	for _, x := range rs {
		if x.ID != r.ID {
			again = x
		}
	}
	if len(rs) != 2 || again.Status != ordercore.RefundPending || again.Amount != r.Amount {
		t.Fatalf("refunds after retry %+v, want the failed one and a new pending one", rs)
	}
	b.notify("r2", nil, &ordercore.ChannelRefund{OutTradeNo: a, OutRefundNo: again.ID, Status: ordercore.RefundSucceeded, Amount: r.Amount})
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderRefunded {
		t.Fatalf("order %s after the second refund, want refunded", got.Status)
	}
	b.finish()
}

// TestDismissedFailedRefundSettlesTheOrder: an operator who gives up a refund the channel
// refused leaves the order partially refunded (by nothing), not refunding forever with no
// next step (P3); it may be refunded again later.
func TestDismissedFailedRefundSettlesTheOrder(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	o := b.order("gong", 5, 1)
	a := b.attempt(o.ID)
	b.notify("p1", &ordercore.ChannelPayment{OutTradeNo: a, Status: ordercore.PaymentSucceeded, Amount: o.Amount}, nil)
	v, err := b.submit(engine.RequestRefund{OrderID: o.ID, Amount: o.Amount})
	if err != nil {
		t.Fatal(err)
	}
	r := v.(ordercore.Refund)
	b.notify("r1", nil, &ordercore.ChannelRefund{OutTradeNo: a, OutRefundNo: r.ID, Status: ordercore.RefundFailed, Amount: r.Amount})
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderRefunding {
		t.Fatalf("order %s after its refund failed, want refunding until an operator acts", got.Status)
	}
	item := b.reviewOf(ordercore.ReviewRefundFailed, r.ID)
	if _, err := b.submit(engine.ResolveReview{ID: item.ID, Action: engine.ReviewDismiss, Note: "shopper kept the item", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderPartiallyRefunded {
		t.Fatalf("order %s after the failed refund was given up, want partially_refunded", got.Status)
	}
	v, err = b.submit(engine.RequestRefund{OrderID: o.ID, Amount: o.Amount})
	if err != nil {
		t.Fatalf("a new refund after the dismissal: %v", err)
	}
	r2 := v.(ordercore.Refund)
	b.notify("r2", nil, &ordercore.ChannelRefund{OutTradeNo: a, OutRefundNo: r2.ID, Status: ordercore.RefundSucceeded, Amount: r2.Amount})
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderRefunded {
		t.Fatalf("order %s after the new refund, want refunded", got.Status)
	}
	b.finish()
}

// TestExpiryWaitsForAnUnansweredClose: an order whose attempt cannot be closed at the
// channel (no answer) is not expired, and not retried by the sweeper meanwhile (it would
// spin on it and starve the orders behind it); the payment sync resolves the attempt, and
// then the order expires.
func TestExpiryWaitsForAnUnansweredClose(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	o := b.order("fan", 5, 1)
	a := b.attempt(o.ID)
	b.pay.Channels[matrixChannel] = &unknownChannel{fakeChannel: b.channel}
	b.clock.Advance(limit.ExpiresInDefault + time.Second)
	if _, err := b.expirer.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := b.db.Payment(ctx, a); p.Status != ordercore.PaymentUnknown {
		t.Fatalf("attempt %s after an unanswered close, want unknown", p.Status)
	}
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderPendingPayment {
		t.Fatalf("order %s while its attempt may be open, want pending_payment", got.Status)
	}
	if ids, _ := b.db.ExpiredOrders(ctx, b.clock.Now(), 10); len(ids) != 0 {
		t.Fatalf("the sweeper would retry %v at once", ids)
	}
	b.pay.Channels[matrixChannel] = b.channel // it answers again
	if p, _ := b.db.Payment(ctx, a); p.NextSyncAt.After(b.clock.Now()) {
		b.clock.Advance(p.NextSyncAt.Sub(b.clock.Now()))
	}
	if _, err := b.pay.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.expirer.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderCancelled {
		t.Fatalf("order %s once the attempt is closed, want cancelled", got.Status)
	}
	if tr, _ := b.channel.trade(a); tr.Status != ordercore.PaymentClosed {
		t.Fatalf("trade %s at the channel, want closed", tr.Status)
	}
	b.finish()
}

// TestPaymentSyncScheduleByChannel: a channel with its own schedule is queried on it;
// others keep the default.
func TestPaymentSyncScheduleByChannel(t *testing.T) {
	t.Parallel()
	m := newMatrixWorkerWith(t, 0, engine.Config{PaymentSyncByChannel: map[string][]time.Duration{matrixChannel: {7 * time.Second, 11 * time.Second}}})
	t.Cleanup(m.close)
	b := payBundle{m, t}
	o := b.order("ink", 5, 1)
	a := b.attempt(o.ID)
	p, _ := b.db.Payment(context.Background(), a)
	if want := b.clock.Now().Add(7 * time.Second); !p.NextSyncAt.Equal(want) {
		t.Fatalf("first query at %v, want %v (the channel's first step)", p.NextSyncAt, want)
	}
	b.clock.Advance(7 * time.Second)
	if _, err := b.pay.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, _ = b.db.Payment(context.Background(), a)
	if want := b.clock.Now().Add(11 * time.Second); !p.NextSyncAt.Equal(want) {
		t.Fatalf("second query at %v, want %v", p.NextSyncAt, want)
	}
}

// TestPaidOrderClosesItsOtherAttempts: money for an old, closed attempt pays the order
// while a newer attempt is open; the newer one is closed at its channel at once (not left
// for the shopper to pay too, nor queried for hours).
func TestPaidOrderClosesItsOtherAttempts(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	o := b.order("rug", 5, 1)
	a1 := b.attempt(o.ID)
	a2 := b.attempt(o.ID) // closes a1 at the channel
	b.channel.set(a1, ordercore.PaymentSucceeded, o.Amount)
	b.notify("p1", &ordercore.ChannelPayment{OutTradeNo: a1, Status: ordercore.PaymentSucceeded, Amount: o.Amount}, nil)
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderPaid {
		t.Fatalf("order %s, want paid by the late money", got.Status)
	}
	p2, _ := b.db.Payment(ctx, a2)
	if p2.NextSyncAt.After(b.clock.Now()) {
		t.Fatalf("the open attempt is due at %v, want now (%v)", p2.NextSyncAt, b.clock.Now())
	}
	if _, err := b.pay.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if p2, _ = b.db.Payment(ctx, a2); p2.Status != ordercore.PaymentClosed {
		t.Fatalf("the other attempt is %s, want closed", p2.Status)
	}
	if tr, _ := b.channel.trade(a2); tr.Status != ordercore.PaymentClosed {
		t.Fatalf("its trade is %s at the channel, want closed", tr.Status)
	}
	b.finish()
}

// TestEndedAttemptConfirmedOnItsOwnSchedule: an attempt closed at expiry late in its life
// (most of the sync schedule spent while it was open) is still confirmed with the whole
// schedule: the channel took money in the moment of the close, its notification never
// came, and its first queries fail; the money is found by a later query and revives the
// order. When every confirming query fails, an operator's retry asks again.
func TestEndedAttemptConfirmedOnItsOwnSchedule(t *testing.T) {
	t.Parallel()
	sched := limit.PaymentSyncSchedule
	for _, tc := range []struct {
		name   string
		faults int  // confirming queries that fail
		review bool // the faults outlast the schedule: an operator retries
	}{
		{name: "a later query finds the money", faults: len(sched) - 1},
		{name: "every query fails, then the operator retries", faults: len(sched), review: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupPay(t)
			ctx := context.Background()
			sync := func() {
				t.Helper()
				if _, err := b.pay.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			o, a, left := b.agedAttempt("vase")
			b.clock.Advance(left + time.Second)
			if _, err := b.expirer.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderCancelled {
				t.Fatalf("order %s after expiry, want cancelled", got.Status)
			}
			// Paid at the channel in the moment of the close; no notification comes.
			b.channel.set(a, ordercore.PaymentSucceeded, o.Amount)
			b.channel.failQueries(tc.faults)
			for i, step := range sched {
				p, _ := b.db.Payment(ctx, a)
				if p.Status != ordercore.PaymentClosed || p.NextSyncAt.IsZero() {
					t.Fatalf("before confirming query %d: %+v, want closed with a query due", i+1, p)
				}
				if len(b.reviews()) != 0 {
					t.Fatalf("before confirming query %d: review items %+v", i+1, b.reviews())
				}
				if i == 0 {
					step = sched[0] // the first confirming query comes one first step after the close
				}
				b.clock.Advance(step)
				sync()
				if i == tc.faults {
					break // this query answered
				}
			}
			if tc.review {
				items := b.reviews()
				if len(items) != 1 || items[0].Kind != ordercore.ReviewSyncExhausted || items[0].PaymentID != a {
					t.Fatalf("after %d failed confirming queries: review items %+v, want one sync_exhausted", tc.faults, items)
				}
				if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderCancelled {
					t.Fatalf("order %s before the retry, want cancelled", got.Status)
				}
				if _, err := b.submit(engine.ResolveReview{ID: items[0].ID, Action: engine.ReviewRetry, Note: "channel back", By: "ops"}); err != nil {
					t.Fatalf("retry of a closed attempt's confirming query: %v", err)
				}
				sync()
			}
			p, _ := b.db.Payment(ctx, a)
			if p.Status != ordercore.PaymentSucceeded || p.Captured != o.Amount.Amount {
				t.Fatalf("payment %+v, want succeeded with %d captured", p, o.Amount.Amount)
			}
			if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderPaid {
				t.Fatalf("order %s, want paid (revived by the money found late)", got.Status)
			}
			b.finish()
		})
	}
}

// TestUnansweredCloseQueriedOnItsOwnSchedule: an attempt whose close at expiry got no
// answer, late in its life, is queried with the whole schedule (the order waits on it):
// the close took effect at the channel, its first queries fail, a later one finds the
// trade closed, and the order expires with no operator needed.
func TestUnansweredCloseQueriedOnItsOwnSchedule(t *testing.T) {
	t.Parallel()
	sched := limit.PaymentSyncSchedule
	b := setupPay(t)
	ctx := context.Background()
	o, a, left := b.agedAttempt("lens")
	// The close at expiry takes effect at the channel, but its answer is lost.
	b.pay.Channels[matrixChannel] = &unknownChannel{fakeChannel: b.channel}
	b.clock.Advance(left + time.Second)
	if _, err := b.expirer.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	b.channel.set(a, ordercore.PaymentClosed, o.Amount)
	b.pay.Channels[matrixChannel] = b.channel
	faults := len(sched) - 1
	b.channel.failQueries(faults)
	for i, step := range sched {
		p, _ := b.db.Payment(ctx, a)
		if p.Status != ordercore.PaymentUnknown || p.NextSyncAt.IsZero() {
			t.Fatalf("before query %d after the close: %+v, want unknown with a query due", i+1, p)
		}
		if items := b.reviews(); len(items) != 0 {
			t.Fatalf("before query %d after the close: review items %+v", i+1, items)
		}
		if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderPendingPayment {
			t.Fatalf("order %s while its attempt is unknown, want pending_payment", got.Status)
		}
		b.clock.Advance(step)
		if _, err := b.pay.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if i == faults {
			break
		}
	}
	if p, _ := b.db.Payment(ctx, a); p.Status != ordercore.PaymentClosed {
		t.Fatalf("payment %s after the query answered, want closed", p.Status)
	}
	if _, err := b.expirer.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderCancelled {
		t.Fatalf("order %s once its attempt is closed, want cancelled", got.Status)
	}
	if items := b.reviews(); len(items) != 0 {
		t.Fatalf("review items %+v, want none", items)
	}
	b.finish()
}

// TestNotificationDuringAQuery: a notification that fails the attempt while a sync query
// is out (the query then answers pending, from before) does not cancel the failed
// attempt's confirming close; the shopper retries the card on the failed trade, its
// notification never comes, and the confirming step finds the money.
func TestNotificationDuringAQuery(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	o := b.order("mug", 5, 1)
	a := b.attempt(o.ID)
	var once sync.Once
	var notifyErr error
	b.channel.mu.Lock()
	b.channel.onQuery = func(no string) {
		if no != a {
			return
		}
		once.Do(func() {
			body, _ := json.Marshal(note{id: "fail-1", pay: &ordercore.ChannelPayment{OutTradeNo: a, Status: ordercore.PaymentFailed, Amount: o.Amount}})
			_, _, notifyErr = b.pay.Notify(ctx, matrixChannel, nil, body)
		})
	}
	b.channel.mu.Unlock()
	b.clock.Advance(limit.PaymentSyncSchedule[0])
	if _, err := b.pay.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if notifyErr != nil {
		t.Fatal(notifyErr)
	}
	p, _ := b.db.Payment(ctx, a)
	if p.Status != ordercore.PaymentFailed || p.NextSyncAt.IsZero() {
		t.Fatalf("after the query that crossed the failure: %+v, want failed with its confirming step due", p)
	}
	b.channel.set(a, ordercore.PaymentSucceeded, o.Amount) // the card retried: paid, no notification
	b.clock.Advance(p.NextSyncAt.Sub(b.clock.Now()))
	if _, err := b.pay.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderPaid {
		t.Fatalf("order %s after the confirming step, want paid", got.Status)
	}
	b.finish()
}

// paidForRefunds places an order of qty units of a new SKU and pays it in full.
func (b payBundle) paidForRefunds(sku string, qty int64) (ordercore.Order, string) {
	b.t.Helper()
	o := b.order(sku, 10, qty)
	a := b.attempt(o.ID)
	b.notify("paid-"+sku, &ordercore.ChannelPayment{OutTradeNo: a, Status: ordercore.PaymentSucceeded, Amount: o.Amount}, nil)
	return o, a
}

// reviewOf returns the open review item of the given kind for refund id.
func (b payBundle) reviewOf(kind, refundID string) ordercore.ReviewItem {
	b.t.Helper()
	for _, it := range b.reviews() {
		if it.Kind == kind && it.RefundID == refundID {
			return it
		}
	}
	b.t.Fatalf("no %s review item for refund %s: %+v", kind, refundID, b.reviews())
	return ordercore.ReviewItem{}
}

// TestRetriedRefundRestocksNoLineTwice: a failed refund whose line another refund has
// restocked since is retried without that line; its money is still refunded, and the
// line's units go back to the shelf once.
func TestRetriedRefundRestocksNoLineTwice(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	o, a := b.paidForRefunds("lamp", 2)
	half := ordercore.Money{Amount: o.Amount.Amount / 2, Currency: o.Amount.Currency}
	refund := func() ordercore.Refund {
		v, err := b.submit(engine.RequestRefund{OrderID: o.ID, Amount: half, RestockLines: []int{1}})
		if err != nil {
			t.Fatal(err)
		}
		return v.(ordercore.Refund)
	}
	r1 := refund()
	b.notify("r1-failed", nil, &ordercore.ChannelRefund{OutTradeNo: a, OutRefundNo: r1.ID, Status: ordercore.RefundFailed, Amount: half})
	r2 := refund() // line 1 again: r1 failed and gave it back
	b.notify("r2-ok", nil, &ordercore.ChannelRefund{OutTradeNo: a, OutRefundNo: r2.ID, Status: ordercore.RefundSucceeded, Amount: half})
	if _, err := b.submit(engine.ResolveReview{ID: b.reviewOf(ordercore.ReviewRefundFailed, r1.ID).ID, Action: engine.ReviewRetry, Note: "try again", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	_, rs, _ := b.db.OrderPayments(ctx, o.ID)
	var r3 ordercore.Refund
	for _, x := range rs {
		if x.ID != r1.ID && x.ID != r2.ID {
			r3 = x
		}
	}
	if r3.ID == "" || len(r3.RestockLines) != 0 || r3.Amount != half {
		t.Fatalf("the retried refund %+v: want the same money and no line (line 1 went back with %s)", r3, r2.ID)
	}
	b.notify("r3-ok", nil, &ordercore.ChannelRefund{OutTradeNo: a, OutRefundNo: r3.ID, Status: ordercore.RefundSucceeded, Amount: half})
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderRefunded {
		t.Fatalf("order %s, want refunded", got.Status)
	}
	if s := b.sku("lamp"); s.Sold != 0 || s.Available() != 10 {
		t.Fatalf("stock %+v: want both units back on the shelf, once", s)
	}
	b.finish()
}

// TestAbnormalRefundResolutions: a refund the channel could not pay out holds its money
// until an operator acts. Dismissing it (settled with the shopper outside ordercore)
// counts it as paid back and settles the order; retrying it releases its money and issues
// it again under a new number.
func TestAbnormalRefundResolutions(t *testing.T) {
	t.Parallel()
	b := setupPay(t)
	ctx := context.Background()
	abnormal := func(sku string) (ordercore.Order, string, ordercore.Refund, ordercore.ReviewItem) {
		o, a := b.paidForRefunds(sku, 1)
		v, err := b.submit(engine.RequestRefund{OrderID: o.ID, Amount: o.Amount, RestockLines: []int{1}})
		if err != nil {
			t.Fatal(err)
		}
		r := v.(ordercore.Refund)
		b.notify("abn-"+sku, nil, &ordercore.ChannelRefund{OutTradeNo: a, OutRefundNo: r.ID, Status: ordercore.RefundAbnormal, Amount: r.Amount})
		if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderRefunding {
			t.Fatalf("order %s after an abnormal refund, want refunding", got.Status)
		}
		return o, a, r, b.reviewOf(ordercore.ReviewRefundAbnormal, r.ID)
	}

	o, _, r, item := abnormal("kettle")
	if _, err := b.submit(engine.ResolveReview{ID: item.ID, Action: engine.ReviewDismiss, Note: "paid back by bank transfer", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderRefunded {
		t.Fatalf("order %s after the dismissal, want refunded", got.Status)
	}
	ps, rs, _ := b.db.OrderPayments(ctx, o.ID)
	if len(rs) != 1 || rs[0].Status != ordercore.RefundSucceeded || ps[0].Refunded != r.Amount.Amount || ps[0].Refunding != 0 {
		t.Fatalf("after the dismissal: payment %+v, refunds %+v", ps[0], rs)
	}
	if s := b.sku("kettle"); s.Available() != 10 {
		t.Fatalf("stock %+v: want the unit back", s)
	}

	// A retry would issue a second refund while the channel holds the first one's money.
	o, _, r, item = abnormal("toaster")
	if _, err := b.submit(engine.ResolveReview{ID: item.ID, Action: engine.ReviewRetry, Note: "new card", By: "ops"}); ordercore.ErrorCode(err) != ordercore.ECONFLICT {
		t.Fatalf("retry of an abnormal refund: %v, want %s", err, ordercore.ECONFLICT)
	}
	_, rs, _ = b.db.OrderPayments(ctx, o.ID)
	if len(rs) != 1 || rs[0].ID != r.ID || rs[0].Status != ordercore.RefundAbnormal {
		t.Fatalf("refunds after the refused retry %+v: want the abnormal one alone", rs)
	}
	if got, _ := b.db.Review(ctx, item.ID); got.Status != ordercore.ReviewOpen {
		t.Fatalf("review item %s after the refused retry, want open", got.Status)
	}
	if _, err := b.submit(engine.ResolveReview{ID: item.ID, Action: engine.ReviewDismiss, Note: "paid out at the channel", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.db.Order(ctx, o.ID); got.Status != ordercore.OrderRefunded {
		t.Fatalf("order %s after the dismissal, want refunded", got.Status)
	}
	if s := b.sku("toaster"); s.Available() != 10 {
		t.Fatalf("stock %+v: want the unit back", s)
	}
	b.finish()
}
