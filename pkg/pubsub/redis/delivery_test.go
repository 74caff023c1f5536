package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// An event a consumer read and never acknowledged (it died) is delivered
// to another after processingTimeout, as a second attempt.
func TestDeadConsumersEventsClaimed(t *testing.T) {
	srv := redisserver.Start(t)
	ctx := context.Background()
	dead := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer dead.Close()
	if err := dead.XGroupCreateMkStream(ctx, "orders", "app", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := dead.XAdd(ctx, &redis.XAddArgs{Stream: "orders", Values: []any{"data", "orphan"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := dead.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "app", Consumer: "app-dead-pod", Streams: []string{"orders", ">"}, Count: 1, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	b := newBroker(t, srv.Addr, map[string]string{"processingTimeout": "300ms", "redeliverInterval": "100ms"})
	got := make(chan *pubsub.Delivery, 1)
	err := b.Subscribe(ctx, pubsub.Subscription{Topic: "orders"}, func(_ context.Context, d *pubsub.Delivery) error {
		got <- d
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if string(d.Data) != "orphan" || d.Attempt != 2 {
			t.Errorf("delivered %q, attempt %d; want the orphan, attempt 2", d.Data, d.Attempt)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the dead consumer's event was not claimed")
	}
	waitFor(t, "the event acknowledged", func() bool { return pendingOf(t, dead, "orders", "") == 0 })
}

// A handler slower than processingTimeout is never delivered the same
// event a second time while it runs, by its broker or another.
func TestSlowHandlerNotDeliveredTwiceAtOnce(t *testing.T) {
	srv := redisserver.Start(t)
	md := map[string]string{"processingTimeout": "600ms", "redeliverInterval": "100ms", "concurrency": "3"}
	const n = 6
	var mu sync.Mutex
	running, most, done := map[string]int{}, 0, map[string]int{}
	h := func(_ context.Context, d *pubsub.Delivery) error {
		mu.Lock()
		running[d.ID]++
		most = max(most, running[d.ID])
		mu.Unlock()
		time.Sleep(2 * time.Second) // more than three processingTimeouts
		mu.Lock()
		running[d.ID]--
		done[d.ID]++
		mu.Unlock()
		return nil
	}
	a, b := newBroker(t, srv.Addr, md), newBroker(t, srv.Addr, md)
	for _, br := range []*Broker{a, b} {
		if err := br.Subscribe(context.Background(), pubsub.Subscription{Topic: "slow"}, h); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if err := a.Publish(context.Background(), &pubsub.Message{Topic: "slow", Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every event handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done) == n
	})
	mu.Lock()
	defer mu.Unlock()
	if most > 1 {
		t.Errorf("an event was in %d handlers at once", most)
	}
	for id, k := range done {
		if k > 1 {
			t.Logf("event %s delivered %d times", id, k)
		}
	}
}

// After FLUSHALL the group is created again, new events are delivered, and
// the log says so once.
func TestGroupLostIsCreatedAgain(t *testing.T) {
	srv := redisserver.Start(t)
	var logs syncbuf.Buffer
	md := map[string]string{"processingTimeout": "300ms", "redeliverInterval": "100ms"}
	b := newBrokerLogging(t, srv.Addr, md, &logs)
	got := make(chan string, 10)
	err := b.Subscribe(context.Background(), pubsub.Subscription{Topic: "orders"}, func(_ context.Context, d *pubsub.Delivery) error {
		got <- string(d.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(data string) {
		t.Helper()
		if err := b.Publish(context.Background(), &pubsub.Message{Topic: "orders", Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
		select {
		case d := <-got:
			if d != data {
				t.Fatalf("delivered %q, want %q", d, data)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%q not delivered", data)
		}
	}
	publish("before")
	if err := b.client.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		publish(fmt.Sprintf("after %d", i))
	}
	if n := strings.Count(logs.String(), "consumer group was gone"); n != 1 {
		t.Errorf("%d log lines about the lost group; want 1:\n%s", n, logs.String())
	}
}

// Redis restarted (appendonly, fsync always) while events are published
// and delivered: every publish Redis acknowledged is delivered, and the
// log says Redis went away without a flood.
func TestRedisRestartLosesNoAcknowledgedEvent(t *testing.T) {
	srv := redisserver.StartDurable(t)
	var logs syncbuf.Buffer
	md := map[string]string{"processingTimeout": "500ms", "redeliverInterval": "100ms"}
	sub := newBrokerLogging(t, srv.Addr, md, &logs)
	pub := newBroker(t, srv.Addr, nil)
	var mu sync.Mutex
	delivered := map[string]int{}
	err := sub.Subscribe(context.Background(), pubsub.Subscription{Topic: "orders"}, func(_ context.Context, d *pubsub.Delivery) error {
		time.Sleep(3 * time.Millisecond) // slower than the publisher: a backlog is held when Redis stops
		mu.Lock()
		delivered[string(d.Data)]++
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var acked []string
	// publish publishes until n more are acknowledged (or 2n tried).
	publish := func(n int) {
		for i, ok := 0, 0; ok < n && i < 2*n; i++ {
			data := strconv.Itoa(len(acked)) + "-" + strconv.Itoa(i)
			if err := pub.Publish(context.Background(), &pubsub.Message{Topic: "orders", Data: []byte(data)}); err == nil {
				acked = append(acked, data)
				ok++
			}
			time.Sleep(time.Millisecond)
		}
	}
	publish(200)
	srv.Stop()
	if err := pub.Publish(context.Background(), &pubsub.Message{Topic: "orders", Data: []byte("down")}); err == nil {
		t.Fatal("a publish with Redis down was acknowledged")
	}
	srv.Restart(t)
	publish(200)
	if len(acked) < 400 {
		t.Fatalf("only %d of 400 publishes acknowledged with Redis up", len(acked))
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
	mu.Lock()
	dups := 0
	for _, k := range delivered {
		dups += max(k-1, 0)
	}
	mu.Unlock()
	t.Logf("%d publishes acknowledged, %d duplicate deliveries", len(acked), dups)
	if n := strings.Count(logs.String(), "Redis does not answer"); n != 1 {
		t.Errorf("%d log lines for one Redis restart; want 1:\n%s", n, logs.String())
	}
}

// queueDepth and concurrency bound what a slow subscriber holds read and
// not acknowledged.
func TestQueueDepthBoundsWhatIsHeld(t *testing.T) {
	srv := redisserver.Start(t)
	b := newBroker(t, srv.Addr, map[string]string{"queueDepth": "5", "concurrency": "2", "processingTimeout": "300ms", "redeliverInterval": "50ms"})
	ctx := context.Background()
	for i := range 100 {
		if err := b.Publish(ctx, &pubsub.Message{Topic: "orders", Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	var handled atomic.Int64
	err := b.Subscribe(ctx, pubsub.Subscription{Topic: "orders"}, func(hctx context.Context, _ *pubsub.Delivery) error {
		select {
		case <-release:
		case <-hctx.Done():
			return hctx.Err()
		}
		handled.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const bound = 5 + 2
	waitFor(t, "the queue filled", func() bool { return pendingOf(t, b.client, "orders", b.consumer) >= bound })
	for range 20 { // a few rounds of reading, claiming and refreshing
		if n := pendingOf(t, b.client, "orders", b.consumer); n > bound {
			t.Fatalf("%d entries read and not acknowledged; the bound is %d", n, bound)
		}
		b.mu.Lock()
		held := len(b.held)
		b.mu.Unlock()
		if held > bound {
			t.Fatalf("%d entries held; the bound is %d", held, bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	waitFor(t, "every event handled", func() bool { return handled.Load() >= 100 })
}

// Close cancels the handlers in flight and leaves what the broker held to
// the next consumer at once, not after processingTimeout.
func TestCloseLeavesEventsToOthersAtOnce(t *testing.T) {
	srv := redisserver.Start(t)
	md := map[string]string{"processingTimeout": "10m", "redeliverInterval": "50ms", "concurrency": "1"}
	a, b := newBroker(t, srv.Addr, md), newBroker(t, srv.Addr, md)
	ctx := context.Background()
	entered := make(chan struct{}, 1)
	err := a.Subscribe(ctx, pubsub.Subscription{Topic: "orders"}, func(hctx context.Context, _ *pubsub.Delivery) error {
		entered <- struct{}{}
		<-hctx.Done()
		return hctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := a.Publish(ctx, &pubsub.Message{Topic: "orders", Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	<-entered
	waitFor(t, "a holding every event", func() bool { return pendingOf(t, a.client, "orders", a.consumer) == 5 })
	var got sync.Map
	var n atomic.Int64
	err = b.Subscribe(ctx, pubsub.Subscription{Topic: "orders"}, func(_ context.Context, d *pubsub.Delivery) error {
		if _, dup := got.LoadOrStore(string(d.Data), true); !dup {
			n.Add(1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b delivering all a held", func() bool { return n.Load() == 5 })
}

// When a subscription ends, the entries it read that no handler started
// go to the next consumer at once, even while its handlers are busy.
func TestEndedSubscriptionLeavesQueuedEventsAtOnce(t *testing.T) {
	srv := redisserver.Start(t)
	md := map[string]string{"processingTimeout": "10m", "redeliverInterval": "50ms", "concurrency": "1"}
	a, b := newBroker(t, srv.Addr, md), newBroker(t, srv.Addr, md)
	ctx, cancel := context.WithCancel(context.Background())
	entered, release := make(chan string, 1), make(chan struct{})
	err := a.Subscribe(ctx, pubsub.Subscription{Topic: "orders"}, func(hctx context.Context, d *pubsub.Delivery) error {
		entered <- string(d.Data)
		select {
		case <-release:
			return nil
		case <-hctx.Done():
			return hctx.Err()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := a.Publish(context.Background(), &pubsub.Message{Topic: "orders", Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	inFlight := <-entered
	waitFor(t, "a holding every event", func() bool { return pendingOf(t, a.client, "orders", a.consumer) == 5 })
	var got sync.Map
	var n atomic.Int64
	err = b.Subscribe(context.Background(), pubsub.Subscription{Topic: "orders"}, func(_ context.Context, d *pubsub.Delivery) error {
		if _, dup := got.LoadOrStore(string(d.Data), true); !dup {
			n.Add(1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	waitFor(t, "b delivering the four a had queued", func() bool { return n.Load() == 4 })
	close(release)
	waitFor(t, "a acknowledging the one in flight", func() bool { return pendingOf(t, a.client, "orders", "") == 0 })
	if _, ok := got.Load(inFlight); ok {
		t.Errorf("%s, in a's handler, was delivered to b too", inFlight)
	}
}
