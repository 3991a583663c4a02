// Package limit holds every bound of ordercore as a named constant, and Assert for
// programmer errors. A bound that is not here is a bug: queues, batches, pages, retries and
// bodies are all limited (TIGER_STYLE: "put a limit on everything").
//
// It imports only the standard library.
package limit

import (
	"fmt"
	"time"
)

const (
	// BatchCommandsMax is the most commands the committer puts in one transaction.
	BatchCommandsMax = 1000
	// BatchDelayDefault is the committer's batch delay on both stores: after taking what
	// queued, it goes on taking commands until as many have come as its last batch
	// answered (clients that submit again once answered are back), none has come for
	// BatchGapDefault, or this long has passed. Under closed-loop load a batch then holds
	// every waiting client instead of the half that queued during the last commit, and a
	// commit's fixed cost (on PostgreSQL round trips and the WAL flush, on SQLite the WAL
	// frames and fsync) is shared by twice the orders; a command that finds the queue
	// empty and no callers expected back waits for nothing (BENCHMARKS.md).
	BatchDelayDefault = time.Millisecond
	// BatchGapDefault ends a batch delay early: the committer stops filling a batch once
	// no command has arrived for this long. Go's timers fire no sooner than about 1 ms
	// when the process is otherwise idle (the runtime's poller sleeps in whole
	// milliseconds), so the wait can be that long; the committer's other early end, once
	// the callers its last batch answered are back, needs no timer (engine.fill).
	BatchGapDefault = 100 * time.Microsecond
	// BatchDelayMax bounds the configurable batch delay.
	BatchDelayMax = 50 * time.Millisecond
	// GCPercent is the Go garbage collector's GOGC that `ordercore serve` runs with
	// unless the GOGC environment variable sets one. Its live heap is small (tens of MB),
	// so at Go's default of 100 it collects several times a second under load; at 400 the
	// saga coordinator spent a median 6% less CPU per saga for about twice the memory
	// (README.md). GOMEMLIMIT, if set, still bounds the heap.
	GCPercent = 400
	// SQLiteCheckpointEvery is how often the SQLite store's checkpointer may copy committed
	// WAL frames into the database file, from a connection of its own, so that the
	// committer does not: SQLite's automatic checkpoint would run in the committing
	// connection every 1,000 pages, taking about 9% of the committer's time on the hot
	// SKU (BENCHMARKS.md). It copies once about SQLiteCheckpointFrames frames have been
	// committed since its last copy, at that rate, and at least every
	// SQLiteCheckpointEveryMax when anything was: copies stay small (at a fixed 200 ms, the
	// hot SKU's copies of ~2,500 frames and their database-file fsync held up the commits'
	// own fsyncs, p99 31-35 ms against 6-16 ms), and a lighter load, such as the saga
	// coordinator's ~50 frames per 20 ms, does not pay a checkpoint's fixed cost (its fsync)
	// 50 times a second. SQLiteWALPagesMax (64 MiB of 4 KiB pages) is the WAL size at
	// which the committer checkpoints after all, should the checkpointer fall behind (it
	// copies only the frames the checkpointer has not).
	SQLiteCheckpointEvery    = 20 * time.Millisecond
	SQLiteCheckpointEveryMax = 200 * time.Millisecond
	SQLiteCheckpointFrames   = 256
	SQLiteWALPagesMax        = 16384
	// QueueCommandsMax is the depth of the committer's queue; a full queue answers 503.
	QueueCommandsMax = 16384
	// InsertRowsMax bounds the rows of one multi-row INSERT of the benchmark's
	// hand-written storage loop (SQLite allows 32,766 bound variables per statement; the
	// widest row has 12 columns). The store sizes its own statements (sqlite.chunkSize).
	InsertRowsMax = 500

	// LinesPerOrderMax and QuantityMax bound an order.
	LinesPerOrderMax = 100
	QuantityMax      = 999
	// StockMax bounds a SKU's total, so sums over an order never overflow int64.
	StockMax = 1_000_000_000
	// PriceMinorMax bounds a unit price: QuantityMax*LinesPerOrderMax*PriceMinorMax < 2^63.
	PriceMinorMax = 1_000_000_000_000
	// OrderAmountMax is the most an order can come to, and so the most a payment or a
	// refund of one can be.
	OrderAmountMax = QuantityMax * LinesPerOrderMax * PriceMinorMax

	// ExpiresInDefault is the time an order may stay unpaid; ExpiresInMin/Max bound what
	// a request may ask for.
	ExpiresInDefault = 15 * time.Minute
	ExpiresInMin     = 1 * time.Second
	ExpiresInMax     = 24 * time.Hour
	// ExpiryBatchMax bounds the orders one expiry sweep closes in one command.
	ExpiryBatchMax = 500
	// ExpirySweepInterval is the longest the sweeper sleeps when no order is due sooner.
	ExpirySweepInterval = 1 * time.Second

	// IdemKeyBytesMax bounds an Idempotency-Key header.
	IdemKeyBytesMax = 255
	// IdemKeyTTL is how long a stored response is kept: at least 24 h (Stripe semantics).
	IdemKeyTTL = 48 * time.Hour
	// IdemPruneMax bounds the records one prune deletes; IdemPruneInterval spaces prunes.
	IdemPruneMax      = 1000
	IdemPrunePassMax  = 10_000 // prune commands in one pass: 10 million keys a minute
	IdemPruneInterval = 1 * time.Minute

	// RequestBodyBytesMax bounds a request body.
	RequestBodyBytesMax = 1 << 20
	// PageSizeDefault and PageSizeMax bound list endpoints; FeedPageDefault is the event
	// feed's default page. The API's schema states PageSizeMax in its struct tags
	// (maximum:"500"), which Go cannot take from a constant: change both together.
	PageSizeDefault = 50
	PageSizeMax     = 500
	FeedPageDefault = 100
	// TimelineEventsMax bounds the events shown with one order.
	TimelineEventsMax = 200
	// IDBytesMax bounds client-chosen identifiers (SKU ids, user ids).
	IDBytesMax = 64
	// NameBytesMax bounds a SKU name.
	NameBytesMax = 200

	// UserOrderLimitersMax bounds the users whose order rate limit (serve
	// --user-order-rate) is tracked at once (guard.KeyLimiter says what happens past it).
	UserOrderLimitersMax = 100_000
	// RetryAfterOverload is what a 503 for a full queue asks the client to wait.
	RetryAfterOverload = 1 * time.Second

	// PaymentSyncBatchMax bounds the attempts (and refunds) one sync sweep queries.
	PaymentSyncBatchMax = 200
	// PaymentSyncConcurrency bounds the channel queries of a sweep in flight at once.
	PaymentSyncConcurrency = 16
	// PaymentSyncInterval is the longest a sync sweeper sleeps between sweeps.
	PaymentSyncInterval = 1 * time.Second
	// ReconDiscrepanciesMax bounds the discrepancies one reconciliation records (each a
	// review item, in one transaction); the rest are counted, and found again by the next
	// run of the day once these are settled.
	ReconDiscrepanciesMax = 500
	// ReconLookupConcurrency bounds the reads and channel queries of a reconciliation in
	// flight at once.
	ReconLookupConcurrency = 16
	// ReconDaysBack is how many ended days the daily reconciler looks back for a day not
	// reconciled yet (a channel down for a day, a node off over a weekend).
	ReconDaysBack = 7
	// ReconRetry is how long the daily reconciler waits after a failed run (a statement
	// not ready, a channel down) before trying the day again.
	ReconRetry = 10 * time.Minute
	// ReconRunsMax bounds the reconciliations one instance runs at once; others wait.
	ReconRunsMax = 2
	// ReconDaysMax is how far back a day may be reconciled on demand: channels keep
	// their statements for about three months (WeChat Pay) to a year.
	ReconDaysMax = 400
	// ReconRunMax bounds one reconciliation asked for over the API (the statement's
	// download, the reads, the channel queries and the record); its answer may take as
	// long, past the server's write timeout.
	ReconRunMax = 5 * time.Minute
	// ReconHourDefault is the UTC hour after which the daily reconciler fetches the
	// statement of the day before: channels publish T+1 statements by about 09:00-10:00.
	ReconHourDefault = 10
	// ReasonBytesMax bounds a refund reason or a review note.
	ReasonBytesMax = 500
	// NotificationBytesMax bounds a channel notification's body.
	NotificationBytesMax = 64 << 10

	// SagaDeadlineSecondsMax bounds a saga's policy.deadline_seconds (a week).
	SagaDeadlineSecondsMax = 7 * 24 * 3600

	// SagaStepsMax bounds the steps (or TCC branches) of one saga.
	SagaStepsMax = 32
	// SagaPayloadBytesMax bounds one call's payload; SagaURLBytesMax its URL.
	SagaPayloadBytesMax = 16 << 10
	SagaURLBytesMax     = 2048
	// SagaGIDBytesMax bounds a global transaction id (DTM gids are client-chosen).
	SagaGIDBytesMax = 128
	// Saga policy defaults and bounds: one call's timeout, the attempts of a forward call
	// before it counts as failed for good, the backoff between attempts, and the attempts
	// of a compensation or confirm before the saga waits in dead_letter (with the backoff
	// capped at a minute, 1,440 attempts span about a day).
	SagaStepTimeoutDefault = 10 * time.Second
	SagaStepTimeoutMax     = 5 * time.Minute
	SagaRetriesDefault     = 5
	SagaRetriesMax         = 100
	SagaBackoffMinDefault  = 200 * time.Millisecond
	SagaBackoffMaxDefault  = time.Minute
	SagaCompensateDefault  = 1440
	SagaCompensateMax      = 100_000
	SagaPreparedTimeout    = 30 * time.Second // a DTM-style TCC not submitted by then is aborted
	SagaClaimBatchMax      = 500              // sagas one claim takes
	SagaCacheMax           = 20_000           // running sagas the committer holds as it last wrote them
	SagaCallsInFlightMax   = 256              // participant calls of one instance at once
	SagaCallsPerTargetMax  = 64               // of those, to one host
	SagaRefusedMax         = 20_000           // sagas per host woken when its breaker closes
	SagaPollInterval       = 200 * time.Millisecond
	SagaBreakerFailures    = 5                      // consecutive failures that open a host's breaker
	SagaBreakerOpenFor     = 500 * time.Millisecond // before one probe call is let through
	SagaBreakerWaitMax     = 3 * time.Second        // a call waits for its host's open breaker (within its step timeout)
	SagaProbeEveryMax      = 5 * time.Second        // between sagas woken to probe a host whose every call was refused
	SagaResponseBytesMax   = 64 << 10               // of a participant's answer body read
	// SagaRecordDefer is how long a saga's success, whose next call is out, waits to be
	// recorded with that call's outcome in one record rather than alone: long enough for a
	// participant's answer under load (the saga bench's calls take tens of ms at 64
	// clients), short enough that an operator sees a step's success within a second, and
	// below the 2 s margin of a saga's hold over its step timeout, so the record renews the
	// hold before it runs out.
	SagaRecordDefer = 500 * time.Millisecond

	// HoldsPerGIDMax bounds the stock holds one read of a global transaction shows (and
	// 3x as many barrier rows: try, confirm, cancel per branch).
	HoldsPerGIDMax = 100

	// WebhookEndpointsMax bounds the endpoints of one database; WebhookEventTypesMax the
	// types one endpoint selects, WebhookEventTypeBytesMax each of them; WebhookURLBytesMax
	// an endpoint's URL.
	WebhookEndpointsMax      = 100
	WebhookEventTypesMax     = 32
	WebhookEventTypeBytesMax = 64
	WebhookURLBytesMax       = 2048
	// WebhookSchedulePageMax bounds the events one scheduling pass reads from the feed
	// (and so the events one ScheduleWebhooks command carries); WebhookScheduleRoundsMax
	// the pages one pass reads before it lets deliveries go out.
	WebhookSchedulePageMax   = 500
	WebhookScheduleRoundsMax = 20
	// WebhookCallsInFlightMax bounds the POSTs of one instance at once (and so the
	// deliveries one claim takes), WebhookCallsPerHostMax those to one host (a host that
	// hangs holds at most that many slots, and the others keep theirs).
	WebhookCallsInFlightMax = 64
	WebhookCallsPerHostMax  = 16
	// WebhookTimeout bounds one POST, from dialling to the end of the answer read; a
	// claim holds a delivery for WebhookTimeout + WebhookClaimMargin, so the attempt is
	// recorded before another claim may take it.
	WebhookTimeout     = 10 * time.Second
	WebhookClaimMargin = 5 * time.Second
	// WebhookPollInterval is the longest the deliverer sleeps between passes.
	WebhookPollInterval = 1 * time.Second
	// A host's breaker opens after WebhookBreakerFailures consecutive failures; its due
	// deliveries then fail at once (each an attempt on the schedule) for
	// WebhookBreakerOpenFor, after which one probe is let through.
	WebhookBreakerFailures = 5
	WebhookBreakerOpenFor  = 30 * time.Second
	// WebhookResponseBytesMax bounds what is read of an answer; WebhookErrorBytesMax what
	// is kept of it as a delivery's LastError.
	WebhookResponseBytesMax = 4 << 10
	WebhookErrorBytesMax    = 300
	// WebhookJitterFraction spreads each retry by up to this fraction either way, so
	// deliveries that failed together (a receiver's outage) do not come back together.
	WebhookJitterFraction = 0.1
	// WebhookScheduleStepsMax bounds a configured retry schedule.
	WebhookScheduleStepsMax = 64
)

// WebhookSchedule is when a delivery is attempted: step n is the wait before attempt n+1,
// counted from the previous attempt (the first from the event's scheduling). Eight
// attempts over 23 h 36 min, about a day (Stripe retries for three days, GitHub not at
// all; a day covers a receiver's overnight outage). After the last one fails the delivery
// is dead: it waits in its endpoint's dead-letter list for an operator's redelivery.
var WebhookSchedule = []time.Duration{0, 1 * time.Minute, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 8 * time.Hour, 8 * time.Hour}

// PaymentSyncSchedule is when the payment sync queries an open attempt, counted from the
// previous query (the first from the attempt's creation), the cadence of jeepay's reissue
// task and Kill Bill's janitor: a lost notification is found within minutes; after the
// last step the attempt goes to the review queue with its evidence.
var PaymentSyncSchedule = []time.Duration{1 * time.Minute, 5 * time.Minute, 15 * time.Minute, 1 * time.Hour, 6 * time.Hour}

// RefundSyncSchedule is the same for a pending refund: the first step sends it, the
// others query it.
var RefundSyncSchedule = []time.Duration{0, 1 * time.Minute, 5 * time.Minute, 15 * time.Minute, 1 * time.Hour, 6 * time.Hour}

// Assert panics when cond is false. It marks programmer errors and broken invariants: the
// process crashes and restarts from durable state rather than carrying on corrupt.
func Assert(cond bool, format string, args ...any) {
	if !cond {
		panic(fmt.Sprintf("assertion failed: "+format, args...))
	}
}
