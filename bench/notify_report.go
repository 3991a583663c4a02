package bench

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// NotifyCheck is one thing that must hold after a notify path, whatever the machine: the
// read side and the server's counters agree with what the clients were answered.
type NotifyCheck struct {
	Path      string
	Name      string
	Got, Want int64
	Holds     bool
	Wanted    string // how Want is described, e.g. "first deliveries acknowledged"
}

// Checks lists what must hold after each notify path.
func (r *NotifyReport) Checks() []NotifyCheck {
	var out []NotifyCheck
	add := func(path, name string, got, want int64, wanted string) {
		out = append(out, NotifyCheck{Path: path, Name: name, Got: got, Want: want, Holds: got == want, Wanted: wanted})
	}
	for _, res := range r.Results {
		switch res.Path {
		case PathNotify, PathNotifyDup:
			add(res.Path, "orders paid on the read side", res.Paid, res.FreshAcked, "first deliveries acknowledged")
			add(res.Path, "acknowledged first deliveries whose order is not paid", res.AckedNotPaid, 0, "none")
			add(res.Path, "server's applied counter", res.Outcomes["applied"], res.FreshAcked, "first deliveries acknowledged")
			if res.Path == PathNotifyDup {
				add(res.Path, "server's duplicate_event counter", res.Outcomes["duplicate_event"], res.DupAcked, "duplicates acknowledged")
			}
		case PathNotifyForged:
			add(res.Path, "server's invalid_signature counter", res.Outcomes["invalid_signature"], res.ForgedRejected, "forgeries answered 401")
			add(res.Path, "orders paid on the read side", res.Paid, 0, "none")
			add(res.Path, "server's applied counter", res.Outcomes["applied"], 0, "none")
		}
	}
	return out
}

// Holds reports whether every check holds.
func (r *NotifyReport) Holds() bool {
	for _, c := range r.Checks() {
		if !c.Holds {
			return false
		}
	}
	return true
}

// Relation relates the notify figures to the place-order reference measured in the same
// run, and the duplicate and forged paths to the fresh one.
func (r *NotifyReport) Relation() string {
	var parts []string
	n, okN := r.Result(PathNotify)
	po := r.PlaceOrder
	if okN && po != nil && po.PerSecond > 0 {
		parts = append(parts, fmt.Sprintf("a verified, durably applied notification over HTTP runs at %s/s, %s the %s orders/s of `POST /v1/orders` (place-order http, hot SKU) measured in this run with the same %d clients (p99 %s vs. %s)",
			thousands(int64(n.PerSecond+0.5)), fmtRatio(n.PerSecond/po.PerSecond), thousands(int64(po.PerSecond+0.5)), r.Config.Clients,
			fmtDuration(n.P99), fmtDuration(po.P99)))
	} else if okN {
		parts = append(parts, fmt.Sprintf("a verified, durably applied notification over HTTP runs at %s/s (the place-order reference was not run)",
			thousands(int64(n.PerSecond+0.5))))
	}
	if d, ok := r.Result(PathNotifyDup); ok && okN && n.PerSecond > 0 {
		parts = append(parts, fmt.Sprintf("with every event delivered twice the server answers %s notifications/s (%s the fresh rate; %s of them first deliveries/s), and a duplicate is answered in p50 %s against %s for a first delivery in the same run",
			thousands(int64(d.PerSecond+0.5)), fmtRatio(d.PerSecond/n.PerSecond), thousands(int64(float64(d.Fresh.N)/d.Seconds+0.5)),
			fmtDuration(d.Dup.P50), fmtDuration(d.Fresh.P50)))
	}
	if f, ok := r.Result(PathNotifyForged); ok && okN && n.PerSecond > 0 {
		parts = append(parts, fmt.Sprintf("forgeries are rejected at %s/s (%s the fresh rate, p50 %s), with no commit",
			thousands(int64(f.PerSecond+0.5)), fmtRatio(f.PerSecond/n.PerSecond), fmtDuration(f.P50)))
	}
	if len(parts) == 0 {
		return ""
	}
	s := strings.Join(parts, "; ") + "."
	return strings.ToUpper(s[:1]) + s[1:]
}

// Limits explains, from the committer's counters, what bounds each notify path.
func (r *NotifyReport) Limits() []string {
	var out []string
	perCommand := func(res NotifyResult) (perBatch, each time.Duration) {
		perBatch = time.Duration(res.Busy * res.BatchMean / res.PerSecond * float64(time.Second))
		return perBatch, time.Duration(float64(perBatch) / res.BatchMean)
	}
	for _, res := range r.Results {
		if res.PerSecond == 0 {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s: ", res.Path)
		if res.BatchMean == 0 {
			fmt.Fprintf(&b, "nothing was committed in the window; verification, the HTTP stack and the load generator share %d cores.", r.Machine.GOMAXPROCS)
			out = append(out, b.String())
			continue
		}
		perBatch, each := perCommand(res)
		if res.Busy >= 0.8 {
			fmt.Fprintf(&b, "the committer was in a transaction %.0f%% of the window, so it is the limit; ", 100*res.Busy)
		} else {
			fmt.Fprintf(&b, "the committer was idle %.0f%% of the window, so the HTTP stack, verification and the load generator on %d cores are the limit; ",
				100*(1-res.Busy), r.Machine.GOMAXPROCS)
		}
		fmt.Fprintf(&b, "a transaction took %s for %.1f notifications on average (%s each)", fmtDuration(perBatch), res.BatchMean, fmtDuration(each))
		if n, ok := r.Result(PathNotify); ok && res.Path == PathNotifyDup && n.BatchMean > 0 && n.PerSecond > 0 {
			_, nEach := perCommand(n)
			if each < nEach {
				fmt.Fprintf(&b, ", against %s for notify: half of these are duplicates, answered from the inbox lookup with nothing written", fmtDuration(nEach))
			} else {
				fmt.Fprintf(&b, ", against %s for notify although half of these write nothing: the clients send two requests per applied notification, "+
					"so the HTTP stack takes a larger share of the %d cores, and the committer, which shares them, spends more of each transaction waiting for one",
					fmtDuration(nEach), r.Machine.GOMAXPROCS)
			}
		}
		out = append(out, b.String()+".")
	}
	return out
}

func (r *NotifyReport) settings() string {
	s := r.Config
	line := fmt.Sprintf("SQLite journal_mode=%s synchronous=%s; engine batch max %d, batch delay %s, queue %d; %d clients; %s per path after a %s warm-up; "+
		"orders prepared: %s for notify, %s for notify-dup, %s for notify-forged, one unit of one SKU each, each with one open payment attempt at channel sim; "+
		"notifications signed HMAC-SHA256 (tolerance %s); payment sync's first query after %s (no sync traffic in the window)",
		s.JournalMode, s.Synchronous, s.BatchMax, s.BatchDelay, s.QueueMax, s.Clients, s.Duration, s.Warmup,
		thousands(int64(s.Orders)), thousands(int64(s.DupOrders)), thousands(int64(s.ForgedOrders)), s.Tolerance, fmtHours(s.PaymentSync))
	if len(s.Skipped) > 0 {
		line += "; skipped: " + strings.Join(s.Skipped, "; ")
	}
	return line
}

func fmtHours(d time.Duration) string {
	if d >= time.Hour && d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

const notifyPathsDoc = "notify = signed `trade.succeeded` notifications to `POST /v1/channels/sim/notify`, each for a different open payment attempt: verified from the raw bytes, applied through the committer (the order becomes paid), acknowledged after the commit; " +
	"notify-dup = every notification sent twice by the same client, the second a duplicate event that is verified, found in the inbox and acknowledged; " +
	"notify-forged = notifications signed with a wrong secret, answered 401 before any state is read; " +
	"place-order = `POST /v1/orders` on one hot SKU against the same kind of server, the reference for the rates."

var notifyTableHeader = []string{"path", "notifications/s", "notifications", "p50", "p99", "p99.9", "batch p50", "batch max", "batch mean", "busy", "errors", "note"}

func (r NotifyResult) row() []string {
	res := Result{Path: r.Path, Orders: r.Notifications, PerSecond: r.PerSecond, P50: r.P50, P99: r.P99, P999: r.P999,
		BatchP50: r.BatchP50, BatchMax: r.BatchMax, BatchMean: r.BatchMean, Busy: r.Busy, Errors: r.Errors, Note: r.Note}
	return dropScenario(res.row())
}

// placeOrderRow is the reference's row in the notify table: its orders/s in the rate
// column, said so in the note.
func placeOrderRow(p Result) []string {
	p.Note = joinNotes("reference: orders/s of POST /v1/orders, hot SKU", p.Note)
	return dropScenario(p.row())
}

func dropScenario(row []string) []string { return slices.Delete(row, 1, 2) }

func (r *NotifyReport) rows() [][]string {
	var rows [][]string
	for _, res := range r.Results {
		rows = append(rows, res.row())
	}
	if r.PlaceOrder != nil {
		rows = append(rows, placeOrderRow(*r.PlaceOrder))
	}
	return rows
}

func (c NotifyCheck) verdict() string {
	if c.Holds {
		return "holds"
	}
	return "DOES NOT HOLD"
}

func outcomesText(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + thousands(m[k])
	}
	return strings.Join(parts, ", ")
}

// afterRun describes, per path, what the clients were answered over the whole run and
// what the server and the read side show.
func (r *NotifyReport) afterRun() []string {
	var out []string
	for _, res := range r.Results {
		s := fmt.Sprintf("%s: %s orders prepared; whole run (warm-up and drain included): %s first deliveries acknowledged",
			res.Path, thousands(int64(res.Orders)), thousands(res.FreshAcked))
		if res.Path == PathNotifyDup {
			s += fmt.Sprintf(", %s duplicates acknowledged", thousands(res.DupAcked))
		}
		if res.Path == PathNotifyForged {
			s = fmt.Sprintf("%s: %s orders prepared; whole run: %s forgeries answered 401", res.Path, thousands(int64(res.Orders)), thousands(res.ForgedRejected))
		}
		s += fmt.Sprintf("; server's counters: %s; read side: %s paid", orDash(outcomesText(res.Outcomes)), thousands(res.Paid))
		if res.PaidNotAcked > 0 {
			s += fmt.Sprintf(" (%s of them paid although their notification was not acknowledged: requests abandoned after the commit)", thousands(res.PaidNotAcked))
		}
		out = append(out, s+".")
	}
	return out
}

// WriteText prints the report for a terminal.
func (r *NotifyReport) WriteText(w io.Writer) {
	fmt.Fprintf(w, "ordercore bench notify, %s\n", r.At.Format(time.RFC3339))
	fmt.Fprintf(w, "machine:  %s\n", r.Machine)
	fmt.Fprintf(w, "settings: %s\n\n", r.settings())
	writeTextTable(w, notifyTableHeader, r.rows())
	if checks := r.Checks(); len(checks) > 0 {
		fmt.Fprintln(w, "\nwhat must hold after the run:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range checks {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t= %s (%s)\t%s\n", c.Path, c.Name, thousands(c.Got), thousands(c.Want), c.Wanted, c.verdict())
		}
		tw.Flush()
		for _, l := range r.afterRun() {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if rel := r.Relation(); rel != "" {
		fmt.Fprintf(w, "\nbeside place-order: %s\n", rel)
	}
	if limits := r.Limits(); len(limits) > 0 {
		fmt.Fprintln(w, "\nwhat limits it:")
		for _, l := range limits {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// Markdown is the notify section of BENCHMARKS.md for this report.
func (r *NotifyReport) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## notify, %d clients (`ordercore bench notify`), %s\n\n", r.Config.Clients, r.At.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- **Machine:** %s\n", r.Machine)
	fmt.Fprintf(&b, "- **Settings:** %s\n", r.settings())
	fmt.Fprintf(&b, "- **Paths:** %s\n\n", notifyPathsDoc)
	writeMarkdownTable(&b, notifyTableHeader, r.rows())
	if checks := r.Checks(); len(checks) > 0 {
		b.WriteString("\n**What must hold after the run** (whole run, warm-up and drain included; read side = `GET /v1/orders`, server's counters = `GET /v1/channels`):\n\n")
		b.WriteString("| path | figure | measured | expected | |\n| --- | --- | --- | --- | --- |\n")
		for _, c := range checks {
			fmt.Fprintf(&b, "| %s | %s | %s | %s (%s) | %s |\n", c.Path, c.Name, thousands(c.Got), thousands(c.Want), c.Wanted, c.verdict())
		}
		b.WriteString("\n" + strings.Join(r.afterRun(), " ") + "\n")
	}
	if rel := r.Relation(); rel != "" {
		b.WriteString("\n**Beside place-order:** " + rel + "\n")
	}
	if limits := r.Limits(); len(limits) > 0 {
		b.WriteString("\n**What limits it:** " + strings.Join(limits, " ") + "\n")
	}
	return b.String()
}

// notifyMarkers delimit the notify section of BENCHMARKS.md; a section name keeps runs
// with other settings in their own sections.
func notifyMarkers(section string) (begin, end string) {
	name := "notify"
	if section != "" {
		name += ":" + section
	}
	return "<!-- bench:" + name + ":begin -->", "<!-- bench:" + name + ":end -->"
}

// UpdateMarkdownFile writes the report's section named section (may be empty) into the
// file at path: between its markers if they are there, else appended; the file is created
// with a title if it does not exist. Everything outside the markers is kept as it is.
func (r *NotifyReport) UpdateMarkdownFile(path, section string) error {
	begin, end := notifyMarkers(section)
	return replaceSection(path, begin, end, r.Markdown())
}

// replaceSection writes markdown between the begin and end markers of the file at path,
// or appends it with its markers; the file is created with a title if it does not exist.
func replaceSection(path, begin, end, markdown string) error {
	body := begin + "\n" + markdown + end + "\n"
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = []byte("# Benchmarks\n\n")
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	}
	text := string(old)
	if i := strings.Index(text, begin); i >= 0 {
		if j := strings.Index(text[i:], end); j >= 0 {
			rest := strings.TrimPrefix(text[i+j+len(end):], "\n")
			return os.WriteFile(path, []byte(text[:i]+body+rest), 0o644)
		}
	}
	if text != "" && !strings.HasSuffix(text, "\n\n") {
		text = strings.TrimSuffix(text, "\n") + "\n\n"
	}
	return os.WriteFile(path, []byte(text+body), 0o644)
}
