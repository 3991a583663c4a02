-- +goose Up
-- Stock as a TCC participant: holds (what a branch's try reserved), their ledger rows, and
-- the sub-transaction barrier that orders a branch's try, confirm and cancel. Times are
-- BIGINT microseconds since the Unix epoch (UTC).

-- A hold is one row, its lines included (JSON in TEXT, as the sagas' steps: written and
-- read whole, never queried inside): every line resolves together, so the hold's status
-- is each line's. Ids are bounded in bytes, as the barrier package bounds them.
CREATE TABLE holds (
    id         TEXT COLLATE "C" PRIMARY KEY,
    gid        TEXT COLLATE "C" NOT NULL CHECK (octet_length(gid) BETWEEN 1 AND 128),
    branch_id  TEXT COLLATE "C" NOT NULL CHECK (octet_length(branch_id) BETWEEN 1 AND 128),
    status     TEXT NOT NULL CHECK (status IN ('reserved', 'committed', 'released')),
    lines      TEXT NOT NULL CHECK (jsonb_typeof(lines::jsonb) = 'array' AND jsonb_array_length(lines::jsonb) >= 1),
                                                       -- JSON [{"sku":...,"quantity":...}]
    version    BIGINT NOT NULL CHECK (version >= 1),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- One hold per branch: a branch's try takes effect at most once.
CREATE UNIQUE INDEX holds_branch ON holds (gid, branch_id);

-- The barrier: the public barrier package's table (barrier.Migrate), with times as
-- BIGINT like every other table here. The CHECKs repeat the engine's validation. Writers
-- deciding a branch hold a transaction-scoped advisory lock on it (WriteTx.Barriers).
CREATE TABLE barriers (
    trans_type TEXT NOT NULL CHECK (trans_type IN ('tcc', 'saga')),
    gid        TEXT COLLATE "C" NOT NULL CHECK (octet_length(gid) BETWEEN 1 AND 128),
    branch_id  TEXT COLLATE "C" NOT NULL CHECK (octet_length(branch_id) BETWEEN 1 AND 128),
    op         TEXT NOT NULL CHECK (op IN ('try', 'confirm', 'cancel', 'action', 'compensate')),
    reason     TEXT NOT NULL CHECK (reason IN ('try', 'confirm', 'cancel', 'action', 'compensate')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (gid, branch_id, op)
);

-- A ledger row now names an order line or a hold line (hold_id, line_no), never both; a
-- hold only reserves, commits and releases. Each hold line is reserved once and resolved
-- (commit or release) at most once: a second unique index, keyed like the orders' one.
-- stock_ledger_check is the name PostgreSQL gave 00001's unnamed CHECK.
ALTER TABLE stock_ledger ADD COLUMN hold_id TEXT COLLATE "C",
    DROP CONSTRAINT stock_ledger_check,
    ADD CONSTRAINT stock_ledger_reference CHECK ((movement = 'restock') = (order_id IS NULL AND hold_id IS NULL)),
    ADD CONSTRAINT stock_ledger_one_reference CHECK (order_id IS NULL OR hold_id IS NULL),
    ADD CONSTRAINT stock_ledger_hold_movement CHECK (hold_id IS NULL OR (movement IN ('reserve', 'commit', 'release') AND line_no >= 1));
CREATE UNIQUE INDEX stock_ledger_hold ON stock_ledger (hold_id, line_no, (movement = 'reserve'))
    WHERE hold_id IS NOT NULL;

-- +goose Down
DELETE FROM stock_ledger WHERE hold_id IS NOT NULL;
DROP INDEX stock_ledger_hold;
ALTER TABLE stock_ledger DROP CONSTRAINT stock_ledger_hold_movement,
    DROP CONSTRAINT stock_ledger_one_reference,
    DROP CONSTRAINT stock_ledger_reference,
    DROP COLUMN hold_id,
    ADD CONSTRAINT stock_ledger_check CHECK ((movement = 'restock') = (order_id IS NULL));
DROP TABLE barriers;
DROP TABLE holds;
