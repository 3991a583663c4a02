package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"ordercore"
	"ordercore/channel/internal/outbound"
)

// ToleranceDefault is how far a notification's signed time may be from now: Stripe's
// default and WeChat Pay's window.
const ToleranceDefault = 300 * time.Second

// Config configures the adapter.
type Config struct {
	BaseURL    string // the simulator, e.g. http://127.0.0.1:8090
	MerchantID string
	APIKey     string
	// Secrets verify notifications; during a rotation both the new and the old secret are
	// listed, and a notification signed by either is accepted.
	Secrets   []string
	Tolerance time.Duration // ToleranceDefault when zero
	// Timeout bounds one call (outbound.TimeoutDefault when zero).
	Timeout    time.Duration
	HTTPClient *http.Client // http.DefaultClient when nil
	Name       string       // "sim" when empty
}

// Channel is the ordercore.Channel of the simulator. It is safe for concurrent use.
type Channel struct {
	cfg  Config
	base *url.URL
}

var _ ordercore.Channel = (*Channel)(nil)
var _ ordercore.StatementSource = (*Channel)(nil)

// New checks cfg and returns the adapter.
func New(cfg Config) (*Channel, error) {
	u, err := url.Parse(strings.TrimSuffix(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sim: base URL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	switch {
	case cfg.MerchantID == "":
		return nil, errors.New("sim: no merchant id")
	case cfg.APIKey == "":
		return nil, errors.New("sim: no API key")
	case len(cfg.Secrets) == 0 || slices.Contains(cfg.Secrets, ""):
		return nil, errors.New("sim: no notification secret, or an empty one")
	case cfg.Tolerance < 0 || cfg.Timeout < 0:
		return nil, errors.New("sim: negative tolerance or timeout")
	}
	if cfg.Tolerance == 0 {
		cfg.Tolerance = ToleranceDefault
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Name == "" {
		cfg.Name = "sim"
	}
	cfg.Secrets = append([]string(nil), cfg.Secrets...)
	cfg.BaseURL = u.String()
	return &Channel{cfg: cfg, base: u}, nil
}

// Name returns the configured name ("sim").
func (c *Channel) Name() string { return c.cfg.Name }

// CreatePayment creates the trade, or returns it again for a repeated OutTradeNo.
func (c *Channel) CreatePayment(ctx context.Context, req ordercore.PaymentRequest) (ordercore.PaymentInstructions, error) {
	body := CreateTradeRequest{
		MerchantID:  c.cfg.MerchantID,
		OutTradeNo:  req.OutTradeNo,
		OrderID:     req.OrderID,
		Amount:      req.Amount,
		Description: req.Description,
		ExpiresAt:   req.ExpiresAt.UTC(),
		NotifyURL:   req.NotifyURL,
	}
	var tr Trade
	if err := c.call(ctx, http.MethodPost, "/v1/trades", body, &tr); err != nil {
		return ordercore.PaymentInstructions{}, fmt.Errorf("sim: create trade %s: %w", req.OutTradeNo, err)
	}
	return ordercore.PaymentInstructions{TxnID: tr.TxnID, RedirectURL: c.cfg.BaseURL + "/pay/" + url.PathEscape(tr.OutTradeNo)}, nil
}

// QueryPayment returns the trade; Amount is the paid amount once it succeeded.
func (c *Channel) QueryPayment(ctx context.Context, outTradeNo string) (ordercore.ChannelPayment, error) {
	var tr Trade
	if err := c.call(ctx, http.MethodGet, "/v1/trades/"+url.PathEscape(outTradeNo), nil, &tr); err != nil {
		return ordercore.ChannelPayment{}, fmt.Errorf("sim: query trade %s: %w", outTradeNo, err)
	}
	return PaymentOf(tr), nil
}

// ClosePayment closes the trade; a paid one is ordercore.ErrTradePaid.
func (c *Channel) ClosePayment(ctx context.Context, outTradeNo string) error {
	if err := c.call(ctx, http.MethodPost, "/v1/trades/"+url.PathEscape(outTradeNo)+"/close", struct{}{}, nil); err != nil {
		return fmt.Errorf("sim: close trade %s: %w", outTradeNo, err)
	}
	return nil
}

// Refund asks for req.Amount back; the answer is usually pending, settled later.
func (c *Channel) Refund(ctx context.Context, req ordercore.RefundRequest) (ordercore.ChannelRefund, error) {
	body := RefundRequest{OutRefundNo: req.OutRefundNo, Amount: req.Amount, Reason: ordercore.CleanText(req.Reason, RefundReasonBytesMax), NotifyURL: req.NotifyURL}
	var rf Refund
	if err := c.call(ctx, http.MethodPost, "/v1/trades/"+url.PathEscape(req.OutTradeNo)+"/refunds", body, &rf); err != nil {
		return ordercore.ChannelRefund{}, fmt.Errorf("sim: refund %s of trade %s: %w", req.OutRefundNo, req.OutTradeNo, err)
	}
	return RefundOf(rf), nil
}

// QueryRefund returns the refund.
func (c *Channel) QueryRefund(ctx context.Context, outTradeNo, outRefundNo string) (ordercore.ChannelRefund, error) {
	var rf Refund
	p := "/v1/trades/" + url.PathEscape(outTradeNo) + "/refunds/" + url.PathEscape(outRefundNo)
	if err := c.call(ctx, http.MethodGet, p, nil, &rf); err != nil {
		return ordercore.ChannelRefund{}, fmt.Errorf("sim: query refund %s of trade %s: %w", outRefundNo, outTradeNo, err)
	}
	return RefundOf(rf), nil
}

// ListTrades returns one page of the merchant's trades, oldest first; status "" lists all.
// Reconciliation uses it to compare the channel's paid trades with ours.
func (c *Channel) ListTrades(ctx context.Context, status TradeStatus, cursor string, limit int) (TradePage, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", string(status))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var page TradePage
	if err := c.call(ctx, http.MethodGet, "/v1/trades?"+q.Encode(), nil, &page); err != nil {
		return TradePage{}, fmt.Errorf("sim: list trades: %w", err)
	}
	return page, nil
}

// Statement downloads and checks the statement of the UTC day of day.
func (c *Channel) Statement(ctx context.Context, day time.Time) (Statement, error) {
	d := day.UTC().Format(time.DateOnly)
	status, body, err := c.do(ctx, http.MethodGet, "/v1/statements/"+d, nil)
	if err == nil && status/100 != 2 {
		err = c.refusal(status, body)
	}
	if err != nil {
		return Statement{}, fmt.Errorf("sim: statement %s: %w", d, err)
	}
	return ParseStatement(body)
}

// DailyStatement is Statement in ordercore's terms (ordercore.StatementSource): the
// statement of the UTC day of day, checked complete against its summary.
func (c *Channel) DailyStatement(ctx context.Context, day time.Time) (ordercore.Statement, error) {
	st, err := c.Statement(ctx, day)
	if err != nil {
		return ordercore.Statement{}, err
	}
	out := ordercore.Statement{Day: day.UTC().Truncate(24 * time.Hour), Rows: make([]ordercore.StatementRow, len(st.Rows))}
	for i, r := range st.Rows {
		typ := ordercore.StatementPayment
		if r.Type == RowRefund {
			typ = ordercore.StatementRefund
		}
		out.Rows[i] = ordercore.StatementRow{Type: typ, OutTradeNo: r.OutTradeNo, OutRefundNo: r.OutRefundNo, TxnID: r.TxnID,
			RefundID: r.RefundID, Amount: r.Amount, Time: r.Time}
	}
	return out, nil
}

// ParseNotification verifies the signature over the raw bytes, then the merchant, and
// only then maps the event.
func (c *Channel) ParseNotification(h http.Header, body []byte, now time.Time) (ordercore.Notification, error) {
	if err := Verify(h.Get(HeaderSignature), body, c.cfg.Secrets, c.cfg.Tolerance, now); err != nil {
		return ordercore.Notification{}, err
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" || len(ev.Data) == 0 {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "unreadable event")
	}
	var n ordercore.Notification
	n.EventID = ev.ID
	var merchant string
	switch ev.Type {
	case EventTradeSucceeded, EventTradeFailed, EventTradeClosed:
		var tr Trade
		if err := json.Unmarshal(ev.Data, &tr); err != nil || tr.OutTradeNo == "" {
			return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "unreadable trade in event %s", ev.ID)
		}
		p := PaymentOf(tr)
		merchant, n.Payment = tr.MerchantID, &p
	case EventRefundSucceeded, EventRefundFailed, EventRefundAbnormal:
		var rf Refund
		if err := json.Unmarshal(ev.Data, &rf); err != nil || rf.OutRefundNo == "" {
			return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "unreadable refund in event %s", ev.ID)
		}
		r := RefundOf(rf)
		merchant, n.Refund = rf.MerchantID, &r
	default:
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "unknown event type %q", ev.Type)
	}
	if merchant != c.cfg.MerchantID {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMerchantMismatch, "notification for merchant %q", merchant)
	}
	return n, nil
}

// Ack answers 200 with an empty JSON object: any 2xx stops the simulator's retries.
func (c *Channel) Ack(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte("{}"))
}

// PaymentOf maps a trade to ordercore's view. The amount of a succeeded trade is what
// was paid, so that an underpayment is seen as one and not as the full amount.
func PaymentOf(tr Trade) ordercore.ChannelPayment {
	p := ordercore.ChannelPayment{
		OutTradeNo: tr.OutTradeNo,
		TxnID:      tr.TxnID,
		Status:     ordercore.PaymentStatus(tr.Status),
		Amount:     tr.Amount,
		PaidAt:     tr.PaidAt,
	}
	if tr.Status == TradeSucceeded {
		p.Amount = tr.PaidAmount
	}
	return p
}

// RefundOf maps a refund to ordercore's view.
func RefundOf(rf Refund) ordercore.ChannelRefund {
	return ordercore.ChannelRefund{
		OutTradeNo:  rf.OutTradeNo,
		OutRefundNo: rf.OutRefundNo,
		RefundID:    rf.RefundID,
		Status:      ordercore.RefundStatus(rf.Status),
		Amount:      rf.Amount,
	}
}

// call sends in (nil for none) and decodes a 2xx answer into out (nil to ignore it).
// Refusals map to the contract's errors.
func (c *Channel) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	status, answer, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return c.refusal(status, answer)
	}
	if out != nil {
		if err := json.Unmarshal(answer, out); err != nil {
			// The call was answered 2xx, so it took effect, but we cannot say how.
			return fmt.Errorf("%w: unreadable answer: %v", ordercore.ErrOutcomeUnknown, err)
		}
	}
	return nil
}

// do is the single place the adapter calls out, always through outbound.Do.
func (c *Channel) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	req.Header.Set(HeaderMerchant, c.cfg.MerchantID)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return outbound.Do(ctx, c.cfg.HTTPClient, req, c.cfg.Timeout)
}

// refusal maps a definite non-2xx answer to the contract's errors.
func (c *Channel) refusal(status int, body []byte) error {
	var eb ErrorBody
	if json.Unmarshal(body, &eb) != nil || eb.Code == "" {
		eb = ErrorBody{Code: "http_" + strconv.Itoa(status), Message: http.StatusText(status)}
	}
	switch {
	case status == http.StatusNotFound && (eb.Code == CodeTradeNotFound || eb.Code == CodeRefundNotFound):
		// A refund the channel never received is "not found" like a trade: the caller
		// sends it again under the same refund number.
		return fmt.Errorf("%s: %w", eb.Code, ordercore.ErrTradeNotFound)
	case status == http.StatusConflict && eb.Code == CodeTradePaid:
		return ordercore.ErrTradePaid
	}
	return &ordercore.ChannelError{Channel: c.cfg.Name, Code: eb.Code, Message: eb.Message}
}
