package alipay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"ordercore"
	"ordercore/channel/internal/outbound"
)

// Common request parameters, the same for every method.
const (
	formatJSON  = "JSON"
	charsetUTF8 = "utf-8"
	version     = "1.0"
)

// Answer codes. code is the gateway's verdict; sub_code says what a refusal is about.
const (
	codeSuccess     = "10000"
	codeUnavailable = "20000" // service unavailable: the call may or may not have run

	subTradeNotExist    = "ACQ.TRADE_NOT_EXIST"
	subTradeStatusError = "ACQ.TRADE_STATUS_ERROR"
)

// outcomeUnknownSubCodes are refusals that are not refusals: Alipay's own failures, after
// which its documents ask to retry with the same parameters or to query. A refund that
// answered ACQ.SYSTEM_ERROR may have been made.
var outcomeUnknownSubCodes = map[string]bool{
	"ACQ.SYSTEM_ERROR":     true,
	"aop.ACQ.SYSTEM_ERROR": true,
	"isp.unknow-error":     true, // sic: Alipay's spelling
	"aop.unknow-error":     true,
}

// errorNode is the node the gateway answers with when it refuses a call before the method
// runs (a bad signature, an unknown app): there is no <method>_response then.
const errorNode = "error_response"

// result is the part every answer node shares.
type result struct {
	Code    string `json:"code"`
	Msg     string `json:"msg"`
	SubCode string `json:"sub_code"`
	SubMsg  string `json:"sub_msg"`
}

// failed reports whether the gateway refused the call.
func (r result) failed() bool { return r.Code != codeSuccess }

// refusal is the *ordercore.ChannelError of a definite refusal, coded by sub_code (what
// the refusal is about) or, for the few gateway refusals without one, by code.
func (c *Channel) refusal(r result) error {
	if r.SubCode == "" {
		return &ordercore.ChannelError{Channel: c.cfg.Name, Code: r.Code, Message: r.Msg}
	}
	return &ordercore.ChannelError{Channel: c.cfg.Name, Code: r.SubCode, Message: fmt.Sprintf("%s (%s %s)", r.SubMsg, r.Code, r.Msg)}
}

// signedParams returns the parameters of one gateway request, signed: the common ones,
// notify_url when given, and biz_content.
func (c *Channel) signedParams(method, notifyURL string, biz any) (url.Values, error) {
	content, err := marshalBiz(biz)
	if err != nil {
		return nil, err
	}
	params := map[string]string{
		"app_id":      c.cfg.AppID,
		"method":      method,
		"format":      formatJSON,
		"charset":     charsetUTF8,
		paramSignType: signTypeRSA2,
		"timestamp":   c.now().In(cst).Format(timeLayout),
		"version":     version,
		"notify_url":  notifyURL,
		"biz_content": content,
	}
	sig, err := signRSA2(c.cfg.PrivateKey, requestContent(params))
	if err != nil {
		return nil, err
	}
	v := make(url.Values, len(params)+1)
	for k, s := range params {
		// The gateway drops empty parameters before it checks the signature, and so did
		// requestContent; sending them would only add noise.
		if s != "" {
			v.Set(k, s)
		}
	}
	v.Set(paramSign, sig)
	return v, nil
}

// marshalBiz encodes biz_content without HTML escaping, so that a subject with '&' or '<'
// reaches the cashier page as written.
func marshalBiz(biz any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(biz); err != nil {
		return "", fmt.Errorf("biz_content: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// call sends one signed request through outbound.Do, authenticates the answer and decodes
// its node into out (when not nil). The returned error always wraps
// ordercore.ErrOutcomeUnknown: the call failed in transit, the answer is not authentic, or
// Alipay says it failed itself. Otherwise the result says whether the call was refused;
// out is filled either way.
func (c *Channel) call(ctx context.Context, method string, biz, out any) (result, error) {
	params, err := c.signedParams(method, "", biz)
	if err != nil {
		// Nothing was sent; still, the caller's contract only knows the control errors, and
		// a request we cannot sign is not a refusal of the channel.
		return result{}, fmt.Errorf("%s: %w: %v", method, ordercore.ErrOutcomeUnknown, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.gateway.String(), strings.NewReader(params.Encode()))
	if err != nil {
		return result{}, fmt.Errorf("%s: %w: %v", method, ordercore.ErrOutcomeUnknown, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=utf-8")
	req.Header.Set("Accept", "application/json")
	_, body, err := outbound.Do(ctx, c.cfg.HTTPClient, req, c.cfg.Timeout)
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", method, err)
	}
	node, err := c.openAnswer(method, body)
	if err != nil {
		// An answer whose signature fails (or that has none) proves nothing: it may be a
		// proxy's page, a truncated body or a forgery. The call may well have run, so the
		// outcome is unknown and only a query, answered with a valid signature, settles it.
		return result{}, fmt.Errorf("%s: %w: %v", method, ordercore.ErrOutcomeUnknown, err)
	}
	var res result
	if err := json.Unmarshal(node, &res); err != nil || res.Code == "" {
		return result{}, fmt.Errorf("%s: %w: answer node has no code", method, ordercore.ErrOutcomeUnknown)
	}
	if res.Code == codeUnavailable || outcomeUnknownSubCodes[res.SubCode] {
		return result{}, fmt.Errorf("%s: %w: %s %s: %s %s", method, ordercore.ErrOutcomeUnknown, res.Code, res.Msg, res.SubCode, res.SubMsg)
	}
	if out != nil {
		if err := json.Unmarshal(node, out); err != nil {
			return result{}, fmt.Errorf("%s: %w: answer node: %v", method, ordercore.ErrOutcomeUnknown, err)
		}
	}
	return res, nil
}

// openAnswer returns the raw <method>_response node of an answer (or its error_response)
// once its signature verifies. The signature covers the node's bytes as sent, so they are
// taken from the body as they are: decoding into json.RawMessage copies them without
// re-serialising.
func (c *Channel) openAnswer(method string, body []byte) (json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, fmt.Errorf("answer is not a JSON object: %v", err)
	}
	name := strings.ReplaceAll(method, ".", "_") + "_response"
	node, ok := top[name]
	if !ok {
		if node, ok = top[errorNode]; !ok {
			return nil, fmt.Errorf("answer has neither %s nor %s", name, errorNode)
		}
	}
	if len(node) == 0 || node[0] != '{' {
		// An encrypted node (a base64 string) is not supported: content encryption is
		// switched off for the application.
		return nil, fmt.Errorf("%s is not a JSON object", name)
	}
	var sig string
	if raw, ok := top[paramSign]; !ok {
		return nil, fmt.Errorf("answer is not signed")
	} else if err := json.Unmarshal(raw, &sig); err != nil || sig == "" {
		return nil, fmt.Errorf("answer's sign is not a string")
	}
	if err := verifyNode(c.cfg.AlipayPublicKey, node, sig); err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	return node, nil
}

// decimal is an amount as the gateway writes it: a JSON string ("88.88"), or on some
// methods a bare JSON number. Either way it keeps the literal text, so no float ever holds
// money.
type decimal string

func (d *decimal) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*d = decimal(s)
		return nil
	}
	if string(b) == "null" {
		*d = ""
		return nil
	}
	if !json.Valid(b) || strings.ContainsAny(string(b), "eE") {
		return fmt.Errorf("amount %s is not a plain decimal", b)
	}
	*d = decimal(b)
	return nil
}
