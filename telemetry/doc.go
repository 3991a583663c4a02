// Package telemetry is ordercore's Prometheus metrics, served at GET /metrics on the API's
// own listener: the API's requests by route and status, the committer's batches, queue
// and time, the channels' notification outcomes, and gauges read from the store at each
// scrape (sagas per status, open review items per kind, how late the expiry sweep runs).
//
// It is an adapter at the edge, the one home of prometheus/client_golang. It sees no
// other package of ordercore's but the standard library: app hands it plain functions to
// read (Sources), so what it measures stays decoupled from how the engine keeps it, and
// a scrape never takes a lock the write path holds for longer than a copy.
package telemetry
