package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

const (
	// EmbeddedServerName names the embedded server (server_name in its INFO and in
	// JetStream's metadata). It is fixed so a restart on the same StoreDir is the same node.
	EmbeddedServerName = "ordercore-embedded"
	// EmbeddedMaxStoreDefault bounds the JetStream file storage when the config leaves
	// MaxStore at zero. JetStream reserves a stream's whole MaxBytes when the stream is
	// created, so the relay's stream alone needs StreamMaxBytes; the extra GiB is room
	// for consumer state and a stream an operator adds by hand. Stated explicitly:
	// left unset, JetStream reserves a fraction of the free disk.
	EmbeddedMaxStoreDefault = StreamMaxBytes + 1<<30
	// EmbeddedMaxStoreMin is the smallest MaxStore accepted: less and the relay's stream
	// could never be created (EnsureStream would fail with "insufficient storage").
	EmbeddedMaxStoreMin = StreamMaxBytes
	// EmbeddedMaxMemory bounds JetStream memory storage. ordercore keeps its stream and
	// consumers on file storage; stated explicitly because, left unset, JetStream
	// reserves three quarters of the machine's memory.
	EmbeddedMaxMemory = 64 << 20
	// EmbeddedSyncInterval is how often JetStream fsyncs its files (the nats-server
	// default, stated). A kill -9 loses nothing (writes are in the OS page cache); an OS
	// crash or power loss can lose the last interval of stream writes, which the relay
	// publishes again from the events table, since its cursor is the stream's last
	// message (see the package doc for what a consumer sees then).
	EmbeddedSyncInterval = 2 * time.Minute
	// EmbeddedMaxPayload bounds one client message; it matches the stream's message
	// size bound so nothing the stream would accept is refused at the connection.
	EmbeddedMaxPayload = StreamMaxMsgSize
	// EmbeddedStartTimeout bounds the wait for the server to accept connections after it
	// has started (a shorter ctx deadline wins). JetStream recovers its store before
	// that wait begins, inside server.Start.
	EmbeddedStartTimeout = 30 * time.Second
)

// EmbeddedConfig configures StartEmbedded.
type EmbeddedConfig struct {
	// StoreDir is the directory of JetStream's file storage (required). It should belong
	// to the embedded server alone; JetStream keeps its data under StoreDir/jetstream.
	StoreDir string
	// Listen is a TCP address ("127.0.0.1:4223") on which other processes can connect
	// too; port 0 picks a free port (see Embedded.ClientURL). Empty: no port is opened
	// and only this process connects, through Embedded.Connect.
	Listen string
	// MaxStore bounds JetStream file storage in bytes; 0 means EmbeddedMaxStoreDefault.
	// It must be at least EmbeddedMaxStoreMin.
	MaxStore int64
	// Logger receives the server's errors and warnings (its notices at Debug level).
	// Nil: silent.
	Logger *slog.Logger
}

// Embedded is a NATS server with JetStream running inside this process: one node, no
// clustering. Connect and ClientURL are safe for concurrent use; Close stops it.
type Embedded struct {
	srv       *server.Server
	clientURL string // empty when not listening
}

// StartEmbedded starts a NATS server with JetStream in this process and returns once it
// accepts connections. Streams and messages already in cfg.StoreDir are recovered, so a
// restart on the same directory finds what the previous run stored. ctx bounds only the
// start: the server runs until Close, whatever happens to ctx afterwards. On error
// nothing is left running.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	opts, err := cfg.serverOptions()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("natsbus: start embedded server: %w", err)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsbus: embedded server: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sl := &serverLogger{log: log.With(slog.String("component", "nats-server"))}
	// Always set: without a logger the server's startup failures would go unseen, and
	// with its own default logger a Fatalf would exit the process.
	srv.SetLoggerV2(sl, false, false, false)

	// Start runs the startup (JetStream store recovery included) and returns; it
	// reports a failure only through Fatalf.
	srv.Start()
	if err := waitReady(ctx, srv, sl); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("natsbus: start embedded server (store %s, listen %q): %w", cfg.StoreDir, cfg.Listen, err)
	}
	e := &Embedded{srv: srv}
	if !opts.DontListen {
		e.clientURL = srv.ClientURL()
	}
	return e, nil
}

// serverOptions states every server setting the embedded mode relies on.
func (cfg EmbeddedConfig) serverOptions() (*server.Options, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsbus: embedded server needs a StoreDir")
	}
	maxStore := cfg.MaxStore
	if maxStore == 0 {
		maxStore = EmbeddedMaxStoreDefault
	}
	if maxStore < EmbeddedMaxStoreMin {
		return nil, fmt.Errorf("natsbus: embedded MaxStore %d is below %d, the relay stream's reservation", cfg.MaxStore, int64(EmbeddedMaxStoreMin))
	}
	opts := &server.Options{
		ServerName:         EmbeddedServerName,
		DontListen:         cfg.Listen == "",
		NoSigs:             true, // the process owns its signals
		NoLog:              false,
		MaxPayload:         EmbeddedMaxPayload,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		JetStreamMaxStore:  maxStore,
		JetStreamMaxMemory: EmbeddedMaxMemory,
		SyncInterval:       EmbeddedSyncInterval,
		SyncAlways:         false,
	}
	if cfg.Listen != "" {
		host, port, err := splitListen(cfg.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	return opts, nil
}

// splitListen parses "host:port"; port 0 becomes nats-server's "any free port".
func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("natsbus: embedded Listen %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("natsbus: embedded Listen %q: bad port", addr)
	}
	if port == 0 {
		// For nats-server, port 0 means its default 4222; -1 means any free port.
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// waitReady waits until srv accepts connections with JetStream running, or reports the
// startup failure the server logged.
func waitReady(ctx context.Context, srv *server.Server, sl *serverLogger) error {
	if err := sl.fatal(); err != nil {
		return err
	}
	wait := EmbeddedStartTimeout
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	if !srv.ReadyForConnections(wait) {
		if err := sl.fatal(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("not ready for connections within %s", wait)
	}
	if err := sl.fatal(); err != nil {
		return err
	}
	if !srv.JetStreamEnabled() {
		return errors.New("JetStream is not enabled")
	}
	return nil
}

// Connect opens a client connection inside the process (no TCP, even when the server
// listens). opts are applied after the in-process setting and may add any other
// option (name, handlers, reconnect policy).
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{nats.InProcessServer(e.srv)}, opts...)
	// The URL is never dialled: an in-process connection replaces the dial.
	nc, err := nats.Connect(e.srv.ClientURL(), all...)
	if err != nil {
		return nil, fmt.Errorf("natsbus: connect to embedded server: %w", err)
	}
	return nc, nil
}

// ClientURL is the URL other processes connect to ("nats://127.0.0.1:4223"), with the
// port actually bound; empty when the server does not listen.
func (e *Embedded) ClientURL() string {
	return e.clientURL
}

// Close shuts the server down and returns when it has stopped: its clients are
// disconnected and JetStream has flushed and closed its files. Calling it again, or on a
// nil *Embedded, is a no-op.
func (e *Embedded) Close() {
	if e == nil {
		return
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverLogger routes nats-server's log calls to slog and records its first Fatalf,
// which is how the server reports a failed start (bad StoreDir, port in use). It never
// exits the process.
type serverLogger struct {
	log *slog.Logger

	mu       sync.Mutex
	fatalMsg string
}

var _ server.Logger = (*serverLogger)(nil)

func (l *serverLogger) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fatalMsg == "" {
		return nil
	}
	return errors.New(l.fatalMsg)
}

func (l *serverLogger) Noticef(format string, v ...any) { l.logf(slog.LevelDebug, format, v) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.logf(slog.LevelWarn, format, v) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.logf(slog.LevelError, format, v) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.logf(slog.LevelDebug, format, v) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.logf(slog.LevelDebug, format, v) }

func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg, slog.Bool("fatal", true))
	l.mu.Lock()
	if l.fatalMsg == "" {
		l.fatalMsg = msg
	}
	l.mu.Unlock()
}

// logf formats only when the level is enabled, so a silent server formats nothing.
func (l *serverLogger) logf(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if l.log.Enabled(ctx, level) {
		l.log.Log(ctx, level, fmt.Sprintf(format, v...))
	}
}
