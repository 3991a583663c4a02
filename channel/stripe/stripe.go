package stripe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"ordercore"
	"ordercore/channel/internal/outbound"
)

// Defaults of Config.
const (
	NameDefault      = "stripe"
	BaseURLDefault   = "https://api.stripe.com"
	ToleranceDefault = 300 * time.Second // Stripe's own default (stripe-go webhook.DefaultTolerance)
)

// apiVersion is sent as Stripe-Version on every call, so that the shapes this package
// reads do not change when someone upgrades the account's default version in the
// Dashboard. It must be 2020-08-27 or later for the Search API. Webhook payloads are not
// affected: they follow the version configured on the webhook endpoint.
const apiVersion = "2025-08-27.basil"

// Config configures a Stripe channel.
type Config struct {
	// SecretKey is the API key (sk_live_..., sk_test_..., or a restricted rk_...). Its
	// mode (live or test) is also the mode that notifications must carry.
	SecretKey string
	// WebhookSecrets are the endpoint's signing secrets (whsec_...) currently active.
	// Stripe signs with every secret of an endpoint while a rolled secret is still valid,
	// so several may be listed during a rotation; a notification signed by any is accepted.
	WebhookSecrets []string
	// Tolerance is how far a notification's signed timestamp may be from now, in either
	// direction (ToleranceDefault when zero).
	Tolerance time.Duration
	// BaseURL is Stripe's API root (BaseURLDefault when empty); tests point it elsewhere.
	BaseURL string
	// Timeout bounds each call (outbound.TimeoutDefault when zero).
	Timeout time.Duration
	// HTTPClient sends the calls (http.DefaultClient when nil).
	HTTPClient *http.Client
	// Name is the channel's path segment (NameDefault when empty).
	Name string
}

// Channel is the Stripe payment channel. It holds no mutable state, so one value serves
// concurrent callers.
type Channel struct {
	name      string
	secretKey string
	livemode  bool
	secrets   [][]byte
	tolerance time.Duration
	baseURL   string
	timeout   time.Duration
	client    *http.Client
}

var _ ordercore.Channel = (*Channel)(nil)

// New validates cfg, fills in its defaults and returns the channel.
func New(cfg Config) (*Channel, error) {
	c := &Channel{
		name:      cfg.Name,
		secretKey: cfg.SecretKey,
		tolerance: cfg.Tolerance,
		baseURL:   strings.TrimRight(cfg.BaseURL, "/"),
		timeout:   cfg.Timeout,
		client:    cfg.HTTPClient,
	}
	if c.name == "" {
		c.name = NameDefault
	}
	if strings.ContainsAny(c.name, "/?#% ") {
		return nil, fmt.Errorf("stripe: name %q is not a path segment", c.name)
	}
	switch {
	case strings.HasPrefix(cfg.SecretKey, "sk_live_"), strings.HasPrefix(cfg.SecretKey, "rk_live_"):
		c.livemode = true
	case strings.HasPrefix(cfg.SecretKey, "sk_test_"), strings.HasPrefix(cfg.SecretKey, "rk_test_"):
	default:
		// The prefix is checked, not just presence: a publishable key (pk_...) or a
		// webhook secret pasted here would fail every call, and the mode is needed to
		// reject notifications of the other mode.
		return nil, errors.New("stripe: SecretKey must be a secret or restricted API key (sk_live_, sk_test_, rk_live_, rk_test_)")
	}
	if len(cfg.WebhookSecrets) == 0 {
		return nil, errors.New("stripe: at least one webhook secret is required: unsigned notifications are never accepted")
	}
	for i, s := range cfg.WebhookSecrets {
		if s == "" {
			return nil, fmt.Errorf("stripe: webhook secret %d is empty", i)
		}
		c.secrets = append(c.secrets, []byte(s))
	}
	if c.tolerance < 0 {
		return nil, fmt.Errorf("stripe: negative tolerance %v", c.tolerance)
	} else if c.tolerance == 0 {
		c.tolerance = ToleranceDefault
	}
	if c.timeout < 0 {
		return nil, fmt.Errorf("stripe: negative timeout %v", c.timeout)
	}
	if c.baseURL == "" {
		c.baseURL = BaseURLDefault
	}
	if u, err := url.Parse(c.baseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("stripe: BaseURL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	return c, nil
}

// Name returns the channel's path segment.
func (c *Channel) Name() string { return c.name }

// Ack answers a recorded notification: Stripe counts any 2xx as delivered; the empty JSON
// object keeps the answer valid JSON for anyone reading the endpoint's delivery log.
func (c *Channel) Ack(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "{}")
}

// call sends one request to Stripe through outbound.Do and decodes a 2xx answer into out.
// form is sent as the body of a POST, or as the query of a GET. idemKey, when set, is
// Stripe's Idempotency-Key. A 4xx is returned as an *apiError for the caller to map.
func (c *Channel) call(ctx context.Context, method, path string, form url.Values, idemKey string, out any) error {
	u := c.baseURL + path
	var body io.Reader
	if method == http.MethodGet {
		if len(form) > 0 {
			u += "?" + form.Encode()
		}
	} else {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("stripe: build %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.secretKey)
	req.Header.Set("Stripe-Version", apiVersion)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	status, raw, err := outbound.Do(ctx, c.client, req, c.timeout)
	if err != nil {
		return fmt.Errorf("stripe: %w", err)
	}
	if status < 200 || status > 299 {
		return c.parseError(method, path, status, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		// Stripe acted (2xx) but we cannot read what it did: for a create that is the
		// same as no answer at all, and a query will tell.
		return fmt.Errorf("stripe: %w: %s %s: unreadable answer: %v", ordercore.ErrOutcomeUnknown, method, path, err)
	}
	return nil
}

// apiError is Stripe's error object (docs.stripe.com/api/errors), as far as we read it.
type apiError struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// PaymentIntent is the intent's current state, which Stripe attaches to errors about
	// an intent (payment_intent_unexpected_state tells which state through it).
	PaymentIntent *paymentIntent `json:"payment_intent"`

	status int
}

// parseError maps a definite non-2xx answer. Two answers are not refusals:
//   - 409: Stripe answers it when a request with the same Idempotency-Key is still
//     executing (idempotency_key_in_use) or an object is locked; the other request may
//     yet take effect, so the outcome of ours is unknown, and nothing is saved under the
//     key, so asking again is safe;
//   - 404 resource_missing: the object does not exist, ErrTradeNotFound.
//
// Everything else is a *ordercore.ChannelError carrying Stripe's code.
func (c *Channel) parseError(method, path string, status int, raw []byte) error {
	var env struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || env.Error == nil {
		env.Error = &apiError{Code: fmt.Sprintf("http_%d", status), Message: "unreadable error answer"}
	}
	e := env.Error
	e.status = status
	switch {
	case status == http.StatusConflict:
		return fmt.Errorf("stripe: %w: %s %s: %d %s: %s", ordercore.ErrOutcomeUnknown, method, path, status, e.Code, e.Message)
	case status == http.StatusNotFound && e.Code == "resource_missing":
		return fmt.Errorf("stripe: %w: %s %s: %s", ordercore.ErrTradeNotFound, method, path, e.Message)
	}
	return e
}

func (e *apiError) Error() string {
	return fmt.Sprintf("stripe api error: status %d type %s code %s: %s", e.status, e.Type, e.Code, e.Message)
}

// refusal turns a Stripe error into the channel error callers see. The code is Stripe's
// code, or its error type when the error has none (card errors carry a code, some
// invalid_request_errors do not).
func (c *Channel) refusal(op string, err error) error {
	var e *apiError
	if !errors.As(err, &e) {
		return fmt.Errorf("stripe %s: %w", op, err)
	}
	code := e.Code
	if code == "" {
		code = e.Type
	}
	if code == "" {
		code = fmt.Sprintf("http_%d", e.status)
	}
	return fmt.Errorf("stripe %s: %w", op, &ordercore.ChannelError{Channel: c.name, Code: code, Message: e.Message})
}
