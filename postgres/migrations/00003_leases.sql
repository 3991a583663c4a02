-- +goose Up
-- Leases: which instance runs the background work (expiry sweep, payment sync, pruning,
-- event relay) when several share this database. One row per lease; expires_at is on the
-- database's clock so instances with skewed clocks agree; term counts hand-overs (it rises
-- each time a different holder takes the lease), for the log and for operators.
CREATE TABLE leases (
    name        TEXT COLLATE "C" PRIMARY KEY,
    holder      TEXT NOT NULL,
    term        BIGINT NOT NULL CHECK (term >= 1),
    acquired_at TIMESTAMPTZ NOT NULL,
    renewed_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    CHECK (expires_at >= renewed_at AND renewed_at >= acquired_at)
);

-- +goose Down
DROP TABLE leases;
