// Package verify checks a whole database against the promises ordercore makes: it is the
// engine of `ordercore verify`. Check takes a Snapshot (every SKU, order, ledger row,
// event, payment, refund, money ledger row, review item, stock hold and barrier row, read
// in one transaction by a store's Dump) and returns every invariant that does not hold; Report prints the result
// for a person.
//
// The database already guards most of these rules with constraints and the engine asserts
// them before every write. verify is the third, independent look: it recomputes every
// projection from the histories the design keeps (the stock ledger, the money ledger and
// the events table) and compares, so a bug that slipped past both guards, a hand-edited
// row, or a restore from a bad backup is found instead of trusted. The money rules
// (money.go) also judge what the money did: one accepted payment per order, every
// duplicate or late payment refunded, no refund beyond the capture, no payment or refund
// waiting without a next action.
//
// It imports only the standard library, the root package, internal/limit and
// internal/order. internal/order is a domain package, not an adapter: verify uses its
// transition table to judge replayed events, because that table is the single source of
// truth for which transitions are legal and a copy here could silently drift from it. It
// never imports a store or the engine; their tests feed it real snapshots instead.
//
// Every event type the engine writes must be known here: an event verify cannot replay is
// reported, so a new event type comes with its replay rule.
package verify
