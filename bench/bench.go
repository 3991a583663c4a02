package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"ordercore/internal/engine"
	"ordercore/internal/limit"
)

// Path names: how an order is written.
const (
	PathEngine  = "engine"  // engine.Submit in process, group commit (engine.Config{} defaults)
	PathNaive   = "naive"   // the same engine with BatchMax 1: one transaction per order
	PathCeiling = "ceiling" // a hand-written batched loop writing the same rows to SQLite
	PathHTTP    = "http"    // POST /v1/orders against a real ordercore server
	PathTrivial = "trivial" // POST to a handler that only decodes JSON: the HTTP ceiling
	// PathHTTPCeiling is the trivial handler's decode followed by a hand-written group
	// commit of the ceiling's rows: the least a server that writes them durably spends.
	PathHTTPCeiling = "http-ceiling"
)

// PostgreSQL-only path names (Config.DB set): how several committers share one database.
const (
	// PathNaivePool is naivePoolCommitters engines with BatchMax 1 on one pool: as many
	// one-order transactions in flight as a naive server with that pool runs, each
	// locking the SKU row (SELECT ... FOR UPDATE) until it commits.
	PathNaivePool = "naive-pool"
	// PathEngine3 is three engines, each with its own pool, on one schema and the same
	// SKUs, the clients spread round-robin over them: three serve instances on one
	// database.
	PathEngine3 = "engine-3"
)

// Paths lists every path in the order Run measures them within a scenario. The ceiling
// follows the engine because it writes batches of the engine's observed mean size.
var Paths = []string{PathEngine, PathNaive, PathCeiling, PathHTTP, PathHTTPCeiling, PathTrivial}

// PGPaths lists the paths Run measures on PostgreSQL (Config.DB set), in order. The
// ceiling, http, http-ceiling and trivial paths are SQLite only.
var PGPaths = []string{PathEngine, PathNaive, PathNaivePool, PathEngine3}

// Scenario selectors for Config.Scenarios.
const (
	// ScenarioHot is one SKU with stock for the whole run; every order takes 1 unit of it.
	ScenarioHot = "hot"
	// ScenarioMany spreads orders uniformly at random over Config.SKUs SKUs. Its results
	// carry the SKU count as their scenario name: "10k" for the default 10,000.
	ScenarioMany = "many"
)

// Defaults and bounds of Config.
const (
	DurationDefault = 5 * time.Second
	DurationMax     = 10 * time.Minute
	ClientsDefault  = 64
	ClientsMax      = 4096
	SKUsDefault     = 10_000
	SKUsMax         = 100_000
	RoundsDefault   = 3
	RoundsMax       = 10

	// warmupMax is the start of every path that is not measured: caches, connections and
	// the Go scheduler settle. A short Duration gets a warm-up as long as itself.
	warmupMax = 500 * time.Millisecond
	// drainMax bounds how long stopped clients may take to finish their last request
	// before their context is cancelled.
	drainMax = 10 * time.Second
	// samplesMax bounds the latency samples kept per path (8 bytes each); beyond it every
	// client keeps a uniform random sample of its latencies (reservoir sampling).
	samplesMax = 2_000_000
	// setupWorkersMax bounds the concurrent requests that create the SKUs of a scenario.
	setupWorkersMax = 256
	// setupTimeout bounds the creation of a scenario's SKUs.
	setupTimeout = 2 * time.Minute
	// progressEvery is how often a running path refreshes its progress bar.
	progressEvery = 200 * time.Millisecond
)

// Config says what Run measures and for how long.
type Config struct {
	// Dir is a scratch directory: every path gets its own fresh subdirectory in it, which
	// Run leaves behind (with the database) for inspection; the caller removes Dir.
	Dir string
	// Duration is the measured time of each path, after a warm-up of up to 0.5 s.
	Duration time.Duration
	// Clients is the number of concurrent in-process submitters or HTTP connections.
	Clients int
	// SKUs is the number of SKUs of the "many" scenario.
	SKUs int
	// Paths is the subset of Paths to run; empty runs all.
	Paths []string
	// Scenarios is the subset of ScenarioHot and ScenarioMany to run; empty runs both.
	// The trivial and http-ceiling paths run on the hot SKU only.
	Scenarios []string
	// Progress receives progress while running: a progress bar on a terminal, one line per
	// path otherwise. Nil discards it.
	Progress io.Writer
	// Rounds is how many rounds of the http path, the http-ceiling server and the trivial
	// handler run on the hot SKU, one right after the other: the machine's pace drifts by
	// tens of percent within minutes, so the HTTP targets are judged on the median over
	// the rounds. The first round is the table's; 0 means RoundsDefault.
	Rounds int
	// HTTP starts an ordercore server with its data in the fresh directory dir. Nil skips
	// the http path.
	HTTP func(ctx context.Context, dir string) (HTTPServer, error)

	// DB is a PostgreSQL URL (postgres:// or postgresql://). When set, Run measures
	// PGPaths on it instead of SQLite, each path in a fresh schema of its own that it
	// creates first and drops after (even on an error or a cancelled ctx), so runs never
	// see each other's rows.
	DB string
	// SchemaPrefix starts the name of every schema a PostgreSQL run creates
	// (prefix_path_scenario); empty means "bench_" and 8 random hex digits.
	SchemaPrefix string
	// KeepSchemas leaves the schemas behind for inspection instead of dropping them.
	KeepSchemas bool
}

func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		return c, errors.New("bench: Config.Dir is required")
	}
	if c.Duration == 0 {
		c.Duration = DurationDefault
	}
	if c.Clients == 0 {
		c.Clients = ClientsDefault
	}
	if c.SKUs == 0 {
		c.SKUs = SKUsDefault
	}
	if c.Rounds == 0 {
		c.Rounds = RoundsDefault
	}
	switch {
	case c.Duration < 0 || c.Duration > DurationMax:
		return c, fmt.Errorf("bench: duration must be in (0, %s], not %s", DurationMax, c.Duration)
	case c.Clients < 1 || c.Clients > ClientsMax:
		return c, fmt.Errorf("bench: clients must be 1..%d, not %d", ClientsMax, c.Clients)
	case c.SKUs < 1 || c.SKUs > SKUsMax:
		return c, fmt.Errorf("bench: skus must be 1..%d, not %d", SKUsMax, c.SKUs)
	case c.Rounds < 1 || c.Rounds > RoundsMax:
		return c, fmt.Errorf("bench: rounds must be 1..%d, not %d", RoundsMax, c.Rounds)
	}
	for _, p := range c.Paths {
		if !slices.Contains(Paths, p) && !slices.Contains(PGPaths, p) {
			return c, fmt.Errorf("bench: unknown path %q (known: %v; with --db %v)", p, Paths, PGPaths)
		}
	}
	if err := c.checkDB(); err != nil {
		return c, err
	}
	for _, s := range c.Scenarios {
		if s != ScenarioHot && s != ScenarioMany {
			return c, fmt.Errorf("bench: unknown scenario %q (known: %s, %s)", s, ScenarioHot, ScenarioMany)
		}
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return c, fmt.Errorf("bench: scratch directory: %w", err)
	}
	return c, nil
}

func (c Config) wants(path string) bool { return len(c.Paths) == 0 || slices.Contains(c.Paths, path) }

func (c Config) wantsScenario(s string) bool {
	return len(c.Scenarios) == 0 || slices.Contains(c.Scenarios, s)
}

func (c Config) warmup() time.Duration { return min(warmupMax, c.Duration) }

// Result is the measurement of one path on one scenario. Orders, Errors, Seconds and the
// latencies cover only the measured window, not the warm-up.
type Result struct {
	Path     string
	Scenario string
	Orders   int64 // orders answered as placed in the window
	Seconds  float64
	// PerSecond is Orders/Seconds.
	PerSecond float64
	// P50, P99 and P999 are latencies from submit to answer (per batch for the ceiling).
	P50, P99, P999 time.Duration
	// BatchP50 and BatchMax are the committer's batch sizes (orders per transaction) in the
	// window; BatchMean is their mean. Zero when the path cannot see them (http, trivial).
	BatchP50, BatchMax int
	BatchMean          float64
	// Busy is the share of the window the committer spent in transactions (engine, naive;
	// 1 for the ceiling, which does nothing else); 0 when unknown.
	Busy float64
	// Held is the mean time the engine held an order, from Submit to its answer: queued
	// behind the transaction in progress, in the batch filling, and in its own
	// transaction; 0 when unknown.
	Held   time.Duration
	Errors int64 // requests answered with an error in the window
	Note   string
	// OrdersTotal counts every order placed, warm-up and drain included: what the database
	// must hold afterwards. DB is the database file the path wrote, empty when the path
	// has none of its own.
	OrdersTotal int64
	DB          string

	// The PostgreSQL paths' own figures; zero or nil on SQLite.
	//
	// Engines is the number of engines (committers) the clients were spread over.
	Engines int
	// TxMean is the mean time of one batch's transaction, from begin to durable commit,
	// lock waits included.
	TxMean time.Duration
	// Activity is what the path's PostgreSQL sessions were doing in the window, sampled;
	// CPU is how busy the machine was in the window (also on SQLite's http, http-ceiling
	// and trivial paths).
	Activity *Activity
	CPU      *CPU
	// Schema is the PostgreSQL schema the path wrote (dropped after it unless
	// Config.KeepSchemas); Stored is what it held once the path's engines had closed.
	Schema string
	Stored *Stored
}

// HTTPServer is an ordercore server the http path measures.
type HTTPServer struct {
	Base string // its base URL
	Stop func()
	// Stats reads its committer's counters, for the batch figures of the http path;
	// nil leaves them out.
	Stats func() engine.Stats
}

// Summary is the part of the configuration a report prints: every setting a figure
// depends on.
type Summary struct {
	JournalMode string
	Synchronous string
	BatchMax    int           // engine committer, the default the engine path runs with
	BatchDelay  time.Duration // ditto
	QueueMax    int
	Clients     int
	Duration    time.Duration
	Warmup      time.Duration
	SKUs        int
	Stock       int64 // units per SKU
	Paths       []string
	Scenarios   []string
	// Skipped lists what was requested and not run, with the reason.
	Skipped []string
}

// Report is the outcome of Run.
type Report struct {
	Machine Machine
	Config  Summary
	Results []Result
	// Rounds are the rounds of the http path, the http-ceiling server and the trivial
	// handler on the hot SKU, each run right after the other (Config.Rounds); the first
	// is also in Results.
	Rounds []Round
	At     time.Time
	// Postgres is the server a PostgreSQL run measured; nil for SQLite.
	Postgres *PGSettings
}

// Result returns the result of path on scenario (a scenario name as in Result.Scenario).
func (r *Report) Result(path, scenario string) (Result, bool) {
	for _, res := range r.Results {
		if res.Path == path && res.Scenario == scenario {
			return res, true
		}
	}
	return Result{}, false
}

// Run measures every requested path on every requested scenario, one after the other, and
// returns what it measured. On an error it returns the results so far with the error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rep := &Report{Machine: DetectMachine(), At: time.Now().UTC(), Config: summarize(cfg)}
	out := newProgress(cfg.Progress)
	if cfg.DB != "" {
		return runPostgres(ctx, cfg, rep, out)
	}
	roundsDone := false
	for _, sc := range scenarios(cfg) {
		var engineRun *Result
		for _, path := range []string{PathEngine, PathNaive, PathCeiling, PathHTTP} {
			if !cfg.wants(path) {
				continue
			}
			if path == PathHTTP && cfg.HTTP == nil {
				out.linef("%s/%s: skipped, no ordercore server to run against", path, sc.name)
				continue
			}
			res, err := runPath(ctx, cfg, out, path, sc, engineRun)
			if err != nil {
				return rep, fmt.Errorf("bench %s/%s: %w", path, sc.name, err)
			}
			rep.Results = append(rep.Results, res)
			if path == PathEngine {
				engineRun = &res
			}
			if path == PathHTTP && sc.name == ScenarioHot && (cfg.wants(PathHTTPCeiling) || cfg.wants(PathTrivial)) {
				// The http-ceiling server and the trivial handler right after, then the
				// further rounds.
				if err := runRounds(ctx, cfg, out, rep, res); err != nil {
					return rep, err
				}
				roundsDone = true
			}
		}
	}
	if !roundsDone {
		for _, path := range []string{PathHTTPCeiling, PathTrivial} {
			if !cfg.wants(path) {
				continue
			}
			res, err := runHot(ctx, cfg, out, path)
			if err != nil {
				return rep, err
			}
			rep.Results = append(rep.Results, res)
		}
	}
	return rep, nil
}

// Round is the http path, the http-ceiling server and the trivial handler on the hot SKU,
// run one right after the other; a path not requested has a zero Result.
type Round struct{ HTTP, HTTPCeiling, Trivial Result }

// runHot measures the http-ceiling server or the trivial handler on the hot SKU.
func runHot(ctx context.Context, cfg Config, out *progress, path string) (Result, error) {
	var res Result
	var err error
	if path == PathHTTPCeiling {
		res, err = runHTTPCeiling(ctx, cfg, out, hotScenario())
	} else {
		res, err = runTrivial(ctx, cfg, out, hotScenario())
	}
	if err != nil {
		return res, fmt.Errorf("bench %s: %w", path, err)
	}
	return res, nil
}

// runRounds measures the requested ones of the http-ceiling server and the trivial
// handler right after first, the http path's hot run, then Config.Rounds-1 further
// rounds of the three.
func runRounds(ctx context.Context, cfg Config, out *progress, rep *Report, first Result) error {
	hot := hotScenario()
	for i := range cfg.Rounds {
		round := Round{HTTP: first}
		if i > 0 {
			h, err := runHTTP(ctx, cfg, out, hot)
			if err != nil {
				return fmt.Errorf("bench %s/%s: %w", PathHTTP, hot.name, err)
			}
			round.HTTP = h
		}
		for _, path := range []string{PathHTTPCeiling, PathTrivial} {
			if !cfg.wants(path) {
				continue
			}
			res, err := runHot(ctx, cfg, out, path)
			if err != nil {
				return err
			}
			if i == 0 {
				rep.Results = append(rep.Results, res)
			}
			if path == PathHTTPCeiling {
				round.HTTPCeiling = res
			} else {
				round.Trivial = res
			}
		}
		rep.Rounds = append(rep.Rounds, round)
	}
	return nil
}

func runPath(ctx context.Context, cfg Config, out *progress, path string, sc scenario, engineRun *Result) (Result, error) {
	switch path {
	case PathEngine:
		return runEngine(ctx, cfg, out, path, sc, engineConfig(path))
	case PathNaive:
		return runEngine(ctx, cfg, out, path, sc, engineConfig(path))
	case PathCeiling:
		return runCeiling(ctx, cfg, out, sc, engineRun)
	case PathHTTP:
		return runHTTP(ctx, cfg, out, sc)
	}
	limit.Assert(false, "unknown path %q", path)
	return Result{}, nil
}

func summarize(cfg Config) Summary {
	s := Summary{JournalMode: "WAL", Synchronous: "FULL", BatchMax: limit.BatchCommandsMax,
		BatchDelay: limit.BatchDelayDefault, QueueMax: limit.QueueCommandsMax, Clients: cfg.Clients,
		Duration: cfg.Duration, Warmup: cfg.warmup(), SKUs: cfg.SKUs, Stock: stockPerSKU}
	known, why := Paths, "PostgreSQL only, needs --db"
	if cfg.DB != "" {
		known, why = PGPaths, "SQLite only, not applicable with --db"
	}
	for _, p := range known {
		if cfg.wants(p) {
			s.Paths = append(s.Paths, p)
		}
	}
	for _, sc := range scenarios(cfg) {
		s.Scenarios = append(s.Scenarios, sc.name)
	}
	var other []string
	for _, p := range cfg.Paths {
		if !slices.Contains(known, p) {
			other = append(other, p)
		}
	}
	if cfg.DB != "" && len(cfg.Paths) == 0 {
		other = []string{PathCeiling, PathHTTP, PathHTTPCeiling, PathTrivial} // "all paths" includes them
	}
	if len(other) > 0 {
		s.Skipped = append(s.Skipped, strings.Join(other, ", ")+": "+why)
	}
	if cfg.DB == "" && cfg.wants(PathHTTP) && cfg.HTTP == nil {
		s.Skipped = append(s.Skipped, "http: no ordercore server to run against")
	}
	return s
}

// mkdir creates a fresh directory for one path's files under the scratch directory.
func mkdir(cfg Config, path string, sc scenario) (string, error) {
	dir, err := os.MkdirTemp(cfg.Dir, path+"-"+sc.name+"-")
	if err != nil {
		return "", fmt.Errorf("scratch directory: %w", err)
	}
	return dir, nil
}
