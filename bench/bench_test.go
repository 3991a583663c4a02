package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"ordercore"
	"ordercore/bench"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
	"ordercore/sqlite"
)

// TestRunWritesWhatItCounts runs a short benchmark and checks only what must hold
// whatever the machine: every requested path placed orders, the paths that write
// in process had no errors, and each database holds exactly the orders the run counted,
// with the same rows per order for the engine and the hand-written ceiling. Timing is
// never asserted (STYLE.md): the figures belong to `ordercore bench`.
func TestRunWritesWhatItCounts(t *testing.T) {
	t.Parallel()
	const skus = 100
	paths := []string{bench.PathEngine, bench.PathNaive, bench.PathCeiling, bench.PathHTTPCeiling, bench.PathTrivial}
	var progress bytes.Buffer
	rep, err := bench.Run(context.Background(), bench.Config{
		Dir: t.TempDir(), Duration: 300 * time.Millisecond, Clients: 8, SKUs: skus, Paths: paths, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	many := "100" // the many-SKU scenario is named by its SKU count
	for _, path := range paths {
		scenarios := []string{bench.ScenarioHot, many}
		if path == bench.PathTrivial || path == bench.PathHTTPCeiling {
			scenarios = []string{bench.ScenarioHot} // they run on the hot SKU only
		}
		for _, sc := range scenarios {
			res, ok := rep.Result(path, sc)
			if !ok {
				t.Errorf("no result for %s/%s; results: %+v", path, sc, rep.Results)
				continue
			}
			if res.Orders <= 0 || res.PerSecond <= 0 {
				t.Errorf("%s/%s placed %d orders (%.0f/s), want some", path, sc, res.Orders, res.PerSecond)
			}
			if path != bench.PathTrivial && res.Errors != 0 {
				t.Errorf("%s/%s had %d errors (%s), want none", path, sc, res.Errors, res.Note)
			}
			if res.DB != "" {
				checkStore(t, path+"/"+sc, res, sc == bench.ScenarioHot, skus)
			}
		}
	}
	if res, _ := rep.Result(bench.PathNaive, bench.ScenarioHot); res.BatchMax != 1 {
		t.Errorf("naive batch max = %d, want 1 (one transaction per order)", res.BatchMax)
	}
	// The ceiling writes batches of the engine's mean size: the comparison is only fair
	// if the sizes match.
	e, _ := rep.Result(bench.PathEngine, bench.ScenarioHot)
	c, _ := rep.Result(bench.PathCeiling, bench.ScenarioHot)
	if want := max(1, int(e.BatchMean+0.5)); c.BatchMax != want {
		t.Errorf("ceiling batch = %d, want the engine's rounded mean %d (mean %.2f)", c.BatchMax, want, e.BatchMean)
	}

	var text bytes.Buffer
	rep.WriteText(&text)
	md := rep.Markdown()
	for _, want := range append([]string{"synchronous=FULL", rep.Machine.GoVersion}, paths...) {
		if !strings.Contains(text.String(), want) || !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s\n%s", want, text.String(), md)
		}
	}
}

// checkStore opens the database a path wrote and checks it against the run's count: the
// stock balances equal the orders placed (P1's projection) and every order has its row,
// its ledger entry and its event, like the engine writes them.
func checkStore(t *testing.T, name string, res bench.Result, hot bool, skus int) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), res.DB, sqlite.Options{})
	if err != nil {
		t.Fatalf("%s: open %s: %v", name, res.DB, err)
	}
	defer db.Close()
	checkRows(t, name, db, res.OrdersTotal, hot, skus)
}

// store is what checkRows reads: the sqlite and the postgres store both have it.
type store interface {
	SKU(ctx context.Context, id string) (ordercore.SKU, error)
	Dump(ctx context.Context) (*ordercore.Snapshot, error)
}

// checkRows checks db against ordersTotal orders placed, as checkStore says.
func checkRows(t *testing.T, name string, db store, ordersTotal int64, hot bool, skus int) {
	t.Helper()
	ctx := context.Background()
	ids := []string{"hot"}
	if !hot {
		ids = ids[:0]
		for i := range skus {
			ids = append(ids, fmt.Sprintf("sku-%06d", i))
		}
	}
	var reserved int64
	for _, id := range ids {
		s, err := db.SKU(ctx, id)
		if err != nil {
			t.Fatalf("%s: read sku %s: %v", name, id, err)
		}
		if s.Total != limit.StockMax || s.Sold != 0 || s.Available() != s.Total-s.Reserved {
			t.Errorf("%s: sku %s = %+v, want total %d, nothing sold", name, id, s, int64(limit.StockMax))
		}
		reserved += s.Reserved
	}
	if reserved != ordersTotal {
		t.Errorf("%s: %d units reserved, want %d (every order placed, warm-up included)", name, reserved, ordersTotal)
	}
	snap, err := db.Dump(ctx)
	if err != nil {
		t.Fatalf("%s: dump: %v", name, err)
	}
	n := int(ordersTotal)
	if len(snap.Orders) != n || len(snap.Ledger) != n+len(ids) || len(snap.Events) != n+len(ids) {
		t.Errorf("%s: %d orders, %d ledger entries, %d events; want %d, %d (one per order and one restock per sku), %d",
			name, len(snap.Orders), len(snap.Ledger), len(snap.Events), n, n+len(ids), n+len(ids))
	}
	placed := 0
	for _, e := range snap.Events {
		if e.Type == ordercore.EventOrderPlaced {
			placed++
		}
	}
	if placed != n {
		t.Errorf("%s: %d order.placed events, want %d", name, placed, n)
	}
}

// BenchmarkEngineHotSKU places orders for one SKU through the engine with its default
// committer from 64 goroutines (on 2 cores), the in-process hot-SKU figure of
// `ordercore bench place-order`.
func BenchmarkEngineHotSKU(b *testing.B) { benchmarkEngine(b, engine.Config{}, false) }

// BenchmarkEngineHotSKUIdempotent is the same with an Idempotency-Key on every order, as
// the API's clients send them: each order also stores its response.
func BenchmarkEngineHotSKUIdempotent(b *testing.B) { benchmarkEngine(b, engine.Config{}, true) }

// BenchmarkEngineNaiveHotSKU is the same with one transaction per order.
func BenchmarkEngineNaiveHotSKU(b *testing.B) { benchmarkEngine(b, engine.Config{BatchMax: 1}, false) }

func benchmarkEngine(b *testing.B, cfg engine.Config, idempotent bool) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "ordercore.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	eng := engine.New(db, ordercore.SystemClock{}, cfg)
	b.Cleanup(func() { eng.Close(); db.Close() })
	_, err = eng.Submit(ctx, engine.CreateSKU{ID: "hot", Name: "hot", Price: ordercore.Money{Amount: 1999, Currency: "USD"}, Stock: limit.StockMax}, nil)
	if err != nil {
		b.Fatal(err)
	}
	const clients = bench.ClientsDefault
	b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	before := eng.Stats()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		cmd := engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: "hot", Quantity: 1}}}
		for pb.Next() {
			var idem *engine.Idem
			if idempotent {
				idem = &engine.Idem{Key: ordercore.NewID(time.Now()), Hash: "h", Status: http.StatusCreated}
			}
			if _, err := eng.Submit(ctx, cmd, idem); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	after := eng.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "orders/s")
	if batches := after.Batches - before.Batches; batches > 0 {
		b.ReportMetric(float64(after.Commands-before.Commands)/float64(batches), "orders/batch")
	}
}

// TestRunHTTPPath drives the http path against a stub of the ordercore API (the real one
// lives in httpapi) backed by a real engine, and checks that every 201 is an order in the
// database.
func TestRunHTTPPath(t *testing.T) {
	t.Parallel()
	var dbPaths []string // one per server started: the table's http run, then the rounds'
	start := func(ctx context.Context, dir string) (bench.HTTPServer, error) {
		dbPath := filepath.Join(dir, "ordercore.db")
		dbPaths = append(dbPaths, dbPath)
		db, err := sqlite.Open(ctx, dbPath, sqlite.Options{})
		if err != nil {
			return bench.HTTPServer{}, err
		}
		eng := engine.New(db, ordercore.SystemClock{}, engine.Config{})
		srv := httptest.NewServer(stubAPI(eng))
		return bench.HTTPServer{Base: srv.URL, Stop: func() { srv.Close(); eng.Close(); db.Close() }, Stats: eng.Stats}, nil
	}
	const clients = 8
	rep, err := bench.Run(context.Background(), bench.Config{Dir: t.TempDir(), Duration: 300 * time.Millisecond,
		Clients: clients, Paths: []string{bench.PathHTTP, bench.PathHTTPCeiling, bench.PathTrivial}, Scenarios: []string{bench.ScenarioHot}, HTTP: start})
	if err != nil {
		t.Fatal(err)
	}
	res, ok := rep.Result(bench.PathHTTP, bench.ScenarioHot)
	if !ok || res.Orders <= 0 || res.Errors != 0 {
		t.Fatalf("http/hot = %+v (found %v), want orders and no errors", res, ok)
	}
	// The server's committer counters give the path its batch figures.
	if res.BatchMean < 1 || res.BatchP50 < 1 || res.BatchMax < res.BatchP50 || res.BatchMax > clients || res.Busy <= 0 {
		t.Errorf("http/hot batches: p50 %d max %d mean %.1f busy %.2f; want batches of 1..8 orders and a busy committer",
			res.BatchP50, res.BatchMax, res.BatchMean, res.Busy)
	}
	// The engine's hold of an order is part of the time the order took, and with each
	// client waiting for its answer that time averages at most clients/rate (Little's
	// law; the window's edges count orders begun before it, hence the slack).
	if mean := time.Duration(clients / res.PerSecond * float64(time.Second)); res.Held <= 0 || res.Held > mean+mean/2 {
		t.Errorf("http/hot: the engine held an order %s on average; want more than 0 and about at most the mean time an order took, %s", res.Held, mean)
	}
	if res.CPU == nil || res.CPU.Machine <= 0 || res.CPU.Machine > 1 {
		t.Errorf("http/hot: machine CPU %+v; want a share of the cores in (0, 1]", res.CPU)
	}
	var line string
	for _, l := range rep.Limits() {
		if strings.HasPrefix(l, "http/hot:") {
			line = l
		}
	}
	if !strings.Contains(line, "the engine held an order") || !strings.Contains(line, "busy in the window") {
		t.Errorf("what limits http/hot: %q; want the engine's share of an order's time and how busy the cores were", line)
	}
	// The rounds: http runs, each on a server of its own, each followed by an
	// http-ceiling run and a trivial run; the targets take their medians.
	if len(rep.Rounds) != bench.RoundsDefault || len(dbPaths) != bench.RoundsDefault || rep.Rounds[0].HTTP.OrdersTotal != res.OrdersTotal {
		t.Fatalf("%d rounds on %d servers; want %d, the first the table's http run", len(rep.Rounds), len(dbPaths), bench.RoundsDefault)
	}
	for i, r := range rep.Rounds {
		if r.HTTP.Orders <= 0 || r.HTTPCeiling.Orders <= 0 || r.Trivial.Orders <= 0 || r.HTTP.Errors+r.HTTPCeiling.Errors+r.Trivial.Errors != 0 {
			t.Errorf("round %d: http %d orders, http-ceiling %d, trivial %d, errors %d", i+1, r.HTTP.Orders, r.HTTPCeiling.Orders, r.Trivial.Orders,
				r.HTTP.Errors+r.HTTPCeiling.Errors+r.Trivial.Errors)
		}
		checkStore(t, fmt.Sprintf("http/hot round %d", i+1), bench.Result{DB: dbPaths[i], OrdersTotal: r.HTTP.OrdersTotal}, true, 0)
		// Every 201 of the http-ceiling server is an order in its database, as the
		// engine writes it.
		checkStore(t, fmt.Sprintf("http-ceiling/hot round %d", i+1), r.HTTPCeiling, true, 0)
		if r.HTTPCeiling.BatchMean < 1 || r.HTTPCeiling.BatchMax > clients || r.HTTPCeiling.Held <= 0 {
			t.Errorf("http-ceiling round %d: batch mean %.1f max %d held %s; want its writer's batches of 1..%d",
				i+1, r.HTTPCeiling.BatchMean, r.HTTPCeiling.BatchMax, r.HTTPCeiling.Held, clients)
		}
	}
	medianOf := func(f func(bench.Round) float64) float64 {
		v := make([]float64, len(rep.Rounds))
		for i, r := range rep.Rounds {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	want := map[string]float64{
		"http / trivial, hot":         medianOf(func(r bench.Round) float64 { return r.HTTP.PerSecond / r.Trivial.PerSecond }),
		"http-ceiling / trivial, hot": medianOf(func(r bench.Round) float64 { return r.HTTPCeiling.PerSecond / r.Trivial.PerSecond }),
		"http / http-ceiling, hot":    medianOf(func(r bench.Round) float64 { return r.HTTP.PerSecond / r.HTTPCeiling.PerSecond }),
	}
	for _, c := range rep.Checks() {
		w, ok := want[c.Name]
		if !ok {
			continue
		}
		delete(want, c.Name)
		if c.Value != w || !strings.Contains(c.Measured, fmt.Sprintf("median of %d rounds", bench.RoundsDefault)) {
			t.Errorf("check %s: %v, measured %q; want the median over the rounds, %v", c.Name, c.Value, c.Measured, w)
		}
		if c.HasTarget != (c.Name == "http / trivial, hot") {
			t.Errorf("check %s: has a target %v; only http / trivial has one", c.Name, c.HasTarget)
		}
	}
	if len(want) > 0 {
		t.Errorf("checks %v missing from %+v", want, rep.Checks())
	}
}

// stubAPI serves the two endpoints the benchmark calls, the way httpapi will: decode,
// submit, answer 201.
func stubAPI(eng *engine.Engine) http.Handler {
	mux := http.NewServeMux()
	submit := func(w http.ResponseWriter, r *http.Request, cmd engine.Command) {
		res, err := eng.Submit(r.Context(), cmd, nil)
		if err != nil {
			http.Error(w, ordercore.ErrorCode(err), http.StatusConflict)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(res.Value)
	}
	mux.HandleFunc("POST /v1/skus", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID    string          `json:"id"`
			Name  string          `json:"name"`
			Price ordercore.Money `json:"price"`
			Stock int64           `json:"stock"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		submit(w, r, engine.CreateSKU{ID: req.ID, Name: req.Name, Price: req.Price, Stock: req.Stock})
	})
	mux.HandleFunc("POST /v1/orders", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			UserID string `json:"user_id"`
			Lines  []struct {
				SKU      string `json:"sku"`
				Quantity int64  `json:"quantity"`
			} `json:"lines"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cmd := engine.PlaceOrder{UserID: req.UserID}
		for _, l := range req.Lines {
			cmd.Lines = append(cmd.Lines, engine.LineRequest{SKU: l.SKU, Quantity: l.Quantity})
		}
		submit(w, r, cmd)
	})
	return mux
}
