package stripe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"ordercore"
)

// Bounds of the calls about refunds.
const (
	// refundPageSize is the page size of a refund list, Stripe's maximum.
	refundPageSize = 100
	// refundPagesMax bounds the pages read to find one refund of one payment: a thousand
	// partial refunds of one payment is far beyond any real order.
	refundPagesMax = 10
)

// refund is the part of Stripe's Refund object that we read.
type refund struct {
	ID            string            `json:"id"`
	Object        string            `json:"object"`
	Amount        int64             `json:"amount"`
	Currency      string            `json:"currency"`
	Status        string            `json:"status"`
	Metadata      map[string]string `json:"metadata"`
	FailureReason string            `json:"failure_reason"`
}

// refundStatus maps a Refund status (docs.stripe.com/api/refunds/object#refund_object-status):
//
//	succeeded       -> succeeded
//	pending         -> pending
//	requires_action -> pending (the shopper must give bank details; the refund goes on)
//	failed          -> failed (Stripe could not pay out, e.g. a closed card: the money is
//	                   back in our Stripe balance and the shopper still awaits it)
//	canceled        -> failed (canceled before it was paid out)
func refundStatus(s string) (ordercore.RefundStatus, error) {
	switch s {
	case "succeeded":
		return ordercore.RefundSucceeded, nil
	case "pending", "requires_action":
		return ordercore.RefundPending, nil
	case "failed", "canceled":
		return ordercore.RefundFailed, nil
	}
	return "", fmt.Errorf("stripe: unknown refund status %q", s)
}

// channelRefund translates a refund; outTradeNo is used when the refund's metadata lacks
// it.
func channelRefund(r *refund, outTradeNo string) (ordercore.ChannelRefund, error) {
	st, err := refundStatus(r.Status)
	if err != nil {
		return ordercore.ChannelRefund{}, err
	}
	m, err := fromStripe(r.Amount, r.Currency)
	if err != nil {
		return ordercore.ChannelRefund{}, fmt.Errorf("refund %s: %w", r.ID, err)
	}
	if t := r.Metadata[metaOutTradeNo]; t != "" {
		outTradeNo = t
	}
	return ordercore.ChannelRefund{
		OutTradeNo:  outTradeNo,
		OutRefundNo: r.Metadata[metaOutRefundNo],
		RefundID:    r.ID,
		Status:      st,
		Amount:      m,
	}, nil
}

// Refund refunds req.Amount of the trade's succeeded intent under the Idempotency-Key
// req.OutRefundNo. Stripe keeps that key for 24 hours only, so the refund is first looked
// up by its out_refund_no metadata (a list, which unlike search is consistent at once): a
// repeat days later returns the first refund instead of paying out twice.
//
// req.Total and req.NotifyURL are not needed by Stripe; req.Reason is free text and goes
// into the metadata, since Stripe's reason field takes only its own three values.
func (c *Channel) Refund(ctx context.Context, req ordercore.RefundRequest) (ordercore.ChannelRefund, error) {
	if req.OutRefundNo == "" || len(req.OutRefundNo) > idemKeyBytesMax {
		return ordercore.ChannelRefund{}, fmt.Errorf("stripe: out_refund_no must be 1 to %d bytes", idemKeyBytesMax)
	}
	amount, _, err := toStripe(req.Amount)
	if err != nil {
		return ordercore.ChannelRefund{}, err
	}
	intents, err := c.findIntents(ctx, req.OutTradeNo)
	if err != nil {
		return ordercore.ChannelRefund{}, err
	}
	// Stripe itself refuses a refund of an intent that has not succeeded; the choice only
	// matters when a trade has several intents.
	pi := pickIntent(intents)
	if !strings.EqualFold(pi.Currency, string(req.Amount.Currency)) {
		// Stripe refunds in the payment's currency and takes only an amount: a request in
		// another currency names the wrong trade and would pay back a wrong sum.
		return ordercore.ChannelRefund{}, fmt.Errorf("stripe refund %s: payment %s is in %s, refund asked in %s", req.OutRefundNo, pi.ID, pi.Currency, req.Amount.Currency)
	}
	if r, err := c.findRefund(ctx, pi.ID, req.OutRefundNo); err == nil {
		return channelRefund(r, req.OutTradeNo)
	} else if !isNotFound(err) {
		return ordercore.ChannelRefund{}, err
	}
	form := url.Values{
		"payment_intent":                    {pi.ID},
		"amount":                            {strconv.FormatInt(amount, 10)},
		"metadata[" + metaOutRefundNo + "]": {req.OutRefundNo},
		"metadata[" + metaOutTradeNo + "]":  {req.OutTradeNo},
	}
	if req.Reason != "" {
		form.Set("metadata["+metaReason+"]", truncate(req.Reason, metadataValueBytesMax))
	}
	var r refund
	if err := c.call(ctx, http.MethodPost, "/v1/refunds", form, req.OutRefundNo, &r); err != nil {
		return ordercore.ChannelRefund{}, c.refusal("refund "+req.OutRefundNo, err)
	}
	cr, err := channelRefund(&r, req.OutTradeNo)
	if err != nil {
		return ordercore.ChannelRefund{}, fmt.Errorf("stripe refund %s: %w", req.OutRefundNo, err)
	}
	return cr, nil
}

// QueryRefund finds the refund by its out_refund_no metadata among the refunds of the
// trade's intents. Refunds have no Search API; the list by payment_intent is bounded and
// consistent. A refund Stripe does not know is ErrTradeNotFound.
func (c *Channel) QueryRefund(ctx context.Context, outTradeNo, outRefundNo string) (ordercore.ChannelRefund, error) {
	intents, err := c.findIntents(ctx, outTradeNo)
	if err != nil {
		return ordercore.ChannelRefund{}, err
	}
	for i := range intents {
		r, err := c.findRefund(ctx, intents[i].ID, outRefundNo)
		if isNotFound(err) {
			continue
		} else if err != nil {
			return ordercore.ChannelRefund{}, err
		}
		return channelRefund(r, outTradeNo)
	}
	return ordercore.ChannelRefund{}, fmt.Errorf("stripe query refund %s of %s: %w", outRefundNo, outTradeNo, ordercore.ErrTradeNotFound)
}

// findRefund pages through the refunds of one intent, newest first, for the one whose
// out_refund_no metadata is outRefundNo.
func (c *Channel) findRefund(ctx context.Context, piID, outRefundNo string) (*refund, error) {
	after := ""
	for range refundPagesMax {
		form := url.Values{
			"payment_intent": {piID},
			"limit":          {strconv.Itoa(refundPageSize)},
		}
		if after != "" {
			form.Set("starting_after", after)
		}
		var page struct {
			Data    []refund `json:"data"`
			HasMore bool     `json:"has_more"`
		}
		if err := c.call(ctx, http.MethodGet, "/v1/refunds", form, "", &page); err != nil {
			return nil, c.refusal("list refunds of "+piID, err)
		}
		for i := range page.Data {
			if page.Data[i].Metadata[metaOutRefundNo] == outRefundNo {
				return &page.Data[i], nil
			}
		}
		if !page.HasMore || len(page.Data) == 0 {
			return nil, fmt.Errorf("stripe refund %s of %s: %w", outRefundNo, piID, ordercore.ErrTradeNotFound)
		}
		after = page.Data[len(page.Data)-1].ID
	}
	return nil, fmt.Errorf("stripe refund %s of %s: more than %d refunds listed", outRefundNo, piID, refundPagesMax*refundPageSize)
}

func isNotFound(err error) bool { return errors.Is(err, ordercore.ErrTradeNotFound) }

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
