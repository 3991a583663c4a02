package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"ordercore"
	"ordercore/channel/internal/outbound"
)

// currency is the only currency of domestic WeChat Pay.
const currency ordercore.Currency = "CNY"

// chinaTime is UTC+8, the offset of every time in WeChat Pay's documentation. China keeps
// no daylight saving time, so a fixed zone is exact and needs no time zone database.
var chinaTime = time.FixedZone("CST", 8*60*60)

// timeLayout is RFC 3339 with a numeric offset, never "Z", as WeChat Pay writes its times.
const timeLayout = "2006-01-02T15:04:05-07:00"

// Error codes of WeChat Pay that callers act on.
const (
	codeOrderPaid         = "ORDERPAID"           // close or create of a paid trade
	codeOrderClosed       = "ORDER_CLOSED"        // close of a closed trade
	codeOrderNotExist     = "ORDER_NOT_EXIST"     // query or close of an unknown trade
	codeResourceNotExists = "RESOURCE_NOT_EXISTS" // refund of an unknown trade, query of an unknown refund
)

// answer is an authenticated answer of WeChat Pay: its status and body.
type answer struct {
	status int
	body   []byte
}

// call sends one signed request through outbound.Do and returns the answer once its
// signature verifies. in, when not nil, is sent as the JSON body.
func (c *Channel) call(ctx context.Context, method, path string, query url.Values, in any) (answer, error) {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return answer{}, fmt.Errorf("wechat: %s %s: encode request: %w", method, path, err)
		}
		body = b
	}
	// path arrives escaped (url.PathEscape on every variable segment), and is signed as
	// it goes on the wire: WeChat Pay checks the signature against the URL it receives.
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequest(method, target, bytes.NewReader(body))
	if err != nil {
		return answer{}, fmt.Errorf("wechat: %s %s: %w", method, path, err)
	}
	auth, err := c.authorization(method, req.URL.RequestURI(), body, c.now())
	if err != nil {
		return answer{}, fmt.Errorf("wechat: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Accept", "application/json")
	// API v3 refuses requests without a User-Agent.
	req.Header.Set("User-Agent", "ordercore-wechat")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client, header := c.tappedClient()
	status, respBody, err := outbound.Do(ctx, client, req, c.cfg.Timeout)
	if err != nil {
		return answer{}, err
	}
	// An answer that does not verify proves nothing: anything between us and WeChat Pay
	// (a proxy, a captive portal, an attacker with a bad certificate) can produce a 204 or
	// an ORDER_NOT_EXIST, and taking it at its word could record an unpaid trade as closed
	// or issue a second trade next to a paid one. The call may well have taken effect, so
	// the outcome is unknown and only a verified query settles it. This includes WeChat
	// Pay's own 401 SIGN_ERROR, which it does not sign because it could not identify us:
	// that is a configuration error, shown in the message.
	if verr := c.verify(*header, respBody, c.now()); verr != nil {
		code, _ := errorBody(respBody)
		return answer{}, fmt.Errorf("%w: wechat %s %s: status %d %s: answer not authenticated: %s",
			ordercore.ErrOutcomeUnknown, method, path, status, code, verr.Message)
	}
	return answer{status: status, body: respBody}, nil
}

// tappedClient returns a client that shares the configured client's transport (and so its
// connections) and records the headers of the answer: outbound.Do returns only the status
// and the body, and the signature travels in the headers.
func (c *Channel) tappedClient() (*http.Client, *http.Header) {
	client := http.DefaultClient
	if c.cfg.HTTPClient != nil {
		client = c.cfg.HTTPClient
	}
	tapped := *client
	next := tapped.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	header := new(http.Header)
	tapped.Transport = headerTap{next: next, header: header}
	return &tapped, header
}

// headerTap is a RoundTripper that keeps the headers of the last answer. Client.Do calls
// RoundTrip synchronously, so they are written before outbound.Do returns.
type headerTap struct {
	next   http.RoundTripper
	header *http.Header
}

func (t headerTap) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if resp != nil {
		*t.header = resp.Header.Clone()
	}
	return resp, err
}

// errorBody reads WeChat Pay's error answer {"code": ..., "message": ...}.
func errorBody(body []byte) (code, message string) {
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(body, &e) // an unreadable body leaves both empty; the status remains
	return e.Code, e.Message
}

// refusal maps an authenticated 4xx answer to the Channel error contract. about says
// whether the call names an existing trade or refund, so that a bare 404 means that one
// is unknown; a 404 to a create means a wrong URL, a refusal like any other.
func (c *Channel) refusal(op string, a answer, about bool) error {
	code, message := errorBody(a.body)
	switch {
	case code == codeOrderPaid:
		return fmt.Errorf("%w: wechat %s: %s: %s", ordercore.ErrTradePaid, op, code, message)
	case code == codeOrderNotExist || code == codeResourceNotExists || (about && a.status == http.StatusNotFound):
		return fmt.Errorf("%w: wechat %s: %s: %s", ordercore.ErrTradeNotFound, op, code, message)
	}
	if code == "" {
		code = "HTTP_" + strconv.Itoa(a.status)
	}
	return &ordercore.ChannelError{Channel: c.cfg.Name, Code: code, Message: message}
}

// unexpected is an authenticated answer whose status the operation does not define (a 3xx,
// a 202): it is not a statement about the call's outcome.
func unexpected(op string, a answer) error {
	code, _ := errorBody(a.body)
	return fmt.Errorf("%w: wechat %s: unexpected status %d %s", ordercore.ErrOutcomeUnknown, op, a.status, code)
}

// unreadable is an authenticated answer of the right status that cannot be read: the
// call's outcome is still not known to us.
func unreadable(op string, err error) error {
	return fmt.Errorf("%w: wechat %s: unreadable answer: %v", ordercore.ErrOutcomeUnknown, op, err)
}

// amount is the amount object of a trade or a refund, in fen.
type amount struct {
	Total    *int64 `json:"total,omitempty"`
	Refund   *int64 `json:"refund,omitempty"`
	Currency string `json:"currency,omitempty"`
}

// money returns an amount in fen of cur, CNY when WeChat Pay leaves it out (refund
// notifications carry no currency: domestic refunds are in CNY).
func money(fen int64, cur string) ordercore.Money {
	if cur == "" {
		return ordercore.Money{Amount: fen, Currency: currency}
	}
	return ordercore.Money{Amount: fen, Currency: ordercore.Currency(cur)}
}

// checkCNY refuses, before any call, an amount WeChat Pay cannot take.
func checkCNY(what string, m ordercore.Money) error {
	if m.Currency != currency {
		return ordercore.Errorf(ordercore.EInvalidCurrency, "wechat pays in %s only, %s is %s", currency, what, m.Currency)
	}
	if m.Amount <= 0 {
		return ordercore.Errorf(ordercore.EINVALID, "%s must be positive, got %s", what, m)
	}
	return nil
}

// nativeRequest opens a Native (QR code) trade.
type nativeRequest struct {
	AppID       string `json:"appid"`
	MchID       string `json:"mchid"`
	Description string `json:"description"`
	OutTradeNo  string `json:"out_trade_no"`
	TimeExpire  string `json:"time_expire,omitempty"`
	NotifyURL   string `json:"notify_url"`
	Amount      amount `json:"amount"`
}

// CreatePayment opens a Native trade and returns its QR code URL as Params["code_url"].
// WeChat Pay answers a repeated out_trade_no with the same parameters with the same trade;
// a paid trade is ErrTradePaid.
func (c *Channel) CreatePayment(ctx context.Context, req ordercore.PaymentRequest) (ordercore.PaymentInstructions, error) {
	const op = "create payment"
	if req.OutTradeNo == "" {
		return ordercore.PaymentInstructions{}, ordercore.Errorf(ordercore.EINVALID, "out_trade_no is empty")
	}
	if err := checkCNY("the payment amount", req.Amount); err != nil {
		return ordercore.PaymentInstructions{}, err
	}
	desc := req.Description
	if desc == "" {
		// WeChat Pay requires a description; it is what the shopper sees on the bill.
		desc = "Order " + req.OrderID
	}
	body := nativeRequest{
		AppID:       c.cfg.AppID,
		MchID:       c.cfg.MchID,
		Description: desc,
		OutTradeNo:  req.OutTradeNo,
		NotifyURL:   req.NotifyURL,
		Amount:      amount{Total: &req.Amount.Amount, Currency: string(currency)},
	}
	if !req.ExpiresAt.IsZero() {
		body.TimeExpire = req.ExpiresAt.In(chinaTime).Format(timeLayout)
	}
	a, err := c.call(ctx, http.MethodPost, "/v3/pay/transactions/native", nil, body)
	if err != nil {
		return ordercore.PaymentInstructions{}, err
	}
	switch {
	case a.status >= 400:
		return ordercore.PaymentInstructions{}, c.refusal(op, a, false)
	case a.status != http.StatusOK:
		return ordercore.PaymentInstructions{}, unexpected(op, a)
	}
	var out struct {
		CodeURL string `json:"code_url"`
	}
	if err := json.Unmarshal(a.body, &out); err != nil {
		return ordercore.PaymentInstructions{}, unreadable(op, err)
	}
	if out.CodeURL == "" {
		return ordercore.PaymentInstructions{}, unreadable(op, errors.New("no code_url"))
	}
	return ordercore.PaymentInstructions{Params: map[string]string{"code_url": out.CodeURL}}, nil
}

// transaction is a trade as WeChat Pay states it, in query answers and (decrypted) in
// TRANSACTION.* notifications.
type transaction struct {
	AppID         string `json:"appid"`
	MchID         string `json:"mchid"`
	OutTradeNo    string `json:"out_trade_no"`
	TransactionID string `json:"transaction_id"`
	TradeState    string `json:"trade_state"`
	SuccessTime   string `json:"success_time"`
	Amount        amount `json:"amount"`
}

// paymentStatus maps a trade_state. REFUND means the trade was paid and then (partly)
// refunded: as a payment it succeeded, and the refunds are tracked on their own.
func paymentStatus(state string) (ordercore.PaymentStatus, bool) {
	switch state {
	case "SUCCESS", "REFUND":
		return ordercore.PaymentSucceeded, true
	case "NOTPAY", "USERPAYING":
		return ordercore.PaymentPending, true
	case "CLOSED", "REVOKED":
		return ordercore.PaymentClosed, true
	case "PAYERROR":
		return ordercore.PaymentFailed, true
	}
	return "", false
}

// payment reads a transaction into a ChannelPayment.
func (t transaction) payment() (ordercore.ChannelPayment, error) {
	status, ok := paymentStatus(t.TradeState)
	if !ok {
		return ordercore.ChannelPayment{}, fmt.Errorf("unknown trade_state %q", t.TradeState)
	}
	if t.OutTradeNo == "" {
		return ordercore.ChannelPayment{}, errors.New("no out_trade_no")
	}
	p := ordercore.ChannelPayment{OutTradeNo: t.OutTradeNo, TxnID: t.TransactionID, Status: status}
	if t.Amount.Total != nil {
		p.Amount = money(*t.Amount.Total, t.Amount.Currency)
	} else if status == ordercore.PaymentSucceeded {
		// The amount that moved is what the order checks against; a success without it
		// cannot be applied.
		return ordercore.ChannelPayment{}, errors.New("a paid trade without amount.total")
	}
	if t.SuccessTime != "" {
		at, err := time.Parse(time.RFC3339, t.SuccessTime)
		if err != nil {
			return ordercore.ChannelPayment{}, fmt.Errorf("success_time: %w", err)
		}
		p.PaidAt = at
	}
	return p, nil
}

// QueryPayment returns WeChat Pay's view of the trade outTradeNo.
func (c *Channel) QueryPayment(ctx context.Context, outTradeNo string) (ordercore.ChannelPayment, error) {
	const op = "query payment"
	a, err := c.call(ctx, http.MethodGet, "/v3/pay/transactions/out-trade-no/"+url.PathEscape(outTradeNo),
		url.Values{"mchid": {c.cfg.MchID}}, nil)
	if err != nil {
		return ordercore.ChannelPayment{}, err
	}
	switch {
	case a.status >= 400:
		return ordercore.ChannelPayment{}, c.refusal(op, a, true)
	case a.status != http.StatusOK:
		return ordercore.ChannelPayment{}, unexpected(op, a)
	}
	var t transaction
	if err := json.Unmarshal(a.body, &t); err != nil {
		return ordercore.ChannelPayment{}, unreadable(op, err)
	}
	// The signature covers the answer, not the question: a signed answer about another
	// trade or merchant (replayed within the window) says nothing about this one.
	if t.OutTradeNo != outTradeNo || t.MchID != c.cfg.MchID || (t.AppID != "" && t.AppID != c.cfg.AppID) {
		return ordercore.ChannelPayment{}, unreadable(op, fmt.Errorf("answer is about trade %q of %s/%s", t.OutTradeNo, t.MchID, t.AppID))
	}
	p, err := t.payment()
	if err != nil {
		return ordercore.ChannelPayment{}, unreadable(op, err)
	}
	return p, nil
}

// ClosePayment closes the unpaid trade outTradeNo. WeChat Pay answers 204; ORDER_CLOSED
// (the trade is closed already) is success; ORDERPAID is ErrTradePaid; ORDER_NOT_EXIST is
// ErrTradeNotFound. WeChat Pay has been seen answering 204 to an out_trade_no it does not
// know, so nil does not prove the trade existed, only that it cannot be paid.
func (c *Channel) ClosePayment(ctx context.Context, outTradeNo string) error {
	const op = "close payment"
	a, err := c.call(ctx, http.MethodPost, "/v3/pay/transactions/out-trade-no/"+url.PathEscape(outTradeNo)+"/close",
		nil, struct {
			MchID string `json:"mchid"`
		}{c.cfg.MchID})
	if err != nil {
		return err
	}
	switch {
	case a.status == http.StatusNoContent:
		return nil
	case a.status >= 400:
		if code, _ := errorBody(a.body); code == codeOrderClosed {
			return nil
		}
		return c.refusal(op, a, true)
	}
	// A 202 USER_PAYING, among others: the shopper is entering a password, the trade is
	// neither closed nor paid yet.
	return unexpected(op, a)
}

// refundReasonRunesMax is reason's bound in the domestic refund request (string[1,80]):
// ordercore's reasons may be longer, and the reason is only a note to the shopper.
const refundReasonRunesMax = 80

// refundRequest asks for a domestic refund.
type refundRequest struct {
	OutTradeNo  string `json:"out_trade_no"`
	OutRefundNo string `json:"out_refund_no"`
	Reason      string `json:"reason,omitempty"`
	NotifyURL   string `json:"notify_url,omitempty"`
	Amount      amount `json:"amount"`
}

// refund is a refund as WeChat Pay states it: Status in API answers, RefundStatus and
// MchID in (decrypted) REFUND.* notifications.
type refund struct {
	MchID        string `json:"mchid"`
	OutTradeNo   string `json:"out_trade_no"`
	OutRefundNo  string `json:"out_refund_no"`
	RefundID     string `json:"refund_id"`
	Status       string `json:"status"`
	RefundStatus string `json:"refund_status"`
	Amount       amount `json:"amount"`
}

// refundStatus maps a refund status. ABNORMAL is a refund WeChat Pay could not pay out
// (a closed card): money is stuck until an operator acts, so it stays distinct from failed.
func refundStatus(s string) (ordercore.RefundStatus, bool) {
	switch s {
	case "SUCCESS":
		return ordercore.RefundSucceeded, true
	case "PROCESSING":
		return ordercore.RefundPending, true
	case "ABNORMAL":
		return ordercore.RefundAbnormal, true
	case "CLOSED":
		return ordercore.RefundFailed, true
	}
	return "", false
}

// channelRefund reads a refund whose status is in status.
func (r refund) channelRefund(status string) (ordercore.ChannelRefund, error) {
	s, ok := refundStatus(status)
	if !ok {
		return ordercore.ChannelRefund{}, fmt.Errorf("unknown refund status %q", status)
	}
	if r.OutRefundNo == "" {
		return ordercore.ChannelRefund{}, errors.New("no out_refund_no")
	}
	if r.Amount.Refund == nil {
		return ordercore.ChannelRefund{}, errors.New("no amount.refund")
	}
	return ordercore.ChannelRefund{
		OutTradeNo:  r.OutTradeNo,
		OutRefundNo: r.OutRefundNo,
		RefundID:    r.RefundID,
		Status:      s,
		Amount:      money(*r.Amount.Refund, r.Amount.Currency),
	}, nil
}

// Refund asks WeChat Pay to pay req.Amount of the trade req.OutTradeNo back. The same
// out_refund_no is one refund at WeChat Pay, however often it is sent. A trade WeChat Pay
// does not know is ErrTradeNotFound.
func (c *Channel) Refund(ctx context.Context, req ordercore.RefundRequest) (ordercore.ChannelRefund, error) {
	const op = "refund"
	if req.OutTradeNo == "" || req.OutRefundNo == "" {
		return ordercore.ChannelRefund{}, ordercore.Errorf(ordercore.EINVALID, "out_trade_no and out_refund_no are required")
	}
	if err := checkCNY("the refund amount", req.Amount); err != nil {
		return ordercore.ChannelRefund{}, err
	}
	if err := checkCNY("the payment amount", req.Total); err != nil {
		return ordercore.ChannelRefund{}, err
	}
	if req.Amount.Amount > req.Total.Amount {
		return ordercore.ChannelRefund{}, ordercore.Errorf(ordercore.ERefundExceeds, "refund %s exceeds the payment %s", req.Amount, req.Total)
	}
	body := refundRequest{
		OutTradeNo:  req.OutTradeNo,
		OutRefundNo: req.OutRefundNo,
		Reason:      ordercore.CutRunes(req.Reason, refundReasonRunesMax),
		NotifyURL:   req.NotifyURL,
		Amount:      amount{Refund: &req.Amount.Amount, Total: &req.Total.Amount, Currency: string(currency)},
	}
	a, err := c.call(ctx, http.MethodPost, "/v3/refund/domestic/refunds", nil, body)
	if err != nil {
		return ordercore.ChannelRefund{}, err
	}
	return c.refundAnswer(op, a, req.OutTradeNo, req.OutRefundNo)
}

// QueryRefund returns WeChat Pay's view of the refund outRefundNo. A refund WeChat Pay does
// not know (RESOURCE_NOT_EXISTS) is ErrTradeNotFound: the request that would have made it
// never took effect.
func (c *Channel) QueryRefund(ctx context.Context, outTradeNo, outRefundNo string) (ordercore.ChannelRefund, error) {
	const op = "query refund"
	a, err := c.call(ctx, http.MethodGet, "/v3/refund/domestic/refunds/"+url.PathEscape(outRefundNo), nil, nil)
	if err != nil {
		return ordercore.ChannelRefund{}, err
	}
	return c.refundAnswer(op, a, outTradeNo, outRefundNo)
}

// refundAnswer reads the answer of Refund and QueryRefund, which state a refund alike.
func (c *Channel) refundAnswer(op string, a answer, outTradeNo, outRefundNo string) (ordercore.ChannelRefund, error) {
	switch {
	case a.status >= 400:
		return ordercore.ChannelRefund{}, c.refusal(op, a, true)
	case a.status != http.StatusOK:
		return ordercore.ChannelRefund{}, unexpected(op, a)
	}
	var r refund
	if err := json.Unmarshal(a.body, &r); err != nil {
		return ordercore.ChannelRefund{}, unreadable(op, err)
	}
	// As for trades: a signed statement about another refund says nothing about this one.
	if r.OutRefundNo != outRefundNo || (outTradeNo != "" && r.OutTradeNo != outTradeNo) {
		return ordercore.ChannelRefund{}, unreadable(op, fmt.Errorf("answer is about refund %q of trade %q", r.OutRefundNo, r.OutTradeNo))
	}
	cr, err := r.channelRefund(r.Status)
	if err != nil {
		return ordercore.ChannelRefund{}, unreadable(op, err)
	}
	return cr, nil
}
