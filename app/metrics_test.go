package app_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"ordercore/app"
)

// TestMetricsCountWhatTheAPIDid: GET /metrics on a running server, over real HTTP, says
// what its clients saw: requests by route and status, the committer's transactions and
// batch sizes adding up to its commands, sagas by status, and the instance's role.
func TestMetricsCountWhatTheAPIDid(t *testing.T) {
	t.Parallel()
	r := runApp(t, app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Version: "test-1"})
	base := "http://" + r.a.Addr()
	call := func(method, path, body string, want int) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
	}
	call("POST", "/v1/skus", `{"id":"mug","name":"Mug","price":{"amount":900,"currency":"EUR"},"stock":3}`, 201)
	for range 3 {
		call("POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"mug","quantity":1}]}`, 201)
	}
	call("POST", "/v1/orders", `{"user_id":"u1","lines":[{"sku":"mug","quantity":1}]}`, 409) // sold out
	call("POST", "/v1/orders", `{"user_id":`, 400)                                           // never reaches the committer
	call("GET", "/no/such/thing", "", 404)
	call("POST", "/metrics", "", 405)
	call("POST", "/v1/sagas?wait_seconds=10",
		`{"kind":"saga","steps":[{"name":"note","action":{"local":"ordercore.notify","payload":{"template":"hello"}}}]}`, 200)

	families := scrape(t, base)
	counter := func(name string, labels map[string]string) float64 {
		t.Helper()
		for _, m := range families[name].GetMetric() {
			if hasLabels(m, labels) {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				return m.Gauge.GetValue()
			}
		}
		return 0
	}
	for _, tc := range []struct {
		route, code string
		want        float64
	}{
		{"POST /v1/skus", "201", 1},
		{"POST /v1/orders", "201", 3},
		{"POST /v1/orders", "409", 1},
		{"POST /v1/orders", "400", 1},
		{"other", "404", 1},
		{"other", "405", 1},
		{"POST /v1/sagas", "200", 1},
	} {
		if got := counter("ordercore_http_requests_total", map[string]string{"route": tc.route, "code": tc.code}); got != tc.want {
			t.Errorf("ordercore_http_requests_total{route=%q,code=%q} = %v, want %v", tc.route, tc.code, got, tc.want)
		}
	}
	var timed uint64
	for _, m := range families["ordercore_http_request_duration_seconds"].GetMetric() {
		if hasLabels(m, map[string]string{"route": "POST /v1/orders"}) {
			timed = m.Histogram.GetSampleCount()
		}
	}
	if timed != 5 {
		t.Errorf("POST /v1/orders requests timed: %d, want 5", timed)
	}
	// The SKU, four orders (the sold-out one is executed and refused) and the saga's
	// records at least; the batch histogram must add up to the counters.
	commands := counter("ordercore_committer_commands_total", nil)
	if commands < 5 {
		t.Errorf("committer commands: %v, want at least 5", commands)
	}
	batches := families["ordercore_committer_batch_commands"].GetMetric()
	if len(batches) != 1 {
		t.Fatalf("ordercore_committer_batch_commands: %d series", len(batches))
	}
	h := batches[0].Histogram
	if float64(h.GetSampleCount()) != counter("ordercore_committer_transactions_total", nil) || h.GetSampleSum() != commands {
		t.Errorf("batch histogram: %d transactions of %v commands; counters say %v and %v",
			h.GetSampleCount(), h.GetSampleSum(), counter("ordercore_committer_transactions_total", nil), commands)
	}
	if got := counter("ordercore_sagas", map[string]string{"status": "completed"}); got != 1 {
		t.Errorf("ordercore_sagas{status=completed} = %v, want 1", got)
	}
	// A status or kind with none reads 0, not missing, so an alert sees it go back to 0.
	for name, label := range map[string][2]string{"ordercore_sagas": {"status", "dead_letter"},
		"ordercore_review_items_open": {"kind", "orphan_notification"}} {
		found := false
		for _, m := range families[name].GetMetric() {
			found = found || hasLabels(m, map[string]string{label[0]: label[1]}) && m.GetGauge().GetValue() == 0
		}
		if !found {
			t.Errorf("%s{%s=%q} is not served as 0", name, label[0], label[1])
		}
	}
	if got := counter("ordercore_instance_info", map[string]string{"role": "single", "version": "test-1"}); got != 1 {
		t.Errorf("ordercore_instance_info{role=single,version=test-1} = %v, want 1", got)
	}
	if got := counter("ordercore_committer_queue_capacity", nil); got <= 0 {
		t.Errorf("ordercore_committer_queue_capacity = %v", got)
	}
	if _, ok := families["ordercore_orders_expiry_overdue_seconds"]; !ok {
		t.Error("no ordercore_orders_expiry_overdue_seconds")
	}
	if _, ok := families["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	if testing.Verbose() {
		fmt.Printf("%s", body)
	}
	return families
}
