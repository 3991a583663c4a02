// Package bench measures ordercore for `ordercore bench`.
//
// `bench notify` measures channel notifications verified, durably applied and
// acknowledged per second over HTTP (fresh, duplicated and forged), beside the orders/s
// of POST /v1/orders in the same run.
//
// `bench place-order` measures the place-order write path: the engine in process and over HTTP, on one hot SKU and on many SKUs, next to the figures it
// must be judged against, all in the same run on the same machine:
//
//   - naive: the same engine with one transaction per order (BatchMax 1), the design that
//     group commit replaces;
//   - ceiling: a hand-written loop that writes exactly the rows the engine writes, in batches
//     of the engine's observed size, straight to SQLite: the best the storage can do;
//   - trivial: a net/http handler that only decodes the request, the best the HTTP stack
//     can do with the same client;
//   - http-ceiling: the trivial handler's decode followed by a hand-written group commit of
//     the ceiling's rows, answering once they are durable: the least any server that
//     writes these rows durably spends over HTTP (httpceiling.go).
//
// With Config.DB (`bench place-order --db postgres://...`) it measures the same path on
// PostgreSQL instead, each path in a fresh schema that it creates first and drops after,
// even on an error or a cancelled context (postgres.go):
//
//   - engine and naive as above, on one store (naive's one-order transactions lock the
//     SKU row with SELECT ... FOR UPDATE, one at a time);
//   - naive-pool: one naive committer per connection of a store's pool, so that many
//     one-order transactions contend for the SKU row at once;
//   - engine-3: three engines, each with its own store, on one schema and the same SKUs:
//     three serve instances on one database.
//
// A PostgreSQL report adds the server's settings (SHOW), what the paths' sessions were
// doing (sampled from pg_stat_activity), how busy the cores were (/proc), and what each
// schema holds against the orders counted, and explains what limits scaling from them.
//
// Run returns a Report that prints the machine, the settings, every figure and the ratios
// against the targets of the issue; the targets are reported, never asserted (STYLE.md:
// benchmarks are never timed assertions in tests).
//
// It imports the root package, internal/engine, internal/limit, the sqlite and postgres
// stores (which it benchmarks), pgx (for its own settings, sampling and row counts),
// channel/sim (whose notifications it signs), and the standard library plus progressbar
// for the terminal. It never imports httpapi: the CLI hands it a function that starts a
// server.
package bench
