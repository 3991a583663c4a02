package telemetry_test

import (
	"context"
	"errors"
	"math"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"ordercore/telemetry"
)

func gather(t *testing.T, m *telemetry.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

func byLabel(f *dto.MetricFamily, name string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				out[l.GetValue()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// The batch size histogram is cumulative over powers of two, its count the transactions
// and its sum the commands; the expiry gauge is how far the nearest deadline is past.
func TestCommitterAndExpiry(t *testing.T) {
	sizes := make([]int64, 1001)
	sizes[1], sizes[3], sizes[64], sizes[1000] = 5, 2, 10, 1
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	m := telemetry.New(telemetry.Sources{
		Committer:  func() telemetry.Committer { return telemetry.Committer{BatchSizes: sizes} },
		NextExpiry: func(context.Context) (time.Time, bool, error) { return now.Add(-42 * time.Second), true, nil },
		Now:        func() time.Time { return now },
	})
	f := gather(t, m)
	h := f["ordercore_committer_batch_commands"].GetMetric()[0].GetHistogram()
	got := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		got[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	want := map[float64]uint64{1: 5, 2: 5, 4: 7, 8: 7, 16: 7, 32: 7, 64: 17, 128: 17, 256: 17, 512: 17, 1024: 18, math.Inf(1): 18}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("batch buckets (-want +got):\n%s", diff)
	}
	if h.GetSampleCount() != 18 || h.GetSampleSum() != 5+6+640+1000 {
		t.Errorf("batch histogram: count %d, sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	if got := f["ordercore_orders_expiry_overdue_seconds"].GetMetric()[0].GetGauge().GetValue(); got != 42 {
		t.Errorf("expiry overdue %v s, want 42", got)
	}
}

// A store read that fails leaves its gauges out and is counted; the rest of the scrape
// is served. An expiry ahead, or no unpaid order, reads 0.
func TestSourceFailures(t *testing.T) {
	now := time.Now()
	fail := true
	m := telemetry.New(telemetry.Sources{
		SagaCounts: func(context.Context) (map[string]int64, error) {
			if fail {
				return nil, errors.New("database is locked")
			}
			return map[string]int64{"running": 2, "dead_letter": 1}, nil
		},
		OpenReviews: func(context.Context) (map[string]int64, error) {
			return map[string]int64{"orphan_notification": 3}, nil
		},
		NextExpiry: func(context.Context) (time.Time, bool, error) { return now.Add(time.Minute), true, nil },
		Now:        func() time.Time { return now },
	})
	f := gather(t, m)
	if _, ok := f["ordercore_sagas"]; ok {
		t.Error("saga gauges served from a failed read")
	}
	if got := byLabel(f["ordercore_metrics_source_errors_total"], "source"); got["sagas"] != 1 {
		t.Errorf("source errors %v, want sagas: 1", got)
	}
	if got := byLabel(f["ordercore_review_items_open"], "kind"); got["orphan_notification"] != 3 {
		t.Errorf("open review items %v", got)
	}
	if got := f["ordercore_orders_expiry_overdue_seconds"].GetMetric()[0].GetGauge().GetValue(); got != 0 {
		t.Errorf("expiry a minute ahead reads %v s overdue", got)
	}
	fail = false
	f = gather(t, m)
	if diff := cmp.Diff(map[string]float64{"running": 2, "dead_letter": 1}, byLabel(f["ordercore_sagas"], "status")); diff != "" {
		t.Errorf("sagas (-want +got):\n%s", diff)
	}
}
