package alipay

import (
	"crypto/rsa"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
)

// payNotify is a trade status notification as Alipay documents it (TRADE_SUCCESS).
func payNotify() map[string]string {
	return map[string]string{
		"gmt_create":       "2015-04-27 15:45:57",
		"charset":          "utf-8",
		"seller_email":     "merchant@example.com",
		"subject":          "Tea set",
		"buyer_id":         "2088102122524333",
		"invoice_amount":   "88.88",
		"notify_id":        "2015042700119000000000000000000001",
		"fund_bill_list":   `[{"amount":"88.88","fundChannel":"ALIPAYACCOUNT"}]`,
		"notify_type":      "trade_status_sync",
		"trade_status":     "TRADE_SUCCESS",
		"receipt_amount":   "88.88",
		"app_id":           testAppID,
		"buyer_pay_amount": "88.88",
		"seller_id":        testSellerID,
		"gmt_payment":      "2015-04-27 15:45:58",
		"notify_time":      "2015-04-27 15:45:59",
		"version":          "1.0",
		"out_trade_no":     "P20150427",
		"total_amount":     "88.88",
		"trade_no":         "2015042721001004330000121536",
		"auth_app_id":      testAppID,
		"buyer_logon_id":   "159****5620",
		"point_amount":     "0.00",
	}
}

// signNotify returns the form body Alipay would post: params signed with key over the
// plain sorted string (sign and sign_type left out, values decoded), then form-encoded.
func signNotify(key *rsa.PrivateKey, params map[string]string) []byte {
	v := url.Values{}
	for k, s := range params {
		v.Set(k, s)
	}
	v.Set("sign_type", "RSA2")
	v.Set("sign", plainSign(key, plainContent(params, false, "sign", "sign_type")))
	return []byte(v.Encode())
}

func with(params map[string]string, kv ...string) map[string]string {
	p := maps.Clone(params)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(p, kv[i])
		} else {
			p[kv[i]] = kv[i+1]
		}
	}
	return p
}

func parse(t *testing.T, body []byte) (ordercore.Notification, error) {
	t.Helper()
	c := newChannel(t, GatewayURLDefault)
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}}
	return c.ParseNotification(h, body, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
}

func TestParsePaymentNotification(t *testing.T) {
	t.Parallel()
	got, err := parse(t, signNotify(testKeys().alipay, payNotify()))
	if err != nil {
		t.Fatal(err)
	}
	want := ordercore.Notification{
		EventID: "2015042700119000000000000000000001",
		Payment: &ordercore.ChannelPayment{
			OutTradeNo: "P20150427",
			TxnID:      "2015042721001004330000121536",
			Status:     ordercore.PaymentSucceeded,
			Amount:     ordercore.Money{Amount: 8888, Currency: "CNY"},
			PaidAt:     time.Date(2015, 4, 27, 7, 45, 58, 0, time.UTC),
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("notification (-want +got):\n%s", diff)
	}
}

func TestNotificationTradeStatus(t *testing.T) {
	t.Parallel()
	tests := map[string]ordercore.PaymentStatus{
		"WAIT_BUYER_PAY": ordercore.PaymentPending,
		"TRADE_SUCCESS":  ordercore.PaymentSucceeded,
		"TRADE_FINISHED": ordercore.PaymentSucceeded,
		"TRADE_CLOSED":   ordercore.PaymentClosed,
	}
	for status, want := range tests {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			got, err := parse(t, signNotify(testKeys().alipay, with(payNotify(), "trade_status", status)))
			if err != nil {
				t.Fatal(err)
			}
			if got.Payment == nil || got.Refund != nil || got.Payment.Status != want {
				t.Errorf("%s: got %+v, want payment %s", status, got, want)
			}
			if paid := !got.Payment.PaidAt.IsZero(); paid != (want == ordercore.PaymentSucceeded) {
				t.Errorf("%s: PaidAt = %v", status, got.Payment.PaidAt)
			}
		})
	}
}

// A payment notification that states a zero refund_fee is still a payment notification.
func TestNotificationZeroRefundFee(t *testing.T) {
	t.Parallel()
	got, err := parse(t, signNotify(testKeys().alipay, with(payNotify(), "refund_fee", "0.00")))
	if err != nil {
		t.Fatal(err)
	}
	if got.Payment == nil || got.Refund != nil || got.Payment.Status != ordercore.PaymentSucceeded {
		t.Errorf("got %+v, want a succeeded payment", got)
	}
}

func TestParseRefundNotification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status string
	}{
		{name: "partial refund", status: "TRADE_SUCCESS"},
		// A full refund closes the trade; the notification is still a refund, not a close.
		{name: "full refund", status: "TRADE_CLOSED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			params := with(payNotify(),
				"notify_id", "2015042700119000000000000000000002",
				"trade_status", tt.status,
				"out_biz_no", "R1",
				"refund_fee", "12.30",
				// Alipay documents gmt_refund with milliseconds.
				"gmt_refund", "2015-04-28 10:00:00.320",
				"gmt_close", "2015-04-28 10:00:00")
			got, err := parse(t, signNotify(testKeys().alipay, params))
			if err != nil {
				t.Fatal(err)
			}
			want := ordercore.Notification{
				EventID: "2015042700119000000000000000000002",
				Refund: &ordercore.ChannelRefund{
					OutTradeNo:  "P20150427",
					OutRefundNo: "R1",
					Status:      ordercore.RefundSucceeded,
					Amount:      ordercore.Money{Amount: 1230, Currency: "CNY"},
				},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("notification (-want +got):\n%s", diff)
			}
		})
	}
}

// Signature first: everything that is not signed by the Alipay key is invalid_signature,
// whatever else is wrong with it.
func TestNotificationSignature(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	good := signNotify(keys.alipay, payNotify())
	tampered := strings.Replace(string(good), "total_amount=88.88", "total_amount=0.01", 1)
	if tampered == string(good) {
		t.Fatal("the tampering did not apply")
	}
	form, _ := url.ParseQuery(string(good))
	form.Del("sign")
	unsigned := form.Encode()
	form, _ = url.ParseQuery(string(good))
	form.Set("sign", "!!not base64!!")
	garbled := form.Encode()

	tests := map[string][]byte{
		"tampered amount":          []byte(tampered),
		"signed by another key":    signNotify(keys.other, payNotify()),
		"signed by the merchant":   signNotify(keys.merchant, payNotify()),
		"no sign":                  []byte(unsigned),
		"sign not base64":          []byte(garbled),
		"empty body":               nil,
		"forged, wrong app id":     signNotify(keys.other, with(payNotify(), "app_id", "2021999999999999")),
		"forged, wrong seller":     signNotify(keys.other, with(payNotify(), "seller_id", "2088999999999999")),
		"forged, missing fields":   signNotify(keys.other, with(payNotify(), "notify_id", "", "total_amount", "")),
		"added unsigned parameter": append(append([]byte(nil), good...), "&refund_fee=88.88&out_biz_no=R9"...),
		"parameter given twice":    append(append([]byte(nil), good...), "&total_amount=0.01"...),
		"bad escape":               append(append([]byte(nil), good...), "&x=%zz"...),
		// The signature covers decoded values: one made over the encoded text is wrong.
		"signed over encoded text": func() []byte {
			p := with(payNotify(), "subject", "a b")
			v := url.Values{}
			for k, s := range p {
				v.Set(k, s)
			}
			v.Set("sign", plainSign(keys.alipay, strings.Replace(plainContent(p, false), "subject=a b", "subject=a+b", 1)))
			return []byte(v.Encode())
		}(),
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := parse(t, body)
			if code := ordercore.ErrorCode(err); code != ordercore.EInvalidSignature {
				t.Errorf("code = %q (%v), want %q", code, err, ordercore.EInvalidSignature)
			}
		})
	}
}

func TestNotificationMerchant(t *testing.T) {
	t.Parallel()
	tests := map[string]map[string]string{
		"another app":    with(payNotify(), "app_id", "2021999999999999"),
		"no app":         with(payNotify(), "app_id", ""),
		"another seller": with(payNotify(), "seller_id", "2088999999999999"),
		"no seller":      with(payNotify(), "seller_id", ""),
	}
	for name, params := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := parse(t, signNotify(testKeys().alipay, params))
			if code := ordercore.ErrorCode(err); code != ordercore.EMerchantMismatch {
				t.Errorf("code = %q (%v), want %q", code, err, ordercore.EMerchantMismatch)
			}
		})
	}

	// Without a configured seller, seller_id is not checked.
	keys := testKeys()
	c, err := New(Config{AppID: testAppID, PrivateKey: keys.merchant, AlipayPublicKey: &keys.alipay.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ParseNotification(nil, signNotify(keys.alipay, with(payNotify(), "seller_id", "2088999999999999")), time.Time{}); err != nil {
		t.Errorf("no SellerID configured: %v", err)
	}
}

func TestNotificationMalformed(t *testing.T) {
	t.Parallel()
	tests := map[string]map[string]string{
		"no notify_id":         with(payNotify(), "notify_id", ""),
		"no out_trade_no":      with(payNotify(), "out_trade_no", ""),
		"no trade_no":          with(payNotify(), "trade_no", ""),
		"no trade_status":      with(payNotify(), "trade_status", ""),
		"unknown trade_status": with(payNotify(), "trade_status", "TRADE_PENDING"),
		"no total_amount":      with(payNotify(), "total_amount", ""),
		"amount with 3 places": with(payNotify(), "total_amount", "88.888"),
		"negative amount":      with(payNotify(), "total_amount", "-88.88"),
		"float amount":         with(payNotify(), "total_amount", "8.888e1"),
		"bad gmt_payment":      with(payNotify(), "gmt_payment", "2015-04-27T15:45:58Z"),
		"refund, no out_biz":   with(payNotify(), "refund_fee", "1.00", "gmt_refund", "2015-04-28 10:00:00"),
		"refund, no fee":       with(payNotify(), "out_biz_no", "R1", "gmt_refund", "2015-04-28 10:00:00"),
		"refund, bad fee":      with(payNotify(), "out_biz_no", "R1", "refund_fee", "1.2.3"),
		"refund, bad time":     with(payNotify(), "out_biz_no", "R1", "refund_fee", "1.00", "gmt_refund", "yesterday"),
	}
	for name, params := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := parse(t, signNotify(testKeys().alipay, params))
			if code := ordercore.ErrorCode(err); code != ordercore.EMalformedNotification {
				t.Errorf("code = %q (%v), want %q", code, err, ordercore.EMalformedNotification)
			}
		})
	}
}

// Values travel form-encoded ('+' or %20 for a space, %2B for '+', UTF-8 bytes escaped)
// and are signed decoded: both encodings of a space, a literal '+' and Chinese text must
// come out as Alipay signed them.
func TestNotificationEncoding(t *testing.T) {
	t.Parallel()
	params := with(payNotify(),
		"out_trade_no", "P 1+2/中文=&x",
		"subject", "茶具 Tea+Cups & more=100%",
		"body", "a  b\t中",
	)
	want := &ordercore.ChannelPayment{
		OutTradeNo: "P 1+2/中文=&x",
		TxnID:      "2015042721001004330000121536",
		Status:     ordercore.PaymentSucceeded,
		Amount:     ordercore.Money{Amount: 8888, Currency: "CNY"},
		PaidAt:     time.Date(2015, 4, 27, 7, 45, 58, 0, time.UTC),
	}
	plus := signNotify(testKeys().alipay, params) // url.Values writes a space as '+'
	pct := []byte(strings.ReplaceAll(string(plus), "+", "%20"))
	for name, body := range map[string][]byte{"plus for space": plus, "%20 for space": pct} {
		got, err := parse(t, body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(want, got.Payment); diff != "" {
			t.Errorf("%s: payment (-want +got):\n%s", name, diff)
		}
	}
}
