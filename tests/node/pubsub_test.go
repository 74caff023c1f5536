package node

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-run/tandem/internal/testutil/node"
)

// pubsubComponent is the pub/sub of the tests' namespaces: the chart's
// Redis, Streams, every replica of an app in its app id's consumer group
// (consumerID's default). An event a subscriber was given and did not
// acknowledge (its app gone in a restart) is claimed by another after
// processingTimeout; shorter than daprd's 60 s default, so that the test
// waits seconds for it, not minutes.
const pubsubComponent = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: tandem-redis.` + chartNS + `.svc.cluster.local:6379
  - name: processingTimeout
    value: 10s
  - name: redeliverInterval
    value: 2s
`

// collector is where the subscribers' apps report each delivery (before
// acknowledging it) and each subscription: an HTTP server of the test on
// the bridge address, which pods reach and nothing outside the machine
// does. It outlives the pods, so it counts across restarts. The report of
// an event it holds (see hold) is answered, and counted, only once the
// reporting pod is released: until then the event stays unacknowledged.
type collector struct {
	url        string
	mu         sync.Mutex
	byID       map[int]int            // deliveries of each event id
	byPod      map[string]int         // deliveries to each pod
	byPodID    map[string]map[int]int // deliveries of each event id to each pod
	subscribed map[string]bool
	held       map[int]bool    // event ids whose reports wait for release
	released   map[string]bool // pods whose held reports are answered
	more       chan struct{}   // closed and replaced on every report
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", node.BridgeIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{url: "http://" + ln.Addr().String(), byID: map[int]int{}, byPod: map[string]int{}, byPodID: map[string]map[int]int{}, subscribed: map[string]bool{}, held: map[int]bool{}, released: map[string]bool{}, more: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /delivered", func(w http.ResponseWriter, r *http.Request) {
		var d struct{ ID, Pod string }
		err := json.NewDecoder(r.Body).Decode(&d)
		id, err2 := strconv.Atoi(d.ID)
		if err != nil || err2 != nil || d.Pod == "" {
			http.Error(w, fmt.Sprintf("want {\"id\":<number>,\"pod\":...}: %v %v", err, err2), http.StatusBadRequest)
			return
		}
		for {
			c.mu.Lock()
			wait, more := c.held[id] && !c.released[d.Pod], c.more
			c.mu.Unlock()
			if !wait {
				break
			}
			select {
			case <-more:
			case <-r.Context().Done():
				return
			}
		}
		c.report(func() {
			c.byID[id]++
			c.byPod[d.Pod]++
			if c.byPodID[d.Pod] == nil {
				c.byPodID[d.Pod] = map[int]int{}
			}
			c.byPodID[d.Pod][id]++
		})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /subscribed", func(w http.ResponseWriter, r *http.Request) {
		var d struct{ Pod string }
		if err := json.NewDecoder(r.Body).Decode(&d); err != nil || d.Pod == "" {
			http.Error(w, "want {\"pod\":...}", http.StatusBadRequest)
			return
		}
		c.report(func() { c.subscribed[d.Pod] = true })
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

// hold holds the reports of events ids from every pod not released.
func (c *collector) hold(ids ...int) {
	c.report(func() {
		for _, id := range ids {
			c.held[id] = true
		}
	})
}

// release answers pod's held reports, and those to come.
func (c *collector) release(pod string) {
	c.report(func() { c.released[pod] = true })
}

func (c *collector) report(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f()
	close(c.more)
	c.more = make(chan struct{})
}

// wait waits, up to d, until cond (called with c.mu held) holds, and
// fails the test with what says otherwise.
func (c *collector) wait(t *testing.T, d time.Duration, what string, cond func() bool, otherwise func() string) {
	t.Helper()
	deadline := time.After(d)
	for {
		c.mu.Lock()
		ok, more := cond(), c.more
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-more:
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("%s: not after %s: %s", what, d, otherwise())
		}
	}
}

// waitSubscribed waits until every running pod of the Deployment has
// asked its app for its subscriptions (its sidecar is about to subscribe)
// and returns their names.
func (c *collector) waitSubscribed(t *testing.T, ns, name string) []string {
	t.Helper()
	dep, err := cluster.Client.AppsV1().Deployments(ns).Get(ctxT(t, time.Minute), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pods []string
	for _, p := range deploymentPods(ns, dep) {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p.Name)
		}
	}
	c.wait(t, time.Minute, "subscriptions of "+strings.Join(pods, ", "), func() bool {
		for _, p := range pods {
			if !c.subscribed[p] {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("subscribed: %v", keys(c.subscribed)) })
	return pods
}

// waitDelivered waits until every id of acked was delivered at least
// once, and reports the duplicates: events delivered more than once, and
// the deliveries beyond the first.
func (c *collector) waitDelivered(t *testing.T, d time.Duration, acked []int) (dupEvents, dupDeliveries int) {
	t.Helper()
	missing := func() []int {
		var m []int
		for _, id := range acked {
			if c.byID[id] == 0 {
				m = append(m, id)
			}
		}
		return m
	}
	c.wait(t, d, fmt.Sprintf("delivery of the %d acknowledged events", len(acked)),
		func() bool { return len(missing()) == 0 },
		func() string {
			m := missing()
			return fmt.Sprintf("%d of them never delivered (the first: %v); deliveries by pod: %v", len(m), m[:min(len(m), 20)], c.byPod)
		})
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.byID {
		if n > 1 {
			dupEvents++
			dupDeliveries += n - 1
		}
	}
	return dupEvents, dupDeliveries
}

func (c *collector) perPod() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for p, n := range c.byPod {
		out[p] = n
	}
	return out
}

// pubsubApp is a Deployment of the pubsubapp image with its sidecar: app
// id name, its args, replicas pods.
func pubsubApp(name string, replicas int32, args ...string) *appsv1.Deployment {
	lbl := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl, Annotations: map[string]string{
					"dapr.io/enabled": "true", "dapr.io/app-id": name, "dapr.io/app-port": "6000",
				}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: built["pubsubapp"].Ref, ImagePullPolicy: corev1.PullNever, Args: args,
					Env: []corev1.EnvVar{
						{Name: "APP_PORT", Value: "6000"},
						{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					},
				}}},
			},
		},
	}
}

// pubsubSetup makes a namespace with the pub/sub Component, a collector,
// a publisher (one pod) and a subscriber to topic (replicas pods, by
// default one consumer group; args are more of pubsubapp's), and waits
// until every subscriber has asked its app for its subscriptions. It
// returns the publisher's URL for POST /publish/<topic>, and the
// subscriber's pods.
func pubsubSetup(t *testing.T, ns, topic string, replicas int32, args ...string) (c *collector, publishURL string, pods []string) {
	t.Helper()
	chart(t)
	start := time.Now()
	namespace(t, ns)
	file := filepath.Join(t.TempDir(), "pubsub.yaml")
	if err := os.WriteFile(file, []byte(pubsubComponent), 0o644); err != nil {
		t.Fatal(err)
	}
	apply(t, ns, file)
	c = startCollector(t)
	deps := cluster.Client.AppsV1().Deployments(ns)
	for _, d := range []*appsv1.Deployment{
		pubsubApp("publisher", 1),
		pubsubApp("subscriber", replicas, append([]string{"-topic", topic, "-collector", c.url}, args...)...),
	} {
		if _, err := deps.Create(ctxT(t, time.Minute), d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitAvailable(t, ns, 3*time.Minute, "publisher", "subscriber")
	pods = c.waitSubscribed(t, ns, "subscriber")
	t.Logf("publisher and subscribers %v Ready and subscribed %s after creation", pods, time.Since(start).Round(100*time.Millisecond))
	return c, "http://" + podIP(t, ns, "publisher") + ":6000/publish/" + topic, pods
}

// publishing publishes events {"id":first}, {"id":first+1}, ... at a steady rate
// through the publisher's sidecar, and keeps the ids it acknowledged
// (204) and what the others got.
type publishing struct {
	mu       sync.Mutex
	acked    []int
	failures map[string]int // by answer
	answered int            // publishes answered
	more     chan struct{}  // closed and replaced on every answer
	stop     chan struct{}
	halted   sync.Once
	wg       sync.WaitGroup
}

func startPublishing(url string, rate, first, max int) *publishing {
	p := &publishing{failures: map[string]int{}, stop: make(chan struct{}), more: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	ids := make(chan int, rate)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(ids)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for id := first; id < first+max; id++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
				ids <- id
			}
		}
	}()
	for range 16 {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for id := range ids {
				resp, err := client.Post(url, "application/json", strings.NewReader(fmt.Sprintf(`{"id":%d}`, id)))
				answer := ""
				if err != nil {
					answer = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusNoContent {
						answer = fmt.Sprintf("%d %s", resp.StatusCode, b)
					}
				}
				p.mu.Lock()
				if answer == "" {
					p.acked = append(p.acked, id)
				} else {
					p.failures[answer]++
				}
				p.answered++
				close(p.more)
				p.more = make(chan struct{})
				p.mu.Unlock()
			}
		}()
	}
	return p
}

// halt stops publishing and waits for the publishes under way.
func (p *publishing) halt() {
	p.halted.Do(func() {
		close(p.stop)
		p.wg.Wait()
	})
}

// waitSent waits until n more publishes were answered.
func (p *publishing) waitSent(t *testing.T, n int) {
	t.Helper()
	p.mu.Lock()
	want := p.answered + n
	p.mu.Unlock()
	deadline := time.After(time.Minute + time.Duration(n)*100*time.Millisecond)
	for {
		p.mu.Lock()
		got, more := p.answered, p.more
		p.mu.Unlock()
		if got >= want {
			return
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("%d publishes answered, want %d", got, want)
		}
	}
}

// result is the ids acknowledged, sorted, and the failures.
func (p *publishing) result() ([]int, map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	acked := slices.Clone(p.acked)
	sort.Ints(acked)
	return acked, p.failures
}

// TestPubSubSplit: a publisher and a Deployment of two subscriber
// replicas (one consumer group, the app id) on pubsub.redis in the chart's
// Redis: 200 events published through the publisher's sidecar are all
// delivered, and both replicas get some.
func TestPubSubSplit(t *testing.T) {
	began := time.Now()
	c, url, _ := pubsubSetup(t, "pubsub-split", "split", 2)
	const n = 200
	p := startPublishing(url, 100, 0, n)
	p.waitSent(t, n)
	p.halt()
	acked, failed := p.result()
	if len(acked) != n {
		t.Fatalf("%d of %d publishes acknowledged; the others: %v", len(acked), n, failed)
	}
	dupEvents, dupDeliveries := c.waitDelivered(t, 2*time.Minute, acked)
	byPod := c.perPod()
	t.Logf("%d events published, all delivered; %d delivered more than once (%d extra deliveries); by replica: %v; test %s",
		n, dupEvents, dupDeliveries, byPod, time.Since(began).Round(100*time.Millisecond))
	if len(byPod) != 2 {
		t.Errorf("deliveries went to %d pods, want the 2 replicas: %v", len(byPod), byPod)
	}
	for pod, got := range byPod {
		if got == 0 {
			t.Errorf("replica %s got no event", pod)
		}
	}
}

// TestPubSubRollingRestart: while the publisher publishes 100 events a
// second, the subscriber Deployment (two replicas) is restarted as kubectl
// rollout restart does; publishing goes on until the old pods are gone.
// Every acknowledged publish is delivered at least once: the events the
// old pods held, read and not acknowledged, are claimed by the new ones.
func TestPubSubRollingRestart(t *testing.T) {
	began := time.Now()
	const ns = "pubsub-restart"
	c, url, oldPods := pubsubSetup(t, ns, "restart", 2)
	p := startPublishing(url, 100, 0, 1<<20)
	t.Cleanup(p.halt)
	p.waitSent(t, 200) // two seconds of steady publishing first

	restartStart := time.Now()
	restart(t, ns, "subscriber")
	waitAvailable(t, ns, 3*time.Minute, "subscriber")
	dep, err := cluster.Client.AppsV1().Deployments(ns).Get(ctxT(t, time.Minute), "subscriber", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Until the replaced pods are gone, not just no longer Ready: their
	// sidecars deliver, then stop, meanwhile.
	ctx := ctxT(t, 2*time.Minute)
	for len(deploymentPods(ns, dep)) != 2 {
		select {
		case <-ctx.Done():
			t.Fatalf("the replaced subscriber pods are still there: %s", podsOf(ns, dep))
		case <-time.After(250 * time.Millisecond):
		}
	}
	restarted := time.Since(restartStart)
	newPods := c.waitSubscribed(t, ns, "subscriber")
	p.waitSent(t, 200) // and two seconds more with the new pods only
	p.halt()
	acked, failed := p.result()
	published := len(acked)
	for _, n := range failed {
		published += n
	}
	if len(failed) > 0 {
		t.Errorf("publishes not acknowledged (the publisher was not restarted): %v", failed)
	}
	stopped := time.Now()
	dupEvents, dupDeliveries := c.waitDelivered(t, 2*time.Minute, acked)
	byPod := c.perPod()
	for _, pod := range oldPods {
		if slices.Contains(newPods, pod) {
			t.Errorf("pod %s was not replaced", pod)
		}
	}
	for _, pod := range newPods {
		if byPod[pod] == 0 {
			t.Errorf("the new replica %s got no event", pod)
		}
	}
	t.Logf("%d events published during a rolling restart of %s, %d acknowledged, all delivered (the last %s after publishing stopped); %d delivered more than once (%d extra deliveries); by replica (old %v, new %v): %v; test %s",
		published, restarted.Round(100*time.Millisecond), len(acked), time.Since(stopped).Round(100*time.Millisecond),
		dupEvents, dupDeliveries, oldPods, newPods, byPod, time.Since(began).Round(100*time.Millisecond))
}
