package ordercore

import "time"

// A StockHold is ordercore's stock reserved for one branch of an outside global
// transaction (a TCC whose coordinator is DTM, ordercore's own saga coordinator or any
// DTM-style client): the branch's try reserves its lines, its confirm commits them (the
// units are sold) and its cancel releases them. It is the same two-phase reservation an
// order's lines make, with the same ledger movements, but it carries no money: what the
// stock is for, and whether it was paid, is the outside system's business.
//
//	reserved -> committed   (confirm)
//	reserved -> released    (cancel)
//
// Every line resolves together and at most once; Version rises by one with each change.
// A hold exists only if its try succeeded: a try that failed (insufficient stock, an
// unknown SKU) leaves neither a hold nor a barrier row, so a later cancel of the branch is
// a null compensation.
type StockHold struct {
	ID        string            `json:"id"`
	GID       string            `json:"gid"`
	BranchID  string            `json:"branch_id"`
	Status    ReservationStatus `json:"status"`
	Lines     []HoldLine        `json:"lines"`
	Version   int64             `json:"version"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// HoldLine is one SKU of a hold. Its ledger rows name the hold and the line's 1-based
// position (StockEntry.HoldID and LineNo).
type HoldLine struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

// HoldChange resolves a hold: the store rewrites its status and version only if the
// stored version still equals FromVersion and the stored status is still reserved.
type HoldChange struct {
	Hold        StockHold
	FromVersion int64
}

// BranchKey names one branch of a global transaction.
type BranchKey struct {
	GID      string
	BranchID string
}

// BarrierRow is one row of the sub-transaction barrier that guards ordercore's own TCC
// participant, with the meaning of the public barrier package's table: a row (GID,
// BranchID, Op) exists exactly when that operation of the branch took effect, written in
// the same transaction as its effect. Reason is the operation that wrote the row: a cancel
// that comes before its try writes the try's row too, with reason cancel, and that row is
// what refuses the late (hanging) try. Rows are kept: deleting them would reopen the
// duplicate and hanging cases.
type BarrierRow struct {
	TransType string    `json:"trans_type"`
	GID       string    `json:"gid"`
	BranchID  string    `json:"branch_id"`
	Op        string    `json:"op"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
}

// Barrier operations and transaction types, spelled as the barrier package and DTM spell
// them (the stores' CHECK constraints repeat them).
const (
	BarrierTCC     = "tcc"
	BarrierTry     = "try"
	BarrierConfirm = "confirm"
	BarrierCancel  = "cancel"
	// BarrierIDBytesMax bounds a gid and a branch id, as the barrier package does (DTM's
	// varchar(128) columns).
	BarrierIDBytesMax = 128
)

// Hold events, on the hold's own timeline (aggregate "stock_hold", the hold's id).
const (
	AggregateHold      = "stock_hold"
	EventStockHeld     = "stock.held"           // a try reserved the lines
	EventHoldCommitted = "stock.hold_committed" // a confirm sold them
	EventHoldReleased  = "stock.hold_released"  // a cancel gave them back
)

// HoldEvent is the data of every hold event: everything needed to rebuild the hold.
type HoldEvent struct {
	GID      string            `json:"gid"`
	BranchID string            `json:"branch_id"`
	Status   ReservationStatus `json:"status"`
	Lines    []HoldLine        `json:"lines"`
	Version  int64             `json:"version"`
}

// NewHoldEntry returns the ledger entry of moving qty units of sku by movement m (reserve,
// commit or release) for line lineNo of the hold holdID.
func NewHoldEntry(sku string, m StockMovement, qty int64, holdID string, lineNo int, at time.Time) StockEntry {
	switch m {
	case MoveReserve, MoveCommit, MoveRelease:
	default:
		panic("stock movement " + string(m) + " does not apply to a hold")
	}
	e := NewStockEntry(sku, m, qty, "", lineNo, at)
	e.HoldID = holdID
	return e
}
