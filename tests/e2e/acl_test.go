package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// The callee's sidecar enforces its Configuration's accessControl on calls
// from other sidecars.
func TestAccessControl(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "acl.yaml")
	if err := os.WriteFile(conf, []byte(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: acl
spec:
  accessControl:
    defaultAction: deny
    policies:
    - appId: front
      defaultAction: deny
      operations:
      - name: /echo/public/*
        httpVerb: ["GET"]
        action: allow
      - name: /echo/admin/**
        httpVerb: ["*"]
        action: deny
`), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	appPort, _ := w.app("orders")
	callee := w.sidecar("orders", appPort, "--config", conf)
	front := w.sidecar("front", 0)
	other := w.sidecar("other", 0)
	callee.waitHealthy(t)
	for _, c := range []struct {
		from         *sidecar
		verb, method string
		want         int
	}{
		{front, "GET", "echo/public/a", 200},
		{front, "POST", "echo/public/a", 403},
		{front, "GET", "echo/public/a/b", 403},
		{front, "GET", "echo/admin/a/b", 403},
		{front, "GET", "echo/private", 403},
		{other, "GET", "echo/public/a", 403},
		{front, "GET", "echo/public/../admin/x", 400},
	} {
		resp, b := do(t, c.verb, c.from.url+"/v1.0/invoke/orders/method/"+c.method, nil, nil)
		if resp.StatusCode != c.want {
			t.Errorf("%s %s %s: %d %s, want %d", c.from.appID, c.verb, c.method, resp.StatusCode, b, c.want)
		}
		if c.want == 403 && (!strings.Contains(string(b), `"errorCode":"ERR_PERMISSION_DENIED"`) || !strings.Contains(string(b), "access control denies")) {
			t.Errorf("%s %s: body %s", c.verb, c.method, b)
		}
	}
	// A bad action is a start-up error naming it.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: bad\nspec:\n  accessControl:\n    defaultAction: maybe\n"), 0o644)
	p := proc.For(t).Start("bad sidecar", sidecarBin, nil, "--app-id", "bad", "--dapr-http-port", "0", "--dapr-grpc-port", "0",
		"--dapr-internal-grpc-port", "0", "--metrics-port", "0", "--registry-dir", w.registry, "--config", bad)
	if code := proc.For(t).ExitCode(p, 10e9); code == 0 || !strings.Contains(p.Out.String(), `spec.accessControl.defaultAction: action "maybe" is not valid; accepted: allow, deny`) {
		t.Errorf("exit %d: %s", code, p.Out.String())
	}
}

// A Content-Type the calling app picks does not make its call a gRPC one:
// verb rules apply to every call but those proxied from the gRPC port.
func TestAccessControlNoVerbBypass(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "acl.yaml")
	if err := os.WriteFile(conf, []byte(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: acl
spec:
  accessControl:
    defaultAction: deny
    policies:
    - appId: front
      defaultAction: deny
      operations:
      - name: /items/*
        httpVerb: ["GET"]
        action: allow
`), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	app := newRecordingApp(t)
	callee := w.sidecar("orders", app.port, "--config", conf, "--app-protocol", "h2c")
	front := w.sidecar("front", 0)
	callee.waitHealthy(t)
	for _, ct := range []string{"application/grpc", "application/grpc+proto", "application/grpc; charset=utf-8"} {
		resp, b := do(t, "DELETE", front.url+"/v1.0/invoke/orders/method/items/1", nil, http.Header{"Content-Type": {ct}})
		if resp.StatusCode != 403 || !strings.Contains(string(b), "ERR_PERMISSION_DENIED") {
			t.Errorf("DELETE with Content-Type %s: %d %s, want 403", ct, resp.StatusCode, b)
		}
	}
	if n := app.received(); n != 0 {
		t.Fatalf("the app received %d calls the policy denies", n)
	}
	if resp, b := do(t, "GET", front.url+"/v1.0/invoke/orders/method/items/1", nil, nil); resp.StatusCode != 200 || app.received() != 1 {
		t.Errorf("allowed GET: %d %s, app received %d", resp.StatusCode, b, app.received())
	}
}
