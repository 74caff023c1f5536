package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/tandem-run/tandem/internal/testutil/jaegerquery"
	"github.com/tandem-run/tandem/internal/testutil/kubecluster"
	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
	"github.com/tandem-run/tandem/internal/testutil/toolbin"
)

// Hot reload end to end: real sidecars, real redis-servers and a real
// collector, resources changed while a steady load of writes runs.

// reloadStatus is the metadata's "resources" (ours: daprd has no such
// field).
type reloadStatus struct {
	HotReload bool `json:"hotReload"`
	InUse     []struct {
		Kind, Name, Source, Version string
	} `json:"inUse"`
	Rejected []struct {
		Kind, Name, Source, Version, Error string
	} `json:"rejected"`
}

func resourcesOf(t *testing.T, url string) reloadStatus {
	t.Helper()
	_, b := do(t, "GET", url+"/v1.0/metadata", nil, nil)
	var m struct {
		Resources reloadStatus `json:"resources"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("metadata %s: %v", b, err)
	}
	return m.Resources
}

// version is the version in use of a resource, "" when none.
func (s reloadStatus) version(kind, name string) string {
	for _, r := range s.InUse {
		if r.Kind == kind && r.Name == name {
			return r.Version
		}
	}
	return ""
}

// rejection is the error of a rejected version of a resource, "" when none.
func (s reloadStatus) rejection(name string) string {
	for _, r := range s.Rejected {
		if r.Name == name || strings.HasSuffix(r.Source, "/"+name+".yaml") || strings.HasSuffix(r.Source, "/"+name) {
			return r.Error
		}
	}
	return ""
}

// waitFor polls cond every 20ms for up to 30s, and returns how long it
// took.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("after 30 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// writeLoad saves keys through a sidecar without ETags, from a few
// goroutines, as fast as it answers, and counts what fails.
type writeLoad struct {
	url        string
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	wg         sync.WaitGroup
	seq        atomic.Int64
}

func startWrites(url string, workers int) *writeLoad {
	l := &writeLoad{url: url, stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	for range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				n := l.seq.Add(1)
				body := fmt.Sprintf(`[{"key":"load-%d","value":%d}]`, n, n)
				resp, err := client.Post(l.url+"/v1.0/state/statestore", "application/json", strings.NewReader(body))
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusNoContent {
						err = fmt.Errorf("%d %s", resp.StatusCode, b)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		})
	}
	return l
}

// end stops the load and fails the test if any write failed.
func (l *writeLoad) end(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("writes without ETags: %d succeeded, %d failed", l.ok.Load(), l.failed.Load())
	if l.failed.Load() != 0 || l.ok.Load() == 0 {
		t.Errorf("%d of %d writes failed: %v", l.failed.Load(), l.ok.Load()+l.failed.Load(), l.errs)
	}
}

// metricValue reads one sample of the sidecar's metrics.
func metricValue(t *testing.T, url, name, labels string) float64 {
	t.Helper()
	_, b := do(t, "GET", url+"/metrics", nil, nil)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+"{"+labels+"}") + ` (\S+)$`)
	m := re.FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// storedIn reports whether redis holds the sidecar's key.
func storedIn(t *testing.T, addr, appID, key string) bool {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	n, err := c.Exists(context.Background(), appID+"||"+key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// spansSince counts the spans of service the collector holds that started
// at or after since.
func (j *jaeger) spansSince(t *testing.T, service string, since time.Time) int {
	t.Helper()
	url := fmt.Sprintf("%s/api/traces?service=%s&start=%d&end=%d&limit=10000", j.queryURL, service, since.UnixMicro(), time.Now().Add(time.Minute).UnixMicro())
	traces, err := jaegerquery.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tr := range traces {
		for _, s := range tr {
			if s.StartTime >= since.UnixMicro() {
				n++
			}
		}
	}
	return n
}

// saveFile writes a file as editors save: a new file renamed over the old.
func saveFile(t *testing.T, path string, b []byte) time.Time {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

func tracingConfig(name, zipkin, rate, accessControl string) []byte {
	return []byte(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: ` + name + `
spec:
  tracing:
    samplingRate: "` + rate + `"
    zipkin:
      endpointAddress: "` + zipkin + `"
` + accessControl)
}

const denyFront = `  accessControl:
    defaultAction: allow
    policies:
    - appId: front
      defaultAction: deny
`

// reloadTarget is how a test changes resources: files in standalone mode,
// objects of the API server in kubernetes mode. kind is Component,
// Configuration or Resiliency.
type reloadTarget struct {
	put func(kind, name string, yaml []byte) // create or replace
	del func(kind, name string)
}

func resiliencyTimeout(timeout string) []byte {
	return []byte(`apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: addapp-timeout
scopes: [front]
spec:
  policies:
    timeouts:
      short: ` + timeout + `
  targets:
    apps:
      addapp: {timeout: short}
`)
}

// runReloadScenario changes front's and addapp's resources under a steady
// load of writes through front, and checks each change end to end. front
// starts with statestore on redis a, and the Configuration frontconfig
// tracing to the collector with samplingRate "0"; addapp with
// addappconfig, the same without access control.
func runReloadScenario(t *testing.T, ch reloadTarget, front, addapp *sidecar, j *jaeger, a, b *redisserver.Server) {
	metrics := "http://127.0.0.1:" + strconv.Itoa(getMetadata(t, front).Ports["metrics"])
	resp, body := do(t, "POST", front.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"before","value":1}]`), nil)
	if resp.StatusCode != 204 || !storedIn(t, a.Addr, "front", "before") {
		t.Fatalf("a write before any change: %d %s, or not in redis a", resp.StatusCode, body)
	}
	if !resourcesOf(t, front.url).HotReload {
		t.Fatal("metadata says hot reload is off")
	}
	// What an ETag writer holds before the switch.
	resp, _ = do(t, "GET", front.url+"/v1.0/state/statestore/before", nil, nil)
	etag := resp.Header.Get("ETag")

	load := startWrites(front.url, 4)
	defer func() {
		if load != nil {
			load.end(t)
		}
	}()
	time.Sleep(300 * time.Millisecond)

	// 1. statestore to redis b: new writes land there, none fails.
	v := resourcesOf(t, front.url).version("Component", "statestore")
	ch.put("Component", "statestore", resources.RedisYAML("statestore", b.Addr))
	took := waitFor(t, "statestore repointed to redis b", func() bool {
		return resourcesOf(t, front.url).version("Component", "statestore") != v
	})
	t.Logf("repoint statestore: in force %s after the change", took.Round(time.Millisecond))
	resp, body = do(t, "POST", front.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"after","value":1}]`), nil)
	if resp.StatusCode != 204 || !storedIn(t, b.Addr, "front", "after") || storedIn(t, a.Addr, "front", "after") {
		t.Errorf("a write after the switch: %d %s; want it in redis b only", resp.StatusCode, body)
	}
	time.Sleep(300 * time.Millisecond)
	if n := load.seq.Load(); !storedIn(t, b.Addr, "front", "load-"+strconv.FormatInt(n-8, 10)) {
		t.Errorf("a write of the load after the switch is not in redis b")
	}
	// An ETag writer: its ETag is redis a's; redis b has no such key.
	resp, body = do(t, "POST", front.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"before","value":2,"etag":"`+etag+`"}]`), nil)
	if resp.StatusCode != 409 || !strings.Contains(string(body), "ERR_STATE_SAVE") {
		t.Errorf("a write with an ETag of the old store: %d %s; want 409 ERR_STATE_SAVE", resp.StatusCode, body)
	}

	// 2. A broken change: refused, visible in the metadata and the metric;
	// redis b keeps serving.
	rejectedBefore := metricValue(t, metrics, "tandem_resource_reloads_total", `kind="Component",outcome="rejected"`)
	ch.put("Component", "statestore", resources.RedisYAML("statestore", a.Addr, "redisDB", "16"))
	took = waitFor(t, "the broken Component visible in the metadata", func() bool {
		return strings.Contains(resourcesOf(t, front.url).rejection("statestore"), "redisDB")
	})
	t.Logf("broken Component: rejection visible %s after the change", took.Round(time.Millisecond))
	if got := metricValue(t, metrics, "tandem_resource_reloads_total", `kind="Component",outcome="rejected"`); got != rejectedBefore+1 {
		t.Errorf("tandem_resource_reloads_total rejected: %v, want %v", got, rejectedBefore+1)
	}
	if got := metricValue(t, metrics, "tandem_resources_rejected", `kind="Component"`); got != 1 {
		t.Errorf("tandem_resources_rejected: %v, want 1", got)
	}
	resp, _ = do(t, "POST", front.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"broken","value":1}]`), nil)
	if resp.StatusCode != 204 || !storedIn(t, b.Addr, "front", "broken") {
		t.Errorf("a write after the broken change: %d; want it in redis b", resp.StatusCode)
	}

	// 3. An access control policy on addapp: front's calls refused.
	call := func() int {
		resp, _ := do(t, "GET", front.url+"/v1.0/invoke/addapp/method/echo/hi", nil, nil)
		return resp.StatusCode
	}
	if got := call(); got != 200 {
		_, b := do(t, "GET", front.url+"/v1.0/invoke/addapp/method/echo/hi", nil, nil)
		t.Fatalf("front calls addapp: %d %s", got, b)
	}
	ch.put("Configuration", "addappconfig", tracingConfig("addappconfig", j.zipkinURL, "0", denyFront))
	took = waitFor(t, "front's calls refused", func() bool { return call() == 403 })
	t.Logf("access control policy added: calls refused %s after the change", took.Round(time.Millisecond))

	// 4. Sampling on: front's spans reach the collector; off: they stop.
	v = resourcesOf(t, front.url).version("Configuration", "frontconfig")
	ch.put("Configuration", "frontconfig", tracingConfig("frontconfig", j.zipkinURL, "1", ""))
	took = waitFor(t, "front's sampling on", func() bool { return resourcesOf(t, front.url).version("Configuration", "frontconfig") != v })
	t.Logf("sampling on: in force %s after the change", took.Round(time.Millisecond))
	on := time.Now()
	for range 5 {
		call()
	}
	took = waitFor(t, "front's spans at the collector", func() bool { return j.spansSince(t, "front", on) > 0 })
	t.Logf("sampling on: spans at the collector %s after the calls", took.Round(time.Millisecond))
	v = resourcesOf(t, front.url).version("Configuration", "frontconfig")
	ch.put("Configuration", "frontconfig", tracingConfig("frontconfig", j.zipkinURL, "0", ""))
	waitFor(t, "front's sampling off", func() bool { return resourcesOf(t, front.url).version("Configuration", "frontconfig") != v })
	off := time.Now()
	for range 5 {
		call()
	}
	time.Sleep(3 * time.Second) // spans are exported within a second
	if n := j.spansSince(t, "front", off); n != 0 {
		t.Errorf("%d spans of front's calls after sampling was turned off", n)
	}

	// 5. Access control lifted; a Resiliency timeout for calls to addapp:
	// a call that never answers is cut at it; the resource deleted, no
	// longer.
	ch.put("Configuration", "addappconfig", tracingConfig("addappconfig", j.zipkinURL, "0", ""))
	took = waitFor(t, "front's calls allowed again", func() bool { return call() == 200 })
	t.Logf("access control policy removed: calls allowed %s after the change", took.Round(time.Millisecond))
	slow := func() (int, time.Duration) {
		start := time.Now()
		req, _ := http.NewRequest("GET", front.url+"/v1.0/invoke/addapp/method/slow", nil)
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
		if err != nil {
			return 0, time.Since(start) // no answer: no timeout of ours
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	ch.put("Resiliency", "addapp-timeout", resiliencyTimeout("300ms"))
	took = waitFor(t, "the resiliency timeout applied", func() bool {
		code, _ := slow()
		return code == 500
	})
	t.Logf("Resiliency added: calls cut at its timeout %s after the change", took.Round(time.Millisecond))
	if code, d := slow(); code != 500 || d > 1500*time.Millisecond {
		t.Errorf("a call under the timeout: %d after %s", code, d)
	}
	ch.del("Resiliency", "addapp-timeout")
	waitFor(t, "the resiliency timeout gone", func() bool {
		code, _ := slow()
		return code == 0
	})

	load.end(t)
	load = nil

	// 6. statestore deleted: ERR_STATE_STORE_NOT_FOUND from then on.
	ch.del("Component", "statestore")
	took = waitFor(t, "statestore gone", func() bool {
		resp, _ := do(t, "GET", front.url+"/v1.0/state/statestore/after", nil, nil)
		return resp.StatusCode == 400
	})
	t.Logf("Component deleted: not found %s after the change", took.Round(time.Millisecond))
	resp, body = do(t, "GET", front.url+"/v1.0/state/statestore/after", nil, nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "ERR_STATE_STORE_NOT_FOUND") {
		t.Errorf("a deleted store: %d %s", resp.StatusCode, body)
	}
}

// TestHotReloadStandalone: files in --resources-path and the --config files
// changed as editors save them.
func TestHotReloadStandalone(t *testing.T) {
	a, b := redisserver.Start(t), redisserver.Start(t)
	j := startJaeger(t)
	dir, confDir := t.TempDir(), t.TempDir()
	saveFile(t, filepath.Join(dir, "statestore.yaml"), resources.RedisYAML("statestore", a.Addr))
	frontConf, addappConf := filepath.Join(confDir, "front.yaml"), filepath.Join(confDir, "addapp.yaml")
	saveFile(t, frontConf, tracingConfig("frontconfig", j.zipkinURL, "0", ""))
	saveFile(t, addappConf, tracingConfig("addappconfig", j.zipkinURL, "0", ""))
	w := newWorld(t)
	appPort, _ := w.app("addapp")
	addapp := w.sidecar("addapp", appPort, "--config", addappConf)
	front := w.sidecar("front", 0, "--resources-path", dir, "--config", frontConf)
	addapp.waitHealthy(t)
	path := func(kind, name string) string {
		if kind == "Configuration" {
			return filepath.Join(confDir, strings.TrimSuffix(name, "config")+".yaml")
		}
		return filepath.Join(dir, name+".yaml")
	}
	ch := reloadTarget{
		put: func(kind, name string, y []byte) { saveFile(t, path(kind, name), y) },
		del: func(kind, name string) {
			if err := os.Remove(path(kind, name)); err != nil {
				t.Fatal(err)
			}
		},
	}
	runReloadScenario(t, ch, front, addapp, j, a, b)
}

// With --enable-hot-reload=false, or the Configuration's HotReload feature
// disabled, changes wait for a restart.
func TestHotReloadOff(t *testing.T) {
	for name, c := range map[string]struct {
		flag    []string
		feature string
	}{
		"flag":    {flag: []string{"--enable-hot-reload=false"}},
		"feature": {feature: "  features:\n  - name: HotReload\n    enabled: false\n"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "cache.yaml")
			memory := func(prefix string) []byte {
				return []byte("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\nspec:\n  type: state.in-memory\n  version: v1\n  metadata:\n  - name: keyPrefix\n    value: " + prefix + "\n")
			}
			saveFile(t, path, memory("none"))
			conf := filepath.Join(dir, "config.yaml")
			saveFile(t, conf, []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n"+c.feature))
			s := newWorld(t).sidecar("front", 0, append([]string{"--resources-path", dir, "--config", conf}, c.flag...)...)
			st := resourcesOf(t, s.url)
			if st.HotReload || st.version("Component", "cache") == "" {
				t.Fatalf("resources %+v; want hot reload off, cache in use", st)
			}
			saveFile(t, path, memory("name"))
			time.Sleep(2 * time.Second)
			if got := resourcesOf(t, s.url); got.version("Component", "cache") != st.version("Component", "cache") {
				t.Errorf("a change was applied with hot reload off: %+v", got)
			}
		})
	}
}

// TestHotReloadKubernetes: the same changes as objects of a real API server,
// to sidecars in kubernetes mode reading it with a service account that has
// the chart's RBAC and nothing more; and Components the chart's CRD refuses
// at kubectl apply.
func TestHotReloadKubernetes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane")
	}
	a, b := redisserver.Start(t), redisserver.Start(t)
	j := startJaeger(t)
	c := kubecluster.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The chart: its CRDs, and its RBAC for sidecars (bound to every
	// service account).
	if out, err := exec.Command(toolbin.Path(t, "helm"), "install", "tandem", "../../charts/tandem", "--kubeconfig", c.Kubeconfig,
		"--namespace", "tandem-system", "--create-namespace", "--set", "sidecar.secretNames={redis-auth}", "--timeout", "60s").CombinedOutput(); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	dyn := dynamic.NewForConfigOrDie(c.Config)
	gvr := func(kind string) dynamic.ResourceInterface {
		plural := map[string]string{"Component": "components", "Configuration": "configurations", "Resiliency": "resiliencies"}[kind]
		return dyn.Resource(schema.GroupVersionResource{Group: "dapr.io", Version: "v1alpha1", Resource: plural}).Namespace("default")
	}
	put := func(kind, name string, y []byte) error {
		var m map[string]any
		if err := sigsyaml.Unmarshal(y, &m); err != nil {
			t.Fatal(err)
		}
		o := &unstructured.Unstructured{Object: m}
		r := gvr(kind)
		cur, err := r.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = r.Create(ctx, o, metav1.CreateOptions{})
			return err
		} else if err != nil {
			return err
		}
		o.SetResourceVersion(cur.GetResourceVersion())
		_, err = r.Update(ctx, o, metav1.UpdateOptions{})
		return err
	}
	ch := reloadTarget{
		put: func(kind, name string, y []byte) {
			if err := retry(ctx, func() error { return put(kind, name, y) }); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
		},
		del: func(kind, name string) {
			if err := gvr(kind).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatalf("deleting %s %s: %v", kind, name, err)
			}
		},
	}
	ch.put("Component", "statestore", resources.RedisYAML("statestore", a.Addr))
	ch.put("Configuration", "frontconfig", tracingConfig("frontconfig", j.zipkinURL, "0", ""))
	ch.put("Configuration", "addappconfig", tracingConfig("addappconfig", j.zipkinURL, "0", ""))

	// Components the CRD refuses: kubectl apply says why.
	for name, y := range map[string]string{
		"no spec":             "metadata:\n  name: bad\n",
		"a type without kind": "metadata:\n  name: bad\nspec:\n  type: redis\n  version: v1\n  metadata: []\n",
		"an item unnamed":     "metadata:\n  name: bad\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - value: x\n",
		"a secret unnamed":    "metadata:\n  name: bad\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisPassword\n    secretKeyRef: {key: k}\n",
		"metadata not a list": "metadata:\n  name: bad\nspec:\n  type: state.redis\n  version: v1\n  metadata: {redisHost: x}\n",
	} {
		err := put("Component", "bad", []byte("apiVersion: dapr.io/v1alpha1\nkind: Component\n"+y))
		if !apierrors.IsInvalid(err) {
			t.Errorf("%s: %v; want the API server to refuse it", name, err)
		}
	}

	// addapp's sidecar listens on an address of this host's network, found
	// through CoreDNS and its headless Service, as in TestKubernetesMode.
	hostIP := hostAddress(t)
	internal := proc.For(t).FreePort()
	if _, err := c.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "addapp-dapr"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "dapr-internal", Port: int32(internal)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready, proto, portName, port := true, corev1.ProtocolTCP, "dapr-internal", int32(internal)
	if _, err := c.Client.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "addapp-dapr-1", Labels: map[string]string{discoveryv1.LabelServiceName: "addapp-dapr"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{hostIP}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Protocol: &proto, Port: &port}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dnsAddr := startCoreDNS(t, c, "addapp-dapr.default.svc.cluster.local")

	// A service account of its own: what the chart grants sidecars.
	if _, err := c.Client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, "apps", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(tok.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"NAMESPACE=default", "TANDEM_KUBE_API=" + c.URL, "TANDEM_KUBE_TOKEN_FILE=" + tokenFile, "TANDEM_KUBE_CA_FILE=" + c.CAFile}
	kubeSidecar := func(id, config, ip string, appPort int) *sidecar {
		pt := proc.For(t)
		httpPort := pt.FreePort()
		args := []string{"--mode", "kubernetes", "--app-id", id, "--config", config,
			"--dapr-http-port", strconv.Itoa(httpPort), "--dapr-grpc-port", "0", "--metrics-port", "0",
			"--dapr-listen-addresses", "127.0.0.1",
			"--dapr-internal-grpc-port", strconv.Itoa(internal), "--dapr-internal-listen-address", ip,
			"--kubernetes-dns-server", dnsAddr, "--kubernetes-secret-poll", "1s", "--log-level", "debug"}
		if appPort != 0 {
			args = append(args, "--app-port", strconv.Itoa(appPort))
		}
		s := &sidecar{Proc: pt.Start("sidecar "+id, sidecarBin, env, args...), appID: id, httpPort: httpPort, url: "http://127.0.0.1:" + strconv.Itoa(httpPort)}
		pt.WaitTCP("127.0.0.1:"+strconv.Itoa(httpPort), listenWait)
		return s
	}
	appPort, _ := newWorld(t).app("addapp")
	addapp := kubeSidecar("addapp", "addappconfig", hostIP, appPort)
	// The same internal port on another address: peers are called on the
	// caller's own port, as in a cluster.
	front := kubeSidecar("front", "frontconfig", "127.0.0.2", 0)
	addapp.waitHealthy(t)
	runReloadScenario(t, ch, front, addapp, j, a, b)
	secretKeyRefs(t, ctx, c, ch, front)
	st := resourcesOf(t, front.url)
	for _, r := range st.InUse {
		if r.Kind == "Configuration" && (r.Source != "Configuration default/frontconfig" || r.Version == "" || strings.HasPrefix(r.Version, "sha256:")) {
			t.Errorf("the Configuration in use: %+v; want its object and resourceVersion", r)
		}
	}

	// A Subscription (the chart's CRD, its stored version) is read while
	// serving: the app's sidecar lists it as DECLARATIVE.
	var sub map[string]any
	if err := sigsyaml.Unmarshal(declaredSubscription("orders", "orders", "event.data.big == true"), &sub); err != nil {
		t.Fatal(err)
	}
	subs := dyn.Resource(schema.GroupVersionResource{Group: "dapr.io", Version: "v2alpha1", Resource: "subscriptions"}).Namespace("default")
	if err := retry(ctx, func() error {
		_, err := subs.Create(ctx, &unstructured.Unstructured{Object: sub}, metav1.CreateOptions{})
		return err
	}); err != nil {
		t.Fatalf("creating a Subscription: %v", err)
	}
	waitMetadata(t, addapp, `"type":"DECLARATIVE"`)
	if st := resourcesOf(t, addapp.url); st.version("Subscription", "orders") == "" {
		t.Errorf("resources in use %+v; want the Subscription", st.InUse)
	}
}

// secretKeyRefs: a Component reads its Redis password from a Secret; the
// Secret changed (the password rotated) builds its store again, which
// connects with the new one; a Secret with a password Redis refuses is not
// put in force; a Secret the chart's RBAC does not name cannot be read.
func secretKeyRefs(t *testing.T, ctx context.Context, c *kubecluster.Cluster, ch reloadTarget, front *sidecar) {
	r := redisserver.Start(t)
	admin := goredis.NewClient(&goredis.Options{Addr: r.Addr})
	defer admin.Close()
	if err := admin.ConfigSet(ctx, "requirepass", "first").Err(); err != nil {
		t.Fatal(err)
	}
	secrets := c.Client.CoreV1().Secrets("default")
	setPassword := func(p string) {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "redis-auth"}, StringData: map[string]string{"password": p}}
		if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
			_, err = secrets.Create(ctx, s, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	setPassword("first")
	ch.put("Component", "authstore", []byte(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: authstore
scopes: [front]
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: "`+r.Addr+`"
  - name: redisPassword
    secretKeyRef: {name: redis-auth, key: password}
`))
	write := func(key string) (int, string) {
		resp, b := do(t, "POST", front.url+"/v1.0/state/authstore", strings.NewReader(`[{"key":"`+key+`","value":1}]`), nil)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "authstore in force with its Secret", func() bool {
		st := resourcesOf(t, front.url)
		return st.version("Component", "authstore") != "" && st.version("Secret", "redis-auth") != ""
	})
	if code, b := write("k1"); code != 204 {
		t.Fatalf("a write with the password from the Secret: %d %s", code, b)
	}
	if n, err := goredis.NewClient(&goredis.Options{Addr: r.Addr, Password: "first"}).Exists(ctx, "front||k1").Result(); err != nil || n != 1 {
		t.Errorf("the write is not in redis: %d %v", n, err)
	}

	// The password rotated: Redis first, then the Secret.
	if err := admin.ConfigSet(ctx, "requirepass", "second").Err(); err != nil {
		t.Fatal(err)
	}
	v := resourcesOf(t, front.url).version("Secret", "redis-auth")
	setPassword("second")
	took := waitFor(t, "the changed Secret read", func() bool { return resourcesOf(t, front.url).version("Secret", "redis-auth") != v })
	t.Logf("Secret changed: its Component's store built again and in force %s after the change (polled every second)", took.Round(time.Millisecond))
	// Connections made with the old password are gone; the store in force
	// makes new ones with the new password.
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	if code, b := write("k2"); code != 204 {
		t.Errorf("a write after the password rotated: %d %s", code, b)
	}

	// A password Redis refuses: not put in force, the store in force goes on.
	setPassword("wrong")
	waitFor(t, "the store with a wrong password refused", func() bool {
		return strings.Contains(resourcesOf(t, front.url).rejection("authstore"), "does not answer")
	})
	if code, b := write("k3"); code != 204 {
		t.Errorf("a write while the Secret holds a wrong password: %d %s", code, b)
	}
	setPassword("second")
	waitFor(t, "the refusal gone once the Secret is right", func() bool { return resourcesOf(t, front.url).rejection("authstore") == "" })

	// A Secret the chart's RBAC does not name.
	if _, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"}, StringData: map[string]string{"password": "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ch.put("Component", "otherstore", []byte(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: otherstore
scopes: [front]
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: "`+r.Addr+`"
  - name: redisPassword
    secretKeyRef: {name: other, key: password}
`))
	waitFor(t, "the Secret outside the RBAC refused", func() bool {
		return strings.Contains(resourcesOf(t, front.url).rejection("otherstore"), "sidecar.secretNames")
	})
}

// memoryComponent is an in-memory state store Component; extra is appended
// (a comment makes another version of the same Component).
func memoryComponent(name, extra string) []byte {
	return []byte("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: " + name +
		"\nspec:\n  type: state.in-memory\n  version: v1\n  metadata: []\n" + extra)
}

// hasComponent reports whether the sidecar's metadata lists the component.
func hasComponent(t *testing.T, s *sidecar, name string) bool {
	t.Helper()
	for _, c := range getMetadata(t, s).Components {
		if c.Name == name {
			return true
		}
	}
	return false
}

// rewriteEvery saves path with new content every d until the test ends or
// the returned stop is called.
func rewriteEvery(t *testing.T, path string, d time.Duration, content func(n int) []byte) (stop func()) {
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(d)
		defer tick.Stop()
		for n := 1; ; n++ {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
			if err := os.WriteFile(tmp, content(n), 0o644); err != nil {
				t.Error(err)
				return
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(quit); <-done }) }
	t.Cleanup(stop)
	return stop
}

// TestHotReloadNoisyFile: a file rewritten every 0.3 s, faster than it can
// read the same twice, stays at its version in force and holds back no
// other file's change; once it stops changing, it is taken too.
func TestHotReloadNoisyFile(t *testing.T) {
	dir := t.TempDir()
	saveFile(t, filepath.Join(dir, "cache.yaml"), memoryComponent("cache", ""))
	noisy := filepath.Join(dir, "generated.yaml")
	saveFile(t, noisy, memoryComponent("generated", "# generation 0\n"))
	s := newWorld(t).sidecar("front", 0, "--resources-path", dir)
	generated := resourcesOf(t, s.url).version("Component", "generated")
	if generated == "" {
		t.Fatalf("resources at start: %+v", resourcesOf(t, s.url))
	}
	stop := rewriteEvery(t, noisy, 300*time.Millisecond, func(n int) []byte {
		return memoryComponent("generated", fmt.Sprintf("# generation %d\n", n))
	})

	cache := resourcesOf(t, s.url).version("Component", "cache")
	saveFile(t, filepath.Join(dir, "cache.yaml"), memoryComponent("cache", "# changed\n"))
	saveFile(t, filepath.Join(dir, "orders.yaml"), memoryComponent("orders", ""))
	took := waitFor(t, "the new Component orders and the changed cache in force beside a file rewritten every 0.3 s", func() bool {
		return hasComponent(t, s, "orders") && resourcesOf(t, s.url).version("Component", "cache") != cache
	})
	t.Logf("in force %s after the change, beside the rewritten file", took.Round(time.Millisecond))
	if resp, b := do(t, "POST", s.url+"/v1.0/state/orders", strings.NewReader(`[{"key":"k","value":"v"}]`), nil); resp.StatusCode != 204 {
		t.Errorf("a write to the new store: %d %s", resp.StatusCode, b)
	}
	if got := resourcesOf(t, s.url).version("Component", "generated"); got != generated {
		t.Errorf("the rewritten file's version in use %s, want the one in force at start, %s", got, generated)
	}

	stop()
	waitFor(t, "the rewritten file taken once it stops changing", func() bool {
		return resourcesOf(t, s.url).version("Component", "generated") != generated
	})
}

// TestHotReloadFilesThatCannotBeRead: a named pipe, a link to /dev/zero and
// a file larger than --resources-max-file-size in the folder are refused
// each on its own, named in the status and the log, and never block the
// sidecar nor fill its memory: the other files' changes apply.
func TestHotReloadFilesThatCannotBeRead(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	saveFile(t, path("cache.yaml"), memoryComponent("cache", ""))
	s := newWorld(t).sidecar("front", 0, "--resources-path", dir, "--resources-max-file-size", "64Ki")
	metrics := "http://127.0.0.1:" + strconv.Itoa(getMetadata(t, s).Ports["metrics"])

	if err := syscall.Mkfifo(path("pipe.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", path("zero.yaml")); err != nil {
		t.Fatal(err)
	}
	saveFile(t, path("big.yaml"), memoryComponent("big", strings.Repeat("# padding\n", 7000))) // 70 KB
	cache := resourcesOf(t, s.url).version("Component", "cache")
	saveFile(t, path("cache.yaml"), memoryComponent("cache", "# changed\n"))
	saveFile(t, path("orders.yaml"), memoryComponent("orders", ""))
	took := waitFor(t, "the new Component orders and the changed cache in force beside the files that cannot be read", func() bool {
		return hasComponent(t, s, "orders") && resourcesOf(t, s.url).version("Component", "cache") != cache
	})
	t.Logf("in force %s after the change", took.Round(time.Millisecond))
	if resp, b := do(t, "POST", s.url+"/v1.0/state/orders", strings.NewReader(`[{"key":"k","value":"v"}]`), nil); resp.StatusCode != 204 {
		t.Errorf("a write to the new store: %d %s", resp.StatusCode, b)
	}
	if hasComponent(t, s, "big") {
		t.Error("the file larger than the bound was taken")
	}
	says := map[string]string{
		"pipe.yaml": "not a regular file but a named pipe (FIFO)",
		"zero.yaml": "not a regular file but a character device",
		"big.yaml":  "file too large: more than 64Ki, the most read of a resource file (--resources-max-file-size)",
	}
	waitFor(t, "the three files refused", func() bool { return len(resourcesOf(t, s.url).Rejected) == 3 })
	st := resourcesOf(t, s.url)
	for name, say := range says {
		if got := st.rejection(name); !strings.Contains(got, path(name)+": "+say) {
			t.Errorf("%s: rejection %q, want one saying %q", name, got, say)
		}
		if !strings.Contains(s.Out.String(), path(name)+": "+say) {
			t.Errorf("the log does not say %q of %s", say, name)
		}
	}
	if got := metricValue(t, metrics, "tandem_resources_rejected", `kind="file"`); got != 3 {
		t.Errorf("tandem_resources_rejected{kind=\"file\"} %v, want 3", got)
	}

	for name := range says {
		if err := os.Remove(path(name)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the refusals gone with the files", func() bool { return len(resourcesOf(t, s.url).Rejected) == 0 })
}

// TestResourceFilesThatCannotBeReadStopTheSidecar: at start, as any bad
// resource does, a named pipe, a link to /dev/zero or a file larger than
// the default bound (4Mi) stops the sidecar, naming the file and why; none
// is waited on or read whole.
func TestResourceFilesThatCannotBeReadStopTheSidecar(t *testing.T) {
	for _, c := range []struct {
		name   string
		make   func(path string) error
		config bool // given as --config, not in --resources-path
		says   string
	}{
		{"pipe", func(p string) error { return syscall.Mkfifo(p, 0o644) }, false, "not a regular file but a named pipe (FIFO); only regular files, or links to them, are read"},
		{"zero", func(p string) error { return os.Symlink("/dev/zero", p) }, false, "not a regular file but a character device"},
		{"big", func(p string) error { return os.WriteFile(p, make([]byte, 4<<20+1), 0o644) }, false, "file too large: more than 4Mi, the most read of a resource file (--resources-max-file-size)"},
		{"config pipe", func(p string) error { return syscall.Mkfifo(p, 0o644) }, true, "not a regular file but a named pipe (FIFO)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "x.yaml")
			if err := c.make(file); err != nil {
				t.Fatal(err)
			}
			where := []string{"--resources-path", dir}
			if c.config {
				where = []string{"--config", file}
			}
			p := proc.For(t).Start("sidecar", sidecarBin, nil, append([]string{"--app-id", "x", "--dapr-http-port", "0", "--dapr-grpc-port", "0",
				"--dapr-internal-grpc-port", "0", "--metrics-port", "0", "--registry-dir", t.TempDir()}, where...)...)
			if code := proc.For(t).ExitCode(p, 20*time.Second); code != 1 || !strings.Contains(p.Out.String(), file+": "+c.says) {
				t.Errorf("exit %d, output:\n%s\nwant exit 1 saying %q of %s", code, p.Out.String(), c.says, file)
			}
		})
	}
}
