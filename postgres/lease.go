package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AcquireLease takes the lease name for holder for ttl on the database's clock when it is
// free, expired or already holder's (a renewal), in one statement, and reports whether
// holder has it. It implements internal/lease.Store; see that package for how leases are
// used and why nothing relies on them for correctness.
func (db *DB) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	var term int64
	err := db.pool.QueryRow(ctx, `
INSERT INTO leases AS l (name, holder, term, acquired_at, renewed_at, expires_at)
VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp(), clock_timestamp() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE SET
    holder      = EXCLUDED.holder,
    term        = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at >= clock_timestamp() THEN l.term ELSE l.term + 1 END,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at >= clock_timestamp() THEN l.acquired_at ELSE EXCLUDED.acquired_at END,
    renewed_at  = EXCLUDED.renewed_at,
    expires_at  = EXCLUDED.expires_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at < clock_timestamp()
RETURNING term`, name, holder, ttl.Seconds()).Scan(&term)
	if err == pgx.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("postgres: acquire lease %s: %w", name, err)
	}
	return true, nil
}

// ReleaseLease ends holder's lease now, if it still holds it, so another instance can take
// it at once; the row stays, with its term.
func (db *DB) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := db.pool.Exec(ctx, `UPDATE leases SET expires_at = GREATEST(renewed_at, clock_timestamp() - interval '1 microsecond')
WHERE name = $1 AND holder = $2`, name, holder)
	if err != nil {
		return fmt.Errorf("postgres: release lease %s: %w", name, err)
	}
	return nil
}

// Lease is one lease as operators see it.
type Lease struct {
	Name, Holder                     string
	Term                             int64
	AcquiredAt, RenewedAt, ExpiresAt time.Time
	Held                             bool // not expired on the database's clock
}

// Leases lists the leases.
func (db *DB) Leases(ctx context.Context) ([]Lease, error) {
	return collect(ctx, db.pool, "leases", `SELECT name, holder, term, acquired_at, renewed_at, expires_at, expires_at >= clock_timestamp()
FROM leases ORDER BY name`, nil, func(r pgx.Rows) (Lease, error) {
		var l Lease
		err := r.Scan(&l.Name, &l.Holder, &l.Term, &l.AcquiredAt, &l.RenewedAt, &l.ExpiresAt, &l.Held)
		return l, err
	})
}

// LockKey holds a session advisory lock on key in this schema until the returned func is
// called, waiting while another session (another instance) holds it; ctx ending first
// stops the wait with an error. What must run on one instance at a time, in whole, across
// every instance sharing the database takes it: a reconciliation of one channel's day
// (internal/recon), whose reads of the review queue and the items it opens must not
// interleave with another run's. The lock holds one pooled connection for its duration.
func (db *DB) LockKey(ctx context.Context, key string) (func(), error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: lock %s: %w", key, err)
	}
	k := lockKey(db.Schema, "key/"+key)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", k); err != nil {
		conn.Release()
		return nil, fmt.Errorf("postgres: lock %s: %w", key, err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", k); err != nil {
			// The lock lives with the session: end the session rather than pool it locked.
			conn.Conn().Close(ctx)
		}
		conn.Release()
	}, nil
}
