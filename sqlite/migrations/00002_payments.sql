-- +goose Up
-- Payments, refunds and the money ledger; the operators' review queue; the inbox of
-- channel notifications. Times are integer microseconds since the Unix epoch (UTC); money
-- is integer minor units of the payment's currency.

-- Late money may revive a cancelled order: its released lines are sold again (movement
-- 'revive'); a refund may put sold lines back on the shelf (movement 'return'). SQLite
-- cannot change a CHECK in place, so the ledger is rebuilt. Each line is reserved once,
-- resolved (commit or release) at most once, revived at most once, returned at most once.
CREATE TABLE stock_ledger_v2 (
    seq        INTEGER PRIMARY KEY,
    sku        TEXT NOT NULL,
    movement   TEXT NOT NULL CHECK (movement IN ('restock', 'reserve', 'commit', 'release', 'revive', 'return')),
    d_total    INTEGER NOT NULL,
    d_reserved INTEGER NOT NULL,
    d_sold     INTEGER NOT NULL,
    order_id   TEXT,
    line_no    INTEGER,
    at         INTEGER NOT NULL,
    CHECK ((movement = 'restock') = (order_id IS NULL))
);
INSERT INTO stock_ledger_v2 SELECT seq, sku, movement, d_total, d_reserved, d_sold, order_id, line_no, at FROM stock_ledger;
DROP TABLE stock_ledger;
ALTER TABLE stock_ledger_v2 RENAME TO stock_ledger;
CREATE UNIQUE INDEX stock_ledger_reservation ON stock_ledger
    (order_id, line_no, CASE movement WHEN 'reserve' THEN 0 WHEN 'revive' THEN 2 WHEN 'return' THEN 3 ELSE 1 END)
    WHERE order_id IS NOT NULL;

CREATE TABLE payments (
    id            TEXT PRIMARY KEY,   -- our out_trade_no at the channel
    order_id      TEXT NOT NULL,
    channel       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('created', 'pending', 'succeeded', 'failed', 'closed', 'unknown')),
    currency      TEXT NOT NULL,
    amount        INTEGER NOT NULL CHECK (amount >= 0),
    txn_id        TEXT NOT NULL DEFAULT '',
    accepted      INTEGER NOT NULL DEFAULT 0 CHECK (accepted IN (0, 1)),
    captured      INTEGER NOT NULL DEFAULT 0 CHECK (captured >= 0),
    refunding     INTEGER NOT NULL DEFAULT 0 CHECK (refunding >= 0),
    refunded      INTEGER NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    instructions  TEXT NOT NULL DEFAULT '{}',
    sync_attempts INTEGER NOT NULL DEFAULT 0,
    next_sync_at  INTEGER,            -- NULL: no query due
    version       INTEGER NOT NULL CHECK (version >= 1),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    -- P2's money half, paired with the engine's assertion: never refund more than captured.
    CHECK (refunding + refunded <= captured),
    CHECK (accepted = 0 OR status = 'succeeded')
) WITHOUT ROWID;
CREATE INDEX payments_order ON payments (order_id, id);
-- One attempt per order may be open at the channel: the old one is closed first.
CREATE UNIQUE INDEX payments_open ON payments (order_id) WHERE status IN ('created', 'pending', 'unknown');
-- One successful payment pays an order; any other is refunded.
CREATE UNIQUE INDEX payments_accepted ON payments (order_id) WHERE accepted = 1;
-- The payment sync reads only due attempts.
CREATE INDEX payments_sync ON payments (next_sync_at) WHERE next_sync_at IS NOT NULL;

CREATE TABLE refunds (
    id            TEXT PRIMARY KEY,   -- our out_refund_no at the channel
    order_id      TEXT NOT NULL,
    payment_id    TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('requested', 'duplicate', 'late', 'mismatch')),
    currency      TEXT NOT NULL,
    amount        INTEGER NOT NULL CHECK (amount > 0),
    reason        TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'abnormal')),
    refund_id     TEXT NOT NULL DEFAULT '',
    restock_lines TEXT NOT NULL DEFAULT '[]', -- JSON line numbers put back on the shelf when it succeeds
    sync_attempts INTEGER NOT NULL DEFAULT 0,
    next_sync_at  INTEGER,
    version       INTEGER NOT NULL CHECK (version >= 1),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX refunds_order ON refunds (order_id, id);
CREATE INDEX refunds_sync ON refunds (next_sync_at) WHERE next_sync_at IS NOT NULL;

-- Every movement of a payment's money, immutable; the payments' balances are its projection.
CREATE TABLE money_ledger (
    seq        INTEGER PRIMARY KEY,
    payment_id TEXT NOT NULL,
    order_id   TEXT NOT NULL,
    refund_id  TEXT NOT NULL DEFAULT '',
    movement   TEXT NOT NULL CHECK (movement IN ('capture', 'refund_hold', 'refund_commit', 'refund_release')),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    currency   TEXT NOT NULL,
    at         INTEGER NOT NULL,
    CHECK ((movement = 'capture') = (refund_id = ''))
);
-- A payment is captured once; a refund holds once and settles at most once.
CREATE UNIQUE INDEX money_ledger_once ON money_ledger
    (payment_id, refund_id, CASE movement WHEN 'refund_hold' THEN 0 ELSE 1 END);

-- The inbox: a notification delivered twice is applied once.
CREATE TABLE channel_events (
    channel     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    payment_id  TEXT NOT NULL DEFAULT '',
    refund_id   TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (channel, event_id)
) WITHOUT ROWID;

CREATE TABLE review_items (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    order_id    TEXT NOT NULL DEFAULT '',
    payment_id  TEXT NOT NULL DEFAULT '',
    refund_id   TEXT NOT NULL DEFAULT '',
    evidence    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    resolution  TEXT NOT NULL DEFAULT '',
    note        TEXT NOT NULL DEFAULT '',
    resolved_by TEXT NOT NULL DEFAULT '',
    resolved_at INTEGER,
    version     INTEGER NOT NULL CHECK (version >= 1),
    created_at  INTEGER NOT NULL,
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
) WITHOUT ROWID;
CREATE INDEX review_items_status ON review_items (status, id);

-- +goose Down
DROP TABLE review_items;
DROP TABLE channel_events;
DROP TABLE money_ledger;
DROP TABLE refunds;
DROP TABLE payments;
DELETE FROM stock_ledger WHERE movement IN ('revive', 'return');
DROP INDEX stock_ledger_reservation;
CREATE UNIQUE INDEX stock_ledger_reservation ON stock_ledger (order_id, line_no, movement = 'reserve')
    WHERE order_id IS NOT NULL;
