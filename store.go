package ordercore

import (
	"context"
	"errors"
	"time"
)

// ErrCommitUnknown is wrapped by a Write that cannot tell whether its transaction
// committed: the connection to the database was lost after the COMMIT was sent, and the
// database could not be asked since. Nothing about the transaction may be assumed: it
// must not be run again (it may have committed), nor answered as applied.
var ErrCommitUnknown = errors.New("the commit's outcome is unknown")

// Store is a database holding ordercore's state. Writes happen only through Write, which
// only the engine's committer calls (one write path); reads never queue behind writes.
type Store interface {
	Reader
	// Write runs fn in one durable transaction: if Write returns nil, everything fn applied
	// is committed and synced; otherwise none of it is.
	Write(ctx context.Context, fn func(WriteTx) error) error
	Close() error
}

// WriteTx is the view of the write transaction that the committer uses for one batch: load
// the rows the batch's commands touch, then apply all their changes at once. On PostgreSQL
// the loads lock the rows (FOR UPDATE); on SQLite the single writer already serialises.
type WriteTx interface {
	SKUs(ctx context.Context, ids []string) (map[string]SKU, error)
	Orders(ctx context.Context, ids []string) (map[string]Order, error)
	Idempotency(ctx context.Context, keys []string) (map[string]IdemRecord, error)
	// PaymentOrders returns the orders of the payment attempts and refunds with the
	// given ids, locking nothing: a batch first finds every order its commands touch,
	// then loads (on PostgreSQL, locks) all their attempts and refunds in one statement
	// each, so that every batch takes those locks in one order (locking the named rows
	// first, then the rest of their orders', deadlocked two instances).
	PaymentOrders(ctx context.Context, paymentIDs, refundIDs []string) ([]string, error)
	// Payments loads the payment attempts with the given ids and every attempt of the
	// given orders; Refunds does the same for refunds.
	Payments(ctx context.Context, ids, orderIDs []string) (map[string]Payment, error)
	Refunds(ctx context.Context, ids, orderIDs []string) (map[string]Refund, error)
	// ChannelEvents reports which notifications are already in the inbox.
	ChannelEvents(ctx context.Context, keys []ChannelEventKey) (map[ChannelEventKey]bool, error)
	ReviewItems(ctx context.Context, ids []string) (map[string]ReviewItem, error)
	// Sagas loads the sagas with the given gids (locked until commit on PostgreSQL).
	Sagas(ctx context.Context, gids []string) (map[string]Saga, error)
	// SagaVersions reports the Version of each of the named sagas that exists (locking
	// them until commit on PostgreSQL, as Sagas does). Every write of a saga raises its
	// version, so a committer that remembers a saga at that version need not read it.
	SagaVersions(ctx context.Context, gids []string) (map[string]int64, error)
	// ClaimSagas takes at most limit sagas whose NextRunAt is set and <= now, earliest
	// first, and moves their NextRunAt to until and their Version up by one, in this
	// transaction; it returns them as changed. On PostgreSQL the candidates are locked with
	// FOR UPDATE SKIP LOCKED, so instances claiming at once take disjoint sets without
	// waiting for each other; a claim ends at until, after which another worker may take
	// the saga again.
	ClaimSagas(ctx context.Context, now, until time.Time, limit int) ([]Saga, error)
	// WebhookEndpoints and WebhookDeliveries load webhook rows by id (locked until commit
	// on PostgreSQL).
	WebhookEndpoints(ctx context.Context, ids []string) (map[string]WebhookEndpoint, error)
	WebhookDeliveries(ctx context.Context, ids []string) (map[string]WebhookDelivery, error)
	// WebhookEndpointCount counts the endpoints. On PostgreSQL it first takes a
	// transaction-scoped lock held until commit, so that of two instances' batches
	// creating endpoints one counts after the other committed: a bound on endpoints is
	// exact.
	WebhookEndpointCount(ctx context.Context) (int, error)
	// Barriers loads every barrier row (all ops) of the given branches. On PostgreSQL it
	// first takes a transaction-scoped lock per branch, held until commit: a row that does
	// not exist yet cannot be locked, and two instances deciding one branch at once (a try
	// and its cancel) must decide one after the other, each on what the other committed.
	// Holds loads the stock holds of the given branches (locked until commit on
	// PostgreSQL). The engine calls Barriers before Holds.
	Barriers(ctx context.Context, branches []BranchKey) ([]BarrierRow, error)
	Holds(ctx context.Context, branches []BranchKey) (map[BranchKey]StockHold, error)
	// Apply writes c. A store may hold its statements back and send them with the
	// commit, so a change the database refuses can fail Write instead of Apply; either
	// way nothing of the write is kept.
	Apply(ctx context.Context, c *Changeset) error
}

// ChannelEventKey names one notification of one channel.
type ChannelEventKey struct {
	Channel string
	EventID string
}

// Changeset is every row a batch writes. Apply must write it with as few statements as it
// can (multi-row inserts, one conditional update of each touched SKU, however many orders
// moved its stock) and must fail, rolling back the batch, if a guard does not hold.
type Changeset struct {
	NewSKUs      []SKU
	StockChanges []StockChange
	Ledger       []StockEntry
	NewOrders    []Order
	OrderChanges []OrderChange
	Events       []Event
	Idempotency  []IdemRecord
	// Payments: new rows, and changes applied only if the stored version still equals
	// FromVersion (the database also refuses refunds beyond what was captured).
	NewPayments    []Payment
	PaymentChanges []PaymentChange
	NewRefunds     []Refund
	RefundChanges  []RefundChange
	MoneyLedger    []MoneyEntry
	ChannelEvents  []ChannelEvent
	NewReviews     []ReviewItem
	ReviewChanges  []ReviewChange
	// Sagas: new rows (a gid that exists refuses the batch), and changes applied only if
	// the stored version still equals FromVersion.
	NewSagas    []Saga
	SagaChanges []SagaChange
	// Webhooks: new endpoints and deliveries (an id that exists, or a second delivery of
	// one event to one endpoint, refuses the batch), and changes applied only if the
	// stored version still equals FromVersion.
	NewWebhookEndpoints    []WebhookEndpoint
	WebhookEndpointChanges []WebhookEndpointChange
	NewWebhookDeliveries   []WebhookDelivery
	WebhookDeliveryChanges []WebhookDeliveryChange
	// DeletedWebhookEndpoints deletes each endpoint, if its stored version still equals
	// FromVersion, with all its deliveries, after the changes above.
	DeletedWebhookEndpoints []WebhookEndpointDeletion
	// Stock holds: new holds (a second hold of one branch refuses the batch) and their
	// resolutions; barrier rows (a row that exists refuses the batch).
	NewHolds    []StockHold
	HoldChanges []HoldChange
	NewBarriers []BarrierRow
	// IdemPruneBefore, when not zero, deletes at most IdemPruneMax idempotency records
	// created before it.
	IdemPruneBefore time.Time
	IdemPruneMax    int
}

// Empty reports whether c writes nothing.
func (c *Changeset) Empty() bool {
	return len(c.NewSKUs) == 0 && len(c.StockChanges) == 0 && len(c.Ledger) == 0 &&
		len(c.NewOrders) == 0 && len(c.OrderChanges) == 0 && len(c.Events) == 0 &&
		len(c.Idempotency) == 0 && c.IdemPruneBefore.IsZero() && len(c.NewPayments) == 0 &&
		len(c.PaymentChanges) == 0 && len(c.NewRefunds) == 0 && len(c.RefundChanges) == 0 &&
		len(c.MoneyLedger) == 0 && len(c.ChannelEvents) == 0 && len(c.NewReviews) == 0 && len(c.ReviewChanges) == 0 &&
		len(c.NewSagas) == 0 && len(c.SagaChanges) == 0 &&
		len(c.NewWebhookEndpoints) == 0 && len(c.WebhookEndpointChanges) == 0 && len(c.DeletedWebhookEndpoints) == 0 &&
		len(c.NewWebhookDeliveries) == 0 && len(c.WebhookDeliveryChanges) == 0 &&
		len(c.NewHolds) == 0 && len(c.HoldChanges) == 0 && len(c.NewBarriers) == 0
}

// StockChange moves one SKU's balances by deltas. The store applies it as one conditional
// UPDATE that fails unless the result keeps total-reserved-sold, reserved and sold >= 0.
type StockChange struct {
	SKU       string
	DTotal    int64
	DReserved int64
	DSold     int64
	At        time.Time
}

// OrderChange rewrites an order's status and version. The store applies it only if the
// stored version still equals FromVersion. When Resolve is set, every line's reservation
// moves from reserved to Resolve, and the store fails unless every line was reserved.
type OrderChange struct {
	Order       Order
	FromVersion int64
	Resolve     ReservationStatus
	// Revive moves every line from released to committed (late money sold the stock
	// again); the store fails unless every line was released.
	Revive bool
}

// PaymentChange rewrites a payment if its stored version is still FromVersion.
type PaymentChange struct {
	Payment     Payment
	FromVersion int64
}

// RefundChange rewrites a refund if its stored version is still FromVersion.
type RefundChange struct {
	Refund      Refund
	FromVersion int64
}

// ReviewChange rewrites a review item if its stored version is still FromVersion.
type ReviewChange struct {
	Item        ReviewItem
	FromVersion int64
}

// IdemRecord is a stored response for an Idempotency-Key: a retry with the same key and
// the same request hash gets Status and Body back instead of running again.
type IdemRecord struct {
	Key         string
	RequestHash string
	Status      int
	Body        []byte
	CreatedAt   time.Time
}

// Reader answers queries from a read pool.
type Reader interface {
	SKU(ctx context.Context, id string) (SKU, error)
	Order(ctx context.Context, id string) (Order, error)
	// OrdersByUser lists a user's orders, newest first, starting after the order with ID
	// afterID (empty for the first page).
	OrdersByUser(ctx context.Context, userID, afterID string, limit int) ([]Order, error)
	// Events lists events with Seq > after in Seq order.
	Events(ctx context.Context, after int64, limit int) ([]Event, error)
	// AggregateEvents lists the events of one aggregate in Seq order.
	AggregateEvents(ctx context.Context, aggregateID string, limit int) ([]Event, error)
	// RecentAggregateEvents lists the last limit events of one aggregate, in Seq order.
	RecentAggregateEvents(ctx context.Context, aggregateID string, limit int) ([]Event, error)
	// LastAggregateEvent returns the latest event of the type on one aggregate, if any.
	LastAggregateEvent(ctx context.Context, aggregateID, typ string) (Event, bool, error)
	// ExpiredOrders lists pending_payment orders with ExpiresAt <= now, oldest first.
	ExpiredOrders(ctx context.Context, now time.Time, limit int) ([]string, error)
	// NextExpiry returns the earliest ExpiresAt of a pending_payment order, if any.
	NextExpiry(ctx context.Context) (time.Time, bool, error)
	// OldestIdempotencyKey returns the earliest CreatedAt of a stored response, if any.
	OldestIdempotencyKey(ctx context.Context) (time.Time, bool, error)

	Payment(ctx context.Context, id string) (Payment, error)
	// OrderPayments lists an order's payment attempts and refunds, oldest first.
	OrderPayments(ctx context.Context, orderID string) ([]Payment, []Refund, error)
	// DuePayments lists attempts whose next sync is due at now, earliest first.
	DuePayments(ctx context.Context, now time.Time, limit int) ([]Payment, error)
	// DueRefunds lists pending refunds whose next send or query is due at now.
	DueRefunds(ctx context.Context, now time.Time, limit int) ([]Refund, error)
	// OpenPayments lists the open attempts (created, pending, unknown) of the orders.
	OpenPayments(ctx context.Context, orderIDs []string) ([]Payment, error)
	// MoneyMovements lists the money ledger's captures and refund commits (the money a
	// channel took or paid back, as ordercore recorded it) whose At is in [from, to), of
	// payments made at channel, in Seq order, after the entry afterSeq (0 for the first
	// page), at most limit. Daily statement reconciliation reads a day's with it.
	MoneyMovements(ctx context.Context, channel string, from, to time.Time, afterSeq int64, limit int) ([]MoneyEntry, error)
	// Reviews lists review items with the status (all when empty), newest first, after
	// the item afterID.
	Reviews(ctx context.Context, status ReviewStatus, afterID string, limit int) ([]ReviewItem, error)
	Review(ctx context.Context, id string) (ReviewItem, error)
	// OpenReviewCounts counts the open review items of each kind (a kind with none is
	// absent): what waits for an operator.
	OpenReviewCounts(ctx context.Context) (map[string]int64, error)

	Saga(ctx context.Context, gid string) (Saga, error)
	// ListSagas lists sagas with the status (all when empty), newest first (by CreatedAt, then
	// gid), starting after the saga afterGID (empty for the first page).
	ListSagas(ctx context.Context, status SagaStatus, afterGID string, limit int) ([]Saga, error)
	// SagaCounts counts the sagas in each status.
	SagaCounts(ctx context.Context) (map[SagaStatus]int64, error)

	WebhookEndpoint(ctx context.Context, id string) (WebhookEndpoint, error)
	// ListWebhookEndpoints lists endpoints oldest first (by id), starting after the
	// endpoint afterID (empty for the first page).
	ListWebhookEndpoints(ctx context.Context, afterID string, limit int) ([]WebhookEndpoint, error)
	// ListWebhookDeliveries lists an endpoint's deliveries with the status (all when
	// empty), newest first (by id), starting after the delivery afterID. The dead ones are
	// the endpoint's dead-letter list.
	ListWebhookDeliveries(ctx context.Context, endpointID string, status WebhookStatus, afterID string, limit int) ([]WebhookDelivery, error)
	// DueWebhookDeliveries lists pending deliveries whose NextAttemptAt is <= now, for
	// each endpoint of want that is enabled at most its Max, earliest first (ties by id),
	// endpoint after endpoint in want's order. Endpoints not in want are not read, so an
	// endpoint's backlog never hides another's due deliveries.
	DueWebhookDeliveries(ctx context.Context, now time.Time, want []WebhookDue) ([]WebhookDelivery, error)

	// HoldsOf lists the stock holds of a global transaction, by branch id; BarriersOf its
	// barrier rows, by branch id and op. Each returns at most limit rows.
	HoldsOf(ctx context.Context, gid string, limit int) ([]StockHold, error)
	BarriersOf(ctx context.Context, gid string, limit int) ([]BarrierRow, error)
}

// Snapshot is the full content of a database, for `ordercore verify`.
type Snapshot struct {
	SKUs        []SKU
	Orders      []Order
	Ledger      []StockEntry
	Events      []Event
	Payments    []Payment
	Refunds     []Refund
	MoneyLedger []MoneyEntry
	Reviews     []ReviewItem
	Sagas       []Saga
	// WebhookEndpoints by id; WebhookDeliveries by id.
	WebhookEndpoints  []WebhookEndpoint
	WebhookDeliveries []WebhookDelivery
	// Holds by id; Barriers by gid, branch id and op.
	Holds    []StockHold
	Barriers []BarrierRow
}

// Dumper reads a whole database into a Snapshot.
type Dumper interface {
	Dump(ctx context.Context) (*Snapshot, error)
}
