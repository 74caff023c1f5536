package pubsub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tandem-run/tandem/internal/inflight"
)

// BrokerConfig names a broker.
type BrokerConfig struct {
	Name   string // the component's name
	Type   string // e.g. pubsub.redis, for metadata
	Broker Broker
	// Access is what this app may do with the broker's topics; the zero
	// Access allows everything.
	Access Access
	// TopicPrefix is put before every topic on the broker, and taken off
	// the topic of what it delivers: daprd prefixes topics with the
	// namespace when a value of the component's metadata names
	// {namespace}, so that one broker serves namespaces apart. Access and
	// the CloudEvent's topic see the topic as the app names it.
	TopicPrefix string
}

// Service publishes and subscribes through named brokers. It is safe for
// concurrent use, and its brokers may be added, replaced and removed while
// it serves: a subscription is to a name, not to a broker, and follows it
// (see Subscribe and Put).
type Service struct {
	brokers atomic.Pointer[map[string]*named] // replaced whole, never changed
	mu      sync.Mutex                        // held by writers of brokers, subs and topics
	subs    map[string]map[*subscription]struct{}
	// topics counts the subscriptions of each broker name by topic;
	// replaced whole, never changed.
	topics atomic.Pointer[map[string]map[string]int]
	mw     []Middleware
}

type named struct {
	BrokerConfig
	use inflight.Gate // publishes and handler calls in flight, and whether retired
}

// subscription is a Subscribe call: delivery on whichever broker holds its
// name, until its ctx ends.
type subscription struct {
	ctx    context.Context
	name   string
	s      Subscription
	h      Handler
	cancel context.CancelFunc // ends delivery on the current broker; nil when none; s.mu
}

// NewService returns a Service with no brokers.
func NewService() *Service {
	s := &Service{subs: map[string]map[*subscription]struct{}{}}
	s.brokers.Store(&map[string]*named{})
	s.topics.Store(&map[string]map[string]int{})
	return s
}

// Add adds a broker; a broker of the same name is an error. Subscriptions
// waiting for the name (see Remove) start on it; when one cannot, nothing
// changes and the error says why.
func (s *Service) Add(c BrokerConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := (*s.brokers.Load())[c.Name]; dup {
		return fmt.Errorf("pubsub %q is defined twice", c.Name)
	}
	return s.put(c)
}

// Put adds the broker c, or replaces the broker of the same name. Every
// subscription to the name is first started on c; when one cannot be,
// nothing changes and the error says why. Then the broker replaced stops
// reading; publishes and deliveries in flight on it finish, and it is
// closed (when an io.Closer) once the last of them ends. Events it had
// read and not yet handed to a handler stay with the backend, for c.
//
// Put does not check that c's server answers: see Pinger.
func (s *Service) Put(c BrokerConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.put(c)
}

// put starts the subscriptions of c.Name on c, then makes c the broker of
// its name. s.mu is held.
func (s *Service) put(c BrokerConfig) error {
	if c.Broker == nil {
		return fmt.Errorf("pubsub %q has no broker", c.Name)
	}
	n := &named{BrokerConfig: c}
	n.use.Init()
	subs := s.subs[c.Name]
	started := make(map[*subscription]context.CancelFunc, len(subs))
	for sub := range subs {
		if n.Access.Subscribe(sub.s.Topic) != nil {
			started[sub] = func() {} // refused on c: it waits for a broker that allows it
			continue
		}
		cancel, err := start(sub, n)
		if err != nil {
			for _, cancel := range started {
				cancel()
			}
			return fmt.Errorf("pubsub %q: subscribing to topic %q: %w", c.Name, sub.s.Topic, err)
		}
		started[sub] = cancel
	}
	for sub, cancel := range started {
		if sub.cancel != nil {
			sub.cancel()
		}
		sub.cancel = cancel
	}
	s.swap(c.Name, n)
	return nil
}

// Remove removes the broker called name, which then answers as a pubsub
// that is not configured (ErrNotFound). It stops reading; publishes and
// deliveries in flight on it finish, and it is closed once the last of
// them ends. Subscriptions to the name wait, and start again on a broker
// added under the name. It reports whether there was such a broker.
func (s *Service) Remove(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := (*s.brokers.Load())[name]; !ok {
		return false
	}
	for sub := range s.subs[name] {
		if sub.cancel != nil {
			sub.cancel()
			sub.cancel = nil
		}
	}
	s.swap(name, nil)
	return true
}

// Get returns the broker called name, or an error wrapping ErrNotFound.
// Publish and subscribe through the Service, which follows replacements.
func (s *Service) Get(name string) (BrokerConfig, error) {
	n, ok := (*s.brokers.Load())[name]
	if !ok {
		return BrokerConfig{}, fmt.Errorf("pubsub %q is not configured: %w", name, ErrNotFound)
	}
	return n.BrokerConfig, nil
}

// Brokers lists the brokers by name.
func (s *Service) Brokers() []BrokerConfig {
	m := *s.brokers.Load()
	out := make([]BrokerConfig, 0, len(m))
	for _, n := range m {
		out = append(out, n.BrokerConfig)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Publish publishes m through the broker called name, inside the
// middleware (see Use). It returns nil once the broker holds the event. A
// topic its Access does not allow is an error wrapping ErrForbidden.
func (s *Service) Publish(ctx context.Context, name string, m *Message) error {
	if err := CheckTopic(m.Topic); err != nil {
		return err
	}
	n, err := s.acquire(name)
	if err != nil {
		return err
	}
	defer n.use.Release()
	return s.publish(ctx, n, m, n.Broker.Publish)
}

// publish runs the middleware around send, which publishes m (its topic
// prefixed) once Access allowed it, and wraps its error.
func (s *Service) publish(ctx context.Context, n *named, m *Message, send func(context.Context, *Message) error) error {
	c := &Call{Broker: n.BrokerConfig, Message: m, Declared: s.declared(n, m.Topic)}
	err := s.call(ctx, c, func(ctx context.Context) error {
		if err := n.Access.Publish(m.Topic); err != nil {
			return err
		}
		if n.TopicPrefix != "" {
			prefixed := *m
			prefixed.Topic = n.TopicPrefix + m.Topic
			return send(ctx, &prefixed)
		}
		return send(ctx, m)
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrForbidden):
		return fmt.Errorf("pubsub %q: %w", n.Name, err)
	}
	return fmt.Errorf("pubsub %q: publish to topic %q: %w", n.Name, m.Topic, err)
}

// Subscribe starts delivering the events of sub.Topic, on the broker called
// name, to h; an unknown name is an error wrapping ErrNotFound. Delivery
// goes on until ctx ends, on whichever broker holds the name: Put moves it
// to the new broker, and while no broker has the name (Remove) it waits.
// What ending it means for events in flight is Broker.Subscribe's. A topic
// the broker's Access does not let the app subscribe to is an error
// wrapping ErrForbidden that names the field refusing it; a broker Put
// under the name later does not run a subscription its Access refuses.
func (s *Service) Subscribe(ctx context.Context, name string, sub Subscription, h Handler) error {
	if err := CheckTopic(sub.Topic); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := (*s.brokers.Load())[name]
	if !ok {
		return fmt.Errorf("pubsub %q is not configured: %w", name, ErrNotFound)
	}
	if err := n.Access.Subscribe(sub.Topic); err != nil {
		return fmt.Errorf("pubsub %q: %w", name, err)
	}
	sb := &subscription{ctx: ctx, name: name, s: sub, h: h}
	cancel, err := start(sb, n)
	if err != nil {
		return fmt.Errorf("pubsub %q: subscribing to topic %q: %w", name, sub.Topic, err)
	}
	sb.cancel = cancel
	if s.subs[name] == nil {
		s.subs[name] = map[*subscription]struct{}{}
	}
	s.subs[name][sb] = struct{}{}
	s.subscribed(name, sub.Topic, 1)
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs[name], sb)
		s.subscribed(name, sub.Topic, -1)
		if sb.cancel != nil {
			sb.cancel()
		}
	})
	return nil
}

// start starts sub's delivery on n, its handler calls counted as n's uses.
// The CancelFunc returned ends it.
func start(sub *subscription, n *named) (context.CancelFunc, error) {
	ctx, cancel := context.WithCancel(sub.ctx)
	s := sub.s
	s.Topic = n.TopicPrefix + s.Topic
	h := func(ctx context.Context, d *Delivery) error {
		if !n.use.Acquire() {
			return fmt.Errorf("pubsub %q was replaced or removed: %w", n.Name, ErrClosed)
		}
		defer n.use.Release()
		if n.TopicPrefix != "" {
			d.Topic = strings.TrimPrefix(d.Topic, n.TopicPrefix)
		}
		return sub.h(ctx, d)
	}
	if err := n.Broker.Subscribe(ctx, s, h); err != nil {
		cancel()
		return nil, err
	}
	return cancel, nil
}

// Shutdown stops every subscription's reading, waits until the
// publishes and deliveries in flight end or ctx does, then closes every
// broker (which cancels the deliveries still in flight: their events are
// delivered again later). Call it once the Service serves no more calls.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	m := *s.brokers.Load()
	s.brokers.Store(&map[string]*named{})
	for _, subs := range s.subs {
		for sub := range subs {
			if sub.cancel != nil {
				sub.cancel()
				sub.cancel = nil
			}
		}
	}
	s.mu.Unlock()
	idle := make([]<-chan struct{}, 0, len(m))
	for _, n := range m {
		idle = append(idle, n.use.Retire())
	}
	for _, ch := range idle {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
	var errs []error
	for _, n := range m {
		errs = append(errs, n.close())
	}
	return errors.Join(errs...)
}

// Close closes every broker now; see Shutdown.
func (s *Service) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.Shutdown(ctx)
}

// acquire returns the broker called name, counted as in use until the
// caller releases it.
func (s *Service) acquire(name string) (*named, error) {
	for {
		n, ok := (*s.brokers.Load())[name]
		if !ok {
			return nil, fmt.Errorf("pubsub %q is not configured: %w", name, ErrNotFound)
		}
		if n.use.Acquire() {
			return n, nil
		}
		// Replaced since the load: look again.
	}
}

// swap makes n (nil: none) the broker called name, and retires the one it
// replaces: closed once its calls in flight end. s.mu is held.
func (s *Service) swap(name string, n *named) {
	if prev := inflight.Swap(&s.brokers, name, n); prev != nil {
		idle := prev.use.Retire()
		go func() {
			<-idle
			_ = prev.close()
		}()
	}
}

// close closes the broker, once.
func (n *named) close() error {
	return n.use.CloseOnce(func() error {
		if c, ok := n.Broker.(io.Closer); ok {
			return c.Close()
		}
		return nil
	})
}
