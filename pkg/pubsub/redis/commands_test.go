package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// commandCalls returns Redis's calls of each command so far (INFO
// commandstats), by lower-case name: a count of commands that does not
// depend on the machine's load.
func commandCalls(t *testing.T, c redis.UniversalClient) map[string]int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return out
}

// A subscriber acknowledges every event, with at most one XACK each, and
// those of handlers ending together in one. Its reads are counted and
// logged.
func TestSubscriberCommandsPerEvent(t *testing.T) {
	srv := redisserver.Start(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	ctx := context.Background()
	const backlog, trickle = 300, 40
	for i := range backlog {
		if err := admin.XAdd(ctx, &redis.XAddArgs{Stream: "orders", Values: []any{"data", fmt.Sprint("b", i)}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.XGroupCreateMkStream(ctx, "orders", "app", "0").Err(); err != nil {
		t.Fatal(err)
	}
	b := newBroker(t, srv.Addr, map[string]string{"concurrency": "10", "queueDepth": "100"})
	var got atomic.Int64
	seen := make(chan struct{}, backlog+trickle)
	before := commandCalls(t, admin)
	err := b.Subscribe(ctx, pubsub.Subscription{Topic: "orders"}, func(context.Context, *pubsub.Delivery) error {
		got.Add(1)
		seen <- struct{}{}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the backlog delivered and acknowledged", func() bool {
		return got.Load() == backlog && pendingOf(t, admin, "orders", "") == 0
	})
	for range backlog {
		<-seen
	}
	after := commandCalls(t, admin)
	reads, acks := after["xreadgroup"]-before["xreadgroup"], after["xack"]-before["xack"]
	t.Logf("backlog of %d: %d XREADGROUP, %d XACK", backlog, reads, acks)
	// Ten handlers at once: acknowledgements go together.
	if acks >= backlog {
		t.Errorf("%d events took %d XACK; want those of handlers ending together in one", backlog, acks)
	}

	// A trickle: each event published once the previous one was handled.
	before = commandCalls(t, admin)
	for i := range trickle {
		if err := admin.XAdd(ctx, &redis.XAddArgs{Stream: "orders", Values: []any{"data", fmt.Sprint("t", i)}}).Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-seen:
		case <-time.After(30 * time.Second):
			t.Fatalf("event %d of the trickle not delivered", i)
		}
	}
	waitFor(t, "the trickle acknowledged", func() bool { return pendingOf(t, admin, "orders", "") == 0 })
	after = commandCalls(t, admin)
	reads, acks = after["xreadgroup"]-before["xreadgroup"], after["xack"]-before["xack"]
	t.Logf("trickle of %d: %d XREADGROUP, %d XACK", trickle, reads, acks)
	if acks > trickle {
		t.Errorf("%d events took %d XACK; want at most one each", trickle, acks)
	}
}
