package sim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"ordercore"
)

// signatureScheme is the only scheme verified; others (a future v2) are ignored, as
// Stripe does, so that the sender can add a scheme before receivers know it.
const signatureScheme = "v1"

// signatureHeaderBytesMax bounds the header parsed: a sender has no reason to send more
// than a few rotating signatures.
const signatureHeaderBytesMax = 4096

// Sign returns the Paysim-Signature header value for body sent at t, signed with secret.
func Sign(secret string, t time.Time, body []byte) string {
	return SignRotating([]string{secret}, t, body)
}

// SignRotating returns a header value with one v1 signature per secret: during a secret
// rotation the sender signs with the old and the new secret, so a receiver that knows
// either accepts the notification and the two can switch at different times.
func SignRotating(secrets []string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	var b strings.Builder
	b.WriteString("t=" + ts)
	for _, s := range secrets {
		b.WriteString("," + signatureScheme + "=" + hex.EncodeToString(mac(s, ts, body)))
	}
	return b.String()
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks header against the raw body: some v1 signature must be the HMAC of one of
// secrets, and the signed timestamp must be within tolerance of now. It reads nothing of
// the body, so that forged bytes are never parsed. The signature is judged before the
// timestamp: a forged header does not learn whether its timestamp would have passed.
func Verify(header string, body []byte, secrets []string, tolerance time.Duration, now time.Time) error {
	if header == "" {
		return ordercore.Errorf(ordercore.EInvalidSignature, "no %s header", HeaderSignature)
	}
	if len(header) > signatureHeaderBytesMax {
		return ordercore.Errorf(ordercore.EInvalidSignature, "%s header over %d bytes", HeaderSignature, signatureHeaderBytesMax)
	}
	ts, sigs, ok := parseSignature(header)
	if !ok {
		return ordercore.Errorf(ordercore.EInvalidSignature, "garbled %s header", HeaderSignature)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ordercore.Errorf(ordercore.EInvalidSignature, "garbled timestamp in %s", HeaderSignature)
	}
	if !matchAny(sigs, secrets, ts, body) {
		return ordercore.Errorf(ordercore.EInvalidSignature, "no signature matches")
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return ordercore.Errorf(ordercore.EStaleNotification, "signed %s from now, tolerance %s", d.Round(time.Second), tolerance)
	}
	return nil
}

// parseSignature splits "t=...,v1=...,v1=..." into the timestamp and the decoded v1
// signatures. Exactly one t and at least one v1 are required.
func parseSignature(header string) (string, [][]byte, bool) {
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
		case signatureScheme:
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return "", nil, false
			}
			sigs = append(sigs, sig)
		}
	}
	return ts, sigs, ts != "" && len(sigs) > 0
}

func matchAny(sigs [][]byte, secrets []string, ts string, body []byte) bool {
	for _, s := range secrets {
		want := mac(s, ts, body)
		for _, sig := range sigs {
			if hmac.Equal(sig, want) {
				return true
			}
		}
	}
	return false
}
