-- +goose Up
-- Outbound webhooks (internal/events): endpoints that receive events as signed POSTs, and
-- one delivery per event owed to an endpoint, with what its attempts did. Times are
-- BIGINT microseconds since the Unix epoch (UTC).
CREATE TABLE webhook_endpoints (
    id          TEXT COLLATE "C" PRIMARY KEY,
    url         TEXT NOT NULL CHECK (url LIKE 'http://_%' OR url LIKE 'https://_%'),
    event_types TEXT[] NOT NULL CHECK (cardinality(event_types) >= 1),
    secret      TEXT NOT NULL CHECK (length(secret) = 64),
    enabled     BOOLEAN NOT NULL,
    cursor_seq  BIGINT NOT NULL CHECK (cursor_seq >= 0), -- the last event scheduled for it
    version     BIGINT NOT NULL CHECK (version >= 1),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- A foreign key, unlike order_lines: deliveries are not the hot path, so the check is one
-- primary-key probe per scheduled delivery. A deleted endpoint's deliveries are deleted
-- first, in the same transaction.
CREATE TABLE webhook_deliveries (
    id              TEXT COLLATE "C" PRIMARY KEY,
    endpoint_id     TEXT COLLATE "C" NOT NULL REFERENCES webhook_endpoints (id),
    event_id        TEXT COLLATE "C" NOT NULL,
    event_seq       BIGINT NOT NULL CHECK (event_seq >= 1),
    event_type      TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        BIGINT NOT NULL CHECK (attempts >= 0),
    next_attempt_at BIGINT,                  -- NULL unless pending
    last_status     BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    version         BIGINT NOT NULL CHECK (version >= 1),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    delivered_at    BIGINT,                  -- the last 2xx; NULL: never delivered
    -- Paired with the engine's rules: only a pending delivery is due, and a delivered one
    -- knows when.
    CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK (status <> 'delivered' OR delivered_at IS NOT NULL)
);
-- One delivery per event per endpoint: the database half of the scheduler's cursor rule.
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (endpoint_id, event_id);
-- The deliverer reads only due deliveries, earliest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) WHERE next_attempt_at IS NOT NULL;
-- An endpoint's deliveries, newest first: all, or those of one status (dead: its
-- dead-letter list).
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (endpoint_id, status, id);

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
