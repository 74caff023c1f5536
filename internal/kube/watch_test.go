package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/tandem-run/tandem/internal/testutil/kubecluster"
	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
)

var componentsGVR = schema.GroupVersionResource{Group: "dapr.io", Version: "v1alpha1", Resource: "components"}

// cluster is a real API server with the chart's Components CRD, and a
// Client reaching it through a proxy that counts lists and watches.
type cluster struct {
	dyn            dynamic.ResourceInterface
	client         *Client
	lists, watches atomic.Int32
	down           atomic.Bool // the proxy answers 503, as an API server restarting
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane")
	}
	c := kubecluster.Start(t)
	ctx := context.Background()
	b, err := os.ReadFile("../../charts/tandem/crds/components.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(c.Config)
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(ctx, &unstructured.Unstructured{Object: crd}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cl := &cluster{dyn: dyn.Resource(componentsGVR).Namespace("default")}

	// The proxy: plain HTTP in, the API server's TLS out, streaming.
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	target, _ := url.Parse(c.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	proxy.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cl.down.Load() {
			http.Error(w, `{"kind":"Status","message":"the server is restarting"}`, http.StatusServiceUnavailable)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/components") {
			if r.URL.Query().Get("watch") == "1" {
				cl.watches.Add(1)
			} else {
				cl.lists.Add(1)
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte(c.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TANDEM_KUBE_API": srv.URL, "TANDEM_KUBE_TOKEN_FILE": token, "TANDEM_KUBE_CA_FILE": c.CAFile}
	if cl.client, err = InCluster("default", func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for { // the CRD is served once established
		if _, _, err := cl.client.List(ctx, Components, ""); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("components.dapr.io not served: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cl.lists.Store(0)
	return cl
}

func component(name, host string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "dapr.io/v1alpha1", "kind": "Component",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{"type": "state.redis", "version": "v1", "metadata": []any{
			map[string]any{"name": "redisHost", "value": host},
		}},
	}}
}

func (cl *cluster) put(t *testing.T, name, host string) {
	t.Helper()
	ctx := context.Background()
	cur, err := cl.dyn.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if _, err := cl.dyn.Create(ctx, component(name, host), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	c := component(name, host)
	c.SetResourceVersion(cur.GetResourceVersion())
	if _, err := cl.dyn.Update(ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// latest keeps what a Watcher hands over last.
type latest struct {
	mu   sync.Mutex
	objs map[string]Object
	n    int
}

func (l *latest) set(objs map[string]Object) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.objs = objs
	l.n++
}

// count is how many times OnChange was called.
func (l *latest) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// hosts are the redisHost of each object, by name.
func (l *latest) hosts() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]string{}
	for name, o := range l.objs {
		var c struct {
			Spec struct {
				Metadata []struct{ Name, Value string }
			}
		}
		_ = yaml.Unmarshal(o.YAML, &c)
		for _, m := range c.Spec.Metadata {
			out[name] = m.Value
		}
	}
	return out
}

func waitHosts(t *testing.T, l *latest, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := l.hosts()
		if len(got) == len(want) {
			same := true
			for k, v := range want {
				same = same && got[k] == v
			}
			if same {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("objects %v; want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An expired resourceVersion (410 Gone) lists again, and the list has every
// change the watch could not give: none is lost. The watch then goes on,
// and a watch request that ends (its timeout) is made again from where it
// stopped, never with a new list.
func TestWatcherRelistsAfterExpiryAndReconnects(t *testing.T) {
	cl := startCluster(t)
	cl.put(t, "a", "a:1")
	cl.put(t, "b", "b:1")
	objs, _, err := cl.client.List(context.Background(), Components, "")
	if err != nil || len(objs) != 2 {
		t.Fatalf("list: %v %v", objs, err)
	}
	// Changes the watcher is not told of before it starts.
	cl.put(t, "a", "a:2")
	if err := cl.dyn.Delete(context.Background(), "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cl.put(t, "c", "c:1")
	cl.lists.Store(0)

	var logs syncbuf.Buffer
	got := &latest{}
	w := &Watcher{Client: cl.client, Resource: Components, Timeout: 2 * time.Second, OnChange: got.set,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, objs, "1") }() // resourceVersion 1 is long gone
	defer func() {
		cancel()
		<-done
	}()
	waitHosts(t, got, map[string]string{"a": "a:2", "c": "c:1"})
	if !strings.Contains(logs.String(), "watch expired") || cl.lists.Load() != 1 {
		t.Errorf("%d lists; log:\n%s", cl.lists.Load(), logs.String())
	}

	// Through several watch requests (each ends after 2 s), every change
	// arrives, with no new list.
	for i := 2; i <= 8; i++ {
		cl.put(t, "c", "c:"+string(rune('0'+i)))
		time.Sleep(700 * time.Millisecond)
	}
	waitHosts(t, got, map[string]string{"a": "a:2", "c": "c:8"})
	if n := cl.watches.Load(); n < 3 {
		t.Errorf("%d watch requests in 5 s of 2 s watches", n)
	}
	if n := cl.lists.Load(); n != 1 {
		t.Errorf("%d lists; want the one after the expiry only", n)
	}
}

// A watch of one object by name sees it deleted and created again.
func TestWatcherOfOneObject(t *testing.T) {
	cl := startCluster(t)
	cl.put(t, "a", "a:1")
	cl.put(t, "other", "o:1")
	objs, rv, err := cl.client.List(context.Background(), Components, "a")
	if err != nil || len(objs) != 1 {
		t.Fatalf("list of a: %v %v", objs, err)
	}
	got := &latest{}
	w := &Watcher{Client: cl.client, Resource: Components, Name: "a", OnChange: got.set}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, objs, rv) }()
	defer func() {
		cancel()
		<-done
	}()
	cl.put(t, "other", "o:2")
	cl.put(t, "a", "a:2")
	waitHosts(t, got, map[string]string{"a": "a:2"})
	if err := cl.dyn.Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitHosts(t, got, map[string]string{})
	cl.put(t, "a", "a:3")
	waitHosts(t, got, map[string]string{"a": "a:3"})
}

// A watch that fails (the API server answering 503 while it restarts) is
// said (OnError) and made again, from where it stopped; the changes made
// meanwhile arrive, and OnChange says the objects are current again.
func TestWatcherThroughAnOutage(t *testing.T) {
	cl := startCluster(t)
	cl.put(t, "a", "a:1")
	objs, rv, err := cl.client.List(context.Background(), Components, "")
	if err != nil {
		t.Fatal(err)
	}
	got := &latest{}
	var errs atomic.Int32
	w := &Watcher{Client: cl.client, Resource: Components, Timeout: time.Second, OnChange: got.set,
		OnError: func(error) { errs.Add(1) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, objs, rv) }()
	defer func() {
		cancel()
		<-done
	}()
	cl.down.Store(true)
	for errs.Load() == 0 { // the next watch request fails
		time.Sleep(20 * time.Millisecond)
	}
	cl.put(t, "a", "a:2") // while the watcher cannot see it
	n := got.count()
	cl.lists.Store(0)
	cl.down.Store(false)
	waitHosts(t, got, map[string]string{"a": "a:2"})
	if got.count() == n {
		t.Error("OnChange was not told once the watch worked again")
	}
	if cl.lists.Load() != 0 {
		t.Errorf("%d lists after the outage; want the watch to go on from its resourceVersion", cl.lists.Load())
	}
}
