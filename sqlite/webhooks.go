package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"ordercore"
)

const endpointCols = "id, url, event_types, secret, enabled, cursor_seq, version, created_at, updated_at"

const deliveryCols = "id, endpoint_id, event_id, event_seq, event_type, status, attempts, next_attempt_at, last_status, last_error, version, created_at, updated_at, delivered_at"

// The webhook side's write statements, prepared at Open (webhookStatements).
var (
	insertEndpoints  = newInsert("INSERT INTO webhook_endpoints ("+endpointCols+")", 9)
	insertDeliveries = newInsert("INSERT INTO webhook_deliveries ("+deliveryCols+")", 14)
	// updateEndpoint rewrites what may change about an endpoint, guarded by its version,
	// by what never changes (its secret and creation) and by its cursor, which never goes
	// back (a cursor that went back would schedule events twice).
	updateEndpoint = `UPDATE webhook_endpoints SET url = ?2, event_types = ?3, enabled = ?5, cursor_seq = ?6, version = ?7, updated_at = ?9
		WHERE id = ?1 AND secret = ?4 AND created_at = ?8 AND cursor_seq <= ?6 AND version = ?10`
	// updateDelivery rewrites a delivery's progress, guarded by its version and by the
	// event and endpoint it is for.
	updateDelivery = `UPDATE webhook_deliveries SET status = ?6, attempts = ?7, next_attempt_at = ?8, last_status = ?9, last_error = ?10,
		version = ?11, updated_at = ?13, delivered_at = ?14
		WHERE id = ?1 AND endpoint_id = ?2 AND event_id = ?3 AND event_seq = ?4 AND event_type = ?5 AND created_at = ?12 AND version = ?15`
	// A deleted endpoint takes its deliveries with it (they are deleted first: the foreign
	// key); the endpoint's delete is guarded by its version.
	deleteEndpointDeliveries = "DELETE FROM webhook_deliveries WHERE endpoint_id = ?"
	deleteEndpoint           = "DELETE FROM webhook_endpoints WHERE id = ? AND version = ?"
)

func endpointsByID(in string) string {
	return "SELECT " + endpointCols + " FROM webhook_endpoints WHERE id IN (" + in + ")"
}

func deliveriesByID(in string) string {
	return "SELECT " + deliveryCols + " FROM webhook_deliveries WHERE id IN (" + in + ")"
}

// webhookStatements lists the webhook side's statements to prepare at Open: the writes,
// and the batch loads for every padded IN-list size (inList).
func webhookStatements() []string {
	out := []string{updateEndpoint, updateDelivery, deleteEndpointDeliveries, deleteEndpoint}
	for _, in := range []insertSpec{insertEndpoints, insertDeliveries} {
		for _, q := range in.texts {
			out = append(out, q)
		}
	}
	for size := 1; size <= inListMax; size *= 2 {
		out = append(out, endpointsByID(marks(size)), deliveriesByID(marks(size)))
	}
	return out
}

type scanner interface{ Scan(...any) error }

func scanEndpoint(rows scanner) (ordercore.WebhookEndpoint, error) {
	var e ordercore.WebhookEndpoint
	var types string
	var created, updated int64
	if err := rows.Scan(&e.ID, &e.URL, &types, &e.Secret, &e.Enabled, &e.Cursor, &e.Version, &created, &updated); err != nil {
		return e, err
	}
	if err := json.Unmarshal([]byte(types), &e.EventTypes); err != nil {
		return e, fmt.Errorf("webhook endpoint %s event types: %w", e.ID, err)
	}
	e.CreatedAt, e.UpdatedAt = fromMicros(created), fromMicros(updated)
	return e, nil
}

func scanDelivery(rows scanner) (ordercore.WebhookDelivery, error) {
	var d ordercore.WebhookDelivery
	var next, delivered sql.NullInt64
	var created, updated int64
	err := rows.Scan(&d.ID, &d.EndpointID, &d.EventID, &d.EventSeq, &d.EventType, &d.Status, &d.Attempts, &next, &d.LastStatus,
		&d.LastError, &d.Version, &created, &updated, &delivered)
	d.NextAttemptAt, d.DeliveredAt = fromNullMicros(next), fromNullMicros(delivered)
	d.CreatedAt, d.UpdatedAt = fromMicros(created), fromMicros(updated)
	return d, err
}

// queryRows reads rows with scan; it never returns nil.
func queryRows[T any](ctx context.Context, q querier, what, query string, scan func(scanner) (T, error), args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query %s: %w", what, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: scan %s: %w", what, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func endpointArgs(e ordercore.WebhookEndpoint) ([]any, error) {
	types, err := json.Marshal(e.EventTypes)
	if err != nil {
		return nil, fmt.Errorf("sqlite: webhook endpoint %s event types: %w", e.ID, err)
	}
	return []any{e.ID, e.URL, string(types), e.Secret, e.Enabled, e.Cursor, e.Version, micros(e.CreatedAt), micros(e.UpdatedAt)}, nil
}

func deliveryArgs(d ordercore.WebhookDelivery) []any {
	return []any{d.ID, d.EndpointID, d.EventID, d.EventSeq, d.EventType, string(d.Status), d.Attempts, nullMicros(d.NextAttemptAt),
		d.LastStatus, d.LastError, d.Version, micros(d.CreatedAt), micros(d.UpdatedAt), nullMicros(d.DeliveredAt)}
}

// WebhookEndpoints loads endpoints by id (SQLite's single writer already serialises).
func (w *writeTx) WebhookEndpoints(ctx context.Context, ids []string) (map[string]ordercore.WebhookEndpoint, error) {
	out := make(map[string]ordercore.WebhookEndpoint, len(ids))
	err := chunks(ids, func(part []string) error {
		in, args := inList(part)
		es, err := queryRows(ctx, w, "webhook endpoints", endpointsByID(in), scanEndpoint, args...)
		for _, e := range es {
			out[e.ID] = e
		}
		return err
	})
	return out, err
}

// WebhookDeliveries loads deliveries by id.
func (w *writeTx) WebhookDeliveries(ctx context.Context, ids []string) (map[string]ordercore.WebhookDelivery, error) {
	out := make(map[string]ordercore.WebhookDelivery, len(ids))
	err := chunks(ids, func(part []string) error {
		in, args := inList(part)
		ds, err := queryRows(ctx, w, "webhook deliveries", deliveriesByID(in), scanDelivery, args...)
		for _, d := range ds {
			out[d.ID] = d
		}
		return err
	})
	return out, err
}

// WebhookEndpointCount counts the endpoints (SQLite's single writer serialises).
func (w *writeTx) WebhookEndpointCount(ctx context.Context) (int, error) {
	var n int
	if err := w.tx.QueryRowContext(ctx, "SELECT count(*) FROM webhook_endpoints").Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: count webhook endpoints: %w", err)
	}
	return n, nil
}

// webhooks writes a batch's new endpoints and deliveries (an id that exists, a second
// delivery of an event to an endpoint or a delivery to no endpoint fails the insert, and
// the batch) and their version-guarded changes.
func (w *writeTx) webhooks(ctx context.Context, c *ordercore.Changeset) error {
	rows := make([][]any, len(c.NewWebhookEndpoints))
	for i, e := range c.NewWebhookEndpoints {
		var err error
		if rows[i], err = endpointArgs(e); err != nil {
			return err
		}
	}
	if err := w.insert(ctx, insertEndpoints, len(rows), func(i int, a []any) []any { return append(a, rows[i]...) }); err != nil {
		return err
	}
	changes := make([][]any, len(c.WebhookEndpointChanges))
	for i, ch := range c.WebhookEndpointChanges {
		args, err := endpointArgs(ch.Endpoint)
		if err != nil {
			return err
		}
		changes[i] = append(args, ch.FromVersion)
	}
	err := w.execRows(ctx, updateEndpoint, len(changes), func(i int) []any { return changes[i] },
		versionGuard("webhook endpoint", func(i int) string { return c.WebhookEndpointChanges[i].Endpoint.ID },
			func(i int) int64 { return c.WebhookEndpointChanges[i].FromVersion }))
	if err != nil {
		return err
	}
	err = w.insert(ctx, insertDeliveries, len(c.NewWebhookDeliveries), func(i int, a []any) []any {
		return append(a, deliveryArgs(c.NewWebhookDeliveries[i])...)
	})
	if err != nil {
		return err
	}
	err = w.execRows(ctx, updateDelivery, len(c.WebhookDeliveryChanges),
		func(i int) []any {
			ch := c.WebhookDeliveryChanges[i]
			return append(deliveryArgs(ch.Delivery), ch.FromVersion)
		},
		versionGuard("webhook delivery", func(i int) string { return c.WebhookDeliveryChanges[i].Delivery.ID },
			func(i int) int64 { return c.WebhookDeliveryChanges[i].FromVersion }))
	if err != nil {
		return err
	}
	dels := c.DeletedWebhookEndpoints
	err = w.execRows(ctx, deleteEndpointDeliveries, len(dels), func(i int) []any { return []any{dels[i].ID} },
		func(int, int64) error { return nil })
	if err != nil {
		return err
	}
	return w.execRows(ctx, deleteEndpoint, len(dels), func(i int) []any { return []any{dels[i].ID, dels[i].FromVersion} },
		versionGuard("webhook endpoint", func(i int) string { return dels[i].ID }, func(i int) int64 { return dels[i].FromVersion }))
}

// WebhookEndpoint reads one endpoint.
func (db *DB) WebhookEndpoint(ctx context.Context, id string) (ordercore.WebhookEndpoint, error) {
	es, err := queryRows(ctx, db.read, "webhook endpoint", endpointsByID("?"), scanEndpoint, id)
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
	return queryRows(ctx, db.read, "webhook endpoints", "SELECT "+endpointCols+" FROM webhook_endpoints WHERE id > ? ORDER BY id LIMIT ?",
		scanEndpoint, afterID, limit)
}

// ListWebhookDeliveries lists an endpoint's deliveries newest first, over
// webhook_deliveries_status when a status is given and webhook_deliveries_endpoint
// otherwise. The cursor is a delivery id of that endpoint; one that names none is
// refused.
func (db *DB) ListWebhookDeliveries(ctx context.Context, endpointID string, status ordercore.WebhookStatus, afterID string, limit int) ([]ordercore.WebhookDelivery, error) {
	where, args := []string{"endpoint_id = ?"}, []any{endpointID}
	if status != "" {
		where, args = append(where, "status = ?"), append(args, string(status))
	}
	if afterID != "" {
		var n int
		err := db.read.QueryRowContext(ctx, "SELECT 1 FROM webhook_deliveries WHERE id = ? AND endpoint_id = ?", afterID, endpointID).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ordercore.Errorf(ordercore.EInvalidCursor, "no delivery %q of endpoint %q to list after", afterID, endpointID)
		} else if err != nil {
			return nil, fmt.Errorf("sqlite: read delivery cursor: %w", err)
		}
		where, args = append(where, "id < ?"), append(args, afterID)
	}
	q := "SELECT " + deliveryCols + " FROM webhook_deliveries WHERE " + strings.Join(where, " AND ") + " ORDER BY id DESC LIMIT ?"
	return queryRows(ctx, db.read, "webhook deliveries", q, scanDelivery, append(args, limit)...)
}

// dueOfEndpoint reads one endpoint's due deliveries over webhook_deliveries_endpoint_due.
var dueOfEndpoint = "SELECT " + qualified("d", deliveryCols) + ` FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
	WHERE d.endpoint_id = ? AND d.next_attempt_at IS NOT NULL AND d.next_attempt_at <= ? AND e.enabled = 1
	ORDER BY d.next_attempt_at, d.id LIMIT ?`

// DueWebhookDeliveries lists the due deliveries of the endpoints of want, endpoint by
// endpoint over webhook_deliveries_endpoint_due (reads are local, so one short query per
// endpoint costs little; there are at most limit.WebhookEndpointsMax).
func (db *DB) DueWebhookDeliveries(ctx context.Context, now time.Time, want []ordercore.WebhookDue) ([]ordercore.WebhookDelivery, error) {
	out := []ordercore.WebhookDelivery{}
	for _, w := range want {
		if w.Max <= 0 {
			continue
		}
		ds, err := queryRows(ctx, db.read, "due webhook deliveries", dueOfEndpoint, scanDelivery, w.EndpointID, micros(now), w.Max)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	return out, nil
}

// qualified prefixes each column of cols with table.
func qualified(table, cols string) string {
	parts := strings.Split(cols, ", ")
	for i, c := range parts {
		parts[i] = table + "." + c
	}
	return strings.Join(parts, ", ")
}

// dumpWebhooks adds the endpoints and deliveries to a snapshot, by id.
func dumpWebhooks(ctx context.Context, tx *sql.Tx, snap *ordercore.Snapshot) error {
	var err error
	if snap.WebhookEndpoints, err = queryRows(ctx, tx, "webhook endpoints", "SELECT "+endpointCols+" FROM webhook_endpoints ORDER BY id", scanEndpoint); err != nil {
		return err
	}
	snap.WebhookDeliveries, err = queryRows(ctx, tx, "webhook deliveries", "SELECT "+deliveryCols+" FROM webhook_deliveries ORDER BY id", scanDelivery)
	return err
}
