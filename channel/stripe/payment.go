package stripe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"ordercore"
)

// Bounds of the calls about payments.
const (
	// idemKeyBytesMax is Stripe's limit on an Idempotency-Key.
	idemKeyBytesMax = 255
	// searchResultsMax is the page size of a search by out_trade_no, Stripe's maximum.
	// One OutTradeNo maps to one PaymentIntent while Stripe keeps the Idempotency-Key (24
	// hours at least); more than one exists only if a create was repeated after that.
	// A full page means something else is writing under our keys: we refuse to guess.
	searchResultsMax = 100
	// metadataValueBytesMax is Stripe's limit on one metadata value.
	metadataValueBytesMax = 500
)

// Metadata keys under which our ids travel on Stripe objects.
const (
	metaOutTradeNo  = "out_trade_no"
	metaOrderID     = "order_id"
	metaOutRefundNo = "out_refund_no"
	metaReason      = "reason"
)

// paymentIntent is the part of Stripe's PaymentIntent object that we read.
type paymentIntent struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"`
	Amount         int64             `json:"amount"`
	AmountReceived int64             `json:"amount_received"`
	Currency       string            `json:"currency"`
	Status         string            `json:"status"`
	ClientSecret   string            `json:"client_secret"`
	Metadata       map[string]string `json:"metadata"`
	Created        int64             `json:"created"`
	// LatestCharge is a charge id, or the charge itself when expanded.
	LatestCharge json.RawMessage `json:"latest_charge"`
}

// paymentStatus maps a PaymentIntent status (docs.stripe.com/payments/paymentintents/lifecycle)
// onto ordercore's payment machine:
//
//	succeeded                      -> succeeded: the money moved
//	canceled                       -> closed: terminal, can no longer be paid
//	requires_payment_method        -> pending
//	requires_confirmation          -> pending
//	requires_action                -> pending (3-D Secure and other shopper steps)
//	processing                     -> pending (asynchronous methods: the bank decides later)
//	requires_capture               -> pending (only with manual capture, which we never ask
//	                                  for: authorised money that is not yet ours)
//
// ordercore's "failed" is never produced. A declined attempt sends a Stripe intent back to
// requires_payment_method, still open: the same client secret can pay it with another card.
// Calling that failed (terminal) would let the order issue a new attempt while the old one
// can still take money; it ends only when it succeeds or is canceled (ClosePayment).
func paymentStatus(s string) (ordercore.PaymentStatus, error) {
	switch s {
	case "succeeded":
		return ordercore.PaymentSucceeded, nil
	case "canceled":
		return ordercore.PaymentClosed, nil
	case "requires_payment_method", "requires_confirmation", "requires_action", "processing", "requires_capture":
		return ordercore.PaymentPending, nil
	}
	return "", fmt.Errorf("stripe: unknown PaymentIntent status %q", s)
}

// channelPayment translates an intent. paidAt is when the payment succeeded, if known.
func channelPayment(pi *paymentIntent, paidAt time.Time) (ordercore.ChannelPayment, error) {
	st, err := paymentStatus(pi.Status)
	if err != nil {
		return ordercore.ChannelPayment{}, err
	}
	amount := pi.Amount
	if st == ordercore.PaymentSucceeded && pi.AmountReceived > 0 {
		// What was actually captured is the statement about money; it equals Amount
		// unless the payment was captured partially.
		amount = pi.AmountReceived
	}
	m, err := fromStripe(amount, pi.Currency)
	if err != nil {
		return ordercore.ChannelPayment{}, fmt.Errorf("payment intent %s: %w", pi.ID, err)
	}
	p := ordercore.ChannelPayment{
		OutTradeNo: pi.Metadata[metaOutTradeNo],
		TxnID:      pi.ID,
		Status:     st,
		Amount:     m,
	}
	if st == ordercore.PaymentSucceeded {
		p.PaidAt = paidAt
	}
	return p, nil
}

// chargeCreated returns the creation time of the intent's latest charge when the search
// expanded it: a PaymentIntent records no time of success, and its charge is created when
// the payment is made.
func (pi *paymentIntent) chargeCreated() time.Time {
	if len(pi.LatestCharge) == 0 || pi.LatestCharge[0] != '{' {
		return time.Time{}
	}
	var ch struct {
		Created int64 `json:"created"`
	}
	if json.Unmarshal(pi.LatestCharge, &ch) != nil || ch.Created == 0 {
		return time.Time{}
	}
	return time.Unix(ch.Created, 0).UTC()
}

// CreatePayment creates a PaymentIntent for req under the Idempotency-Key req.OutTradeNo:
// Stripe replays the first answer to a repeated call for at least 24 hours, so a repeat
// after an unknown outcome returns the same intent. The key also goes into the metadata,
// the only way to find the intent again when the answer (and with it the pi_ id) is lost.
//
// req.ExpiresAt and req.NotifyURL have no Stripe counterpart: an intent never expires by
// itself (the order's expiry closes it through ClosePayment), and Stripe sends events to
// the endpoints configured in the Dashboard. No payment_method_types are sent, so the
// methods enabled in the Dashboard apply (the pinned API version defaults
// automatic_payment_methods to enabled).
func (c *Channel) CreatePayment(ctx context.Context, req ordercore.PaymentRequest) (ordercore.PaymentInstructions, error) {
	if err := checkOutTradeNo(req.OutTradeNo); err != nil {
		return ordercore.PaymentInstructions{}, err
	}
	amount, currency, err := toStripe(req.Amount)
	if err != nil {
		return ordercore.PaymentInstructions{}, err
	}
	form := url.Values{
		"amount":                           {strconv.FormatInt(amount, 10)},
		"currency":                         {currency},
		"metadata[" + metaOutTradeNo + "]": {req.OutTradeNo},
	}
	if req.OrderID != "" {
		form.Set("metadata["+metaOrderID+"]", req.OrderID)
	}
	if req.Description != "" {
		form.Set("description", req.Description)
	}
	var pi paymentIntent
	if err := c.call(ctx, http.MethodPost, "/v1/payment_intents", form, req.OutTradeNo, &pi); err != nil {
		return ordercore.PaymentInstructions{}, c.refusal("create payment "+req.OutTradeNo, err)
	}
	if pi.ID == "" || pi.ClientSecret == "" {
		return ordercore.PaymentInstructions{}, fmt.Errorf("stripe create payment %s: %w: answer without id or client_secret", req.OutTradeNo, ordercore.ErrOutcomeUnknown)
	}
	return ordercore.PaymentInstructions{
		TxnID:  pi.ID,
		Params: map[string]string{"client_secret": pi.ClientSecret},
	}, nil
}

// QueryPayment finds the trade's intent by its out_trade_no metadata through the Search
// API and returns its state.
//
// Search is eventually consistent: Stripe indexes a new or changed intent within a minute
// normally, up to an hour during incidents (docs.stripe.com/search#data-freshness). So
// ErrTradeNotFound here means "not found in the index": right after a create whose answer
// was lost it can be wrong, and a status can lag behind the notifications. The Search API
// is also limited to 20 requests per second per account; beyond that Stripe answers 429,
// which comes back as ErrOutcomeUnknown.
func (c *Channel) QueryPayment(ctx context.Context, outTradeNo string) (ordercore.ChannelPayment, error) {
	intents, err := c.findIntents(ctx, outTradeNo)
	if err != nil {
		return ordercore.ChannelPayment{}, err
	}
	pi := pickIntent(intents)
	p, err := channelPayment(pi, pi.chargeCreated())
	if err != nil {
		return ordercore.ChannelPayment{}, fmt.Errorf("stripe query payment %s: %w", outTradeNo, err)
	}
	return p, nil
}

// ClosePayment cancels every open intent of the trade (there is one, unless a create was
// repeated after Stripe forgot the key). A trade with a succeeded intent is ErrTradePaid,
// after the others are canceled so that the shopper cannot pay twice.
//
// Cancel carries no Idempotency-Key on purpose: Stripe would replay a cached 500 to every
// repeat for 24 hours, while a repeated cancel is harmless on its own (canceling a
// canceled intent is answered as such and treated as success).
func (c *Channel) ClosePayment(ctx context.Context, outTradeNo string) error {
	intents, err := c.findIntents(ctx, outTradeNo)
	if err != nil {
		return err
	}
	paid := false
	for i := range intents {
		pi := &intents[i]
		switch pi.Status {
		case "succeeded":
			paid = true
		case "canceled":
		default:
			p, err := c.cancel(ctx, pi.ID)
			if err != nil {
				return fmt.Errorf("stripe close payment %s: %w", outTradeNo, err)
			}
			paid = paid || p
		}
	}
	if paid {
		return fmt.Errorf("stripe close payment %s: %w", outTradeNo, ordercore.ErrTradePaid)
	}
	return nil
}

// cancel cancels one intent and reports whether it turned out to be paid. Stripe refuses
// to cancel an intent that is no longer cancelable with payment_intent_unexpected_state
// and attaches the intent, whose status tells why.
func (c *Channel) cancel(ctx context.Context, id string) (paid bool, err error) {
	var pi paymentIntent
	err = c.call(ctx, http.MethodPost, "/v1/payment_intents/"+url.PathEscape(id)+"/cancel", nil, "", &pi)
	var e *apiError
	if errors.As(err, &e) && e.Code == "payment_intent_unexpected_state" && e.PaymentIntent != nil {
		switch e.PaymentIntent.Status {
		case "succeeded":
			return true, nil
		case "canceled":
			return false, nil
		}
	}
	if err != nil {
		return false, c.refusal("cancel "+id, err)
	}
	switch pi.Status {
	case "canceled":
		return false, nil
	case "succeeded":
		return true, nil
	}
	return false, fmt.Errorf("stripe cancel %s: answered with status %q", id, pi.Status)
}

// findIntents returns the intents whose out_trade_no metadata is outTradeNo, or
// ErrTradeNotFound. The charge is expanded for its time (see chargeCreated).
func (c *Channel) findIntents(ctx context.Context, outTradeNo string) ([]paymentIntent, error) {
	if err := checkOutTradeNo(outTradeNo); err != nil {
		return nil, err
	}
	form := url.Values{
		// Search query language: a quoted string after a metadata key is an exact match
		// (docs.stripe.com/search#search-query-language).
		"query":    {"metadata['" + metaOutTradeNo + "']:'" + outTradeNo + "'"},
		"limit":    {strconv.Itoa(searchResultsMax)},
		"expand[]": {"data.latest_charge"},
	}
	var res struct {
		Data    []paymentIntent `json:"data"`
		HasMore bool            `json:"has_more"`
	}
	if err := c.call(ctx, http.MethodGet, "/v1/payment_intents/search", form, "", &res); err != nil {
		return nil, c.refusal("search payment "+outTradeNo, err)
	}
	if res.HasMore {
		return nil, fmt.Errorf("stripe search payment %s: more than %d intents carry this out_trade_no", outTradeNo, searchResultsMax)
	}
	var out []paymentIntent
	for _, pi := range res.Data {
		// The index matches exactly; checking again costs nothing and keeps a foreign
		// intent from ever being taken for ours.
		if pi.Metadata[metaOutTradeNo] == outTradeNo {
			out = append(out, pi)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("stripe search payment %s: %w", outTradeNo, ordercore.ErrTradeNotFound)
	}
	return out, nil
}

// pickIntent chooses the intent that speaks for the trade when there are several: a
// succeeded one (money moved, whatever the others say), else the newest open one (it can
// still take money), else the newest.
func pickIntent(intents []paymentIntent) *paymentIntent {
	rank := func(pi *paymentIntent) int {
		switch pi.Status {
		case "succeeded":
			return 2
		case "canceled":
			return 0
		}
		return 1
	}
	best := &intents[0]
	for i := range intents[1:] {
		pi := &intents[i+1]
		if r, b := rank(pi), rank(best); r > b || (r == b && pi.Created > best.Created) {
			best = pi
		}
	}
	return best
}

// checkOutTradeNo rejects keys that cannot serve as an Idempotency-Key or be quoted in a
// search query. ordercore's ids are UUIDs, so this only catches programming errors.
func checkOutTradeNo(s string) error {
	switch {
	case s == "":
		return errors.New("stripe: empty out_trade_no")
	case len(s) > idemKeyBytesMax:
		return fmt.Errorf("stripe: out_trade_no over %d bytes", idemKeyBytesMax)
	case strings.ContainsAny(s, `'\`):
		return fmt.Errorf("stripe: out_trade_no %q contains a quote or backslash", s)
	}
	return nil
}
