// Package engine is ordercore's one write path. Every state change is a Command submitted to
// the Engine, whose committer takes the commands that have queued (up to
// limit.BatchCommandsMax, optionally going on for a configured delay while more arrive) and executes them
// all in one store transaction: it loads the rows they touch, runs each command against an
// in-memory working state (so one order failing for lack of stock fails only that order),
// and writes the whole batch as one Changeset: one conditional stock change per touched SKU
// however many orders reserved it, multi-row inserts for everything else. Callers are answered only
// after the transaction is durable.
//
// Sweepers (order expiry, idempotency-key pruning) read due work from the read side and
// submit commands to the same committer; they never write on their own.
//
// It imports the root package, internal/order, internal/limit and the standard library;
// never an adapter.
package engine
