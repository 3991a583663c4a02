package bench_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"ordercore"
	"ordercore/app"
	"ordercore/bench"
)

// TestRunNotifyChecksWhatItCounts runs the notify benchmark briefly against real
// in-process servers and checks only what must hold whatever the machine: each path sent
// notifications, none was answered other than expected, every acknowledged first delivery
// left its order paid on the read side and nothing else is paid, the server's counters
// agree with the answers, and every forgery was rejected without paying anything. Timing
// is never asserted.
func TestRunNotifyChecksWhatItCounts(t *testing.T) {
	t.Parallel()
	var progress bytes.Buffer
	rep, err := bench.RunNotify(context.Background(), bench.NotifyConfig{
		Dir: t.TempDir(), Duration: 300 * time.Millisecond, Clients: 8, Orders: 8_000, Progress: &progress,
		Serve: serveNotify, HTTP: servePlain,
	})
	if err != nil {
		t.Fatalf("RunNotify: %v\nprogress:\n%s", err, progress.String())
	}
	for _, path := range []string{bench.PathNotify, bench.PathNotifyDup, bench.PathNotifyForged} {
		res, ok := rep.Result(path)
		if !ok {
			t.Fatalf("no result for %s; results: %+v", path, rep.Results)
		}
		if res.Notifications <= 0 || res.PerSecond <= 0 {
			t.Errorf("%s: %d notifications (%.0f/s), want some", path, res.Notifications, res.PerSecond)
		}
		if res.Errors != 0 {
			t.Errorf("%s: %d errors (%s), want none", path, res.Errors, res.Note)
		}
		other := int64(0)
		for outcome, n := range res.Outcomes {
			if outcome != "applied" && outcome != "duplicate_event" && outcome != ordercore.EInvalidSignature {
				other += n
			}
		}
		if other != 0 {
			t.Errorf("%s: server counted other outcomes %v, want none", path, res.Outcomes)
		}
		var statuses int64
		for _, n := range res.Statuses {
			statuses += n
		}
		if statuses != int64(res.Orders) || res.Statuses["paid"]+res.Statuses["pending_payment"] != int64(res.Orders) {
			t.Errorf("%s: read side shows %v, want the %d prepared orders, each paid or pending", path, res.Statuses, res.Orders)
		}
		switch path {
		case bench.PathNotify, bench.PathNotifyDup:
			if res.FreshAcked <= 0 || res.Paid != res.FreshAcked || res.AckedNotPaid != 0 || res.PaidNotAcked != 0 {
				t.Errorf("%s: %d first deliveries acknowledged, %d orders paid (%d acknowledged but unpaid, %d paid but unacknowledged); want equal, none",
					path, res.FreshAcked, res.Paid, res.AckedNotPaid, res.PaidNotAcked)
			}
			if res.ForgedRejected != 0 {
				t.Errorf("%s: %d forgeries sent, want none", path, res.ForgedRejected)
			}
		case bench.PathNotifyForged:
			if res.ForgedRejected <= 0 || res.FreshAcked != 0 || res.Paid != 0 || res.Outcomes["applied"] != 0 {
				t.Errorf("%s: %d forgeries rejected, %d acknowledged, %d orders paid, %d applied; want some rejected and nothing else",
					path, res.ForgedRejected, res.FreshAcked, res.Paid, res.Outcomes["applied"])
			}
		}
	}
	d, _ := rep.Result(bench.PathNotifyDup)
	if d.DupAcked <= 0 || d.DupAcked > d.FreshAcked || d.Outcomes["duplicate_event"] != d.DupAcked {
		t.Errorf("notify-dup: %d duplicates acknowledged of %d first deliveries, server counted %d; want some, at most one per first, counted",
			d.DupAcked, d.FreshAcked, d.Outcomes["duplicate_event"])
	}
	for _, c := range rep.Checks() {
		if !c.Holds {
			t.Errorf("check %s / %s: %d, want %d (%s)", c.Path, c.Name, c.Got, c.Want, c.Wanted)
		}
	}
	if rep.PlaceOrder == nil || rep.PlaceOrder.Orders <= 0 || rep.PlaceOrder.Errors != 0 {
		t.Errorf("place-order reference = %+v, want orders and no errors", rep.PlaceOrder)
	}

	var text bytes.Buffer
	rep.WriteText(&text)
	md := rep.Markdown()
	for _, want := range []string{"synchronous=FULL", rep.Machine.GoVersion, bench.PathNotify, bench.PathNotifyDup, bench.PathNotifyForged,
		bench.PathPlaceOrder, "orders/s of `POST /v1/orders`"} {
		if !strings.Contains(text.String(), want) || !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s\n%s", want, text.String(), md)
		}
	}
	if strings.Contains(md, "DOES NOT HOLD") {
		t.Errorf("report says a check does not hold:\n%s", md)
	}
}

// serveNotify starts a real ordercore server with the benchmark's channel, as the CLI does.
func serveNotify(ctx context.Context, sc bench.NotifyServerConfig) (bench.NotifyServer, error) {
	a, err := app.Open(ctx, app.Config{Addr: "127.0.0.1:0", DataDir: sc.Dir,
		Channels: []ordercore.Channel{sc.Channel}, PaymentSync: sc.PaymentSync})
	if err != nil {
		return bench.NotifyServer{}, err
	}
	stop := startApp(a)
	return bench.NotifyServer{BaseURL: "http://" + a.Addr(), Engine: a.Engine, Stop: stop}, nil
}

// servePlain starts a real ordercore server without channels, for the place-order path.
func servePlain(ctx context.Context, dir string) (bench.HTTPServer, error) {
	a, err := app.Open(ctx, app.Config{Addr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		return bench.HTTPServer{}, err
	}
	return bench.HTTPServer{Base: "http://" + a.Addr(), Stop: startApp(a), Stats: a.Engine.Stats}, nil
}

func startApp(a *app.App) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}
