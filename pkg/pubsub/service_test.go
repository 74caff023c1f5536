package pubsub

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBroker delivers what is published to it to its subscriptions, one
// handler call per publish, in the publisher's goroutine; it records its
// subscriptions and whether it was closed.
type fakeBroker struct {
	mu        sync.Mutex
	subs      map[*fakeSub]struct{}
	closed    bool
	refuse    error         // Subscribe's error
	entered   chan struct{} // when set, closed when Publish is called
	publishAt chan struct{} // when set, Publish waits for it to close
}

type fakeSub struct {
	ctx context.Context
	s   Subscription
	h   Handler
}

func newFake() *fakeBroker { return &fakeBroker{subs: map[*fakeSub]struct{}{}} }

func (b *fakeBroker) Publish(ctx context.Context, m *Message) error {
	if b.entered != nil {
		close(b.entered)
	}
	if b.publishAt != nil {
		<-b.publishAt
	}
	b.mu.Lock()
	var hs []*fakeSub
	for s := range b.subs {
		if s.s.Topic == m.Topic && s.ctx.Err() == nil {
			hs = append(hs, s)
		}
	}
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return ErrClosed
	}
	for _, s := range hs {
		if err := s.h(context.Background(), &Delivery{Message: *m, ID: "1", Attempt: 1}); err != nil {
			return err
		}
	}
	return nil
}

func (b *fakeBroker) Subscribe(ctx context.Context, s Subscription, h Handler) error {
	if b.refuse != nil {
		return b.refuse
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs[&fakeSub{ctx, s, h}] = struct{}{}
	return nil
}

func (b *fakeBroker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

func (b *fakeBroker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// live counts the subscriptions whose ctx has not ended.
func (b *fakeBroker) live() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for s := range b.subs {
		if s.ctx.Err() == nil {
			n++
		}
	}
	return n
}

// recorder is a Handler that records the data it gets.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) handle(_ context.Context, d *Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, string(d.Data))
	return nil
}

func (r *recorder) data() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServiceUnknownNameAndBadTopic(t *testing.T) {
	s := NewService()
	defer s.Close()
	ctx := context.Background()
	if err := s.Publish(ctx, "nope", &Message{Topic: "t"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Publish to an unknown pubsub: %v", err)
	}
	if err := s.Subscribe(ctx, "nope", Subscription{Topic: "t"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("Subscribe to an unknown pubsub: %v", err)
	}
	if _, err := s.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unknown pubsub: %v", err)
	}
	if err := s.Add(BrokerConfig{Name: "ps", Broker: newFake()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(BrokerConfig{Name: "ps", Broker: newFake()}); err == nil {
		t.Error("Add of a name already there: no error")
	}
	if err := s.Publish(ctx, "ps", &Message{Topic: "bad\ntopic"}); !errors.Is(err, ErrBadTopic) {
		t.Errorf("Publish to a bad topic: %v", err)
	}
	if err := s.Subscribe(ctx, "ps", Subscription{Topic: ""}, nil); !errors.Is(err, ErrBadTopic) {
		t.Errorf("Subscribe to an empty topic: %v", err)
	}
}

// A subscription to a topic the broker's Access refuses is not started: the
// error names the topic and the field refusing it, and nothing reaches the
// handler; a broker Put later with such an Access does not run it either.
func TestServiceSubscribeRefusedByAccess(t *testing.T) {
	s := NewService()
	defer s.Close()
	ctx := context.Background()
	b := newFake()
	access := ParseAccess(map[string]string{MetadataSubscriptionScopes: "app1=orders"}, "app1")
	if err := s.Add(BrokerConfig{Name: "ps", Broker: b, Access: access}); err != nil {
		t.Fatal(err)
	}
	var r recorder
	err := s.Subscribe(ctx, "ps", Subscription{Topic: "audit"}, r.handle)
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), `"audit"`) || !strings.Contains(err.Error(), MetadataSubscriptionScopes) {
		t.Fatalf("Subscribe to a topic out of scope: %v; want ErrForbidden naming the topic and %s", err, MetadataSubscriptionScopes)
	}
	if b.live() != 0 {
		t.Errorf("%d subscriptions on the broker; want 0", b.live())
	}
	if err := s.Subscribe(ctx, "ps", Subscription{Topic: "orders"}, r.handle); err != nil {
		t.Fatalf("Subscribe to a topic in scope: %v", err)
	}
	narrower := ParseAccess(map[string]string{MetadataAllowedTopics: "audit"}, "app1")
	c := newFake()
	if err := s.Put(BrokerConfig{Name: "ps", Broker: c, Access: narrower}); err != nil {
		t.Fatal(err)
	}
	if c.live() != 0 {
		t.Errorf("after a Put whose allowedTopics refuse the topic: %d subscriptions on the new broker; want 0", c.live())
	}
	if got := r.data(); len(got) != 0 {
		t.Errorf("delivered %q; want nothing", got)
	}
}

// A subscription follows its name: Put moves it to the new broker, Remove
// pauses it, Add resumes it, and its ctx ends it.
func TestServiceSubscriptionFollowsTheName(t *testing.T) {
	s := NewService()
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b, c := newFake(), newFake(), newFake()
	if err := s.Add(BrokerConfig{Name: "ps", Type: "pubsub.in-memory", Broker: a}); err != nil {
		t.Fatal(err)
	}
	var r recorder
	if err := s.Subscribe(ctx, "ps", Subscription{Topic: "t"}, r.handle); err != nil {
		t.Fatal(err)
	}
	publish := func(data string) error {
		return s.Publish(context.Background(), "ps", &Message{Topic: "t", Data: []byte(data)})
	}
	if err := publish("on a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(BrokerConfig{Name: "ps", Broker: b}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the replaced broker closed", a.isClosed)
	if a.live() != 0 || b.live() != 1 {
		t.Errorf("after Put: %d subscriptions on the old broker, %d on the new; want 0 and 1", a.live(), b.live())
	}
	if err := publish("on b"); err != nil {
		t.Fatal(err)
	}
	if !s.Remove("ps") || s.Remove("ps") {
		t.Error("Remove: want true, then false")
	}
	eventually(t, "the removed broker closed", b.isClosed)
	if err := publish("nowhere"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Publish after Remove: %v", err)
	}
	if err := s.Add(BrokerConfig{Name: "ps", Broker: c}); err != nil {
		t.Fatal(err)
	}
	if err := publish("on c"); err != nil {
		t.Fatal(err)
	}
	cancel()
	eventually(t, "the subscription ended", func() bool { return c.live() == 0 })
	if got := r.data(); len(got) != 3 || got[0] != "on a" || got[1] != "on b" || got[2] != "on c" {
		t.Errorf("delivered %q; want on a, on b, on c", got)
	}
	if got := s.Brokers(); len(got) != 1 || got[0].Broker != c {
		t.Errorf("Brokers() = %+v", got)
	}
}

// A Put whose broker cannot take a subscription changes nothing.
func TestServicePutRefusedKeepsTheOld(t *testing.T) {
	s := NewService()
	defer s.Close()
	a := newFake()
	if err := s.Add(BrokerConfig{Name: "ps", Broker: a}); err != nil {
		t.Fatal(err)
	}
	var r recorder
	if err := s.Subscribe(context.Background(), "ps", Subscription{Topic: "t"}, r.handle); err != nil {
		t.Fatal(err)
	}
	bad := newFake()
	bad.refuse = errors.New("connection refused")
	if err := s.Put(BrokerConfig{Name: "ps", Broker: bad}); err == nil {
		t.Fatal("Put of a broker that cannot subscribe: no error")
	}
	if got, _ := s.Get("ps"); got.Broker != a || a.isClosed() || a.live() != 1 {
		t.Errorf("after a refused Put: broker %v, closed %v, %d subscriptions; want the old one, open, 1", got.Broker, a.isClosed(), a.live())
	}
}

// A broker replaced while a publish is in flight is closed only once it
// returned.
func TestServiceReplacedBrokerClosedAfterCallsInFlight(t *testing.T) {
	s := NewService()
	defer s.Close()
	a := newFake()
	a.entered, a.publishAt = make(chan struct{}), make(chan struct{})
	if err := s.Add(BrokerConfig{Name: "ps", Broker: a}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- s.Publish(context.Background(), "ps", &Message{Topic: "t"}) }()
	<-a.entered
	if err := s.Put(BrokerConfig{Name: "ps", Broker: newFake()}); err != nil {
		t.Fatal(err)
	}
	if a.isClosed() {
		t.Fatal("the replaced broker was closed with a publish in flight")
	}
	close(a.publishAt)
	if err := <-done; err != nil {
		t.Errorf("the publish in flight: %v", err)
	}
	eventually(t, "the replaced broker closed", a.isClosed)
}

// Shutdown stops reading, waits for the deliveries in flight, then closes;
// when its ctx ends first it closes anyway.
func TestServiceShutdown(t *testing.T) {
	for _, wait := range []bool{true, false} {
		s := NewService()
		a := newFake()
		if err := s.Add(BrokerConfig{Name: "ps", Broker: a}); err != nil {
			t.Fatal(err)
		}
		inHandler, release := make(chan struct{}), make(chan struct{})
		h := func(context.Context, *Delivery) error {
			close(inHandler)
			<-release
			return nil
		}
		if err := s.Subscribe(context.Background(), "ps", Subscription{Topic: "t"}, h); err != nil {
			t.Fatal(err)
		}
		go func() { _ = a.Publish(context.Background(), &Message{Topic: "t"}) }()
		<-inHandler
		ctx, cancel := context.WithCancel(context.Background())
		shut := make(chan error)
		go func() { shut <- s.Shutdown(ctx) }()
		eventually(t, "reading stopped", func() bool { return a.live() == 0 })
		select {
		case <-shut:
			t.Fatal("Shutdown returned with a delivery in flight")
		case <-time.After(50 * time.Millisecond):
		}
		if a.isClosed() {
			t.Fatal("closed with a delivery in flight")
		}
		if wait {
			close(release)
		} else {
			cancel()
		}
		if err := <-shut; err != nil || !a.isClosed() {
			t.Errorf("Shutdown: %v, closed %v", err, a.isClosed())
		}
		if !wait {
			close(release)
		}
		cancel()
	}
}

// A broker with a TopicPrefix holds its topics under the prefix, and the
// app sees them as it names them: a topic published without the Service
// (another namespace's, or no namespace) is not delivered to it.
func TestServiceTopicPrefix(t *testing.T) {
	s := NewService()
	defer s.Close()
	b := newFake()
	access := ParseAccess(map[string]string{"allowedTopics": "orders"}, "app")
	if err := s.Add(BrokerConfig{Name: "ps", Broker: b, Access: access, TopicPrefix: "prod"}); err != nil {
		t.Fatal(err)
	}
	var topics []string
	var mu sync.Mutex
	h := func(_ context.Context, d *Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		topics = append(topics, d.Topic+"="+string(d.Data))
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Subscribe(ctx, "ps", Subscription{Topic: "orders"}, h); err != nil {
		t.Fatal(err)
	}
	m := &Message{Topic: "orders", Data: []byte("1")}
	if err := s.Publish(ctx, "ps", m); err != nil {
		t.Fatal(err)
	}
	if m.Topic != "orders" {
		t.Errorf("Publish changed the caller's message: topic %q", m.Topic)
	}
	// What others put on the broker under the bare name is another topic.
	if err := b.Publish(ctx, &Message{Topic: "orders", Data: []byte("bare")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, &Message{Topic: "prodorders", Data: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := strings.Join(topics, " ")
	mu.Unlock()
	if got != "orders=1 orders=2" {
		t.Errorf("deliveries: %q, want %q", got, "orders=1 orders=2")
	}
	b.mu.Lock()
	for sub := range b.subs {
		if sub.s.Topic != "prodorders" {
			t.Errorf("subscribed on the broker to %q, want %q", sub.s.Topic, "prodorders")
		}
	}
	b.mu.Unlock()
	// Access decides on the app's name of the topic, not the broker's.
	if err := s.Publish(ctx, "ps", &Message{Topic: "prodorders"}); !errors.Is(err, ErrForbidden) {
		t.Errorf("publish to a topic outside allowedTopics: %v", err)
	}
}
