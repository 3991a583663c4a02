package ordercore

import "time"

// OrderStatus is where an order stands in its life; internal/order holds the table of legal
// transitions between them.
type OrderStatus string

// The statuses of DESIGN.md.
const (
	OrderPendingPayment    OrderStatus = "pending_payment"
	OrderPaid              OrderStatus = "paid"
	OrderFulfilling        OrderStatus = "fulfilling"
	OrderShipped           OrderStatus = "shipped"
	OrderCompleted         OrderStatus = "completed"
	OrderCancelled         OrderStatus = "cancelled"
	OrderRefunding         OrderStatus = "refunding"
	OrderRefunded          OrderStatus = "refunded"
	OrderPartiallyRefunded OrderStatus = "partially_refunded"
)

// OrderStatuses lists every status, in lifecycle order.
var OrderStatuses = []OrderStatus{
	OrderPendingPayment, OrderPaid, OrderFulfilling, OrderShipped, OrderCompleted,
	OrderCancelled, OrderRefunding, OrderRefunded, OrderPartiallyRefunded,
}

// Terminal reports whether s is an end state that needs no next action. A cancelled order
// has one way out, taken only by money that arrived late (the order machine's Revive).
func (s OrderStatus) Terminal() bool {
	return s == OrderCompleted || s == OrderCancelled || s == OrderRefunded
}

// Valid reports whether s is a known status.
func (s OrderStatus) Valid() bool {
	for _, v := range OrderStatuses {
		if v == s {
			return true
		}
	}
	return false
}

// Order is a shopper's order. Amount always equals the sum of the lines' amounts, and
// Version rises by exactly one with every applied transition (1 when placed).
type Order struct {
	ID           string      `json:"id"`
	UserID       string      `json:"user_id"`
	Status       OrderStatus `json:"status"`
	Amount       Money       `json:"amount"`
	Lines        []Line      `json:"lines"`
	ExpiresAt    time.Time   `json:"expires_at"`
	Version      int64       `json:"version"`
	CancelReason string      `json:"cancel_reason,omitempty"`
	CreatedAt    time.Time   `json:"created_at"`
	UpdatedAt    time.Time   `json:"updated_at"`
}

// Line is one SKU of an order. Each line is also the order's stock reservation of that
// SKU (two-phase, like a pending transfer): reserved when placed, then committed when the
// order is paid or released when it is cancelled, and resolved at most once.
type Line struct {
	SKU         string            `json:"sku"`
	Quantity    int64             `json:"quantity"`
	UnitPrice   Money             `json:"unit_price"`
	Amount      Money             `json:"amount"`
	Reservation ReservationStatus `json:"reservation"`
}

// ReservationStatus is the state of a line's stock reservation.
type ReservationStatus string

// Reservation states: reserved is pending; committed and released are final.
const (
	ReservationReserved  ReservationStatus = "reserved"
	ReservationCommitted ReservationStatus = "committed"
	ReservationReleased  ReservationStatus = "released"
)

// Reasons an order is cancelled.
const (
	CancelByUser        = "user"
	CancelTimeout       = "timeout"
	CancelPaymentFailed = "payment_failed"
)

// SKU is a stock-keeping unit with its two-phase stock balance:
// Available() = Total - Reserved - Sold, never negative (P1).
type SKU struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Price     Money     `json:"price"`
	Total     int64     `json:"total"`
	Reserved  int64     `json:"reserved"`
	Sold      int64     `json:"sold"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Available is the stock that can still be reserved.
func (s SKU) Available() int64 { return s.Total - s.Reserved - s.Sold }

// StockMovement names a stock ledger entry's kind.
type StockMovement string

// Stock movements. Restock raises total; reserve moves available to reserved; commit moves
// reserved to sold; release moves reserved back to available.
const (
	MoveRestock StockMovement = "restock"
	MoveReserve StockMovement = "reserve"
	MoveCommit  StockMovement = "commit"
	MoveRelease StockMovement = "release"
	// MoveRevive sells released stock again, straight from available to sold, when late
	// money revives a cancelled order. A line is revived at most once.
	MoveRevive StockMovement = "revive"
	// MoveReturn puts sold units back on the shelf (sold to available) when a refund
	// that restocks the line succeeds. A line is returned at most once.
	MoveReturn StockMovement = "return"
)

// NewStockEntry returns the ledger entry of moving qty units of sku by movement m: restock
// raises total; reserve raises reserved; commit moves reserved to sold; release lowers
// reserved. orderID and lineNo name the reservation (empty and 0 for a restock).
func NewStockEntry(sku string, m StockMovement, qty int64, orderID string, lineNo int, at time.Time) StockEntry {
	e := StockEntry{SKU: sku, Movement: m, OrderID: orderID, LineNo: lineNo, At: at}
	switch m {
	case MoveRestock:
		e.DTotal = qty
	case MoveReserve:
		e.DReserved = qty
	case MoveCommit:
		e.DReserved, e.DSold = -qty, qty
	case MoveRelease:
		e.DReserved = -qty
	case MoveRevive:
		e.DSold = qty
	case MoveReturn:
		e.DSold = -qty
	default:
		panic("unknown stock movement " + string(m))
	}
	return e
}

// StockEntry is one immutable row of the stock ledger. The SKU balances are a projection:
// for every SKU, total, reserved and sold equal the sums of the deltas of its entries.
type StockEntry struct {
	SKU       string
	Movement  StockMovement
	DTotal    int64
	DReserved int64
	DSold     int64
	OrderID   string // empty for restocks and hold movements
	// HoldID names the stock hold (StockHold) whose line LineNo this entry moves; empty
	// for restocks and order movements. An entry names an order or a hold, never both.
	HoldID string
	LineNo int // the order or hold line (reservation) this entry moves; 0 for restocks
	At     time.Time
}
