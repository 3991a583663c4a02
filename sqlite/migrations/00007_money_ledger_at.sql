-- +goose Up
-- Daily statement reconciliation reads a channel's captures and refund commits of one
-- day (MoneyMovements): the money ledger is read by time.
CREATE INDEX money_ledger_at ON money_ledger (at);

-- +goose Down
DROP INDEX money_ledger_at;
