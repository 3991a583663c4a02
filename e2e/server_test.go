package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the child process harness.
const (
	// startAttemptsMax bounds the ports tried by one start: a port picked free can be taken
	// by another process before the child binds it.
	startAttemptsMax = 5
	// healthWaitMax bounds the wait for GET /healthz to answer 200 after a start.
	healthWaitMax = 10 * time.Second
	// healthPollInterval spaces the /healthz probes.
	healthPollInterval = 10 * time.Millisecond
	// exitWaitMax bounds the wait for a child to exit after SIGKILL or SIGTERM (a graceful
	// stop lets in-flight requests finish; app.Close gives them 10 s).
	exitWaitMax = 20 * time.Second
	// requestTimeout bounds every HTTP call to a child.
	requestTimeout = 5 * time.Second
	// stderrTailBytes is how much of a child's output is kept for failure messages.
	stderrTailBytes = 64 << 10
	// replyBytesMax bounds a response body the harness reads.
	replyBytesMax = 1 << 20
)

// server is one child `ordercore serve` process.
type server struct {
	cmd    *exec.Cmd
	stdin  io.Closer // the child exits when this closes (see exitWhenOrphaned)
	output *tailBuffer
	exited chan struct{} // closed once the child has been reaped
	state  *os.ProcessState
	api    *api
}

// startServer starts `ordercore serve` on dataDir with args appended, on a free loopback
// port, and waits until it answers GET /healthz. It fails the test if it cannot.
func startServer(t testing.TB, dataDir string, args ...string) *server {
	t.Helper()
	var errs []error
	for range startAttemptsMax {
		s, err := tryStart(dataDir, args)
		if err == nil {
			t.Cleanup(func() { s.kill() })
			return s
		}
		errs = append(errs, err)
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	t.Fatalf("start ordercore serve: %v", errors.Join(errs...))
	return nil
}

var errAddrInUse = errors.New("address already in use")

func tryStart(dataDir string, args []string) (*server, error) {
	s, err := spawn(dataDir, args)
	if err != nil {
		return nil, err
	}
	if err := s.waitHealthy(); err != nil {
		s.kill()
		if errorsAddrInUse(s) {
			return nil, fmt.Errorf("%s: %w", s.api.base, errAddrInUse)
		}
		return nil, fmt.Errorf("%w; child output:\n%s", err, s.output)
	}
	return s, nil
}

// spawnServer starts `ordercore serve` like startServer but returns after delay, whether or
// not the child is serving yet; healthy reports whether it answered GET /healthz by then.
// The caller kills it.
func spawnServer(dataDir string, delay time.Duration, args ...string) (s *server, healthy bool, err error) {
	if s, err = spawn(dataDir, args); err != nil {
		return nil, false, err
	}
	time.Sleep(delay)
	return s, s.healthy(&http.Client{Timeout: healthPollInterval}), nil
}

// healthy reports whether the child itself answers GET /healthz with 200: the answer
// names its pid, since another process may have taken the port the child was given
// (the child then fails to listen, and exits).
func (s *server) healthy(hc *http.Client) bool {
	resp, err := hc.Get(s.api.base + "/healthz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct{ PID string }
	err = json.NewDecoder(io.LimitReader(resp.Body, replyBytesMax)).Decode(&h)
	return err == nil && resp.StatusCode == http.StatusOK && h.PID == strconv.Itoa(s.cmd.Process.Pid)
}

// errorsAddrInUse reports whether the child failed because its port was taken.
func errorsAddrInUse(s *server) bool {
	return strings.Contains(s.output.String(), "address already in use")
}

// spawn starts the child on a port that was free a moment ago.
func spawn(dataDir string, args []string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	argv := append([]string{childArgsSep, "serve", "--addr", addr, "--data", dataDir}, args...)
	cmd := exec.Command(exe, argv...)
	cmd.Env = append(os.Environ(), childEnv+"="+childCLI)
	out := &tailBuffer{max: stderrTailBytes}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = exitWaitMax // bounds Wait's copying of the output pipes
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	s := &server{cmd: cmd, stdin: stdin, output: out, exited: make(chan struct{}), api: newAPI("http://" + addr)}
	go func() {
		_ = cmd.Wait()
		s.state = cmd.ProcessState
		close(s.exited)
	}()
	return s, nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (s *server) waitHealthy() error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(healthWaitMax)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("child exited before it was healthy: %v", s.state)
		default:
		}
		if s.healthy(hc) {
			return nil
		}
		time.Sleep(healthPollInterval)
	}
	return fmt.Errorf("GET /healthz did not answer 200 within %v", healthWaitMax)
}

// kill sends SIGKILL and waits until the child is reaped. It is safe to call on a child
// that has exited already.
func (s *server) kill() error {
	_ = s.cmd.Process.Kill()
	return s.wait()
}

// stop sends SIGTERM and waits for the graceful shutdown; it returns the exit code.
func (s *server) stop() (int, error) {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return -1, fmt.Errorf("SIGTERM: %w", err)
	}
	if err := s.wait(); err != nil {
		_ = s.kill()
		return -1, err
	}
	return s.state.ExitCode(), nil
}

func (s *server) wait() error {
	defer s.api.hc.CloseIdleConnections()
	select {
	case <-s.exited:
		s.stdin.Close()
		return nil
	case <-time.After(exitWaitMax):
		return fmt.Errorf("child pid %d did not exit within %v", s.cmd.Process.Pid, exitWaitMax)
	}
}

// tailBuffer keeps the last max bytes written to it; it is safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
