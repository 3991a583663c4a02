package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The targets of the place-order issue, on a 2-core machine with synchronous=FULL. They
// apply to the hot SKU; the other scenarios' ratios are printed for information. They are
// reported, never asserted.
const (
	TargetEngineHotPerSecond = 50_000
	TargetEngineOverNaive    = 10.0 // engine orders/s over the naive path's
	TargetEngineOverCeiling  = 0.5  // engine orders/s over the hand-written loop's
	TargetHTTPOverTrivial    = 0.5  // http orders/s over the trivial handler's requests/s
	TargetHTTPP99            = 10 * time.Millisecond
	TargetHTTPConns          = 64 // the connection count the p99 target is stated at
)

// median is the median of f over xs (the mean of the middle two for an even count).
func median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	switch n := len(v); {
	case n == 0:
		return 0
	case n%2 == 1:
		return v[n/2]
	default:
		return (v[n/2-1] + v[n/2]) / 2
	}
}

// roundsLine lists the rounds of the http path, the http-ceiling server and the trivial
// handler; "" with fewer than two.
func (r *Report) roundsLine() string {
	if len(r.Rounds) < 2 {
		return ""
	}
	names := []string{PathHTTP}
	ceiling, trivial := r.Rounds[0].HTTPCeiling.PerSecond > 0, r.Rounds[0].Trivial.PerSecond > 0
	if ceiling {
		names = append(names, PathHTTPCeiling)
	}
	if trivial {
		names = append(names, PathTrivial)
	}
	parts := make([]string, len(r.Rounds))
	for i, x := range r.Rounds {
		rates := []string{thousands(int64(x.HTTP.PerSecond))}
		var ratios []string
		if ceiling {
			rates = append(rates, thousands(int64(x.HTTPCeiling.PerSecond)))
		}
		if trivial {
			rates = append(rates, thousands(int64(x.Trivial.PerSecond)))
			ratios = append(ratios, fmtRatio(x.HTTP.PerSecond/x.Trivial.PerSecond)+" of trivial")
			if ceiling {
				ratios = append(ratios, "http-ceiling "+fmtRatio(x.HTTPCeiling.PerSecond/x.Trivial.PerSecond))
			}
		}
		ratios = append(ratios, "p99 "+fmtDuration(x.HTTP.P99))
		parts[i] = fmt.Sprintf("%s (%s)", strings.Join(rates, " / "), strings.Join(ratios, ", "))
	}
	return fmt.Sprintf("rounds on the hot SKU, each run right after the other (%s per second; the first round is the table's, the targets take the medians): %s.",
		strings.Join(names, " / "), strings.Join(parts, "; "))
}

// roundRatio is a over b in a round, and whether both ran.
type roundRatio func(Round) (a, b float64)

// medianRatio is the median of ratio over the rounds where both sides ran, and how many.
func (r *Report) medianRatio(ratio roundRatio) (float64, int) {
	var v []float64
	for _, x := range r.Rounds {
		if a, b := ratio(x); a > 0 && b > 0 {
			v = append(v, a/b)
		}
	}
	return median(v, func(f float64) float64 { return f }), len(v)
}

// Check is one figure set against its target.
type Check struct {
	Name      string // e.g. "engine / naive, hot"
	Value     float64
	Measured  string
	Target    string // empty when the figure has no target (information only)
	HasTarget bool
	Met       bool
}

// Checks compares the report's figures with the targets. A figure is only listed when
// both of its sides were measured.
func (r *Report) Checks() []Check {
	if r.Postgres != nil {
		return r.pgChecks()
	}
	var out []Check
	// hotOnly paths run on the hot SKU alone: their result stands for every scenario.
	hotOnly := func(path string) bool { return path == PathTrivial || path == PathHTTPCeiling }
	ratio := func(name, a, b, sc string, target float64, rounds roundRatio) {
		if hotOnly(a) && sc != ScenarioHot {
			return
		}
		x, okA := r.Result(a, sc)
		y, okB := r.Result(b, sc)
		if hotOnly(b) {
			y, okB = r.Result(b, ScenarioHot)
		}
		if !okA || !okB || y.PerSecond == 0 {
			return
		}
		v := x.PerSecond / y.PerSecond
		c := Check{Name: name + ", " + sc, Value: v, Measured: fmtRatio(v)}
		if rounds != nil && sc == ScenarioHot {
			if m, n := r.medianRatio(rounds); n > 1 {
				v = m
				c.Value, c.Measured = v, fmt.Sprintf("%s (median of %d rounds)", fmtRatio(v), n)
			}
		}
		if sc == ScenarioHot && target > 0 {
			c.HasTarget, c.Met, c.Target = true, v >= target, ">= "+fmtRatio(target)
		}
		out = append(out, c)
	}
	for _, sc := range r.Config.Scenarios {
		if e, ok := r.Result(PathEngine, sc); ok && sc == ScenarioHot {
			out = append(out, Check{Name: "engine orders/s, " + sc, Value: e.PerSecond, Measured: thousands(int64(e.PerSecond + 0.5)),
				Target: ">= " + thousands(TargetEngineHotPerSecond), HasTarget: true, Met: e.PerSecond >= TargetEngineHotPerSecond})
		}
		ratio("engine / naive", PathEngine, PathNaive, sc, TargetEngineOverNaive, nil)
		ratio("engine / ceiling", PathEngine, PathCeiling, sc, TargetEngineOverCeiling, nil)
		ratio("http / trivial", PathHTTP, PathTrivial, sc, TargetHTTPOverTrivial,
			func(x Round) (float64, float64) { return x.HTTP.PerSecond, x.Trivial.PerSecond })
		ratio("http-ceiling / trivial", PathHTTPCeiling, PathTrivial, sc, 0,
			func(x Round) (float64, float64) { return x.HTTPCeiling.PerSecond, x.Trivial.PerSecond })
		if sc == ScenarioHot { // the http-ceiling server runs on the hot SKU only
			ratio("http / http-ceiling", PathHTTP, PathHTTPCeiling, sc, 0,
				func(x Round) (float64, float64) { return x.HTTP.PerSecond, x.HTTPCeiling.PerSecond })
		}
		if h, ok := r.Result(PathHTTP, sc); ok {
			c := Check{Name: fmt.Sprintf("http p99 at %d connections, %s", r.Config.Clients, sc), Value: h.P99.Seconds(), Measured: fmtDuration(h.P99)}
			if sc == ScenarioHot && len(r.Rounds) > 1 {
				p99 := time.Duration(median(r.Rounds, func(x Round) float64 { return float64(x.HTTP.P99) }))
				h.P99, c.Value, c.Measured = p99, p99.Seconds(), fmt.Sprintf("%s (median of %d)", fmtDuration(p99), len(r.Rounds))
			}
			if sc == ScenarioHot {
				c.HasTarget, c.Met, c.Target = true, h.P99 <= TargetHTTPP99, "<= "+fmtDuration(TargetHTTPP99)
				if r.Config.Clients != TargetHTTPConns {
					c.Target += fmt.Sprintf(" at %d connections", TargetHTTPConns)
				}
			}
			out = append(out, c)
		}
	}
	return out
}

// Limits explains, from the figures, what bounds the engine on each scenario: how busy
// its committer was, how long a transaction took, and how much of that the same writes
// cost without the engine (the ceiling) and a single durable commit costs (naive).
func (r *Report) Limits() []string {
	if r.Postgres != nil {
		return r.pgLimits()
	}
	var out []string
	for _, sc := range r.Config.Scenarios {
		e, ok := r.Result(PathEngine, sc)
		if !ok || e.PerSecond == 0 || e.BatchMean == 0 {
			continue
		}
		var b strings.Builder
		perBatch := time.Duration(e.Busy * e.BatchMean / e.PerSecond * float64(time.Second))
		fmt.Fprintf(&b, "%s: ", sc)
		if e.Busy < 0.8 {
			fmt.Fprintf(&b, "the committer was idle %.0f%% of the window, so it is not the limit: the %d closed-loop clients (each waits for its answer before the next order) and the Go scheduler on %d cores are; ",
				100*(1-e.Busy), r.Config.Clients, r.Machine.GOMAXPROCS)
		} else {
			fmt.Fprintf(&b, "the committer was busy %.0f%% of the window, so it is the limit; ", 100*e.Busy)
		}
		fmt.Fprintf(&b, "a transaction took %s for %.1f orders on average", fmtDuration(perBatch), e.BatchMean)
		switch {
		case e.BatchMean >= 0.95*float64(r.Config.BatchMax):
			fmt.Fprintf(&b, " (full batches: the committer's maximum of %d)", r.Config.BatchMax)
		case e.BatchMean <= 0.6*float64(r.Config.Clients):
			b.WriteString(halfBatches(r.Config.Clients, r.Config.BatchDelay))
		default:
			fmt.Fprintf(&b, " (bounded by the %d clients, each waiting for its answer)", r.Config.Clients)
		}
		if c, ok := r.Result(PathCeiling, sc); ok && c.PerSecond > 0 && perBatch > 0 {
			ceil := time.Duration(c.BatchMean / c.PerSecond * float64(time.Second))
			fmt.Fprintf(&b, "; the hand-written loop writes the same %d orders in %s, so SQLite's writes and the commit take %.0f%% of the engine's transaction and the engine's own work (loading the SKUs, running the commands, building the changeset and its statements) the other %.0f%%",
				c.BatchMax, fmtDuration(ceil), 100*min(1, ceil.Seconds()/perBatch.Seconds()), 100*max(0, 1-ceil.Seconds()/perBatch.Seconds()))
		}
		if n, ok := r.Result(PathNaive, sc); ok && n.PerSecond > 0 {
			fmt.Fprintf(&b, "; one durable single-order commit takes %s (naive)", fmtDuration(time.Duration(float64(time.Second)/n.PerSecond)))
		}
		out = append(out, b.String()+".")
	}
	for _, sc := range r.Config.Scenarios {
		if l := r.httpLimits(PathHTTP, sc); l != "" {
			out = append(out, l)
		}
	}
	if l := r.httpLimits(PathHTTPCeiling, ScenarioHot); l != "" {
		out = append(out, l)
	}
	if l := r.roundsLine(); l != "" {
		out = append(out, l)
	}
	return out
}

// httpLimits explains an HTTP path's rate against the trivial handler's from the cores'
// time per order and the server's committer; "" if either did not run.
func (r *Report) httpLimits(path, sc string) string {
	h, okH := r.Result(path, sc)
	t, okT := r.Result(PathTrivial, ScenarioHot)
	if !okH || !okT || t.PerSecond == 0 {
		return ""
	}
	server := "the engine"
	if path == PathHTTPCeiling {
		server = "the hand-written writer"
	}
	line := fmt.Sprintf("%s/%s: %.0f%% of the trivial handler's rate; the load generator, the HTTP stack and %s share %d cores",
		path, sc, 100*h.PerSecond/t.PerSecond, server, r.Machine.GOMAXPROCS)
	if h.CPU != nil {
		line += fmt.Sprintf(", %.0f%% busy in the window", 100*h.CPU.Machine)
		if t.CPU != nil {
			line += fmt.Sprintf(" (%.0f%% in the trivial handler's)", 100*t.CPU.Machine)
			// The machine's CPU time per order: its busy share of every core over the rate.
			perOrder := func(x Result) time.Duration {
				return time.Duration(x.CPU.Machine * float64(r.Machine.Cores) / x.PerSecond * float64(time.Second))
			}
			if h.PerSecond > 0 && r.Machine.Cores > 0 {
				line += fmt.Sprintf("; the cores spent %s per order (client, HTTP and %s) against %s per request of the trivial handler: at the trivial run's busy share, half its rate allows %s",
					fmtDuration(perOrder(h)), server, fmtDuration(perOrder(t)), fmtDuration(2*perOrder(t)))
			}
		}
	}
	if h.BatchMean > 0 {
		line += fmt.Sprintf("; the server's committer was busy %.0f%% of the window, with %.1f orders per transaction on average", 100*h.Busy, h.BatchMean)
	}
	if mean := closedLoopMean(r.Config.Clients, h.PerSecond); h.Held > 0 && mean > h.Held {
		line += fmt.Sprintf("; each of the %d connections waits for its answer before it sends the next order, so the rate is %d over the mean time an order takes (%s): %s held an order %s of it on average (queued behind the transaction in progress, in the batch filling, in its own transaction and its fsync), HTTP and the load generator the other %s",
			r.Config.Clients, r.Config.Clients, fmtDuration(mean), server, fmtDuration(h.Held), fmtDuration(mean-h.Held))
	}
	return line + "."
}

func (r *Report) settings() string {
	s := r.Config
	line := fmt.Sprintf("SQLite journal_mode=%s synchronous=%s; engine batch max %d, batch delay %s, queue %d; %d clients; %s per path after a %s warm-up; %s units per SKU; many-SKU scenario: %s SKUs",
		s.JournalMode, s.Synchronous, s.BatchMax, s.BatchDelay, s.QueueMax, s.Clients, s.Duration, s.Warmup, thousands(s.Stock), thousands(int64(s.SKUs)))
	if n := len(r.Rounds); n > 1 {
		line += fmt.Sprintf("; http, then http-ceiling and trivial, on the hot SKU: %d rounds, each run back to back, judged on the medians", n)
	}
	if len(s.Skipped) > 0 {
		line += "; skipped: " + strings.Join(s.Skipped, "; ")
	}
	return line
}

var tableHeader = []string{"path", "scenario", "orders/s", "orders", "p50", "p99", "p99.9", "batch p50", "batch max", "batch mean", "busy", "errors", "note"}

func (r Result) row() []string {
	batch := func(n int) string {
		if n == 0 {
			return "-"
		}
		return fmt.Sprint(n)
	}
	mean, busy := "-", "-"
	if r.BatchMean > 0 {
		mean = fmt.Sprintf("%.1f", r.BatchMean)
	}
	if r.Busy > 0 {
		busy = fmt.Sprintf("%.0f%%", 100*r.Busy)
	}
	return []string{r.Path, r.Scenario, thousands(int64(r.PerSecond + 0.5)), thousands(r.Orders),
		fmtDuration(r.P50), fmtDuration(r.P99), fmtDuration(r.P999), batch(r.BatchP50), batch(r.BatchMax),
		mean, busy, thousands(r.Errors), r.Note}
}

// WriteText prints the report for a terminal: machine, settings, an aligned table, the
// checks against the targets and what limits the engine.
func (r *Report) WriteText(w io.Writer) {
	if r.Postgres != nil {
		r.writePGText(w)
		return
	}
	fmt.Fprintf(w, "ordercore bench place-order, %s\n", r.At.Format(time.RFC3339))
	fmt.Fprintf(w, "machine:  %s\n", r.Machine)
	fmt.Fprintf(w, "settings: %s\n\n", r.settings())
	writeTextTable(w, tableHeader, r.resultRows(Result.row))
	if checks := r.Checks(); len(checks) > 0 {
		fmt.Fprintln(w, "\nagainst the targets:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range checks {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Name, c.Measured, orDash(c.Target), c.verdict())
		}
		tw.Flush()
	}
	if limits := r.Limits(); len(limits) > 0 {
		fmt.Fprintln(w, "\nwhat limits it:")
		for _, l := range limits {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// writeTextTable prints a table aligned in columns for a terminal, its header in capitals.
func writeTextTable(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(header, "\t")))
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
}

// writeMarkdownTable writes a markdown table; a | inside a cell is escaped.
func writeMarkdownTable(b *strings.Builder, header []string, rows [][]string) {
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(header)) + "\n")
	for _, row := range rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
}

// resultRows is row applied to each result.
func (r *Report) resultRows(row func(Result) []string) [][]string {
	out := make([][]string, len(r.Results))
	for i, res := range r.Results {
		out[i] = row(res)
	}
	return out
}

func (c Check) verdict() string {
	switch {
	case !c.HasTarget:
		return "(information)"
	case c.Met:
		return "met"
	}
	return "MISSED"
}

// Markdown is the section of BENCHMARKS.md for this report: machine, settings, the table,
// the checks against the targets and what limits the engine.
func (r *Report) Markdown() string {
	if r.Postgres != nil {
		return r.pgMarkdown()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## place-order, %d clients (`ordercore bench place-order`), %s\n\n", r.Config.Clients, r.At.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- **Machine:** %s\n", r.Machine)
	fmt.Fprintf(&b, "- **Settings:** %s\n", r.settings())
	b.WriteString("- **Paths:** engine = `engine.Submit` in process with the default committer; naive = the same engine with one transaction per order; " +
		"ceiling = a hand-written loop writing the same rows in batches of the engine's mean size straight to SQLite; " +
		"http = `POST /v1/orders` to the ordercore server from a load generator on the same machine; " +
		"http-ceiling = the same client against a server that decodes the JSON as trivial does, writes the same rows with the hand-written loop in group commits (the engine's batching rule) and answers 201 once they are durable: the least any server writing these rows durably spends; " +
		"trivial = the same client against a handler that only decodes the JSON.\n\n")
	writeMarkdownTable(&b, tableHeader, r.resultRows(Result.row))
	if checks := r.Checks(); len(checks) > 0 {
		b.WriteString("\n**Against the targets** (the targets apply to the hot SKU):\n\n| figure | measured | target | |\n| --- | --- | --- | --- |\n")
		for _, c := range checks {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", c.Name, c.Measured, orDash(c.Target), c.verdict())
		}
	}
	if limits := r.Limits(); len(limits) > 0 {
		b.WriteString("\n**What limits it:** " + strings.Join(limits, " ") + "\n")
	}
	return b.String()
}

// Markers delimit a report's section in BENCHMARKS.md, so a new run replaces it. Runs
// with different section names (e.g. one at 64 clients, one at flash-sale concurrency)
// keep separate sections; a PostgreSQL run's sections are named postgres[:section], so
// it never replaces a SQLite one.
func markers(section string) (begin, end string) {
	name := "place-order"
	if section != "" {
		name += ":" + section
	}
	return "<!-- bench:" + name + ":begin -->", "<!-- bench:" + name + ":end -->"
}

// UpdateMarkdownFile writes the report's Markdown section named section (may be empty)
// into the file at path: between its markers if they are there, else appended; the file
// is created with a title if it does not exist.
func (r *Report) UpdateMarkdownFile(path, section string) error {
	if r.Postgres != nil {
		section = strings.TrimSuffix("postgres:"+section, ":")
	}
	begin, end := markers(section)
	return replaceSection(path, begin, end, r.Markdown())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// thousands formats n with comma separators: 52,311.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtDuration prints a latency with three significant digits in a readable unit.
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", d.Seconds()*1e3)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", d.Seconds()*1e3)
	case d < time.Second:
		return fmt.Sprintf("%.0fms", d.Seconds()*1e3)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func fmtRatio(v float64) string {
	if v >= 10 {
		return fmt.Sprintf("%.0fx", v)
	}
	return fmt.Sprintf("%.2fx", v)
}

// halfBatches says why transactions held about half the closed-loop clients.
func halfBatches(clients int, delay time.Duration) string {
	if delay > 0 {
		return fmt.Sprintf(" (about half the %d clients: the closed-loop clients split into two groups that alternate, and a batch delay of %s did not join them)", clients, delay)
	}
	return fmt.Sprintf(" (about half the %d clients: with no batch delay a transaction takes only the orders that queued while the previous one committed, so the closed-loop clients split into two groups that alternate)", clients)
}

// closedLoopMean is the mean time an order takes when clients each wait for their answer
// before sending the next, at rate orders per second (Little's law); 0 when unknown.
func closedLoopMean(clients int, rate float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(clients) / rate * float64(time.Second))
}
