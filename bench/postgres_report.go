package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// The targets of the PostgreSQL issue: in process, on the hot SKU, at TargetPGClients
// concurrent clients. They are reported, never asserted.
const (
	TargetPGEngineHotPerSecond = 20_000
	TargetPGEngineOverNaive    = 20.0 // engine orders/s over the naive path's
	TargetPGClients            = 64
)

// cpuSaturated is the machine CPU share above which a report calls the cores saturated.
const cpuSaturated = 0.9

// pgChecks compares a PostgreSQL report's figures with the targets; the ratios that have
// no target are listed for information.
func (r *Report) pgChecks() []Check {
	var out []Check
	at := ""
	if r.Config.Clients != TargetPGClients {
		at = fmt.Sprintf(" at %d clients", TargetPGClients)
	}
	ratio := func(a, b, sc string, target float64) {
		x, okA := r.Result(a, sc)
		y, okB := r.Result(b, sc)
		if !okA || !okB || y.PerSecond == 0 {
			return
		}
		v := x.PerSecond / y.PerSecond
		c := Check{Name: a + " / " + b + ", " + sc, Value: v, Measured: fmtRatio(v)}
		if target > 0 {
			c.HasTarget, c.Met, c.Target = true, v >= target, ">= "+fmtRatio(target)+at
		}
		out = append(out, c)
	}
	for _, sc := range r.Config.Scenarios {
		hot := sc == ScenarioHot
		if e, ok := r.Result(PathEngine, sc); ok && hot {
			out = append(out, Check{Name: "engine orders/s, " + sc, Value: e.PerSecond, Measured: thousands(int64(e.PerSecond + 0.5)),
				Target: ">= " + thousands(TargetPGEngineHotPerSecond) + at, HasTarget: true, Met: e.PerSecond >= TargetPGEngineHotPerSecond})
		}
		target := 0.0
		if hot {
			target = TargetPGEngineOverNaive
		}
		ratio(PathEngine, PathNaive, sc, target)
		ratio(PathEngine, PathNaivePool, sc, 0)
		ratio(PathEngine3, PathEngine, sc, 0)
	}
	return out
}

// pgLimits explains, from the figures, what bounds the engine on PostgreSQL and what
// keeps three engines from adding up: the committers' transaction times, what their
// sessions were doing (pg_stat_activity) and how busy the cores were.
func (r *Report) pgLimits() []string {
	var out []string
	for _, sc := range r.Config.Scenarios {
		var parts []string
		e, okE := r.Result(PathEngine, sc)
		n, okN := r.Result(PathNaive, sc)
		if okE && e.BatchMean > 0 && e.TxMean > 0 {
			parts = append(parts, r.pgEngineLimit(e, n, okN))
		}
		if okN && n.TxMean > 0 {
			s := fmt.Sprintf("naive: one order per transaction, one transaction at a time: its rate is one over the transaction time (%s)", fmtDuration(n.TxMean))
			if a := n.Activity; a != nil && a.Samples > 0 {
				s += fmt.Sprintf(", and its single session does not wait for the SKU row's lock (%.2f sessions waiting on average)", a.RowLock)
			}
			parts = append(parts, s)
		}
		if p, ok := r.Result(PathNaivePool, sc); ok && p.Activity != nil && p.Activity.Samples > 0 && okN && n.PerSecond > 0 {
			a := p.Activity
			s := fmt.Sprintf("naive-pool: %d one-order transactions at a time place %.2fx naive's orders/s; on average %.1f of its sessions waited for a row lock, %.1f for the event feed's lock, %.1f for the WAL and %.1f ran",
				p.Engines, p.PerSecond/n.PerSecond, a.RowLock, a.FeedLock, a.WAL, a.Running)
			parts = append(parts, s+lockVerdict(a, p.Engines))
		}
		if e3, ok := r.Result(PathEngine3, sc); ok && okE && e.PerSecond > 0 && e3.BatchMean > 0 {
			parts = append(parts, r.pgEngine3Limit(e, e3))
		}
		if s := r.pgCPULimit(sc); s != "" {
			parts = append(parts, s)
		}
		if len(parts) > 0 {
			out = append(out, sc+": "+strings.Join(parts, "; ")+".")
		}
	}
	return out
}

func (r *Report) pgEngineLimit(e, n Result, okN bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "engine: its committer was in a transaction %.0f%% of the window; a transaction took %s for %.1f orders on average", 100*e.Busy, fmtDuration(e.TxMean), e.BatchMean)
	if e.BatchMean <= 0.6*float64(r.Config.Clients) {
		b.WriteString(halfBatches(r.Config.Clients, r.Config.BatchDelay))
	}
	if okN && n.TxMean > 0 {
		perOrder := e.TxMean / time.Duration(max(1, int(e.BatchMean+0.5)))
		fmt.Fprintf(&b, ", %.1fx naive's one-order transaction (%s): %s of transaction time per order batched against %s alone",
			e.TxMean.Seconds()/n.TxMean.Seconds(), fmtDuration(n.TxMean), fmtDuration(perOrder), fmtDuration(n.TxMean))
	}
	if a := e.Activity; a != nil && a.Samples > 0 {
		fmt.Fprintf(&b, "; its session was running a statement %.0f%% of the window, writing or waiting for the WAL %.0f%%, and waiting inside the transaction for ordercore's next statement %.0f%%",
			100*a.Running, 100*a.WAL, 100*a.Client)
	}
	if c := e.CPU; e.Busy >= 0.8 && c != nil && c.PostgresSeen && c.Self+c.Postgres < cpuSaturated {
		fmt.Fprintf(&b, "; with ordercore and PostgreSQL using %.0f%% of the cores, one engine is bound by its transactions running one at a time: %.1f orders every %s is %s orders/s",
			100*(c.Self+c.Postgres), e.BatchMean, fmtDuration(e.TxMean), thousands(int64(e.BatchMean/e.TxMean.Seconds()+0.5)))
	}
	return b.String()
}

func (r *Report) pgEngine3Limit(e, e3 Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "engine-3: %.2fx the one engine's orders/s; batches of %.1f orders per engine against %.1f; a transaction took %s against %s, lock waits included; together the %d committed a batch every %s where one engine commits one every %s",
		e3.PerSecond/e.PerSecond, e3.BatchMean, e.BatchMean, fmtDuration(e3.TxMean), fmtDuration(e.TxMean),
		e3.Engines, fmtDuration(time.Duration(e3.BatchMean/e3.PerSecond*float64(time.Second))), fmtDuration(time.Duration(e.BatchMean/e.PerSecond*float64(time.Second))))
	a := e3.Activity
	if a == nil || a.Samples == 0 {
		return b.String()
	}
	fmt.Fprintf(&b, "; of its %d sessions, on average %.2f waited for a row lock, %.2f for the event feed's lock, %.2f for the WAL, %.2f were running and %.2f waiting for ordercore",
		e3.Engines, a.RowLock, a.FeedLock, a.WAL, a.Running, a.Client)
	return b.String() + lockVerdict(a, e3.Engines)
}

// lockVerdict says what the lock waits of n committers' sessions show: when on average
// at least half of the other n-1 wait for one lock, the committers take turns at it.
func lockVerdict(a *Activity, n int) string {
	turns := float64(n-1) / 2
	switch {
	case n < 2:
		return ""
	case a.RowLock >= turns:
		return ": every transaction locks the SKU rows it loads (SELECT ... FOR UPDATE) until it has committed, so on one SKU the committers take turns, and a further committer adds waiting, not throughput"
	case a.FeedLock >= turns:
		return ": every transaction takes the event feed's advisory lock (postgres/events.go) from its event insert until it has committed, WAL flush included, so the committers take turns there even on different SKUs"
	case a.RowLock+a.FeedLock >= 0.25*float64(n-1):
		return ": lock waits serialise part of the committers' transactions"
	}
	return ""
}

// pgCPULimit says how busy the cores were in the engine paths' windows.
func (r *Report) pgCPULimit(sc string) string {
	var seen []string
	busiest, others, own := 0.0, 0.0, 0.0
	for _, path := range []string{PathEngine, PathEngine3} {
		res, ok := r.Result(path, sc)
		if !ok || res.CPU == nil {
			continue
		}
		c := res.CPU
		s := fmt.Sprintf("%.0f%% during %s (ordercore %.0f%%", 100*c.Machine, path, 100*c.Self)
		if c.PostgresSeen {
			s += fmt.Sprintf(", PostgreSQL %.0f%%, other processes %.0f%%", 100*c.Postgres, 100*c.Others())
		}
		seen = append(seen, s+")")
		busiest = max(busiest, c.Machine)
		others = max(others, c.Others())
		if c.PostgresSeen {
			own = max(own, c.Self+c.Postgres)
		}
	}
	if len(seen) == 0 {
		return ""
	}
	s := fmt.Sprintf("the %d cores were busy %s", r.Machine.Cores, strings.Join(seen, " and "))
	switch {
	case own >= cpuSaturated:
		s += ": ordercore and PostgreSQL saturate the CPU, so on this machine further instances have no idle core to run on"
	case busiest >= cpuSaturated && others >= othersNoticeable:
		s += fmt.Sprintf(": the cores were full, but processes outside the benchmark took up to %.0f%% of them, so these figures are lower than the machine gives an unshared run", 100*others)
	case others >= othersNoticeable:
		s += fmt.Sprintf(": processes outside the benchmark took up to %.0f%% of the cores, so these figures are lower than the machine gives an unshared run", 100*others)
	case own > 0: // PostgreSQL's processes were visible
		s += fmt.Sprintf(": ordercore and PostgreSQL used at most %.0f%% of them, so CPU is not what bounds these paths", 100*own)
	}
	return s
}

func (r *Report) pgSettings() string {
	s, pg := r.Config, r.Postgres
	drop := "dropped after it"
	if pg.Kept {
		drop = "kept (--keep)"
	}
	line := fmt.Sprintf("PostgreSQL %s at %s: synchronous_commit=%s (the store's sessions), fsync=%s, shared_buffers=%s, max_connections=%s; "+
		"pools of at most %d connections per store (engine and naive: one store; naive-pool: %d committers on one store; engine-3: %d stores); "+
		"engine batch max %d, batch delay %s, queue %d; naive and naive-pool batch max 1; %d clients; %s per path after a %s warm-up; %s units per SKU; many-SKU scenario: %s SKUs; "+
		"a fresh schema per path (%s_<path>_<scenario>), its skus table ANALYZEd once the SKUs exist (as autovacuum soon does in a running system), %s",
		pg.Version, pg.Server, pg.SynchronousCommit, pg.Fsync, pg.SharedBuffers, pg.MaxConnections,
		pg.PoolConnsMax, naivePoolCommitters, engine3Instances,
		s.BatchMax, s.BatchDelay, s.QueueMax, s.Clients, s.Duration, s.Warmup, thousands(s.Stock), thousands(int64(s.SKUs)),
		pg.SchemaPrefix, drop)
	if len(s.Skipped) > 0 {
		line += "; skipped: " + strings.Join(s.Skipped, "; ")
	}
	return line
}

var pgTableHeader = []string{"path", "scenario", "engines", "orders/s", "orders", "p50", "p99", "p99.9", "batch p50", "batch max", "batch mean", "tx mean", "busy", "errors", "note"}

func (r Result) pgRow() []string {
	row := r.row() // path scenario orders/s orders p50 p99 p99.9 batch×3 busy errors note
	return append(append(append([]string{row[0], row[1], fmt.Sprint(r.Engines)}, row[2:10]...), fmtDuration(r.TxMean)), row[10:]...)
}

var activityHeader = []string{"path", "scenario", "machine CPU", "ordercore CPU", "PostgreSQL CPU", "other CPU", "in tx", "running", "row lock", "feed lock", "WAL", "waiting for ordercore", "samples"}

func (r Result) activityRow() []string {
	pct := func(v float64, ok bool) string {
		if !ok {
			return "-"
		}
		return fmt.Sprintf("%.0f%%", 100*v)
	}
	row := []string{r.Path, r.Scenario, "-", "-", "-", "-"}
	if c := r.CPU; c != nil {
		row = []string{r.Path, r.Scenario, pct(c.Machine, true), pct(c.Self, true), pct(c.Postgres, c.PostgresSeen), pct(c.Others(), c.PostgresSeen)}
	}
	a := r.Activity
	if a == nil || a.Samples == 0 {
		return append(row, "-", "-", "-", "-", "-", "-", "0")
	}
	f := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	return append(row, f(a.InTx()), f(a.Running), f(a.RowLock), f(a.FeedLock), f(a.WAL), f(a.Client), fmt.Sprint(a.Samples))
}

// holdsLine is the check of a path's stored rows against the orders it counted.
func (r Result) holdsLine() string {
	if r.Stored == nil {
		return fmt.Sprintf("%s/%s: rows not counted", r.Path, r.Scenario)
	}
	s := r.Stored
	verdict := "holds"
	if !s.holds(r.OrdersTotal) {
		verdict = "DOES NOT HOLD"
	}
	return fmt.Sprintf("%s/%s: %s orders answered as placed (whole run, warm-up and drain included); schema %s holds %s orders, %s order.placed events, %s units reserved: %s",
		r.Path, r.Scenario, thousands(r.OrdersTotal), r.Schema, thousands(s.Orders), thousands(s.Placed), thousands(s.Reserved), verdict)
}

const activityNote = "sessions: mean number of the path's PostgreSQL sessions in each state, sampled from pg_stat_activity every " +
	"50ms in the window (in tx = inside a transaction; row lock = waiting for a row another transaction locked; feed lock = waiting for the event feed's advisory lock; " +
	"WAL = writing or flushing the WAL at commit; waiting for ordercore = idle in transaction); CPU: share of all cores' time in the window, from /proc " +
	"(PostgreSQL = every postgres process on the machine; other = everything else on it, outside the benchmark)"

func (r *Report) writePGText(w io.Writer) {
	fmt.Fprintf(w, "ordercore bench place-order on PostgreSQL, %s\n", r.At.Format(time.RFC3339))
	fmt.Fprintf(w, "machine:  %s\n", r.Machine)
	fmt.Fprintf(w, "settings: %s\n\n", r.pgSettings())
	writeTextTable(w, pgTableHeader, r.resultRows(Result.pgRow))
	fmt.Fprintln(w, "\nwhere the time went:")
	writeTextTable(w, activityHeader, r.resultRows(Result.activityRow))
	fmt.Fprintf(w, "(%s)\n", activityNote)
	fmt.Fprintln(w, "\nwhat must hold after each path:")
	for _, res := range r.Results {
		fmt.Fprintf(w, "  %s\n", res.holdsLine())
	}
	if checks := r.Checks(); len(checks) > 0 {
		fmt.Fprintln(w, "\nagainst the targets:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range checks {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Name, c.Measured, orDash(c.Target), c.verdict())
		}
		tw.Flush()
	}
	if limits := r.Limits(); len(limits) > 0 {
		fmt.Fprintln(w, "\nwhat limits scaling:")
		for _, l := range limits {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

func (r *Report) pgMarkdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## place-order on PostgreSQL, %d clients (`ordercore bench place-order --db`), %s\n\n", r.Config.Clients, r.At.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- **Machine:** %s\n", r.Machine)
	fmt.Fprintf(&b, "- **Settings:** %s\n", r.pgSettings())
	fmt.Fprintf(&b, "- **Paths:** engine = `engine.Submit` in process with the committer's defaults (batch delay %s) on one store; "+
		"naive = the same engine with one transaction per order (each locks the SKU row with `SELECT ... FOR UPDATE`), one transaction at a time; "+
		"naive-pool = %d such committers on one store's pool, %d one-order transactions in flight; "+
		"engine-%d = %d engines, each with its own store (pool), on one schema and the same SKUs, the clients spread round-robin over them: what %d `serve` instances on one database do.\n\n",
		r.Config.BatchDelay, naivePoolCommitters, naivePoolCommitters, engine3Instances, engine3Instances, engine3Instances)
	writeMarkdownTable(&b, pgTableHeader, r.resultRows(Result.pgRow))
	b.WriteString("\n**Where the time went** (" + activityNote + "):\n\n")
	writeMarkdownTable(&b, activityHeader, r.resultRows(Result.activityRow))
	b.WriteString("\n**What must hold after each path:**\n\n")
	for _, res := range r.Results {
		b.WriteString("- " + res.holdsLine() + "\n")
	}
	if checks := r.Checks(); len(checks) > 0 {
		fmt.Fprintf(&b, "\n**Against the targets** (in process, hot SKU, %d clients):\n\n| figure | measured | target | |\n| --- | --- | --- | --- |\n", TargetPGClients)
		for _, c := range checks {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", c.Name, c.Measured, orDash(c.Target), c.verdict())
		}
	}
	if limits := r.Limits(); len(limits) > 0 {
		b.WriteString("\n**What limits scaling:** " + strings.Join(limits, " ") + "\n")
	}
	return b.String()
}
