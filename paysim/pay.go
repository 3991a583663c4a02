package paysim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"ordercore"
	"ordercore/channel/sim"
)

// The hosted pay page is the shopper's side: no API key, only the trade's number, as a
// channel's cashier page. A shopper (a person, a browser test, `ordercore paysim pay`)
// decides the trade's fate with Pay or Fail.
var payTemplate = template.Must(template.New("pay").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>paysim: pay {{.Trade.OutTradeNo}}</title></head>
<body>
<h1>paysim</h1>
<p>A payment channel simulator. No money moves.</p>
{{with .Trade}}
<dl>
<dt>Merchant</dt><dd id="merchant">{{.MerchantID}}</dd>
<dt>Trade</dt><dd id="trade">{{.OutTradeNo}}</dd>
<dt>Description</dt><dd id="description">{{.Description}}</dd>
<dt>Amount</dt><dd id="amount">{{$.Amount}}</dd>
<dt>Status</dt><dd id="status">{{.Status}}</dd>
</dl>
{{end}}
{{if .Message}}<p id="message">{{.Message}}</p>{{end}}
{{if .Payable}}
<form method="post" action="{{.Action}}"><input type="hidden" name="result" value="success"><button id="pay" type="submit">Pay</button></form>
<form method="post" action="{{.Action}}"><input type="hidden" name="result" value="fail"><button id="fail" type="submit">Fail</button></form>
{{end}}
</body></html>
`))

type payView struct {
	Trade   sim.Trade
	Amount  string
	Action  string
	Payable bool
	Message string
}

// lookupLocked finds the trade of a pay URL. Numbers are unique per merchant, so one used
// by two merchants needs ?merchant_id=.
func (s *Server) lookupLocked(r *http.Request) (*merchantState, *trade, int, string) {
	no, only := r.PathValue("no"), r.URL.Query().Get("merchant_id")
	var ms *merchantState
	var t *trade
	for _, id := range s.merchantIDs {
		if only != "" && id != only {
			continue
		}
		if o := s.merchants[id].trades[no]; o != nil {
			if t != nil {
				return nil, nil, http.StatusConflict, sim.CodeAmbiguousTrade
			}
			ms, t = s.merchants[id], o
		}
	}
	if t == nil {
		return nil, nil, http.StatusNotFound, sim.CodeTradeNotFound
	}
	return ms, t, 0, ""
}

func (s *Server) payPage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ms, t, status, code := s.lookupLocked(r)
	if t == nil {
		s.mu.Unlock()
		s.renderPay(w, status, payView{Message: code})
		return
	}
	s.expireLocked(ms, t, s.now())
	v := s.viewLocked(r, t)
	s.mu.Unlock()
	s.renderPay(w, http.StatusOK, v)
}

func (s *Server) viewLocked(r *http.Request, t *trade) payView {
	action := "/pay/" + url.PathEscape(t.OutTradeNo)
	if q := r.URL.RawQuery; q != "" {
		action += "?" + q
	}
	payable := t.Status == sim.TradePending || t.Status == sim.TradeFailed || (t.Status == sim.TradeClosed && t.lateShopper)
	return payView{Trade: t.Trade, Amount: t.Amount.String(), Action: action, Payable: payable}
}

func (s *Server) renderPay(w http.ResponseWriter, status int, v payView) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	payTemplate.Execute(w, v)
}

// pay takes the shopper's result from the page's form or from JSON {"result": ...}. A
// form gets the page back (303 to it); JSON gets the trade.
func (s *Server) pay(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, BodyBytesMax)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON := ct == "application/json"
	var result string
	if isJSON {
		var req sim.PayRequest
		if !decode(w, r, &req) {
			return
		}
		result = req.Result
	} else {
		if err := r.ParseForm(); err != nil {
			s.renderPay(w, http.StatusBadRequest, payView{Message: "unreadable form"})
			return
		}
		result = r.PostForm.Get("result")
	}
	fail := func(status int, code, msg string) {
		if isJSON {
			writeError(w, status, code, "%s", msg)
		} else {
			s.renderPay(w, status, payView{Message: msg})
		}
	}
	if result != sim.PayResultSuccess && result != sim.PayResultFail {
		fail(http.StatusUnprocessableEntity, sim.CodeInvalidRequest, `result must be "success" or "fail"`)
		return
	}
	s.mu.Lock()
	ms, t, status, code := s.lookupLocked(r)
	if t == nil {
		s.mu.Unlock()
		fail(status, code, "no such trade")
		return
	}
	now := s.now()
	s.expireLocked(ms, t, now)
	status, code, msg := payRefusal(t, result)
	if code != "" {
		s.mu.Unlock()
		fail(status, code, msg)
		return
	}
	s.payLocked(ms, t, result == sim.PayResultSuccess, now, true)
	out := t.Trade
	s.mu.Unlock()
	if isJSON {
		writeJSON(w, http.StatusOK, out)
		return
	}
	http.Redirect(w, r, "/pay/"+url.PathEscape(out.OutTradeNo)+queryOf(r), http.StatusSeeOther)
}

func queryOf(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.RawQuery
}

// payRefusal says why the shopper cannot do result on t, or nothing. A failed trade can
// still be paid: the shopper tries again, and the money moves.
func payRefusal(t *trade, result string) (int, string, string) {
	switch {
	case t.Status == sim.TradeSucceeded:
		return http.StatusConflict, sim.CodeTradePaid, "trade " + t.OutTradeNo + " is already paid"
	case t.Status == sim.TradeClosed && !t.lateShopper:
		return http.StatusConflict, sim.CodeTradeClosed, "trade " + t.OutTradeNo + " is closed"
	case t.Status == sim.TradeFailed && result == sim.PayResultFail:
		return http.StatusConflict, sim.CodeTradeFailed, "trade " + t.OutTradeNo + " has failed already"
	}
	return 0, "", ""
}

// sweep closes expired trades, so that their trade.closed notifications go out even if
// nobody looks at them.
func (s *Server) sweep() {
	defer s.wg.Done()
	tick := time.NewTicker(expirySweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-s.ctx.Done():
			return
		}
		s.mu.Lock()
		now := s.now()
		for _, id := range s.merchantIDs {
			ms := s.merchants[id]
			for _, t := range ms.order {
				s.expireLocked(ms, t, now)
			}
		}
		s.mu.Unlock()
	}
}

// Pay acts as the shopper of trade outTradeNo at the simulator at baseURL: it pays, or
// fails the payment when success is false, and returns the trade. It is what
// `ordercore paysim pay` and tests use instead of clicking. A refusal is an
// *ordercore.ChannelError with the simulator's code (trade_paid, trade_closed, ...).
func Pay(ctx context.Context, client *http.Client, baseURL, outTradeNo string, success bool) (sim.Trade, error) {
	if client == nil {
		client = http.DefaultClient
	}
	result := sim.PayResultSuccess
	if !success {
		result = sim.PayResultFail
	}
	body, _ := json.Marshal(sim.PayRequest{Result: result})
	u := strings.TrimSuffix(baseURL, "/") + "/pay/" + url.PathEscape(outTradeNo)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return sim.Trade{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return sim.Trade{}, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, BodyBytesMax))
	if err != nil {
		return sim.Trade{}, err
	}
	if resp.StatusCode != http.StatusOK {
		var eb sim.ErrorBody
		if json.Unmarshal(answer, &eb) != nil || eb.Code == "" {
			eb = sim.ErrorBody{Code: "http_" + strconv.Itoa(resp.StatusCode), Message: http.StatusText(resp.StatusCode)}
		}
		return sim.Trade{}, &ordercore.ChannelError{Channel: "paysim", Code: eb.Code, Message: eb.Message}
	}
	var tr sim.Trade
	if err := json.Unmarshal(answer, &tr); err != nil {
		return sim.Trade{}, fmt.Errorf("paysim: unreadable answer: %w", err)
	}
	return tr, nil
}
