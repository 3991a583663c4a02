package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"ordercore/webhook"
)

const secret = "4f1c6a0e9b2d4c7f8a3e5b1d0c9f7e6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e"

var (
	now  = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	body = []byte(`{"specversion":"1.0","id":"e1","type":"ordercore.order.paid","data":{"amount":1000}}`)
)

// TestSignMatchesTheScheme: the header is what a receiver in any language computes from
// the documented scheme: HMAC-SHA256(secret, "<t>." + body), hex, as t=...,v1=....
func TestSignMatchesTheScheme(t *testing.T) {
	t.Parallel()
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(now.Unix(), 10) + "." + string(body)))
	want := "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=" + hex.EncodeToString(m.Sum(nil))
	if got := webhook.Sign(secret, now, body); got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	good := webhook.Sign(secret, now, body)
	v1 := strings.SplitN(good, ",", 2)[1]
	tampered := append([]byte(nil), body...)
	tampered[len(tampered)-3] = '9' // the amount
	tests := []struct {
		name   string
		secret string
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"a fresh, authentic delivery", secret, good, body, now, nil},
		{"within the tolerance, late", secret, good, body, now.Add(webhook.DefaultTolerance), nil},
		{"within the tolerance, early (clock skew)", secret, good, body, now.Add(-webhook.DefaultTolerance), nil},
		{"among other schemes and signatures", secret, "v0=zz," + good + ",v1=" + strings.Repeat("ab", 32) + ",v9=x", body, now, nil},
		{"a tampered body", secret, good, tampered, now, webhook.ErrInvalidSignature},
		{"an empty body", secret, good, nil, now, webhook.ErrInvalidSignature},
		{"the wrong secret", strings.Repeat("0", 64), good, body, now, webhook.ErrInvalidSignature},
		{"an old timestamp", secret, good, body, now.Add(webhook.DefaultTolerance + time.Second), webhook.ErrStale},
		{"a timestamp from the future", secret, good, body, now.Add(-webhook.DefaultTolerance - time.Second), webhook.ErrStale},
		{"a replay with a fresh timestamp and the old signature", secret, "t=" + strconv.FormatInt(now.Unix()+60, 10) + "," + v1, body, now, webhook.ErrInvalidSignature},
		{"no header", secret, "", body, now, webhook.ErrNoSignature},
		{"no timestamp", secret, v1, body, now, webhook.ErrInvalidSignature},
		{"two timestamps", secret, "t=1," + good, body, now, webhook.ErrInvalidSignature},
		{"no v1", secret, "t=" + strconv.FormatInt(now.Unix(), 10), body, now, webhook.ErrInvalidSignature},
		{"a v1 that is not hex", secret, "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=nothex", body, now, webhook.ErrInvalidSignature},
		{"a short v1", secret, "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=abcd", body, now, webhook.ErrInvalidSignature},
		{"a garbled timestamp", secret, "t=soon," + v1, body, now, webhook.ErrInvalidSignature},
		{"a part without =", secret, good + ",junk", body, now, webhook.ErrInvalidSignature},
		{"a huge header", secret, good + strings.Repeat(",v9=x", 1000), body, now, webhook.ErrInvalidSignature},
	}
	for _, tt := range tests {
		err := webhook.Verify(tt.secret, tt.header, tt.body, webhook.DefaultTolerance, tt.now)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
		}
	}
}

// FuzzVerify: no header, however forged, passes unless it carries the real signature of
// the body at its timestamp, and none panics.
func FuzzVerify(f *testing.F) {
	f.Add(webhook.Sign(secret, now, body), []byte("x"))
	f.Add("t=1,v1=00", body)
	f.Add("v1=00,t="+strconv.FormatInt(now.Unix(), 10), body)
	f.Fuzz(func(t *testing.T, header string, b []byte) {
		if webhook.Verify(secret, header, b, webhook.DefaultTolerance, now) != nil {
			return
		}
		var ts int64
		for part := range strings.SplitSeq(header, ",") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(part), "t="); ok {
				ts, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		real := strings.SplitN(webhook.Sign(secret, time.Unix(ts, 0), b), ",", 2)[1]
		if !strings.Contains(strings.ToLower(header), real[len("v1="):]) {
			t.Fatalf("forged header %q accepted for %q", header, b)
		}
	})
}
