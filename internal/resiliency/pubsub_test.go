package resiliency

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/memory"
)

// failingBroker is a test double: an in-memory broker whose publishes fail
// while left is above 0 (the real outage, a stopped redis-server, is in
// tests/e2e).
type failingBroker struct {
	*memory.Broker
	left  atomic.Int32
	calls atomic.Int32
}

func (f *failingBroker) Publish(ctx context.Context, m *pubsub.Message) error {
	f.calls.Add(1)
	if f.left.Add(-1) >= 0 {
		return errors.New("connection refused")
	}
	return f.Broker.Publish(ctx, m)
}

const pubsubDoc = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r}
spec:
  policies:
    retries:
      quick: {policy: constant, duration: 1ms, maxRetries: 2}
    circuitBreakers:
      cb: {maxRequests: 1, timeout: 1h, trip: consecutiveFailures >= 2}
  targets:
    components:
      pubsub: {outbound: {retry: quick}}
      guarded: {outbound: {circuitBreaker: cb}}
`

// The outbound policy of a pub/sub component applies to its publishes:
// retries until one succeeds or they run out, refusals not retried, and an
// open circuit answering at once without calling the broker.
func TestPublishUnderOutboundPolicy(t *testing.T) {
	rs, err := Parse([]byte(pubsubDoc), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewSet(rs, "app")
	if err != nil {
		t.Fatal(err)
	}
	sw := NewSwitch(nil, set)
	svc := pubsub.NewService()
	brokers := map[string]*failingBroker{}
	for _, name := range []string{"pubsub", "guarded", "plain"} {
		brokers[name] = &failingBroker{Broker: memory.New(memory.Config{})}
		access := pubsub.Access{AppID: "app", Allowed: []string{"orders"}}
		if err := svc.Add(pubsub.BrokerConfig{Name: name, Broker: brokers[name], Access: access}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = svc.Close() })
	svc.Use(sw.PubsubMiddleware())
	ctx := context.Background()
	publish := func(name, topic string) error {
		return svc.Publish(ctx, name, &pubsub.Message{Topic: topic, Data: []byte("x")})
	}

	b := brokers["pubsub"]
	b.left.Store(2)
	if err := publish("pubsub", "orders"); err != nil || b.calls.Load() != 3 {
		t.Errorf("two failures, two retries: %v after %d calls, want success on the third", err, b.calls.Load())
	}
	b.calls.Store(0)
	b.left.Store(5)
	if err := publish("pubsub", "orders"); err == nil || b.calls.Load() != 3 || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("retries run out: %v after %d calls, want the broker's error after 3", err, b.calls.Load())
	}
	b.calls.Store(0)
	b.left.Store(0)
	if err := publish("pubsub", "payments"); !errors.Is(err, pubsub.ErrForbidden) || b.calls.Load() != 0 {
		t.Errorf("a refused topic: %v, %d broker calls", err, b.calls.Load())
	}

	g := brokers["guarded"]
	for i := 0; i < 3; i++ {
		if err := publish("guarded", "payments"); !errors.Is(err, pubsub.ErrForbidden) {
			t.Fatalf("a refused topic: %v", err)
		}
	}
	if err := publish("guarded", "orders"); err != nil {
		t.Fatalf("refusals opened the circuit: %v", err)
	}
	g.calls.Store(0)
	g.left.Store(2)
	for i := 0; i < 2; i++ {
		if err := publish("guarded", "orders"); err == nil {
			t.Fatal("a failing publish succeeded")
		}
	}
	err = publish("guarded", "orders")
	if !errors.Is(err, ErrOpen) || g.calls.Load() != 2 || !strings.Contains(err.Error(), "circuit breaker open") {
		t.Errorf("after two failures: %v, %d broker calls; want the open circuit, no call", err, g.calls.Load())
	}

	p := brokers["plain"]
	p.left.Store(1)
	if err := publish("plain", "orders"); err == nil || p.calls.Load() != 1 {
		t.Errorf("a component without a policy: %v after %d calls", err, p.calls.Load())
	}
	if newSet().PubsubMiddleware() != nil {
		t.Error("a set without component policies gives middleware")
	}
}
