package bench

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress reports a running benchmark: on a terminal a progress bar per path that
// redraws in place; anywhere else (a file, a pipe, CI logs) plain lines only, one when a
// path starts and one with its figures when it ends, so that logs stay readable.
type progress struct {
	w   io.Writer
	tty bool
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, tty: isTerminal(w)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

func (p *progress) linef(format string, args ...any) {
	fmt.Fprintf(p.w, format+"\n", args...)
}

// bar is one path's progress over its warm-up and window, by elapsed time.
type bar struct {
	p     *progress
	label string
	start time.Time
	total time.Duration
	pb    *progressbar.ProgressBar // nil unless on a terminal
}

func (p *progress) start(label string, total time.Duration) *bar {
	b := &bar{p: p, label: label, start: time.Now(), total: total}
	if !p.tty {
		p.linef("%s: running %s (%s warm-up not counted)", label, total.Round(time.Millisecond), min(warmupMax, total))
		return b
	}
	b.pb = progressbar.NewOptions64(total.Milliseconds(),
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(fmt.Sprintf("%-12s", label)),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(progressEvery/2),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)
	return b
}

// update redraws the bar with the orders placed so far.
func (b *bar) update(placed int64) {
	if b.pb == nil {
		return
	}
	b.pb.Describe(fmt.Sprintf("%-12s %10s orders", b.label, thousands(placed)))
	_ = b.pb.Set64(min(time.Since(b.start), b.total).Milliseconds())
}

// finish removes the bar; the caller prints the figures with done.
func (b *bar) finish() {
	if b.pb != nil {
		_ = b.pb.Finish()
		_ = b.pb.Clear()
	}
}

// abort leaves the bar where it stopped and ends its line.
func (b *bar) abort() {
	if b.pb != nil {
		_ = b.pb.Exit()
		fmt.Fprintln(b.p.w)
	}
}

// done prints a path's figures.
func (p *progress) done(r Result) {
	line := fmt.Sprintf("%s/%s: %s orders/s, p50 %s, p99 %s, p99.9 %s", r.Path, r.Scenario,
		thousands(int64(r.PerSecond+0.5)), fmtDuration(r.P50), fmtDuration(r.P99), fmtDuration(r.P999))
	if r.BatchMax > 0 {
		line += fmt.Sprintf(", batch p50 %d max %d mean %.1f", r.BatchP50, r.BatchMax, r.BatchMean)
	}
	if r.Errors > 0 {
		line += fmt.Sprintf(", %d errors", r.Errors)
	}
	p.linef("%s", line)
}
