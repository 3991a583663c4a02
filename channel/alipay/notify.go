package alipay

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"ordercore"
)

// ParseNotification authenticates an asynchronous notification (a form-urlencoded POST
// body) and reads it. The order of the checks is the point:
//
//  1. the body is split into parameters only as far as the signed string needs, and the
//     RSA2 signature is verified with the Alipay public key: a missing or wrong sign is
//     EInvalidSignature, and so is a body that cannot be split unambiguously;
//  2. only then app_id (and seller_id, when Config.SellerID is set) are compared with
//     ours: another application's authentic notification is EMerchantMismatch;
//  3. only then are fields read; an authentic notification missing one we need is
//     EMalformedNotification.
//
// Alipay puts no timestamp under the signature that bounds a replay (notify_time is the
// send time of each retry, over about 25 hours), so there is no stale check: replays are
// absorbed by deduplicating on notify_id and by the state machines, which do not move
// backwards. h and now are therefore unused.
//
// Alipay sends refunds to the payment's notify_url: a notification carrying out_biz_no,
// gmt_refund or a non-zero refund_fee is a refund notification (see fieldReader.refund).
func (c *Channel) ParseNotification(_ http.Header, body []byte, _ time.Time) (ordercore.Notification, error) {
	params, err := parseForm(body)
	if err != nil {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EInvalidSignature, "alipay notification: %s", err)
	}
	sig := params[paramSign]
	if sig == "" {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EInvalidSignature, "alipay notification: sign is missing")
	}
	if err := verifyRSA2(c.cfg.AlipayPublicKey, []byte(notifyContent(params)), sig); err != nil {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EInvalidSignature, "alipay notification: %s", err)
	}

	if params["app_id"] != c.cfg.AppID {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMerchantMismatch, "alipay notification: app_id %q is not ours", params["app_id"])
	}
	if c.cfg.SellerID != "" && params["seller_id"] != c.cfg.SellerID {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMerchantMismatch, "alipay notification: seller_id %q is not ours", params["seller_id"])
	}

	f := fields(params)
	n := ordercore.Notification{EventID: f.need("notify_id")}
	if f.isRefund() {
		n.Refund = f.refund()
	} else {
		n.Payment = f.payment()
	}
	if f.err != nil {
		return ordercore.Notification{}, f.err
	}
	return n, nil
}

// parseForm splits a form-urlencoded body into its parameters, decoding names and values
// ('+' is a space, %XX a byte). It refuses what cannot be read in exactly one way: an
// undecodable escape, or a parameter given twice, which would leave open which of the two
// the signature vouches for.
func parseForm(body []byte) (map[string]string, error) {
	params := make(map[string]string)
	for pair := range strings.SplitSeq(string(body), "&") {
		if pair == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return nil, fmt.Errorf("parameter name %q is not form-urlencoded", rawName)
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, fmt.Errorf("value of %q is not form-urlencoded", name)
		}
		if _, dup := params[name]; dup {
			return nil, fmt.Errorf("parameter %q is given twice", name)
		}
		params[name] = value
	}
	return params, nil
}

// fieldReader reads an authenticated notification and remembers the first field it could
// not read, so that the mapping reads as a list of fields.
type fieldReader struct {
	params map[string]string
	err    *ordercore.Error
}

func fields(params map[string]string) *fieldReader { return &fieldReader{params: params} }

func (f *fieldReader) fail(format string, args ...any) {
	if f.err == nil {
		f.err = ordercore.Errorf(ordercore.EMalformedNotification, "alipay notification: "+format, args...)
	}
}

// need returns a field that must be present.
func (f *fieldReader) need(name string) string {
	v := f.params[name]
	if v == "" {
		f.fail("%s is missing", name)
	}
	return v
}

// isRefund reports whether the notification is about a refund: it carries out_biz_no or
// gmt_refund, or a refund_fee other than zero. A zero refund_fee alone is not a refund: a
// payment notification that lists it as "0.00" must not be read as a refund and then
// refused as malformed for lack of out_biz_no, which Alipay would retry for a day.
func (f *fieldReader) isRefund() bool {
	if f.params["out_biz_no"] != "" || f.params["gmt_refund"] != "" {
		return true
	}
	fee := f.params["refund_fee"]
	if fee == "" {
		return false
	}
	m, err := parseYuan(fee)
	return err != nil || m.Amount != 0 // an unreadable fee is reported by refund()
}

func (f *fieldReader) amount(name string) ordercore.Money {
	s := f.need(name)
	if s == "" {
		return ordercore.Money{}
	}
	m, err := parseYuan(s)
	if err != nil {
		f.fail("%s: %s", name, err)
	}
	return m
}

func (f *fieldReader) time(name string) time.Time {
	s := f.params[name]
	if s == "" {
		return time.Time{}
	}
	t, err := parseTime(s)
	if err != nil {
		f.fail("%s: %s", name, err)
	}
	return t
}

// payment reads a trade status notification. gmt_payment is optional in Alipay's list of
// fields; PaidAt stays zero without it, and is read only for a paid trade.
func (f *fieldReader) payment() *ordercore.ChannelPayment {
	p := &ordercore.ChannelPayment{
		OutTradeNo: f.need("out_trade_no"),
		TxnID:      f.need("trade_no"),
		Amount:     f.amount("total_amount"),
	}
	s := f.need("trade_status")
	status, ok := tradeStatus(s)
	if s != "" && !ok {
		f.fail("unknown trade_status %q", s)
	}
	p.Status = status
	if status == ordercore.PaymentSucceeded {
		p.PaidAt = f.time("gmt_payment")
	}
	return p
}

// refund reads a refund notification: Alipay sends it to the payment's
// notify_url with the trade's fields plus out_biz_no (our out_request_no), refund_fee and
// gmt_refund. It is sent once the refund is made, so its status is succeeded.
//
// Alipay documents refund_fee as the trade's total refunded amount, not this refund's: the
// two agree for a single refund, but after several partial refunds Amount is the running
// total. The notification carries nothing else about the amount; a consumer that needs
// this refund's amount asks QueryRefund (refund_amount of out_request_no).
//
// A full refund also moves the trade to TRADE_CLOSED; because the refund fields are looked
// at first, such a notification is a refund, never a closed payment.
func (f *fieldReader) refund() *ordercore.ChannelRefund {
	r := &ordercore.ChannelRefund{
		OutTradeNo:  f.need("out_trade_no"),
		OutRefundNo: f.need("out_biz_no"),
		Status:      ordercore.RefundSucceeded,
		Amount:      f.amount("refund_fee"),
	}
	f.time("gmt_refund") // not kept, but a malformed one is a malformed notification
	return r
}
