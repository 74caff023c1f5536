package dashboard_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tandem-run/tandem/internal/testutil/chromium"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// metricsEdge is an edge of GET /api/map as the tests read it.
type metricsEdge struct {
	Kind, Caller, Callee string
	Calls, Errors        int
	ErrorRate            float64 `json:"errorRate"`
	PerSecond            float64 `json:"perSecond"`
	P50Ms                float64 `json:"p50Ms"`
	P99Ms                float64 `json:"p99Ms"`
}

type metricsMap struct {
	Source   string
	Sidecars int
	Edges    []metricsEdge
}

func (mm metricsMap) edge(kind, caller, callee string) (metricsEdge, bool) {
	for _, e := range mm.Edges {
		if e.Kind == kind && e.Caller == caller && e.Callee == callee {
			return e, true
		}
	}
	return metricsEdge{}, false
}

// awaitMap reads GET /api/map?window= until ok holds, up to 40 s.
func awaitMap(t *testing.T, dash, window string, ok func(metricsMap) bool) metricsMap {
	t.Helper()
	var mm metricsMap
	deadline := time.Now().Add(40 * time.Second)
	for {
		getJSON(t, dash+"/api/map?window="+window, &mm)
		if ok(mm) {
			return mm
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/map?window=%s: %+v", window, mm)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMetricsMap: with no trace store, the map is read from the sidecars'
// metrics: every call front→orders with its errors, rate and latencies,
// and orders' publishes to a topic and the topic's deliveries to orders;
// the page shows them and follows new calls without a reload.
func TestMetricsMap(t *testing.T) {
	m := &mesh{t: t, registry: t.TempDir()}
	res := t.TempDir()
	if err := os.WriteFile(filepath.Join(res, "pubsub.yaml"), resources.PubSubYAML("orderbus", "pubsub.in-memory"), 0o644); err != nil {
		t.Fatal(err)
	}
	subs, _ := json.Marshal([]map[string]string{{"pubsubname": "orderbus", "topic": "orders", "route": "/events/orders"}})
	ordersPort, _ := m.app("orders app", "SUBSCRIBE="+string(subs))
	m.sidecar("orders", ordersPort, nil, "--resources-path", res)
	m.sidecar("front", 0, nil)
	m.startDashboard()
	m.await("front and orders listed", 30*time.Second, func(a apps) bool { return len(a.Apps) == 2 })
	frontURL, ordersURL := sidecarURL(t, m, "front"), sidecarURL(t, m, "orders")
	call := func(path string, want int) {
		t.Helper()
		post(t, frontURL+"/v1.0/invoke/orders/method"+path, "", want)
	}
	for range 5 {
		call("/echo/x", http.StatusOK)
	}
	for range 2 {
		call("/status/500", http.StatusInternalServerError)
	}
	call("/status/404", http.StatusNotFound) // a 4xx answer is not an error of the hop
	for range 3 {
		post(t, ordersURL+"/v1.0/publish/orderbus/orders", `{"n":1}`, http.StatusNoContent)
	}

	mm := awaitMap(t, m.dash, "1m", func(mm metricsMap) bool {
		d, _ := mm.edge("deliver", "orderbus/orders", "orders")
		i, _ := mm.edge("invoke", "front", "orders")
		return d.Calls == 3 && i.Calls == 8
	})
	inv, _ := mm.edge("invoke", "front", "orders")
	pub, okPub := mm.edge("publish", "orders", "orderbus/orders")
	del, _ := mm.edge("deliver", "orderbus/orders", "orders")
	if mm.Source != "metrics" || mm.Sidecars != 2 || len(mm.Edges) != 3 {
		t.Errorf("map %+v: want 3 edges from the metrics of 2 sidecars", mm)
	}
	if inv.Errors != 2 || inv.ErrorRate != 0.25 || inv.PerSecond <= 0 || inv.P50Ms <= 0 || inv.P99Ms < inv.P50Ms {
		t.Errorf("front→orders %+v: want 8 calls, 2 errors (25 %%), a rate and latencies", inv)
	}
	if !okPub || pub.Calls != 3 || pub.Errors != 0 || pub.P50Ms <= 0 {
		t.Errorf("orders→orderbus/orders %+v: want 3 publishes, no error", pub)
	}
	if del.Errors != 0 || del.P50Ms <= 0 {
		t.Errorf("orderbus/orders→orders %+v: want 3 deliveries, no error", del)
	}
	for _, bad := range []string{"window=2h", "window=1s", "source=odd"} {
		resp, err := http.Get(m.dash + "/api/map?" + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /api/map?%s: %d, want 400", bad, resp.StatusCode)
		}
	}

	chromePath, err := chromium.Look()
	if err != nil {
		t.Logf("the page's map is not checked: %v", err)
		return
	}
	ctx := chromium.Start(t, chromePath, 90*time.Second)
	if err := chromedp.Run(ctx); err != nil { // starts Chromium
		t.Fatal(err)
	}
	start := time.Now()
	err = chromedp.Run(ctx,
		chromedp.Navigate(m.dash+"/"),
		chromium.Poll(`document.querySelector('#edges tr[data-kind="invoke"][data-caller="front"][data-callee="orders"][data-calls="8"][data-errors="2"]') !== null && `+
			`document.querySelector('#edges tr[data-kind="publish"][data-caller="orders"][data-callee="orderbus/orders"][data-calls="3"]') !== null && `+
			`document.querySelector('#edges tr[data-kind="deliver"][data-caller="orderbus/orders"][data-callee="orders"][data-calls="3"]') !== null && `+
			`document.querySelector('#map line.failing[data-caller="front"][data-callee="orders"]') !== null && `+
			`document.querySelectorAll('#map g[data-app]').length === 2 && `+
			`document.querySelector('#map g[data-topic="orderbus/orders"] rect') !== null`),
	)
	if err != nil {
		t.Fatalf("the page's map: %v (page: %s)", err, chromium.PageText(ctx))
	}
	t.Logf("the page showed the map %v after its navigation started", time.Since(start).Round(time.Millisecond))
	// New calls show without a reload.
	for range 4 {
		call("/echo/y", http.StatusOK)
	}
	start = time.Now()
	if err := chromedp.Run(ctx, chromium.Poll(`document.querySelector('#edges tr[data-kind="invoke"][data-caller="front"][data-callee="orders"][data-calls="12"][data-errors="2"]') !== null`)); err != nil {
		t.Fatalf("the page did not follow 4 more calls: %v (page: %s)", err, chromium.PageText(ctx))
	}
	t.Logf("the page showed 4 more calls %v after they were made", time.Since(start).Round(time.Millisecond))
}

// post POSTs body to u and checks the status.
func post(t *testing.T, u, body string, want int) {
	t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %d %s, want %d", u, resp.StatusCode, b, want)
	}
}
