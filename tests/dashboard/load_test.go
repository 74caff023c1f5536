package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tandem-run/tandem/internal/testutil/chromium"
	"github.com/tandem-run/tandem/internal/testutil/jaegerquery"
	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/pkg/resolver/standalone"
)

// The load of TestPageLoad: loadApps apps in the registry, loadTraces
// traces in the trace store's window.
const (
	loadApps   = 200
	loadTraces = 10000
)

// loadAppID is the id of stand-in app i.
func loadAppID(i int) string { return fmt.Sprintf("standin-%03d", i) }

// sidecarStandIn is a stand-in for one sidecar, named as such: an HTTP
// server answering what the dashboard reads of a sidecar (GET
// /v1.0/healthz, GET /v1.0/metadata, and GET /metrics on the same port,
// which its metadata names as the metrics port) with fixed answers, so
// that 200 apps fit on 2 cores. Its metrics count calls of app i to app
// i+1 that grow at every read.
type sidecarStandIn struct {
	*httptest.Server
	id, next string
	reads    atomic.Int64
}

func startSidecarStandIn(t *testing.T, i int) *sidecarStandIn {
	s := &sidecarStandIn{id: loadAppID(i), next: loadAppID((i + 1) % loadApps)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/healthz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /v1.0/metadata", func(w http.ResponseWriter, r *http.Request) {
		port := s.Listener.Addr().(*net.TCPAddr).Port
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": s.id, "runtimeVersion": "standin", "mode": "standalone",
			"ports":                   map[string]int{"http": port, "metrics": port},
			"appConnectionProperties": map[string]any{"port": 40000 + i, "protocol": "http"},
			"components": []map[string]string{
				{"name": "statestore", "type": "state.in-memory", "version": "v1"},
				{"name": "pubsub", "type": "pubsub.in-memory", "version": "v1"},
			},
			"subscriptions": []map[string]string{{"pubsubname": "pubsub", "topic": "orders", "type": "DECLARATIVE"}},
			"extended":      map[string]string{"mtlsSpiffeID": "spiffe://public/ns/default/" + s.id, "mtlsCertExpiry": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)},
		})
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		n := 10 * s.reads.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE tandem_invoke_requests_total counter\n"+
			"tandem_invoke_requests_total{target=%q,status=\"200\"} %d\n"+
			"tandem_invoke_requests_total{target=%q,status=\"500\"} %d\n"+
			"# TYPE tandem_invoke_request_duration_seconds histogram\n"+
			"tandem_invoke_request_duration_seconds_bucket{target=%q,le=\"0.001\"} %d\n"+
			"tandem_invoke_request_duration_seconds_bucket{target=%q,le=\"0.01\"} %d\n"+
			"tandem_invoke_request_duration_seconds_bucket{target=%q,le=\"+Inf\"} %d\n"+
			"tandem_invoke_request_duration_seconds_sum{target=%q} %g\n"+
			"tandem_invoke_request_duration_seconds_count{target=%q} %d\n",
			s.next, n-1, s.next, 1, s.next, n/2, s.next, n, s.next, n, s.next, float64(n)*0.002, s.next, n)
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// TestPageLoad measures the page with 200 apps and 10,000 traces in the
// window in headless Chromium: the time from navigation to the apps table
// (all 200 rows) and the map drawn, and the time of the page's own
// refresh cycles (data fetched, DOM updated and laid out), from the marks
// and measures the page sets (tandem:*-drawn, tandem:*-refresh). The
// numbers are reported (docs/dashboard.md), not asserted; what the page
// shows is.
//
// The 200 apps are registry entries whose sidecars are in-test stand-ins
// (sidecarStandIn); the 10,000 traces are in a real Jaeger, sent to its
// Zipkin collector route.
func TestPageLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test: not under -short")
	}
	chromePath := chromium.Need(t)

	// The trace store: Jaeger, 10,000 traces of two spans in the window.
	j := jaegerquery.Start(t, "--collector.queue-size=50000")
	pt := proc.For(t)
	hp := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	began := time.Now()
	loadTraceStore(t, j.ZipkinURL, j.QueryURL)
	t.Logf("%d traces sent to Jaeger's Zipkin route and listed by its query API in %s", loadTraces, time.Since(began).Round(time.Millisecond))

	// The registry: 200 entries, each a stand-in's.
	registry := t.TempDir()
	for i := range loadApps {
		s := startSidecarStandIn(t, i)
		port := s.Listener.Addr().(*net.TCPAddr).Port
		reg, err := standalone.Register(registry, standalone.Entry{
			AppID: loadAppID(i), PID: 1_000_000 + i, InternalAddress: hp(port),
			HTTPPort: port, StartedAt: time.Now().UTC(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = reg.Close() })
	}

	addr := hp(pt.FreePort())
	dashProc := pt.Start("dashboard", dashboardBin, nil, "--listen", addr, "--registry-dir", registry, "--jaeger-query", j.QueryURL)
	pt.WaitTCP(addr, listenWait)
	dash := "http://" + addr

	// Correctness first, through the API: 200 apps healthy with their
	// metadata, and 200 edges on the map.
	m := &mesh{t: t, registry: registry, dash: dash}
	m.await("200 stand-in apps healthy with their metadata", 60*time.Second, func(a apps) bool {
		if len(a.Apps) != loadApps {
			return false
		}
		for _, app := range a.Apps {
			if app.Health != "healthy" || app.Metadata != "ok" {
				return false
			}
		}
		return true
	})
	awaitMap(t, dash, "5m", func(mm metricsMap) bool { return len(mm.Edges) == loadApps })
	// The API's own time, read from here (no page), and the dashboard's
	// CPU time for each answer (less bound to the machine's other load
	// than the time is).
	for _, api := range []struct {
		path string
		n    int
		gap  time.Duration
	}{
		{"/api/apps", 10, 0},
		{"/api/map?window=5m", 5, 1100 * time.Millisecond}, // past the map's one-second freshness: each reads the metrics
		{"/api/traces?app=" + loadAppID(0) + "&window=5m", 10, 0},
	} {
		var took []float64
		cpu0 := cpuTime(t, dashProc)
		for range api.n {
			time.Sleep(api.gap)
			began := time.Now()
			var v any
			if err := getJSONErr(dash+api.path, &v); err != nil {
				t.Fatal(err)
			}
			took = append(took, float64(time.Since(began).Microseconds())/1000)
		}
		t.Logf("GET %s: %s; the dashboard's CPU time: %.0f ms an answer", api.path, stats(took), float64((cpuTime(t, dashProc)-cpu0).Milliseconds())/float64(api.n))
	}

	ctx := chromium.Start(t, chromePath, 90*time.Second)
	ctx, cancel := context.WithTimeout(ctx, 80*time.Second)
	defer cancel()
	// Three loads of the page, each a new navigation.
	var loads, appsFirst []float64
	var first struct {
		Apps, Map, Traces float64
		Rows, Nodes       int
		Edges, TraceRows  int
		Picked            string
	}
	for range 3 {
		err := chromedp.Run(ctx,
			chromedp.Navigate(dash+"/"),
			chromium.Poll(`performance.getEntriesByName("tandem:apps-drawn").length === 1 && performance.getEntriesByName("tandem:map-drawn").length === 1 && `+
				`performance.getEntriesByName("tandem:traces-drawn").length === 1`),
			chromedp.Evaluate(`({
				apps: performance.getEntriesByName("tandem:apps-drawn")[0].startTime,
				map: performance.getEntriesByName("tandem:map-drawn")[0].startTime,
				traces: performance.getEntriesByName("tandem:traces-drawn")[0].startTime,
				rows: document.querySelectorAll('#apps tbody tr[data-health="healthy"][data-metadata="ok"]').length,
				nodes: document.querySelectorAll('#map g[data-app]').length,
				edges: document.querySelectorAll('#map line.edge').length,
				traceRows: document.querySelectorAll('#traces tbody tr').length,
				picked: document.getElementById("trace-app").value,
			})`, &first))
		if err != nil {
			t.Fatalf("loading the page: %v (page: %.2000s)", err, chromium.PageText(ctx))
		}
		// The first drawing is of everything: 200 rows, 200 nodes and
		// their edges, and the list of the picked app's latest 50 traces.
		if first.Rows != loadApps || first.Nodes != loadApps || first.Edges != loadApps || first.TraceRows != 50 || first.Picked != loadAppID(0) {
			t.Errorf("the page first drew %d healthy app rows, %d map nodes, %d edges, %d traces of %q; want %d, %d, %d, 50 of %s",
				first.Rows, first.Nodes, first.Edges, first.TraceRows, first.Picked, loadApps, loadApps, loadApps, loadAppID(0))
		}
		// Where the time went: the page itself, and its first reads of
		// the API (resource timing).
		var nav map[string]float64
		if err := chromedp.Run(ctx, chromedp.Evaluate(`(() => {
			const n = performance.getEntriesByType("navigation")[0];
			const out = {response: n.responseEnd, domContentLoaded: n.domContentLoadedEventEnd};
			for (const r of performance.getEntriesByType("resource")) {
				for (const k of ["api/apps", "api/map", "api/traces?"]) {
					if (r.name.includes(k) && !((k + " start") in out)) {
						out[k + " start"] = r.startTime;
						out[k + " took"] = r.responseEnd - r.startTime;
					}
				}
			}
			return out;
		})()`, &nav)); err != nil {
			t.Fatal(err)
		}
		t.Logf("navigation to drawn: apps table (%d rows) %.0f ms, map (%d nodes) %.0f ms, traces list %.0f ms; "+
			"HTML read at %.0f ms, DOMContentLoaded at %.0f ms; first GET /api/apps took %.0f ms, /api/map %.0f ms, /api/traces %.0f ms (from %.0f ms)",
			first.Rows, first.Apps, first.Nodes, first.Map, first.Traces,
			nav["response"], nav["domContentLoaded"], nav["api/apps took"], nav["api/map took"], nav["api/traces? took"], nav["api/traces? start"])
		loads = append(loads, max(first.Apps, first.Map))
		appsFirst = append(appsFirst, nav["api/apps took"])
	}
	t.Logf("load (navigation to the apps table and the map drawn): %s; its first GET /api/apps: %s", stats(loads), stats(appsFirst))

	// The page's own refresh cycles: the measures of the next five.
	cycles := map[string][]float64{}
	var lastApps = first.Apps
	for len(cycles["apps"]) < 5 {
		var cur struct {
			Apps, Map, Traces, AppsStart  float64
			AppsDraw, MapDraw, TracesDraw float64
		}
		err := chromedp.Run(ctx,
			chromium.Poll(fmt.Sprintf(`performance.getEntriesByName("tandem:apps-refresh")[0].startTime > %.3f`, lastApps+1)),
			chromedp.Evaluate(`({
				apps: performance.getEntriesByName("tandem:apps-refresh")[0].duration,
				appsStart: performance.getEntriesByName("tandem:apps-refresh")[0].startTime,
				map: performance.getEntriesByName("tandem:map-refresh")[0].duration,
				traces: performance.getEntriesByName("tandem:traces-refresh")[0].duration,
				appsDraw: performance.getEntriesByName("tandem:apps-draw")[0].duration,
				mapDraw: performance.getEntriesByName("tandem:map-draw")[0].duration,
				tracesDraw: performance.getEntriesByName("tandem:traces-draw")[0].duration,
			})`, &cur))
		if err != nil {
			t.Fatalf("waiting for a refresh: %v", err)
		}
		lastApps = cur.AppsStart
		cycles["apps"] = append(cycles["apps"], cur.Apps)
		cycles["map"] = append(cycles["map"], cur.Map)
		cycles["traces"] = append(cycles["traces"], cur.Traces)
		cycles["apps draw"] = append(cycles["apps draw"], cur.AppsDraw)
		cycles["map draw"] = append(cycles["map draw"], cur.MapDraw)
		cycles["traces draw"] = append(cycles["traces draw"], cur.TracesDraw)
	}
	var rows, nodes int
	if err := chromedp.Run(ctx,
		chromedp.Evaluate(`document.querySelectorAll('#apps tbody tr').length`, &rows),
		chromedp.Evaluate(`document.querySelectorAll('#map g[data-app]').length`, &nodes),
	); err != nil {
		t.Fatal(err)
	}
	if rows != loadApps || nodes != loadApps {
		t.Errorf("after five refreshes the page shows %d app rows, %d map nodes; want %d", rows, nodes, loadApps)
	}
	for _, k := range []string{"apps", "map", "traces"} {
		t.Logf("refresh of the %s: %s (of which drawing %s)", k, stats(cycles[k]), stats(cycles[k+" draw"]))
	}
	// A screenshot of the top of the page (the whole page is some 30,000
	// pixels high), kept in the temporary folder as the calculator's are.
	var png []byte
	if err := chromedp.Run(ctx, chromedp.CaptureScreenshot(&png)); err != nil {
		t.Logf("screenshot: %v", err)
	} else if path := filepath.Join(os.TempDir(), "dashboard-200-apps.png"); os.WriteFile(path, png, 0o644) == nil {
		t.Logf("screenshot of the page: %s", path)
	}
}

// stats says the median and the largest of ms.
func stats(ms []float64) string {
	s := append([]float64(nil), ms...)
	sort.Float64s(s)
	return fmt.Sprintf("median %.0f ms, max %.0f ms over %d cycles", s[len(s)/2], s[len(s)-1], len(s))
}

// loadTraceStore sends loadTraces traces to Jaeger's Zipkin collector
// route, started in the last minute: trace k is a call of app k%200 to the
// next app, a client span and the callee's server span, one in ten
// failed. It waits until Jaeger's query API lists them all.
func loadTraceStore(t *testing.T, collector, query string) {
	t.Helper()
	type endpoint struct {
		ServiceName string `json:"serviceName"`
	}
	type span struct {
		TraceID        string            `json:"traceId"`
		ID             string            `json:"id"`
		ParentID       string            `json:"parentId,omitempty"`
		Name           string            `json:"name"`
		Kind           string            `json:"kind"`
		Timestamp      int64             `json:"timestamp"`
		Duration       int64             `json:"duration"`
		LocalEndpoint  endpoint          `json:"localEndpoint"`
		RemoteEndpoint *endpoint         `json:"remoteEndpoint,omitempty"`
		Tags           map[string]string `json:"tags,omitempty"`
	}
	now := time.Now().Add(-time.Minute).UnixMicro()
	const batch = 1000
	for k0 := 0; k0 < loadTraces; k0 += batch {
		var spans []span
		for k := k0; k < k0+batch; k++ {
			caller, callee := loadAppID(k%loadApps), loadAppID((k+1)%loadApps)
			tid := fmt.Sprintf("%016x%016x", 0xdb, k+1)
			client := span{TraceID: tid, ID: fmt.Sprintf("%016x", 2*k+1), Name: "calllocal/" + callee + "/work", Kind: "CLIENT",
				Timestamp: now + int64(k)*5, Duration: 2000 + int64(k%50)*100, LocalEndpoint: endpoint{caller},
				RemoteEndpoint: &endpoint{callee}, Tags: map[string]string{"peer.service": callee}}
			server := span{TraceID: tid, ID: fmt.Sprintf("%016x", 2*k+2), ParentID: client.ID, Name: "calllocal/" + callee + "/work", Kind: "SERVER",
				Timestamp: client.Timestamp + 200, Duration: client.Duration - 400, LocalEndpoint: endpoint{callee}}
			if k%10 == 0 {
				client.Tags["error"] = "500"
				server.Tags = map[string]string{"error": "500"}
			}
			spans = append(spans, client, server)
		}
		b, _ := json.Marshal(spans)
		resp, err := http.Post(collector, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s: %s", collector, resp.Status)
		}
	}
	// Every app is the caller of 50 traces and the callee of 50: the
	// last app's 100 and the service count say the store holds them all
	// (the collector's queue is asynchronous).
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, services := 0, 0
		var body struct {
			Data []json.RawMessage `json:"data"`
		}
		if err := getJSONErr(query+"/api/traces?"+url.Values{"service": {loadAppID(loadApps - 1)}, "lookback": {"1h"}, "limit": {"1000"}}.Encode(), &body); err == nil {
			n = len(body.Data)
		}
		var svc struct {
			Data []string `json:"data"`
		}
		if err := getJSONErr(query+"/api/services", &svc); err == nil {
			services = len(svc.Data)
		}
		if n == 2*loadTraces/loadApps && services == loadApps {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger holds %d traces of %s and %d services; want %d and %d", n, loadAppID(loadApps-1), services, 2*loadTraces/loadApps, loadApps)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// getJSONErr reads url's JSON answer into v.
func getJSONErr(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %.200s", u, resp.Status, b)
	}
	if !strings.HasPrefix(strings.TrimSpace(string(b)), "{") && !strings.HasPrefix(strings.TrimSpace(string(b)), "[") {
		return fmt.Errorf("GET %s: not JSON", u)
	}
	return json.Unmarshal(b, v)
}

// cpuTime is the CPU time p has used (user and system), from /proc.
func cpuTime(t *testing.T, p *proc.Proc) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// After the command's name in parentheses: utime and stime are the
	// 12th and 13th fields, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
