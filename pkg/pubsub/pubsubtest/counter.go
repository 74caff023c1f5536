package pubsubtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// wait bounds every wait of the suite: a broker that loses an event fails
// after it, and one that works is much faster.
const wait = 30 * time.Second

// counter counts the deliveries of each event by its data, across
// handlers and brokers.
type counter struct {
	mu   sync.Mutex
	seen map[string]int
	n    int
	more chan struct{} // closed and replaced on every delivery counted
}

func newCounter() *counter {
	return &counter{seen: map[string]int{}, more: make(chan struct{})}
}

// handler returns a Handler that runs then (nil: acknowledge) and counts
// the deliveries that it acknowledges.
func (c *counter) handler(then func(*pubsub.Delivery) error) pubsub.Handler {
	return func(_ context.Context, d *pubsub.Delivery) error {
		if then != nil {
			if err := then(d); err != nil {
				c.add("")
				return err
			}
		}
		c.add(string(d.Data))
		return nil
	}
}

// add counts one delivery; "" counts it without an acknowledgment.
func (c *counter) add(data string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if data != "" {
		c.seen[data]++
	}
	close(c.more)
	c.more = make(chan struct{})
}

// deliveries is how many deliveries were counted, failed ones too.
func (c *counter) deliveries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// count is how many times data was acknowledged.
func (c *counter) count(data string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[data]
}

// waitAll waits until n distinct events were acknowledged, then logs the
// duplicates.
func (c *counter) waitAll(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		distinct, more := len(c.seen), c.more
		c.mu.Unlock()
		if distinct >= n {
			break
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("%d of %d events delivered after %s", distinct, n, wait)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	dups := 0
	for _, k := range c.seen {
		dups += k - 1
	}
	if dups > 0 {
		t.Logf("%d events acknowledged more than once (%d duplicates)", len(c.seen), dups)
	}
}

func subscribe(t *testing.T, ctx context.Context, b pubsub.Broker, topic string, h pubsub.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if err := b.Subscribe(ctx, pubsub.Subscription{Topic: topic}, h); err != nil {
		t.Fatalf("subscribe to %q: %v", topic, err)
	}
}

func publish(t *testing.T, b pubsub.Broker, m *pubsub.Message) {
	t.Helper()
	if err := b.Publish(context.Background(), m); err != nil {
		t.Fatalf("publish to %q: %v", m.Topic, err)
	}
}

func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("nothing delivered after %s", wait)
		panic("unreachable")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
