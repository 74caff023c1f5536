package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// everyReplicaApp starts a testapp subscribed to topic of pubsub "pubsub"
// with deliverToAllReplicas in its GET /dapr/subscribe metadata, recording
// its deliveries in a file.
func (w *world) everyReplicaApp(name, topic string) *ledgerApp {
	w.t.Helper()
	pt := proc.For(w.t)
	a := &ledgerApp{port: pt.FreePort(), file: filepath.Join(w.t.TempDir(), "deliveries")}
	subs := fmt.Sprintf(`[{"pubsubname":"pubsub","topic":%q,"route":"/events/%s","metadata":{"deliverToAllReplicas":"true"}}]`, topic, topic)
	a.p = pt.Start(name, testappBin, []string{"APP_PORT=" + itoa(a.port), "SUBSCRIBE=" + subs, "DELIVERIES_FILE=" + a.file})
	pt.WaitTCP("127.0.0.1:"+itoa(a.port), listenWait)
	return a
}

// Two replicas of an app whose subscription says deliverToAllReplicas,
// each behind its own sidecar on one Redis: each receives every event,
// through a consumer group of its own; a replica shut down destroys its
// group, and the other goes on receiving.
func TestPubSubDeliverToAllReplicas(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	files := map[string][]byte{"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr)}
	pub, _ := w.pubsubSidecar("admin", files)
	a := w.everyReplicaApp("cache-app-a", "prices")
	b := w.everyReplicaApp("cache-app-b", "prices")
	w.pubsubSidecarApp("cache", a.port, files)
	sb, _ := w.pubsubSidecarApp("cache", b.port, files)
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rc.Close() })
	groups := func() []string {
		gs, _ := rc.XInfoGroups(context.Background(), "prices").Result()
		var out []string
		for _, g := range gs {
			out = append(out, g.Name)
		}
		return out
	}
	waitUntil(t, "a consumer group per replica", time.Minute, func() bool { return len(groups()) == 2 })
	if slices.Contains(groups(), "cache") {
		t.Fatalf("groups %v: the shared group cache is there", groups())
	}

	p := newPublisher(t, pub, "prices")
	for range 10 {
		if !p.publish("") {
			t.Fatalf("publish failed: %v", p.codes)
		}
	}
	acked, _ := p.counts()
	for name, app := range map[string]*ledgerApp{"a": a, "b": b} {
		ds := waitDelivered(t, acked, time.Minute, app)
		t.Logf("replica %s: %d deliveries of %d events", name, len(ds), len(acked))
	}

	// b's sidecar shut down: its group goes at once; a still receives.
	if err := sb.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Logf("sidecar b: %v", err)
	}
	if gs := groups(); len(gs) != 1 {
		t.Errorf("groups %v after replica b shut down; want a's only", gs)
	}
	if !p.publish("") {
		t.Fatalf("publish failed: %v", p.codes)
	}
	acked, _ = p.counts()
	waitDelivered(t, acked, time.Minute, a)
}

// everyReplicaSubscription is a declarative Subscription to topic of
// pubsub "pubsub" for every replica, delivered to /events/<topic>.
func everyReplicaSubscription(topic, replicaTimeout string) []byte {
	return fmt.Appendf(nil, `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: %s-every-replica
spec:
  pubsubname: pubsub
  topic: %s
  routes:
    default: /events/%s
  metadata:
    deliverToAllReplicas: "true"
    replicaTimeout: %q
`, topic, topic, topic, replicaTimeout)
}

// A replica whose sidecar is SIGKILLed with events in its app's handler
// leaves its consumer group; the other replica's sidecar destroys it once
// replicaTimeout has passed, and logs the events dropped with it. The
// subscription is a declarative one.
func TestPubSubDeliverToAllReplicasKilled(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	files := map[string][]byte{
		"pubsub.yaml":       resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr),
		"subscription.yaml": everyReplicaSubscription("prices", "2s"),
	}
	pub, _ := w.pubsubSidecar("admin", files)
	pt := proc.For(t)
	apps := make([]*ledgerApp, 2)
	for i := range apps {
		apps[i] = &ledgerApp{port: pt.FreePort(), file: filepath.Join(t.TempDir(), "deliveries")}
		apps[i].p = pt.Start(fmt.Sprintf("cache-app-%d", i), testappBin, []string{"APP_PORT=" + itoa(apps[i].port), "DELIVERIES_FILE=" + apps[i].file})
		pt.WaitTCP("127.0.0.1:"+itoa(apps[i].port), listenWait)
	}
	sa, _ := w.pubsubSidecarApp("cache", apps[0].port, files)
	sb, _ := w.pubsubSidecarApp("cache", apps[1].port, files)
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rc.Close() })
	groups := func() int {
		gs, _ := rc.XInfoGroups(context.Background(), "prices").Result()
		return len(gs)
	}
	waitUntil(t, "a consumer group per replica", time.Minute, func() bool { return groups() == 2 })

	// Events the apps hold in their handlers: pending in both groups.
	p := newPublisher(t, pub, "prices")
	for range 3 {
		if !p.publish(`,"answer":"HOLD_ONCE"`) {
			t.Fatalf("publish failed: %v", p.codes)
		}
	}
	for i, app := range apps {
		waitUntil(t, fmt.Sprintf("replica %d to hold the 3 events", i), time.Minute, func() bool { return len(ledger(t, app.file)) == 3 })
	}
	if err := sb.Stop(syscall.SIGKILL, 10*time.Second); err != nil {
		t.Logf("sidecar b: %v", err)
	}
	dropped := regexp.MustCompile(`gone longer than replicaTimeout.*dropped=3`)
	waitUntil(t, "replica a's sidecar to destroy b's group", time.Minute, func() bool {
		return groups() == 1 && dropped.MatchString(sa.Out.String())
	})
}
