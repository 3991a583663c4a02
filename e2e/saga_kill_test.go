package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"ordercore/barrier"
)

// The saga kill test (TestSagaCoordinatorKill9).
const (
	sagaKillSagas      = 300
	sagaKillRounds     = 3
	sagaKillSettleMax  = 90 * time.Second
	sagaKillSubmitters = 16
)

// effects is a participant service whose every action and compensation writes one row,
// behind the barrier, on its own SQLite file: the rows are the net effect the test checks.
type effects struct {
	db  *sql.DB
	srv *httptest.Server
	d   barrier.Dialect
}

func newEffects(t *testing.T) *effects {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "participant.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &effects{db: db, d: barrier.Dialect{Engine: barrier.SQLite}}
	if err := barrier.Migrate(context.Background(), db, e.d); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE effect (gid TEXT, branch TEXT, op TEXT, delta INTEGER)"); err != nil {
		t.Fatal(err)
	}
	handle := func(delta int64) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			br, err := barrier.FromQuery(r.URL.Query())
			if err != nil {
				barrier.WriteHTTP(w, err)
				return
			}
			var body struct{ Fail string }
			json.NewDecoder(r.Body).Decode(&body)
			if br.Op == barrier.OpAction && body.Fail == br.BranchID {
				barrier.WriteHTTP(w, barrier.ErrFailure)
				return
			}
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond) // a call takes a while: kills land mid-call
			barrier.WriteHTTP(w, barrier.CallDB(r.Context(), db, e.d, br, func(tx *sql.Tx) error {
				_, err := tx.Exec("INSERT INTO effect VALUES (?, ?, ?, ?)", br.GID, br.BranchID, br.Op, delta)
				return err
			}))
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/action", handle(+1))
	mux.HandleFunc("/compensate", handle(-1))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// TestSagaCoordinatorKill9: sagas of two barrier-protected HTTP steps (every fifth with a
// second step that fails for good) are submitted to `ordercore serve` while it is killed
// with SIGKILL at random moments and restarted. Afterwards every saga answered 201 ends
// completed (each action applied once) or compensated (net zero), and no participant
// effect was applied twice.
func TestSagaCoordinatorKill9(t *testing.T) {
	t.Parallel()
	e := newEffects(t)
	dir := t.TempDir()
	var mu sync.Mutex
	srv := startServer(t, dir)
	current := func() *server {
		mu.Lock()
		defer mu.Unlock()
		return srv
	}
	type submitted struct {
		gid   string
		fails bool
	}
	var subs []submitted
	var subsMu sync.Mutex
	policy := map[string]any{"step_timeout_ms": 1000, "retries_max": 50, "backoff_min_ms": 50, "backoff_max_ms": 500}
	body := func(gid string, fails bool) map[string]any {
		payload := map[string]string{}
		if fails {
			payload["fail"] = "02"
		}
		step := func(name string) map[string]any {
			return map[string]any{"name": name, "action": map[string]any{"url": e.srv.URL + "/action", "payload": payload},
				"compensate": map[string]any{"url": e.srv.URL + "/compensate", "payload": payload}}
		}
		return map[string]any{"gid": gid, "kind": "saga", "policy": policy, "steps": []any{step("a"), step("b")}}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	next := make(chan int, sagaKillSagas)
	for i := range sagaKillSagas {
		next <- i
	}
	close(next)
	for range sagaKillSubmitters {
		wg.Go(func() {
			for i := range next {
				gid := fmt.Sprintf("kill-%d", i)
				fails := i%5 == 0
				// The gid makes a retry safe: a second submit of it is 409 saga_exists.
				for attempt := 0; ; attempt++ {
					r, err := current().api.do(http.MethodPost, "/v1/sagas", body(gid, fails), "")
					if err == nil && (r.status == http.StatusCreated || r.status == http.StatusConflict && r.problem().Code == "saga_exists") {
						subsMu.Lock()
						subs = append(subs, submitted{gid, fails})
						subsMu.Unlock()
						break
					}
					if err == nil && r.status < 500 {
						t.Errorf("submit %s: %v", gid, r)
						return
					}
					if attempt > 400 {
						t.Errorf("submit %s: no answer after %d attempts: %v %v", gid, attempt, r, err)
						return
					}
					time.Sleep(25 * time.Millisecond)
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	for round := range sagaKillRounds {
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		s := current()
		if err := s.kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed the coordinator", round)
		fresh := startServer(t, dir)
		mu.Lock()
		srv = fresh
		mu.Unlock()
	}
	<-done
	if t.Failed() {
		t.FailNow()
	}

	// Every saga must end: held sagas of a killed process are claimed after their hold.
	a := current().api
	deadline := time.Now().Add(sagaKillSettleMax)
	status := map[string]string{}
	for _, sub := range subs {
		for {
			var v struct{ Status string }
			if err := a.getJSON("/v1/sagas/"+sub.gid, &v); err != nil {
				t.Fatalf("saga %s answered 201 but: %v", sub.gid, err)
			}
			if v.Status == "completed" || v.Status == "compensated" {
				status[sub.gid] = v.Status
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("saga %s is still %s %v after the last restart", sub.gid, v.Status, sagaKillSettleMax)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The participant's books: each (gid, branch, op) applied at most once; completed
	// sagas applied both actions and no compensation; compensated ones net zero.
	rows, err := e.db.Query("SELECT gid, branch, op, count(*), sum(delta) FROM effect GROUP BY gid, branch, op")
	if err != nil {
		t.Fatal(err)
	}
	net := map[string]int64{}
	for rows.Next() {
		var gid, branch, op string
		var n, sum int64
		if err := rows.Scan(&gid, &branch, &op, &n, &sum); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("saga %s branch %s %s applied %d times", gid, branch, op, n)
		}
		net[gid+"/"+branch] += sum
	}
	rows.Close()
	completed, compensated := 0, 0
	for _, sub := range subs {
		a, b := net[sub.gid+"/01"], net[sub.gid+"/02"]
		switch status[sub.gid] {
		case "completed":
			completed++
			if sub.fails || a != 1 || b != 1 {
				t.Errorf("completed saga %s (fails=%v): net effects %d %d, want 1 1", sub.gid, sub.fails, a, b)
			}
		case "compensated":
			compensated++
			if !sub.fails || a != 0 || b != 0 {
				t.Errorf("compensated saga %s (fails=%v): net effects %d %d, want 0 0", sub.gid, sub.fails, a, b)
			}
		}
	}
	t.Logf("%d sagas: %d completed, %d compensated, across %d SIGKILLs of the coordinator", len(subs), completed, compensated, sagaKillRounds)
}
