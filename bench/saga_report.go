package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Targets of the saga bench (the issue's, reported, never asserted).
const (
	sagaTargetVsDirect   = 0.80                   // saga path >= 80% of the direct floor
	sagaTargetCPU        = 500 * time.Microsecond // coordinator CPU per saga
	sagaTargetInProcess  = 10_000                 // in-process sagas/s
	sagaTargetDrainPerS  = 1_000                  // backlog drained per second
	sagaDTMPerSecond     = 440                    // DTM with PostgreSQL, same 2-branch sagas, 2-core machine
	sagaDTMFloorPerSec   = 1_860                  // the floor DTM's figure was measured against
	sagaDTMDrainPerS     = 100
	sagaDTMCPUPerSagaStr = "about 4 ms"
	sagaDTMAddedStr      = "4.4 ms" // latency DTM adds to a single saga
)

var sagaTableHeader = []string{"path", "clients", "sagas", "sagas/s", "p50", "p99", "errors", "coordinator CPU/saga", "note"}

func (r *SagaReport) rows() [][]string {
	var out [][]string
	for _, x := range r.Results {
		cpu := ""
		if x.CPUPerSaga > 0 {
			cpu = fmt.Sprintf("%.3f ms", float64(x.CPUPerSaga)/float64(time.Millisecond))
		}
		out = append(out, []string{x.Path, fmt.Sprint(x.Clients), thousands(x.Sagas), thousands(int64(x.PerSecond)),
			ms(x.P50), ms(x.P99), fmt.Sprint(x.Errors), cpu, x.Note})
	}
	if r.Backlog > 0 {
		out = append(out, []string{SagaPathDrain, "", thousands(int64(r.Backlog)), thousands(int64(r.DrainRate)), "", "", "",
			"", fmt.Sprintf("participants down %.1f s while the backlog was submitted; drained in %.2f s once back", r.DownFor.Seconds(), r.DrainTime.Seconds())})
	}
	return out
}

var sagaCPUHeader = []string{"path", "sagas/s", "cores busy", "coordinator", "participants and clients", "PostgreSQL", "others", "cores idle"}

// cpuRows is the CPU split of the paths that have one, in ms per saga.
func (r *SagaReport) cpuRows() [][]string {
	var out [][]string
	for _, x := range r.Results {
		c := x.CPU
		if c == nil {
			continue
		}
		coord := ms3(c.Coordinator)
		if c.CoordinatorInBench {
			coord = "(in the bench process)"
		} else if x.Path == SagaPathDirect || x.Path == SagaPathDirect1 {
			coord = "-"
		}
		out = append(out, []string{x.Path, thousands(int64(x.PerSecond)), ms3(c.Busy), coord, ms3(c.Bench), ms3(c.Postgres), ms3(c.Others), ms3(c.Idle)})
	}
	return out
}

// noCoordinatorShare is the share of the direct calls' rate a coordinator that took no
// CPU at all would reach, the rest of the saga path's CPU per saga unchanged; 0 without
// both splits.
func noCoordinatorShare(d, s SagaResult) float64 {
	if d.CPU == nil || s.CPU == nil || s.CPU.CoordinatorInBench {
		return 0
	}
	// Each path's rate is the machine's cores over the CPU time (busy and idle) per saga.
	return float64(d.CPU.Busy+d.CPU.Idle) / float64(s.CPU.Busy+s.CPU.Idle-s.CPU.Coordinator)
}

// roundsLine lists the direct/saga pairs; "" with fewer than two.
func (r *SagaReport) roundsLine() string {
	if len(r.Rounds) < 2 {
		return ""
	}
	parts := make([]string, len(r.Rounds))
	for i, x := range r.Rounds {
		parts[i] = fmt.Sprintf("%s against %s sagas/s (%.0f%%, %.3f ms of coordinator CPU per saga", thousands(int64(x.Saga.PerSecond)),
			thousands(int64(x.Direct.PerSecond)), 100*x.Saga.PerSecond/x.Direct.PerSecond, float64(x.Saga.CPUPerSaga)/float64(time.Millisecond))
		if b := noCoordinatorShare(x.Direct, x.Saga); b > 0 {
			parts[i] += fmt.Sprintf(", %.0f%% with none", 100*b)
		}
		parts[i] += ")"
	}
	return fmt.Sprintf("direct/saga pairs, each saga run right after its direct run (the first pair is the table's; the targets take the medians): %s", strings.Join(parts, "; "))
}

func ms3(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

// CPUGap says where the saga path's CPU per saga went beyond the direct calls', and what
// the coordinator's own share of it costs the ratio; "" without both splits.
func (r *SagaReport) CPUGap() string {
	d, okD := r.Result(SagaPathDirect)
	s, okS := r.Result(SagaPathSaga)
	if !okD || !okS || d.CPU == nil || s.CPU == nil || s.CPU.CoordinatorInBench {
		return ""
	}
	dc, sc := d.CPU, s.CPU
	msf := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	without := noCoordinatorShare(d, s)
	return fmt.Sprintf("the cores spent %.3f ms per saga on the saga path against %.3f ms on the direct calls: "+
		"the coordinator %.3f ms, the participants and clients %+.3f ms (the client's submit included), PostgreSQL %+.3f ms, "+
		"others %+.3f ms, and %+.3f ms idle; with the rest of it unchanged, a coordinator that took no CPU at all would reach about %.0f%% of the direct calls",
		msf(sc.Busy), msf(dc.Busy), msf(sc.Coordinator), msf(sc.Bench-dc.Bench), msf(sc.Postgres-dc.Postgres), msf(sc.Others-dc.Others),
		msf(sc.Idle-dc.Idle), 100*without)
}

func ms(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// Targets compares the figures with the targets.
func (r *SagaReport) Targets() []string {
	var out []string
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	d, okD := r.Result(SagaPathDirect)
	s, okS := r.Result(SagaPathSaga)
	pairs := len(r.Rounds) > 1
	if okD && okS && d.PerSecond > 0 {
		ratio, of := s.PerSecond/d.PerSecond, ""
		if pairs {
			ratio = median(r.Rounds, func(x SagaRound) float64 { return x.Saga.PerSecond / x.Direct.PerSecond })
			of = fmt.Sprintf(" (median of %d pairs)", len(r.Rounds))
		}
		out = append(out, fmt.Sprintf("sagas through ordercore at %.0f%% of the direct calls%s (target >= %.0f%%; DTM: %d/s against a %d/s floor, %.0f%%): %s",
			100*ratio, of, 100*sagaTargetVsDirect, sagaDTMPerSecond, sagaDTMFloorPerSec, 100*float64(sagaDTMPerSecond)/sagaDTMFloorPerSec, verdict(ratio >= sagaTargetVsDirect)))
	}
	if okS && s.CPUPerSaga > 0 {
		cpu, of := s.CPUPerSaga, ""
		if pairs {
			cpu = time.Duration(median(r.Rounds, func(x SagaRound) float64 { return float64(x.Saga.CPUPerSaga) }))
			of = fmt.Sprintf(" (median of %d)", len(r.Rounds))
		}
		out = append(out, fmt.Sprintf("coordinator CPU %.3f ms per saga%s, its HTTP serving and storage included (target <= %.1f ms; DTM: %s): %s",
			float64(cpu)/float64(time.Millisecond), of, float64(sagaTargetCPU)/float64(time.Millisecond), sagaDTMCPUPerSagaStr, verdict(cpu <= sagaTargetCPU)))
	}
	if d1, ok1 := r.Result(SagaPathDirect1); ok1 {
		if s1, ok2 := r.Result(SagaPathSaga1); ok2 && d1.P50 > 0 && s1.P50 > 0 {
			out = append(out, fmt.Sprintf("one client: a saga took %s at p50 against %s for its two calls made directly: ordercore adds %s (DTM: about %s)",
				ms(s1.P50), ms(d1.P50), ms(s1.P50-d1.P50), sagaDTMAddedStr))
		}
	}
	if ip, ok := r.Result(SagaPathInProcess); ok {
		out = append(out, fmt.Sprintf("in-process sagas %s/s (target >= %s/s): %s", thousands(int64(ip.PerSecond)), thousands(sagaTargetInProcess), verdict(ip.PerSecond >= sagaTargetInProcess)))
	}
	if r.Backlog > 0 {
		out = append(out, fmt.Sprintf("backlog drained at %s sagas/s (target >= %s/s; DTM: about %d/s, one at a time): %s",
			thousands(int64(r.DrainRate)), thousands(sagaTargetDrainPerS), sagaDTMDrainPerS, verdict(r.DrainRate >= sagaTargetDrainPerS)))
	}
	return out
}

func (r *SagaReport) settings() string {
	return fmt.Sprintf("%s per path after a %s warm-up; participants in the bench process on PostgreSQL %s (each call one transaction: a barrier insert and one write, synchronous_commit on, %d connections); coordinator `ordercore serve` as a child process on its embedded SQLite (WAL, synchronous=FULL), with serve's GOGC=400; default saga policy (10 s step timeout)",
		r.Config.Duration, min(sagaWarmup, r.Config.Duration), r.PGServer, sagaParticipantConns) + r.pairsSetting()
}

func (r *SagaReport) pairsSetting() string {
	if len(r.Rounds) < 2 {
		return ""
	}
	return fmt.Sprintf("; direct and saga: %d pairs, each run back to back, judged on the medians", len(r.Rounds))
}

// WriteText prints the report.
func (r *SagaReport) WriteText(w io.Writer) {
	fmt.Fprintf(w, "ordercore bench saga\nmachine:  %s\nsettings: %s\n\n", r.Machine, r.settings())
	writeTextTable(w, sagaTableHeader, r.rows())
	if rows := r.cpuRows(); len(rows) > 0 {
		fmt.Fprintln(w, "\nCPU per saga, in each window:")
		writeTextTable(w, sagaCPUHeader, rows)
		if g := r.CPUGap(); g != "" {
			fmt.Fprintf(w, "  %s\n", g)
		}
	}
	if l := r.roundsLine(); l != "" {
		fmt.Fprintf(w, "\n%s\n", l)
	}
	if t := r.Targets(); len(t) > 0 {
		fmt.Fprintln(w, "\ntargets:")
		for _, l := range t {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// Markdown is the saga section of BENCHMARKS.md.
func (r *SagaReport) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Sagas (`ordercore bench saga`), %d clients\n\n", r.Config.Clients)
	fmt.Fprintf(&b, "- **Machine:** %s\n- **Settings:** %s\n", r.Machine, r.settings())
	b.WriteString("- **Paths:** `direct`: each client calls the two participants in turn (the floor); `saga`: the same two calls as a 2-branch saga submitted to ordercore, the client answered when it completed; `direct-1` and `saga-1`: the same with one client, what a saga adds to its calls when nothing else runs; `in-process`: sagas of two in-process steps, submitted to the engine in the same process; `drain`: sagas submitted while the participants refuse connections, timed from their return until the last completed.\n\n")
	writeMarkdownTable(&b, sagaTableHeader, r.rows())
	if rows := r.cpuRows(); len(rows) > 0 {
		b.WriteString("\n**CPU per saga** in each path's window, from /proc (participants and clients: the bench process; PostgreSQL: every process named postgres):\n\n")
		writeMarkdownTable(&b, sagaCPUHeader, rows)
		if g := r.CPUGap(); g != "" {
			b.WriteString("\nSo " + g + ".\n")
		}
	}
	if l := r.roundsLine(); l != "" {
		b.WriteString("\n" + strings.ToUpper(l[:1]) + l[1:] + ".\n")
	}
	if t := r.Targets(); len(t) > 0 {
		b.WriteString("\n**Targets:**\n\n")
		for _, l := range t {
			b.WriteString("- " + l + "\n")
		}
	}
	return b.String()
}

// UpdateMarkdownFile writes the saga section (named section, may be empty) into path.
func (r *SagaReport) UpdateMarkdownFile(path, section string) error {
	name := "saga"
	if section != "" {
		name += ":" + section
	}
	return replaceSection(path, "<!-- bench:"+name+":begin -->", "<!-- bench:"+name+":end -->", r.Markdown())
}
