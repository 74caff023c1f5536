// Package dashboard_test runs the dashboard against real sidecars and apps
// on loopback: its API and its page, in headless Chromium where installed,
// show what the sidecars report, follow them as they stop, and show every
// value as text.
package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/tandem-run/tandem/internal/release"
	"github.com/tandem-run/tandem/internal/testutil/chromium"
	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

var sidecarBin, testappBin, dashboardBin string

// listenWait bounds the wait for a process of a test to listen.
const listenWait = 15 * time.Second

// hostile is a component name and pub/sub name that is markup if a page
// ever treats it as HTML. (Component names cannot hold ' ' or '/'.)
const hostile = "<script>alert(1)<script><img\tsrc=x\tonerror=alert(2)>"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-dashboard-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sidecarBin = filepath.Join(dir, "sidecar")
	testappBin = filepath.Join(dir, "testapp")
	dashboardBin = filepath.Join(dir, "dashboard")
	for bin, pkg := range map[string]string{
		sidecarBin:   "github.com/tandem-run/tandem/cmd/sidecar",
		testappBin:   "github.com/tandem-run/tandem/tests/e2e/testapp",
		dashboardBin: "github.com/tandem-run/tandem/cmd/dashboard",
	} {
		cmd := release.Command(context.Background(), "", pkg, bin, "")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// apps is the part of GET /api/apps the tests read.
type apps struct {
	Apps []struct {
		AppID          string `json:"appId"`
		Health         string `json:"health"`
		HealthError    string `json:"healthError"`
		Metadata       string `json:"metadata"`
		RuntimeVersion string `json:"runtimeVersion"`
		Components     []struct {
			Name, Type, Version string
		} `json:"components"`
		Subscriptions []struct {
			PubsubName string `json:"pubsubname"`
			Topic      string `json:"topic"`
		} `json:"subscriptions"`
		Rejected []struct {
			Source string `json:"source"`
			Error  string `json:"error"`
		} `json:"rejected"`
		InUse []struct {
			Kind, Name, Version, Source string
		} `json:"inUse"`
		SpiffeID   string     `json:"spiffeId"`
		CertExpiry *time.Time `json:"certExpiry"`
	} `json:"apps"`
}

// mesh is the registry, sidecars and dashboard of a test.
type mesh struct {
	t        *testing.T
	registry string
	dash     string // the dashboard's base URL
	resDir   string // the resources folder of "orders"
}

// sidecar starts a sidecar for appID in the mesh's registry; appPort 0
// means no app.
func (m *mesh) sidecar(appID string, appPort int, env []string, extra ...string) *proc.Proc {
	m.t.Helper()
	pt := proc.For(m.t)
	ports, err := proc.FreePorts(2)
	if err != nil {
		m.t.Fatal(err)
	}
	args := []string{
		"--app-id", appID,
		"--dapr-http-port", strconv.Itoa(ports[0]),
		"--dapr-grpc-port", strconv.Itoa(ports[1]),
		"--dapr-internal-grpc-port", "0",
		"--metrics-port", "0",
		"--dapr-listen-addresses", "127.0.0.1",
		"--registry-dir", m.registry,
	}
	if appPort != 0 {
		args = append(args, "--app-port", strconv.Itoa(appPort))
	}
	p := pt.Start("sidecar "+appID, sidecarBin, env, append(args, extra...)...)
	pt.WaitTCP("127.0.0.1:"+strconv.Itoa(ports[0]), listenWait)
	return p
}

// app starts a testapp with env and returns its port.
func (m *mesh) app(name string, env ...string) (int, *proc.Proc) {
	pt := proc.For(m.t)
	port := pt.FreePort()
	p := pt.Start(name, testappBin, append([]string{"APP_PORT=" + strconv.Itoa(port)}, env...))
	pt.WaitTCP("127.0.0.1:"+strconv.Itoa(port), listenWait)
	return port, p
}

// startDashboard starts the dashboard on a free loopback port.
func (m *mesh) startDashboard() {
	pt := proc.For(m.t)
	port := pt.FreePort()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	pt.Start("dashboard", dashboardBin, nil, "--listen", addr, "--registry-dir", m.registry)
	pt.WaitTCP(addr, listenWait)
	m.dash = "http://" + addr
}

// get reads the dashboard's GET /api/apps.
func (m *mesh) get() (apps, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.dash+"/api/apps", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return apps{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return apps{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return apps{}, fmt.Errorf("GET /api/apps: %s: %s", resp.Status, b)
	}
	var a apps
	if err := json.Unmarshal(b, &a); err != nil {
		return apps{}, fmt.Errorf("GET /api/apps: %v: %s", err, b)
	}
	return a, nil
}

// await polls the API until ok holds of its answer, for up to d.
func (m *mesh) await(what string, d time.Duration, ok func(apps) bool) apps {
	m.t.Helper()
	deadline := time.Now().Add(d)
	var last apps
	var err error
	for time.Now().Before(deadline) {
		if last, err = m.get(); err == nil && ok(last) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	m.t.Fatalf("%s: not within %s (last error %v); last answer:\n%s", what, d, err, b)
	return last
}

func byID(a apps, id string) (int, bool) {
	for i, app := range a.Apps {
		if app.AppID == id {
			return i, true
		}
	}
	return -1, false
}

// startMesh starts the apps of the tests: "orders", whose sidecar has a
// pub/sub component named hostile that the app subscribes to, a
// Configuration "appconfig" and a Resiliency "calls"; "billing",
// whose app is health-checked every second; and "locked", whose sidecar
// requires an API token. Then the dashboard.
func startMesh(t *testing.T) (*mesh, map[string]*proc.Proc) {
	m := &mesh{t: t, registry: t.TempDir()}
	res := t.TempDir()
	if err := os.WriteFile(filepath.Join(res, "pubsub.yaml"), resources.PubSubYAML(strconv.Quote(hostile), "pubsub.in-memory"), 0o644); err != nil {
		t.Fatal(err)
	}
	resiliency := "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: calls}\nspec:\n  policies:\n    timeouts: {quick: 2s}\n  targets:\n    apps:\n      billing: {timeout: quick}\n"
	if err := os.WriteFile(filepath.Join(res, "resiliency.yaml"), []byte(resiliency), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "appconfig.yaml")
	if err := os.WriteFile(conf, []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: appconfig}\nspec: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	subs, _ := json.Marshal([]map[string]string{{"pubsubname": hostile, "topic": "orders", "route": "/events/orders"}})
	procs := map[string]*proc.Proc{}
	ordersPort, _ := m.app("orders app", "SUBSCRIBE="+string(subs))
	procs["orders"] = m.sidecar("orders", ordersPort, nil, "--resources-path", res, "--config", conf)
	billingPort, billingApp := m.app("billing app")
	procs["billing app"] = billingApp
	procs["billing"] = m.sidecar("billing", billingPort, nil,
		"--enable-app-health-check", "--app-health-probe-interval", "1", "--app-health-probe-timeout", "500", "--app-health-threshold", "1", "--app-health-check-path", "/status/200")
	procs["locked"] = m.sidecar("locked", 0, []string{"DAPR_API_TOKEN=not-for-the-dashboard"})
	m.startDashboard()
	m.resDir = res
	return m, procs
}

// TestAPI: the API lists every running app with its health, version,
// components and subscriptions; a sidecar that requires a token shows as
// "token required"; a refused change shows with its reason; an app that
// stops turns unhealthy, and a sidecar that stops leaves the list, each
// within a bound.
func TestAPI(t *testing.T) {
	m, procs := startMesh(t)
	a := m.await("three apps, orders and billing healthy with their metadata", 30*time.Second, func(a apps) bool {
		if len(a.Apps) != 3 {
			return false
		}
		o, _ := byID(a, "orders")
		b, _ := byID(a, "billing")
		l, _ := byID(a, "locked")
		return o >= 0 && b >= 0 && l >= 0 &&
			a.Apps[o].Health == "healthy" && a.Apps[o].Metadata == "ok" &&
			a.Apps[b].Health == "healthy" && a.Apps[b].Metadata == "ok" &&
			len(a.Apps[o].Subscriptions) == 1 && a.Apps[l].Metadata == "ok"
	})
	o, _ := byID(a, "orders")
	orders := a.Apps[o]
	found := false
	for _, c := range orders.Components {
		found = found || c.Name == hostile && c.Type == "pubsub.in-memory" && c.Version == "v1"
	}
	if !found {
		t.Errorf("orders' components %+v, want a pubsub.in-memory v1 named %q", orders.Components, hostile)
	}
	if s := orders.Subscriptions[0]; s.PubsubName != hostile || s.Topic != "orders" {
		t.Errorf("orders' subscription %+v", s)
	}
	if orders.RuntimeVersion == "" {
		t.Error("orders has no runtime version")
	}
	// Its mutual TLS identity, from the local CA, and the Configuration
	// and Resiliency in force.
	if orders.SpiffeID != "spiffe://public/ns/default/orders" || orders.CertExpiry == nil ||
		!orders.CertExpiry.After(time.Now()) || orders.CertExpiry.After(time.Now().Add(25*time.Hour)) {
		t.Errorf("orders' identity %q, certificate expiry %v; want spiffe://public/ns/default/orders, within the next 24 h", orders.SpiffeID, orders.CertExpiry)
	}
	var policies []string
	for _, r := range orders.InUse {
		if r.Kind == "Configuration" || r.Kind == "Resiliency" {
			policies = append(policies, r.Kind+" "+r.Name)
			if r.Version == "" || r.Source == "" {
				t.Errorf("orders' %s %s: no version or file: %+v", r.Kind, r.Name, r)
			}
		}
	}
	if strings.Join(policies, ", ") != "Configuration appconfig, Resiliency calls" {
		t.Errorf("orders' configurations and resiliency policies in force: %v; want Configuration appconfig, Resiliency calls", policies)
	}
	// locked requires an API token: the dashboard, which has none, reads
	// it through the read-only route of its metrics port, which the
	// registry names, and shows no token.
	l, _ := byID(a, "locked")
	if a.Apps[l].Health != "healthy" || a.Apps[l].RuntimeVersion == "" {
		t.Errorf("locked: %+v; want healthy, its metadata read through its metrics port", a.Apps[l])
	}
	var raw json.RawMessage
	getJSON(t, m.dash+"/api/apps", &raw)
	if strings.Contains(string(raw), "not-for-the-dashboard") {
		t.Errorf("the API token is in /api/apps: %s", raw)
	}

	// The map reads every sidecar's metrics, locked's too.
	var mm struct {
		Sidecars int
		Unread   []struct{ AppID, Error string }
	}
	getJSON(t, m.dash+"/api/map?window=1m", &mm)
	if mm.Sidecars != 3 || len(mm.Unread) != 0 {
		t.Errorf("the map read %d sidecars, not %+v; want all three read", mm.Sidecars, mm.Unread)
	}

	// A change the sidecar refuses shows with its reason.
	bad := []byte("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: broken\nspec:\n  type: state.nosuch\n  version: v1\n")
	if err := os.WriteFile(filepath.Join(m.resDir, "broken.yaml"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	m.await("the refused change of orders", 30*time.Second, func(a apps) bool {
		i, ok := byID(a, "orders")
		return ok && len(a.Apps[i].Rejected) == 1 && strings.HasSuffix(a.Apps[i].Rejected[0].Source, "broken.yaml") &&
			strings.Contains(a.Apps[i].Rejected[0].Error, "state.nosuch")
	})

	// billing's app stops: unhealthy within 20 s (its probe runs every second).
	if err := procs["billing app"].Stop(os.Interrupt, 5*time.Second); err != nil {
		t.Logf("stopping billing's app: %v", err)
	}
	m.await("billing unhealthy once its app stopped", 20*time.Second, func(a apps) bool {
		i, ok := byID(a, "billing")
		return ok && a.Apps[i].Health == "unhealthy"
	})
	// billing's sidecar stops: gone within 20 s.
	if err := procs["billing"].Stop(os.Interrupt, 10*time.Second); err != nil {
		t.Logf("stopping billing's sidecar: %v", err)
	}
	m.await("billing gone once its sidecar stopped", 20*time.Second, func(a apps) bool {
		_, ok := byID(a, "billing")
		return !ok && len(a.Apps) == 2
	})
}

// TestRefusesNonLoopback: the dashboard will not bind an address other
// than loopback without --allow-remote, and says why.
func TestRefusesNonLoopback(t *testing.T) {
	pt := proc.For(t)
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		p := pt.Start("dashboard "+addr, dashboardBin, nil, "--listen", addr, "--registry-dir", t.TempDir())
		if code := pt.ExitCode(p, 15*time.Second); code != 2 || !strings.Contains(p.Out.String(), "binds loopback only") {
			t.Errorf("--listen %s: exit code %d, output %q; want 2 and why", addr, code, p.Out.String())
		}
	}
}

// TestPage drives the page in headless Chromium: it lists the apps with
// their health and components, shows the hostile component name as text
// (no element made of it, no script run), and follows a stopped sidecar
// without a reload.
func TestPage(t *testing.T) {
	chromePath := chromium.Need(t)
	m, procs := startMesh(t)
	ctx := chromium.Start(t, chromePath, 90*time.Second)
	var alerted atomic.Bool
	chromedp.ListenTarget(ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			alerted.Store(true)
			go func() { _ = chromedp.Run(ctx, page.HandleJavaScriptDialog(false)) }()
		}
	})
	// orders publishes to its pub/sub named hostile: the map draws the
	// topic, whose name is markup, as a node.
	ordersURL := sidecarURL(t, m, "orders")
	post(t, ordersURL+"/v1.0/publish/"+url.PathEscape(hostile)+"/orders", `{"n":1}`, http.StatusNoContent)
	var shown, topic string
	err := chromedp.Run(ctx,
		chromedp.Navigate(m.dash+"/"),
		chromium.Poll(`document.querySelector('#apps tr[data-app-id="orders"][data-health="healthy"]') !== null && `+
			`document.querySelector('#apps tr[data-app-id="billing"][data-health="healthy"]') !== null && `+
			`document.querySelector('#apps tr[data-app-id="locked"][data-metadata="ok"]') !== null && `+
			`document.querySelectorAll('#subscriptions tbody tr').length === 1 && `+
			`document.querySelector('#map g[data-topic] text') !== null && document.getElementById("traces-section").hidden && `+ // no trace store, no traces
			`document.querySelector('#apps tr[data-app-id="orders"][data-spiffe-id="spiffe://public/ns/default/orders"] td[data-expiry]') !== null && `+
			`document.querySelector('#policies tr[data-app-id="orders"][data-kind="Resiliency"][data-name="calls"]') !== null && `+
			`document.querySelector('#policies tr[data-app-id="orders"][data-kind="Configuration"][data-name="appconfig"]') !== null`),
		chromedp.Evaluate(`[...document.querySelectorAll('#components tr[data-app-id="orders"]')].map(r => r.children[1].textContent).join("\n")`, &shown),
		chromedp.Evaluate(`document.querySelector('#map g[data-topic] text').textContent`, &topic),
	)
	if err != nil {
		t.Fatalf("loading the page: %v (page: %s)", err, chromium.PageText(ctx))
	}
	if !strings.Contains(shown, hostile) {
		t.Errorf("orders' components shown as %q, want the name %q as text", shown, hostile)
	}
	if topic != hostile+"/orders" {
		t.Errorf("the map's topic shown as %q, want %q as text", topic, hostile+"/orders")
	}
	var scripts, imgs int
	if err := chromedp.Run(ctx,
		chromedp.Evaluate(`document.querySelectorAll("script").length`, &scripts),
		chromedp.Evaluate(`document.querySelectorAll("img").length`, &imgs),
	); err != nil {
		t.Fatal(err)
	}
	if scripts != 1 || imgs != 0 || alerted.Load() {
		t.Errorf("the page has %d scripts, %d images, alert run: %v; want its own one script, no image, no alert", scripts, imgs, alerted.Load())
	}

	// billing's sidecar stops: its row goes without a reload.
	if err := procs["billing"].Stop(os.Interrupt, 10*time.Second); err != nil {
		t.Logf("stopping billing's sidecar: %v", err)
	}
	if err := chromedp.Run(ctx, chromium.Poll(`document.querySelector('#apps tr[data-app-id="billing"]') === null && document.querySelectorAll('#apps tbody tr').length === 2`)); err != nil {
		t.Fatalf("billing still shown after its sidecar stopped: %v (page: %s)", err, chromium.PageText(ctx))
	}
}
