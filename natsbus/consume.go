package natsbus

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"ordercore"
)

const (
	// InboxTableDefault is the consumer's inbox of applied event ids.
	InboxTableDefault = "ordercore_inbox"
	// ConsumerAckWait is how long the server waits for an ack before redelivering.
	ConsumerAckWait = 30 * time.Second
	// ConsumerMaxDeliver bounds the deliveries of one message; after that the server
	// stops redelivering it (a poison message) and the consumer moves on.
	ConsumerMaxDeliver = 20
	// ConsumerMaxAckPending bounds the messages delivered and not yet acked.
	ConsumerMaxAckPending = 1024
	// ConsumerFetchMax is the most messages one fetch asks for.
	ConsumerFetchMax = 64
	// ConsumerFetchWait is the longest one fetch waits, so cancellation is noticed.
	ConsumerFetchWait = 1 * time.Second
	// ConsumerNakDelay is how long a message whose handler failed waits for redelivery.
	ConsumerNakDelay = 500 * time.Millisecond
	// ConsumerRetryBackoff is the pause after a failed fetch.
	ConsumerRetryBackoff = 500 * time.Millisecond
	// inboxIDBytesMax bounds the identifiers stored in the inbox.
	inboxIDBytesMax = 255
)

// errMalformed marks a message that is not an ordercore CloudEvent.
var errMalformed = errors.New("natsbus: malformed message")

// ConsumerConfig configures Consume.
type ConsumerConfig struct {
	Stream        string  // default StreamDefault
	Durable       string  // required: the consumer's name, also its key in the inbox
	FilterSubject string  // optional, e.g. "ordercore.events.order.>"
	DB            *sql.DB // the consumer's own database, which holds the inbox
	Table         string  // default InboxTableDefault
	// AckWait is how long the server waits for an ack before it redelivers a message
	// (default ConsumerAckWait): a consumer that stops holding unacked messages gets them
	// again after this long.
	AckWait time.Duration
}

// Handler applies one event inside the consumer's transaction.
type Handler func(ctx context.Context, tx *sql.Tx, ev ordercore.CloudEvent) error

// Consume reads the stream through a durable pull consumer until ctx ends. For each
// message it records (consumer, event id) in the inbox table and calls handle in the same
// transaction of cfg.DB, commits, then acks; a message whose id is already in the inbox
// (a redelivery) is acked without calling handle. A handle error rolls back and naks,
// so the message is redelivered later. Each event is applied at most once, and at least
// once unless it is delivered ConsumerMaxDeliver times without success.
func Consume(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, handle Handler) error {
	if cfg.Stream == "" {
		cfg.Stream = StreamDefault
	}
	if cfg.Table == "" {
		cfg.Table = InboxTableDefault
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = ConsumerAckWait
	}
	if cfg.Durable == "" || len(cfg.Durable) > inboxIDBytesMax || cfg.DB == nil || handle == nil {
		return errors.New("natsbus: Consume needs a Durable name, a DB and a handler")
	}
	if !validIdent(cfg.Table) {
		return fmt.Errorf("natsbus: inbox table %q is not a plain SQL identifier", cfg.Table)
	}
	if _, err := cfg.DB.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+cfg.Table+` (
		consumer TEXT NOT NULL,
		event_id TEXT NOT NULL,
		PRIMARY KEY (consumer, event_id))`); err != nil {
		return fmt.Errorf("natsbus: create inbox %s: %w", cfg.Table, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		Description:   "ordercore event consumer",
		FilterSubject: cfg.FilterSubject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    ConsumerMaxDeliver,
		MaxAckPending: ConsumerMaxAckPending,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	})
	if err != nil {
		return fmt.Errorf("natsbus: consumer %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	insert := `INSERT INTO ` + cfg.Table + ` (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`
	for ctx.Err() == nil {
		batch, err := cons.Fetch(ConsumerFetchMax, jetstream.FetchMaxWait(ConsumerFetchWait))
		if err != nil {
			if !sleep(ctx, ConsumerRetryBackoff) {
				break
			}
			continue
		}
		for msg := range batch.Messages() {
			if ctx.Err() != nil {
				// Unacked: the server redelivers it after AckWait.
				continue
			}
			if err := apply(ctx, cfg, insert, msg, handle); err != nil {
				if errors.Is(err, errMalformed) {
					// No redelivery can fix it: stop delivering it.
					_ = msg.Term()
				} else {
					_ = msg.NakWithDelay(ConsumerNakDelay)
				}
				continue
			}
			// If this ack is lost, the redelivery finds the id in the inbox.
			_ = msg.Ack()
		}
	}
	return nil
}

// apply runs one message's transaction: inbox row, then handle unless it was there.
func apply(ctx context.Context, cfg ConsumerConfig, insert string, msg jetstream.Msg, handle Handler) error {
	var ev ordercore.CloudEvent
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		return fmt.Errorf("%w: %v", errMalformed, err)
	}
	if ev.ID == "" || len(ev.ID) > inboxIDBytesMax {
		return fmt.Errorf("%w: no valid event id", errMalformed)
	}
	tx, err := cfg.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, insert, cfg.Durable, ev.ID)
	if err != nil {
		return fmt.Errorf("natsbus: inbox insert: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 1 {
		if err := handle(ctx, tx, ev); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func validIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		if c == '_' || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}
