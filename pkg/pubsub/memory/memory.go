// Package memory is the pubsub.in-memory component: topics in this
// process's memory, for one sidecar.
//
// Delivery is at least once within the process: an event stays until a
// handler acknowledges it; a handler's error delivers it again after
// redeliverInterval, as many times as it takes. Subscriptions to one
// topic share its events (each event goes to one of them). An event
// published while no subscription is there waits for one. Each topic holds
// at most maxPending events not yet acknowledged; a publish past that is
// an error. Everything is lost with the process, or when the component is
// replaced.
package memory

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Config is what a pubsub.in-memory component's metadata says.
type Config struct {
	// Concurrency is how many handler calls one subscription makes at
	// once (1: one at a time, in order, as daprd's in-memory component).
	Concurrency int
	// RedeliverInterval is how long after a handler's error its event is
	// delivered again.
	RedeliverInterval time.Duration
	// MaxPending bounds the events a topic holds that are not yet
	// acknowledged.
	MaxPending int
}

// Defaults of the metadata fields.
const (
	DefaultConcurrency       = 1
	DefaultRedeliverInterval = time.Second
	DefaultMaxPending        = 10_000
)

// ParseMetadata validates a pubsub.in-memory component's metadata: its own
// fields concurrency, redeliverInterval and maxPending, and
// pubsub.ScopeFields. Errors name the field and what it accepts.
func ParseMetadata(md map[string]string) (Config, error) {
	c := Config{Concurrency: DefaultConcurrency, RedeliverInterval: DefaultRedeliverInterval, MaxPending: DefaultMaxPending}
	for k, v := range md {
		var err error
		switch k {
		case "concurrency":
			c.Concurrency, err = wholeNumber(k, v, 1, 10_000)
		case "maxPending":
			c.MaxPending, err = wholeNumber(k, v, 1, 10_000_000)
		case "redeliverInterval":
			c.RedeliverInterval, err = pubsub.ParseDuration(k, v)
		default:
			if !isScopeField(k) {
				err = fmt.Errorf("metadata %q is not a pubsub.in-memory field; accepted: concurrency, redeliverInterval, maxPending, publishingScopes, subscriptionScopes, allowedTopics, protectedTopics", k)
			}
		}
		if err != nil {
			return Config{}, err
		}
	}
	return c, nil
}

func wholeNumber(name, v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("metadata %s %q: want a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

func isScopeField(k string) bool {
	for _, f := range pubsub.ScopeFields {
		if k == f {
			return true
		}
	}
	return false
}

// Broker is the in-memory broker. It is safe for concurrent use.
type Broker struct {
	cfg    Config
	ctx    context.Context // canceled by Close: handlers in flight end
	cancel context.CancelFunc
	wg     sync.WaitGroup // subscriptions and handlers
	mu     sync.Mutex
	topics map[string]*topic
	closed bool
	seq    uint64 // event ids
}

// topic is one topic's events.
type topic struct {
	ready   []*event      // waiting for a subscription, oldest first
	pending int           // ready, in flight, or waiting to be delivered again
	wake    chan struct{} // closed when an event becomes ready
}

type event struct {
	id      string
	msg     pubsub.Message
	attempt int
}

// New returns a broker with no events.
func New(cfg Config) *Broker {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.RedeliverInterval <= 0 {
		cfg.RedeliverInterval = DefaultRedeliverInterval
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Broker{cfg: cfg, ctx: ctx, cancel: cancel, topics: map[string]*topic{}}
}

// topic returns the topic called name, made when missing. b.mu is held.
func (b *Broker) topic(name string) *topic {
	t := b.topics[name]
	if t == nil {
		t = &topic{wake: make(chan struct{})}
		b.topics[name] = t
	}
	return t
}

// Publish keeps a copy of m until a handler acknowledges it.
func (b *Broker) Publish(_ context.Context, m *pubsub.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("in-memory pubsub: %w", pubsub.ErrClosed)
	}
	t := b.topic(m.Topic)
	if t.pending >= b.cfg.MaxPending {
		return fmt.Errorf("in-memory pubsub: topic %q holds %d events not yet acknowledged, its maxPending", m.Topic, t.pending)
	}
	b.seq++
	msg := pubsub.Message{Topic: m.Topic, Data: append([]byte(nil), m.Data...), Metadata: maps.Clone(m.Metadata)}
	t.pending++
	b.ready(t, &event{id: strconv.FormatUint(b.seq, 10), msg: msg})
	return nil
}

// ready makes e ready for delivery and wakes the topic's subscriptions.
// b.mu is held.
func (b *Broker) ready(t *topic, e *event) {
	t.ready = append(t.ready, e)
	close(t.wake)
	t.wake = make(chan struct{})
}

// Subscribe delivers the events of s.Topic to h, at most Concurrency at
// once, until ctx ends or the broker is closed. The subscription metadata
// deliverToAllReplicas is checked and changes nothing: there is one
// sidecar, so its subscription already receives every event.
func (b *Broker) Subscribe(ctx context.Context, s pubsub.Subscription, h pubsub.Handler) error {
	if _, _, err := pubsub.AllReplicas(s.Metadata); err != nil {
		return fmt.Errorf("in-memory pubsub: subscription to topic %q: %w", s.Topic, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("in-memory pubsub: %w", pubsub.ErrClosed)
	}
	b.topic(s.Topic)
	b.wg.Add(1)
	go b.dispatch(ctx, s.Topic, h)
	return nil
}

// dispatch hands the topic's events to h until ctx ends or the broker is
// closed.
func (b *Broker) dispatch(ctx context.Context, topic string, h pubsub.Handler) {
	defer b.wg.Done()
	slots := make(chan struct{}, b.cfg.Concurrency)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		case <-b.ctx.Done():
			return
		}
		e := b.take(ctx, topic)
		if e == nil {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer func() { <-slots }()
			b.deliver(ctx, topic, e, h)
		}()
	}
}

// take waits for an event of topic, or returns nil once ctx ends or the
// broker is closed.
func (b *Broker) take(ctx context.Context, topic string) *event {
	for {
		b.mu.Lock()
		t := b.topics[topic]
		if ctx.Err() != nil || b.closed {
			b.mu.Unlock()
			return nil
		}
		if len(t.ready) > 0 {
			e := t.ready[0]
			t.ready[0] = nil
			t.ready = t.ready[1:]
			b.mu.Unlock()
			return e
		}
		wake := t.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
		case <-b.ctx.Done():
		}
	}
}

// deliver calls h with e, then forgets e (nil) or has it delivered again
// after RedeliverInterval (an error).
func (b *Broker) deliver(subCtx context.Context, topic string, e *event, h pubsub.Handler) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(subCtx))
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()
	e.attempt++
	err := h(ctx, &pubsub.Delivery{Message: e.msg, ID: e.id, Attempt: e.attempt})
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topics[topic]
	if err == nil {
		t.pending--
		return
	}
	time.AfterFunc(b.cfg.RedeliverInterval, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !b.closed {
			b.ready(t, e)
		}
	})
}

// Close stops every subscription, cancels the handlers in flight and waits
// for them to return. Its events are gone.
func (b *Broker) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	return nil
}

var _ pubsub.Broker = (*Broker)(nil)
