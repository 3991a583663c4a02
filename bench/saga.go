package bench

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for the participants

	"ordercore"
	"ordercore/barrier"
	"ordercore/internal/engine"
	"ordercore/internal/saga"
	"ordercore/sqlite"
)

// `ordercore bench saga` measures the saga coordinator against the floor it must be judged
// by, all in one run: the same two participants (each call one PostgreSQL transaction: a
// barrier insert and one business write, a stock UPDATE or an order INSERT) called
// directly by the clients, and driven as 2-branch sagas by an `ordercore serve` child
// process; then sagas whose two steps are in-process; then a backlog of sagas submitted
// while the participants are down, drained when they come back.

// Saga bench paths.
const (
	SagaPathDirect    = "direct"     // the floor: the clients call both participants
	SagaPathSaga      = "saga"       // the same calls as 2-branch sagas through ordercore
	SagaPathInProcess = "in-process" // sagas of two in-process steps
	SagaPathDrain     = "drain"      // a backlog drained after a participant outage
	// SagaPathSingle runs the direct and saga paths again with one client: what a saga
	// adds to its two calls when nothing else runs. Its results are SagaPathDirect1 and
	// SagaPathSaga1.
	SagaPathSingle  = "single"
	SagaPathDirect1 = "direct-1"
	SagaPathSaga1   = "saga-1"
)

// SagaPaths are every path of the saga bench.
var SagaPaths = []string{SagaPathDirect, SagaPathSaga, SagaPathSingle, SagaPathInProcess, SagaPathDrain}

// Saga bench defaults.
const (
	SagaBacklogDefault   = 6000
	SagaInProcessClients = 512 // in-process submitters: a saga's latency is a few commits
	sagaStockRows        = 10_000
	sagaParticipantConns = 64
	sagaDownFor          = 3 * time.Second
	sagaWaitSeconds      = 30
	sagaDrainMax         = 5 * time.Minute
	drainPoll            = 200 * time.Millisecond
	// sagaWarmup precedes each path's measured window (at most the window's length): a
	// coordinator started on a fresh data directory runs its first ~2 s slower (in 2 s
	// windows after a 0.5 s warm-up, 430-520 sagas/s at 0.89-1.05 ms of CPU each, then
	// 680-850 at 0.57-0.67 ms; BENCHMARKS.md), and the paths are judged in their steady
	// state.
	sagaWarmup = 3 * time.Second
)

// SagaServer is a running coordinator: ordercore serve, its API base URL and its pid (for
// its CPU time).
type SagaServer struct {
	Base string
	PID  int
	Stop func() error
}

// SagaConfig configures RunSaga.
type SagaConfig struct {
	Clients  int
	Duration time.Duration
	Backlog  int
	Paths    []string
	// PG is the participants' PostgreSQL (a schema of their own is created and dropped).
	PG string
	// Dir is a scratch directory (the in-process path's SQLite file).
	Dir string
	// Serve starts the coordinator on a fresh data directory, as a separate process so its
	// CPU time can be read apart from the clients' and participants'.
	Serve    func(ctx context.Context, dir string) (SagaServer, error)
	Progress io.Writer
	// Rounds is how many pairs of the direct and saga paths run, one right after the
	// other: the machine's pace drifts within minutes, so the ratio and the CPU targets
	// are judged on the medians over the pairs. The first pair is the table's; 0 means
	// RoundsDefault.
	Rounds int
}

func (c SagaConfig) wants(p string) bool {
	if len(c.Paths) == 0 {
		return true
	}
	for _, w := range c.Paths {
		if w == p {
			return true
		}
	}
	return false
}

// SagaResult is one path's figures.
type SagaResult struct {
	Path      string
	Clients   int
	Sagas     int64
	PerSecond float64
	P50, P99  time.Duration
	Errors    int64
	// CPUPerSaga is the coordinator process's CPU time per saga (saga path only).
	CPUPerSaga time.Duration
	// CPU is where the machine's CPU went in the window, per saga (direct and saga
	// paths; nil when /proc could not be read).
	CPU  *SagaCPU
	Note string
}

// SagaCPU splits the machine's CPU time in a path's window, per saga counted in it, from
// /proc (ticks of 10 ms, so windows of a few seconds). Busy is every core's busy time;
// Coordinator the ordercore serve process (saga path); Bench this process, the
// participants and the clients; Postgres every process named postgres; Others the rest
// (load from outside the bench); Idle the cores' unused time.
type SagaCPU struct {
	Busy, Coordinator, Bench, Postgres, Others, Idle time.Duration
	// CoordinatorInBench: the coordinator runs in this process, so Bench includes it.
	CoordinatorInBench bool
}

// sagaCPU is the split between readings a and b (coordinator ticks ca and cb, when the
// coordinator is another process) over sagas.
func sagaCPU(a, b cpuSample, ca, cb uint64, sagas int64, coordinatorInBench bool) *SagaCPU {
	if !a.ok || !b.ok || b.total <= a.total || sagas <= 0 {
		return nil
	}
	per := func(ticks uint64) time.Duration {
		return time.Duration(ticks) * (time.Second / 100) / time.Duration(sagas)
	}
	idle := b.idle - a.idle
	busy := b.total - a.total - idle
	pg := a.pgTicksUntil(b)
	self, coord := b.self-a.self, uint64(0)
	if cb >= ca {
		coord = cb - ca
	}
	c := &SagaCPU{Busy: per(busy), Bench: per(self), Postgres: per(pg), Idle: per(idle), CoordinatorInBench: coordinatorInBench}
	if coordinatorInBench {
		coord = 0
	}
	c.Coordinator = per(coord)
	if used := self + pg + coord; busy > used {
		c.Others = per(busy - used)
	}
	return c
}

// SagaReport is a saga bench run.
type SagaReport struct {
	Machine  Machine
	Config   SagaConfig
	PGServer string
	Results  []SagaResult
	// Drain: Backlog sagas submitted while the participants were down for DownFor, then
	// drained in DrainTime once they were back.
	Backlog   int
	DownFor   time.Duration
	DrainTime time.Duration
	DrainRate float64
	// Rounds are the pairs of the direct and saga paths (SagaConfig.Rounds), each run
	// right after the other; the first is also in Results.
	Rounds []SagaRound
}

// SagaRound is a pair of the direct and saga paths.
type SagaRound struct{ Direct, Saga SagaResult }

// Result returns the figures of a path.
func (r *SagaReport) Result(path string) (SagaResult, bool) {
	for _, x := range r.Results {
		if x.Path == path {
			return x, true
		}
	}
	return SagaResult{}, false
}

// RunSaga runs the saga bench.
func RunSaga(ctx context.Context, cfg SagaConfig) (*SagaReport, error) {
	if cfg.Clients <= 0 {
		cfg.Clients = ClientsDefault
	}
	if cfg.Duration <= 0 {
		cfg.Duration = DurationDefault
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = SagaBacklogDefault
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = RoundsDefault
	}
	if cfg.Rounds < 1 || cfg.Rounds > RoundsMax {
		return nil, fmt.Errorf("bench: rounds must be 1..%d, not %d", RoundsMax, cfg.Rounds)
	}
	rep := &SagaReport{Machine: DetectMachine(), Config: cfg}
	p, err := startParticipants(ctx, cfg.PG)
	if err != nil {
		return nil, err
	}
	defer p.close()
	rep.PGServer = p.version
	if cfg.wants(SagaPathDirect) {
		fmt.Fprintf(cfg.Progress, "saga bench: %s: %d clients call both participants directly for %s\n", SagaPathDirect, cfg.Clients, cfg.Duration)
		rep.Results = append(rep.Results, p.runDirect(ctx, cfg))
	}
	var srv SagaServer
	if cfg.wants(SagaPathSaga) || cfg.wants(SagaPathDrain) || cfg.wants(SagaPathSingle) {
		if srv, err = cfg.Serve(ctx, filepath.Join(cfg.Dir, "coordinator")); err != nil {
			return nil, fmt.Errorf("start the coordinator: %w", err)
		}
		defer srv.Stop()
	}
	if cfg.wants(SagaPathSaga) {
		fmt.Fprintf(cfg.Progress, "saga bench: %s: %d clients submit 2-branch sagas to ordercore and wait for each for %s\n", SagaPathSaga, cfg.Clients, cfg.Duration)
		rep.Results = append(rep.Results, p.runSagas(ctx, cfg, srv))
		if d, ok := rep.Result(SagaPathDirect); ok {
			s, _ := rep.Result(SagaPathSaga)
			rep.Rounds = append(rep.Rounds, SagaRound{Direct: d, Saga: s})
			for n := 2; n <= cfg.Rounds; n++ {
				fmt.Fprintf(cfg.Progress, "saga bench: pair %d of %d: %s, then %s, %s each\n", n, cfg.Rounds, SagaPathDirect, SagaPathSaga, cfg.Duration)
				d := p.runDirect(ctx, cfg)
				rep.Rounds = append(rep.Rounds, SagaRound{Direct: d, Saga: p.runSagas(ctx, cfg, srv)})
			}
		}
	}
	if cfg.wants(SagaPathSingle) {
		one := cfg
		one.Clients = 1
		fmt.Fprintf(cfg.Progress, "saga bench: %s: one client calls both participants directly for %s, then submits sagas for %s\n", SagaPathSingle, cfg.Duration, cfg.Duration)
		d := p.runDirect(ctx, one)
		d.Path = SagaPathDirect1
		s := p.runSagas(ctx, one, srv)
		s.Path = SagaPathSaga1
		rep.Results = append(rep.Results, d, s)
	}
	if cfg.wants(SagaPathInProcess) {
		fmt.Fprintf(cfg.Progress, "saga bench: %s: %d submitters run sagas of two in-process steps for %s\n", SagaPathInProcess, SagaInProcessClients, cfg.Duration)
		r, err := runInProcess(ctx, cfg)
		if err != nil {
			return nil, err
		}
		rep.Results = append(rep.Results, r)
	}
	if cfg.wants(SagaPathDrain) {
		fmt.Fprintf(cfg.Progress, "saga bench: %s: %d sagas submitted while the participants are down for %s, then drained\n", SagaPathDrain, cfg.Backlog, sagaDownFor)
		if err := p.runDrain(ctx, cfg, srv, rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// participants are the two services the sagas call, in this process, on PostgreSQL.
type participants struct {
	db      *sql.DB
	pgURL   string
	schema  string
	version string
	d       barrier.Dialect
	addr    string
	mu      sync.Mutex
	srv     *http.Server
	hc      *http.Client
	seq     atomic.Int64
}

func startParticipants(ctx context.Context, pgURL string) (*participants, error) {
	if pgURL == "" {
		return nil, errors.New("the participants need PostgreSQL (--pg)")
	}
	var b [6]byte
	crand.Read(b[:])
	p := &participants{pgURL: pgURL, schema: "bench_saga_" + hex.EncodeToString(b[:])}
	db, err := sql.Open("pgx", pgURL)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(sagaParticipantConns)
	db.SetMaxIdleConns(sagaParticipantConns)
	p.db = db
	p.d = barrier.Dialect{Engine: barrier.Postgres, Table: p.schema + ".ordercore_barrier"}
	if err := db.QueryRowContext(ctx, "SHOW server_version").Scan(&p.version); err != nil {
		db.Close()
		return nil, fmt.Errorf("participants' PostgreSQL at %s: %w", pgURL, err)
	}
	for _, q := range []string{
		"CREATE SCHEMA " + p.schema,
		"CREATE TABLE " + p.schema + ".stock (id INT PRIMARY KEY, qty BIGINT NOT NULL)",
		"CREATE TABLE " + p.schema + ".orders (id TEXT PRIMARY KEY, item INT NOT NULL)",
		"INSERT INTO " + p.schema + ".stock SELECT g, 1000000000 FROM generate_series(0, " + strconv.Itoa(sagaStockRows-1) + ") g",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			p.close()
			return nil, fmt.Errorf("participants' schema: %w", err)
		}
	}
	if err := barrier.Migrate(ctx, db, p.d); err != nil {
		p.close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.close()
		return nil, err
	}
	p.addr = ln.Addr().String()
	p.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0}}
	p.serve(ln)
	return p, nil
}

func (p *participants) handler() http.Handler {
	mux := http.NewServeMux()
	type body struct {
		Item int    `json:"item"`
		ID   string `json:"id"`
	}
	call := func(sqlText func(b body) (string, []any)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			br, err := barrier.FromQuery(r.URL.Query())
			if err != nil {
				barrier.WriteHTTP(w, err)
				return
			}
			var b body
			if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
				barrier.WriteHTTP(w, fmt.Errorf("%w: %v", barrier.ErrFailure, err))
				return
			}
			q, args := sqlText(b)
			barrier.WriteHTTP(w, barrier.CallDB(r.Context(), p.db, p.d, br, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(r.Context(), q, args...)
				return err
			}))
		}
	}
	s := p.schema
	mux.HandleFunc("POST /stock/action", call(func(b body) (string, []any) {
		return "UPDATE " + s + ".stock SET qty = qty - 1 WHERE id = $1", []any{b.Item}
	}))
	mux.HandleFunc("POST /stock/compensate", call(func(b body) (string, []any) {
		return "UPDATE " + s + ".stock SET qty = qty + 1 WHERE id = $1", []any{b.Item}
	}))
	mux.HandleFunc("POST /order/action", call(func(b body) (string, []any) {
		return "INSERT INTO " + s + ".orders (id, item) VALUES ($1, $2)", []any{b.ID, b.Item}
	}))
	mux.HandleFunc("POST /order/compensate", call(func(b body) (string, []any) {
		return "DELETE FROM " + s + ".orders WHERE id = $1", []any{b.ID}
	}))
	return mux
}

func (p *participants) serve(ln net.Listener) {
	srv := &http.Server{Handler: p.handler(), ReadHeaderTimeout: 10 * time.Second}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go srv.Serve(ln)
}

// down stops answering (connections are refused); up listens again on the same address.
func (p *participants) down() {
	p.mu.Lock()
	srv := p.srv
	p.mu.Unlock()
	srv.Close()
}

func (p *participants) up() error {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.serve(ln)
	return nil
}

func (p *participants) close() {
	if p.srv != nil {
		p.srv.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p.db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+p.schema+" CASCADE")
	p.db.Close()
}

func (p *participants) url(path string) string { return "http://" + p.addr + path }

// payloads of one transaction: a stock row (spread, so rows do not serialise the run)
// and an order id.
func (p *participants) payloads() (stock, order []byte, gid string) {
	n := p.seq.Add(1)
	gid = fmt.Sprintf("b%d-%d", time.Now().UnixNano(), n)
	item := int(n % sagaStockRows)
	stock, _ = json.Marshal(map[string]any{"item": item})
	order, _ = json.Marshal(map[string]any{"item": item, "id": gid})
	return stock, order, gid
}

func (p *participants) post(ctx context.Context, path string, q string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url(path)+"?"+q, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		return err
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Contains(string(text), "FAILURE") {
		return fmt.Errorf("%s: HTTP %d %s", path, resp.StatusCode, text)
	}
	return nil
}

// runDirect is the floor: each client calls the two participants in turn, with the
// query parameters a coordinator would send (so the barrier runs as in a saga).
func (p *participants) runDirect(ctx context.Context, cfg SagaConfig) SagaResult {
	var cpu0, cpu1 cpuSample
	edge := func(open bool) {
		if open {
			cpu0 = readCPU()
		} else {
			cpu1 = readCPU()
		}
	}
	r := measureWindow(ctx, cfg.Clients, cfg.Duration, SagaPathDirect, func(ctx context.Context) error {
		stock, order, gid := p.payloads()
		q := func(branch string) string {
			return "gid=" + gid + "&trans_type=saga&branch_id=" + branch + "&op=action"
		}
		if err := p.post(ctx, "/stock/action", q("01"), stock); err != nil {
			return err
		}
		return p.post(ctx, "/order/action", q("02"), order)
	}, edge)
	r.CPU = sagaCPU(cpu0, cpu1, 0, 0, r.Sagas, false)
	return r
}

func (p *participants) sagaBody(gid string, stock, order []byte, policy map[string]any) []byte {
	step := func(name, path string, payload []byte) map[string]any {
		return map[string]any{"name": name,
			"action":     map[string]any{"url": p.url(path + "/action"), "payload": json.RawMessage(payload)},
			"compensate": map[string]any{"url": p.url(path + "/compensate"), "payload": json.RawMessage(payload)}}
	}
	b, _ := json.Marshal(map[string]any{"gid": gid, "kind": "saga", "policy": policy,
		"steps": []any{step("stock", "/stock", stock), step("order", "/order", order)}})
	return b
}

// runSagas drives the same two calls as sagas: each client submits one and waits for it.
func (p *participants) runSagas(ctx context.Context, cfg SagaConfig, srv SagaServer) SagaResult {
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	// The coordinator's CPU is read over the window whose completed sagas are counted
	// (not over the warm-up, whose sagas are not): in a steady state the sagas in flight
	// at its opening and at its close balance.
	var cpu0, cpu1 time.Duration
	var m0, m1 cpuSample
	edge := func(open bool) {
		if open {
			m0, cpu0 = readCPU(), processCPU(srv.PID)
		} else {
			m1, cpu1 = readCPU(), processCPU(srv.PID)
		}
	}
	r := measureWindow(ctx, cfg.Clients, cfg.Duration, SagaPathSaga, func(ctx context.Context) error {
		stock, order, gid := p.payloads()
		resp, err := hc.Post(srv.Base+"/v1/sagas?wait_seconds="+strconv.Itoa(sagaWaitSeconds), "application/json",
			bytes.NewReader(p.sagaBody(gid, stock, order, nil)))
		if err != nil {
			return err
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(text, []byte(`"status":"completed"`)) {
			return fmt.Errorf("saga %s: HTTP %d %.200s", gid, resp.StatusCode, text)
		}
		return nil
	}, edge)
	if cpu := cpu1 - cpu0; r.Sagas > 0 && cpu > 0 {
		r.CPUPerSaga = cpu / time.Duration(r.Sagas)
	}
	tick := uint64(time.Second / 100)
	r.CPU = sagaCPU(m0, m1, uint64(cpu0)/tick, uint64(cpu1)/tick, r.Sagas, srv.PID == os.Getpid())
	r.Note = "POST /v1/sagas?wait_seconds=30: answered when the saga completed"
	return r
}

// runDrain stops the participants, submits the backlog, brings them back and times the
// drain.
func (p *participants) runDrain(ctx context.Context, cfg SagaConfig, srv SagaServer, rep *SagaReport) error {
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	before, err := completedCount(ctx, hc, srv.Base)
	if err != nil {
		return err
	}
	p.down()
	down := time.Now()
	// Retries every second at most (and enough of them to outlast the outage), so the
	// drain measures the coordinator, not a backoff that grew to a minute.
	policy := map[string]any{"retries_max": 100, "backoff_min_ms": 200, "backoff_max_ms": 1000}
	var submitted atomic.Int64
	var firstErr error
	var once sync.Once
	var gidsMu sync.Mutex
	gids := make(map[string]bool, cfg.Backlog)
	parallel := min(cfg.Clients, 64)
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for submitted.Add(1) <= int64(cfg.Backlog) {
				stock, order, gid := p.payloads()
				gidsMu.Lock()
				gids[gid] = true
				gidsMu.Unlock()
				resp, err := hc.Post(srv.Base+"/v1/sagas", "application/json", bytes.NewReader(p.sagaBody(gid, stock, order, policy)))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						err = fmt.Errorf("submit: HTTP %d", resp.StatusCode)
					}
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		p.up()
		return firstErr
	}
	if rest := sagaDownFor - time.Since(down); rest > 0 {
		time.Sleep(rest)
	}
	rep.Backlog, rep.DownFor = cfg.Backlog, time.Since(down)
	if err := p.up(); err != nil {
		return err
	}
	back := time.Now()
	want := before + int64(cfg.Backlog)
	for {
		n, err := completedCount(ctx, hc, srv.Base)
		if err != nil {
			return err
		}
		fmt.Fprintf(cfg.Progress, "\r  drained %d/%d", n-before, cfg.Backlog)
		if n >= want {
			break
		}
		if time.Since(back) > sagaDrainMax {
			return fmt.Errorf("the backlog did not drain within %s (%d of %d)", sagaDrainMax, n-before, cfg.Backlog)
		}
		// Each look counts every saga by status in the coordinator, whose CPU the drain
		// shares: looking often would slow what it measures. The drain ends up to one
		// interval before it is seen; its end is then read from the sagas themselves.
		time.Sleep(drainPoll)
	}
	fmt.Fprintln(cfg.Progress)
	seen := time.Since(back)
	// The drain ended when the last of the backlog completed, which the polls above see
	// up to an interval late: that moment is the newest updated_at of the backlog's
	// sagas (the coordinator's clock is this machine's).
	last, err := lastCompleted(ctx, hc, srv.Base, gids)
	if err != nil {
		return err
	}
	rep.DrainTime = min(seen, last.Sub(back.Round(0)))
	if rep.DrainTime <= 0 {
		return fmt.Errorf("the backlog's last saga completed at %s, before the participants came back at %s", last, back)
	}
	rep.DrainRate = float64(cfg.Backlog) / rep.DrainTime.Seconds()
	return nil
}

// lastCompleted pages through the completed sagas until it has seen every gid in gids,
// and returns the latest time one of them was updated (completed).
func lastCompleted(ctx context.Context, hc *http.Client, base string, gids map[string]bool) (time.Time, error) {
	var last time.Time
	found, cursor := 0, ""
	for found < len(gids) {
		u := base + "/v1/sagas?status=completed&limit=500"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return last, err
		}
		var page struct {
			Sagas []struct {
				GID       string    `json:"gid"`
				UpdatedAt time.Time `json:"updated_at"`
			} `json:"sagas"`
			NextCursor string `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return last, fmt.Errorf("list completed sagas: %w", err)
		}
		for _, s := range page.Sagas {
			if gids[s.GID] {
				found++
				if s.UpdatedAt.After(last) {
					last = s.UpdatedAt
				}
			}
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if found < len(gids) {
		return last, fmt.Errorf("%d of the %d backlogged sagas are listed as completed", found, len(gids))
	}
	return last, nil
}

func completedCount(ctx context.Context, hc *http.Client, base string) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/sagas?limit=1", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Counts map[string]int64 `json:"counts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	return out.Counts["completed"], nil
}

// runInProcess runs sagas of two in-process steps (ordercore.notify) on an engine and a
// coordinator in this process, on SQLite: the coordinator's own throughput, with no
// network on the way.
func runInProcess(ctx context.Context, cfg SagaConfig) (SagaResult, error) {
	dir := filepath.Join(cfg.Dir, "in-process")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return SagaResult{}, err
	}
	db, err := sqlite.Open(ctx, filepath.Join(dir, "ordercore.db"), sqlite.Options{})
	if err != nil {
		return SagaResult{}, err
	}
	defer db.Close()
	eng := engine.New(db, ordercore.SystemClock{}, engineConfig(PathEngine)) // serve's committer defaults
	defer eng.Close()
	coord := &saga.Coordinator{Claim: eng.ClaimSagasFor, Record: eng.RecordSaga}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { coord.Run(cctx); close(done) }()
	defer func() { cancel(); <-done }()
	for !coord.Running() {
		time.Sleep(time.Millisecond)
	}
	var seq atomic.Int64
	policy := saga.Defaults(ordercore.SagaPolicy{})
	hold := saga.Hold(&ordercore.Saga{Policy: policy})
	r := measure(ctx, SagaInProcessClients, cfg.Duration, SagaPathInProcess, func(ctx context.Context) error {
		gid := fmt.Sprintf("ip-%d", seq.Add(1))
		s := ordercore.Saga{GID: gid, Kind: ordercore.SagaKindSaga, Policy: policy, Steps: []ordercore.SagaStep{
			{Name: "a", Action: ordercore.SagaCall{Local: saga.LocalNotify, Payload: []byte(`{"n":1}`)}},
			{Name: "b", Action: ordercore.SagaCall{Local: saga.LocalNotify, Payload: []byte(`{"n":2}`)}}}}
		w, stop := coord.Watch(gid)
		defer stop()
		res, err := eng.Submit(ctx, engine.SubmitSaga{Saga: s, Hold: hold}, nil)
		if err != nil {
			return err
		}
		got := res.Value.(ordercore.Saga)
		if !got.Status.Final() { // in-process steps run in the submit's transaction
			coord.Start(got)
			if got, err = coord.Wait(ctx, gid, w, db.Saga); err != nil {
				return err
			}
		}
		if got.Status != ordercore.SagaCompleted {
			return fmt.Errorf("saga %s ended %s", gid, got.Status)
		}
		return nil
	})
	r.Note = "engine.SubmitSaga + Coordinator in process on SQLite; each step an ordercore.notify event"
	return r, nil
}

// measure runs fn from n clients for d (after sagaWarmup) and returns its rate (the
// calls that ended in the window) and latency (of those that also began in it).
func measure(ctx context.Context, n int, d time.Duration, path string, fn func(ctx context.Context) error) SagaResult {
	return measureWindow(ctx, n, d, path, fn, nil)
}

// measureWindow is measure with edge called as the window opens (true) and as it closes
// (false), to read other figures over exactly the sagas counted.
func measureWindow(ctx context.Context, n int, d time.Duration, path string, fn func(ctx context.Context) error, edge func(open bool)) SagaResult {
	if edge == nil {
		edge = func(bool) {}
	}
	var open atomic.Bool
	var opened atomic.Int64 // when the window opened, UnixNano
	var count, errs atomic.Int64
	recs := make([]*recorder, n)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range n {
		recs[i] = &recorder{samples: make([]time.Duration, 0, 4096), rng: rand.New(rand.NewPCG(uint64(i), 7))}
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				err := fn(ctx)
				if !open.Load() || ctx.Err() != nil {
					continue
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				count.Add(1)
				// A call's latency counts only if it began in the window: one begun in
				// the warm-up may have waited for start-up (connections being opened).
				if start.UnixNano() >= opened.Load() {
					recs[i].add(time.Since(start))
				}
			}
		})
	}
	time.Sleep(min(sagaWarmup, d))
	edge(true)
	start := time.Now()
	opened.Store(start.UnixNano())
	open.Store(true)
	time.Sleep(d)
	open.Store(false)
	edge(false)
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	lat := merge(recs)
	return SagaResult{Path: path, Clients: n, Sagas: count.Load(), PerSecond: float64(count.Load()) / elapsed.Seconds(),
		P50: lat.quantile(0.50), P99: lat.quantile(0.99), Errors: errs.Load()}
}

// processCPU is the user+system CPU time of process pid so far (/proc/PID/stat, in the
// kernel's USER_HZ ticks, 100 per second on Linux).
func processCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(raw)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100)
}
