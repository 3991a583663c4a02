package alipay

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
)

func yuan(t *testing.T, s string) ordercore.Money {
	t.Helper()
	m, err := ordercore.ParseMoney(s, "CNY")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Nodes as the gateway documents them.
const (
	nodeTradeNotExist = `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在","buyer_pay_amount":"0.00","invoice_amount":"0.00","out_trade_no":"T1","point_amount":"0.00","receipt_amount":"0.00"}`
	nodeStatusError   = `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_STATUS_ERROR","sub_msg":"交易状态不合法"}`
	nodeSystemError   = `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.SYSTEM_ERROR","sub_msg":"系统错误"}`
	nodeUnavailable   = `{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error","sub_msg":"系统繁忙"}`
	nodeCloseOK       = `{"code":"10000","msg":"Success","trade_no":"2013112111001004500000675971","out_trade_no":"T1"}`
)

func nodeQuery(status string) string {
	return `{"code":"10000","msg":"Success","trade_no":"2013112011001004330000121536","out_trade_no":"T1",` +
		`"buyer_logon_id":"159****5620","trade_status":"` + status + `","total_amount":"88.88",` +
		`"buyer_pay_amount":"8.88","send_pay_date":"2014-11-27 15:45:57","buyer_user_id":"2088101117955611"}`
}

func TestQueryPayment(t *testing.T) {
	t.Parallel()
	paidAt := time.Date(2014, 11, 27, 15, 45, 57, 0, time.FixedZone("CST", 8*3600))
	payment := func(s ordercore.PaymentStatus, paid time.Time) ordercore.ChannelPayment {
		return ordercore.ChannelPayment{OutTradeNo: "T1", TxnID: "2013112011001004330000121536", Status: s, Amount: yuan(t, "88.88"), PaidAt: paid}
	}
	tests := []struct {
		name    string
		node    string
		want    ordercore.ChannelPayment
		wantErr error // matched with errors.Is
		wantRef string
	}{
		{name: "waiting", node: nodeQuery("WAIT_BUYER_PAY"), want: payment(ordercore.PaymentPending, time.Time{})},
		{name: "success", node: nodeQuery("TRADE_SUCCESS"), want: payment(ordercore.PaymentSucceeded, paidAt)},
		{name: "finished", node: nodeQuery("TRADE_FINISHED"), want: payment(ordercore.PaymentSucceeded, paidAt)},
		{name: "closed", node: nodeQuery("TRADE_CLOSED"), want: payment(ordercore.PaymentClosed, time.Time{})},
		{name: "not exist", node: nodeTradeNotExist, wantErr: ordercore.ErrTradeNotFound},
		{name: "system error", node: nodeSystemError, wantErr: ordercore.ErrOutcomeUnknown},
		{name: "unavailable", node: nodeUnavailable, wantErr: ordercore.ErrOutcomeUnknown},
		{name: "unknown status", node: nodeQuery("TRADE_PENDING"), wantErr: ordercore.ErrOutcomeUnknown},
		{
			name: "another trade", wantErr: ordercore.ErrOutcomeUnknown,
			node: strings.Replace(nodeQuery("TRADE_SUCCESS"), `"out_trade_no":"T1"`, `"out_trade_no":"T2"`, 1),
		},
		{
			name:    "refused",
			node:    `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.INVALID_PARAMETER","sub_msg":"参数无效"}`,
			wantRef: "ACQ.INVALID_PARAMETER",
		},
		{
			name:    "insufficient permission",
			node:    `{"code":"40006","msg":"Insufficient Permissions","sub_code":"isv.insufficient-isv-permissions","sub_msg":"ISV权限不足"}`,
			wantRef: "isv.insufficient-isv-permissions",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, g := setup(t, byMethod(map[string]string{methodQuery: tt.node}))
			got, err := c.QueryPayment(context.Background(), "T1")
			checkErr(t, err, tt.wantErr, tt.wantRef)
			if err == nil {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("QueryPayment (-want +got):\n%s", diff)
				}
			}
			calls := g.recorded()
			if len(calls) != 1 || calls[0].Biz["out_trade_no"] != "T1" {
				t.Errorf("calls = %+v, want one query of T1", calls)
			}
		})
	}
}

// checkErr checks err against the wanted control error, or the wanted *ChannelError code,
// or neither.
func checkErr(t *testing.T, err, want error, wantRef string) {
	t.Helper()
	var ce *ordercore.ChannelError
	switch {
	case want != nil:
		if !errors.Is(err, want) {
			t.Fatalf("err = %v, want %v", err, want)
		}
	case wantRef != "":
		if !errors.As(err, &ce) || ce.Code != wantRef || ce.Channel != "alipay" {
			t.Fatalf("err = %v, want *ChannelError %s", err, wantRef)
		}
		if errors.Is(err, ordercore.ErrOutcomeUnknown) {
			t.Fatalf("a refusal also reports an unknown outcome: %v", err)
		}
	case err != nil:
		t.Fatalf("err = %v", err)
	}
}

func TestClosePayment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		close     string
		query     string // answer to the query made after ACQ.TRADE_STATUS_ERROR
		wantErr   error
		wantRef   string
		wantCalls []string
	}{
		{name: "closed now", close: nodeCloseOK, wantCalls: []string{methodClose}},
		{name: "not exist", close: nodeTradeNotExist, wantErr: ordercore.ErrTradeNotFound, wantCalls: []string{methodClose}},
		{
			name: "already closed", close: nodeStatusError, query: nodeQuery("TRADE_CLOSED"),
			wantCalls: []string{methodClose, methodQuery},
		},
		{
			name: "paid", close: nodeStatusError, query: nodeQuery("TRADE_SUCCESS"),
			wantErr: ordercore.ErrTradePaid, wantCalls: []string{methodClose, methodQuery},
		},
		{
			name: "finished", close: nodeStatusError, query: nodeQuery("TRADE_FINISHED"),
			wantErr: ordercore.ErrTradePaid, wantCalls: []string{methodClose, methodQuery},
		},
		{
			// The close lost a race with a state change: nothing is known until asked again.
			name: "still waiting", close: nodeStatusError, query: nodeQuery("WAIT_BUYER_PAY"),
			wantErr: ordercore.ErrOutcomeUnknown, wantCalls: []string{methodClose, methodQuery},
		},
		{
			name: "query unknown", close: nodeStatusError, query: nodeSystemError,
			wantErr: ordercore.ErrOutcomeUnknown, wantCalls: []string{methodClose, methodQuery},
		},
		{name: "system error", close: nodeSystemError, wantErr: ordercore.ErrOutcomeUnknown, wantCalls: []string{methodClose}},
		{
			name:      "refused",
			close:     `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.INVALID_PARAMETER","sub_msg":"参数无效"}`,
			wantRef:   "ACQ.INVALID_PARAMETER",
			wantCalls: []string{methodClose},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, g := setup(t, byMethod(map[string]string{methodClose: tt.close, methodQuery: tt.query}))
			err := c.ClosePayment(context.Background(), "T1")
			checkErr(t, err, tt.wantErr, tt.wantRef)
			var methods []string
			for _, c := range g.recorded() {
				methods = append(methods, c.Method)
				if c.Biz["out_trade_no"] != "T1" {
					t.Errorf("%s of %q, want T1", c.Method, c.Biz["out_trade_no"])
				}
			}
			if diff := cmp.Diff(tt.wantCalls, methods); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func nodeRefund(fundChange string) string {
	// refund_fee is the trade's total refunded so far: 30.00 before, 12.34 now.
	return `{"code":"10000","msg":"Success","trade_no":"2014112611001004680073956707","out_trade_no":"T1",` +
		`"buyer_logon_id":"159****5620","fund_change":"` + fundChange + `","refund_fee":"42.34",` +
		`"gmt_refund_pay":"2014-11-27 15:45:57","buyer_user_id":"2088101117955611"}`
}

func nodeRefundQuery(status string) string {
	s := `{"code":"10000","msg":"Success","trade_no":"2014112611001004680073956707","out_trade_no":"T1",` +
		`"out_request_no":"R1","total_amount":"88.88","refund_amount":"12.34"`
	if status != "" {
		s += `,"refund_status":"` + status + `"`
	}
	return s + "}"
}

func TestRefund(t *testing.T) {
	t.Parallel()
	refund := func(s ordercore.RefundStatus) ordercore.ChannelRefund {
		return ordercore.ChannelRefund{OutTradeNo: "T1", OutRefundNo: "R1", Status: s, Amount: yuan(t, "12.34")}
	}
	tests := []struct {
		name      string
		refund    string
		query     string
		want      ordercore.ChannelRefund
		wantErr   error
		wantRef   string
		wantCalls []string
	}{
		{name: "money moved", refund: nodeRefund("Y"), want: refund(ordercore.RefundSucceeded), wantCalls: []string{methodRefund}},
		{
			name: "no money moved, made earlier", refund: nodeRefund("N"), query: nodeRefundQuery("REFUND_SUCCESS"),
			want: refund(ordercore.RefundSucceeded), wantCalls: []string{methodRefund, methodRefundQuery},
		},
		{
			name: "no money moved, not yet", refund: nodeRefund("N"), query: nodeRefundQuery(""),
			want: refund(ordercore.RefundPending), wantCalls: []string{methodRefund, methodRefundQuery},
		},
		{name: "not exist", refund: nodeTradeNotExist, wantErr: ordercore.ErrTradeNotFound, wantCalls: []string{methodRefund}},
		{name: "system error", refund: nodeSystemError, wantErr: ordercore.ErrOutcomeUnknown, wantCalls: []string{methodRefund}},
		{
			name:      "refused",
			refund:    `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.REFUND_AMT_NOT_EQUAL_TOTAL","sub_msg":"退款金额超限"}`,
			wantRef:   "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
			wantCalls: []string{methodRefund},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, g := setup(t, byMethod(map[string]string{methodRefund: tt.refund, methodRefundQuery: tt.query}))
			got, err := c.Refund(context.Background(), ordercore.RefundRequest{
				OutTradeNo: "T1", OutRefundNo: "R1", Amount: yuan(t, "12.34"), Total: yuan(t, "88.88"),
				Reason: "退货 return", NotifyURL: "https://shop.example/notify",
			})
			checkErr(t, err, tt.wantErr, tt.wantRef)
			if err == nil {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Refund (-want +got):\n%s", diff)
				}
			}
			calls := g.recorded()
			var methods []string
			for _, c := range calls {
				methods = append(methods, c.Method)
			}
			if diff := cmp.Diff(tt.wantCalls, methods); diff != "" {
				t.Fatalf("calls (-want +got):\n%s", diff)
			}
			wantBiz := map[string]string{"out_trade_no": "T1", "refund_amount": "12.34", "out_request_no": "R1", "refund_reason": "退货 return"}
			if diff := cmp.Diff(wantBiz, calls[0].Biz); diff != "" {
				t.Errorf("refund biz_content (-want +got):\n%s", diff)
			}
			if len(calls) > 1 {
				if diff := cmp.Diff(map[string]string{"out_trade_no": "T1", "out_request_no": "R1"}, calls[1].Biz); diff != "" {
					t.Errorf("refund query biz_content (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestQueryRefund(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		node    string
		want    ordercore.ChannelRefund
		wantErr error
	}{
		{
			name: "success", node: nodeRefundQuery("REFUND_SUCCESS"),
			want: ordercore.ChannelRefund{OutTradeNo: "T1", OutRefundNo: "R1", Status: ordercore.RefundSucceeded, Amount: yuan(t, "12.34")},
		},
		{
			name: "no status", node: nodeRefundQuery(""),
			want: ordercore.ChannelRefund{OutTradeNo: "T1", OutRefundNo: "R1", Status: ordercore.RefundPending, Amount: yuan(t, "12.34")},
		},
		{
			// What the gateway answers for a refund it never received.
			name: "nothing known", node: `{"code":"10000","msg":"Success"}`,
			want: ordercore.ChannelRefund{OutTradeNo: "T1", OutRefundNo: "R1", Status: ordercore.RefundPending, Amount: ordercore.Money{Currency: "CNY"}},
		},
		{
			name: "undocumented status", node: nodeRefundQuery("REFUND_PROCESSING"),
			want: ordercore.ChannelRefund{OutTradeNo: "T1", OutRefundNo: "R1", Status: ordercore.RefundPending, Amount: yuan(t, "12.34")},
		},
		{
			name: "another refund", wantErr: ordercore.ErrOutcomeUnknown,
			node: strings.Replace(nodeRefundQuery("REFUND_SUCCESS"), `"out_request_no":"R1"`, `"out_request_no":"R2"`, 1),
		},
		{
			name: "amount as a JSON number", node: strings.Replace(nodeRefundQuery("REFUND_SUCCESS"), `"refund_amount":"12.34"`, `"refund_amount":12.34`, 1),
			want: ordercore.ChannelRefund{OutTradeNo: "T1", OutRefundNo: "R1", Status: ordercore.RefundSucceeded, Amount: yuan(t, "12.34")},
		},
		{name: "not exist", node: nodeTradeNotExist, wantErr: ordercore.ErrTradeNotFound},
		{name: "unavailable", node: nodeUnavailable, wantErr: ordercore.ErrOutcomeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := setup(t, byMethod(map[string]string{methodRefundQuery: tt.node}))
			got, err := c.QueryRefund(context.Background(), "T1", "R1")
			checkErr(t, err, tt.wantErr, "")
			if err == nil {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("QueryRefund (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// An answer is only as good as its signature: one that fails, or has none, proves nothing
// about whether the call ran, so it is an unknown outcome, never a definite answer.
func TestAnswerNotAuthentic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(g *fakeGateway)
	}{
		{name: "signed by another key", setup: func(g *fakeGateway) { g.signWith = testKeys().other }},
		{name: "signed by the merchant", setup: func(g *fakeGateway) { g.signWith = testKeys().merchant }},
		{name: "unsigned", setup: func(g *fakeGateway) { g.unsigned = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// A definite-looking answer: without the signature check it would be "paid".
			c, g := setup(t, byMethod(map[string]string{methodQuery: nodeQuery("TRADE_SUCCESS"), methodClose: nodeTradeNotExist}))
			tt.setup(g)
			if _, err := c.QueryPayment(context.Background(), "T1"); !errors.Is(err, ordercore.ErrOutcomeUnknown) {
				t.Errorf("QueryPayment err = %v, want ErrOutcomeUnknown", err)
			}
			if err := c.ClosePayment(context.Background(), "T1"); !errors.Is(err, ordercore.ErrOutcomeUnknown) {
				t.Errorf("ClosePayment err = %v, want ErrOutcomeUnknown", err)
			}
		})
	}
}

// A node altered in transit no longer matches its signature.
func TestAnswerTampered(t *testing.T) {
	t.Parallel()
	node := nodeQuery("WAIT_BUYER_PAY")
	sig := plainSign(testKeys().alipay, node)
	tampered := strings.Replace(node, "WAIT_BUYER_PAY", "TRADE_SUCCESS", 1)
	srv := httptest.NewServer(rawAnswer(func(body *strings.Builder) {
		body.WriteString(`{"alipay_trade_query_response":` + tampered + `,"sign":"` + sig + `"}`)
	}))
	t.Cleanup(srv.Close)
	c := newChannel(t, srv.URL)
	if _, err := c.QueryPayment(context.Background(), "T1"); !errors.Is(err, ordercore.ErrOutcomeUnknown) {
		t.Errorf("err = %v, want ErrOutcomeUnknown", err)
	}
}

// The gateway signs the node exactly as it writes it: spacing, escapes and field order
// are under the signature, so the adapter must verify the bytes it received.
func TestAnswerRawNode(t *testing.T) {
	t.Parallel()
	node := "{ \"code\": \"10000\",\n \"msg\":\"Success\", \"out_trade_no\":\"T1\", \"trade_no\":\"2013\\/11\", " +
		"\"trade_status\":\"TRADE_CLOSED\", \"total_amount\":\"0.01\", \"subject\":\"\\u4e2d\u6587\" }"
	sig := plainSign(testKeys().alipay, node)
	srv := httptest.NewServer(rawAnswer(func(body *strings.Builder) {
		body.WriteString(`{"sign":"` + sig + `",  "alipay_trade_query_response":` + node + `}`)
	}))
	t.Cleanup(srv.Close)
	c := newChannel(t, srv.URL)
	got, err := c.QueryPayment(context.Background(), "T1")
	if err != nil {
		t.Fatal(err)
	}
	want := ordercore.ChannelPayment{OutTradeNo: "T1", TxnID: "2013/11", Status: ordercore.PaymentClosed, Amount: yuan(t, "0.01")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("QueryPayment (-want +got):\n%s", diff)
	}
}

// An error_response comes when the gateway refuses before the method runs. Signed, it is a
// definite refusal; unsigned, it proves nothing.
func TestErrorResponse(t *testing.T) {
	t.Parallel()
	node := `{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id","sub_msg":"无效的AppID参数"}`
	for _, signed := range []bool{true, false} {
		srv := httptest.NewServer(rawAnswer(func(body *strings.Builder) {
			body.WriteString(`{"error_response":` + node)
			if signed {
				body.WriteString(`,"sign":"` + plainSign(testKeys().alipay, node) + `"`)
			}
			body.WriteString("}")
		}))
		t.Cleanup(srv.Close)
		c := newChannel(t, srv.URL)
		_, err := c.QueryPayment(context.Background(), "T1")
		if signed {
			checkErr(t, err, nil, "isv.invalid-app-id")
		} else {
			checkErr(t, err, ordercore.ErrOutcomeUnknown, "")
		}
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	g := &fakeGateway{t: t, answer: byMethod(map[string]string{methodRefund: nodeRefund("Y")}), sleep: 10 * time.Second}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	keys := testKeys()
	c, err := New(Config{
		AppID: testAppID, PrivateKey: keys.merchant, AlipayPublicKey: &keys.alipay.PublicKey,
		GatewayURL: srv.URL, Timeout: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Refund(context.Background(), ordercore.RefundRequest{OutTradeNo: "T1", OutRefundNo: "R1", Amount: yuan(t, "1.00")})
	if !errors.Is(err, ordercore.ErrOutcomeUnknown) {
		t.Errorf("err = %v, want ErrOutcomeUnknown", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the call took %s with a 100ms timeout", d)
	}
}

func TestCreatePayment(t *testing.T) {
	t.Parallel()
	c := newChannel(t, "https://openapi.example/gateway.do")
	c.now = func() time.Time { return time.Date(2024, 5, 1, 2, 3, 4, 0, time.UTC) }
	got, err := c.CreatePayment(context.Background(), ordercore.PaymentRequest{
		OutTradeNo:  "P20240501",
		OrderID:     "O1",
		Amount:      yuan(t, "88.88"),
		Description: "Tea & cups 茶具",
		ExpiresAt:   time.Date(2024, 5, 1, 2, 33, 4, 0, time.UTC),
		NotifyURL:   "https://shop.example/v1/channels/alipay/notify",
	})
	if err != nil {
		t.Fatal(err)
	}
	u := mustParseURL(t, got.RedirectURL)
	if u.Scheme != "https" || u.Host != "openapi.example" || u.Path != "/gateway.do" {
		t.Errorf("RedirectURL %s does not lead to the gateway", got.RedirectURL)
	}
	params := make(map[string]string)
	for k, vs := range u.Query() {
		if len(vs) != 1 {
			t.Errorf("parameter %s given %d times", k, len(vs))
		}
		params[k] = vs[0]
	}
	if !plainVerify(&testKeys().merchant.PublicKey, plainContent(params, true, "sign"), params["sign"]) {
		t.Error("the redirect URL's signature does not verify with the merchant's public key")
	}
	wantParams := map[string]string{
		"app_id": testAppID, "method": "alipay.trade.page.pay", "format": "JSON", "charset": "utf-8",
		"sign_type": "RSA2", "version": "1.0", "timestamp": "2024-05-01 10:03:04",
		"notify_url": "https://shop.example/v1/channels/alipay/notify",
		"biz_content": `{"out_trade_no":"P20240501","total_amount":"88.88","subject":"Tea & cups 茶具",` +
			`"product_code":"FAST_INSTANT_TRADE_PAY","time_expire":"2024-05-01 10:33:04"}`,
	}
	delete(params, "sign")
	if diff := cmp.Diff(wantParams, params); diff != "" {
		t.Errorf("redirect parameters (-want +got):\n%s", diff)
	}
}

func TestCreatePaymentRefusesBeforeSending(t *testing.T) {
	t.Parallel()
	c := newChannel(t, "https://openapi.example/gateway.do")
	tests := []struct {
		name string
		req  ordercore.PaymentRequest
		code string
	}{
		{name: "not CNY", req: ordercore.PaymentRequest{OutTradeNo: "P1", Amount: ordercore.Money{Amount: 100, Currency: "USD"}}, code: ordercore.EInvalidCurrency},
		{name: "zero", req: ordercore.PaymentRequest{OutTradeNo: "P1", Amount: ordercore.Money{Currency: "CNY"}}, code: ordercore.EINVALID},
		{name: "too much", req: ordercore.PaymentRequest{OutTradeNo: "P1", Amount: ordercore.Money{Amount: 100_000_000_01, Currency: "CNY"}}, code: ordercore.EINVALID},
		{name: "no trade number", req: ordercore.PaymentRequest{Amount: ordercore.Money{Amount: 100, Currency: "CNY"}}, code: ordercore.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.CreatePayment(context.Background(), tt.req)
			if got := ordercore.ErrorCode(err); got != tt.code {
				t.Errorf("code = %q (%v), want %q", got, err, tt.code)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	good := Config{AppID: testAppID, PrivateKey: keys.merchant, AlipayPublicKey: &keys.alipay.PublicKey}
	c, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != "alipay" || c.gateway.String() != GatewayURLDefault {
		t.Errorf("defaults: name %q, gateway %s", c.Name(), c.gateway)
	}
	bad := map[string]func(*Config){
		"no app id":          func(c *Config) { c.AppID = "" },
		"no private key":     func(c *Config) { c.PrivateKey = nil },
		"no alipay key":      func(c *Config) { c.AlipayPublicKey = nil },
		"own key for alipay": func(c *Config) { c.AlipayPublicKey = &keys.merchant.PublicKey },
		"relative gateway":   func(c *Config) { c.GatewayURL = "/gateway.do" },
	}
	for name, change := range bad {
		cfg := good
		change(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestAck(t *testing.T) {
	t.Parallel()
	c := newChannel(t, GatewayURLDefault)
	w := httptest.NewRecorder()
	c.Ack(w)
	if w.Code != 200 || w.Body.String() != "success" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Errorf("Ack: %d %q %q, want 200 \"success\" text/plain", w.Code, w.Body.String(), w.Header().Get("Content-Type"))
	}
}
