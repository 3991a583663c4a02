package engine

import (
	"strings"
	"time"

	"ordercore"
	"ordercore/internal/limit"
	"ordercore/internal/order"
)

// CreateSKU adds a SKU with its initial stock. Result: ordercore.SKU.
type CreateSKU struct {
	ID    string
	Name  string
	Price ordercore.Money
	Stock int64
}

func (c CreateSKU) keys(k *keySet) { k.sku(c.ID) }

func (c CreateSKU) execute(b *batch) (any, error) {
	if _, ok := b.skus[c.ID]; ok {
		return nil, ordercore.Errorf(ordercore.ESKUExists, "sku %q already exists", c.ID)
	}
	if err := validSKU(c); err != nil {
		return nil, err
	}
	s := &skuState{isNew: true, cur: ordercore.SKU{ID: c.ID, Name: c.Name, Price: c.Price,
		Version: 1, CreatedAt: b.now, UpdatedAt: b.now}}
	b.skus[c.ID] = s
	if c.Stock > 0 {
		b.move(s, ordercore.MoveRestock, c.Stock, "", 0)
	}
	b.event(ordercore.AggregateSKU, c.ID, ordercore.EventSKUCreated, ordercore.SKUCreated{Name: c.Name, Price: c.Price, Stock: c.Stock})
	return s.cur, nil
}

func validSKU(c CreateSKU) error {
	switch {
	case !validKey(c.ID):
		return ordercore.Errorf(ordercore.EINVALID, "sku id must be 1..%d characters of letters, digits and -_.:", limit.IDBytesMax)
	case c.Name == "" || len(c.Name) > limit.NameBytesMax || !ordercore.ValidText(c.Name):
		return ordercore.Errorf(ordercore.EINVALID, "name must be 1..%d bytes of text without control characters", limit.NameBytesMax)
	case !c.Price.Currency.Valid():
		return ordercore.Errorf(ordercore.EInvalidCurrency, "unsupported currency %q", c.Price.Currency)
	case c.Price.Amount < 0 || c.Price.Amount > limit.PriceMinorMax:
		return ordercore.Errorf(ordercore.EINVALID, "price must be 0..%d minor units", int64(limit.PriceMinorMax))
	case c.Stock < 0 || c.Stock > limit.StockMax:
		return ordercore.Errorf(ordercore.EInvalidQuantity, "stock must be 0..%d", limit.StockMax)
	}
	return nil
}

// validKey reports whether s is usable as a client-chosen identifier.
func validKey(s string) bool {
	if s == "" || len(s) > limit.IDBytesMax {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:", r)) {
			return false
		}
	}
	return true
}

// Restock adds Quantity units to a SKU's total. Result: ordercore.SKU.
type Restock struct {
	SKU      string
	Quantity int64
}

func (c Restock) keys(k *keySet) { k.sku(c.SKU) }

func (c Restock) execute(b *batch) (any, error) {
	s, ok := b.skus[c.SKU]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "sku %q not found", c.SKU)
	}
	if c.Quantity < 1 || c.Quantity > limit.StockMax {
		return nil, ordercore.Errorf(ordercore.EInvalidQuantity, "quantity must be 1..%d", limit.StockMax)
	}
	if s.cur.Total+c.Quantity > limit.StockMax {
		return nil, ordercore.Errorf(ordercore.EStockOverflow, "total stock of %q would exceed %d", c.SKU, limit.StockMax)
	}
	b.move(s, ordercore.MoveRestock, c.Quantity, "", 0)
	b.event(ordercore.AggregateSKU, c.SKU, ordercore.EventSKURestocked, ordercore.SKURestocked{Quantity: c.Quantity, Total: s.cur.Total})
	return s.cur, nil
}

// LineRequest is one line of a PlaceOrder: the price comes from the SKU, never the client.
type LineRequest struct {
	SKU      string
	Quantity int64
}

// PlaceOrder creates an order in pending_payment and reserves its stock. Currency, when
// set, must match every SKU's. Result: ordercore.Order.
type PlaceOrder struct {
	UserID    string
	Lines     []LineRequest
	Currency  ordercore.Currency
	ExpiresIn time.Duration // 0 takes limit.ExpiresInDefault
}

func (c PlaceOrder) keys(k *keySet) {
	for _, l := range c.Lines {
		k.sku(l.SKU)
	}
}

// Validate checks what can be checked without the database; the HTTP layer calls it so
// that bad input never reaches the queue.
func (c PlaceOrder) Validate() error {
	switch {
	case !validKey(c.UserID):
		return ordercore.Errorf(ordercore.EINVALID, "user_id must be 1..%d characters of letters, digits and -_.:", limit.IDBytesMax)
	case len(c.Lines) == 0:
		return ordercore.Errorf(ordercore.EINVALID, "an order has 1..%d lines", limit.LinesPerOrderMax)
	case len(c.Lines) > limit.LinesPerOrderMax:
		return ordercore.Errorf(ordercore.ETooManyLines, "an order has 1..%d lines", limit.LinesPerOrderMax)
	case c.ExpiresIn != 0 && (c.ExpiresIn < limit.ExpiresInMin || c.ExpiresIn > limit.ExpiresInMax):
		return ordercore.Errorf(ordercore.EINVALID, "expires_in_seconds must be %d..%d", int(limit.ExpiresInMin.Seconds()), int(limit.ExpiresInMax.Seconds()))
	case c.Currency != "" && !c.Currency.Valid():
		return ordercore.Errorf(ordercore.EInvalidCurrency, "unsupported currency %q", c.Currency)
	}
	for i, l := range c.Lines {
		if l.Quantity < 1 || l.Quantity > limit.QuantityMax {
			return ordercore.Errorf(ordercore.EInvalidQuantity, "lines[%d].quantity must be 1..%d", i, limit.QuantityMax)
		}
		if !validKey(l.SKU) {
			return ordercore.Errorf(ordercore.EUnknownSKU, "lines[%d].sku %q is not a valid sku id", i, l.SKU)
		}
	}
	return nil
}

func (c PlaceOrder) execute(b *batch) (any, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	demand := make(map[string]int64, len(c.Lines))
	lines := make([]ordercore.Line, len(c.Lines))
	currency := c.Currency
	total := ordercore.Money{}
	for i, l := range c.Lines {
		s, ok := b.skus[l.SKU]
		if !ok {
			return nil, ordercore.Errorf(ordercore.EUnknownSKU, "lines[%d].sku %q does not exist", i, l.SKU)
		}
		if currency == "" {
			currency = s.cur.Price.Currency
		}
		if s.cur.Price.Currency != currency {
			return nil, ordercore.Errorf(ordercore.ECurrencyMismatch, "lines[%d].sku %q is priced in %s, the order in %s", i, l.SKU, s.cur.Price.Currency, currency)
		}
		amount, err := s.cur.Price.Mul(l.Quantity)
		limit.Assert(err == nil, "line amount overflows despite bounds: %v", err)
		if i == 0 {
			total = ordercore.Money{Currency: currency}
		}
		total, err = total.Add(amount)
		limit.Assert(err == nil, "order amount overflows despite bounds: %v", err)
		lines[i] = ordercore.Line{SKU: l.SKU, Quantity: l.Quantity, UnitPrice: s.cur.Price, Amount: amount, Reservation: ordercore.ReservationReserved}
		demand[l.SKU] += l.Quantity
	}
	for sku, n := range demand {
		if avail := b.skus[sku].cur.Available(); avail < n {
			return nil, ordercore.Errorf(ordercore.EInsufficientStock, "sku %q has %d available, the order needs %d", sku, avail, n)
		}
	}
	expiresIn := c.ExpiresIn
	if expiresIn == 0 {
		expiresIn = limit.ExpiresInDefault
	}
	o := ordercore.Order{ID: ordercore.NewID(b.now), UserID: c.UserID, Status: ordercore.OrderPendingPayment,
		Amount: total, Lines: lines, ExpiresAt: b.now.Add(expiresIn), Version: 1, CreatedAt: b.now, UpdatedAt: b.now}
	for i, l := range lines {
		b.move(b.skus[l.SKU], ordercore.MoveReserve, l.Quantity, o.ID, i+1)
	}
	b.orders[o.ID] = &orderState{cur: o, isNew: true}
	b.event(ordercore.AggregateOrder, o.ID, ordercore.EventOrderPlaced, ordercore.OrderPlaced{
		UserID: o.UserID, Amount: o.Amount, Lines: o.Lines, ExpiresAt: o.ExpiresAt, Version: o.Version})
	return o, nil
}

// Transition moves an order by a user or merchant command (cancel, ship, complete, start
// fulfilment). A stale command (cancelling a cancelled order) succeeds without change.
// Result: ordercore.Order.
type Transition struct {
	OrderID string
	Command order.Command
	Reason  string
}

func (c Transition) keys(k *keySet) {
	k.order(c.OrderID)
	if c.Command == order.Cancel {
		k.payOrder(c.OrderID)
	}
}

// userCommands are the order commands Transition accepts: the others carry money or
// deadlines and have their own commands (ApplyPayment, ExpireOrders) that check them.
var userCommands = map[order.Command]bool{order.Cancel: true, order.Ship: true, order.Complete: true, order.StartFulfilment: true}

func (c Transition) execute(b *batch) (any, error) {
	limit.Assert(userCommands[c.Command], "Transition with system command %q", c.Command)
	o, ok := b.orders[c.OrderID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "order %q not found", c.OrderID)
	}
	reason := c.Reason
	if c.Command == order.Cancel && reason == "" {
		reason = ordercore.CancelByUser
	}
	if c.Command == order.Cancel && o.cur.Status == ordercore.OrderPendingPayment {
		// An attempt open at a channel could still be paid after the stock is released:
		// it is closed there first (Payments.CloseOpen), as the expiry does.
		for _, p := range b.paymentsOf(c.OrderID) {
			if p.cur.Status.Open() {
				return nil, ordercore.Errorf(ordercore.EPaymentInProgress, "payment %s of order %s is still %s at %s; it must be closed first", p.cur.ID, c.OrderID, p.cur.Status, p.cur.Channel)
			}
		}
	}
	if err := b.transition(o, c.Command, reason, nil); err != nil {
		return nil, err
	}
	return o.cur, nil
}

// transition applies an order command to a loaded order: the status change from the
// table, the stock movements it implies, and its event.
func (b *batch) transition(o *orderState, cmd order.Command, reason string, pay *ordercore.PaymentApplied) error {
	from := o.cur.Status
	next, stale, err := order.Apply(o.cur, cmd, reason, b.now)
	if err != nil || stale {
		return err
	}
	move, ok := order.Reservation(next.Status)
	if cmd == order.Revive {
		move, ok = ordercore.MoveRevive, true // released units sold again, straight to sold
	}
	if ok {
		for i, l := range o.cur.Lines {
			s, ok := b.skus[l.SKU]
			limit.Assert(ok, "sku %s of order %s not loaded", l.SKU, o.cur.ID)
			b.move(s, move, l.Quantity, o.cur.ID, i+1)
		}
	}
	o.cur = next
	b.event(ordercore.AggregateOrder, next.ID, ordercore.OrderEventType(next.Status), ordercore.OrderTransitioned{
		From: from, To: next.Status, Version: next.Version, Reason: reasonIf(next.Status, reason), Payment: pay})
	return nil
}

func reasonIf(s ordercore.OrderStatus, reason string) string {
	if s == ordercore.OrderCancelled {
		return reason
	}
	return ""
}

// ManualChannel is the channel name of payments an operator records by hand
// (POST /v1/orders/{id}/payments/manual).
const ManualChannel = "manual"

// ApplyPayment records money received for an order: a pending_payment order becomes paid
// and its stock is committed. The amount and currency must equal the order's. A payment
// for an order that is already paid is stale and changes nothing. Result: ordercore.Order.
type ApplyPayment struct {
	OrderID string
	Payment ordercore.PaymentApplied
}

func (c ApplyPayment) keys(k *keySet) {
	k.order(c.OrderID)
	if c.Payment.Channel == ManualChannel {
		k.payOrder(c.OrderID) // its open attempt, if any
	}
}

func (c ApplyPayment) execute(b *batch) (any, error) {
	o, ok := b.orders[c.OrderID]
	if !ok {
		return nil, ordercore.Errorf(ordercore.ENOTFOUND, "order %q not found", c.OrderID)
	}
	_, isStale, err := order.Transition(o.cur.Status, order.Pay)
	if err != nil {
		return nil, err // money for a closed order is refused (late money is the payments layer's to revive or refund)
	}
	// The amount is checked before a duplicate is acknowledged: a notice of other money
	// for a paid order is not a duplicate of the payment that paid it.
	if c.Payment.Amount != o.cur.Amount {
		return nil, ordercore.Errorf(ordercore.EAmountMismatch, "payment of %s does not match the order amount %s", c.Payment.Amount, o.cur.Amount)
	}
	if isStale && c.Payment.Channel == ManualChannel {
		// An operator's record of money received: a second one for a paid order is other
		// money (a second transfer), which must not vanish as a duplicate. The operator
		// is told, and returns it to its payer (a keyed retry of the first is replayed).
		return nil, ordercore.Errorf(ordercore.EIllegalTransition,
			"order %s is already %s: a second payment is not recorded; money received twice goes back to its payer", o.cur.ID, o.cur.Status)
	}
	if isStale {
		return o.cur, nil // a duplicate payment notice is acknowledged and changes nothing
	}
	if c.Payment.Channel == ManualChannel && b.openPayment(o.cur.ID) {
		// The shopper could still pay that trade, and be charged twice: it is closed at
		// its channel first (the API does it, as for a cancel), which may find it paid.
		return nil, ordercore.Errorf(ordercore.EPaymentInProgress, "order %s has a payment attempt open at its channel; it must be closed there first", o.cur.ID)
	}
	pay := c.Payment
	if err := b.transition(o, order.Pay, "", &pay); err != nil {
		return nil, err
	}
	return o.cur, nil
}

// ExpireOrders cancels the listed orders that are still pending_payment and past their
// expiry, releasing their stock; others are left alone (they were paid or cancelled since
// they were listed). Result: int, the number expired.
type ExpireOrders struct {
	OrderIDs []string
}

func (c ExpireOrders) keys(k *keySet) {
	for _, id := range c.OrderIDs {
		k.order(id)
		k.payOrder(id)
	}
}

func (c ExpireOrders) execute(b *batch) (any, error) {
	limit.Assert(len(c.OrderIDs) <= limit.ExpiryBatchMax, "expire %d orders at once", len(c.OrderIDs))
	n := 0
	for _, id := range c.OrderIDs {
		o, ok := b.orders[id]
		if !ok || o.cur.Status != ordercore.OrderPendingPayment || o.cur.ExpiresAt.After(b.now) {
			continue
		}
		if b.openPayment(id) {
			continue // closed at the channel first (the Expirer does it); paid, if it says paid
		}
		err := b.transition(o, order.Expire, ordercore.CancelTimeout, nil)
		limit.Assert(err == nil, "expire pending order %s: %v", id, err)
		n++
	}
	return n, nil
}

// openPayment reports whether an order has an attempt still open at its channel.
func (b *batch) openPayment(orderID string) bool {
	for _, p := range b.paymentsOf(orderID) {
		if p.cur.Status.Open() {
			return true
		}
	}
	return false
}

// PruneIdempotency deletes stored responses older than Before, at most
// limit.IdemPruneMax of them. Result: nil.
type PruneIdempotency struct {
	Before time.Time
}

func (c PruneIdempotency) keys(*keySet) {}

func (c PruneIdempotency) execute(b *batch) (any, error) {
	b.cs.IdemPruneBefore, b.cs.IdemPruneMax = c.Before, limit.IdemPruneMax
	return nil, nil
}
