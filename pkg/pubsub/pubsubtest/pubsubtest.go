// Package pubsubtest is the contract every pubsub.Broker meets. Run it from
// a broker's tests with a constructor of fresh backends:
//
//	pubsubtest.Run(t, func(t *testing.T, s pubsubtest.Settings) pubsubtest.Backend {
//		b := memory.New(memory.Config{Concurrency: s.Concurrency, RedeliverInterval: s.Redelivery})
//		return func(*testing.T) pubsub.Broker { return b }
//	})
//
// The suite counts every event published and every delivery: each event
// is delivered at least once, duplicates are logged with their count, and
// no timing is asserted.
package pubsubtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Settings are how the suite needs a backend's brokers configured.
type Settings struct {
	// Concurrency: at most this many handler calls at once for one
	// subscription.
	Concurrency int
	// Redelivery: about how soon an event whose handler failed, or that a
	// subscription left unacknowledged, is delivered again (on Redis,
	// processingTimeout, with a shorter redeliverInterval).
	Redelivery time.Duration
}

// Backend returns a broker on one backend: the brokers it returns share
// its topics, as two replicas of one app do (one consumer group). It may
// return the same broker each time when the backend is one process's.
type Backend func(t *testing.T) pubsub.Broker

// settings are the suite's.
var settings = Settings{Concurrency: 4, Redelivery: 300 * time.Millisecond}

// Run runs the contract suite. newBackend returns a fresh, empty backend
// whose brokers have the settings given; the suite closes every broker
// that is an io.Closer when its subtest ends.
func Run(t *testing.T, newBackend func(t *testing.T, s Settings) Backend) {
	fresh := func(t *testing.T) Backend {
		backend := newBackend(t, settings)
		return func(t *testing.T) pubsub.Broker {
			b := backend(t)
			if c, ok := b.(io.Closer); ok {
				t.Cleanup(func() { _ = c.Close() })
			}
			return b
		}
	}
	t.Run("publish then deliver: data and metadata round trip", func(t *testing.T) { roundTrip(t, fresh(t)(t)) })
	t.Run("published before anyone subscribed", func(t *testing.T) { publishedBefore(t, fresh(t)(t)) })
	t.Run("topics are apart", func(t *testing.T) { topicsApart(t, fresh(t)(t)) })
	t.Run("every event at least once under concurrency", func(t *testing.T) { everyEvent(t, fresh(t)(t)) })
	t.Run("handler error: delivered again, then not after success", func(t *testing.T) { redelivered(t, fresh(t)(t)) })
	t.Run("subscription ended: no new delivery, the rest for the next", func(t *testing.T) { ended(t, fresh(t)) })
	t.Run("two subscribers of one group split a topic", func(t *testing.T) { split(t, fresh(t)) })
	t.Run("concurrency bound", func(t *testing.T) { bound(t, fresh(t)(t)) })
	t.Run("1 MiB payload", func(t *testing.T) { big(t, fresh(t)(t)) })
	t.Run("close cancels the handlers in flight", func(t *testing.T) { closeCancels(t, fresh(t)(t)) })
}

func roundTrip(t *testing.T, b pubsub.Broker) {
	sent := []pubsub.Message{
		{Topic: "orders", Data: []byte(`{"id":1}`), Metadata: map[string]string{"rawPayload": "true", "k": "v with spaces", "ünï": "cøde"}},
		{Topic: "orders", Data: []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}},
		{Topic: "orders", Data: []byte("no metadata")},
	}
	got := make(chan *pubsub.Delivery, len(sent))
	subscribe(t, context.Background(), b, "orders", func(_ context.Context, d *pubsub.Delivery) error {
		got <- d
		return nil
	})
	for i := range sent {
		publish(t, b, &sent[i])
	}
	byData := map[string]*pubsub.Delivery{}
	for range sent {
		d := receive(t, got)
		byData[string(d.Data)] = d
	}
	for _, m := range sent {
		d := byData[string(m.Data)]
		switch {
		case d == nil:
			t.Errorf("%q was not delivered", m.Data)
		case d.Topic != m.Topic || len(d.Metadata) != len(m.Metadata) || (len(m.Metadata) > 0 && !maps.Equal(d.Metadata, m.Metadata)):
			t.Errorf("delivered %+v; want %+v", d.Message, m)
		case d.ID == "" || d.Attempt > 1:
			t.Errorf("delivery of %q: id %q, attempt %d; want an id and the first attempt", m.Data, d.ID, d.Attempt)
		}
	}
}

func publishedBefore(t *testing.T, b pubsub.Broker) {
	publish(t, b, &pubsub.Message{Topic: "early", Data: []byte("before")})
	got := make(chan *pubsub.Delivery, 1)
	subscribe(t, context.Background(), b, "early", func(_ context.Context, d *pubsub.Delivery) error {
		got <- d
		return nil
	})
	if d := receive(t, got); string(d.Data) != "before" {
		t.Errorf("delivered %q", d.Data)
	}
}

func topicsApart(t *testing.T, b pubsub.Broker) {
	got := make(chan *pubsub.Delivery, 10)
	subscribe(t, context.Background(), b, "a", func(_ context.Context, d *pubsub.Delivery) error {
		got <- d
		return nil
	})
	publish(t, b, &pubsub.Message{Topic: "b", Data: []byte("for b")})
	publish(t, b, &pubsub.Message{Topic: "a", Data: []byte("for a")})
	if d := receive(t, got); string(d.Data) != "for a" || d.Topic != "a" {
		t.Errorf("a subscriber of topic a got %q of topic %q", d.Data, d.Topic)
	}
}

func everyEvent(t *testing.T, b pubsub.Broker) {
	const n = 300
	c := newCounter()
	subscribe(t, context.Background(), b, "many", c.handler(nil))
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < n; i += 4 {
				if err := b.Publish(context.Background(), &pubsub.Message{Topic: "many", Data: fmt.Appendf(nil, "%d", i)}); err != nil {
					t.Errorf("publish %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	c.waitAll(t, n)
}

func redelivered(t *testing.T, b pubsub.Broker) {
	const n = 5
	c := newCounter()
	var failed sync.Map
	subscribe(t, context.Background(), b, "flaky", c.handler(func(d *pubsub.Delivery) error {
		if _, again := failed.LoadOrStore(string(d.Data), true); !again {
			return fmt.Errorf("not yet")
		}
		if d.Attempt == 1 {
			t.Errorf("redelivery of %q says attempt 1", d.Data)
		}
		return nil
	}))
	for i := range n {
		publish(t, b, &pubsub.Message{Topic: "flaky", Data: fmt.Appendf(nil, "%d", i)})
	}
	c.waitAll(t, n)
	before := c.deliveries()
	time.Sleep(4 * settings.Redelivery) // an acknowledged event would be back by now
	if after := c.deliveries(); after != before {
		t.Errorf("%d deliveries after every event was acknowledged", after-before)
	}
	if before < 2*n {
		t.Errorf("%d deliveries of %d events that each failed once", before, n)
	}
}

func ended(t *testing.T, backend Backend) {
	const n = 8
	first, second := backend(t), backend(t)
	ctx, cancel := context.WithCancel(context.Background())
	entered, release := make(chan *pubsub.Delivery, 1), make(chan struct{})
	var inFlight, calls atomic.Int64
	var acked atomic.Value
	subscribe(t, ctx, first, "ended", func(hctx context.Context, d *pubsub.Delivery) error {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		if calls.Add(1) > 1 {
			return fmt.Errorf("not this one")
		}
		entered <- d
		<-release
		if hctx.Err() != nil {
			t.Errorf("the handler's ctx ended with its subscription's: %v", hctx.Err())
		}
		acked.Store(string(d.Data))
		return nil
	})
	for i := range n {
		publish(t, first, &pubsub.Message{Topic: "ended", Data: fmt.Appendf(nil, "%d", i)})
	}
	receive(t, entered)
	cancel()
	close(release)
	waitFor(t, "the handlers in flight", func() bool { return inFlight.Load() == 0 })
	time.Sleep(10 * time.Millisecond)
	callsAtEnd := calls.Load()

	for i := range n {
		publish(t, first, &pubsub.Message{Topic: "ended", Data: fmt.Appendf(nil, "after %d", i)})
	}
	c := newCounter()
	subscribe(t, context.Background(), second, "ended", c.handler(nil))
	c.waitAll(t, 2*n-1)
	if d := acked.Load().(string); c.count(d) != 0 {
		t.Errorf("%q, acknowledged by a handler that finished after its subscription ended, was delivered again", d)
	}
	if got := calls.Load(); got != callsAtEnd {
		t.Errorf("%d handler calls after the subscription ended", got-callsAtEnd)
	}
}

func split(t *testing.T, backend Backend) {
	const n = 200
	a, b := backend(t), backend(t)
	c := newCounter()
	subscribe(t, context.Background(), a, "split", c.handler(nil))
	subscribe(t, context.Background(), b, "split", c.handler(nil))
	for i := range n {
		publish(t, a, &pubsub.Message{Topic: "split", Data: fmt.Appendf(nil, "%d", i)})
	}
	c.waitAll(t, n)
}

func bound(t *testing.T, b pubsub.Broker) {
	const n = 40
	var now, most atomic.Int64
	c := newCounter()
	subscribe(t, context.Background(), b, "bound", c.handler(func(*pubsub.Delivery) error {
		cur := now.Add(1)
		defer now.Add(-1)
		for m := most.Load(); cur > m && !most.CompareAndSwap(m, cur); m = most.Load() {
		}
		time.Sleep(2 * time.Millisecond)
		return nil
	}))
	for i := range n {
		publish(t, b, &pubsub.Message{Topic: "bound", Data: fmt.Appendf(nil, "%d", i)})
	}
	c.waitAll(t, n)
	if m := most.Load(); m > int64(settings.Concurrency) {
		t.Errorf("%d handler calls at once; the bound is %d", m, settings.Concurrency)
	}
}

func big(t *testing.T, b pubsub.Broker) {
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	got := make(chan *pubsub.Delivery, 1)
	subscribe(t, context.Background(), b, "big", func(_ context.Context, d *pubsub.Delivery) error {
		got <- d
		return nil
	})
	publish(t, b, &pubsub.Message{Topic: "big", Data: data})
	if d := receive(t, got); !bytes.Equal(d.Data, data) {
		t.Errorf("delivered %d bytes, not the 1 MiB published", len(d.Data))
	}
}

func closeCancels(t *testing.T, b pubsub.Broker) {
	c, ok := b.(io.Closer)
	if !ok {
		t.Skip("not an io.Closer")
	}
	entered, ended := make(chan struct{}), make(chan error, 1)
	subscribe(t, context.Background(), b, "close", func(ctx context.Context, _ *pubsub.Delivery) error {
		close(entered)
		select {
		case <-ctx.Done():
			ended <- ctx.Err()
		case <-time.After(10 * time.Second):
			ended <- fmt.Errorf("not canceled")
		}
		return ctx.Err()
	})
	publish(t, b, &pubsub.Message{Topic: "close", Data: []byte("x")})
	<-entered
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-ended:
		if err == nil || err.Error() == "not canceled" {
			t.Errorf("the handler in flight: %v; want its ctx canceled", err)
		}
	default:
		t.Error("Close returned before the handler in flight did")
	}
	if err := b.Publish(context.Background(), &pubsub.Message{Topic: "close"}); err == nil {
		t.Error("Publish after Close: no error")
	}
}
