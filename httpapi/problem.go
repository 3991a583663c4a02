package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"ordercore"
	"ordercore/internal/limit"
)

// Problem is an RFC 9457 problem details object. Code is ordercore's stable error code:
// clients switch on it, never on Title or Detail.
type Problem struct {
	Type   string              `json:"type" doc:"A URI naming the problem type: urn:ordercore:problem:<code>"`
	Title  string              `json:"title"`
	Status int                 `json:"status"`
	Detail string              `json:"detail,omitempty"`
	Code   string              `json:"code" doc:"Stable machine-readable error code"`
	Errors []*huma.ErrorDetail `json:"errors,omitempty" doc:"Validation details: where and what"`
}

func (p *Problem) Error() string { return p.Code + ": " + p.Detail }

// GetStatus implements huma.StatusError.
func (p *Problem) GetStatus() int { return p.Status }

// ContentType makes huma answer problems as application/problem+json.
func (p *Problem) ContentType(string) string { return "application/problem+json" }

func newProblem(status int, code, detail string, details []*huma.ErrorDetail) *Problem {
	return &Problem{Type: "urn:ordercore:problem:" + code, Title: http.StatusText(status),
		Status: status, Detail: detail, Code: code, Errors: details}
}

// statusOf maps each error code to its HTTP status.
func statusOf(code string) int {
	switch code {
	case ordercore.ENOTFOUND:
		return http.StatusNotFound
	case ordercore.EInsufficientStock, ordercore.EIllegalTransition, ordercore.ESKUExists,
		ordercore.ECONFLICT, ordercore.EIdemKeyInUse, ordercore.EPaymentInProgress, ordercore.ENotPaid,
		ordercore.EReviewResolved, ordercore.ESagaExists, ordercore.ESagaState, ordercore.EHangingTry, ordercore.EHoldState:
		return http.StatusConflict
	case ordercore.EUnknownChannel:
		return http.StatusNotFound
	case ordercore.EInvalidSignature, ordercore.EStaleNotification:
		return http.StatusUnauthorized
	case ordercore.EMerchantMismatch:
		return http.StatusForbidden
	case ordercore.EMalformedNotification:
		return http.StatusBadRequest
	case ordercore.EChannelRefused:
		return http.StatusBadGateway
	case ordercore.EMalformedJSON, ordercore.EInvalidCursor, ordercore.EInvalidIdemKey:
		return http.StatusBadRequest
	case ordercore.EBodyTooLarge:
		return http.StatusRequestEntityTooLarge
	case ordercore.EMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case ordercore.ERateLimited:
		return http.StatusTooManyRequests
	case ordercore.EOVERLOADED, ordercore.EUnavailable, ordercore.EChannelUnavailable:
		return http.StatusServiceUnavailable
	case ordercore.EINTERNAL:
		return http.StatusInternalServerError
	}
	return http.StatusUnprocessableEntity
}

// problemOf turns an error from the engine or a store into a problem. Only application
// errors carry their message out; anything else is "internal".
func problemOf(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The request ended while its command waited for its batch: the command may
		// still commit. Not an internal error, and not "nothing happened".
		err = ordercore.Errorf(ordercore.EUnavailable, "the request ended before its outcome was known, and it may still be applied: retry with the same Idempotency-Key, or read it back")
	}
	code := ordercore.ErrorCode(err)
	p := newProblem(statusOf(code), code, ordercore.ErrorMessage(err), nil)
	if p.Status == http.StatusServiceUnavailable {
		h := http.Header{}
		h.Set("Retry-After", strconv.Itoa(int(limit.RetryAfterOverload.Seconds())))
		return huma.ErrorWithHeaders(p, h)
	}
	return p
}

// rateLimited answers a request over its caller's rate limit: 429 with the seconds until
// the next one is let through (at least 1) in Retry-After.
func rateLimited(what string, wait time.Duration) error {
	secs := max(1, int((wait+time.Second-1)/time.Second))
	h := http.Header{}
	h.Set("Retry-After", strconv.Itoa(secs))
	return huma.ErrorWithHeaders(newProblem(http.StatusTooManyRequests, ordercore.ERateLimited,
		fmt.Sprintf("%s: over the limit; retry in %d s", what, secs), nil), h)
}

// problemCode is the code of a problem returned by problemOf or submit.
func problemCode(err error) string {
	var p *Problem
	if errors.As(err, &p) {
		return p.Code
	}
	return ordercore.ErrorCode(err)
}

// humaError replaces huma.NewError so that huma's own errors (decoding, validation, body
// size) are problems with stable codes too. The code is chosen from the first detail:
// these locations and messages come from our own schemas, so they are stable.
func humaError(status int, msg string, errs ...error) huma.StatusError {
	var details []*huma.ErrorDetail
	for _, err := range errs {
		var d huma.ErrorDetailer
		if errors.As(err, &d) {
			details = append(details, d.ErrorDetail())
		} else if err != nil {
			details = append(details, &huma.ErrorDetail{Message: err.Error()})
		}
	}
	for _, d := range details {
		plainTypeError(d)
	}
	code := codeOf(status, msg, details)
	if code == ordercore.EINTERNAL {
		details, msg = nil, "internal error" // never leak internals
	}
	if code == ordercore.EInvalidIdemKey {
		status = statusOf(code) // a malformed header, as idem.ValidKey answers it
	}
	if code == ordercore.EBodyTooLarge {
		// huma counts a body at its limit as too large: operations take a limit one
		// byte over the API's (bodyBytesMax), and the answer names the API's.
		msg = fmt.Sprintf("the body exceeds %d bytes", limit.RequestBodyBytesMax)
	}
	if code == ordercore.EINVALID && len(details) > 0 && (details[0].Location == "path.id" || details[0].Location == "path.gid") {
		// An id longer than any id is the id of nothing: not found, as any unknown id.
		code, status, msg, details = ordercore.ENOTFOUND, http.StatusNotFound, "no resource has that id", nil
	}
	for _, d := range details {
		if len(d.Message) > 200 { // decode errors can quote the whole body
			d.Message = strings.ToValidUTF8(d.Message[:200], "")
		}
		d.Value = nil
	}
	return newProblem(status, code, msg, details)
}

// plainTypeError rewrites encoding/json's type errors, which name Go types ("cannot
// unmarshal number 1.0 into Go struct field .lines.quantity of type int64": a
// fractional 1.0 passes the schema's "integer"), as the location of the field and the
// JSON type it takes.
func plainTypeError(d *huma.ErrorDetail) {
	rest, ok := strings.CutPrefix(d.Message, "json: cannot unmarshal ")
	if !ok {
		return
	}
	what, goType, ok := strings.Cut(rest, " of type ")
	if !ok {
		d.Message = "a value has the wrong type"
		return
	}
	if _, field, ok := strings.Cut(what, "Go struct field "); ok {
		if _, path, ok := strings.Cut(field, "."); ok {
			d.Location = "body." + path
		}
	}
	switch strings.TrimLeft(goType, "*[]") {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		d.Message = "expected an integer"
	case "float32", "float64":
		d.Message = "expected a number"
	case "string":
		d.Message = "expected a string"
	case "bool":
		d.Message = "expected a boolean"
	default:
		d.Message = "the value has the wrong type"
	}
}

func codeOf(status int, msg string, details []*huma.ErrorDetail) string {
	for _, d := range details {
		if d.Location == "header.Idempotency-Key" {
			return ordercore.EInvalidIdemKey
		}
	}
	switch status {
	case http.StatusBadRequest:
		if len(details) > 0 && details[0].Location == "body" || msg == "request body is required" {
			return ordercore.EMalformedJSON
		}
		return ordercore.EINVALID
	case http.StatusRequestEntityTooLarge:
		return ordercore.EBodyTooLarge
	case http.StatusNotFound:
		return ordercore.ENOTFOUND
	case http.StatusUnsupportedMediaType:
		return ordercore.EUnsupportedMediaType
	case http.StatusNotAcceptable:
		return "not_acceptable" // huma's content negotiation; it writes JSON for any Accept
	case http.StatusUnprocessableEntity:
	default:
		if status >= 500 {
			return ordercore.EINTERNAL
		}
		return ordercore.EINVALID
	}
	for _, d := range details {
		switch {
		case d.Message == "unexpected property":
			return ordercore.EUnknownField
		case strings.HasSuffix(d.Location, ".quantity"):
			return ordercore.EInvalidQuantity
		case d.Location == "body.lines" && strings.HasPrefix(d.Message, "expected array length <="):
			return ordercore.ETooManyLines
		case strings.HasSuffix(d.Location, ".currency"):
			return ordercore.EInvalidCurrency
		case d.Location == "body.url":
			return ordercore.EInvalidWebhookURL
		case d.Location == "body.event_types" || strings.HasPrefix(d.Location, "body.event_types["):
			return ordercore.EInvalidEventTypes
		}
	}
	return ordercore.EINVALID
}
