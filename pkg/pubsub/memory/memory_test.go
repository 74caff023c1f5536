package memory

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/pubsubtest"
)

func TestContract(t *testing.T) {
	pubsubtest.Run(t, func(t *testing.T, s pubsubtest.Settings) pubsubtest.Backend {
		b := New(Config{Concurrency: s.Concurrency, RedeliverInterval: s.Redelivery})
		return func(*testing.T) pubsub.Broker { return b }
	})
}

func TestParseMetadata(t *testing.T) {
	c, err := ParseMetadata(nil)
	if err != nil || c != (Config{Concurrency: 1, RedeliverInterval: time.Second, MaxPending: 10_000}) {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	c, err = ParseMetadata(map[string]string{"concurrency": "8", "redeliverInterval": "250", "maxPending": "5", "allowedTopics": "a,b"})
	if err != nil || c != (Config{Concurrency: 8, RedeliverInterval: 250 * time.Millisecond, MaxPending: 5}) {
		t.Errorf("got %+v, %v", c, err)
	}
	for field, md := range map[string]map[string]string{
		"concurrency":       {"concurrency": "0"},
		"maxPending":        {"maxPending": "many"},
		"redeliverInterval": {"redeliverInterval": "-1s"},
		"redisHost":         {"redisHost": "localhost:6379"},
	} {
		if _, err := ParseMetadata(md); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%v: error %v does not name %s", md, err, field)
		}
	}
}

// A topic holds at most MaxPending events not yet acknowledged; a publish
// past that is an error, and acknowledging makes room.
func TestMaxPending(t *testing.T) {
	b := New(Config{MaxPending: 2})
	defer b.Close()
	ctx := context.Background()
	for range 2 {
		if err := b.Publish(ctx, &pubsub.Message{Topic: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	err := b.Publish(ctx, &pubsub.Message{Topic: "t"})
	if err == nil || !strings.Contains(err.Error(), "maxPending") {
		t.Fatalf("third publish: %v; want an error naming maxPending", err)
	}
	if err := b.Publish(ctx, &pubsub.Message{Topic: "other"}); err != nil {
		t.Errorf("another topic: %v", err)
	}
	done := make(chan struct{}, 2)
	err = b.Subscribe(ctx, pubsub.Subscription{Topic: "t"}, func(context.Context, *pubsub.Delivery) error {
		done <- struct{}{}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	<-done
	<-done
	deadline := time.Now().Add(10 * time.Second)
	for b.Publish(ctx, &pubsub.Message{Topic: "t"}) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no room after both events were acknowledged")
		}
		time.Sleep(time.Millisecond)
	}
}

// With the default concurrency of 1 a subscription gets a topic's events
// one at a time, in the order published.
func TestInOrder(t *testing.T) {
	b := New(Config{})
	defer b.Close()
	ctx := context.Background()
	got := make(chan string, 100)
	for i := range 100 {
		if err := b.Publish(ctx, &pubsub.Message{Topic: "t", Data: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	err := b.Subscribe(ctx, pubsub.Subscription{Topic: "t"}, func(_ context.Context, d *pubsub.Delivery) error {
		got <- string(d.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if d := <-got; d != string([]byte{byte(i)}) {
			t.Fatalf("event %d delivered as %q", i, d)
		}
	}
}

// deliverToAllReplicas is read and checked; with one sidecar the
// subscription is the same as without it.
func TestDeliverToAllReplicas(t *testing.T) {
	b := New(Config{})
	defer b.Close()
	err := b.Subscribe(context.Background(), pubsub.Subscription{Topic: "t", Metadata: map[string]string{"deliverToAllReplicas": "maybe"}},
		func(context.Context, *pubsub.Delivery) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "deliverToAllReplicas") {
		t.Errorf("bad deliverToAllReplicas: %v", err)
	}
	got := make(chan string, 1)
	md := map[string]string{"deliverToAllReplicas": "true", "replicaTimeout": "5m"}
	err = b.Subscribe(context.Background(), pubsub.Subscription{Topic: "t", Metadata: md}, func(_ context.Context, d *pubsub.Delivery) error {
		got <- string(d.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), &pubsub.Message{Topic: "t", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if d := <-got; d != "x" {
		t.Errorf("received %q", d)
	}
}
