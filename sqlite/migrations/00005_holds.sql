-- +goose Up
-- Stock as a TCC participant: holds (what a branch's try reserved), their ledger rows, and
-- the sub-transaction barrier that orders a branch's try, confirm and cancel. Times are
-- integer microseconds since the Unix epoch (UTC).

-- A hold is one row, its lines included (JSON): every line resolves together, so the
-- hold's status is each line's. Ids and branch ids are bounded in bytes, as the barrier
-- package bounds them.
CREATE TABLE holds (
    id         TEXT PRIMARY KEY,
    gid        TEXT NOT NULL CHECK (length(CAST(gid AS BLOB)) BETWEEN 1 AND 128),
    branch_id  TEXT NOT NULL CHECK (length(CAST(branch_id AS BLOB)) BETWEEN 1 AND 128),
    status     TEXT NOT NULL CHECK (status IN ('reserved', 'committed', 'released')),
    lines      TEXT NOT NULL CHECK (json_valid(lines) AND json_type(lines) = 'array'
               AND json_array_length(lines) >= 1), -- JSON [{"sku":...,"quantity":...}]
    version    INTEGER NOT NULL CHECK (version >= 1),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
-- One hold per branch: a branch's try takes effect at most once.
CREATE UNIQUE INDEX holds_branch ON holds (gid, branch_id);

-- The barrier: the public barrier package's table (barrier.Migrate), with times as
-- integers like every other table here. The CHECKs repeat the engine's validation.
CREATE TABLE barriers (
    trans_type TEXT NOT NULL CHECK (trans_type IN ('tcc', 'saga')),
    gid        TEXT NOT NULL CHECK (length(CAST(gid AS BLOB)) BETWEEN 1 AND 128),
    branch_id  TEXT NOT NULL CHECK (length(CAST(branch_id AS BLOB)) BETWEEN 1 AND 128),
    op         TEXT NOT NULL CHECK (op IN ('try', 'confirm', 'cancel', 'action', 'compensate')),
    reason     TEXT NOT NULL CHECK (reason IN ('try', 'confirm', 'cancel', 'action', 'compensate')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (gid, branch_id, op)
) WITHOUT ROWID;

-- A ledger row now names an order line or a hold line (hold_id, line_no), never both; a
-- hold only reserves, commits and releases. SQLite cannot change a CHECK in place, so the
-- ledger is rebuilt, as in 00002. Each hold line is reserved once and resolved (commit or
-- release) at most once: a second unique index, keyed like the orders' one.
CREATE TABLE stock_ledger_v3 (
    seq        INTEGER PRIMARY KEY,
    sku        TEXT NOT NULL,
    movement   TEXT NOT NULL CHECK (movement IN ('restock', 'reserve', 'commit', 'release', 'revive', 'return')),
    d_total    INTEGER NOT NULL,
    d_reserved INTEGER NOT NULL,
    d_sold     INTEGER NOT NULL,
    order_id   TEXT,
    line_no    INTEGER,
    at         INTEGER NOT NULL,
    hold_id    TEXT,
    CHECK ((movement = 'restock') = (order_id IS NULL AND hold_id IS NULL)),
    CHECK (order_id IS NULL OR hold_id IS NULL),
    CHECK (hold_id IS NULL OR (movement IN ('reserve', 'commit', 'release') AND line_no >= 1))
);
INSERT INTO stock_ledger_v3 (seq, sku, movement, d_total, d_reserved, d_sold, order_id, line_no, at)
    SELECT seq, sku, movement, d_total, d_reserved, d_sold, order_id, line_no, at FROM stock_ledger;
DROP TABLE stock_ledger;
ALTER TABLE stock_ledger_v3 RENAME TO stock_ledger;
CREATE UNIQUE INDEX stock_ledger_reservation ON stock_ledger
    (order_id, line_no, CASE movement WHEN 'reserve' THEN 0 WHEN 'revive' THEN 2 WHEN 'return' THEN 3 ELSE 1 END)
    WHERE order_id IS NOT NULL;
CREATE UNIQUE INDEX stock_ledger_hold ON stock_ledger (hold_id, line_no, movement = 'reserve')
    WHERE hold_id IS NOT NULL;

-- +goose Down
DELETE FROM stock_ledger WHERE hold_id IS NOT NULL;
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
DROP TABLE barriers;
DROP TABLE holds;
