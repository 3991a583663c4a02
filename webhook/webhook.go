// Package webhook is for programs that receive ordercore's webhooks: Verify checks a
// delivery's signature before its body is trusted, and Sign makes the header (ordercore's
// deliverer signs with it, and tests of a receiver can too).
//
// The scheme is Stripe's: the Ordercore-Signature header is "t=<unix seconds>,v1=<hex>",
// where the hex is HMAC-SHA256 keyed with the endpoint's secret (the 64-character string
// the API showed, used as it is, not hex-decoded) over the timestamp, a ".", and the raw
// body bytes. The timestamp is signed, so a captured delivery cannot be replayed later than
// the receiver's tolerance. Receivers should also deduplicate by Ordercore-Event-Id: a
// delivery is retried until it is answered 2xx, so one event may arrive more than once.
//
//	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
//	if err := webhook.Verify(secret, r.Header.Get(webhook.HeaderSignature), body, webhook.DefaultTolerance, time.Now()); err != nil {
//		http.Error(w, "bad signature", http.StatusUnauthorized)
//		return
//	}
//
// It imports only the standard library.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The headers of a delivery. Content-Type is application/json and the body is the event
// in its CloudEvents 1.0 JSON form.
const (
	HeaderSignature  = "Ordercore-Signature"
	HeaderEventID    = "Ordercore-Event-Id"
	HeaderDeliveryID = "Ordercore-Delivery-Id"
)

// DefaultTolerance is how far a signed timestamp may be from the receiver's clock: five
// minutes, as Stripe's libraries allow.
const DefaultTolerance = 5 * time.Minute

// scheme is the only signature scheme verified; others (a future v2) are ignored, so a
// sender may add a scheme before receivers know it.
const scheme = "v1"

// headerBytesMax bounds the header parsed: a sender has no reason to send more than a
// few signatures (one per secret during a rotation).
const headerBytesMax = 4096

// Verify errors; Verify wraps them with details, errors.Is finds them.
var (
	ErrNoSignature      = errors.New("webhook: no signature header")
	ErrInvalidSignature = errors.New("webhook: invalid signature")
	ErrStale            = errors.New("webhook: signature timestamp outside the tolerance")
)

// Sign returns the Ordercore-Signature header value for body sent at t, signed with
// secret.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + "," + scheme + "=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks header (the Ordercore-Signature value) against the raw body: some v1
// signature must be the HMAC of body under secret (compared in constant time), and the
// signed timestamp must be within tolerance of now. The signature is judged before the
// timestamp, so a forged header does not learn whether its timestamp would have passed.
func Verify(secret string, header string, body []byte, tolerance time.Duration, now time.Time) error {
	if header == "" {
		return ErrNoSignature
	}
	if len(header) > headerBytesMax {
		return fmt.Errorf("%w: header over %d bytes", ErrInvalidSignature, headerBytesMax)
	}
	ts, sigs, ok := parse(header)
	if !ok {
		return fmt.Errorf("%w: garbled header", ErrInvalidSignature)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: garbled timestamp", ErrInvalidSignature)
	}
	want := mac(secret, ts, body)
	matched := false
	for _, sig := range sigs {
		matched = hmac.Equal(sig, want) || matched
	}
	if !matched {
		return fmt.Errorf("%w: no v1 signature matches", ErrInvalidSignature)
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed %s from now, tolerance %s", ErrStale, d.Round(time.Second), tolerance)
	}
	return nil
}

// parse splits "t=...,v1=...,v1=..." into the timestamp and the decoded v1 signatures.
// Exactly one t and at least one v1 are required; other schemes are skipped.
func parse(header string) (string, [][]byte, bool) {
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return "", nil, false
		}
		switch k {
		case "t":
			if ts != "" {
				return "", nil, false
			}
			ts = v
		case scheme:
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return "", nil, false
			}
			sigs = append(sigs, sig)
		}
	}
	return ts, sigs, ts != "" && len(sigs) > 0
}
