// Package outbound is the one way channel adapters call a payment channel: every call
// has a deadline, and every answer that does not prove the call's outcome (a timeout, a
// dropped connection, a 5xx, a 429) becomes ordercore.ErrOutcomeUnknown, so that callers
// record UNKNOWN and resolve it by a query instead of taking it for a failure.
//
// It imports only the root package and the standard library.
package outbound

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"ordercore"
)

// Bounds of one outbound call.
const (
	// TimeoutDefault is used when a channel's configuration sets none: long enough for a
	// channel's p99, short enough that a shopper is not left waiting.
	TimeoutDefault = 10 * time.Second
	// ResponseBytesMax bounds what is read of a channel's answer.
	ResponseBytesMax = 1 << 20
)

// Do sends req with the timeout (TimeoutDefault when zero) and returns the status and the
// body of a definite answer (any 2xx, 3xx or 4xx other than 408 and 429). Everything else
// is an error wrapping ordercore.ErrOutcomeUnknown.
func Do(ctx context.Context, client *http.Client, req *http.Request, timeout time.Duration) (int, []byte, error) {
	if timeout <= 0 {
		timeout = TimeoutDefault
	}
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %s %s: %v", ordercore.ErrOutcomeUnknown, req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, ResponseBytesMax+1))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %s %s: read answer: %v", ordercore.ErrOutcomeUnknown, req.Method, req.URL.Path, err)
	}
	if len(body) > ResponseBytesMax {
		return 0, nil, fmt.Errorf("%w: %s %s: answer over %d bytes", ordercore.ErrOutcomeUnknown, req.Method, req.URL.Path, ResponseBytesMax)
	}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests {
		return 0, nil, fmt.Errorf("%w: %s %s: status %d", ordercore.ErrOutcomeUnknown, req.Method, req.URL.Path, resp.StatusCode)
	}
	return resp.StatusCode, body, nil
}
