package wechat

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
)

// notifyNow is the receiver's clock in notification tests.
var notifyNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// A paid Native trade, as the decrypted resource of TRANSACTION.SUCCESS documents it.
const paidTransaction = `{"mchid":"1900000100","appid":"wxd678efh567hg6787","out_trade_no":"PAY-20250301-0001",` +
	`"transaction_id":"4200002345202503011234567890","trade_type":"NATIVE","trade_state":"SUCCESS",` +
	`"trade_state_desc":"支付成功","bank_type":"CMC","attach":"","success_time":"2025-03-01T19:59:30+08:00",` +
	`"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},` +
	`"amount":{"total":1999,"payer_total":1999,"currency":"CNY","payer_currency":"CNY"}}`

// A successful refund, as the decrypted resource of REFUND.SUCCESS documents it: no appid,
// no currency.
const refundedResource = `{"mchid":"1900000100","out_trade_no":"PAY-20250301-0001",` +
	`"transaction_id":"4200002345202503011234567890","out_refund_no":"RF-0001",` +
	`"refund_id":"50000000382019052709732678859","refund_status":"SUCCESS",` +
	`"success_time":"2025-03-02T10:00:00+08:00","user_received_account":"招商银行信用卡0403",` +
	`"amount":{"total":1999,"refund":500,"payer_total":1999,"payer_refund":500}}`

// notice describes one notification to build; zero fields take valid defaults.
type notice struct {
	ts        time.Time
	nonce     string
	serial    string
	signer    *rsa.PrivateKey
	id        string
	eventType string
	plain     string // the resource's plaintext
	apiKey    []byte // encrypts the resource
	gcmNonce  string
	envNonce  string // the nonce the envelope announces, when not gcmNonce
	aad       string
	noAAD     bool // seal with an empty associated_data (legal) instead of the default
	algorithm string
	// envelope replaces the whole JSON body when set (it is still signed).
	envelope string
	// flipCiphertext changes one byte of the sealed resource before signing.
	flipCiphertext bool
}

// build encrypts and signs a notification the way WeChat Pay does, from the published
// algorithms only: AES-256-GCM sealing ciphertext||tag in base64, then SHA256withRSA
// (PKCS #1 v1.5) over "timestamp\nnonce\nbody\n".
func (n notice) build(t *testing.T) (http.Header, []byte) {
	t.Helper()
	k := keys()
	if n.ts.IsZero() {
		n.ts = notifyNow
	}
	n.nonce = or(n.nonce, "fdasflkja484w")
	n.serial = or(n.serial, serialA)
	if n.signer == nil {
		n.signer = k.platformA
	}
	n.id = or(n.id, "EV-018f2b3c-0001")
	n.eventType = or(n.eventType, "TRANSACTION.SUCCESS")
	n.plain = or(n.plain, paidTransaction)
	if n.apiKey == nil {
		n.apiKey = testAPIv3Key
	}
	n.gcmNonce = or(n.gcmNonce, "fdasfl1kja48")
	if !n.noAAD {
		n.aad = or(n.aad, "transaction")
	}
	n.envNonce = or(n.envNonce, n.gcmNonce)
	n.algorithm = or(n.algorithm, "AEAD_AES_256_GCM")

	block, err := aes.NewCipher(n.apiKey)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	sealed := gcm.Seal(nil, []byte(n.gcmNonce), []byte(n.plain), []byte(n.aad))
	if n.flipCiphertext {
		sealed[0] ^= 0x01
	}
	body := n.envelope
	if body == "" {
		env := map[string]any{
			"id":            n.id,
			"create_time":   "2025-03-01T20:00:00+08:00",
			"event_type":    n.eventType,
			"resource_type": "encrypt-resource",
			"summary":       "支付成功",
			"resource": map[string]string{
				"algorithm":       n.algorithm,
				"ciphertext":      base64.StdEncoding.EncodeToString(sealed),
				"associated_data": n.aad,
				"nonce":           n.envNonce,
				"original_type":   "transaction",
			},
		}
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		body = string(b)
	}
	ts := strconv.FormatInt(n.ts.Unix(), 10)
	h := http.Header{}
	h.Set("Wechatpay-Timestamp", ts)
	h.Set("Wechatpay-Nonce", n.nonce)
	h.Set("Wechatpay-Serial", n.serial)
	h.Set("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
	h.Set("Wechatpay-Signature", rsaSign(t, n.signer, ts+"\n"+n.nonce+"\n"+body+"\n"))
	return h, []byte(body)
}

// rsaSign is SHA256withRSA (PKCS #1 v1.5) in base64, straight from crypto/rsa.
func rsaSign(t *testing.T, key *rsa.PrivateKey, msg string) string {
	t.Helper()
	digest := sha256.Sum256([]byte(msg))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func TestParsePaymentNotification(t *testing.T) {
	t.Parallel()
	c := newChannel(t, testConfig())
	h, body := notice{}.build(t)
	got, err := c.ParseNotification(h, body, notifyNow)
	if err != nil {
		t.Fatalf("ParseNotification: %v", err)
	}
	want := ordercore.Notification{
		EventID: "EV-018f2b3c-0001",
		Payment: &ordercore.ChannelPayment{
			OutTradeNo: "PAY-20250301-0001",
			TxnID:      "4200002345202503011234567890",
			Status:     ordercore.PaymentSucceeded,
			Amount:     ordercore.Money{Amount: 1999, Currency: "CNY"},
			PaidAt:     time.Date(2025, 3, 1, 11, 59, 30, 0, time.UTC),
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("notification (-want +got):\n%s", diff)
	}
}

// The message format is checked against a signature computed here by hand, field by
// field, and against near misses a wrong format would accept.
func TestNotificationMessageFormat(t *testing.T) {
	t.Parallel()
	c := newChannel(t, testConfig())
	_, body := notice{}.build(t)
	const ts, nonce = "1740830400", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS" // 1740830400 is notifyNow
	messages := []struct {
		msg string
		ok  bool
	}{
		{ts + "\n" + nonce + "\n" + string(body) + "\n", true},
		{ts + "\n" + nonce + "\n" + string(body), false},                   // no final newline
		{ts + "\n" + nonce + "\n" + string(body) + "\r\n", false},          // CRLF
		{nonce + "\n" + ts + "\n" + string(body) + "\n", false},            // fields swapped
		{ts + "\n" + nonce + "\n\n" + string(body) + "\n", false},          // extra newline
		{"POST\n" + ts + "\n" + nonce + "\n" + string(body) + "\n", false}, // request-style
	}
	for i, m := range messages {
		digest := sha256.Sum256([]byte(m.msg))
		raw, err := rsa.SignPKCS1v15(rand.Reader, keys().platformA, crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{
			"Wechatpay-Timestamp": {ts},
			"Wechatpay-Nonce":     {nonce},
			"Wechatpay-Serial":    {serialA},
			"Wechatpay-Signature": {base64.StdEncoding.EncodeToString(raw)},
		}
		_, err = c.ParseNotification(h, body, notifyNow)
		if m.ok && err != nil {
			t.Errorf("message %d: ParseNotification: %v, want it accepted", i, err)
		}
		if !m.ok && ordercore.ErrorCode(err) != ordercore.EInvalidSignature {
			t.Errorf("message %d %q: error %v, want %s", i, m.msg[:20], err, ordercore.EInvalidSignature)
		}
	}
}

func TestParseNotificationRejects(t *testing.T) {
	t.Parallel()
	k := keys()
	otherAPIKey := []byte("fedcba9876543210fedcba9876543210")
	tests := []struct {
		name   string
		n      notice
		tamper func(h http.Header, body []byte) []byte // after signing
		want   string
	}{
		{name: "no timestamp", tamper: del("Wechatpay-Timestamp"), want: ordercore.EInvalidSignature},
		{name: "no nonce", tamper: del("Wechatpay-Nonce"), want: ordercore.EInvalidSignature},
		{name: "no signature", tamper: del("Wechatpay-Signature"), want: ordercore.EInvalidSignature},
		{name: "no serial", tamper: del("Wechatpay-Serial"), want: ordercore.EInvalidSignature},
		{
			name: "signature probe",
			tamper: func(h http.Header, body []byte) []byte {
				h.Set("Wechatpay-Signature", "WECHATPAY/SIGNTEST/"+h.Get("Wechatpay-Signature"))
				return body
			},
			want: ordercore.EInvalidSignature,
		},
		// A probe is rejected as a probe even when it is also stale or of an unknown serial.
		{
			name: "stale probe",
			n:    notice{ts: notifyNow.Add(-time.Hour), serial: "PUB_KEY_ID_PROBE"},
			tamper: func(h http.Header, body []byte) []byte {
				h.Set("Wechatpay-Signature", "WECHATPAY/SIGNTEST/AAAA")
				return body
			},
			want: ordercore.EInvalidSignature,
		},
		{name: "301 s in the past", n: notice{ts: notifyNow.Add(-301 * time.Second)}, want: ordercore.EStaleNotification},
		{name: "301 s in the future", n: notice{ts: notifyNow.Add(301 * time.Second)}, want: ordercore.EStaleNotification},
		{
			name: "timestamp not a number",
			tamper: func(h http.Header, body []byte) []byte {
				h.Set("Wechatpay-Timestamp", "2025-03-01T12:00:00Z")
				return body
			},
			want: ordercore.EInvalidSignature,
		},
		{name: "unknown serial", n: notice{serial: "PUB_KEY_ID_UNKNOWN"}, want: ordercore.EInvalidSignature},
		{name: "signed by another key", n: notice{signer: k.stranger}, want: ordercore.EInvalidSignature},
		{name: "signed by key B under serial A", n: notice{signer: k.platformB, serial: serialA}, want: ordercore.EInvalidSignature},
		{
			name: "signature not base64",
			tamper: func(h http.Header, body []byte) []byte {
				h.Set("Wechatpay-Signature", "not*base64")
				return body
			},
			want: ordercore.EInvalidSignature,
		},
		{
			name: "tampered body",
			tamper: func(h http.Header, body []byte) []byte {
				return []byte(strings.Replace(string(body), "TRANSACTION.SUCCESS", "TRANSACTION.SUCCESS ", 1))
			},
			want: ordercore.EInvalidSignature,
		},
		{name: "tampered ciphertext", n: notice{flipCiphertext: true}, want: ordercore.EInvalidSignature},
		{name: "encrypted with another APIv3 key", n: notice{apiKey: otherAPIKey}, want: ordercore.EInvalidSignature},
		{
			name: "another merchant",
			n:    notice{plain: strings.Replace(paidTransaction, `"mchid":"1900000100"`, `"mchid":"1900000999"`, 1)},
			want: ordercore.EMerchantMismatch,
		},
		{
			name: "another app",
			n:    notice{plain: strings.Replace(paidTransaction, `"appid":"wxd678efh567hg6787"`, `"appid":"wx0000000000000000"`, 1)},
			want: ordercore.EMerchantMismatch,
		},
		{
			name: "refund of another merchant",
			n: notice{eventType: "REFUND.SUCCESS", aad: "refund",
				plain: strings.Replace(refundedResource, `"mchid":"1900000100"`, `"mchid":"1900000999"`, 1)},
			want: ordercore.EMerchantMismatch,
		},
		{name: "plaintext not JSON", n: notice{plain: `{"mchid":"1900000100",`}, want: ordercore.EMalformedNotification},
		{
			name: "unknown trade state",
			n:    notice{plain: strings.Replace(paidTransaction, `"trade_state":"SUCCESS"`, `"trade_state":"MOONWALK"`, 1)},
			want: ordercore.EMalformedNotification,
		},
		{
			name: "paid without amount",
			n:    notice{plain: strings.Replace(paidTransaction, `"amount":{"total":1999,`, `"amount":{`, 1)},
			want: ordercore.EMalformedNotification,
		},
		{name: "envelope not JSON", n: notice{envelope: `{"id":"EV-1",`}, want: ordercore.EMalformedNotification},
		{name: "envelope without resource", n: notice{envelope: `{"id":"EV-1","event_type":"TRANSACTION.SUCCESS"}`}, want: ordercore.EMalformedNotification},
		{name: "unknown algorithm", n: notice{algorithm: "AEAD_SM4_GCM"}, want: ordercore.EMalformedNotification},
		{name: "nonce of 16 bytes", n: notice{envNonce: "0123456789abcdef"}, want: ordercore.EMalformedNotification},
		{name: "unknown event type", n: notice{eventType: "MCHTRANSFER.BILL.FINISHED"}, want: ordercore.EMalformedNotification},
	}
	c := newChannel(t, testConfig())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, body := tt.n.build(t)
			if tt.tamper != nil {
				body = tt.tamper(h, body)
			}
			checkRejected(t, c, h, body, tt.want)
		})
	}
}

func checkRejected(t *testing.T, c *Channel, h http.Header, body []byte, want string) {
	t.Helper()
	got, err := c.ParseNotification(h, body, notifyNow)
	var e *ordercore.Error
	if !errors.As(err, &e) || e.Code != want {
		t.Fatalf("ParseNotification error = %v, want *ordercore.Error %s", err, want)
	}
	if got.Payment != nil || got.Refund != nil || got.EventID != "" {
		t.Errorf("a rejected notification returned content: %+v", got)
	}
}

func del(name string) func(http.Header, []byte) []byte {
	return func(h http.Header, body []byte) []byte {
		h.Del(name)
		return body
	}
}

func TestNotificationWindowEdges(t *testing.T) {
	t.Parallel()
	c := newChannel(t, testConfig())
	for _, skew := range []time.Duration{-300 * time.Second, 300 * time.Second, 0} {
		h, body := notice{ts: notifyNow.Add(skew)}.build(t)
		if _, err := c.ParseNotification(h, body, notifyNow); err != nil {
			t.Errorf("skew %s: %v, want it accepted (within the window)", skew, err)
		}
	}
	cfg := testConfig()
	cfg.Window = time.Minute
	narrow := newChannel(t, cfg)
	h, body := notice{ts: notifyNow.Add(-61 * time.Second)}.build(t)
	if _, err := narrow.ParseNotification(h, body, notifyNow); ordercore.ErrorCode(err) != ordercore.EStaleNotification {
		t.Errorf("61 s with a 1 min window: %v, want %s", err, ordercore.EStaleNotification)
	}
}

// During a rotation both platform keys are configured, and WeChat Pay may sign with
// either.
func TestNotificationKeyRotation(t *testing.T) {
	t.Parallel()
	k := keys()
	c := newChannel(t, testConfig())
	for _, n := range []notice{{signer: k.platformA, serial: serialA}, {signer: k.platformB, serial: serialB}} {
		h, body := n.build(t)
		got, err := c.ParseNotification(h, body, notifyNow)
		if err != nil {
			t.Errorf("signed under %s: %v", n.serial, err)
			continue
		}
		if got.Payment == nil || got.Payment.Status != ordercore.PaymentSucceeded {
			t.Errorf("signed under %s: %+v, want a succeeded payment", n.serial, got)
		}
	}
	// Once A is retired, only B passes.
	cfg := testConfig()
	delete(cfg.PlatformKeys, serialA)
	retired := newChannel(t, cfg)
	h, body := notice{signer: k.platformA, serial: serialA}.build(t)
	if _, err := retired.ParseNotification(h, body, notifyNow); ordercore.ErrorCode(err) != ordercore.EInvalidSignature {
		t.Errorf("signed by a retired key: %v, want %s", err, ordercore.EInvalidSignature)
	}
}

func TestParseRefundNotification(t *testing.T) {
	t.Parallel()
	c := newChannel(t, testConfig())
	refund := func(status ordercore.RefundStatus) *ordercore.ChannelRefund {
		return &ordercore.ChannelRefund{
			OutTradeNo:  "PAY-20250301-0001",
			OutRefundNo: "RF-0001",
			RefundID:    "50000000382019052709732678859",
			Status:      status,
			Amount:      ordercore.Money{Amount: 500, Currency: "CNY"},
		}
	}
	tests := []struct {
		eventType, refundStatus string
		want                    ordercore.RefundStatus
	}{
		{"REFUND.SUCCESS", "SUCCESS", ordercore.RefundSucceeded},
		{"REFUND.ABNORMAL", "ABNORMAL", ordercore.RefundAbnormal},
		{"REFUND.CLOSED", "CLOSED", ordercore.RefundFailed},
	}
	for _, tt := range tests {
		plain := strings.Replace(refundedResource, `"refund_status":"SUCCESS"`, fmt.Sprintf(`"refund_status":%q`, tt.refundStatus), 1)
		h, body := notice{id: "EV-R-" + tt.refundStatus, eventType: tt.eventType, aad: "refund", plain: plain}.build(t)
		got, err := c.ParseNotification(h, body, notifyNow)
		if err != nil {
			t.Errorf("%s: %v", tt.eventType, err)
			continue
		}
		want := ordercore.Notification{EventID: "EV-R-" + tt.refundStatus, Refund: refund(tt.want)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.eventType, diff)
		}
	}
}

// An empty associated_data is legal: the AAD is then empty, not absent.
func TestNotificationEmptyAAD(t *testing.T) {
	t.Parallel()
	c := newChannel(t, testConfig())
	h, body := notice{noAAD: true}.build(t)
	if !strings.Contains(string(body), `"associated_data":""`) {
		t.Fatalf("the test notification has an associated_data: %s", body)
	}
	if _, err := c.ParseNotification(h, body, notifyNow); err != nil {
		t.Errorf("empty associated_data: %v", err)
	}
}

// or returns v, or def when v is the zero value.
func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
