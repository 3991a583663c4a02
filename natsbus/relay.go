package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"ordercore"
	"ordercore/internal/limit"
)

const (
	// StreamDefault and SubjectPrefixDefault name the stream and its subjects.
	StreamDefault        = "ORDERCORE_EVENTS"
	SubjectPrefixDefault = "ordercore.events"
	// BatchDefault is the events one relay round reads and publishes; BatchMax bounds it.
	BatchDefault = 256
	BatchMax     = 4096
	// PollDefault is how long the relay sleeps when no event is new; PollMax bounds it.
	PollDefault = 200 * time.Millisecond
	PollMax     = 10 * time.Second
	// AckTimeout bounds the wait for the acks of one batch.
	AckTimeout = 10 * time.Second
	// RetryBackoffMin and RetryBackoffMax bound the pause before a failed batch is retried.
	RetryBackoffMin = 100 * time.Millisecond
	RetryBackoffMax = 5 * time.Second
	// DuplicateWindow is the stream's deduplication window. It must be longer than the
	// relay's retry horizon, the longest time between the first publish of an event and
	// a republish of it: one AckTimeout plus one RetryBackoffMax (15 s). A republish
	// inside the window is answered as a duplicate and not stored again.
	DuplicateWindow = 2 * time.Minute
	// StreamMaxBytes bounds the stream on disk; the oldest messages go first, so the
	// newest message, which carries the relay's cursor, always stays.
	StreamMaxBytes = 8 << 30
	// StreamMaxMsgSize bounds one message (a CloudEvent with its data).
	StreamMaxMsgSize = 1 << 20
)

// Headers of every message the relay publishes.
const (
	// HeaderMsgID is JetStream's deduplication header; the relay sets the event id.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderSeq carries the event's Seq; the newest message's value is the relay cursor.
	HeaderSeq = "Ordercore-Seq"
	// headerExpectedLastSeq makes the server refuse a message unless the stream's last
	// sequence is the one the relay expects, so a stream is written in order by at
	// most one relay at a time.
	headerExpectedLastSeq = "Nats-Expected-Last-Sequence"
)

// ErrCursorLost is returned when the stream has had messages but holds none now: the
// cursor cannot be recovered, and starting from zero would republish all history.
var ErrCursorLost = errors.New("natsbus: stream has no last message to recover the relay cursor from")

// Config configures a Relay.
type Config struct {
	Reader        ordercore.Reader
	JS            jetstream.JetStream
	Stream        string        // default StreamDefault
	SubjectPrefix string        // default SubjectPrefixDefault
	Batch         int           // default BatchDefault, at most BatchMax
	Poll          time.Duration // default PollDefault, at most PollMax
}

func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = StreamDefault
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = SubjectPrefixDefault
	}
	if c.Batch <= 0 {
		c.Batch = BatchDefault
	}
	c.Batch = min(c.Batch, BatchMax)
	if c.Poll <= 0 {
		c.Poll = PollDefault
	}
	c.Poll = min(c.Poll, PollMax)
	return c
}

// Relay publishes the events table to a JetStream stream in Seq order.
type Relay struct {
	cfg Config
}

// NewRelay returns a relay; it does nothing until Run.
func NewRelay(cfg Config) *Relay {
	limit.Assert(cfg.Reader != nil && cfg.JS != nil, "natsbus: relay needs a Reader and a JetStream")
	return &Relay{cfg: cfg.withDefaults()}
}

// StreamConfig is the stream the relay writes, every setting stated.
func (r *Relay) StreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        r.cfg.Stream,
		Description: "ordercore events, relayed from the events table in Seq order",
		Subjects:    []string{r.cfg.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    1,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		// No age limit: messages leave only by size, oldest first, so the last message
		// (the cursor) is never removed.
		MaxAge:            0,
		MaxBytes:          StreamMaxBytes,
		MaxMsgs:           -1,
		MaxMsgsPerSubject: -1,
		MaxConsumers:      -1,
		MaxMsgSize:        StreamMaxMsgSize,
		Duplicates:        DuplicateWindow,
		DenyDelete:        true,
		DenyPurge:         false,
		AllowRollup:       false,
	}
}

// EnsureStream creates the stream or updates it to StreamConfig.
func (r *Relay) EnsureStream(ctx context.Context) error {
	if _, err := r.cfg.JS.CreateOrUpdateStream(ctx, r.StreamConfig()); err != nil {
		return fmt.Errorf("natsbus: ensure stream %s: %w", r.cfg.Stream, err)
	}
	return nil
}

// position is where the stream stands: the Seq of its newest event and the stream
// sequence of that message.
type position struct {
	cursor    int64  // ordercore Seq of the last relayed event
	streamSeq uint64 // JetStream sequence of the stream's last message
}

// Cursor reads the relay's cursor from the stream: the Ordercore-Seq header of its last
// message, 0 for an empty stream.
func (r *Relay) Cursor(ctx context.Context) (int64, error) {
	p, err := r.position(ctx)
	return p.cursor, err
}

func (r *Relay) position(ctx context.Context) (position, error) {
	s, err := r.cfg.JS.Stream(ctx, r.cfg.Stream)
	if err != nil {
		return position{}, fmt.Errorf("natsbus: stream %s: %w", r.cfg.Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return position{}, fmt.Errorf("natsbus: stream %s info: %w", r.cfg.Stream, err)
	}
	last := info.State.LastSeq
	if last == 0 {
		return position{}, nil
	}
	if info.State.Msgs == 0 {
		return position{}, ErrCursorLost
	}
	m, err := s.GetMsg(ctx, last)
	if err != nil {
		return position{}, fmt.Errorf("natsbus: stream %s last message %d: %w", r.cfg.Stream, last, err)
	}
	seq, err := strconv.ParseInt(m.Header.Get(HeaderSeq), 10, 64)
	if err != nil || seq <= 0 {
		return position{}, fmt.Errorf("natsbus: stream %s message %d has no valid %s header", r.cfg.Stream, last, HeaderSeq)
	}
	return position{cursor: seq, streamSeq: last}, nil
}

// Run relays until ctx ends. The cursor is recovered from the stream at start and after
// every failed batch; each batch is published asynchronously and all its acks awaited.
func (r *Relay) Run(ctx context.Context) error {
	backoff := RetryBackoffMin
	var pos position
	synced, ensured := false, false
	for {
		if ctx.Err() != nil {
			return nil
		}
		var err error
		if !ensured {
			// NATS may have been down when the relay started: the stream is made
			// (or brought to StreamConfig) once it answers.
			if err = r.EnsureStream(ctx); err == nil {
				ensured = true
			}
		}
		if err == nil && !synced {
			pos, err = r.position(ctx)
			if errors.Is(err, ErrCursorLost) {
				return err
			}
		}
		var n int
		if err == nil {
			synced = true
			n, err = r.round(ctx, &pos)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Retry from what the stream recorded: acked events are not published again,
			// and a republish of an unacked one is absorbed by the dedupe window.
			synced = false
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, RetryBackoffMax)
			continue
		}
		backoff = RetryBackoffMin
		if n == 0 && !sleep(ctx, r.cfg.Poll) {
			return nil
		}
	}
}

// round publishes the next batch after pos and advances pos to its last event.
func (r *Relay) round(ctx context.Context, pos *position) (int, error) {
	evs, err := r.cfg.Reader.Events(ctx, pos.cursor, r.cfg.Batch)
	if err != nil {
		return 0, fmt.Errorf("natsbus: read events after %d: %w", pos.cursor, err)
	}
	if len(evs) == 0 {
		return 0, nil
	}
	last, err := r.publish(ctx, evs, pos.streamSeq)
	if err != nil {
		return 0, err
	}
	pos.cursor = evs[len(evs)-1].Seq
	pos.streamSeq = last
	return len(evs), nil
}

// Subject is the subject an event is published on: PREFIX.<aggregate_type>.<type>.
func (r *Relay) Subject(e ordercore.Event) (string, error) {
	for _, tok := range append([]string{e.AggregateType}, strings.Split(e.Type, ".")...) {
		if !validToken(tok) {
			return "", fmt.Errorf("natsbus: event %s: %q is not a subject token", e.ID, tok)
		}
	}
	return r.cfg.SubjectPrefix + "." + e.AggregateType + "." + e.Type, nil
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c == '.' || c == '*' || c == '>' || c == 0x7f {
			return false
		}
	}
	return true
}

// publish sends evs in order and waits for every ack. expectLast is the stream sequence
// the first message must follow (0 for an empty stream: no expectation); it returns the
// stream sequence of the last message.
func (r *Relay) publish(ctx context.Context, evs []ordercore.Event, expectLast uint64) (uint64, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	for i, e := range evs {
		limit.Assert(i == 0 || evs[i-1].Seq < e.Seq, "natsbus: events out of order: %d then %d", evs[max(i-1, 0)].Seq, e.Seq)
		subj, err := r.Subject(e)
		if err != nil {
			return 0, err
		}
		data, err := json.Marshal(e.Envelope())
		if err != nil {
			return 0, fmt.Errorf("natsbus: encode event %s: %w", e.ID, err)
		}
		m := nats.NewMsg(subj)
		m.Data = data
		m.Header.Set(HeaderMsgID, e.ID)
		m.Header.Set(HeaderSeq, strconv.FormatInt(e.Seq, 10))
		if want := expectLast + uint64(i); want > 0 {
			m.Header.Set(headerExpectedLastSeq, strconv.FormatUint(want, 10))
		}
		f, err := r.cfg.JS.PublishMsgAsync(m)
		if err != nil {
			return 0, fmt.Errorf("natsbus: publish event %d: %w", e.Seq, err)
		}
		futures = append(futures, f)
	}
	timer := time.NewTimer(AckTimeout)
	defer timer.Stop()
	var last uint64
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			last = ack.Sequence
		case err := <-f.Err():
			return 0, fmt.Errorf("natsbus: publish event %d: %w", evs[i].Seq, err)
		case <-timer.C:
			return 0, fmt.Errorf("natsbus: publish event %d: no ack within %s", evs[i].Seq, AckTimeout)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return last, nil
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
