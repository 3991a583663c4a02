package wechat

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"ordercore"
)

// fakeWeChat emulates the documented behaviour of the API v3 endpoints the channel
// calls. Like WeChat Pay it checks the Authorization signature with the merchant's public
// key (answering an unsigned 401 SIGN_ERROR when it fails) and signs every other answer
// with a platform key.
type fakeWeChat struct {
	t      *testing.T
	server *httptest.Server

	mu      sync.Mutex
	trades  map[string]*fakeTrade // by out_trade_no
	refunds map[string]*fakeRefund
	bodies  map[string]map[string]any // the last JSON body per path

	// Misbehaviour, set before calls.
	signer     *rsa.PrivateKey // signs answers (platform key A unless set)
	serial     string
	unsigned   bool          // answers carry no signature headers
	answerSkew time.Duration // added to the answers' Wechatpay-Timestamp
	sleep      time.Duration // before answering
	status5xx  bool
	rewrite    func(body []byte) []byte // changes a 200 body before it is signed
	tamper     func(body []byte) []byte // changes any body after it is signed
}

type fakeTrade struct {
	state         string
	total         int64
	codeURL       string
	transactionID string
}

type fakeRefund struct {
	outTradeNo string
	refundID   string
	status     string
	refund     int64
	total      int64
}

func newFakeWeChat(t *testing.T) *fakeWeChat {
	f := &fakeWeChat{
		t:       t,
		trades:  map[string]*fakeTrade{},
		refunds: map[string]*fakeRefund{},
		bodies:  map[string]map[string]any{},
		signer:  keys().platformA,
		serial:  serialA,
	}
	f.server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.server.Close)
	return f
}

// channel returns a channel of the test merchant pointed at f.
func (f *fakeWeChat) channel(t *testing.T, edit ...func(*Config)) *Channel {
	cfg := testConfig()
	cfg.BaseURL = f.server.URL
	cfg.HTTPClient = f.server.Client()
	cfg.Timeout = 5 * time.Second
	for _, e := range edit {
		e(&cfg)
	}
	return newChannel(t, cfg)
}

func (f *fakeWeChat) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if f.sleep > 0 {
		select {
		case <-time.After(f.sleep):
		case <-r.Context().Done():
			return
		}
	}
	if f.status5xx {
		f.answer(w, http.StatusInternalServerError, map[string]string{"code": "SYSTEM_ERROR", "message": "系统异常"})
		return
	}
	if msg := f.checkAuthorization(r, body); msg != "" {
		// WeChat Pay cannot sign for a merchant it could not identify.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"code":"SIGN_ERROR","message":"` + msg + `"}`))
		return
	}
	var in map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			f.answer(w, http.StatusBadRequest, map[string]string{"code": "PARAM_ERROR", "message": "body is not JSON"})
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies[r.URL.Path] = in
	path := r.URL.Path
	switch {
	case r.Method == http.MethodPost && path == "/v3/pay/transactions/native":
		f.createNative(w, in)
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v3/pay/transactions/out-trade-no/"):
		if r.URL.Query().Get("mchid") != testMchID {
			f.answer(w, http.StatusBadRequest, map[string]string{"code": "PARAM_ERROR", "message": "mchid"})
			return
		}
		f.queryTrade(w, strings.TrimPrefix(path, "/v3/pay/transactions/out-trade-no/"))
	case r.Method == http.MethodPost && strings.HasPrefix(path, "/v3/pay/transactions/out-trade-no/") && strings.HasSuffix(path, "/close"):
		f.closeTrade(w, strings.TrimSuffix(strings.TrimPrefix(path, "/v3/pay/transactions/out-trade-no/"), "/close"), in)
	case r.Method == http.MethodPost && path == "/v3/refund/domestic/refunds":
		f.createRefund(w, in)
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v3/refund/domestic/refunds/"):
		f.queryRefund(w, strings.TrimPrefix(path, "/v3/refund/domestic/refunds/"))
	default:
		f.answer(w, http.StatusNotFound, map[string]string{"code": "NOT_FOUND", "message": "no such API"})
	}
}

// checkAuthorization verifies a request's signature as WeChat Pay documents it, and
// returns why it fails or "".
func (f *fakeWeChat) checkAuthorization(r *http.Request, body []byte) string {
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "WECHATPAY2-SHA256-RSA2048 ")
	if !ok {
		return "scheme"
	}
	params := map[string]string{}
	for _, kv := range strings.Split(auth, ",") {
		k, v, _ := strings.Cut(kv, "=")
		params[k] = strings.Trim(v, `"`)
	}
	if params["mchid"] != testMchID || params["serial_no"] != testMchSerial || params["nonce_str"] == "" {
		return "mchid, serial_no or nonce_str"
	}
	ts, err := strconv.ParseInt(params["timestamp"], 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		return "timestamp"
	}
	if r.Header.Get("User-Agent") == "" || r.Header.Get("Accept") != "application/json" {
		return "headers"
	}
	// r.RequestURI is the request target exactly as it arrived: path and query.
	msg := r.Method + "\n" + r.RequestURI + "\n" + params["timestamp"] + "\n" + params["nonce_str"] + "\n" + string(body) + "\n"
	sig, err := base64.StdEncoding.DecodeString(params["signature"])
	if err != nil {
		return "signature encoding"
	}
	digest := sha256.Sum256([]byte(msg))
	if rsa.VerifyPKCS1v15(&keys().merchant.PublicKey, crypto.SHA256, digest[:], sig) != nil {
		return "signature"
	}
	return ""
}

// answer writes a signed answer; v nil is an empty body.
func (f *fakeWeChat) answer(w http.ResponseWriter, status int, v any) {
	var body []byte
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			f.t.Error(err)
		}
		body = b
	}
	if status == http.StatusOK && f.rewrite != nil {
		body = f.rewrite(body)
	}
	if !f.unsigned {
		ts := strconv.FormatInt(time.Now().Add(f.answerSkew).Unix(), 10)
		nonce := "answer-nonce-" + strconv.Itoa(len(body))
		w.Header().Set("Wechatpay-Timestamp", ts)
		w.Header().Set("Wechatpay-Nonce", nonce)
		w.Header().Set("Wechatpay-Serial", f.serial)
		w.Header().Set("Wechatpay-Signature", rsaSign(f.t, f.signer, ts+"\n"+nonce+"\n"+string(body)+"\n"))
	}
	if f.tamper != nil {
		body = f.tamper(body)
	}
	if body != nil {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (f *fakeWeChat) createNative(w http.ResponseWriter, in map[string]any) {
	if in["appid"] != testAppID || in["mchid"] != testMchID {
		f.answer(w, http.StatusBadRequest, map[string]string{"code": "APPID_MCHID_NOT_MATCH", "message": "appid和mch_id不匹配"})
		return
	}
	no, _ := in["out_trade_no"].(string)
	amount, _ := in["amount"].(map[string]any)
	total, _ := amount["total"].(float64)
	if tr, ok := f.trades[no]; ok {
		switch {
		case tr.state == "SUCCESS" || tr.state == "REFUND":
			f.answer(w, http.StatusForbidden, map[string]string{"code": "ORDERPAID", "message": "该订单已支付"})
		case int64(total) != tr.total:
			f.answer(w, http.StatusForbidden, map[string]string{"code": "OUT_TRADE_NO_USED", "message": "商户订单号重复"})
		default:
			f.answer(w, http.StatusOK, map[string]string{"code_url": tr.codeURL})
		}
		return
	}
	tr := &fakeTrade{state: "NOTPAY", total: int64(total), codeURL: "weixin://wxpay/bizpayurl?pr=" + no}
	f.trades[no] = tr
	f.answer(w, http.StatusOK, map[string]string{"code_url": tr.codeURL})
}

func (f *fakeWeChat) queryTrade(w http.ResponseWriter, no string) {
	tr, ok := f.trades[no]
	if !ok {
		f.answer(w, http.StatusNotFound, map[string]string{"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
		return
	}
	out := map[string]any{
		"appid": testAppID, "mchid": testMchID, "out_trade_no": no, "trade_type": "NATIVE",
		"trade_state": tr.state, "trade_state_desc": tr.state,
		"amount": map[string]any{"total": tr.total, "currency": "CNY"},
	}
	if tr.transactionID != "" {
		out["transaction_id"] = tr.transactionID
		out["success_time"] = "2025-03-01T19:59:30+08:00"
		out["amount"] = map[string]any{"total": tr.total, "payer_total": tr.total, "currency": "CNY", "payer_currency": "CNY"}
	}
	f.answer(w, http.StatusOK, out)
}

func (f *fakeWeChat) closeTrade(w http.ResponseWriter, no string, in map[string]any) {
	if in["mchid"] != testMchID {
		f.answer(w, http.StatusBadRequest, map[string]string{"code": "PARAM_ERROR", "message": "mchid"})
		return
	}
	tr, ok := f.trades[no]
	switch {
	case !ok:
		f.answer(w, http.StatusNotFound, map[string]string{"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
	case tr.state == "SUCCESS" || tr.state == "REFUND":
		f.answer(w, http.StatusForbidden, map[string]string{"code": "ORDERPAID", "message": "订单已支付"})
	case tr.state == "CLOSED":
		f.answer(w, http.StatusBadRequest, map[string]string{"code": "ORDER_CLOSED", "message": "订单已关闭"})
	default:
		tr.state = "CLOSED"
		f.answer(w, http.StatusNoContent, nil)
	}
}

func (f *fakeWeChat) createRefund(w http.ResponseWriter, in map[string]any) {
	no, _ := in["out_trade_no"].(string)
	refundNo, _ := in["out_refund_no"].(string)
	amount, _ := in["amount"].(map[string]any)
	refund, _ := amount["refund"].(float64)
	total, _ := amount["total"].(float64)
	tr, ok := f.trades[no]
	if !ok {
		f.answer(w, http.StatusNotFound, map[string]string{"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在"})
		return
	}
	if rf, ok := f.refunds[refundNo]; ok {
		f.answer(w, http.StatusOK, f.refundBody(refundNo, rf))
		return
	}
	var refunded int64
	for _, rf := range f.refunds {
		if rf.outTradeNo == no && rf.status != "CLOSED" {
			refunded += rf.refund
		}
	}
	if tr.state != "SUCCESS" && tr.state != "REFUND" || int64(total) != tr.total || refunded+int64(refund) > tr.total {
		f.answer(w, http.StatusBadRequest, map[string]string{"code": "INVALID_REQUEST", "message": "申请退款金额超过订单可退金额"})
		return
	}
	rf := &fakeRefund{outTradeNo: no, refundID: "5000000038" + refundNo, status: "PROCESSING", refund: int64(refund), total: int64(total)}
	f.refunds[refundNo] = rf
	tr.state = "REFUND"
	f.answer(w, http.StatusOK, f.refundBody(refundNo, rf))
}

func (f *fakeWeChat) queryRefund(w http.ResponseWriter, refundNo string) {
	rf, ok := f.refunds[refundNo]
	if !ok {
		f.answer(w, http.StatusNotFound, map[string]string{"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"})
		return
	}
	f.answer(w, http.StatusOK, f.refundBody(refundNo, rf))
}

func (f *fakeWeChat) refundBody(refundNo string, rf *fakeRefund) map[string]any {
	return map[string]any{
		"refund_id": rf.refundID, "out_refund_no": refundNo, "out_trade_no": rf.outTradeNo,
		"transaction_id": f.trades[rf.outTradeNo].transactionID, "channel": "ORIGINAL",
		"user_received_account": "招商银行信用卡0403", "create_time": "2025-03-02T10:00:00+08:00",
		"status": rf.status, "funds_account": "AVAILABLE",
		"amount": map[string]any{
			"total": rf.total, "refund": rf.refund, "payer_total": rf.total, "payer_refund": rf.refund,
			"settlement_refund": rf.refund, "settlement_total": rf.total, "discount_refund": 0, "currency": "CNY",
		},
	}
}

// set puts a trade in a state, as a shopper's actions would.
func (f *fakeWeChat) set(no, state string, total int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tr := &fakeTrade{state: state, total: total, codeURL: "weixin://wxpay/bizpayurl?pr=" + no}
	if state == "SUCCESS" || state == "REFUND" {
		tr.transactionID = "42000023452025030112345" + strconv.Itoa(len(f.trades))
	}
	f.trades[no] = tr
}

func (f *fakeWeChat) state(no string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if tr, ok := f.trades[no]; ok {
		return tr.state
	}
	return ""
}

func (f *fakeWeChat) setRefund(refundNo, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refunds[refundNo].status = status
}

func (f *fakeWeChat) body(path string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies[path]
}

func cny(fen int64) ordercore.Money { return ordercore.Money{Amount: fen, Currency: "CNY"} }

func TestCreatePayment(t *testing.T) {
	t.Parallel()
	f := newFakeWeChat(t)
	c := f.channel(t)
	ctx := context.Background()
	req := ordercore.PaymentRequest{
		OutTradeNo:  "PAY-0001",
		OrderID:     "ORD-1",
		Amount:      cny(1999),
		Description: "Tea, 2 tins",
		ExpiresAt:   time.Date(2025, 3, 1, 12, 30, 0, 0, time.UTC),
		NotifyURL:   "https://shop.example/v1/channels/wechat/notify",
	}
	got, err := c.CreatePayment(ctx, req)
	if err != nil {
		t.Fatalf("CreatePayment: %v", err)
	}
	want := ordercore.PaymentInstructions{Params: map[string]string{"code_url": "weixin://wxpay/bizpayurl?pr=PAY-0001"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("instructions (-want +got):\n%s", diff)
	}
	sent := f.body("/v3/pay/transactions/native")
	wantSent := map[string]any{
		"appid": testAppID, "mchid": testMchID, "description": "Tea, 2 tins", "out_trade_no": "PAY-0001",
		"time_expire": "2025-03-01T20:30:00+08:00", "notify_url": "https://shop.example/v1/channels/wechat/notify",
		"amount": map[string]any{"total": float64(1999), "currency": "CNY"},
	}
	if diff := cmp.Diff(wantSent, sent); diff != "" {
		t.Errorf("request body (-want +got):\n%s", diff)
	}
	// The same out_trade_no is the same trade.
	again, err := c.CreatePayment(ctx, req)
	if err != nil || again.Params["code_url"] != got.Params["code_url"] {
		t.Errorf("repeated CreatePayment = %+v, %v; want the same code_url", again, err)
	}
	// A paid trade cannot be opened again.
	f.set("PAY-PAID", "SUCCESS", 1999)
	req.OutTradeNo = "PAY-PAID"
	if _, err := c.CreatePayment(ctx, req); !errors.Is(err, ordercore.ErrTradePaid) {
		t.Errorf("CreatePayment of a paid trade: %v, want ErrTradePaid", err)
	}
	// Another amount under a used out_trade_no is a definite refusal with WeChat's code.
	req.OutTradeNo, req.Amount = "PAY-0001", cny(2999)
	_, err = c.CreatePayment(ctx, req)
	var ce *ordercore.ChannelError
	if !errors.As(err, &ce) || ce.Code != "OUT_TRADE_NO_USED" || ce.Channel != "wechat" || ce.Message == "" {
		t.Errorf("CreatePayment with another amount: %v, want *ChannelError OUT_TRADE_NO_USED", err)
	}
}

func TestCreatePaymentRefusesOtherCurrencies(t *testing.T) {
	t.Parallel()
	f := newFakeWeChat(t)
	c := f.channel(t)
	_, err := c.CreatePayment(context.Background(), ordercore.PaymentRequest{OutTradeNo: "PAY-USD", Amount: ordercore.Money{Amount: 100, Currency: "USD"}})
	if ordercore.ErrorCode(err) != ordercore.EInvalidCurrency {
		t.Errorf("USD payment: %v, want %s", err, ordercore.EInvalidCurrency)
	}
	if f.body("/v3/pay/transactions/native") != nil {
		t.Error("a USD payment reached WeChat Pay")
	}
}

func TestQueryPayment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state string
		want  ordercore.PaymentStatus
	}{
		{"SUCCESS", ordercore.PaymentSucceeded},
		{"REFUND", ordercore.PaymentSucceeded}, // it was paid
		{"NOTPAY", ordercore.PaymentPending},
		{"USERPAYING", ordercore.PaymentPending},
		{"CLOSED", ordercore.PaymentClosed},
		{"REVOKED", ordercore.PaymentClosed},
		{"PAYERROR", ordercore.PaymentFailed},
	}
	f := newFakeWeChat(t)
	c := f.channel(t)
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			t.Parallel()
			no := "PAY-Q-" + tt.state
			f.set(no, tt.state, 1999)
			got, err := c.QueryPayment(context.Background(), no)
			if err != nil {
				t.Fatalf("QueryPayment: %v", err)
			}
			if got.OutTradeNo != no || got.Status != tt.want || got.Amount != cny(1999) {
				t.Errorf("QueryPayment = %+v, want %s of 19.99 CNY", got, tt.want)
			}
			if paid := tt.want == ordercore.PaymentSucceeded; paid != (got.TxnID != "" && !got.PaidAt.IsZero()) {
				t.Errorf("QueryPayment = %+v: a paid trade has a transaction id and a time, others none", got)
			}
		})
	}
	t.Run("unknown trade", func(t *testing.T) {
		t.Parallel()
		if _, err := c.QueryPayment(context.Background(), "PAY-NEVER"); !errors.Is(err, ordercore.ErrTradeNotFound) {
			t.Errorf("QueryPayment of an unknown trade: %v, want ErrTradeNotFound", err)
		}
	})
}

func TestClosePayment(t *testing.T) {
	t.Parallel()
	f := newFakeWeChat(t)
	c := f.channel(t)
	ctx := context.Background()
	f.set("PAY-OPEN", "NOTPAY", 1999)
	if err := c.ClosePayment(ctx, "PAY-OPEN"); err != nil {
		t.Fatalf("ClosePayment: %v", err)
	}
	if got := f.state("PAY-OPEN"); got != "CLOSED" {
		t.Errorf("trade state after close = %s, want CLOSED", got)
	}
	// Closing a closed trade succeeds (WeChat Pay answers ORDER_CLOSED).
	if err := c.ClosePayment(ctx, "PAY-OPEN"); err != nil {
		t.Errorf("ClosePayment of a closed trade: %v, want nil", err)
	}
	f.set("PAY-PAID", "SUCCESS", 1999)
	if err := c.ClosePayment(ctx, "PAY-PAID"); !errors.Is(err, ordercore.ErrTradePaid) {
		t.Errorf("ClosePayment of a paid trade: %v, want ErrTradePaid", err)
	}
	f.set("PAY-REFUNDED", "REFUND", 1999)
	if err := c.ClosePayment(ctx, "PAY-REFUNDED"); !errors.Is(err, ordercore.ErrTradePaid) {
		t.Errorf("ClosePayment of a refunded trade: %v, want ErrTradePaid", err)
	}
	if err := c.ClosePayment(ctx, "PAY-NEVER"); !errors.Is(err, ordercore.ErrTradeNotFound) {
		t.Errorf("ClosePayment of an unknown trade: %v, want ErrTradeNotFound", err)
	}
}

func TestRefund(t *testing.T) {
	t.Parallel()
	f := newFakeWeChat(t)
	c := f.channel(t)
	ctx := context.Background()
	f.set("PAY-R", "SUCCESS", 1999)
	req := ordercore.RefundRequest{
		OutTradeNo: "PAY-R", OutRefundNo: "RF-1", Amount: cny(500), Total: cny(1999),
		Reason: "damaged tin", NotifyURL: "https://shop.example/v1/channels/wechat/notify",
	}
	got, err := c.Refund(ctx, req)
	if err != nil {
		t.Fatalf("Refund: %v", err)
	}
	want := ordercore.ChannelRefund{OutTradeNo: "PAY-R", OutRefundNo: "RF-1", RefundID: "5000000038RF-1", Status: ordercore.RefundPending, Amount: cny(500)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Refund (-want +got):\n%s", diff)
	}
	wantSent := map[string]any{
		"out_trade_no": "PAY-R", "out_refund_no": "RF-1", "reason": "damaged tin",
		"notify_url": "https://shop.example/v1/channels/wechat/notify",
		"amount":     map[string]any{"refund": float64(500), "total": float64(1999), "currency": "CNY"},
	}
	if diff := cmp.Diff(wantSent, f.body("/v3/refund/domestic/refunds")); diff != "" {
		t.Errorf("request body (-want +got):\n%s", diff)
	}
	// The same out_refund_no is the same refund, not a second one.
	if again, err := c.Refund(ctx, req); err != nil || again != got {
		t.Errorf("repeated Refund = %+v, %v; want %+v", again, err, got)
	}
	// WeChat Pay takes a reason of at most 80 characters; ordercore's may be longer.
	long := req
	long.OutRefundNo, long.Reason = "RF-LONG", strings.Repeat("退", 120)
	if _, err := c.Refund(ctx, long); err != nil {
		t.Fatalf("Refund with a 120-character reason: %v", err)
	}
	if sent, _ := f.body("/v3/refund/domestic/refunds")["reason"].(string); sent != strings.Repeat("退", 80) {
		t.Errorf("reason sent: %d characters; want the first 80", utf8.RuneCountInString(sent))
	}
	for _, tt := range []struct {
		status string
		want   ordercore.RefundStatus
	}{
		{"SUCCESS", ordercore.RefundSucceeded},
		{"PROCESSING", ordercore.RefundPending},
		{"ABNORMAL", ordercore.RefundAbnormal},
		{"CLOSED", ordercore.RefundFailed},
	} {
		f.setRefund("RF-1", tt.status)
		got, err := c.QueryRefund(ctx, "PAY-R", "RF-1")
		if err != nil || got.Status != tt.want || got.Amount != cny(500) || got.RefundID == "" {
			t.Errorf("QueryRefund with status %s = %+v, %v; want %s of 5.00 CNY", tt.status, got, err, tt.want)
		}
	}
	// More than what remains refundable is WeChat Pay's definite refusal.
	f.setRefund("RF-1", "SUCCESS")
	_, err = c.Refund(ctx, ordercore.RefundRequest{OutTradeNo: "PAY-R", OutRefundNo: "RF-2", Amount: cny(1600), Total: cny(1999)})
	var ce *ordercore.ChannelError
	if !errors.As(err, &ce) || ce.Code != "INVALID_REQUEST" {
		t.Errorf("Refund over the remainder: %v, want *ChannelError INVALID_REQUEST", err)
	}
	if _, err := c.Refund(ctx, ordercore.RefundRequest{OutTradeNo: "PAY-NEVER", OutRefundNo: "RF-3", Amount: cny(1), Total: cny(1)}); !errors.Is(err, ordercore.ErrTradeNotFound) {
		t.Errorf("Refund of an unknown trade: %v, want ErrTradeNotFound", err)
	}
	if _, err := c.QueryRefund(ctx, "PAY-R", "RF-NEVER"); !errors.Is(err, ordercore.ErrTradeNotFound) {
		t.Errorf("QueryRefund of an unknown refund: %v, want ErrTradeNotFound", err)
	}
	if _, err := c.Refund(ctx, ordercore.RefundRequest{OutTradeNo: "PAY-R", OutRefundNo: "RF-4", Amount: cny(2000), Total: cny(1999)}); ordercore.ErrorCode(err) != ordercore.ERefundExceeds {
		t.Errorf("Refund over the total: %v, want %s before any call", err, ordercore.ERefundExceeds)
	}
}

// Answers that do not authenticate prove nothing, whatever they say: every one of them
// is ErrOutcomeUnknown, never a definite answer.
func TestUnauthenticatedAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(f *fakeWeChat)
	}{
		{"signed by another key", func(f *fakeWeChat) { f.signer = keys().stranger }},
		{"signed under an unknown serial", func(f *fakeWeChat) { f.serial = "PUB_KEY_ID_UNKNOWN" }},
		{"unsigned", func(f *fakeWeChat) { f.unsigned = true }},
		{"signed 10 minutes ago", func(f *fakeWeChat) { f.answerSkew = -10 * time.Minute }},
		{"body changed after signing", func(f *fakeWeChat) {
			f.tamper = func(b []byte) []byte { return append(b, ' ') }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeWeChat(t)
			c := f.channel(t)
			f.set("PAY-PAID", "SUCCESS", 1999)
			f.set("PAY-OPEN", "NOTPAY", 1999)
			tt.setup(f)
			ctx := context.Background()
			_, err := c.QueryPayment(ctx, "PAY-OPEN")
			checkUnknown(t, "QueryPayment", err)
			checkUnknown(t, "ClosePayment of a paid trade", c.ClosePayment(ctx, "PAY-PAID"))
			checkUnknown(t, "ClosePayment of an unknown trade", c.ClosePayment(ctx, "PAY-NEVER"))
			_, err = c.CreatePayment(ctx, ordercore.PaymentRequest{OutTradeNo: "PAY-NEW", Amount: cny(1)})
			checkUnknown(t, "CreatePayment", err)
		})
	}
}

func checkUnknown(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ordercore.ErrOutcomeUnknown) {
		t.Errorf("%s: %v, want ErrOutcomeUnknown", what, err)
	}
	if errors.Is(err, ordercore.ErrTradePaid) || errors.Is(err, ordercore.ErrTradeNotFound) {
		t.Errorf("%s: %v is also a definite answer", what, err)
	}
}

// A signed answer about another trade (a replay within the window) says nothing about
// the one asked for.
func TestAnswerAboutAnotherTrade(t *testing.T) {
	t.Parallel()
	f := newFakeWeChat(t)
	c := f.channel(t)
	f.set("PAY-A", "NOTPAY", 1999)
	f.rewrite = func(body []byte) []byte { return []byte(strings.Replace(string(body), "PAY-A", "PAY-B", 1)) }
	_, err := c.QueryPayment(context.Background(), "PAY-A")
	checkUnknown(t, "QueryPayment answered about PAY-B", err)
}

// WeChat Pay does not sign its SIGN_ERROR: a channel with the wrong merchant key sees
// every call as unknown, with the reason in the message for the operator.
func TestWrongMerchantKey(t *testing.T) {
	t.Parallel()
	f := newFakeWeChat(t)
	c := f.channel(t, func(cfg *Config) { cfg.MchPrivateKey = keys().stranger })
	f.set("PAY-A", "NOTPAY", 1999)
	_, err := c.QueryPayment(context.Background(), "PAY-A")
	checkUnknown(t, "QueryPayment signed with the wrong key", err)
	if err != nil && !strings.Contains(err.Error(), "SIGN_ERROR") {
		t.Errorf("error %q does not name SIGN_ERROR", err)
	}
}

func TestTimeoutIsUnknown(t *testing.T) {
	t.Parallel()
	f := newFakeWeChat(t)
	f.sleep = 2 * time.Second
	c := f.channel(t, func(cfg *Config) { cfg.Timeout = 50 * time.Millisecond })
	start := time.Now()
	_, err := c.CreatePayment(context.Background(), ordercore.PaymentRequest{OutTradeNo: "PAY-SLOW", Amount: cny(1999)})
	if !errors.Is(err, ordercore.ErrOutcomeUnknown) {
		t.Errorf("CreatePayment past the timeout: %v, want ErrOutcomeUnknown", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("CreatePayment returned after %s, the timeout is 50ms", d)
	}
}

func TestServerErrorIsUnknown(t *testing.T) {
	t.Parallel()
	f := newFakeWeChat(t)
	f.status5xx = true
	c := f.channel(t)
	checkUnknown(t, "ClosePayment on a 500", c.ClosePayment(context.Background(), "PAY-A"))
}
