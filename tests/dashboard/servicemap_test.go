package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tandem-run/tandem/internal/testutil/chromium"
	"github.com/tandem-run/tandem/internal/testutil/jaegerquery"
	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/resources"
	"github.com/tandem-run/tandem/internal/testutil/zipkinstandin"
)

// edges is the part of GET /api/map the test reads.
type edges struct {
	Edges []struct {
		Caller, Callee string
		Calls, Errors  int
		ErrorRate      float64 `json:"errorRate"`
		PerSecond      float64 `json:"perSecond"`
		P50Ms          float64 `json:"p50Ms"`
		P99Ms          float64 `json:"p99Ms"`
	} `json:"edges"`
}

// TestServiceMap: with the sidecars tracing into a trace store, Jaeger's
// or a Zipkin's, GET /api/map?source=traces has one edge front→orders
// counting every call and every failed one, with latencies; the traces
// list and a trace's spans come from the same store; the page shows them
// (in Chromium where installed). Without a trace store the map from
// traces is a 404 naming the flag.
func TestServiceMap(t *testing.T) {
	t.Run("jaeger", func(t *testing.T) {
		j := jaegerquery.Start(t)
		testTraceStore(t, j.ZipkinURL, "--jaeger-query", j.QueryURL)
	})
	// Zipkin is a Java server that cannot be installed here, and Jaeger
	// answers Zipkin's collector route but not its query routes: the
	// store is a stand-in playing Zipkin's v2 API from its specification,
	// holding the spans the real sidecars send it.
	t.Run("zipkin stand-in", func(t *testing.T) {
		z := zipkinstandin.Start()
		t.Cleanup(z.Close)
		testTraceStore(t, z.URL+"/api/v2/spans", "--zipkin-query", z.URL)
	})
}

// testTraceStore runs front and orders tracing to the Zipkin collector
// route collector, and the dashboard reading the store at query with flag.
func testTraceStore(t *testing.T, collector, flag, query string) {
	pt := proc.For(t)
	hp := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	conf := filepath.Join(t.TempDir(), "tracing.yaml")
	if err := os.WriteFile(conf, resources.ZipkinYAML("tracing", collector), 0o644); err != nil {
		t.Fatal(err)
	}

	m := &mesh{t: t, registry: t.TempDir()}
	ordersPort, _ := m.app("orders app")
	m.sidecar("orders", ordersPort, nil, "--config", conf)
	m.sidecar("front", 0, nil, "--config", conf)
	port := pt.FreePort()
	addr := hp(port)
	pt.Start("dashboard", dashboardBin, nil, "--listen", addr, "--registry-dir", m.registry, flag, query)
	pt.WaitTCP(addr, listenWait)
	m.dash = "http://" + addr

	// front's sidecar URL, from the dashboard's own list.
	m.await("front and orders listed", 30*time.Second, func(a apps) bool { return len(a.Apps) == 2 })
	frontURL := sidecarURL(t, m, "front")
	call := func(path string, want int) {
		t.Helper()
		resp, err := http.Post(frontURL+"/v1.0/invoke/orders/method"+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	for range 5 {
		call("/echo/x", http.StatusOK)
	}
	for range 2 {
		call("/status/500", http.StatusInternalServerError)
	}

	var got edges
	deadline := time.Now().Add(40 * time.Second)
	for {
		got = getMap(t, m.dash+"/api/map?window=5m&source=traces")
		if len(got.Edges) == 1 && got.Edges[0].Calls == 7 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(got.Edges) != 1 {
		t.Fatalf("edges %+v, want one front→orders", got.Edges)
	}
	e := got.Edges[0]
	if e.Caller != "front" || e.Callee != "orders" || e.Calls != 7 || e.Errors != 2 || e.P50Ms <= 0 || e.P99Ms < e.P50Ms || e.PerSecond <= 0 {
		t.Errorf("edge %+v; want front→orders, 7 calls, 2 errors, latencies", e)
	}
	if want := 2.0 / 7; e.ErrorRate < want-1e-9 || e.ErrorRate > want+1e-9 {
		t.Errorf("error rate %v, want %v", e.ErrorRate, want)
	}
	// The map from the sidecars' metrics counts the same calls.
	mm := awaitMap(t, m.dash, "5m", func(mm metricsMap) bool { e, _ := mm.edge("invoke", "front", "orders"); return e.Calls == 7 })
	if e, _ := mm.edge("invoke", "front", "orders"); e.Errors != 2 || len(mm.Edges) != 1 {
		t.Errorf("the metrics' map %+v: want one edge front→orders, 7 calls, 2 errors", mm)
	}
	resp, err := http.Get(m.dash + "/api/map?window=1s&source=traces")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("window=1s: %d, want 400", resp.StatusCode)
	}

	// The trace list: front's traces with an error are the two failed
	// calls; one's waterfall holds the failed hop with its tags.
	var failed []struct {
		TraceID string `json:"traceId"`
		Errors  int    `json:"errors"`
		Spans   int    `json:"spans"`
	}
	getJSON(t, m.dash+"/api/traces?app=front&status=error&window=5m", &failed)
	if len(failed) != 2 || failed[0].Errors == 0 || failed[0].Spans < 3 {
		t.Fatalf("front's failed traces: %+v; want 2, each with a failed span", failed)
	}
	// Each of the seven calls is listed once. What else front's sidecar
	// traced on a loaded machine is logged, not counted against the list:
	// two CI runs listed three traces more than the calls, never a call's
	// twice, and they could not be told apart afterwards.
	var all []struct {
		TraceID  string   `json:"traceId"`
		Root     string   `json:"root"`
		Services []string `json:"services"`
		Spans    int      `json:"spans"`
	}
	getJSON(t, m.dash+"/api/traces?app=front&window=5m", &all)
	calls := map[string]int{}
	ids := map[string]bool{}
	for _, tr := range all {
		if ids[tr.TraceID] {
			t.Errorf("trace %s listed twice", tr.TraceID)
		}
		ids[tr.TraceID] = true
		switch tr.Root {
		case "front calllocal/orders/echo/x", "front calllocal/orders/status/500":
			calls[tr.Root]++
		default:
			t.Logf("front's trace %s besides the calls: root %q, services %v, %d spans", tr.TraceID, tr.Root, tr.Services, tr.Spans)
		}
	}
	if calls["front calllocal/orders/echo/x"] != 5 || calls["front calllocal/orders/status/500"] != 2 {
		t.Errorf("front's traces of the calls: %v; want 5 of echo/x and 2 of status/500, each once", calls)
	}
	var spans []struct {
		Service, Operation, Kind string
		ParentID                 string `json:"parentId"`
		Error                    bool
		Tags                     []struct{ Key, Value string }
	}
	getJSON(t, m.dash+"/api/traces/"+failed[0].TraceID, &spans)
	found := false
	for _, s := range spans {
		if s.Service == "front" && strings.EqualFold(s.Operation, "calllocal/orders/status/500") && s.Kind == "client" && s.Error && s.ParentID != "" {
			for _, tg := range s.Tags {
				found = found || tg.Key == "peer.service" && tg.Value == "orders"
			}
		}
	}
	if !found {
		t.Errorf("trace %s: no failed hop front→orders with its peer.service tag: %+v", failed[0].TraceID, spans)
	}
	for _, bad := range []string{"/api/traces/not-hex", "/api/traces?app=Front", "/api/traces?app=front&status=odd", "/api/traces?app=front&minDuration=2h"} {
		resp, err := http.Get(m.dash + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", bad, resp.StatusCode)
		}
	}

	chromePath, err := chromium.Look()
	if err != nil {
		t.Logf("the page's map is not checked: %v", err)
		return
	}
	ctx := chromium.Start(t, chromePath, 90*time.Second)
	err = chromedp.Run(ctx,
		chromedp.Navigate(m.dash+"/"),
		chromedp.SetValue("#map-source", "traces", chromedp.ByQuery),
		chromedp.Evaluate(`document.getElementById("map-source").dispatchEvent(new Event("change")), true`, nil),
		chromium.Poll(`document.getElementById("map-note").textContent.includes("sampled client spans") && `+
			`document.querySelector('#edges tr[data-caller="front"][data-callee="orders"][data-calls="7"][data-errors="2"]') !== null && `+
			`document.querySelector('#map line.failing[data-caller="front"][data-callee="orders"]') !== null && `+
			`document.querySelectorAll('#map g[data-app]').length === 2`),
	)
	if err != nil {
		t.Fatalf("the page's service map: %v (page: %s)", err, chromium.PageText(ctx))
	}
	// The trace list of front, errors only; the first one's waterfall.
	// The list's refreshes for any status are held 1.5 s on their way
	// back, and the filter changes while one is held: its answer, older
	// than the filter, must not be drawn over the errors (CI once clicked
	// a trace of that list's).
	var sawAny bool
	const onlyErrors = `document.querySelectorAll('#traces tbody tr:not([data-errors="0"])').length === 2 && document.querySelectorAll('#traces tbody tr').length === 2`
	err = chromedp.Run(ctx,
		chromedp.Evaluate(`window.heldSent = 0, window.heldBack = 0, window.realFetch = window.fetch,
			window.fetch = async (url, opts) => {
				const held = String(url).startsWith("api/traces?") && String(url).includes("status=any");
				if (held) window.heldSent++;
				const resp = await window.realFetch(url, opts);
				if (held) { await new Promise(r => setTimeout(r, 1500)); window.heldBack++; }
				return resp;
			}, true`, nil),
		chromedp.SetValue("#trace-app", "front", chromedp.ByQuery),
		chromium.Poll(`window.heldSent > window.heldBack`),
		chromedp.Evaluate(`window.heldAtChange = window.heldSent`, nil),
		chromedp.SetValue("#trace-status", "error", chromedp.ByQuery),
		chromedp.Evaluate(`document.getElementById("trace-status").dispatchEvent(new Event("change")), true`, nil),
		chromium.Poll(onlyErrors),
		// From here on, a row without errors drawn at any time is seen.
		chromedp.Evaluate(`window.sawAny = false, new MutationObserver(() => {
				window.sawAny = window.sawAny || document.querySelector('#traces tbody tr[data-errors="0"]') !== null
			}).observe(document.getElementById("traces"), {childList: true, subtree: true}), true`, nil),
		chromium.Poll(`window.heldBack >= window.heldAtChange`),
		chromedp.Sleep(300*time.Millisecond),
		chromedp.Evaluate(`window.sawAny`, &sawAny),
	)
	if err != nil || sawAny {
		t.Fatalf("the page's traces after a list for any status came back late: %v (a trace without errors drawn: %v; page: %s)", err, sawAny, chromium.PageText(ctx))
	}
	err = chromedp.Run(ctx,
		// The list is redrawn every 2 s: click its first row in one step.
		chromedp.Evaluate(`document.querySelector('#traces tbody tr').click(), true`, nil),
		chromium.Poll(`document.querySelectorAll('#waterfall-rows .span-row').length >= 3 && document.querySelector('#waterfall-rows .span-row.error') !== null`),
	)
	if err != nil {
		t.Fatalf("the page's traces: %v (page: %s)", err, chromium.PageText(ctx))
	}
}

// getJSON reads url's JSON answer into v, failing the test on any other.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
}

// TestServiceMapOff: without --jaeger-query, the map from the trace store
// is a 404 naming the flag.
func TestServiceMapOff(t *testing.T) {
	m := &mesh{t: t, registry: t.TempDir()}
	m.startDashboard()
	resp, err := http.Get(m.dash + "/api/map?source=traces")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "--jaeger-query") {
		t.Errorf("GET /api/map?source=traces: %d %s; want 404 naming --jaeger-query", resp.StatusCode, b)
	}
}

func getMap(t *testing.T, url string) edges {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	var e edges
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
	return e
}

// sidecarURL is the HTTP API of appID's sidecar, as the dashboard lists it.
func sidecarURL(t *testing.T, m *mesh, appID string) string {
	t.Helper()
	resp, err := http.Get(m.dash + "/api/apps")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Apps []struct {
			AppID    string `json:"appId"`
			HTTPPort int    `json:"httpPort"`
		} `json:"apps"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	for _, a := range body.Apps {
		if a.AppID == appID {
			return fmt.Sprintf("http://127.0.0.1:%d", a.HTTPPort)
		}
	}
	t.Fatalf("no app %s listed", appID)
	return ""
}
