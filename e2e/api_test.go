package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The wire format, written out here rather than imported: the suites see what a client
// sees, so a change to the Go types that changes the JSON shows up as a failure.

type wireMoney struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

type wireLine struct {
	SKU         string    `json:"sku"`
	Quantity    int64     `json:"quantity"`
	UnitPrice   wireMoney `json:"unit_price"`
	Amount      wireMoney `json:"amount"`
	Reservation string    `json:"reservation"`
}

type wireOrder struct {
	ID      string     `json:"id"`
	UserID  string     `json:"user_id"`
	Status  string     `json:"status"`
	Amount  wireMoney  `json:"amount"`
	Lines   []wireLine `json:"lines"`
	Version int64      `json:"version"`
}

type wireSKU struct {
	ID        string    `json:"id"`
	Price     wireMoney `json:"price"`
	Total     int64     `json:"total"`
	Reserved  int64     `json:"reserved"`
	Sold      int64     `json:"sold"`
	Available int64     `json:"available"`
}

type wireProblem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

type wireOrderPage struct {
	Orders     []wireOrder `json:"orders"`
	NextCursor string      `json:"next_cursor"`
}

type lineReq struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

type placeReq struct {
	UserID           string    `json:"user_id"`
	Lines            []lineReq `json:"lines"`
	ExpiresInSeconds int64     `json:"expires_in_seconds,omitempty"`
}

type createSKUReq struct {
	ID    string    `json:"id"`
	Name  string    `json:"name"`
	Price wireMoney `json:"price"`
	Stock int64     `json:"stock"`
}

type manualPaymentReq struct {
	Amount    wireMoney `json:"amount"`
	Reference string    `json:"reference"`
}

// api is an HTTP client of one child server. Every call is bounded by requestTimeout.
type api struct {
	base string
	hc   *http.Client
}

func newAPI(base string) *api {
	tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	return &api{base: base, hc: &http.Client{Timeout: requestTimeout, Transport: tr}}
}

// reply is an answer from the server. status is set as soon as the status line arrived,
// even if the call then failed while reading the body.
type reply struct {
	status   int
	replayed bool
	body     []byte
}

// do sends one request. An error means the request got no complete answer: it may or may
// not have taken effect.
func (a *api) do(method, path string, body any, idemKey string) (reply, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return reply{}, fmt.Errorf("encode %T: %w", body, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return reply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	r := reply{status: resp.StatusCode, replayed: resp.Header.Get("Idempotent-Replayed") == "true"}
	r.body, err = io.ReadAll(io.LimitReader(resp.Body, replyBytesMax))
	return r, err
}

func (r reply) problem() wireProblem {
	var p wireProblem
	_ = json.Unmarshal(r.body, &p)
	return p
}

func (r reply) String() string {
	b := r.body
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("%d %s", r.status, b)
}

// getJSON GETs path and decodes a 200 answer into v.
func (a *api) getJSON(path string, v any) error {
	r, err := a.do(http.MethodGet, path, nil, "")
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if r.status != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, r)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", path, err)
	}
	return nil
}

// ordersOfUser lists every order of user, following the cursor at most pagesMax times.
func (a *api) ordersOfUser(user string, pagesMax int) ([]wireOrder, error) {
	var out []wireOrder
	cursor := ""
	for range pagesMax {
		q := url.Values{"user_id": {user}, "limit": {strconv.Itoa(500)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page wireOrderPage
		if err := a.getJSON("/v1/orders?"+q.Encode(), &page); err != nil {
			return nil, err
		}
		out = append(out, page.Orders...)
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
	return nil, fmt.Errorf("orders of %s: more than %d pages", user, pagesMax)
}
