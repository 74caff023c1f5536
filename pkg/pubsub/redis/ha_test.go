package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/redisconn"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/pubsubtest"
)

func sentinelMD(md map[string]string) map[string]string {
	out := map[string]string{"failover": "true", "sentinelMasterName": redisserver.MasterName}
	for k, v := range md {
		out[k] = v
	}
	return out
}

func contractMD(s pubsubtest.Settings) map[string]string {
	return map[string]string{
		"concurrency":       strconv.Itoa(s.Concurrency),
		"processingTimeout": s.Redelivery.String(),
		"redeliverInterval": (s.Redelivery / 3).String(),
	}
}

func TestContractSentinel(t *testing.T) {
	s := redisserver.StartSentinels(t, 1)
	admin := redis.NewClient(&redis.Options{Addr: s.Master.Addr})
	defer admin.Close()
	pubsubtest.Run(t, func(t *testing.T, set pubsubtest.Settings) pubsubtest.Backend {
		if err := admin.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		md := sentinelMD(contractMD(set))
		return func(t *testing.T) pubsub.Broker { return newBroker(t, s.Addrs(), md) }
	})
}

func TestContractCluster(t *testing.T) {
	c := redisserver.StartCluster(t, 3)
	admin := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{c.Nodes[0].Addr}})
	defer admin.Close()
	pubsubtest.Run(t, func(t *testing.T, set pubsubtest.Settings) pubsubtest.Backend {
		err := admin.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error { return m.FlushAll(ctx).Err() })
		if err != nil {
			t.Fatal(err)
		}
		md := contractMD(set)
		md["redisType"] = "cluster"
		return func(t *testing.T) pubsub.Broker { return newBroker(t, c.Addrs(), md) }
	})
}

// Topics of a cluster live on different nodes; one broker serves them
// all, each subscription reading from its stream's node.
func TestClusterTopicsOnEveryNode(t *testing.T) {
	c := redisserver.StartCluster(t, 3)
	b := newBroker(t, c.Addrs(), map[string]string{"redisType": "cluster"})
	admin := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{c.Nodes[0].Addr}})
	defer admin.Close()
	ctx := context.Background()
	// Topics until every node holds one.
	nodes := map[string]bool{}
	var topics []string
	for i := 0; len(nodes) < len(c.Nodes) && i < 1000; i++ {
		topic := "t" + strconv.Itoa(i)
		m, err := admin.MasterForKey(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if !nodes[m.Options().Addr] {
			nodes[m.Options().Addr] = true
			topics = append(topics, topic)
		}
	}
	if len(nodes) != len(c.Nodes) {
		t.Fatalf("topics on %d of %d nodes", len(nodes), len(c.Nodes))
	}
	var mu sync.Mutex
	got := map[string]int{}
	for _, topic := range topics {
		err := b.Subscribe(ctx, pubsub.Subscription{Topic: topic}, func(_ context.Context, d *pubsub.Delivery) error {
			mu.Lock()
			got[d.Topic]++
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range topics {
		for range 5 {
			if err := b.Publish(ctx, &pubsub.Message{Topic: topic, Data: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "5 events of every topic", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, topic := range topics {
			if got[topic] < 5 {
				return false
			}
		}
		return true
	})
	for _, topic := range topics {
		if n := pendingOf(t, admin, topic, ""); n != 0 {
			t.Errorf("topic %s: %d events pending after delivery", topic, n)
		}
	}
}

// A Sentinel failover while events are published and delivered: every
// event acknowledged by the old master and replicated, and every event
// acknowledged after, is delivered, from the new master.
func TestSentinelFailover(t *testing.T) {
	s := redisserver.StartSentinels(t, 1)
	md := sentinelMD(map[string]string{"processingTimeout": "1s", "redeliverInterval": "200ms"})
	sub := newBroker(t, s.Addrs(), md)
	pub := newBroker(t, s.Addrs(), md)
	ctx := context.Background()
	var mu sync.Mutex
	delivered := map[string]int{}
	err := sub.Subscribe(ctx, pubsub.Subscription{Topic: "orders"}, func(_ context.Context, d *pubsub.Delivery) error {
		mu.Lock()
		delivered[string(d.Data)]++
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var acked []string
	publish := func(prefix string, n int) {
		deadline := time.Now().Add(30 * time.Second)
		for ok := 0; ok < n; {
			data := prefix + strconv.Itoa(ok)
			if err := pub.Publish(ctx, &pubsub.Message{Topic: "orders", Data: []byte(data)}); err == nil {
				acked = append(acked, data)
				ok++
			} else if time.Now().After(deadline) {
				t.Fatalf("publishing %s: %v", data, err)
			}
		}
	}
	publish("before-", 100)
	m := redis.NewClient(&redis.Options{Addr: s.Master.Addr})
	defer m.Close()
	if n, err := m.Wait(ctx, 1, 10*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}
	old := s.Master.Addr
	if now := s.Failover(t); now.Addr == old {
		t.Fatal("no new master")
	}
	publish("after-", 100)
	waitFor(t, "every acknowledged event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range acked {
			if delivered[d] == 0 {
				return false
			}
		}
		return true
	})
	nm := redis.NewClient(&redis.Options{Addr: s.Master.Addr})
	defer nm.Close()
	waitFor(t, "nothing pending on the new master", func() bool { return pendingOf(t, nm, "orders", "") == 0 })
	mu.Lock()
	dups := 0
	for _, k := range delivered {
		dups += max(k-1, 0)
	}
	mu.Unlock()
	t.Logf("%d publishes acknowledged across the failover, all delivered, %d duplicate deliveries", len(acked), dups)
}

// The master killed while four publishers publish as fast as they can and
// its replica lags (paused, as by a stall of its link or process): how
// many publishes the master acknowledged are missing on the replica the
// Sentinels promote, without waitForReplicas and with 1. With it, none:
// a publish the replica has not confirmed is not acknowledged.
func TestFailoverLossMeasured(t *testing.T) {
	for _, wait := range []string{"0", "1"} {
		t.Run("waitForReplicas="+wait, func(t *testing.T) {
			s := redisserver.StartSentinels(t, 1)
			pub := newBroker(t, s.Addrs(), sentinelMD(map[string]string{"waitForReplicas": wait, "readTimeout": "2s"}))
			ctx := context.Background()
			var mu sync.Mutex
			var acked []string
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for p := range 4 {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						data := strconv.Itoa(p) + "-" + strconv.Itoa(i)
						if err := pub.Publish(ctx, &pubsub.Message{Topic: "orders", Data: []byte(data)}); err != nil {
							time.Sleep(10 * time.Millisecond)
							continue
						}
						mu.Lock()
						acked = append(acked, data)
						mu.Unlock()
					}
				})
			}
			waitFor(t, "2,000 publishes acknowledged", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(acked) >= 2000
			})
			mu.Lock()
			before := len(acked)
			mu.Unlock()
			s.Replicas[0].Pause()
			paused := time.Now()
			waitFor(t, "200 more publishes acknowledged, or 2s with the replica paused", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(acked) >= before+200 || time.Since(paused) > 2*time.Second
			})
			old := s.Master
			old.Stop() // SIGKILL
			close(stop)
			wg.Wait()
			s.Replicas[0].Resume()
			nm := s.KillMaster(t) // already dead: waits for the promotion
			c := redis.NewClient(&redis.Options{Addr: nm.Addr})
			defer c.Close()
			entries, err := c.XRange(ctx, "orders", "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			have := make(map[string]bool, len(entries))
			for _, e := range entries {
				if d, ok := e.Values["data"].(string); ok {
					have[d] = true
				}
			}
			lost := 0
			for _, d := range acked {
				if !have[d] {
					lost++
				}
			}
			t.Logf("waitForReplicas=%s: %d publishes acknowledged before the master was killed, %d of them lost in the failover", wait, len(acked), lost)
			if wait != "0" && lost != 0 {
				t.Errorf("waitForReplicas=%s: %d acknowledged events lost", wait, lost)
			}
		})
	}
}

// The slots of every topic move to another master (IMPORTING, MIGRATING,
// MIGRATE, SETSLOT NODE) while four publishers publish to them, without
// and with waitForReplicas: no publish fails, and every acknowledged event
// is in its stream once and delivered to the topic's subscription.
func TestClusterReshardWhilePublishing(t *testing.T) {
	for _, wait := range []string{"0", "1"} {
		t.Run("waitForReplicas="+wait, func(t *testing.T) { reshardWhilePublishing(t, wait) })
	}
}

func reshardWhilePublishing(t *testing.T, waitForReplicas string) {
	// A publish that waits for a replica does so on the connection to
	// the stream's master, and follows its slot itself.
	var c *redisserver.Cluster
	if waitForReplicas == "0" {
		c = redisserver.StartCluster(t, 3)
	} else {
		c = redisserver.StartClusterReplicas(t, 3)
	}
	// Redelivery (whose claims would refresh the client's slots) as by
	// default: the subscriptions' reads find the moved slots themselves.
	md := map[string]string{"redisType": "cluster"}
	sub := newBroker(t, c.Addrs(), md)
	// WAIT waits up to half the read timeout: generous, on a busy machine.
	pub := newBroker(t, c.Addrs(), map[string]string{"redisType": "cluster", "waitForReplicas": waitForReplicas, "readTimeout": "6s"})
	ctx := context.Background()
	var topics []string
	for i := range 20 {
		topics = append(topics, "topic-"+strconv.Itoa(i))
	}
	var mu sync.Mutex
	delivered := map[string]int{}
	for _, topic := range topics {
		err := sub.Subscribe(ctx, pubsub.Subscription{Topic: topic}, func(_ context.Context, d *pubsub.Delivery) error {
			mu.Lock()
			delivered[string(d.Data)]++
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var acked []string
	var failed []error
	perTopic := map[string]int64{}
	for p := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				topic := topics[(p+n*4)%len(topics)]
				data := fmt.Sprintf("p%d-%d", p, n)
				err := pub.Publish(ctx, &pubsub.Message{Topic: topic, Data: []byte(data)})
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					acked = append(acked, data)
					perTopic[topic]++
				}
				mu.Unlock()
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, "200 publishes", func() bool { return count() >= 200 })
	start := count()
	keys, slots := 0, map[int]bool{}
	for _, topic := range topics {
		s := redisconn.Slot(topic)
		if slots[s] {
			continue
		}
		slots[s] = true
		from := c.Owner(t, s)
		keys += c.MoveSlot(t, s, from, (from+1)%len(c.Nodes))
	}
	during := count() - start
	waitFor(t, "200 more publishes", func() bool { return count() >= start+during+200 })
	close(stop)
	wg.Wait()
	admin := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{c.Nodes[0].Addr}})
	defer admin.Close()
	for _, topic := range topics {
		if n, err := admin.XLen(ctx, topic).Result(); err != nil || n != perTopic[topic] {
			t.Errorf("stream %s holds %d entries, %v; %d publishes to it were acknowledged", topic, n, err, perTopic[topic])
		}
	}
	waitFor(t, "every acknowledged event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range acked {
			if delivered[d] == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("%d slots holding %d streams moved; %d publishes acknowledged, %d during the moves, %d failed; all delivered",
		len(slots), keys, len(acked), during, len(failed))
	if len(failed) > 0 {
		t.Errorf("%d publishes failed during the resharding, the first: %v", len(failed), failed[0])
	}
}

// A quiet subscription, blocked reading its stream, whose slot moves to
// another master, or whose master is killed and replaced by its replica:
// the next event is delivered from the stream's new master, found by the
// subscription itself (its broker makes no other call that would tell
// its client of the new slots: no publish, no acknowledgement, no
// redelivery in the test's time).
func TestClusterQuietSubscriptionFollowsItsSlot(t *testing.T) {
	for _, how := range []string{"moved", "failover"} {
		t.Run(how, func(t *testing.T) {
			var c *redisserver.Cluster
			if how == "moved" {
				c = redisserver.StartCluster(t, 3)
			} else {
				c = redisserver.StartClusterReplicas(t, 3)
			}
			sub := newBroker(t, c.Addrs(), map[string]string{"redisType": "cluster", "redeliverInterval": "10m", "processingTimeout": "10m"})
			admin := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(c.Addrs(), ",")})
			defer admin.Close()
			ctx := context.Background()
			got := make(chan string, 10)
			err := sub.Subscribe(ctx, pubsub.Subscription{Topic: "quiet"}, func(_ context.Context, d *pubsub.Delivery) error {
				got <- string(d.Data)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			receive := func(want string) {
				t.Helper()
				select {
				case d := <-got:
					if d != want {
						t.Fatalf("delivered %q, want %q", d, want)
					}
				case <-time.After(30 * time.Second):
					t.Fatalf("%q not delivered within 30s", want)
				}
			}
			publish := func(data string) {
				t.Helper()
				deadline := time.Now().Add(30 * time.Second)
				for {
					err := admin.XAdd(ctx, &redis.XAddArgs{Stream: "quiet", Values: []any{"data", data}}).Err()
					if err == nil {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("XADD: %v", err)
					}
					admin.ReloadState(ctx)
					time.Sleep(50 * time.Millisecond)
				}
			}
			publish("before")
			receive("before")
			from := c.Owner(t, redisconn.Slot("quiet"))
			var at time.Time
			if how == "moved" {
				c.MoveSlot(t, redisconn.Slot("quiet"), from, (from+1)%len(c.Nodes))
				at = time.Now()
			} else {
				at = c.KillMaster(t, from)
			}
			publish("after")
			receive("after")
			t.Logf("delivered %s after the slot's new master took it", time.Since(at).Round(time.Millisecond))
		})
	}
}
