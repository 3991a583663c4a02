package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
	"ordercore/sqlite"
)

// engineConfig is the committer configuration of a path: serve's defaults for the engine
// (its batch delay, limit.BatchDelayDefault), one command per transaction for the naive
// path, with nothing else changed.
func engineConfig(path string) engine.Config {
	if path == PathNaive {
		return engine.Config{BatchMax: 1}
	}
	return engine.Config{BatchDelay: limit.BatchDelayDefault}
}

// runEngine measures engine.Submit of PlaceOrder from cfg.Clients goroutines against a
// fresh SQLite file with the store's default settings (synchronous=FULL).
func runEngine(ctx context.Context, cfg Config, out *progress, path string, sc scenario, ecfg engine.Config) (Result, error) {
	res := Result{Path: path, Scenario: sc.name}
	dir, err := mkdir(cfg, path, sc)
	if err != nil {
		return res, err
	}
	res.DB = filepath.Join(dir, "ordercore.db")
	db, err := sqlite.Open(ctx, res.DB, sqlite.Options{})
	if err != nil {
		return res, err
	}
	defer db.Close()
	eng := engine.New(db, ordercore.SystemClock{}, ecfg)
	defer eng.Close() // before db.Close: defers run last-in first-out
	out.linef("%s/%s: creating %d SKU(s)", path, sc.name, len(sc.skus))
	if err := createSKUs(ctx, eng, sc.skus); err != nil {
		return res, err
	}

	var before, after engine.Stats
	place := func(ctx context.Context, w *worker) error {
		_, err := eng.Submit(ctx, engine.PlaceOrder{UserID: userID,
			Lines: []engine.LineRequest{{SKU: sc.pick(w.rng), Quantity: 1}}}, nil)
		return err
	}
	win, err := drive(ctx, cfg, out, path+"/"+sc.name, place, func(open bool) {
		if open {
			before = eng.Stats()
		} else {
			after = eng.Stats()
		}
	})
	if err != nil {
		return res, err
	}
	win.fill(&res)
	batchStats(&res, before, after, win.seconds)
	if ecfg.BatchMax == 1 {
		res.Note = joinNotes("one transaction per order", res.Note)
	}
	out.done(res)
	return res, nil
}

// batchStats fills r's batch figures from the committer's counters over the window.
func batchStats(r *Result, before, after engine.Stats, seconds float64) {
	var batches, commands int64
	sizes := make([]int64, len(after.BatchSizes))
	for n := range after.BatchSizes {
		sizes[n] = after.BatchSizes[n] - before.BatchSizes[n]
		batches += sizes[n]
		commands += sizes[n] * int64(n)
	}
	if batches == 0 {
		return
	}
	r.BatchMean = float64(commands) / float64(batches)
	r.Held = (after.Held - before.Held) / time.Duration(commands)
	var seen int64
	for n, c := range sizes {
		if c == 0 {
			continue
		}
		if r.BatchP50 == 0 && seen+c >= (batches+1)/2 {
			r.BatchP50 = n
		}
		seen += c
		r.BatchMax = n
	}
	if seconds > 0 {
		// A transaction that straddles the window's edge counts whole: clamp to 100%.
		r.Busy = min(1, (after.CommitTime-before.CommitTime).Seconds()/seconds)
	}
}

// createSKUs creates the SKUs with stockPerSKU units each through the engine, from up to
// setupWorkersMax goroutines so that they share transactions.
func createSKUs(ctx context.Context, eng *engine.Engine, skus []string) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	return parallel(ctx, len(skus), func(ctx context.Context, i int) error {
		_, err := eng.Submit(ctx, engine.CreateSKU{ID: skus[i], Name: "bench " + skus[i], Price: price, Stock: stockPerSKU}, nil)
		if err != nil {
			return fmt.Errorf("create sku %s: %w", skus[i], err)
		}
		return nil
	})
}

// parallel calls fn for 0..n-1 from up to setupWorkersMax goroutines and returns the first
// error; after an error no new call starts.
func parallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(n, setupWorkersMax) {
		wg.Go(func() {
			for i := range next {
				if err := fn(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel()
				}
			}
		})
	}
	// The feeder stops at the first error (ctx cancelled) or when every index is handed out.
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err() // cancelled from outside: not every call was made
}
