package app_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"ordercore/app"
)

// counter is a participant that answers SUCCESS and counts its calls by gid/branch/op.
type counter struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls map[string]int
}

func newCounter(t *testing.T) *counter {
	c := &counter{calls: map[string]int{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		c.mu.Lock()
		c.calls[q.Get("gid")+"/"+q.Get("branch_id")+"/"+q.Get("op")]++
		c.mu.Unlock()
		w.Write([]byte(`{"dtm_result":"SUCCESS"}`))
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *counter) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[key]
}

// TestDTMAbortRetriedCancelsOnce: a client's retried abort changes nothing, so it starts
// no second drive of the transaction: every branch is cancelled exactly once.
func TestDTMAbortRetriedCancelsOnce(t *testing.T) {
	t.Parallel()
	a := runApp(t, app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()})
	c := &dtmClient{server: "http://" + a.a.Addr() + "/api/dtmsvr", hc: &http.Client{Timeout: 10 * time.Second}}
	p := newCounter(t)
	gid := "abort-twice"
	base := map[string]any{"gid": gid, "trans_type": "tcc"}
	if err := c.callDtm("prepare", base); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := c.callDtm("registerBranch", map[string]string{"gid": gid, "trans_type": "tcc", "branch_id": fmt.Sprintf("%02d", i),
			"confirm": p.srv.URL + "/confirm", "cancel": p.srv.URL + "/cancel", "data": "{}"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := c.callDtm("abort", base); err != nil {
			t.Fatalf("abort: %v", err)
		}
	}
	waitDTM(t, c, gid, "failed")
	time.Sleep(300 * time.Millisecond) // room for a second drive's calls
	for i := 1; i <= 3; i++ {
		if n := p.count(fmt.Sprintf("%s/%02d/cancel", gid, i)); n != 1 {
			t.Errorf("branch %02d cancelled %d times, want once", i, n)
		}
	}
}
