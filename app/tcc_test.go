package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"ordercore/app"
	"ordercore/internal/verify"
)

// stockClient talks to ordercore's HTTP API for the TCC stock tests.
type stockClient struct {
	t    *testing.T
	base string // http://host:port
	hc   *http.Client
}

func (c *stockClient) do(method, path string, body any) (int, string) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(text)
}

// stock reads a SKU's reserved and sold units.
func (c *stockClient) stock(sku string) (reserved, sold int64) {
	c.t.Helper()
	status, body := c.do(http.MethodGet, "/v1/skus/"+sku, nil)
	var s struct{ Reserved, Sold int64 }
	if err := json.Unmarshal([]byte(body), &s); status != http.StatusOK || err != nil {
		c.t.Fatalf("GET sku %s: %d %s", sku, status, body)
	}
	return s.Reserved, s.Sold
}

// participant calls one of the stock endpoints as a coordinator does.
func (c *stockClient) participant(op, gid, branch, transType string, body any) (int, string) {
	c.t.Helper()
	q := url.Values{"gid": {gid}, "trans_type": {transType}, "branch_id": {branch}, "op": {op}}
	return c.do(http.MethodPost, "/v1/tcc/stock/"+op+"?"+q.Encode(), body)
}

// holds reads GET /v1/tcc/stock/holds/{gid}: each branch's hold status ("" for none) and
// barrier rows as "op:reason".
func (c *stockClient) holds(gid string) (map[string]string, map[string][]string) {
	c.t.Helper()
	status, body := c.do(http.MethodGet, "/v1/tcc/stock/holds/"+url.PathEscape(gid), nil)
	if status != http.StatusOK {
		c.t.Fatalf("GET holds of %s: %d %s", gid, status, body)
	}
	var v struct {
		Holds []struct {
			BranchID string `json:"branch_id"`
			Status   string `json:"status"`
			Timeline []struct {
				Type string `json:"type"`
			} `json:"timeline"`
		} `json:"holds"`
		Barrier []struct {
			BranchID string `json:"branch_id"`
			Op       string `json:"op"`
			Reason   string `json:"reason"`
		} `json:"barrier"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		c.t.Fatal(err)
	}
	holds, rows := map[string]string{}, map[string][]string{}
	for _, h := range v.Holds {
		holds[h.BranchID] = h.Status
		if len(h.Timeline) == 0 || h.Timeline[0].Type != "stock.held" {
			c.t.Errorf("hold of %s/%s: timeline %+v, want it to start with stock.held", gid, h.BranchID, h.Timeline)
		}
	}
	for _, r := range v.Barrier {
		rows[r.BranchID] = append(rows[r.BranchID], r.Op+":"+r.Reason)
	}
	return holds, rows
}

func lines(sku string, n int) map[string]any {
	return map[string]any{"lines": []map[string]any{{"sku": sku, "quantity": n}}}
}

// TestTCCStockOverHTTP: ordercore's stock is a TCC participant of global transactions
// driven over HTTP by ordercore's own DTM-compatible coordinator, exactly as an outside
// order system would drive it: a DTM client's TCC confirmed (stock sold), a DTM client's
// TCC aborted after a try refused for lack of stock (the other branch's units back, the
// refused branch a null compensation), TCCs submitted to /v1/sagas with the stock
// endpoints as try, confirm and cancel, and the participant's answers to duplicates,
// hanging tries and bad input. On SQLite and on PostgreSQL; `ordercore verify` passes
// after each.
func TestTCCStockOverHTTP(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		tccOverHTTP(t, app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()})
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		tccOverHTTP(t, app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), DB: pgSchemaURL(t)})
	})
}

func tccOverHTTP(t *testing.T, cfg app.Config) {
	r := runApp(t, cfg)
	base := "http://" + r.a.Addr()
	hc := &http.Client{Timeout: 10 * time.Second}
	c := &stockClient{t: t, base: base, hc: hc}
	dtm := &dtmClient{server: base + "/api/dtmsvr", hc: hc}
	if status, body := c.do(http.MethodPost, "/v1/skus", map[string]any{"id": "widget", "name": "Widget",
		"price": map[string]any{"amount": 500, "currency": "USD"}, "stock": 10}); status != http.StatusCreated {
		t.Fatalf("create sku: %d %s", status, body)
	}
	try, confirm, cancel := base+"/v1/tcc/stock/try", base+"/v1/tcc/stock/confirm", base+"/v1/tcc/stock/cancel"

	// A DTM client's TCC, confirmed: the try holds 3, the confirm sells them.
	gid := dtm.newGid(t)
	if err := dtm.tcc(gid, [][3]string{{try, confirm, cancel}}, lines("widget", 3)); err != nil {
		t.Fatalf("tcc: %v", err)
	}
	waitDTM(t, dtm, gid, "succeed")
	if reserved, sold := c.stock("widget"); reserved != 0 || sold != 3 {
		t.Fatalf("after a confirmed TCC: reserved %d sold %d, want 0 and 3", reserved, sold)
	}
	holds, rows := c.holds(gid)
	if holds["01"] != "committed" || strings.Join(rows["01"], ",") != "confirm:confirm,try:try" {
		t.Errorf("confirmed TCC: holds %v, barrier %v", holds, rows)
	}

	// A DTM client's TCC whose second try asks for more than there is: the client aborts,
	// the coordinator cancels both branches, the first's 4 units come back, and the
	// second's cancel is a null compensation (its refused try left no row).
	gid3 := dtm.newGid(t)
	err := tccTwoPayloads(dtm, gid3, try, confirm, cancel, lines("widget", 4), lines("widget", 5))
	if err == nil || !strings.Contains(err.Error(), "insufficient_stock") {
		t.Fatalf("a TCC whose try exceeds the stock: %v, want the try refused with insufficient_stock", err)
	}
	waitDTM(t, dtm, gid3, "failed")
	if reserved, sold := c.stock("widget"); reserved != 0 || sold != 3 {
		t.Fatalf("after an aborted TCC: reserved %d sold %d, want the units back (0 and 3)", reserved, sold)
	}
	holds, rows = c.holds(gid3)
	if holds["01"] != "released" || holds["02"] != "" || strings.Join(rows["02"], ",") != "cancel:cancel,try:cancel" {
		t.Errorf("aborted TCC: holds %v, barrier %v", holds, rows)
	}
	// The branch that was cancelled before its try took effect refuses a late try.
	if status, body := c.participant("try", gid3, "02", "tcc", lines("widget", 1)); status != http.StatusConflict ||
		!strings.Contains(body, `"dtm_result":"FAILURE"`) || !strings.Contains(body, `"code":"hanging_try"`) {
		t.Errorf("late try of a cancelled branch: %d %s, want 409 FAILURE hanging_try", status, body)
	}

	// TCCs through /v1/sagas, ordercore running the tries: one completes (2 more sold),
	// one whose second try fails is compensated.
	sagaTCC := func(gid string, quantities ...int) string {
		var steps []map[string]any
		for i, q := range quantities {
			payload, _ := json.Marshal(lines("widget", q))
			steps = append(steps, map[string]any{"name": fmt.Sprintf("stock-%d", i+1),
				"action":  map[string]any{"url": try, "payload": json.RawMessage(payload)},
				"confirm": map[string]any{"url": confirm}, "compensate": map[string]any{"url": cancel}})
		}
		status, body := c.do(http.MethodPost, "/v1/sagas?wait_seconds=10", map[string]any{"gid": gid, "kind": "tcc", "steps": steps})
		var s struct{ Status string }
		if err := json.Unmarshal([]byte(body), &s); status != http.StatusOK || err != nil {
			t.Fatalf("saga %s: %d %s", gid, status, body)
		}
		return s.Status
	}
	if got := sagaTCC("saga-stock-ok", 2); got != "completed" {
		t.Errorf("TCC saga: %s, want completed", got)
	}
	if got := sagaTCC("saga-stock-short", 1, 50); got != "compensated" {
		t.Errorf("TCC saga with a try beyond the stock: %s, want compensated", got)
	}
	if reserved, sold := c.stock("widget"); reserved != 0 || sold != 5 {
		t.Fatalf("after the sagas: reserved %d sold %d, want 0 and 5", reserved, sold)
	}

	// The participant's own answers: duplicates succeed, the outcome says which, and no
	// success body carries the client's text (a gid containing ONGOING must not read as
	// "not finished" to a DTM client).
	for i, want := range []string{"applied", "duplicate"} {
		status, body := c.participant("try", "ONGOING-gid", "01", "tcc", lines("widget", 1))
		if status != http.StatusOK || body != `{"dtm_result":"SUCCESS","outcome":"`+want+`"}`+"\n" {
			t.Errorf("try %d: %d %q, want 200 with outcome %s", i+1, status, body, want)
		}
	}
	for i, want := range []string{"applied", "duplicate"} {
		if status, body := c.participant("cancel", "ONGOING-gid", "01", "tcc", nil); status != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("cancel %d: %d %s, want 200 %s", i+1, status, body, want)
		}
	}
	if status, body := c.participant("cancel", "never-tried", "01", "tcc", nil); status != http.StatusOK || !strings.Contains(body, "null_compensation") {
		t.Errorf("cancel before try: %d %s, want 200 null_compensation", status, body)
	}
	if status, body := c.participant("confirm", "never-tried", "01", "tcc", nil); status != http.StatusConflict || !strings.Contains(body, `"code":"not_found"`) {
		t.Errorf("confirm without a hold: %d %s, want 409 not_found", status, body)
	}
	for _, bad := range []struct {
		name, op, gid, transType string
		body                     any
		code                     string
	}{
		{"missing gid", "try", "", "tcc", lines("widget", 1), "invalid_branch"},
		{"saga branch", "try", "g-saga", "saga", lines("widget", 1), "invalid_branch"},
		{"unknown sku", "try", "g-unknown", "tcc", lines("gadget", 1), "unknown_sku"},
		{"zero quantity", "try", "g-zero", "tcc", lines("widget", 0), "invalid_quantity"},
		{"no lines", "try", "g-empty", "tcc", map[string]any{}, "too_many_lines"},
		{"not json", "try", "g-json", "tcc", json.RawMessage(`{"lines":`), "malformed_json"},
		// A refusal quoting a SKU that holds the word must not read as ONGOING, which
		// DTM coordinators look for first: they would retry it as not finished.
		{"unknown sku named ONGOING", "try", "g-ONGOING", "tcc", lines("ONGOING-tee", 1), "unknown_sku"},
	} {
		status, body := c.participant(bad.op, bad.gid, "01", bad.transType, bad.body)
		if status != http.StatusConflict || !strings.Contains(body, `"dtm_result":"FAILURE"`) || !strings.Contains(body, `"code":"`+bad.code+`"`) ||
			strings.Contains(body, "ONGOING") {
			t.Errorf("%s: %d %s, want 409 FAILURE %s, without ONGOING", bad.name, status, body, bad.code)
		}
	}
	q := url.Values{"gid": {"g-op"}, "trans_type": {"tcc"}, "branch_id": {"01"}, "op": {"cancel"}}
	if status, body := c.do(http.MethodPost, "/v1/tcc/stock/try?"+q.Encode(), lines("widget", 1)); status != http.StatusConflict || !strings.Contains(body, "invalid_branch") {
		t.Errorf("op cancel sent to the try endpoint: %d %s, want 409 invalid_branch", status, body)
	}
	if status, _ := c.do(http.MethodGet, "/v1/tcc/stock/holds/no-such-gid", nil); status != http.StatusNotFound {
		t.Errorf("holds of an unknown gid: %d, want 404", status)
	}
	if reserved, sold := c.stock("widget"); reserved != 0 || sold != 5 {
		t.Fatalf("at the end: reserved %d sold %d, want 0 and 5", reserved, sold)
	}

	snap, err := r.a.DB.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Holds) == 0 || len(snap.Barriers) == 0 {
		t.Fatalf("dump has %d holds and %d barrier rows", len(snap.Holds), len(snap.Barriers))
	}
	for _, v := range verify.Check(snap, time.Now()) {
		t.Error(v)
	}
}

// tccTwoPayloads runs a DTM client's TCC of two stock branches with a payload each (the
// dtmClient's tcc sends one payload to every branch): prepare, register and try each,
// abort at the first refusal, submit otherwise.
func tccTwoPayloads(c *dtmClient, gid, try, confirm, cancel string, first, second any) error {
	base := map[string]any{"gid": gid, "trans_type": "tcc", "protocol": "http"}
	if err := c.callDtm("prepare", base); err != nil {
		return err
	}
	var rerr error
	for i, p := range []any{first, second} {
		branchID := fmt.Sprintf("%02d", i+1)
		data, _ := json.Marshal(p)
		if rerr = c.callDtm("registerBranch", map[string]string{"gid": gid, "trans_type": "tcc", "data": string(data),
			"branch_id": branchID, "confirm": confirm, "cancel": cancel}); rerr != nil {
			break
		}
		q := url.Values{"dtm": {c.server}, "gid": {gid}, "branch_id": {branchID}, "trans_type": {"tcc"}, "op": {"try"}}
		resp, err := c.hc.Post(try+"?"+q.Encode(), "application/json", bytes.NewReader(data))
		if err != nil {
			rerr = err
			break
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.Contains(string(text), "FAILURE") {
			rerr = fmt.Errorf("try %s: %d %s", branchID, resp.StatusCode, text)
			break
		}
	}
	if rerr != nil {
		base["rollback_reason"] = rerr.Error()
		if err := c.callDtm("abort", base); err != nil {
			return err
		}
		return rerr
	}
	return c.callDtm("submit", base)
}
