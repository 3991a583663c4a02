package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"ordercore"
)

const endpointCols = "id, url, event_types, secret, enabled, cursor_seq, version, created_at, updated_at"

const deliveryCols = "id, endpoint_id, event_id, event_seq, event_type, status, attempts, next_attempt_at, last_status, last_error, version, created_at, updated_at, delivered_at"

// The batch loads lock their rows in id order, as the other loads do.
const (
	endpointsForUpdate  = "SELECT " + endpointCols + " FROM webhook_endpoints WHERE id = ANY($1) ORDER BY id FOR UPDATE"
	deliveriesForUpdate = "SELECT " + deliveryCols + " FROM webhook_deliveries WHERE id = ANY($1) ORDER BY id FOR UPDATE"
)

func scanEndpoint(rows pgx.Rows) (ordercore.WebhookEndpoint, error) {
	var e ordercore.WebhookEndpoint
	var created, updated int64
	err := rows.Scan(&e.ID, &e.URL, &e.EventTypes, &e.Secret, &e.Enabled, &e.Cursor, &e.Version, &created, &updated)
	e.CreatedAt, e.UpdatedAt = fromMicros(created), fromMicros(updated)
	return e, err
}

func scanDelivery(rows pgx.Rows) (ordercore.WebhookDelivery, error) {
	var d ordercore.WebhookDelivery
	var next, delivered *int64
	var created, updated, attempts, lastStatus int64
	err := rows.Scan(&d.ID, &d.EndpointID, &d.EventID, &d.EventSeq, &d.EventType, &d.Status, &attempts, &next, &lastStatus,
		&d.LastError, &d.Version, &created, &updated, &delivered)
	d.Attempts, d.LastStatus = int(attempts), int(lastStatus)
	d.NextAttemptAt, d.DeliveredAt = fromNullMicros(next), fromNullMicros(delivered)
	d.CreatedAt, d.UpdatedAt = fromMicros(created), fromMicros(updated)
	return d, err
}

// nonNil makes a listing of nothing an empty slice, as on SQLite.
func nonNil[T any](out []T, err error) ([]T, error) {
	if out == nil && err == nil {
		out = []T{}
	}
	return out, err
}

// WebhookEndpoints loads and locks endpoints in id order.
func (w *writeTx) WebhookEndpoints(ctx context.Context, ids []string) (map[string]ordercore.WebhookEndpoint, error) {
	out := make(map[string]ordercore.WebhookEndpoint, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	es, err := collect(ctx, w.tx, "webhook endpoints", endpointsForUpdate, []any{ids}, scanEndpoint)
	for _, e := range es {
		out[e.ID] = e
	}
	return out, err
}

// WebhookDeliveries loads and locks deliveries in id order.
func (w *writeTx) WebhookDeliveries(ctx context.Context, ids []string) (map[string]ordercore.WebhookDelivery, error) {
	out := make(map[string]ordercore.WebhookDelivery, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	ds, err := collect(ctx, w.tx, "webhook deliveries", deliveriesForUpdate, []any{ids}, scanDelivery)
	for _, d := range ds {
		out[d.ID] = d
	}
	return out, err
}

// WebhookEndpointCount takes the schema's endpoint-count lock, then counts the endpoints:
// the count is a statement of its own, so under READ COMMITTED it sees what a batch that
// held the lock before committed.
func (w *writeTx) WebhookEndpointCount(ctx context.Context) (int, error) {
	if err := w.tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(w.db.Schema, "webhook endpoints")); err != nil {
		return 0, fmt.Errorf("postgres: lock webhook endpoint count: %w", err)
	}
	rows, err := w.tx.Query(ctx, "SELECT count(*) FROM webhook_endpoints")
	if err != nil {
		return 0, fmt.Errorf("postgres: count webhook endpoints: %w", err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("postgres: count webhook endpoints: %w", err)
	}
	return int(n), nil
}

// queueWebhooks inserts new endpoints (one statement each: they are rare, and a TEXT[]
// column does not unnest), applies version-guarded endpoint changes that never move a
// cursor back nor rewrite a secret or a creation, inserts new deliveries in one
// multi-row insert (an id that exists, a second delivery of an event to an endpoint or a
// delivery to no endpoint fails it, and the batch), and applies version-guarded delivery
// changes.
func queueWebhooks(b *pgx.Batch, c *ordercore.Changeset) {
	for _, e := range c.NewWebhookEndpoints {
		queue(b, "insert webhook endpoint "+e.ID, "INSERT INTO webhook_endpoints ("+endpointCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
			[]any{e.ID, e.URL, e.EventTypes, e.Secret, e.Enabled, e.Cursor, e.Version, micros(e.CreatedAt), micros(e.UpdatedAt)},
			insertN(1, "webhook_endpoints"))
	}
	for _, ch := range c.WebhookEndpointChanges {
		e := ch.Endpoint
		queue(b, "update webhook endpoint "+e.ID, `UPDATE webhook_endpoints SET url = $2, event_types = $3, enabled = $5, cursor_seq = $6,
			version = $7, updated_at = $9
			WHERE id = $1 AND secret = $4 AND created_at = $8 AND cursor_seq <= $6 AND version = $10`,
			[]any{e.ID, e.URL, e.EventTypes, e.Secret, e.Enabled, e.Cursor, e.Version, micros(e.CreatedAt), micros(e.UpdatedAt), ch.FromVersion},
			affected(1, "webhook endpoint %s is no longer at version %d", e.ID, ch.FromVersion))
	}
	if n := len(c.NewWebhookDeliveries); n > 0 {
		ids, endpoints, events, types, statuses, errs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		seqs, attempts, lastStatus, versions, created, updated := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		next, delivered := make([]*int64, n), make([]*int64, n)
		for i, d := range c.NewWebhookDeliveries {
			ids[i], endpoints[i], events[i], types[i], statuses[i], errs[i] = d.ID, d.EndpointID, d.EventID, d.EventType, string(d.Status), d.LastError
			seqs[i], attempts[i], lastStatus[i], versions[i] = d.EventSeq, int64(d.Attempts), int64(d.LastStatus), d.Version
			created[i], updated[i], next[i], delivered[i] = micros(d.CreatedAt), micros(d.UpdatedAt), nullMicros(d.NextAttemptAt), nullMicros(d.DeliveredAt)
		}
		queue(b, "insert webhook deliveries", "INSERT INTO webhook_deliveries ("+deliveryCols+`)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::bigint[],
				$9::bigint[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[])`,
			[]any{ids, endpoints, events, seqs, types, statuses, attempts, next, lastStatus, errs, versions, created, updated, delivered},
			insertN(n, "webhook_deliveries"))
	}
	for _, ch := range c.WebhookDeliveryChanges {
		d := ch.Delivery
		queue(b, "update webhook delivery "+d.ID, `UPDATE webhook_deliveries SET status = $6, attempts = $7, next_attempt_at = $8,
			last_status = $9, last_error = $10, version = $11, updated_at = $13, delivered_at = $14
			WHERE id = $1 AND endpoint_id = $2 AND event_id = $3 AND event_seq = $4 AND event_type = $5 AND created_at = $12 AND version = $15`,
			[]any{d.ID, d.EndpointID, d.EventID, d.EventSeq, d.EventType, string(d.Status), int64(d.Attempts), nullMicros(d.NextAttemptAt),
				int64(d.LastStatus), d.LastError, d.Version, micros(d.CreatedAt), micros(d.UpdatedAt), nullMicros(d.DeliveredAt), ch.FromVersion},
			affected(1, "webhook delivery %s is no longer at version %d", d.ID, ch.FromVersion))
	}
	for _, del := range c.DeletedWebhookEndpoints {
		queue(b, "delete webhook deliveries of "+del.ID, "DELETE FROM webhook_deliveries WHERE endpoint_id = $1", []any{del.ID},
			func(pgconn.CommandTag) error { return nil })
		queue(b, "delete webhook endpoint "+del.ID, "DELETE FROM webhook_endpoints WHERE id = $1 AND version = $2", []any{del.ID, del.FromVersion},
			affected(1, "webhook endpoint %s is no longer at version %d", del.ID, del.FromVersion))
	}
}

// WebhookEndpoint reads one endpoint.
func (db *DB) WebhookEndpoint(ctx context.Context, id string) (ordercore.WebhookEndpoint, error) {
	es, err := collect(ctx, db.pool, "webhook endpoint", "SELECT "+endpointCols+" FROM webhook_endpoints WHERE id = $1", []any{id}, scanEndpoint)
	if err != nil {
		return ordercore.WebhookEndpoint{}, err
	}
	if len(es) == 0 {
		return ordercore.WebhookEndpoint{}, notFound("webhook endpoint", id)
	}
	return es[0], nil
}

// ListWebhookEndpoints lists endpoints by id (oldest first), after afterID.
func (db *DB) ListWebhookEndpoints(ctx context.Context, afterID string, limit int) ([]ordercore.WebhookEndpoint, error) {
	return nonNil(collect(ctx, db.pool, "webhook endpoints", "SELECT "+endpointCols+" FROM webhook_endpoints WHERE id > $1 ORDER BY id LIMIT $2",
		[]any{afterID, int64(limit)}, scanEndpoint))
}

// ListWebhookDeliveries lists an endpoint's deliveries newest first, over
// webhook_deliveries_status when a status is given and webhook_deliveries_endpoint
// otherwise. The cursor is a delivery id of that endpoint; one that names none is
// refused.
func (db *DB) ListWebhookDeliveries(ctx context.Context, endpointID string, status ordercore.WebhookStatus, afterID string, limit int) ([]ordercore.WebhookDelivery, error) {
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	where = append(where, "endpoint_id = "+arg(endpointID))
	if status != "" {
		where = append(where, "status = "+arg(string(status)))
	}
	if afterID != "" {
		var n int
		err := db.pool.QueryRow(ctx, "SELECT 1 FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2", afterID, endpointID).Scan(&n)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ordercore.Errorf(ordercore.EInvalidCursor, "no delivery %q of endpoint %q to list after", afterID, endpointID)
		} else if err != nil {
			return nil, fmt.Errorf("postgres: read delivery cursor: %w", err)
		}
		where = append(where, "id < "+arg(afterID))
	}
	q := "SELECT " + deliveryCols + " FROM webhook_deliveries WHERE " + strings.Join(where, " AND ") + " ORDER BY id DESC LIMIT " + arg(int64(limit))
	return nonNil(collect(ctx, db.pool, "webhook deliveries", q, args, scanDelivery))
}

// DueWebhookDeliveries lists the due deliveries of the endpoints of want in one
// statement: for each endpoint asked for, in want's order, a lateral read of its earliest
// due deliveries over webhook_deliveries_endpoint_due. It takes no locks: the claim
// through the committer (version-guarded) is what keeps a delivery from being sent twice
// at once, by this instance or another.
func (db *DB) DueWebhookDeliveries(ctx context.Context, now time.Time, want []ordercore.WebhookDue) ([]ordercore.WebhookDelivery, error) {
	ids, maxes := make([]string, 0, len(want)), make([]int64, 0, len(want))
	for _, w := range want {
		if w.Max > 0 {
			ids, maxes = append(ids, w.EndpointID), append(maxes, int64(w.Max))
		}
	}
	if len(ids) == 0 {
		return []ordercore.WebhookDelivery{}, nil
	}
	q := "SELECT " + qualified("d", deliveryCols) + ` FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS w(endpoint_id, n, ord)
		JOIN webhook_endpoints e ON e.id = w.endpoint_id COLLATE "C" AND e.enabled
		CROSS JOIN LATERAL (SELECT ` + deliveryCols + ` FROM webhook_deliveries
			WHERE endpoint_id = w.endpoint_id COLLATE "C" AND next_attempt_at IS NOT NULL AND next_attempt_at <= $1
			ORDER BY next_attempt_at, id LIMIT w.n) d
		ORDER BY w.ord, d.next_attempt_at, d.id`
	return nonNil(collect(ctx, db.pool, "due webhook deliveries", q, []any{micros(now), ids, maxes}, scanDelivery))
}

// dumpWebhooks adds the endpoints and deliveries to a snapshot, by id.
func dumpWebhooks(ctx context.Context, tx pgx.Tx, snap *ordercore.Snapshot) error {
	var err error
	if snap.WebhookEndpoints, err = nonNil(collect(ctx, tx, "webhook endpoints", "SELECT "+endpointCols+" FROM webhook_endpoints ORDER BY id", nil, scanEndpoint)); err != nil {
		return err
	}
	snap.WebhookDeliveries, err = nonNil(collect(ctx, tx, "webhook deliveries", "SELECT "+deliveryCols+" FROM webhook_deliveries ORDER BY id", nil, scanDelivery))
	return err
}
