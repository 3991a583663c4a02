package postgres

import (
	"context"
	"slices"

	"github.com/jackc/pgx/v5"

	"ordercore"
)

// The event feed and its gaps.
//
// Several instances append to events at once, and a sequence number is drawn when the
// row is inserted, not when its transaction commits: without care, 101 becomes visible
// while 100 is still in flight, a reader's cursor moves past 100, and 100 is lost to it
// when it commits (DESIGN.md, principle 3).
//
// The rule here: an append takes a transaction-scoped advisory lock (one per schema)
// right before it draws its sequence numbers, and holds it until its transaction ends.
// A sequence number is therefore only ever drawn after every transaction that drew a
// lower one has committed (and become visible: PostgreSQL releases a transaction's locks
// after its commit is visible) or rolled back. So the feed can read plainly "seq > after":
// a gap below the highest visible number is a rolled-back append and never fills in.
//
// Why not the other common rule, "store pg_current_xact_id() in each row and only return
// rows whose xid is below pg_snapshot_xmin(pg_current_snapshot())"? It is not enough when
// sequence numbers are drawn in a different order from transaction ids, which is the
// normal case here: a batch gets its xid at its first write (the FOR UPDATE of its loads)
// and draws its event numbers at the end of Apply. If batch T0 (xid 99) is slow and T1
// (xid 100) draws 5 and stays in flight while T0 draws 7 and commits, the snapshot's xmin
// is 100, T0's row 7 passes the filter, a reader advances to 7, and 5 is lost when T1
// commits. (Ordering the feed by xid instead would break the contract that it is in Seq
// order, and would even put causally later events first.) events_test.go shows that case.
//
// The cost: appends of different instances are serialised from their event insert to
// their commit, which is the end of Apply (events are written last for that reason) and
// the commit's WAL flush. Batches that touch a common row (a hot SKU) are serialised by
// its row lock for longer than that anyway. Reads never take the lock.

const eventCols = "seq, id, type, aggregate_type, aggregate_id, time, data"

// queueEvents adds the append of events to b: the lock, then one multi-row insert whose
// rows are numbered in the order given.
func (db *DB) queueEvents(b *pgx.Batch, events []ordercore.Event) {
	n := len(events)
	if n == 0 {
		return
	}
	ids, types, aggTypes, aggIDs, data := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	times := make([]int64, n)
	for i, e := range events {
		ids[i], types[i], aggTypes[i], aggIDs[i], data[i] = e.ID, e.Type, e.AggregateType, e.AggregateID, string(e.Data)
		times[i] = micros(e.Time)
	}
	queue(b, "lock the event feed", "SELECT pg_advisory_xact_lock($1)", []any{db.eventsLock}, nil)
	queue(b, "insert events", `INSERT INTO events (id, type, aggregate_type, aggregate_id, time, data)
		SELECT id, type, aggregate_type, aggregate_id, time, data
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
			WITH ORDINALITY AS u(id, type, aggregate_type, aggregate_id, time, data, n)
		ORDER BY n`,
		[]any{ids, types, aggTypes, aggIDs, times, data}, insertN(n, "events"))
}

func queryEvents(ctx context.Context, q querier, where string, args ...any) ([]ordercore.Event, error) {
	out, err := collect(ctx, q, "events", "SELECT "+eventCols+" FROM events "+where, args, func(rows pgx.Rows) (ordercore.Event, error) {
		var e ordercore.Event
		var t int64
		var data string
		err := rows.Scan(&e.Seq, &e.ID, &e.Type, &e.AggregateType, &e.AggregateID, &t, &data)
		e.Time, e.Data = fromMicros(t), []byte(data)
		return e, err
	})
	if out == nil && err == nil {
		out = []ordercore.Event{}
	}
	return out, err
}

// Events reads the feed after a sequence number. Every event it returns was appended
// after all events with lower numbers were committed or rolled back (see above), so a
// cursor that advances to the last one returned never skips one that commits later.
func (db *DB) Events(ctx context.Context, after int64, limit int) ([]ordercore.Event, error) {
	return queryEvents(ctx, db.pool, "WHERE seq > $1 ORDER BY seq LIMIT $2", after, limit)
}

// AggregateEvents reads one aggregate's timeline.
// RecentAggregateEvents reads the end of one aggregate's timeline, backwards over the
// events_aggregate index.
func (db *DB) RecentAggregateEvents(ctx context.Context, id string, limit int) ([]ordercore.Event, error) {
	evs, err := queryEvents(ctx, db.pool, "WHERE aggregate_id = $1 ORDER BY seq DESC LIMIT $2", id, limit)
	slices.Reverse(evs)
	return evs, err
}

func (db *DB) AggregateEvents(ctx context.Context, id string, limit int) ([]ordercore.Event, error) {
	return queryEvents(ctx, db.pool, "WHERE aggregate_id = $1 ORDER BY seq LIMIT $2", id, limit)
}

// LastAggregateEvent reads the latest event of a type on an aggregate, backwards over
// the events_aggregate index.
func (db *DB) LastAggregateEvent(ctx context.Context, id, typ string) (ordercore.Event, bool, error) {
	evs, err := queryEvents(ctx, db.pool, "WHERE aggregate_id = $1 AND type = $2 ORDER BY seq DESC LIMIT 1", id, typ)
	if err != nil || len(evs) == 0 {
		return ordercore.Event{}, false, err
	}
	return evs[0], true, nil
}
