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
//     can do with the same client.
//
// Run returns a Report that prints the machine, the settings, every figure and the ratios
// against the targets of the issue; the targets are reported, never asserted (STYLE.md:
// benchmarks are never timed assertions in tests).
//
// It imports the root package, internal/engine, internal/limit, the sqlite store (which it
// benchmarks) and channel/sim (whose notifications it signs), and the standard library
// plus progressbar for the terminal. It never
// imports httpapi: the CLI hands it a function that starts a server.
package bench
