package paysim

import (
	"time"

	"ordercore"
	"ordercore/channel/sim"
)

// merchantState is one merchant's trades and refunds. Guarded by Server.mu.
type merchantState struct {
	id      string
	m       Merchant
	trades  map[string]*trade  // by out_trade_no
	order   []*trade           // in creation order: listing pages through it
	refunds map[string]*refund // by out_refund_no: unique per merchant
}

func (ms *merchantState) secrets() []string {
	if ms.m.PreviousSecret != "" {
		return []string{ms.m.Secret, ms.m.PreviousSecret}
	}
	return []string{ms.m.Secret}
}

type trade struct {
	sim.Trade
	seq       int64
	notifyURL string
	refunds   []*refund
	// reserved is what refunds have taken from the paid amount: pending, succeeded and
	// abnormal ones (an abnormal refund left the merchant's balance; an operator pays it
	// out by other means), so that concurrent refunds cannot exceed the payment.
	reserved int64
	// lateShopper is set by the pay-after-close fault: the shopper is mid-payment while
	// the merchant closes, so the payment goes through despite the close.
	lateShopper bool
}

type refund struct {
	sim.Refund
	trade     *trade
	notifyURL string
}

// expireLocked closes an unpaid trade whose time is up (pending, or failed and so still
// payable by another try), as Alipay does, and tells the merchant: expiry is the
// channel's decision, unlike a close the merchant asked for.
func (s *Server) expireLocked(ms *merchantState, t *trade, now time.Time) {
	if (t.Status == sim.TradePending || t.Status == sim.TradeFailed) && !now.Before(t.ExpiresAt) {
		t.Status = sim.TradeClosed
		s.notifyTradeLocked(ms, t, sim.EventTradeClosed, now)
	}
}

// payLocked records the shopper's result. double allows the double-pay fault to pay a
// second open trade of the same order (it does not chain).
func (s *Server) payLocked(ms *merchantState, t *trade, success bool, now time.Time, double bool) {
	if !success {
		t.Status = sim.TradeFailed
		s.notifyTradeLocked(ms, t, sim.EventTradeFailed, now)
		return
	}
	t.Status = sim.TradeSucceeded
	t.PaidAt = now
	t.PaidAmount = t.Amount
	if s.dice.hit(dUnderpay, s.cfg.Faults.UnderpayRate) {
		// Pay between half and all but one minor unit: a validly signed short payment.
		short := 1 + s.dice.n(dUnderpay, max(t.Amount.Amount/2, 1))
		t.PaidAmount.Amount = max(t.Amount.Amount-short, 0)
	}
	s.notifyTradeLocked(ms, t, sim.EventTradeSucceeded, now)
	if double && t.OrderID != "" && s.dice.hit(dDoublePay, s.cfg.Faults.DoublePayRate) {
		for _, o := range ms.order {
			if o != t && o.OrderID == t.OrderID && (o.Status == sim.TradePending || o.Status == sim.TradeFailed) {
				s.payLocked(ms, o, true, now, false)
				break
			}
		}
	}
}

// settleLocked ends a pending refund.
func (s *Server) settleLocked(ms *merchantState, rf *refund, abnormal bool, now time.Time) {
	if rf.Status != sim.RefundPending {
		return
	}
	rf.SettledAt = now
	typ := sim.EventRefundSucceeded
	if abnormal {
		rf.Status, typ = sim.RefundAbnormal, sim.EventRefundAbnormal
	} else {
		rf.Status = sim.RefundSucceeded
		rf.trade.Refunded.Amount += rf.Amount.Amount
	}
	s.notifyLocked(ms, typ, rf.notifyURL, rf.Refund, rf.OutTradeNo, rf.OutRefundNo, now)
}

func (s *Server) notifyTradeLocked(ms *merchantState, t *trade, typ string, now time.Time) {
	s.notifyLocked(ms, typ, t.notifyURL, t.Trade, t.OutTradeNo, "", now)
}

// sameTrade reports whether a repeated create asks for the same trade. The amount and
// the order identify it; a retry may recompute its description or deadline.
func sameTrade(t *trade, req sim.CreateTradeRequest) bool {
	return t.Amount == req.Amount && t.OrderID == req.OrderID
}

func zero(c ordercore.Currency) ordercore.Money { return ordercore.Money{Currency: c} }
