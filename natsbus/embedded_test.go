package natsbus

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startEmbedded starts an embedded server and closes it when the test ends.
func startEmbedded(t *testing.T, cfg EmbeddedConfig) *Embedded {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// embeddedJS connects in-process and returns a JetStream context on e.
func embeddedJS(t *testing.T, e *Embedded) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := e.Connect(nats.Name("test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func TestEmbeddedRelaysAndConsumes(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t, EmbeddedConfig{StoreDir: t.TempDir()})
	_, js := embeddedJS(t, e)
	w := setup(t)
	w.produce(t, "a", 30)
	evs := w.events(t)

	r := newRelay(t, js, w.db, 7)
	runUntil(t, r, evs[len(evs)-1].Seq)
	checkStream(t, js, r, evs)

	// A consumer on the same embedded server applies each event once.
	db := consumerDB(t)
	stop := startConsumer(t, js, ConsumerConfig{Stream: r.cfg.Stream, Durable: "billing", DB: db}, count)
	waitApplied(t, db, evs)
	stop()
}

// TestEmbeddedMaxStoreMinFitsRelayStream: JetStream reserves a stream's MaxBytes up
// front, so the smallest MaxStore accepted must still let the relay create its stream.
func TestEmbeddedMaxStoreMinFitsRelayStream(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t, EmbeddedConfig{StoreDir: t.TempDir(), MaxStore: EmbeddedMaxStoreMin})
	_, js := embeddedJS(t, e)
	w := setup(t)
	if err := NewRelay(Config{Reader: w.db, JS: js}).EnsureStream(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestEmbeddedRestartKeepsStream: the stream and its messages survive a restart on the
// same StoreDir, and the relay resumes from the stream's last message without
// publishing anything twice.
func TestEmbeddedRestartKeepsStream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := setup(t)
	w.produce(t, "a", 20)
	evs := w.events(t)
	ctx := context.Background()

	e1 := startEmbedded(t, EmbeddedConfig{StoreDir: dir})
	nc1, js1 := embeddedJS(t, e1)
	cfg := Config{Reader: w.db, JS: js1, Stream: "RESTART", SubjectPrefix: "restart.events", Batch: 5, Poll: 20 * time.Millisecond}
	r1 := NewRelay(cfg)
	if err := r1.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	runUntil(t, r1, evs[len(evs)-1].Seq)
	checkStream(t, js1, r1, evs)
	nc1.Close()
	e1.Close()

	// Events committed while the server is down.
	w.produce(t, "b", 10)
	all := w.events(t)

	e2 := startEmbedded(t, EmbeddedConfig{StoreDir: dir})
	_, js2 := embeddedJS(t, e2)
	cfg.JS = js2
	r2 := NewRelay(cfg)
	// Recovered before anyone ensures it again: same messages, same cursor.
	checkStream(t, js2, r2, evs)
	if c, err := r2.Cursor(ctx); err != nil || c != evs[len(evs)-1].Seq {
		t.Fatalf("cursor after restart = %d, %v; want %d", c, err, evs[len(evs)-1].Seq)
	}
	if err := r2.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	runUntil(t, r2, all[len(all)-1].Seq)
	checkStream(t, js2, r2, all)
}

func TestEmbeddedDontListenOpensNoPort(t *testing.T) {
	// Not parallel: it counts this process's listening sockets.
	before := listeningSockets(t)
	e := startEmbedded(t, EmbeddedConfig{StoreDir: t.TempDir()})
	if got := e.ClientURL(); got != "" {
		t.Fatalf("ClientURL = %q, want empty without Listen", got)
	}
	if a := e.srv.Addr(); a != nil {
		t.Fatalf("server listens on %s without Listen", a)
	}
	if after := listeningSockets(t); after != before {
		t.Fatalf("listening sockets: %d before the embedded server, %d with it", before, after)
	}
	// In-process clients still work.
	_, js := embeddedJS(t, e)
	if _, err := js.AccountInfo(context.Background()); err != nil {
		t.Fatal(err)
	}

	// With Listen, an ordinary TCP client connects to ClientURL and sees the same
	// JetStream as the in-process client.
	l := startEmbedded(t, EmbeddedConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	url := l.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") {
		t.Fatalf("ClientURL = %q, want nats://127.0.0.1:<bound port>", url)
	}
	if after := listeningSockets(t); after != before+1 {
		t.Fatalf("listening sockets: %d before, %d with a listening server; want one more", before, after)
	}
	_, ljs := embeddedJS(t, l)
	ctx := context.Background()
	if _, err := ljs.CreateStream(ctx, jetstream.StreamConfig{Name: "TCP", Subjects: []string{"tcp.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tjs, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := tjs.Publish(ctx, "tcp.hello", []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != "TCP" || ack.Sequence != 1 {
		t.Fatalf("ack = %+v, want stream TCP sequence 1", ack)
	}
}

// listeningSockets counts the TCP sockets in LISTEN state that this process holds.
func listeningSockets(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			mine[strings.TrimSuffix(inode, "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		data, err := os.ReadFile(table)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Scan() // header
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			const stateListen = "0A"
			if len(f) > 9 && f[3] == stateListen && mine[f[9]] {
				n++
			}
		}
	}
	return n
}

// TestEmbeddedStartFails: a start that cannot succeed returns an error promptly, logs
// why, and leaves nothing running.
func TestEmbeddedStartFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name    string
		ctx     context.Context
		cfg     EmbeddedConfig
		wantErr string // in the returned error
		wantLog string // in the log, when the server itself failed
	}{
		{name: "store dir under a file", cfg: EmbeddedConfig{StoreDir: filepath.Join(file, "store")}, wantErr: "JetStream", wantLog: "JetStream"},
		{name: "store dir is a file", cfg: EmbeddedConfig{StoreDir: file}, wantErr: "JetStream", wantLog: "JetStream"},
		{name: "port in use", cfg: EmbeddedConfig{StoreDir: t.TempDir(), Listen: busy.Addr().String()}, wantErr: "listen", wantLog: "listen"},
		{name: "no store dir", cfg: EmbeddedConfig{}, wantErr: "StoreDir"},
		{name: "max store below the relay stream", cfg: EmbeddedConfig{StoreDir: t.TempDir(), MaxStore: 1 << 30}, wantErr: "MaxStore"},
		{name: "bad listen address", cfg: EmbeddedConfig{StoreDir: t.TempDir(), Listen: "localhost"}, wantErr: "Listen"},
		{name: "cancelled context", ctx: cancelled, cfg: EmbeddedConfig{StoreDir: t.TempDir()}, wantErr: "canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			tt.cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			start := time.Now()
			e, err := StartEmbedded(ctx, tt.cfg)
			if err == nil {
				e.Close()
				t.Fatal("StartEmbedded succeeded, want an error")
			}
			// Well below EmbeddedStartTimeout: the failure is reported, not waited out.
			if d := time.Since(start); d > EmbeddedStartTimeout/3 {
				t.Fatalf("StartEmbedded took %s to fail", d)
			}
			t.Logf("error: %v", err)
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.wantErr)) {
				t.Fatalf("error %q does not mention %q", err, tt.wantErr)
			}
			if got := logs.String(); !strings.Contains(strings.ToLower(got), strings.ToLower(tt.wantLog)) {
				t.Fatalf("log does not mention %q:\n%s", tt.wantLog, got)
			}
		})
	}
}

func TestEmbeddedCleanRunLogsNoWarning(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e := startEmbedded(t, EmbeddedConfig{StoreDir: t.TempDir(), Logger: log})
	e.Close()
	// A clean start and stop logs no warning or error (its notices are Debug).
	if got := logs.String(); got != "" {
		t.Fatalf("a clean run logged at Warn or above:\n%s", got)
	}
}

// syncBuffer is a bytes.Buffer that server goroutines may write concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
