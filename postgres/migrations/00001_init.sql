-- +goose Up
-- The same tables and guards as the SQLite store's. Times are BIGINT microseconds since
-- the Unix epoch (UTC); money is BIGINT minor units. Identifiers are COLLATE "C" so that
-- they compare and sort byte-wise, as on SQLite, whatever the database's locale: pages
-- ("newest first, after id X") depend on it.

CREATE TABLE skus (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT NOT NULL,
    price_amount BIGINT NOT NULL CHECK (price_amount >= 0),
    currency     TEXT NOT NULL,
    total        BIGINT NOT NULL CHECK (total >= 0),
    reserved     BIGINT NOT NULL CHECK (reserved >= 0),
    sold         BIGINT NOT NULL CHECK (sold >= 0),
    version      BIGINT NOT NULL CHECK (version >= 1),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    -- P1, the database half of the pair (the engine asserts the same): no overselling.
    CHECK (total - reserved - sold >= 0)
);

CREATE TABLE orders (
    id            TEXT COLLATE "C" PRIMARY KEY,
    user_id       TEXT COLLATE "C" NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending_payment', 'paid', 'fulfilling', 'shipped',
                  'completed', 'cancelled', 'refunding', 'refunded', 'partially_refunded')),
    currency      TEXT NOT NULL,
    amount        BIGINT NOT NULL CHECK (amount >= 0),
    expires_at    BIGINT NOT NULL,
    version       BIGINT NOT NULL CHECK (version >= 1),
    cancel_reason TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
-- Order lists per user, newest first (ids are UUIDv7, so they sort by creation time).
CREATE INDEX orders_user ON orders (user_id, id);
-- Deadlines are an index, not timers: the expiry sweeper reads only due unpaid orders.
CREATE INDEX orders_expiry ON orders (expires_at) WHERE status = 'pending_payment';

-- Each line is also the order's two-phase reservation of that SKU's stock. No foreign keys,
-- as on SQLite: lines are written only by the committer, with their order, in one
-- transaction, and `ordercore verify` checks the references.
CREATE TABLE order_lines (
    order_id    TEXT COLLATE "C" NOT NULL,
    line_no     INTEGER NOT NULL CHECK (line_no >= 1),
    sku         TEXT COLLATE "C" NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 999),
    unit_price  BIGINT NOT NULL CHECK (unit_price >= 0),
    amount      BIGINT NOT NULL CHECK (amount = unit_price * quantity),
    reservation TEXT NOT NULL CHECK (reservation IN ('reserved', 'committed', 'released')),
    PRIMARY KEY (order_id, line_no)
);

-- Every stock movement, immutable. SKU balances are its projection.
CREATE TABLE stock_ledger (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku        TEXT COLLATE "C" NOT NULL,
    movement   TEXT NOT NULL CONSTRAINT stock_ledger_movement CHECK (movement IN ('restock', 'reserve', 'commit', 'release')),
    d_total    BIGINT NOT NULL,
    d_reserved BIGINT NOT NULL,
    d_sold     BIGINT NOT NULL,
    order_id   TEXT COLLATE "C",
    line_no    INTEGER,
    at         BIGINT NOT NULL,
    CHECK ((movement = 'restock') = (order_id IS NULL))
);
-- A reservation is made once and resolved (committed or released) at most once: one
-- index holds both rules, keyed by whether the entry is the reserve.
CREATE UNIQUE INDEX stock_ledger_reservation ON stock_ledger (order_id, line_no, (movement = 'reserve'))
    WHERE order_id IS NOT NULL;

-- The history: outbox, audit timeline, and the source projections are rebuilt from. The
-- store appends to it under a transaction-scoped lock held until commit, so sequence
-- numbers become visible in order (see the postgres package's events.go).
CREATE TABLE events (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             TEXT COLLATE "C" NOT NULL,
    type           TEXT NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT COLLATE "C" NOT NULL,
    time           BIGINT NOT NULL,
    data           TEXT NOT NULL -- the payload byte for byte (jsonb would reformat it)
);
CREATE INDEX events_aggregate ON events (aggregate_id, seq);

-- Stored responses of requests that carried an Idempotency-Key.
CREATE TABLE idempotency_keys (
    key          TEXT COLLATE "C" PRIMARY KEY,
    request_hash TEXT NOT NULL,
    status       INTEGER NOT NULL,
    body         BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE events;
DROP TABLE stock_ledger;
DROP TABLE order_lines;
DROP TABLE orders;
DROP TABLE skus;
