package node

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// replicaTimeout is the subscription's replicaTimeout in
// TestPubSubEveryReplica: short, so that the test waits seconds past it,
// not the default ten minutes.
const replicaTimeout = 15 * time.Second

// TestPubSubEveryReplica: a subscriber Deployment of three replicas whose
// subscription sets deliverToAllReplicas (pubsub.redis on the chart's
// Redis, replicaTimeout 15 s): once the three have their consumer groups,
// 1,000 events published through the publisher's sidecar reach each of
// the three, every one of them. Then each replica holds 5 more
// unacknowledged (the collector does not answer their reports) and the
// Deployment is scaled to one: the stream keeps one consumer group, the
// survivor's, past replicaTimeout and a sweep; the events the gone
// replicas' groups held are what the sidecars logged as dropped (and the
// survivor counts what it dropped itself); and the survivor, released,
// acknowledges its 5 and receives what is published next.
func TestPubSubEveryReplica(t *testing.T) {
	began := time.Now()
	const ns, topic, n = "pubsub-replicas", "everyreplica", 1000
	c, url, pods := pubsubSetup(t, ns, topic, 3, "-metadata", "deliverToAllReplicas=true,replicaTimeout="+replicaTimeout.String())
	if len(pods) != 3 {
		t.Fatalf("subscriber pods %v, want 3", pods)
	}
	rdb := redis.NewClient(&redis.Options{Addr: podIP(t, chartNS, "tandem-redis") + ":6379"})
	t.Cleanup(func() { rdb.Close() })

	// Each replica's sidecar creates its group at the stream's end when it
	// subscribes: publish once the three groups are there.
	groupOf := map[string]string{} // pod -> its group
	waitGroups(t, rdb, topic, 2*time.Minute, "a consumer group for each of "+strings.Join(pods, ", "), func(gs []redis.XInfoGroup) bool {
		clear(groupOf)
		for _, g := range gs {
			for _, p := range pods {
				if strings.HasPrefix(g.Name, "subscriber-"+p+"-") {
					groupOf[p] = g.Name
				}
			}
		}
		return len(gs) == 3 && len(groupOf) == 3
	})

	p := startPublishing(url, 200, 0, n)
	p.waitSent(t, n)
	p.halt()
	acked, failed := p.result()
	if len(acked) != n {
		t.Fatalf("%d of %d publishes acknowledged; the others: %v", len(acked), n, failed)
	}
	published := time.Now()
	c.waitEach(t, 3*time.Minute, pods, 0, n)
	delivered := time.Since(published)
	dups := c.duplicates(pods)

	// The replicas hold events when two of them go: k more, whose reports
	// the collector answers only for the replica that stays, once it is
	// known; the others never acknowledge them.
	const k = 5
	var ids []int
	for id := n; id < n+k; id++ {
		ids = append(ids, id)
	}
	c.hold(ids...)
	p = startPublishing(url, 200, n, k)
	p.waitSent(t, k)
	p.halt()
	if acked, failed := p.result(); len(acked) != k {
		t.Fatalf("%d of %d publishes acknowledged; the others: %v", len(acked), k, failed)
	}
	held := map[string]int64{} // group -> events pending
	waitGroups(t, rdb, topic, 2*time.Minute, fmt.Sprintf("%d events pending in each of the three groups, and only those", k), func(gs []redis.XInfoGroup) bool {
		clear(held)
		for _, g := range gs {
			held[g.Name] = g.Pending
			if g.Pending != k {
				return false
			}
		}
		return len(gs) == 3
	})

	logs := followSidecars(t, ns, pods)
	scaled := time.Now()
	scale(t, ns, "subscriber", 1)
	var cleanup time.Duration
	waitGroups(t, rdb, topic, replicaTimeout+3*time.Minute, "one consumer group left after scaling to one replica", func(gs []redis.XInfoGroup) bool {
		cleanup = time.Since(scaled)
		return len(gs) == 1
	})
	survivor, gone := survivingPod(t, ns, pods)
	c.release(survivor.Name)
	for _, pod := range gone {
		logs.waitEnded(t, pod, 3*time.Minute)
	}

	// Past the bound: a gone replica's heartbeat, had it been left, has
	// expired, and the survivor has swept at least once since.
	bound := replicaTimeout + replicaTimeout/3 + 2*time.Second
	<-time.After(time.Until(scaled.Add(bound)))
	checked := time.Since(scaled)
	gs, err := rdb.XInfoGroups(ctxT(t, 30*time.Second), topic).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 1 || gs[0].Name != groupOf[survivor.Name] {
		t.Errorf("consumer groups of %q %s after scaling to one: %+v, want only the survivor's %s", topic, checked.Round(100*time.Millisecond), gs, groupOf[survivor.Name])
	}
	registry, err := rdb.HGetAll(ctxT(t, 30*time.Second), "tandem:pubsub:replica-groups:"+topic).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(registry) != 1 || registry[groupOf[survivor.Name]] != "subscriber" {
		t.Errorf("the replicas' groups listed: %v, want only %s", registry, groupOf[survivor.Name])
	}
	for _, pod := range gone {
		if key := "tandem:pubsub:replica-alive:" + groupOf[pod] + ":" + topic; rdb.Exists(ctxT(t, 30*time.Second), key).Val() != 0 {
			t.Errorf("the heartbeat %s of the gone replica %s is still there", key, pod)
		}
	}

	// Dropped: what the gone replicas' groups held, as their sidecars
	// (unsubscribing) and the survivor's (sweeping) logged it, and as the
	// survivor counts it.
	var heldByGone, logged int64
	for _, pod := range gone {
		heldByGone += held[groupOf[pod]]
	}
	for _, pod := range pods {
		logged += logs.dropped(pod)
	}
	counted := sidecarCounter(t, survivor, "tandem_pubsub_replica_dropped_total", "topic", topic)
	byPod := map[string]int64{}
	for _, pod := range pods {
		byPod[pod] = logs.dropped(pod)
	}
	if logged != heldByGone || int64(counted) != logs.dropped(survivor.Name) {
		t.Errorf("the gone replicas' groups held %d events; the sidecars logged %d dropped (by pod: %v), the survivor counts %v",
			heldByGone, logged, byPod, counted)
	}

	// The survivor's own group was not swept: it acknowledges the events
	// it held, and receives what comes next.
	const more = 100
	p = startPublishing(url, 200, n+k, more)
	p.waitSent(t, more)
	p.halt()
	if acked, failed := p.result(); len(acked) != more {
		t.Fatalf("%d of %d publishes after scaling acknowledged; the others: %v", len(acked), more, failed)
	}
	c.waitEach(t, 2*time.Minute, []string{survivor.Name}, n, k+more)
	waitGroups(t, rdb, topic, 2*time.Minute, "nothing pending in the survivor's group", func(gs []redis.XInfoGroup) bool {
		return len(gs) == 1 && gs[0].Pending == 0
	})

	t.Logf("%d events published to 3 replicas of deliverToAllReplicas: each got all of them (the last %s after publishing ended); extra deliveries by replica: %v; "+
		"%d more held unacknowledged by each, then scaled to one (%s stays): one consumer group left %s after the scale, still one %s after it (replicaTimeout %s); "+
		"the gone groups held %d, dropped as logged by pod: %v, as counted by the survivor: %v; the survivor acknowledged its %d and got all %d published next; test %s",
		n, delivered.Round(100*time.Millisecond), dups, k, survivor.Name, cleanup.Round(100*time.Millisecond), checked.Round(100*time.Millisecond), replicaTimeout,
		heldByGone, byPod, counted, k, more, time.Since(began).Round(100*time.Millisecond))
}

// waitGroups waits, up to d, until cond holds for the consumer groups of
// stream topic (none while the stream is not there).
func waitGroups(t *testing.T, rdb *redis.Client, topic string, d time.Duration, what string, cond func([]redis.XInfoGroup) bool) {
	t.Helper()
	ctx := ctxT(t, d)
	for {
		gs, err := rdb.XInfoGroups(ctx, topic).Result()
		if err != nil && strings.Contains(err.Error(), "no such key") {
			gs, err = nil, nil
		}
		if err == nil && cond(gs) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not after %s: groups of %q: %+v (%v)", what, d, topic, gs, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitEach waits, up to d, until each of pods was given every event of
// ids first .. first+n-1.
func (c *collector) waitEach(t *testing.T, d time.Duration, pods []string, first, n int) {
	t.Helper()
	missing := func(pod string) int {
		m := 0
		for id := first; id < first+n; id++ {
			if c.byPodID[pod][id] == 0 {
				m++
			}
		}
		return m
	}
	c.wait(t, d, fmt.Sprintf("each of %v given all %d events from id %d", pods, n, first), func() bool {
		for _, p := range pods {
			if missing(p) > 0 {
				return false
			}
		}
		return true
	}, func() string {
		var b strings.Builder
		for _, p := range pods {
			fmt.Fprintf(&b, "%s misses %d; ", p, missing(p))
		}
		return b.String()
	})
}

// duplicates is, by pod, its deliveries beyond the first of each event.
func (c *collector) duplicates(pods []string) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, p := range pods {
		out[p] = 0
		for _, k := range c.byPodID[p] {
			out[p] += k - 1
		}
	}
	return out
}

// survivingPod is the one pod of the subscriber Deployment not being
// deleted, which must be one of pods, and the others of pods.
func survivingPod(t *testing.T, ns string, pods []string) (corev1.Pod, []string) {
	t.Helper()
	dep, err := cluster.Client.AppsV1().Deployments(ns).Get(ctxT(t, time.Minute), "subscriber", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var left []corev1.Pod
	for _, p := range deploymentPods(ns, dep) {
		if p.DeletionTimestamp == nil {
			left = append(left, p)
		}
	}
	if len(left) != 1 || !slices.Contains(pods, left[0].Name) {
		t.Fatalf("after scaling to one replica: %s; want one of %v", podsOf(ns, dep), pods)
	}
	var gone []string
	for _, p := range pods {
		if p != left[0].Name {
			gone = append(gone, p)
		}
	}
	return left[0], gone
}

// sidecarLogs are the sidecars' logs of pods, followed until their
// containers end (or the test does).
type sidecarLogs struct {
	mu    sync.Mutex
	lines map[string][]string
	ended map[string]chan struct{}
}

func followSidecars(t *testing.T, ns string, pods []string) *sidecarLogs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &sidecarLogs{lines: map[string][]string{}, ended: map[string]chan struct{}{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, pod := range pods {
		rc, err := cluster.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "daprd", Follow: true}).Stream(ctx)
		if err != nil {
			t.Fatalf("%s: following its sidecar's log: %v", pod, err)
		}
		ended := make(chan struct{})
		l.ended[pod] = ended
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(ended)
			defer rc.Close()
			sc := bufio.NewScanner(rc)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				l.mu.Lock()
				l.lines[pod] = append(l.lines[pod], sc.Text())
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// waitEnded waits, up to d, until pod's sidecar log ends: its container
// has exited.
func (l *sidecarLogs) waitEnded(t *testing.T, pod string, d time.Duration) {
	t.Helper()
	select {
	case <-l.ended[pod]:
	case <-time.After(d):
		t.Fatalf("the sidecar of %s still runs %s after scaling down", pod, d)
	}
}

var droppedRE = regexp.MustCompile(`"?dropped"?[=:](\d+)`)

// dropped sums the events pod's sidecar logged as dropped with a consumer
// group of deliverToAllReplicas.
func (l *sidecarLogs) dropped(pod string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var sum int64
	for _, line := range l.lines[pod] {
		if !strings.Contains(line, "deliverToAllReplicas") {
			continue
		}
		if m := droppedRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			sum += n
		}
	}
	return sum
}
