package paysim

import (
	"bytes"
	"cmp"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"ordercore/channel/sim"
)

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /v1/trades", s.api(s.createTrade))
	m.HandleFunc("GET /v1/trades", s.api(s.listTrades))
	m.HandleFunc("GET /v1/trades/{no}", s.api(s.queryTrade))
	m.HandleFunc("POST /v1/trades/{no}/close", s.api(s.closeTrade))
	m.HandleFunc("POST /v1/trades/{no}/refunds", s.api(s.createRefund))
	m.HandleFunc("GET /v1/trades/{no}/refunds/{rno}", s.api(s.queryRefund))
	m.HandleFunc("GET /v1/statements/{day}", s.api(s.statement))
	// The operators' view is exempt from the error fault: tests read it to see what the
	// faults did.
	m.HandleFunc("GET /v1/notifications", s.authed(s.listNotifications))
	m.HandleFunc("GET /pay/{no}", s.payPage)
	m.HandleFunc("POST /pay/{no}", s.pay)
	s.mux = m
}

type apiHandler func(w http.ResponseWriter, r *http.Request, ms *merchantState)

// authed checks the merchant header and its API key.
func (s *Server) authed(h apiHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ms := s.merchants[r.Header.Get(sim.HeaderMerchant)] // never written after New
		if ms == nil {
			writeError(w, http.StatusUnauthorized, sim.CodeUnknownMerchant, "unknown merchant %q", r.Header.Get(sim.HeaderMerchant))
			return
		}
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(key), []byte(ms.m.APIKey)) != 1 {
			writeError(w, http.StatusUnauthorized, sim.CodeInvalidAPIKey, "wrong API key for merchant %s", ms.id)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, BodyBytesMax)
		h(w, r, ms)
	}
}

// api is authed plus the error fault: a 500 before anything happens.
func (s *Server) api(h apiHandler) http.HandlerFunc {
	return s.authed(func(w http.ResponseWriter, r *http.Request, ms *merchantState) {
		if s.dice.hit(dError, s.cfg.Faults.ErrorRate) {
			writeError(w, http.StatusInternalServerError, sim.CodeInternal, "injected error")
			return
		}
		h(w, r, ms)
	})
}

// hold is the timeout fault: the call has taken effect, and its answer is held until the
// client gives up (its context ends), the hang passes or the server closes.
func (s *Server) hold(r *http.Request) {
	if !s.dice.hit(dTimeout, s.cfg.Faults.TimeoutRate) {
		return
	}
	t := time.NewTimer(s.cfg.Faults.Hang)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	case <-s.ctx.Done():
	}
}

func (s *Server) createTrade(w http.ResponseWriter, r *http.Request, ms *merchantState) {
	var req sim.CreateTradeRequest
	if !decode(w, r, &req) {
		return
	}
	if msg := validTrade(req, ms.id); msg != "" {
		writeError(w, http.StatusUnprocessableEntity, sim.CodeInvalidRequest, "%s", msg)
		return
	}
	s.mu.Lock()
	now := s.now()
	t := ms.trades[req.OutTradeNo]
	switch {
	case t != nil && !sameTrade(t, req):
		s.mu.Unlock()
		writeError(w, http.StatusConflict, sim.CodeOutTradeNoReused, "out_trade_no %s was used for another amount or order", req.OutTradeNo)
		return
	case t == nil && s.tradeCount >= TradesMax:
		s.mu.Unlock()
		writeError(w, http.StatusInsufficientStorage, sim.CodeCapacity, "the simulator holds %d trades", TradesMax)
		return
	case t == nil:
		exp := req.ExpiresAt
		if exp.IsZero() {
			exp = now.Add(TradeExpiryDefault)
		}
		s.seq++
		s.tradeCount++
		t = &trade{seq: s.seq, notifyURL: req.NotifyURL, Trade: sim.Trade{
			MerchantID: ms.id, OutTradeNo: req.OutTradeNo, OrderID: req.OrderID,
			TxnID: s.newID("txn_", now), Status: sim.TradePending, Amount: req.Amount,
			PaidAmount: zero(req.Amount.Currency), Refunded: zero(req.Amount.Currency),
			Description: req.Description, CreatedAt: now, ExpiresAt: exp.UTC(),
		}}
		ms.trades[t.OutTradeNo] = t
		ms.order = append(ms.order, t)
	}
	s.expireLocked(ms, t, now)
	out := t.Trade
	s.mu.Unlock()
	s.hold(r)
	writeJSON(w, http.StatusOK, out)
}

func validTrade(req sim.CreateTradeRequest, merchant string) string {
	switch {
	case req.MerchantID != merchant:
		return "merchant_id must be the caller's"
	case !validNo(req.OutTradeNo):
		return fmt.Sprintf("out_trade_no must be 1 to %d of A-Z a-z 0-9 - _", outTradeNoBytesMax)
	case req.Amount.Amount <= 0 || !req.Amount.Currency.Valid():
		return "amount must be positive, in a supported currency"
	case len(req.Description) > descriptionBytesMax || len(req.OrderID) > outTradeNoBytesMax:
		return "description or order_id too long"
	case !validURL(req.NotifyURL):
		return "notify_url must be empty or an absolute http(s) URL"
	}
	return ""
}

// validNo keeps merchant numbers safe as one path segment.
func validNo(no string) bool {
	if no == "" || len(no) > outTradeNoBytesMax {
		return false
	}
	for _, c := range []byte(no) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func validURL(s string) bool {
	if s == "" {
		return true
	}
	u, err := url.Parse(s)
	return err == nil && len(s) <= urlBytesMax && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// findTrade returns the trade of the path, brought up to date, or answers 404 (and
// unlocks). Called with s.mu held.
func (s *Server) findTradeLocked(w http.ResponseWriter, r *http.Request, ms *merchantState, now time.Time) *trade {
	t := ms.trades[r.PathValue("no")]
	if t == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, sim.CodeTradeNotFound, "no trade %q", r.PathValue("no"))
		return nil
	}
	s.expireLocked(ms, t, now)
	return t
}

func (s *Server) queryTrade(w http.ResponseWriter, r *http.Request, ms *merchantState) {
	s.mu.Lock()
	t := s.findTradeLocked(w, r, ms, s.now())
	if t == nil {
		return
	}
	out := t.Trade
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) closeTrade(w http.ResponseWriter, r *http.Request, ms *merchantState) {
	s.mu.Lock()
	now := s.now()
	t := s.findTradeLocked(w, r, ms, now)
	if t == nil {
		return
	}
	if t.Status == sim.TradeSucceeded {
		s.mu.Unlock()
		writeError(w, http.StatusConflict, sim.CodeTradePaid, "trade %s is paid", t.OutTradeNo)
		return
	}
	if t.Status != sim.TradeClosed {
		// No notification: the merchant asked for it and has the answer.
		t.Status = sim.TradeClosed
		if s.dice.hit(dPayAfterClose, s.cfg.Faults.PayAfterCloseRate) {
			t.lateShopper = true
			s.later(s.scaled(PayAfterCloseDelay), func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				if t.Status == sim.TradeClosed {
					s.payLocked(ms, t, true, s.now(), true)
				}
			})
		}
	}
	out := t.Trade
	s.mu.Unlock()
	s.hold(r)
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createRefund(w http.ResponseWriter, r *http.Request, ms *merchantState) {
	var req sim.RefundRequest
	if !decode(w, r, &req) {
		return
	}
	if !validNo(req.OutRefundNo) || req.Amount.Amount <= 0 || len(req.Reason) > reasonBytesMax || !validURL(req.NotifyURL) {
		writeError(w, http.StatusUnprocessableEntity, sim.CodeInvalidRequest, "out_refund_no, a positive amount, a reason of at most %d bytes and an optional http(s) notify_url", reasonBytesMax)
		return
	}
	s.mu.Lock()
	now := s.now()
	t := s.findTradeLocked(w, r, ms, now)
	if t == nil {
		return
	}
	rf, status, code, msg := s.refundLocked(ms, t, req, now)
	if code != "" {
		s.mu.Unlock()
		writeError(w, status, code, "%s", msg)
		return
	}
	out := rf.Refund
	s.mu.Unlock()
	s.hold(r)
	writeJSON(w, http.StatusOK, out)
}

// refundLocked returns the refund of req, new or repeated, or a refusal.
func (s *Server) refundLocked(ms *merchantState, t *trade, req sim.RefundRequest, now time.Time) (*refund, int, string, string) {
	if rf := ms.refunds[req.OutRefundNo]; rf != nil {
		if rf.trade != t || rf.Amount != req.Amount {
			return nil, http.StatusConflict, sim.CodeOutRefundReused, "out_refund_no " + req.OutRefundNo + " was used for another refund"
		}
		return rf, 0, "", ""
	}
	switch {
	case t.Status != sim.TradeSucceeded:
		return nil, http.StatusConflict, sim.CodeTradeNotPaid, "trade " + t.OutTradeNo + " is " + string(t.Status)
	case req.Amount.Currency != t.PaidAmount.Currency:
		return nil, http.StatusUnprocessableEntity, sim.CodeCurrencyMismatch, "the trade is in " + string(t.PaidAmount.Currency)
	case req.Amount.Amount > t.PaidAmount.Amount-t.reserved:
		return nil, http.StatusUnprocessableEntity, sim.CodeRefundExceeds, fmt.Sprintf("%d refundable, %d asked", t.PaidAmount.Amount-t.reserved, req.Amount.Amount)
	case len(t.refunds) >= RefundsPerTradeMax:
		return nil, http.StatusInsufficientStorage, sim.CodeCapacity, fmt.Sprintf("a trade has at most %d refunds", RefundsPerTradeMax)
	}
	notify := req.NotifyURL
	if notify == "" {
		notify = t.notifyURL
	}
	rf := &refund{trade: t, notifyURL: notify, Refund: sim.Refund{
		MerchantID: ms.id, OutTradeNo: t.OutTradeNo, OutRefundNo: req.OutRefundNo,
		RefundID: s.newID("rf_", now), Status: sim.RefundPending, Amount: req.Amount,
		Reason: req.Reason, CreatedAt: now,
	}}
	ms.refunds[rf.OutRefundNo] = rf
	t.refunds = append(t.refunds, rf)
	t.reserved += rf.Amount.Amount
	abnormal := s.dice.hit(dRefundAbnormal, s.cfg.Faults.RefundAbnormalRate)
	s.later(s.scaled(RefundSettleDelay), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.settleLocked(ms, rf, abnormal, s.now())
	})
	return rf, 0, "", ""
}

func (s *Server) queryRefund(w http.ResponseWriter, r *http.Request, ms *merchantState) {
	s.mu.Lock()
	t := s.findTradeLocked(w, r, ms, s.now())
	if t == nil {
		return
	}
	rf := ms.refunds[r.PathValue("rno")]
	if rf == nil || rf.trade != t {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, sim.CodeRefundNotFound, "no refund %q of trade %s", r.PathValue("rno"), t.OutTradeNo)
		return
	}
	out := rf.Refund
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// listTrades pages through the merchant's trades in creation order; the cursor is the
// position after the last trade returned.
func (s *Server) listTrades(w http.ResponseWriter, r *http.Request, ms *merchantState) {
	q := r.URL.Query()
	status := sim.TradeStatus(q.Get("status"))
	switch status {
	case "", sim.TradePending, sim.TradeSucceeded, sim.TradeFailed, sim.TradeClosed:
	default:
		writeError(w, http.StatusUnprocessableEntity, sim.CodeInvalidRequest, "status must be pending, succeeded, failed or closed")
		return
	}
	limit := listLimitDefault
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > listLimitMax {
			writeError(w, http.StatusUnprocessableEntity, sim.CodeInvalidRequest, "limit must be 1 to %d", listLimitMax)
			return
		}
		limit = n
	}
	var after int64
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, sim.CodeInvalidCursor, "invalid cursor")
			return
		}
		after = n
	}
	s.mu.Lock()
	now := s.now()
	page := sim.TradePage{Trades: []sim.Trade{}}
	i, _ := slices.BinarySearchFunc(ms.order, after+1, func(t *trade, seq int64) int { return cmp.Compare(t.seq, seq) })
	var last int64
	for ; i < len(ms.order); i++ {
		t := ms.order[i]
		s.expireLocked(ms, t, now)
		if status != "" && t.Status != status {
			continue
		}
		if len(page.Trades) == limit {
			page.NextCursor = strconv.FormatInt(last, 10)
			break
		}
		page.Trades = append(page.Trades, t.Trade)
		last = t.seq
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, page)
}

// statement answers the CSV of one UTC day's successful payments and refunds.
func (s *Server) statement(w http.ResponseWriter, r *http.Request, ms *merchantState) {
	day, err := time.Parse(time.DateOnly, r.PathValue("day"))
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, sim.CodeInvalidRequest, "the day must be YYYY-MM-DD")
		return
	}
	end := day.AddDate(0, 0, 1)
	in := func(t time.Time) bool { return !t.Before(day) && t.Before(end) }
	var rows []sim.StatementRow
	s.mu.Lock()
	for _, t := range ms.order {
		if t.Status == sim.TradeSucceeded && in(t.PaidAt) {
			rows = append(rows, sim.StatementRow{Time: t.PaidAt, Type: sim.RowPayment, TxnID: t.TxnID, OutTradeNo: t.OutTradeNo, Amount: t.PaidAmount})
		}
		for _, rf := range t.refunds {
			if rf.Status == sim.RefundSucceeded && in(rf.SettledAt) {
				rows = append(rows, sim.StatementRow{Time: rf.SettledAt, Type: sim.RowRefund, TxnID: t.TxnID, OutTradeNo: t.OutTradeNo, OutRefundNo: rf.OutRefundNo, RefundID: rf.RefundID, Amount: rf.Amount})
			}
		}
	}
	s.mu.Unlock()
	slices.SortStableFunc(rows, func(a, b sim.StatementRow) int { return a.Time.Compare(b.Time) })
	var buf bytes.Buffer
	if err := sim.WriteStatement(&buf, rows); err != nil {
		writeError(w, http.StatusInternalServerError, sim.CodeInternal, "statement: %v", err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Write(buf.Bytes())
}

func (s *Server) listNotifications(w http.ResponseWriter, r *http.Request, ms *merchantState) {
	no := r.URL.Query().Get("out_trade_no")
	out := []Delivery{}
	for _, d := range s.Deliveries() {
		if d.MerchantID == ms.id && (no == "" || d.OutTradeNo == no) {
			out = append(out, d)
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Notifications []Delivery `json:"notifications"`
	}{out})
}

// decode reads one JSON value, strictly: unknown fields are refused so that a client's
// typo is not silently ignored.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		return true
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, sim.CodeBodyTooLarge, "body over %d bytes", BodyBytesMax)
	} else {
		writeError(w, http.StatusBadRequest, sim.CodeMalformedJSON, "%v", err)
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeJSON(w, status, sim.ErrorBody{Code: code, Message: fmt.Sprintf(format, args...)})
}
