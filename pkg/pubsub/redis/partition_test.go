package redis

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/steady"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Redis replicates asynchronously: a master cut off from its replicas and
// Sentinels, but not from its clients, acknowledges events that no
// replica gets; the Sentinels promote a replica, and when the partition
// heals the old master becomes a replica and drops them. Four publishers
// publish without pause across such a partition (a master, two replicas,
// three Sentinels) while a subscriber of another broker takes the topic
// (events redelivered after 5 s pending).
// With waitForReplicas 0 the acknowledged events missing from the stream
// afterwards, and those never delivered, are logged: what a failover
// loses. With waitForReplicas 2 (every replica) none is missing and every
// one is delivered; publishing fails from the partition until the old
// master is a replica again, as the new master has one replica short.
func TestPartitionLoss(t *testing.T) {
	for _, wait := range []int{0, 2} {
		t.Run("waitForReplicas "+strconv.Itoa(wait), func(t *testing.T) {
			r := partitionLoss(t, wait)
			t.Logf("pubsub.redis, waitForReplicas %d: %d events acknowledged, %d of them lost from the stream, %d never delivered; %d failed",
				wait, r.acked, r.lost, r.undelivered, r.failed)
			if wait == 2 && (r.lost != 0 || r.undelivered != 0) {
				t.Errorf("waitForReplicas 2: of %d events acknowledged, %d lost from the stream and %d never delivered", r.acked, r.lost, r.undelivered)
			}
		})
	}
}

type lossReport struct{ acked, lost, undelivered, failed int }

func partitionLoss(t *testing.T, wait int) lossReport {
	s := redisserver.StartPartitionable(t, 2)
	md := sentinelMD(map[string]string{"waitForReplicas": strconv.Itoa(wait)})
	pub := newBroker(t, s.Addrs(), md)
	// Events read from a master but not handled when the connection broke
	// stay pending: they are redelivered after processingTimeout.
	sub := newBroker(t, s.Addrs(), sentinelMD(map[string]string{"processingTimeout": "5s", "redeliverInterval": "1s"}))
	const topic = "orders"
	var (
		mu        sync.Mutex
		delivered = map[string]bool{}
	)
	subCtx, unsubscribe := context.WithCancel(context.Background())
	defer unsubscribe()
	err := sub.Subscribe(subCtx, pubsub.Subscription{Topic: topic}, func(_ context.Context, d *pubsub.Delivery) error {
		mu.Lock()
		delivered[string(d.Data)] = true
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	load := steady.Start(4, "p", 2*time.Millisecond, func(_ int, id string) error {
		return pub.Publish(context.Background(), &pubsub.Message{Topic: topic, Data: []byte(id)})
	})
	defer load.Stop()
	load.WaitAcked(t, "events before the partition", 200)
	old, cut := s.Master.Addr, time.Now()
	if now := s.Partition(t); now.Addr == old {
		t.Fatal("no failover")
	}
	t.Logf("the Sentinels promoted %s %s after the partition", s.Master.Addr, time.Since(cut).Round(time.Millisecond))
	if wait < 2 {
		// With waitForReplicas 2 the new master, one replica short, can
		// acknowledge none until the old master is its replica.
		load.WaitAcked(t, "events on the new master", load.Count()+200)
	}
	healed := time.Now()
	s.Heal(t)
	t.Logf("the old master was an in-sync replica %s after the partition healed", time.Since(healed).Round(time.Millisecond))
	healedAt := load.Count()
	load.WaitAcked(t, "events after the partition healed", healedAt+200)
	load.Stop()
	acked := load.Acked()

	// What the stream holds on the new master.
	m := redis.NewClient(&redis.Options{Addr: s.Master.Addr})
	defer m.Close()
	entries, err := m.XRange(context.Background(), topic, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for _, e := range entries {
		if d, ok := e.Values["data"].(string); ok {
			present[d] = true
		}
	}
	// Every acknowledged event in the stream is delivered.
	missing := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var ids []string
		for _, id := range acked {
			if present[id] && !delivered[id] {
				ids = append(ids, id)
			}
		}
		return ids
	}
	deadline := time.Now().Add(30 * time.Second)
	for ids := missing(); len(ids) > 0; ids = missing() {
		if time.Now().After(deadline) {
			groups, _ := m.XInfoGroups(context.Background(), topic).Result()
			t.Fatalf("%d acknowledged events in the stream never delivered (first %v); the groups: %+v", len(ids), ids[:min(len(ids), 5)], groups)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d events acknowledged since the partition healed", len(acked)-healedAt)
	mu.Lock()
	defer mu.Unlock()
	r := lossReport{acked: len(acked), failed: load.Failed()}
	for _, id := range acked {
		if !present[id] {
			r.lost++
		}
		if !delivered[id] {
			r.undelivered++
		}
	}
	return r
}
