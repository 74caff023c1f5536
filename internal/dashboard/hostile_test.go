package dashboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/pkg/resolver/standalone"
)

// TestSidecarsThatMisbehave: what a sidecar answers cannot make the
// dashboard hang, read without bound or show another app's metadata. The
// sidecars here are stand-ins (httptest servers registered as sidecars)
// since a real sidecar does not answer so.
func TestSidecarsThatMisbehave(t *testing.T) {
	dir := t.TempDir()
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	stand := map[string]http.HandlerFunc{
		"huge": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1.0/healthz" {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			big := strings.Repeat("x", maxMetadataBytes+10)
			_, _ = w.Write([]byte(`{"id":"huge","runtimeVersion":"` + big + `"}`))
		},
		"impostor": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1.0/healthz" {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			_, _ = w.Write([]byte(`{"id":"someone-else","components":[{"name":"x","type":"state.redis","version":"v1"}]}`))
		},
		"hangs": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		},
		"redirects": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		},
		"notjson": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1.0/healthz" {
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte(`{"errorCode":"ERR_HEALTH_NOT_READY","message":"the app is not ready: its app port does not answer yet"}`))
				return
			}
			_, _ = w.Write([]byte(`<html>`))
		},
	}
	for id, h := range stand {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		port, _ := strconv.Atoi(srv.URL[strings.LastIndex(srv.URL, ":")+1:])
		reg, err := standalone.Register(dir, standalone.Entry{AppID: id, PID: os.Getpid() + len(id), InternalAddress: "127.0.0.1:1", HTTPPort: port})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reg.Close() })
	}
	d := New(Config{RegistryDir: dir, Timeout: time.Second})
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := d.Apps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("Apps took %s with a sidecar that hangs; each is bounded by 1 s", took)
	}
	want := map[string][2]string{
		"huge":      {Healthy, MetadataError},
		"impostor":  {Healthy, MetadataError},
		"hangs":     {Unreachable, MetadataError},
		"redirects": {Unhealthy, MetadataError},
		"notjson":   {Unhealthy, MetadataError},
	}
	if len(got.Apps) != len(want) {
		t.Fatalf("%d apps listed, want %d: %+v", len(got.Apps), len(want), got.Apps)
	}
	for _, a := range got.Apps {
		w := want[a.AppID]
		if a.Health != w[0] || a.Metadata != w[1] {
			t.Errorf("%s: health %q (%s), metadata %q (%s); want %q, %q", a.AppID, a.Health, a.HealthError, a.Metadata, a.MetadataErr, w[0], w[1])
		}
		if len(a.Components) != 0 || a.RuntimeVersion != "" {
			t.Errorf("%s: shows %v %q from metadata it should not have taken", a.AppID, a.Components, a.RuntimeVersion)
		}
		if a.AppID == "notjson" && !strings.Contains(a.HealthError, "its app port does not answer") {
			t.Errorf("notjson: health error %q, want the sidecar's message", a.HealthError)
		}
		if a.AppID == "impostor" && !strings.Contains(a.MetadataErr, `says it is app "someone-else"`) {
			t.Errorf("impostor: %q", a.MetadataErr)
		}
	}
}

// TestMetricsThatMisbehave: what a sidecar's metrics port answers cannot
// make the map hang, read without bound or count another app's calls;
// each such sidecar is named under the map with why, and the map of the
// others is drawn. Stand-ins (httptest servers registered as sidecars,
// whose metadata names a metrics port), since a real sidecar does not
// answer so.
func TestMetricsThatMisbehave(t *testing.T) {
	defer func(n int64) { maxMetricsBytes = n }(maxMetricsBytes)
	maxMetricsBytes = 64 << 10 // the bound, made small for a busy machine
	dir := t.TempDir()
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	good := "# TYPE tandem_invoke_requests_total counter\ntandem_invoke_requests_total{app_id=\"good\",status=\"200\",target=\"b\"} 4\n"
	metrics := map[string]http.HandlerFunc{
		"good":    func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(good)) },
		"notprom": func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>{\"a\":1}")) },
		"huge": func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("# TYPE x counter\n"))
			block := []byte(strings.Repeat("x 1\n", 1<<14))
			for range int(maxMetricsBytes)/len(block) + 2 {
				_, _ = w.Write(block)
			}
		},
		"hangs": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		},
		"redirects": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		},
	}
	for id, h := range metrics {
		msrv := httptest.NewServer(h)
		t.Cleanup(msrv.Close)
		mport, _ := strconv.Atoi(msrv.URL[strings.LastIndex(msrv.URL, ":")+1:])
		api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"id":"` + id + `","ports":{"metrics":` + strconv.Itoa(mport) + `}}`))
		}))
		t.Cleanup(api.Close)
		port, _ := strconv.Atoi(api.URL[strings.LastIndex(api.URL, ":")+1:])
		reg, err := standalone.Register(dir, standalone.Entry{AppID: id, PID: os.Getpid() + len(id), InternalAddress: "127.0.0.1:1",
			HTTPPort: port, StartedAt: time.Now().Add(-time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reg.Close() })
	}
	d := New(Config{RegistryDir: dir, Timeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	m := d.MetricsMap(ctx, 5*time.Minute)
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the map took %s with a metrics port that hangs; each read is bounded by 1 s", took)
	}
	if len(m.Edges) != 1 || m.Edges[0].Caller != "good" || m.Edges[0].Callee != "b" || m.Edges[0].Calls != 4 || m.Sidecars != 1 {
		t.Errorf("edges %+v from %d sidecars; want good→b, 4 calls, from good's metrics only", m.Edges, m.Sidecars)
	}
	why := map[string]string{}
	for _, u := range m.Unread {
		why[u.AppID] = u.Error
	}
	for id, want := range map[string]string{
		"notprom":   "reading the metrics",
		"huge":      "larger than",
		"hangs":     "Timeout",
		"redirects": "302",
	} {
		if !strings.Contains(why[id], want) {
			t.Errorf("%s: unread because %q, want %q in it", id, why[id], want)
		}
	}
	if len(m.Unread) != 4 {
		t.Errorf("unread %+v, want the 4 that misbehave", m.Unread)
	}
}
