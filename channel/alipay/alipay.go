package alipay

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
	"unicode/utf8"

	"ordercore"
)

// Defaults of a Config.
const (
	// GatewayURLDefault is the production gateway of the Alipay open platform.
	GatewayURLDefault = "https://openapi.alipay.com/gateway.do"
	// NameDefault is the channel's path segment: /v1/channels/alipay/notify.
	NameDefault = "alipay"
	// RSAKeyBitsMin is the key size Alipay requires of RSA2 keys; a smaller key is a
	// configuration mistake, not a choice.
	RSAKeyBitsMin = 2048
)

// Bounds Alipay puts on what we send.
const (
	// amountFenMax is the largest total_amount / refund_amount Alipay accepts:
	// 100,000,000.00 yuan, in fen.
	amountFenMax = 100_000_000_00
	// subjectRunesMax is the longest subject Alipay accepts.
	subjectRunesMax = 256
	// outNoBytesMax is the longest out_trade_no / out_request_no Alipay accepts.
	outNoBytesMax = 64
)

// cny is the only currency of this channel: domestic Alipay trades are in yuan, and the
// gateway's amounts are decimal yuan strings with two fraction digits.
const cny ordercore.Currency = "CNY"

// cst is the gateway's time zone: every timestamp it sends or expects ("2006-01-02
// 15:04:05") is Beijing time, whatever the zone of the machine that talks to it.
var cst = time.FixedZone("CST", 8*3600)

// timeLayout is the layout of the gateway's timestamps.
const timeLayout = "2006-01-02 15:04:05"

// Config is one Alipay open-platform application of one merchant, in public-key mode (the
// certificate mode, with alipay_cert_sn, is not supported).
type Config struct {
	AppID string // the application the trades are made for
	// SellerID is the merchant's Alipay user id (the pid, 2088...). When set, a
	// notification must name it as seller_id; it guards against another merchant's
	// notification relayed through an app we share.
	SellerID string
	// PrivateKey is the application's private key: it signs our requests.
	PrivateKey *rsa.PrivateKey
	// AlipayPublicKey is the Alipay public key of the application: it verifies answers and
	// notifications. It is not the application's own public key.
	AlipayPublicKey *rsa.PublicKey
	// GatewayURL is where the gateway is (GatewayURLDefault when empty).
	GatewayURL string
	// Timeout bounds one outbound call (outbound.TimeoutDefault when zero).
	Timeout time.Duration
	// HTTPClient sends the calls (http.DefaultClient when nil).
	HTTPClient *http.Client
	// Name is the channel's name (NameDefault when empty).
	Name string
}

// Channel is the Alipay channel of one application. It is safe for concurrent use: it holds
// only its configuration, which nothing changes after New.
type Channel struct {
	cfg     Config
	gateway *url.URL
	// now stamps requests. The gateway reads the timestamp but keeps no window on it that
	// matters to us; tests replace the clock to pin what is signed.
	now func() time.Time
}

var _ ordercore.Channel = (*Channel)(nil)

// New validates cfg, fills its defaults and returns the channel.
func New(cfg Config) (*Channel, error) {
	if cfg.GatewayURL == "" {
		cfg.GatewayURL = GatewayURLDefault
	}
	if cfg.Name == "" {
		cfg.Name = NameDefault
	}
	switch {
	case cfg.AppID == "":
		return nil, errors.New("alipay: config: AppID is required")
	case cfg.PrivateKey == nil:
		return nil, errors.New("alipay: config: PrivateKey is required")
	case cfg.AlipayPublicKey == nil:
		return nil, errors.New("alipay: config: AlipayPublicKey is required")
	case cfg.PrivateKey.N.BitLen() < RSAKeyBitsMin:
		return nil, fmt.Errorf("alipay: config: PrivateKey has %d bits, RSA2 needs %d", cfg.PrivateKey.N.BitLen(), RSAKeyBitsMin)
	case cfg.AlipayPublicKey.N.BitLen() < RSAKeyBitsMin:
		return nil, fmt.Errorf("alipay: config: AlipayPublicKey has %d bits, RSA2 needs %d", cfg.AlipayPublicKey.N.BitLen(), RSAKeyBitsMin)
	case cfg.PrivateKey.PublicKey.Equal(cfg.AlipayPublicKey):
		// The commonest setup mistake: pasting the application's public key where Alipay's
		// belongs. Every answer would then fail verification, in production only.
		return nil, errors.New("alipay: config: AlipayPublicKey is the application's own public key, not Alipay's")
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("alipay: config: Timeout %s is negative", cfg.Timeout)
	}
	gw, err := url.Parse(cfg.GatewayURL)
	if err != nil || (gw.Scheme != "https" && gw.Scheme != "http") || gw.Host == "" || gw.RawQuery != "" {
		return nil, fmt.Errorf("alipay: config: GatewayURL %q is not an absolute http(s) URL without a query", cfg.GatewayURL)
	}
	return &Channel{cfg: cfg, gateway: gw, now: time.Now}, nil
}

// Name returns the channel's path segment.
func (c *Channel) Name() string { return c.cfg.Name }

// Ack writes what Alipay reads as "received": status 200 and the body "success", exactly
// those seven bytes. Anything else (a trailing newline, an HTML page) counts as a failure,
// and Alipay sends the notification again, up to eight times over about 25 hours.
func (c *Channel) Ack(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("success"))
}

// Gateway methods used here.
const (
	methodPagePay     = "alipay.trade.page.pay"
	methodQuery       = "alipay.trade.query"
	methodClose       = "alipay.trade.close"
	methodRefund      = "alipay.trade.refund"
	methodRefundQuery = "alipay.trade.fastpay.refund.query"
)

// productPagePay is the product code of computer-website payments.
const productPagePay = "FAST_INSTANT_TRADE_PAY"

// CreatePayment returns the signed URL of Alipay's cashier page for req. It makes no call:
// alipay.trade.page.pay is a page the shopper's browser opens, and Alipay creates the trade
// only when the shopper reaches it. Until then a query or a close answers
// ACQ.TRADE_NOT_EXIST (ErrTradeNotFound); time_expire bounds how late the page can still
// be paid, so a caller that finds no trade after ExpiresAt knows none can appear.
//
// The same request gives the same trade: Alipay keys it by out_trade_no, and the page
// parameters depend only on req (a retry with different ones is refused by Alipay as
// CONTEXT_INCONSISTENT).
func (c *Channel) CreatePayment(_ context.Context, req ordercore.PaymentRequest) (ordercore.PaymentInstructions, error) {
	if err := checkOutNo("OutTradeNo", req.OutTradeNo); err != nil {
		return ordercore.PaymentInstructions{}, err
	}
	amount, err := formatYuan(req.Amount)
	if err != nil {
		return ordercore.PaymentInstructions{}, err
	}
	biz := pagePayBiz{
		OutTradeNo:  req.OutTradeNo,
		TotalAmount: amount,
		Subject:     subject(req),
		ProductCode: productPagePay,
	}
	if !req.ExpiresAt.IsZero() {
		biz.TimeExpire = req.ExpiresAt.In(cst).Format(timeLayout)
	}
	params, err := c.signedParams(methodPagePay, req.NotifyURL, biz)
	if err != nil {
		return ordercore.PaymentInstructions{}, fmt.Errorf("alipay: page pay %s: %w", req.OutTradeNo, err)
	}
	u := *c.gateway
	u.RawQuery = params.Encode()
	return ordercore.PaymentInstructions{RedirectURL: u.String()}, nil
}

// pagePayBiz is the biz_content of alipay.trade.page.pay.
type pagePayBiz struct {
	OutTradeNo  string `json:"out_trade_no"`
	TotalAmount string `json:"total_amount"`
	Subject     string `json:"subject"`
	ProductCode string `json:"product_code"`
	TimeExpire  string `json:"time_expire,omitempty"`
}

// subject is the title the shopper sees on the cashier page: the description, or the order
// when there is none (Alipay requires one), cut to what Alipay accepts.
func subject(req ordercore.PaymentRequest) string {
	s := req.Description
	if s == "" {
		s = "Order " + req.OrderID
	}
	if utf8.RuneCountInString(s) > subjectRunesMax {
		s = string([]rune(s)[:subjectRunesMax])
	}
	return s
}

// tradeQueryBiz is the biz_content of alipay.trade.query and alipay.trade.close.
type tradeQueryBiz struct {
	OutTradeNo string `json:"out_trade_no"`
}

// tradeQueryAnswer is the node of alipay.trade.query.
type tradeQueryAnswer struct {
	TradeNo     string  `json:"trade_no"`
	OutTradeNo  string  `json:"out_trade_no"`
	TradeStatus string  `json:"trade_status"`
	TotalAmount decimal `json:"total_amount"`
	SendPayDate string  `json:"send_pay_date"`
}

// QueryPayment returns Alipay's view of the trade out_trade_no. A status this adapter does
// not know is ErrOutcomeUnknown: it is signed, but not something we can act on.
func (c *Channel) QueryPayment(ctx context.Context, outTradeNo string) (ordercore.ChannelPayment, error) {
	var a tradeQueryAnswer
	res, err := c.call(ctx, methodQuery, tradeQueryBiz{OutTradeNo: outTradeNo}, &a)
	if err != nil {
		return ordercore.ChannelPayment{}, fmt.Errorf("alipay: query %s: %w", outTradeNo, err)
	}
	if res.failed() {
		if res.SubCode == subTradeNotExist {
			return ordercore.ChannelPayment{}, fmt.Errorf("alipay: query %s: %w", outTradeNo, ordercore.ErrTradeNotFound)
		}
		return ordercore.ChannelPayment{}, c.refusal(res)
	}
	p, err := a.payment(outTradeNo)
	if err != nil {
		return ordercore.ChannelPayment{}, fmt.Errorf("alipay: query %s: %w: %v", outTradeNo, ordercore.ErrOutcomeUnknown, err)
	}
	return p, nil
}

// payment reads a signed query answer about outTradeNo.
func (a tradeQueryAnswer) payment(outTradeNo string) (ordercore.ChannelPayment, error) {
	if a.OutTradeNo != "" && a.OutTradeNo != outTradeNo {
		return ordercore.ChannelPayment{}, fmt.Errorf("answer is about trade %q", a.OutTradeNo)
	}
	status, ok := tradeStatus(a.TradeStatus)
	if !ok {
		return ordercore.ChannelPayment{}, fmt.Errorf("unknown trade_status %q", a.TradeStatus)
	}
	amount, err := parseYuan(string(a.TotalAmount))
	if err != nil {
		return ordercore.ChannelPayment{}, fmt.Errorf("total_amount: %w", err)
	}
	p := ordercore.ChannelPayment{OutTradeNo: outTradeNo, TxnID: a.TradeNo, Status: status, Amount: amount}
	if a.SendPayDate != "" && status == ordercore.PaymentSucceeded {
		if p.PaidAt, err = parseTime(a.SendPayDate); err != nil {
			return ordercore.ChannelPayment{}, fmt.Errorf("send_pay_date: %w", err)
		}
	}
	return p, nil
}

// tradeStatus maps Alipay's trade_status. TRADE_FINISHED is a paid trade whose refund
// window is over, so it is succeeded like TRADE_SUCCESS. TRADE_CLOSED is both "closed
// unpaid" and "paid, then refunded in full"; a refund notification is told apart by its
// refund fields before this mapping is used.
func tradeStatus(s string) (ordercore.PaymentStatus, bool) {
	switch s {
	case "WAIT_BUYER_PAY":
		return ordercore.PaymentPending, true
	case "TRADE_SUCCESS", "TRADE_FINISHED":
		return ordercore.PaymentSucceeded, true
	case "TRADE_CLOSED":
		return ordercore.PaymentClosed, true
	}
	return "", false
}

// ClosePayment closes the unpaid trade out_trade_no. Alipay closes only a trade in
// WAIT_BUYER_PAY and answers ACQ.TRADE_STATUS_ERROR for every other state, paid or already
// closed alike; only a query tells them apart, so one is made.
func (c *Channel) ClosePayment(ctx context.Context, outTradeNo string) error {
	res, err := c.call(ctx, methodClose, tradeQueryBiz{OutTradeNo: outTradeNo}, nil)
	if err != nil {
		return fmt.Errorf("alipay: close %s: %w", outTradeNo, err)
	}
	if !res.failed() {
		return nil
	}
	switch res.SubCode {
	case subTradeNotExist:
		return fmt.Errorf("alipay: close %s: %w", outTradeNo, ordercore.ErrTradeNotFound)
	case subTradeStatusError:
		p, err := c.QueryPayment(ctx, outTradeNo)
		if err != nil {
			return fmt.Errorf("alipay: close %s: not closable, then: %w", outTradeNo, err)
		}
		switch p.Status {
		case ordercore.PaymentClosed:
			return nil
		case ordercore.PaymentSucceeded:
			return fmt.Errorf("alipay: close %s: %w", outTradeNo, ordercore.ErrTradePaid)
		}
		// Still waiting for the buyer although the close was refused: the two answers
		// crossed a state change. Only asking again can tell.
		return fmt.Errorf("alipay: close %s: %w: refused as %s while the trade is %s",
			outTradeNo, ordercore.ErrOutcomeUnknown, res.SubCode, p.Status)
	}
	return c.refusal(res)
}

// refundReasonRunesMax is refund_reason's bound in alipay.trade.refund (String(256)):
// ordercore's reasons may be longer, and the reason is only a note to the shopper.
const refundReasonRunesMax = 256

// refundBiz is the biz_content of alipay.trade.refund.
type refundBiz struct {
	OutTradeNo   string `json:"out_trade_no"`
	RefundAmount string `json:"refund_amount"`
	OutRequestNo string `json:"out_request_no"`
	RefundReason string `json:"refund_reason,omitempty"`
}

// refundAnswer is the node of alipay.trade.refund. Its refund_fee is the trade's total
// refunded so far, not this refund, so it is not read.
type refundAnswer struct {
	TradeNo    string `json:"trade_no"`
	OutTradeNo string `json:"out_trade_no"`
	FundChange string `json:"fund_change"`
}

// Refund asks Alipay to pay req.Amount back under out_request_no = req.OutRefundNo. The
// answer proves the refund only when fund_change is "Y" (money moved by this call). "N"
// also answers a repeated request whose refund was made earlier, or one Alipay has not
// finished, so the refund is then queried. NotifyURL is not sent: Alipay notifies refunds
// to the payment's notify_url.
func (c *Channel) Refund(ctx context.Context, req ordercore.RefundRequest) (ordercore.ChannelRefund, error) {
	if err := checkOutNo("OutRefundNo", req.OutRefundNo); err != nil {
		return ordercore.ChannelRefund{}, err
	}
	amount, err := formatYuan(req.Amount)
	if err != nil {
		return ordercore.ChannelRefund{}, err
	}
	biz := refundBiz{OutTradeNo: req.OutTradeNo, RefundAmount: amount, OutRequestNo: req.OutRefundNo, RefundReason: ordercore.CutRunes(req.Reason, refundReasonRunesMax)}
	var a refundAnswer
	res, err := c.call(ctx, methodRefund, biz, &a)
	if err != nil {
		return ordercore.ChannelRefund{}, fmt.Errorf("alipay: refund %s: %w", req.OutRefundNo, err)
	}
	if res.failed() {
		if res.SubCode == subTradeNotExist {
			return ordercore.ChannelRefund{}, fmt.Errorf("alipay: refund %s: %w", req.OutRefundNo, ordercore.ErrTradeNotFound)
		}
		return ordercore.ChannelRefund{}, c.refusal(res)
	}
	if a.OutTradeNo != "" && a.OutTradeNo != req.OutTradeNo {
		return ordercore.ChannelRefund{}, fmt.Errorf("alipay: refund %s: %w: answer is about trade %q",
			req.OutRefundNo, ordercore.ErrOutcomeUnknown, a.OutTradeNo)
	}
	if a.FundChange != "Y" {
		return c.QueryRefund(ctx, req.OutTradeNo, req.OutRefundNo)
	}
	// The amount is the one asked for: Alipay refuses an out_request_no repeated with
	// another amount, so a success under it is a success of this amount.
	return ordercore.ChannelRefund{
		OutTradeNo:  req.OutTradeNo,
		OutRefundNo: req.OutRefundNo,
		Status:      ordercore.RefundSucceeded,
		Amount:      req.Amount,
	}, nil
}

// refundQueryBiz is the biz_content of alipay.trade.fastpay.refund.query.
type refundQueryBiz struct {
	OutTradeNo   string `json:"out_trade_no"`
	OutRequestNo string `json:"out_request_no"`
}

// refundQueryAnswer is the node of alipay.trade.fastpay.refund.query.
type refundQueryAnswer struct {
	TradeNo      string  `json:"trade_no"`
	OutTradeNo   string  `json:"out_trade_no"`
	OutRequestNo string  `json:"out_request_no"`
	RefundAmount decimal `json:"refund_amount"`
	RefundStatus string  `json:"refund_status"`
}

// refundSuccess is the one refund_status Alipay documents.
const refundSuccess = "REFUND_SUCCESS"

// QueryRefund returns Alipay's view of the refund out_request_no of out_trade_no. Code
// 10000 only means the query worked. The mapping:
//   - refund_status REFUND_SUCCESS: succeeded, for refund_amount;
//   - refund_status absent or empty: pending. Alipay documents it as "not received, or
//     failed", and also warns that a refund queried too soon after the request is not yet
//     processed. Neither proves the refund will never happen, and calling it failed would
//     invite a second refund under a new number; pending keeps it queried, and a retry of
//     Refund under the same out_request_no is safe;
//   - any other refund_status (none is documented): pending, for the same reason.
//
// Older documents say any answer with refund data means success (for synchronous refunds);
// that reading is not followed, because the newer field is explicit and the cost of a
// wrong success is money.
func (c *Channel) QueryRefund(ctx context.Context, outTradeNo, outRefundNo string) (ordercore.ChannelRefund, error) {
	var a refundQueryAnswer
	res, err := c.call(ctx, methodRefundQuery, refundQueryBiz{OutTradeNo: outTradeNo, OutRequestNo: outRefundNo}, &a)
	if err != nil {
		return ordercore.ChannelRefund{}, fmt.Errorf("alipay: query refund %s: %w", outRefundNo, err)
	}
	if res.failed() {
		if res.SubCode == subTradeNotExist {
			return ordercore.ChannelRefund{}, fmt.Errorf("alipay: query refund %s: %w", outRefundNo, ordercore.ErrTradeNotFound)
		}
		return ordercore.ChannelRefund{}, c.refusal(res)
	}
	if (a.OutTradeNo != "" && a.OutTradeNo != outTradeNo) || (a.OutRequestNo != "" && a.OutRequestNo != outRefundNo) {
		return ordercore.ChannelRefund{}, fmt.Errorf("alipay: query refund %s: %w: answer is about refund %q of trade %q",
			outRefundNo, ordercore.ErrOutcomeUnknown, a.OutRequestNo, a.OutTradeNo)
	}
	r := ordercore.ChannelRefund{
		OutTradeNo:  outTradeNo,
		OutRefundNo: outRefundNo,
		Status:      ordercore.RefundPending,
		Amount:      ordercore.Money{Currency: cny},
	}
	if a.RefundAmount != "" {
		if r.Amount, err = parseYuan(string(a.RefundAmount)); err != nil {
			return ordercore.ChannelRefund{}, fmt.Errorf("alipay: query refund %s: %w: refund_amount: %v", outRefundNo, ordercore.ErrOutcomeUnknown, err)
		}
	}
	if a.RefundStatus == refundSuccess {
		if a.RefundAmount == "" {
			return ordercore.ChannelRefund{}, fmt.Errorf("alipay: query refund %s: %w: %s without refund_amount", outRefundNo, ordercore.ErrOutcomeUnknown, refundSuccess)
		}
		r.Status = ordercore.RefundSucceeded
	}
	return r, nil
}

// checkOutNo rejects an idempotency key Alipay would refuse, before anything is sent.
func checkOutNo(field, s string) error {
	if s == "" || len(s) > outNoBytesMax {
		return ordercore.Errorf(ordercore.EINVALID, "alipay: %s must be 1 to %d bytes, got %d", field, outNoBytesMax, len(s))
	}
	return nil
}

// formatYuan returns m as the decimal yuan string the gateway expects ("88.88"), without
// floats. Alipay trades are CNY only and within [0.01, 100000000.00].
func formatYuan(m ordercore.Money) (string, error) {
	if m.Currency != cny {
		return "", ordercore.Errorf(ordercore.EInvalidCurrency, "alipay accepts only %s, not %q", cny, m.Currency)
	}
	if m.Amount <= 0 || m.Amount > amountFenMax {
		return "", ordercore.Errorf(ordercore.EINVALID, "alipay amount must be within 0.01 and %s, got %s",
			ordercore.FormatDecimal(amountFenMax, 2), m)
	}
	return ordercore.FormatDecimal(m.Amount, 2), nil
}

// parseYuan reads a decimal yuan string from Alipay. Amounts Alipay states are never
// negative; one that is would be read as a refund by the sign of a number, so it is refused.
func parseYuan(s string) (ordercore.Money, error) {
	m, err := ordercore.ParseMoney(s, cny)
	if err != nil {
		return ordercore.Money{}, fmt.Errorf("amount %q: %s", s, ordercore.ErrorMessage(err))
	}
	if m.Amount < 0 {
		return ordercore.Money{}, fmt.Errorf("amount %q is negative", s)
	}
	return m, nil
}

// parseTime reads one of the gateway's Beijing-time timestamps. Fractional seconds after
// the seconds are accepted (time.Parse allows them without a layout element): gmt_refund
// is documented as "2015-04-28 15:45:57.320".
func parseTime(s string) (time.Time, error) {
	t, err := time.ParseInLocation(timeLayout, s, cst)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q is not %q", s, timeLayout)
	}
	return t, nil
}
