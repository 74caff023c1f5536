package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The sidecar's read-only route for the dashboard, GET /v1.0/dashboard on
// its metrics port, answers without the API token a sidecar requires, and
// holds neither that token nor a value an app or a component set; the
// metrics port serves /metrics as before and nothing else; the HTTP API
// still asks for the token.
func TestDashboardRoute(t *testing.T) {
	dir := t.TempDir()
	saveFile(t, filepath.Join(dir, "cache.yaml"), []byte("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\nspec:\n  type: state.in-memory\n  version: v1\n  metadata:\n  - name: keyPrefix\n    value: component-value-7f3a\n"))
	w := newWorld(t)
	appPort, _ := w.app("dashapp")
	s := w.sidecarEnv("dashapp", appPort, []string{"DAPR_API_TOKEN=api-token-51c9", "APP_API_TOKEN=app-token-0b2e"}, "--resources-path", dir)
	s.waitHealthy(t)
	tok := http.Header{"Dapr-Api-Token": {"api-token-51c9"}}
	if resp, b := do(t, "PUT", s.url+"/v1.0/metadata/appNote", strings.NewReader("app-value-93d1"), tok); resp.StatusCode != 204 {
		t.Fatalf("PUT extended metadata: %d %s", resp.StatusCode, b)
	}
	resp, b := do(t, "GET", s.url+"/v1.0/metadata", nil, tok)
	if resp.StatusCode != 200 {
		t.Fatalf("metadata with the token: %d %s", resp.StatusCode, b)
	}
	var md struct {
		Ports struct{ Metrics int } `json:"ports"`
	}
	if err := json.Unmarshal(b, &md); err != nil || md.Ports.Metrics == 0 {
		t.Fatalf("metrics port in %s: %v", b, err)
	}
	if !strings.Contains(string(b), "app-value-93d1") {
		t.Fatalf("the API's metadata lacks the app's value, so the check below proves nothing: %s", b)
	}
	metrics := "http://127.0.0.1:" + strconv.Itoa(md.Ports.Metrics)

	resp, b = do(t, "GET", metrics+"/v1.0/dashboard", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1.0/dashboard without a token: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	for _, bad := range []string{"api-token-51c9", "app-token-0b2e", "app-value-93d1", "appNote", "component-value-7f3a", "keyPrefix"} {
		if strings.Contains(string(b), bad) {
			t.Errorf("the dashboard route shows %q: %s", bad, b)
		}
	}
	var v struct {
		ID         string `json:"id"`
		AppReady   bool   `json:"appReady"`
		Components []struct{ Name, Type string }
		Ports      struct{ HTTP, Metrics int }
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.ID != "dashapp" || !v.AppReady || len(v.Components) != 1 || v.Components[0].Name != "cache" || v.Components[0].Type != "state.in-memory" ||
		v.Ports.HTTP != s.httpPort || v.Ports.Metrics != md.Ports.Metrics {
		t.Errorf("GET /v1.0/dashboard: %+v from %s", v, b)
	}

	// The rest of the metrics port is unchanged: /metrics, and nothing else.
	if resp, b := do(t, "GET", metrics+"/metrics", nil, nil); resp.StatusCode != 200 || !strings.Contains(string(b), "# TYPE") {
		t.Errorf("GET /metrics: %d %.200s", resp.StatusCode, b)
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1.0/metadata", 404},
		{"GET", "/v1.0/healthz", 404},
		{"POST", "/v1.0/dashboard", 405},
		{"PUT", "/v1.0/dashboard", 405},
		{"GET", "/v1.0/dashboard/x", 404},
	} {
		if resp, b := do(t, c.method, metrics+c.path, nil, nil); resp.StatusCode != c.want {
			t.Errorf("%s %s on the metrics port: %d %s, want %d", c.method, c.path, resp.StatusCode, b, c.want)
		}
	}
	// The HTTP API still requires the token.
	if resp, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil); resp.StatusCode != 401 {
		t.Errorf("GET /v1.0/metadata without the token: %d %s", resp.StatusCode, b)
	}
}
