// Package natsbus is the NATS JetStream adapter: it relays the events table to a stream,
// gives other services a consumer that applies each event exactly once, and can run the
// JetStream server itself inside the process for a single node.
//
// It owns the stream (EnsureStream states every setting: subjects PREFIX.>, file
// storage, size-only retention, a message size bound and the deduplication window), the
// relay that writes it, and the inbox table a consumer keeps in its own database. The
// events table stays the source of truth (DESIGN.md principle 3): the stream is a copy of
// it that the relay can always rebuild forward from the table.
//
// # Relay
//
// Relay.Run reads Reader.Events(cursor, Batch) and publishes each event as its
// CloudEvent JSON (Event.Envelope) on PREFIX.<aggregate_type>.<type>, with headers
// Nats-Msg-Id (the event id) and Ordercore-Seq (the event's Seq). A batch is published
// asynchronously and every ack is awaited before the cursor moves; a nack, a timeout or
// a read error makes the relay wait a bounded backoff and retry from the stream's cursor.
// Every message also carries Nats-Expected-Last-Sequence, so the server stores the
// messages of a batch only in order and only while the stream is where the relay left it:
// a retry never stores event n+1 ahead of a lost event n, and a second relay on the same
// stream fails its publishes instead of interleaving (run one relay per stream; a failing
// one resynchronises from the stream and carries on).
//
// The cursor lives in the stream itself: it is the Ordercore-Seq header of the stream's
// last message, read when Run starts and after every failure. It is therefore written
// atomically with the publish it describes. A cursor kept anywhere else (a database row,
// a file) is a second write: a crash between the publish and that write would either
// republish events (harmless only inside the dedupe window) or, written first, skip
// events for good. Because messages leave the stream only by size, oldest first, the last
// message is never removed; a stream emptied by hand returns ErrCursorLost rather than
// republishing all history.
//
// Delivery to the stream is at least once from the relay and exactly once in the
// stream: an event republished after a lost ack carries the same Nats-Msg-Id and is
// dropped by the server inside DuplicateWindow, which is longer than the relay's retry
// horizon. Events reach the stream in Seq order with no gap, because Reader.Events never
// returns seq n+1 while n may still commit.
//
// # Consumer
//
// Consume runs a durable pull consumer with explicit acks (ConsumerAckWait,
// ConsumerMaxDeliver). Each message is handled in one transaction of the consumer's
// database: insert (consumer, event id) into the inbox table with ON CONFLICT DO NOTHING
// (portable to SQLite and PostgreSQL); if the row was new, call the handler in the same
// transaction; commit; then ack. A redelivery (lost ack, restart before the ack) finds
// the row and is acked without calling the handler; a handler error rolls back and naks,
// so the message comes again. Delivery is at least once, application exactly once, up to
// ConsumerMaxDeliver attempts per message; a message that is not a CloudEvent is
// terminated.
//
// # Embedded server
//
// StartEmbedded runs a NATS server with JetStream inside the process, for `ordercore
// serve --nats embedded`: a single node that wants the stream (and its consumers) without
// running a broker. The relay and consumers use it like any server, through
// Embedded.Connect (an in-process connection, no TCP). It stores its stream in
// EmbeddedConfig.StoreDir, a directory of its own, and recovers it at the next start:
// the relay resumes from the stream's last message as it would against an external
// server. With Listen set it also accepts TCP clients, so other processes on the
// network can consume the stream; without it no port is opened.
//
// Its limits: it is one node with one copy of the stream, no clustering and no
// replication, so the stream lives and dies with that machine's disk; it fsyncs every
// EmbeddedSyncInterval, so an OS crash or power loss (not a kill -9) can lose the
// stream's newest messages. The events table stays the source of truth: the relay
// publishes lost messages again from it, in the same order, and a consumer that sees an
// event twice finds its id in the inbox. When ordercore runs as several instances, each
// embedded server would hold a separate stream fed by a separate relay: use an external
// NATS cluster (replicas 3) instead, every instance connecting to it.
//
// natsbus imports the root package, internal/limit, nats.go, nats-server (for the
// embedded server) and the standard library, never another adapter or the engine.
package natsbus
