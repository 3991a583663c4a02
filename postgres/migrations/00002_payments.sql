-- +goose Up
-- Payments, refunds and the money ledger; the operators' review queue; the inbox of
-- channel notifications. Times are BIGINT microseconds since the Unix epoch (UTC); money
-- is BIGINT minor units of the payment's currency.

-- Late money may revive a cancelled order: its released lines are sold again (movement
-- 'revive'); a refund may put sold lines back on the shelf (movement 'return'). Each line
-- is reserved once, resolved (commit or release) at most once, revived at most once,
-- returned at most once. PostgreSQL changes the CHECK in place (SQLite rebuilds the table).
ALTER TABLE stock_ledger DROP CONSTRAINT stock_ledger_movement,
    ADD CONSTRAINT stock_ledger_movement CHECK (movement IN ('restock', 'reserve', 'commit', 'release', 'revive', 'return'));
DROP INDEX stock_ledger_reservation;
CREATE UNIQUE INDEX stock_ledger_reservation ON stock_ledger
    (order_id, line_no, (CASE movement WHEN 'reserve' THEN 0 WHEN 'revive' THEN 2 WHEN 'return' THEN 3 ELSE 1 END))
    WHERE order_id IS NOT NULL;

CREATE TABLE payments (
    id            TEXT COLLATE "C" PRIMARY KEY,   -- our out_trade_no at the channel
    order_id      TEXT COLLATE "C" NOT NULL,
    channel       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('created', 'pending', 'succeeded', 'failed', 'closed', 'unknown')),
    currency      TEXT NOT NULL,
    amount        BIGINT NOT NULL CHECK (amount >= 0),
    txn_id        TEXT NOT NULL DEFAULT '',
    accepted      BOOLEAN NOT NULL DEFAULT false,
    captured      BIGINT NOT NULL DEFAULT 0 CHECK (captured >= 0),
    refunding     BIGINT NOT NULL DEFAULT 0 CHECK (refunding >= 0),
    refunded      BIGINT NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    instructions  TEXT NOT NULL DEFAULT '{}',
    sync_attempts INTEGER NOT NULL DEFAULT 0,
    next_sync_at  BIGINT,            -- NULL: no query due
    version       BIGINT NOT NULL CHECK (version >= 1),
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    -- P2's money half, paired with the engine's assertion: never refund more than captured.
    CHECK (refunding + refunded <= captured),
    CHECK (NOT accepted OR status = 'succeeded')
);
CREATE INDEX payments_order ON payments (order_id, id);
-- One attempt per order may be open at the channel: the old one is closed first.
CREATE UNIQUE INDEX payments_open ON payments (order_id) WHERE status IN ('created', 'pending', 'unknown');
-- One successful payment pays an order; any other is refunded.
CREATE UNIQUE INDEX payments_accepted ON payments (order_id) WHERE accepted;
-- The payment sync reads only due attempts.
CREATE INDEX payments_sync ON payments (next_sync_at) WHERE next_sync_at IS NOT NULL;

CREATE TABLE refunds (
    id            TEXT COLLATE "C" PRIMARY KEY,   -- our out_refund_no at the channel
    order_id      TEXT COLLATE "C" NOT NULL,
    payment_id    TEXT COLLATE "C" NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('requested', 'duplicate', 'late', 'mismatch')),
    currency      TEXT NOT NULL,
    amount        BIGINT NOT NULL CHECK (amount > 0),
    reason        TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'abnormal')),
    refund_id     TEXT NOT NULL DEFAULT '',
    restock_lines TEXT NOT NULL DEFAULT '[]', -- JSON line numbers put back on the shelf when it succeeds
    sync_attempts INTEGER NOT NULL DEFAULT 0,
    next_sync_at  BIGINT,
    version       BIGINT NOT NULL CHECK (version >= 1),
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX refunds_order ON refunds (order_id, id);
CREATE INDEX refunds_sync ON refunds (next_sync_at) WHERE next_sync_at IS NOT NULL;

-- Every movement of a payment's money, immutable; the payments' balances are its projection.
CREATE TABLE money_ledger (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id TEXT COLLATE "C" NOT NULL,
    order_id   TEXT COLLATE "C" NOT NULL,
    refund_id  TEXT COLLATE "C" NOT NULL DEFAULT '',
    movement   TEXT NOT NULL CHECK (movement IN ('capture', 'refund_hold', 'refund_commit', 'refund_release')),
    amount     BIGINT NOT NULL CHECK (amount > 0),
    currency   TEXT NOT NULL,
    at         BIGINT NOT NULL,
    CHECK ((movement = 'capture') = (refund_id = ''))
);
-- A payment is captured once; a refund holds once and settles at most once.
CREATE UNIQUE INDEX money_ledger_once ON money_ledger
    (payment_id, refund_id, (CASE movement WHEN 'refund_hold' THEN 0 ELSE 1 END));

-- The inbox: a notification delivered twice is applied once.
CREATE TABLE channel_events (
    channel     TEXT COLLATE "C" NOT NULL,
    event_id    TEXT COLLATE "C" NOT NULL,
    payment_id  TEXT NOT NULL DEFAULT '',
    refund_id   TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (channel, event_id)
);

CREATE TABLE review_items (
    id          TEXT COLLATE "C" PRIMARY KEY,
    kind        TEXT NOT NULL,
    order_id    TEXT NOT NULL DEFAULT '',
    payment_id  TEXT NOT NULL DEFAULT '',
    refund_id   TEXT NOT NULL DEFAULT '',
    evidence    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    resolution  TEXT NOT NULL DEFAULT '',
    note        TEXT NOT NULL DEFAULT '',
    resolved_by TEXT NOT NULL DEFAULT '',
    resolved_at BIGINT,
    version     BIGINT NOT NULL CHECK (version >= 1),
    created_at  BIGINT NOT NULL,
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX review_items_status ON review_items (status, id);

-- +goose Down
DROP TABLE review_items;
DROP TABLE channel_events;
DROP TABLE money_ledger;
DROP TABLE refunds;
DROP TABLE payments;
DELETE FROM stock_ledger WHERE movement IN ('revive', 'return');
DROP INDEX stock_ledger_reservation;
CREATE UNIQUE INDEX stock_ledger_reservation ON stock_ledger (order_id, line_no, (movement = 'reserve'))
    WHERE order_id IS NOT NULL;
ALTER TABLE stock_ledger DROP CONSTRAINT stock_ledger_movement,
    ADD CONSTRAINT stock_ledger_movement CHECK (movement IN ('restock', 'reserve', 'commit', 'release'));
