package app_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"ordercore/app"
	"ordercore/barrier"
)

// dtmClient speaks to a DTM server exactly as dtmcli (dtm-labs/client) does: the same
// paths, bodies and query parameters, and its rule for reading answers: a call to the
// server failed unless it answered 200 without FAILURE in the body.
type dtmClient struct {
	server string // .../api/dtmsvr
	hc     *http.Client
}

func (c *dtmClient) callDtm(op string, body any) error {
	b, _ := json.Marshal(body)
	resp, err := c.hc.Post(c.server+"/"+op, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.Contains(string(text), "FAILURE") {
		return errors.New(string(text))
	}
	return nil
}

func (c *dtmClient) newGid(t *testing.T) string {
	resp, err := c.hc.Get(c.server + "/newGid")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Gid       string `json:"gid"`
		DtmResult string `json:"dtm_result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.DtmResult != "SUCCESS" || out.Gid == "" {
		t.Fatalf("newGid: %+v %v", out, err)
	}
	return out.Gid
}

// saga submits like dtmcli.Saga.Add(...).Submit(): steps of action/compensate URLs and the
// payloads as JSON strings.
func (c *dtmClient) saga(gid string, steps [][2]string, payloads []any, wait bool) error {
	body := map[string]any{"gid": gid, "trans_type": "saga", "protocol": "http", "steps": []map[string]string{}, "payloads": []string{}, "wait_result": wait}
	for i, st := range steps {
		body["steps"] = append(body["steps"].([]map[string]string), map[string]string{"action": st[0], "compensate": st[1]})
		p, _ := json.Marshal(payloads[i])
		body["payloads"] = append(body["payloads"].([]string), string(p))
	}
	return c.callDtm("submit", body)
}

// tcc runs dtmcli.TccGlobalTransaction: prepare, then per branch registerBranch and a try
// the client makes itself; submit if every try succeeded, else abort.
func (c *dtmClient) tcc(gid string, branches [][3]string, payload any) error {
	base := map[string]any{"gid": gid, "trans_type": "tcc", "protocol": "http"}
	if err := c.callDtm("prepare", base); err != nil {
		return err
	}
	var rerr error
	for i, b := range branches {
		branchID := fmt.Sprintf("%02d", i+1)
		data, _ := json.Marshal(payload)
		if rerr = c.callDtm("registerBranch", map[string]string{"gid": gid, "trans_type": "tcc", "data": string(data),
			"branch_id": branchID, "confirm": b[1], "cancel": b[2]}); rerr != nil {
			break
		}
		q := url.Values{"dtm": {c.server}, "gid": {gid}, "branch_id": {branchID}, "trans_type": {"tcc"}, "op": {"try"}}
		resp, err := c.hc.Post(b[0]+"?"+q.Encode(), "application/json", bytes.NewReader(data))
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

func (c *dtmClient) query(t *testing.T, gid string) (status string, branches []map[string]any) {
	resp, err := c.hc.Get(c.server + "/query?gid=" + gid)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Branches    []map[string]any `json:"branches"`
		Transaction *struct {
			Status string `json:"status"`
		} `json:"transaction"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Transaction == nil {
		return "", out.Branches
	}
	return out.Transaction.Status, out.Branches
}

// bank is a DTM-style participant (dtm-examples' busi): two accounts, transfers out of
// one and into the other, each handler behind the barrier. The payload's transInResult
// or transOutResult "FAILURE" makes that branch fail for good, as in DTM's examples.
type bank struct {
	db  *sql.DB
	srv *httptest.Server
}

func newBank(t *testing.T) *bank {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "bank.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d := barrier.Dialect{Engine: barrier.SQLite}
	ctx := context.Background()
	if err := barrier.Migrate(ctx, db, d); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE TABLE account (id TEXT PRIMARY KEY, balance INTEGER NOT NULL, frozen INTEGER NOT NULL DEFAULT 0)",
		"INSERT INTO account VALUES ('out', 1000, 0), ('in', 1000, 0)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	b := &bank{db: db}
	mux := http.NewServeMux()
	move := func(account string, sign int64, failOn string, col string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			br, err := barrier.FromQuery(r.URL.Query())
			if err != nil {
				barrier.WriteHTTP(w, err)
				return
			}
			var req struct {
				Amount         int64  `json:"amount"`
				TransInResult  string `json:"transInResult"`
				TransOutResult string `json:"transOutResult"`
			}
			json.NewDecoder(r.Body).Decode(&req)
			if failOn == "in" && req.TransInResult == "FAILURE" || failOn == "out" && req.TransOutResult == "FAILURE" {
				barrier.WriteHTTP(w, barrier.ErrFailure)
				return
			}
			err = barrier.CallDB(r.Context(), db, d, br, func(tx *sql.Tx) error {
				_, err := tx.Exec("UPDATE account SET "+col+" = "+col+" + ? WHERE id = ?", sign*req.Amount, account)
				return err
			})
			barrier.WriteHTTP(w, err)
		}
	}
	// Saga: the action moves the money, the compensation moves it back.
	mux.HandleFunc("/TransOut", move("out", -1, "out", "balance"))
	mux.HandleFunc("/TransOutRevert", move("out", +1, "", "balance"))
	mux.HandleFunc("/TransIn", move("in", +1, "in", "balance"))
	mux.HandleFunc("/TransInRevert", move("in", -1, "", "balance"))
	// TCC: the try freezes, the confirm moves, the cancel unfreezes.
	mux.HandleFunc("/TccTransOutTry", move("out", +1, "out", "frozen"))
	mux.HandleFunc("/TccTransOutConfirm", func(w http.ResponseWriter, r *http.Request) {
		br, _ := barrier.FromQuery(r.URL.Query())
		var req struct{ Amount int64 }
		json.NewDecoder(r.Body).Decode(&req)
		barrier.WriteHTTP(w, barrier.CallDB(r.Context(), db, d, br, func(tx *sql.Tx) error {
			_, err := tx.Exec("UPDATE account SET frozen = frozen - ?, balance = balance - ? WHERE id = 'out'", req.Amount, req.Amount)
			return err
		}))
	})
	mux.HandleFunc("/TccTransOutCancel", move("out", -1, "", "frozen"))
	mux.HandleFunc("/TccTransInTry", move("in", +1, "in", "frozen"))
	mux.HandleFunc("/TccTransInConfirm", func(w http.ResponseWriter, r *http.Request) {
		br, _ := barrier.FromQuery(r.URL.Query())
		var req struct{ Amount int64 }
		json.NewDecoder(r.Body).Decode(&req)
		barrier.WriteHTTP(w, barrier.CallDB(r.Context(), db, d, br, func(tx *sql.Tx) error {
			_, err := tx.Exec("UPDATE account SET frozen = frozen - ?, balance = balance + ? WHERE id = 'in'", req.Amount, req.Amount)
			return err
		}))
	})
	mux.HandleFunc("/TccTransInCancel", move("in", -1, "", "frozen"))
	b.srv = httptest.NewServer(mux)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *bank) balances(t *testing.T) (out, in, frozen int64) {
	t.Helper()
	if err := b.db.QueryRow("SELECT (SELECT balance FROM account WHERE id='out'), (SELECT balance FROM account WHERE id='in'), (SELECT sum(frozen) FROM account)").Scan(&out, &in, &frozen); err != nil {
		t.Fatal(err)
	}
	return
}

func waitDTM(t *testing.T, c *dtmClient, gid, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := c.query(t, gid)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("transaction %s is %q, want %q", gid, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDTMProtocol drives ordercore through DTM's HTTP protocol as a DTM client and DTM
// participants would: a saga that succeeds, a saga whose second branch fails and is
// compensated, a TCC confirmed and a TCC cancelled, each checked on the participant's
// books (net zero for the rolled-back ones) and through DTM's query.
func TestDTMProtocol(t *testing.T) {
	t.Parallel()
	a := runApp(t, app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()})
	c := &dtmClient{server: "http://" + a.a.Addr() + "/api/dtmsvr", hc: &http.Client{Timeout: 10 * time.Second}}
	bk := newBank(t)
	busi := bk.srv.URL
	pay := map[string]any{"amount": 30}

	gid := c.newGid(t)
	if err := c.saga(gid, [][2]string{{busi + "/TransOut", busi + "/TransOutRevert"}, {busi + "/TransIn", busi + "/TransInRevert"}},
		[]any{pay, pay}, false); err != nil {
		t.Fatalf("saga submit: %v", err)
	}
	waitDTM(t, c, gid, "succeed")
	if out, in, _ := bk.balances(t); out != 970 || in != 1030 {
		t.Fatalf("after a successful saga: out %d in %d, want 970 1030", out, in)
	}
	if err := c.saga(gid, [][2]string{{busi + "/TransOut", busi + "/TransOutRevert"}, {busi + "/TransIn", busi + "/TransInRevert"}},
		[]any{pay, pay}, false); err == nil || !strings.Contains(err.Error(), "current status 'succeed'") {
		t.Fatalf("a submit of a saga that succeeded already: %v, want FAILURE as DTM answers", err)
	}

	failIn := map[string]any{"amount": 30, "transInResult": "FAILURE"}
	gid2 := c.newGid(t)
	err := c.saga(gid2, [][2]string{{busi + "/TransOut", busi + "/TransOutRevert"}, {busi + "/TransIn", busi + "/TransInRevert"}},
		[]any{failIn, failIn}, true)
	if err == nil || !strings.Contains(err.Error(), "FAILURE") {
		t.Fatalf("submit with wait_result of a failing saga: %v, want FAILURE", err)
	}
	waitDTM(t, c, gid2, "failed")
	if out, in, _ := bk.balances(t); out != 970 || in != 1030 {
		t.Fatalf("after a compensated saga: out %d in %d, want the books as before it (970 1030)", out, in)
	}
	_, branches := c.query(t, gid2)
	if len(branches) != 4 {
		t.Fatalf("query lists %d branch operations, want 4 (action and compensate of 2 steps): %v", len(branches), branches)
	}

	gid3 := c.newGid(t)
	if err := c.tcc(gid3, [][3]string{{busi + "/TccTransOutTry", busi + "/TccTransOutConfirm", busi + "/TccTransOutCancel"},
		{busi + "/TccTransInTry", busi + "/TccTransInConfirm", busi + "/TccTransInCancel"}}, pay); err != nil {
		t.Fatalf("tcc: %v", err)
	}
	waitDTM(t, c, gid3, "succeed")
	if out, in, frozen := bk.balances(t); out != 940 || in != 1060 || frozen != 0 {
		t.Fatalf("after a confirmed TCC: out %d in %d frozen %d, want 940 1060 0", out, in, frozen)
	}

	gid4 := c.newGid(t)
	err = c.tcc(gid4, [][3]string{{busi + "/TccTransOutTry", busi + "/TccTransOutConfirm", busi + "/TccTransOutCancel"},
		{busi + "/TccTransInTry", busi + "/TccTransInConfirm", busi + "/TccTransInCancel"}}, failIn)
	if err == nil {
		t.Fatal("a TCC whose try failed was not rolled back")
	}
	waitDTM(t, c, gid4, "failed")
	if out, in, frozen := bk.balances(t); out != 940 || in != 1060 || frozen != 0 {
		t.Fatalf("after a cancelled TCC: out %d in %d frozen %d, want 940 1060 0 (the failed try's cancel is a null compensation)", out, in, frozen)
	}

	// Bad input is refused the DTM way: 409 FAILURE, nothing stored.
	if err := c.callDtm("submit", map[string]any{"gid": "bad gid!", "trans_type": "saga"}); err == nil {
		t.Fatal("a bad gid was accepted")
	}
	if err := c.callDtm("submit", map[string]any{"gid": "g-xa", "trans_type": "xa"}); err == nil {
		t.Fatal("an unsupported trans_type was accepted")
	}
	if st, _ := c.query(t, "g-xa"); st != "" {
		t.Fatalf("a refused submit left a transaction (%s)", st)
	}
}
