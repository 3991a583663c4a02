-- +goose Up
-- Sagas and TCC transactions that ordercore coordinates (internal/saga). A saga is one row,
-- its steps included, rewritten whole under its version; its history is in events. Times
-- are integer microseconds since the Unix epoch (UTC).
--
-- A rowid table, unlike the others: steps carry participants' payloads, so a row may take
-- kilobytes, and WITHOUT ROWID suits rows far smaller than a page.
CREATE TABLE sagas (
    gid         TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('saga', 'tcc')),
    status      TEXT NOT NULL CHECK (status IN ('prepared', 'trying', 'running', 'confirming', 'compensating',
                'completed', 'compensated', 'dead_letter')),
    steps       TEXT NOT NULL,            -- JSON []SagaStep
    order_id    TEXT NOT NULL DEFAULT '', -- '' when the saga fulfils no order
    policy      TEXT NOT NULL,            -- JSON SagaPolicy
    next_run_at INTEGER,                  -- NULL: no worker is due to look at it
    reason      TEXT NOT NULL DEFAULT '',
    dead_from   TEXT NOT NULL DEFAULT '' CHECK (dead_from IN ('', 'compensating', 'confirming')),
    deadline    INTEGER,                  -- NULL: no deadline
    version     INTEGER NOT NULL CHECK (version >= 1),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    -- Paired with the coordinator's rules: an ended saga, or one that waits for an
    -- operator, is no worker's business; a dead_letter saga, and only one, knows the phase
    -- an operator's retry resumes.
    CHECK (status NOT IN ('completed', 'compensated', 'dead_letter') OR next_run_at IS NULL),
    CHECK ((status = 'dead_letter') = (dead_from <> ''))
);
-- The claim reads only due sagas, earliest first.
CREATE INDEX sagas_due ON sagas (next_run_at, gid) WHERE next_run_at IS NOT NULL;
-- Listings, newest first: all sagas, or those of one status.
CREATE INDEX sagas_created ON sagas (created_at, gid);
CREATE INDEX sagas_status ON sagas (status, created_at, gid);
-- An order's fulfilment sagas.
CREATE INDEX sagas_order ON sagas (order_id) WHERE order_id <> '';

-- +goose Down
DROP TABLE sagas;
