package stripe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"ordercore"
)

// signatureHeaderBytesMax bounds the Stripe-Signature header we parse. Stripe sends a
// timestamp and one v1 signature per active secret (two during a rotation), about 80
// bytes each.
const signatureHeaderBytesMax = 4096

// Event types that carry a PaymentIntent or a Refund in data.object.
var (
	paymentEvents = map[string]bool{
		"payment_intent.succeeded":      true,
		"payment_intent.payment_failed": true,
		"payment_intent.canceled":       true,
		"payment_intent.processing":     true,
	}
	// charge.refund.updated, sent for refunds of charges on some payment methods, carries
	// the Refund like the refund.* events (sent for every refund since API version
	// 2024-10-28). charge.refunded is deliberately absent: its data.object is the Charge,
	// which does not say which of its refunds happened (Stripe's advice is to listen to
	// refund.created instead), so it is acked and ignored like any other type.
	refundEvents = map[string]bool{
		"refund.created":        true,
		"refund.updated":        true,
		"refund.failed":         true,
		"charge.refund.updated": true,
	}
)

// ParseNotification authenticates a Stripe webhook event and translates it.
//
// The Stripe-Signature header (t=<unix seconds>,v1=<hex>[,v1=<hex>...]) is checked over the
// raw body before the body is parsed: HMAC-SHA256 keyed with each active secret over
// "<t>.<body>", compared in constant time; any v1 matching any secret is accepted, which is
// how a secret rotation looks (Stripe signs with the old and the new secret for a while).
// Other schemes (v0) are ignored. A missing, unparsable or unmatched header is
// EInvalidSignature; a timestamp more than the tolerance away from now, in either
// direction, is EStaleNotification (checked after the signature, so that a forgery is
// always reported as one).
//
// An authentic event in the other mode (a test event at a live endpoint or the reverse)
// or about a connected account is EMerchantMismatch: it is not about this account's money.
//
// Event types this channel does not act on (payment_intent.created, charge.refunded, and
// the hundreds of others an endpoint may be subscribed to) return a Notification with only
// EventID set, neither Payment nor Refund: the caller acks them and does nothing. Refusing
// them would make Stripe retry them for three days and then disable the endpoint.
func (c *Channel) ParseNotification(h http.Header, body []byte, now time.Time) (ordercore.Notification, error) {
	if err := c.verify(h.Values("Stripe-Signature"), body, now); err != nil {
		return ordercore.Notification{}, err
	}
	var ev struct {
		ID       string `json:"id"`
		Object   string `json:"object"`
		Type     string `json:"type"`
		Created  int64  `json:"created"`
		Livemode *bool  `json:"livemode"`
		Account  string `json:"account"`
		Data     struct {
			Object json.RawMessage `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "event is not valid JSON")
	}
	if ev.Object != "event" || ev.ID == "" || ev.Type == "" || ev.Livemode == nil {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "not a Stripe event: object, id, type or livemode missing")
	}
	if *ev.Livemode != c.livemode {
		// The key decides which money this channel handles; a test event must never mark
		// a live order paid.
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMerchantMismatch, "event %s has livemode %t, the channel's key has %t", ev.ID, *ev.Livemode, c.livemode)
	}
	if ev.Account != "" {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMerchantMismatch, "event %s is about connected account %s", ev.ID, ev.Account)
	}
	n := ordercore.Notification{EventID: ev.ID}
	switch {
	case paymentEvents[ev.Type]:
		p, err := paymentOf(ev.ID, ev.Data.Object, time.Unix(ev.Created, 0).UTC())
		if err != nil {
			return ordercore.Notification{}, err
		}
		n.Payment = &p
	case refundEvents[ev.Type]:
		r, err := refundOf(ev.ID, ev.Data.Object)
		if err != nil {
			return ordercore.Notification{}, err
		}
		n.Refund = &r
	}
	return n, nil
}

// paymentOf reads the PaymentIntent snapshot of an event. created, the event's time, is
// the time of payment for payment_intent.succeeded.
func paymentOf(eventID string, raw json.RawMessage, created time.Time) (ordercore.ChannelPayment, error) {
	var pi paymentIntent
	if err := json.Unmarshal(raw, &pi); err != nil || pi.Object != "payment_intent" || pi.ID == "" {
		return ordercore.ChannelPayment{}, ordercore.Errorf(ordercore.EMalformedNotification, "event %s does not carry a payment intent", eventID)
	}
	if pi.Metadata[metaOutTradeNo] == "" {
		return ordercore.ChannelPayment{}, ordercore.Errorf(ordercore.EMalformedNotification, "payment intent %s of event %s has no %s metadata", pi.ID, eventID, metaOutTradeNo)
	}
	p, err := channelPayment(&pi, created)
	if err != nil {
		return ordercore.ChannelPayment{}, ordercore.Errorf(ordercore.EMalformedNotification, "event %s: %v", eventID, err)
	}
	return p, nil
}

// refundOf reads the Refund snapshot of an event.
func refundOf(eventID string, raw json.RawMessage) (ordercore.ChannelRefund, error) {
	var r refund
	if err := json.Unmarshal(raw, &r); err != nil || r.Object != "refund" || r.ID == "" {
		return ordercore.ChannelRefund{}, ordercore.Errorf(ordercore.EMalformedNotification, "event %s does not carry a refund", eventID)
	}
	if r.Metadata[metaOutRefundNo] == "" {
		return ordercore.ChannelRefund{}, ordercore.Errorf(ordercore.EMalformedNotification, "refund %s of event %s has no %s metadata", r.ID, eventID, metaOutRefundNo)
	}
	cr, err := channelRefund(&r, "")
	if err != nil {
		return ordercore.ChannelRefund{}, ordercore.Errorf(ordercore.EMalformedNotification, "event %s: %v", eventID, err)
	}
	return cr, nil
}

// verify checks the Stripe-Signature header values against body and now.
func (c *Channel) verify(values []string, body []byte, now time.Time) error {
	if len(values) == 0 || values[0] == "" {
		return ordercore.Errorf(ordercore.EInvalidSignature, "missing Stripe-Signature header")
	}
	if len(values) > 1 || len(values[0]) > signatureHeaderBytesMax {
		return ordercore.Errorf(ordercore.EInvalidSignature, "malformed Stripe-Signature header")
	}
	ts, sigs, ok := parseSignatureHeader(values[0])
	if !ok {
		return ordercore.Errorf(ordercore.EInvalidSignature, "malformed Stripe-Signature header")
	}
	if len(sigs) == 0 {
		return ordercore.Errorf(ordercore.EInvalidSignature, "no v1 signature in Stripe-Signature header")
	}
	if !c.signedByAny(ts, body, sigs) {
		return ordercore.Errorf(ordercore.EInvalidSignature, "no signature matches an active webhook secret")
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ordercore.Errorf(ordercore.EInvalidSignature, "malformed Stripe-Signature timestamp")
	}
	// Compared in seconds so that a huge timestamp cannot overflow time.Duration.
	if d := now.Unix() - secs; d > int64(c.tolerance/time.Second) || -d > int64(c.tolerance/time.Second) {
		return ordercore.Errorf(ordercore.EStaleNotification, "signed %d s away from now, over the %v tolerance", d, c.tolerance)
	}
	return nil
}

// signedByAny reports whether any of sigs is the HMAC of ts.body under any active secret.
// Every pair is compared, so the time taken does not tell which one matched.
func (c *Channel) signedByAny(ts string, body []byte, sigs [][]byte) bool {
	ok := false
	for _, secret := range c.secrets {
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(ts))
		mac.Write([]byte{'.'})
		mac.Write(body)
		want := mac.Sum(nil)
		for _, s := range sigs {
			if hmac.Equal(want, s) {
				ok = true
			}
		}
	}
	return ok
}

// parseSignatureHeader splits "t=...,v1=...,v1=...,v0=..." into the timestamp, exactly as
// sent (it is part of the signed message), and the decoded v1 signatures. It fails on a
// pair without '=', on a missing, repeated or non-numeric t; v1 values that are not
// 32-byte hex and unknown schemes are skipped, as Stripe's libraries do.
func parseSignatureHeader(h string) (ts string, sigs [][]byte, ok bool) {
	for _, pair := range strings.Split(h, ",") {
		k, v, found := strings.Cut(strings.TrimSpace(pair), "=")
		if !found {
			return "", nil, false
		}
		switch k {
		case "t":
			if ts != "" || !digits(v) {
				return "", nil, false
			}
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil && len(b) == sha256.Size {
				sigs = append(sigs, b)
			}
		}
	}
	return ts, sigs, ts != ""
}

// digits reports whether s is 1 to 18 ASCII digits: a Unix time in seconds, small
// enough to parse into an int64.
func digits(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
