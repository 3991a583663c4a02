// Package postgres is ordercore's scaled-out store: any number of stateless instances
// share one PostgreSQL database. It owns the PostgreSQL schema (embedded goose migrations,
// run on Open, with goose's version table in the store's schema), the write transaction
// the engine's committer runs each batch in, the read queries, and the event feed's rule
// for reading past sequence numbers that several writers make visible out of order
// (events.go).
//
// Several instances write at once, so unlike on SQLite the loads of a write transaction
// lock what they read (SELECT ... FOR UPDATE, in id order), the saga claim skips what
// another transaction holds (FOR UPDATE SKIP LOCKED), so instances take disjoint sets of
// due sagas without waiting for each other, and every guard the SQLite store has (CHECKs,
// partial and expression unique indexes, conditional and version-guarded updates) is here
// too, in the same tables.
//
// It implements the interfaces of the root package and passes the storetest suite. It
// imports the root package, internal/limit, pgx, goose and the standard library, and
// never another adapter.
package postgres
