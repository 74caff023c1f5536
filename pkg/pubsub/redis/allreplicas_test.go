package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// recorder keeps what a subscription received, by data.
type recorder struct {
	mu   sync.Mutex
	got  []string
	seen chan struct{} // a send per delivery, never blocking
}

func newRecorder() *recorder { return &recorder{seen: make(chan struct{}, 1)} }

func (r *recorder) handler(_ context.Context, d *pubsub.Delivery) error {
	r.mu.Lock()
	r.got = append(r.got, string(d.Data))
	r.mu.Unlock()
	select {
	case r.seen <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.got)
	slices.Sort(out)
	return out
}

func (r *recorder) has(data string) bool { return slices.Contains(r.received(), data) }

var everyReplica = map[string]string{"deliverToAllReplicas": "true"}

func publishAll(t *testing.T, b *Broker, topic string, data ...string) {
	t.Helper()
	for _, d := range data {
		if err := b.Publish(context.Background(), &pubsub.Message{Topic: topic, Data: []byte(d)}); err != nil {
			t.Fatal(err)
		}
	}
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	slices.Sort(out)
	return out
}

// groupsOf lists the consumer groups of stream.
func groupsOf(t *testing.T, c redis.UniversalClient, stream string) []string {
	t.Helper()
	gs, err := c.XInfoGroups(context.Background(), stream).Result()
	if err != nil {
		t.Fatalf("XINFO GROUPS %s: %v", stream, err)
	}
	var out []string
	for _, g := range gs {
		out = append(out, g.Name)
	}
	return out
}

// Three replicas subscribed with deliverToAllReplicas each receive every
// one of N events, in a group of their own, and none twice.
func TestAllReplicasEachReceiveEveryEvent(t *testing.T) {
	srv := redisserver.Start(t)
	const n = 50
	var rs []*recorder
	var bs []*Broker
	for range 3 {
		b := newBroker(t, srv.Addr, nil)
		r := newRecorder()
		if err := b.Subscribe(context.Background(), pubsub.Subscription{Topic: "news", Metadata: everyReplica}, r.handler); err != nil {
			t.Fatal(err)
		}
		rs, bs = append(rs, r), append(bs, b)
	}
	publishAll(t, bs[0], "news", numbered("e", n)...)
	want := numbered("e", n)
	for i, r := range rs {
		waitFor(t, fmt.Sprintf("replica %d to receive all %d events", i, n), func() bool { return len(r.received()) >= n })
		if got := r.received(); !slices.Equal(got, want) {
			t.Errorf("replica %d received %d events %v; want each of the %d once", i, len(got), got, n)
		}
	}
	groups := groupsOf(t, bs[0].client, "news")
	slices.Sort(groups)
	want = []string{bs[0].Consumer(), bs[1].Consumer(), bs[2].Consumer()}
	slices.Sort(want)
	if !slices.Equal(groups, want) {
		t.Errorf("groups %v; want one per replica, named as its consumer: %v", groups, want)
	}
}

// A replica that subscribes later starts at the stream's end: it receives
// only the events published after it subscribed.
func TestAllReplicasLateReplicaStartsAtTheEnd(t *testing.T) {
	srv := redisserver.Start(t)
	early, late := newRecorder(), newRecorder()
	a := newBroker(t, srv.Addr, nil)
	if err := a.Subscribe(context.Background(), pubsub.Subscription{Topic: "news", Metadata: everyReplica}, early.handler); err != nil {
		t.Fatal(err)
	}
	publishAll(t, a, "news", numbered("before", 5)...)
	b := newBroker(t, srv.Addr, map[string]string{"concurrency": "1"})
	if err := b.Subscribe(context.Background(), pubsub.Subscription{Topic: "news", Metadata: everyReplica}, late.handler); err != nil {
		t.Fatal(err)
	}
	publishAll(t, a, "news", numbered("after", 5)...)
	publishAll(t, a, "news", "end")
	waitFor(t, "the late replica to receive the last event", func() bool { return late.has("end") })
	waitFor(t, "the early replica to receive the last event", func() bool { return early.has("end") })
	if got, want := late.received(), append(numbered("after", 5), "end"); !slices.Equal(got, want) {
		t.Errorf("late replica received %v; want only what was published after it subscribed: %v", got, want)
	}
	if got := early.received(); len(got) != 11 {
		t.Errorf("early replica received %d events %v; want all 11", len(got), got)
	}
}

// A replica that stops without cleaning up (its connection to Redis gone)
// has its group destroyed by another replica once gone replicaTimeout; the
// events pending in it are counted and logged as dropped.
func TestAllReplicasGoneReplicaGroupDestroyed(t *testing.T) {
	srv := redisserver.Start(t)
	md := map[string]string{"deliverToAllReplicas": "true", "replicaTimeout": "2s"}
	var logs syncbuf.Buffer
	a := newBrokerLogging(t, srv.Addr, nil, &logs)
	ra := newRecorder()
	if err := a.Subscribe(context.Background(), pubsub.Subscription{Topic: "news", Metadata: md}, ra.handler); err != nil {
		t.Fatal(err)
	}
	b := newBroker(t, srv.Addr, nil)
	var started atomic.Int32
	err := b.Subscribe(context.Background(), pubsub.Subscription{Topic: "news", Metadata: md}, func(ctx context.Context, _ *pubsub.Delivery) error {
		started.Add(1)
		<-ctx.Done() // never answers: the events stay pending
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, a, "news", "x", "y", "z")
	waitFor(t, "replica b to start handling the 3 events", func() bool { return started.Load() == 3 })
	waitFor(t, "replica a to receive the 3 events", func() bool { return len(ra.received()) == 3 })
	if p, err := a.client.XPending(context.Background(), "news", b.Consumer()).Result(); err != nil || p.Count != 3 {
		t.Fatalf("pending in b's group: %v, %v; want 3", p, err)
	}
	if got := a.Dropped()["news"]; got != 0 {
		t.Fatalf("dropped %d while b is alive", got)
	}
	// b stops without a word: its client closed under it, so it neither
	// beats nor cleans up.
	_ = b.client.Close()
	// The group goes first, then its events are counted and logged: wait
	// for all three, then say which is missing.
	waitFor(t, "replica a to destroy b's group and count and log its dropped events", func() bool {
		return !slices.Contains(groupsOf(t, a.client, "news"), b.Consumer()) && a.Dropped()["news"] >= 3 &&
			strings.Contains(logs.String(), "dropped=3")
	})
	if got := a.Dropped()["news"]; got != 3 {
		t.Errorf("Dropped: %d; want the 3 events pending in b's group", got)
	}
	if out := logs.String(); !strings.Contains(out, "gone longer than replicaTimeout") || !strings.Contains(out, "dropped=3") ||
		!strings.Contains(out, "group="+b.Consumer()) {
		t.Errorf("no log line naming the group and the 3 dropped events:\n%s", out)
	}
	if groups := groupsOf(t, a.client, "news"); !slices.Equal(groups, []string{a.Consumer()}) {
		t.Errorf("groups %v; want only a's", groups)
	}
	listed, err := a.client.HKeys(context.Background(), registryKey("news")).Result()
	if err != nil || !slices.Equal(listed, []string{a.Consumer()}) {
		t.Errorf("listed groups %v, %v; want only a's", listed, err)
	}
	// a, alive all along, still receives.
	publishAll(t, a, "news", "after")
	waitFor(t, "replica a to receive an event after the sweep", func() bool { return ra.has("after") })
}

// A clean unsubscribe destroys the replica's group at once (well before
// replicaTimeout), and so does Close.
func TestAllReplicasLeaveDestroysOwnGroup(t *testing.T) {
	srv := redisserver.Start(t)
	a := newBroker(t, srv.Addr, nil)
	b := newBroker(t, srv.Addr, nil)
	ctx, cancel := context.WithCancel(context.Background())
	r := newRecorder()
	if err := a.Subscribe(ctx, pubsub.Subscription{Topic: "news", Metadata: everyReplica}, r.handler); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(context.Background(), pubsub.Subscription{Topic: "news", Metadata: everyReplica}, newRecorder().handler); err != nil {
		t.Fatal(err)
	}
	publishAll(t, a, "news", "x")
	waitFor(t, "a to receive its event", func() bool { return r.has("x") })
	if groups := groupsOf(t, a.client, "news"); len(groups) != 2 {
		t.Fatalf("groups %v; want a's and b's", groups)
	}
	cancel()
	waitFor(t, "a's group to go on unsubscribe", func() bool {
		return !slices.Contains(groupsOf(t, b.client, "news"), a.Consumer())
	})
	if n, _ := b.client.Exists(context.Background(), aliveKey(a.Consumer(), "news")).Result(); n != 0 {
		t.Error("a's heartbeat is left after it unsubscribed")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	if groups := groupsOf(t, admin, "news"); len(groups) != 0 {
		t.Errorf("groups %v after both left; want none", groups)
	}
	if n, _ := admin.Exists(context.Background(), registryKey("news")).Result(); n != 0 {
		t.Error("the list of groups is left after every replica left")
	}
	if got := a.Dropped()["news"] + b.Dropped()["news"]; got != 0 {
		t.Errorf("dropped %d on leaving with everything acknowledged", got)
	}
}

// Without the option two replicas share the group consumerID, as before:
// each event goes to one of them, and nothing is listed per replica.
func TestSharedGroupUnchanged(t *testing.T) {
	srv := redisserver.Start(t)
	const n = 40
	var rs []*recorder
	var bs []*Broker
	for range 2 {
		b := newBroker(t, srv.Addr, nil)
		r := newRecorder()
		if err := b.Subscribe(context.Background(), pubsub.Subscription{Topic: "jobs", Metadata: map[string]string{"rawPayload": "true"}}, r.handler); err != nil {
			t.Fatal(err)
		}
		rs, bs = append(rs, r), append(bs, b)
	}
	publishAll(t, bs[0], "jobs", numbered("j", n)...)
	waitFor(t, "all events to be delivered", func() bool { return len(rs[0].received())+len(rs[1].received()) >= n })
	got := append(rs[0].received(), rs[1].received()...)
	slices.Sort(got)
	if !slices.Equal(got, numbered("j", n)) {
		t.Errorf("received %v; want each of the %d events once over both replicas", got, n)
	}
	if groups := groupsOf(t, bs[0].client, "jobs"); !slices.Equal(groups, []string{"app"}) {
		t.Errorf("groups %v; want the shared group app only", groups)
	}
	if n, _ := bs[0].client.Exists(context.Background(), registryKey("jobs")).Result(); n != 0 {
		t.Error("a shared subscription listed a per-replica group")
	}
}

func TestAllReplicasBadMetadata(t *testing.T) {
	srv := redisserver.Start(t)
	b := newBroker(t, srv.Addr, nil)
	for name, md := range map[string]map[string]string{
		"deliverToAllReplicas": {"deliverToAllReplicas": "yes"},
		"replicaTimeout":       {"replicaTimeout": "1m"}, // without deliverToAllReplicas
		"replicaTimeout ":      {"deliverToAllReplicas": "true", "replicaTimeout": "soon"},
		"replicaTimeout  ":     {"deliverToAllReplicas": "true", "replicaTimeout": "10ms"},
	} {
		err := b.Subscribe(context.Background(), pubsub.Subscription{Topic: "t", Metadata: md}, newRecorder().handler)
		if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(name)) {
			t.Errorf("%v: error %v does not name %s", md, err, name)
		}
	}
	if n, _ := b.client.Exists(context.Background(), "t").Result(); n != 0 {
		t.Error("a refused subscription created the stream")
	}
	if !errors.Is(b.Subscribe(context.Background(), pubsub.Subscription{Topic: "t", Metadata: everyReplica}, newRecorder().handler), nil) {
		t.Error("a good subscription refused")
	}
}

// A replica whose own group was destroyed under it (another took it for
// gone) says so, creates it again at the stream's end, lists it again, and
// goes on receiving.
func TestAllReplicasOwnGroupDestroyedUnderIt(t *testing.T) {
	srv := redisserver.Start(t)
	md := map[string]string{"deliverToAllReplicas": "true", "replicaTimeout": "1500ms"}
	var logs syncbuf.Buffer
	a := newBrokerLogging(t, srv.Addr, nil, &logs)
	r := newRecorder()
	if err := a.Subscribe(context.Background(), pubsub.Subscription{Topic: "news", Metadata: md}, r.handler); err != nil {
		t.Fatal(err)
	}
	publishAll(t, a, "news", "first")
	waitFor(t, "the first event", func() bool { return r.has("first") })
	ctx := context.Background()
	if err := a.client.XGroupDestroy(ctx, "news", a.Consumer()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.client.HDel(ctx, registryKey("news"), a.Consumer()).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the group to be created again", func() bool {
		return strings.Contains(logs.String(), "was gone") && slices.Contains(groupsOf(t, a.client, "news"), a.Consumer())
	})
	if !strings.Contains(logs.String(), "created again at the stream's end") {
		t.Errorf("the log does not say the group was created again at the stream's end:\n%s", logs.String())
	}
	publishAll(t, a, "news", "second")
	waitFor(t, "an event after the group came back", func() bool { return r.has("second") })
	waitFor(t, "the group to be listed again", func() bool {
		listed, _ := a.client.HKeys(ctx, registryKey("news")).Result()
		return slices.Equal(listed, []string{a.Consumer()})
	})
	if got := r.received(); !slices.Equal(got, []string{"first", "second"}) {
		t.Errorf("received %v; want first and second, once each", got)
	}
}
