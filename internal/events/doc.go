// Package events drives what leaves ordercore from the events table; here, the outbound
// webhooks. Its Deliverer is a background worker (it runs on the lease holder) that never
// writes on its own: it reads the feed and the due deliveries from the read side and
// records everything through the engine's committer, so deliveries are as durable as an
// order and a crash at any moment loses or repeats no scheduling (an attempt in flight at
// a crash is made again: delivery is at least once, and receivers deduplicate by event
// id).
//
// It lives beside the engine rather than in it (unlike the payment sync) because it owns
// an outbound HTTP client, per-host breakers and signing, none of which the committer's
// package needs; the engine keeps only the commands, whose rules (cursor, schedule,
// dead letters) are what must be in one transaction.
//
// It imports the root package, internal/engine, internal/guard, internal/limit, the public
// webhook package (signatures) and the standard library; never an adapter.
package events
