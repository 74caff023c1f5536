package dashboard

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// The testdata/*.metrics files are two scrapes of two real sidecars a
// second or so apart: front called orders 7 times (2 answered 500) before
// the first, and 22 more (one 503, one 404) before the second; orders
// published 3 events to orderbus/orders, which its app took, before the
// first, and 5 more, which its app dropped, before the second.

func readSample(t *testing.T, name string, at time.Time) sample {
	t.Helper()
	f, err := os.Open("testdata/" + name + ".metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := parseMetrics(f, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

// TestMetricsMapWindow: the map of a window is the counters' growth over
// it, with rates over the time the scrapes cover and quantiles estimated
// from the bucket deltas as Prometheus' histogram_quantile does.
func TestMetricsMapWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	started := t0.Add(-30 * time.Second)
	s := scraper{rings: map[sidecarKey]*ring{
		{"front", 1, 1, ""}:  {startedAt: started},
		{"orders", 2, 2, ""}: {startedAt: started},
	}}
	for k, r := range s.rings {
		r.add(readSample(t, k.appID+"-1", t0))
		r.add(readSample(t, k.appID+"-2", t0.Add(20*time.Second)))
	}
	now := t0.Add(20 * time.Second)

	t.Run("window after the first scrape", func(t *testing.T) {
		// The window starts after the first scrape: counted from it.
		m := s.mapAt(now, 15*time.Second)
		want := []Edge{
			{Kind: EdgeDeliver, Caller: "orderbus/orders", Callee: "orders", Pubsub: "orderbus", Topic: "orders", Calls: 5, Errors: 5,
				PerSecond: 0.25, ErrorRate: 1, P50Ms: 2.125, P99Ms: 4.938},
			{Kind: EdgeInvoke, Caller: "front", Callee: "orders", Calls: 22, Errors: 1,
				PerSecond: 1.1, ErrorRate: 0.0455, P50Ms: 1.9, P99Ms: 8.9},
			{Kind: EdgePublish, Caller: "orders", Callee: "orderbus/orders", Pubsub: "orderbus", Topic: "orders", Calls: 5,
				PerSecond: 0.25, P50Ms: 0.05, P99Ms: 0.099},
		}
		checkEdges(t, m, want)
		if m.Sidecars != 2 || m.Source != "metrics" || m.Window != "15s" {
			t.Errorf("map %+v: want 2 sidecars read, source metrics, window 15s", m)
		}
	})
	t.Run("window from the start", func(t *testing.T) {
		// The sidecars started in the window: counted from zero at their
		// start, 50 s before the second scrape, which the edges say.
		m := s.mapAt(now, 2*time.Minute)
		want := []Edge{
			{Kind: EdgeDeliver, Caller: "orderbus/orders", Callee: "orders", Pubsub: "orderbus", Topic: "orders", Calls: 8, Errors: 5,
				PerSecond: 0.16, ErrorRate: 0.625, P50Ms: 1.9, P99Ms: 4.9, Seconds: 50},
			{Kind: EdgeInvoke, Caller: "front", Callee: "orders", Calls: 29, Errors: 3,
				PerSecond: 0.58, ErrorRate: 0.1034, P50Ms: 2.042, P99Ms: 42.75, Seconds: 50},
			{Kind: EdgePublish, Caller: "orders", Callee: "orderbus/orders", Pubsub: "orderbus", Topic: "orders", Calls: 8,
				PerSecond: 0.16, P50Ms: 0.05, P99Ms: 0.099, Seconds: 50},
		}
		checkEdges(t, m, want)
	})
	t.Run("window past the sidecars", func(t *testing.T) {
		m := s.mapAt(now.Add(2*time.Minute), time.Minute)
		if len(m.Edges) != 0 || m.Sidecars != 0 {
			t.Errorf("map of a window after the last scrape: %+v, want no edges", m)
		}
	})
}

func checkEdges(t *testing.T, m Map, want []Edge) {
	t.Helper()
	if len(m.Edges) != len(want) {
		t.Fatalf("edges %+v\nwant %+v", m.Edges, want)
	}
	for i, w := range want {
		g := m.Edges[i]
		if g.Kind != w.Kind || g.Caller != w.Caller || g.Callee != w.Callee || g.Pubsub != w.Pubsub || g.Topic != w.Topic ||
			g.Calls != w.Calls || g.Errors != w.Errors || !near(g.PerSecond, w.PerSecond) || !near(g.ErrorRate, w.ErrorRate) ||
			!near(g.P50Ms, w.P50Ms) || !near(g.P99Ms, w.P99Ms) || g.Seconds != w.Seconds {
			t.Errorf("edge %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

// TestHistogramQuantile pins the estimate to Prometheus' rules.
func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	cases := []struct {
		name    string
		q       float64
		buckets map[float64]float64
		want    float64
	}{
		{"empty", 0.5, map[float64]float64{}, 0},
		{"no observations", 0.5, map[float64]float64{1: 0, inf: 0}, 0},
		{"no +Inf bucket", 0.5, map[float64]float64{1: 3}, 0},
		{"first bucket from zero", 0.5, map[float64]float64{0.1: 4, 1: 4, inf: 4}, 0.05},
		{"linear in its bucket", 0.5, map[float64]float64{0.1: 0, 0.2: 10, inf: 10}, 0.15},
		{"in +Inf: the highest finite bound", 0.99, map[float64]float64{0.1: 1, 0.2: 1, inf: 10}, 0.2},
		{"q 1", 1, map[float64]float64{0.1: 5, 0.2: 10, inf: 10}, 0.2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := histogramQuantile(c.q, c.buckets); !near(got, c.want) {
				t.Errorf("histogramQuantile(%v, %v) = %v, want %v", c.q, c.buckets, got, c.want)
			}
		})
	}
}

// TestParseMetricsRefuses: what is not a Prometheus text exposition is an
// error saying so, and a counter reset counts from zero.
func TestParseMetricsRefuses(t *testing.T) {
	if _, err := parseMetrics(strings.NewReader("tandem_invoke_requests_total{target=\"a\" 1\n"), time.Now()); err == nil || !strings.Contains(err.Error(), "reading the metrics") {
		t.Errorf("a broken exposition: %v, want an error reading the metrics", err)
	}
	k := seriesKey{name: mInvoke, target: "a", status: "200"}
	d := delta(sample{v: map[seriesKey]float64{k: 10}}, sample{v: map[seriesKey]float64{k: 3}})
	if d[k] != 3 {
		t.Errorf("delta after a reset: %v, want 3", d[k])
	}
}
