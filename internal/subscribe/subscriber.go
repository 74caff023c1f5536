package subscribe

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/tandem-run/tandem/internal/resiliency"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Config is what a Subscriber needs.
type Config struct {
	AppID  string
	PubSub *pubsub.Service
	// HTTP or GRPC is the channel to the app (at most one):
	// invoke.Invoker's AppTransport or AppCallback. Requests to an HTTP
	// app have a URL whose host is a placeholder: the channel sends them
	// to the app's address. With neither (no app port) only streaming
	// subscriptions run (Stream).
	HTTP http.RoundTripper
	GRPC runtimev1pb.AppCallbackClient
	// Health is the app's health (an *invoke.Invoker); nil: always
	// healthy.
	Health Health
	// Declared are the subscriptions of Subscription resources, until
	// SetDeclared changes them. The app's own are read by Run.
	Declared []Subscription
	// Inbound returns the inbound policy of a pub/sub component in force
	// (resiliency.Set.ComponentInbound): its retry (none: one try) and its
	// timeout of each try. Without a policy (nil), DefaultRetry.
	Inbound func(pubsubName string) *resiliency.Policy
	Metrics *Metrics // nil: none
	Tracer  Tracer   // nil: none
	Logger  *slog.Logger
	// ShutdownGrace bounds how long Run waits, once its ctx ends, for the
	// deliveries in flight; those still running then are cut short and
	// their events stay pending. 0: DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// RetryInterval is how often a subscription that could not start (its
	// pubsub is not configured, its broker failed) is tried again, and the
	// app's subscriptions read again when it did not answer. 0:
	// DefaultRetryInterval.
	RetryInterval time.Duration
}

// Defaults of Config.
const (
	DefaultShutdownGrace = 5 * time.Second
	DefaultRetryInterval = 5 * time.Second
)

// DefaultRetry is the retry policy of a component without an inbound
// one: three tries, 0.5 s and 1 s apart. daprd tries once and leaves the
// rest to the component's redelivery.
var DefaultRetry = resiliency.Retry{Exponential: true, Interval: 500 * time.Millisecond, MaxInterval: 5 * time.Second, MaxRetries: 2}

// Health is the app's health as the sidecar checks it.
type Health interface {
	// AppHealthy is closed while the app is healthy.
	AppHealthy() <-chan struct{}
	// AppUnhealthy is closed while the app is unhealthy; nil: never.
	AppUnhealthy() <-chan struct{}
}

// Tracer traces deliveries: *telemetry.Tracing.
type Tracer interface {
	// StartDelivery starts the span of a delivery of an event of topic:
	// a child of the publisher's span, whose W3C trace context the event
	// carries (traceparent and tracestate; a missing or malformed one
	// starts a new trace). end ends it with the outcome: the app's last
	// answer (SUCCESS, RETRY, DROP) or "" for none, and why it failed.
	StartDelivery(ctx context.Context, pubsubName, topic, traceparent, tracestate string) (_ context.Context, end func(status string, err error))
}

// Subscriber keeps the app's subscriptions running: see Run. It is safe for
// concurrent use.
type Subscriber struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	declared []*sub
	app      []*sub        // the app's own once read
	read     bool          // the app's own were read (or it answered with an error)
	streams  []*sub        // the streaming subscriptions (Stream)
	wake     chan struct{} // a change of the declared ones, for running

	flight inflight
	// hard ends the deliveries still in flight when the grace after Run's
	// ctx is over.
	hard     context.Context
	hardStop context.CancelFunc
}

// New returns a Subscriber of the declared subscriptions; one that is not
// valid is an error naming it.
func New(cfg Config) (*Subscriber, error) {
	if cfg.PubSub == nil {
		return nil, errors.New("subscribe: no pubsub service")
	}
	if cfg.HTTP != nil && cfg.GRPC != nil {
		return nil, errors.New("subscribe: give one app channel, HTTP or gRPC, not both")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	s := &Subscriber{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1)}
	s.hard, s.hardStop = context.WithCancel(context.Background())
	s.flight.init()
	if err := s.SetDeclared(cfg.Declared); err != nil {
		return nil, err
	}
	return s, nil
}

// SetDeclared puts subs in place of the declared subscriptions; one that
// is not valid is an error naming it, and changes nothing. While Run runs,
// those no longer declared stop (the events of their deliveries in flight
// stay pending), the new ones start, and those unchanged go on.
func (s *Subscriber) SetDeclared(subs []Subscription) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make([]*sub, 0, len(subs))
	for _, d := range subs {
		if i := slices.IndexFunc(s.declared, func(sb *sub) bool { return reflect.DeepEqual(sb.Subscription, d) }); i >= 0 {
			next = append(next, s.declared[i]) // unchanged: goes on
			continue
		}
		sb, err := prepare(d)
		if err != nil {
			return err
		}
		next = append(next, sb)
	}
	s.declared = next
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// Subscriptions lists the subscriptions that run: the declared ones, the
// app's own once read, then the streaming ones.
func (s *Subscriber) Subscriptions() []Subscription {
	s.mu.Lock()
	active := append(s.activeLocked(), s.streams...)
	s.mu.Unlock()
	out := make([]Subscription, len(active))
	for i, sb := range active {
		out[i] = sb.Subscription
	}
	return out
}

// active is the subscriptions that run: the declared ones, then the app's
// own. Of a pubsub and topic, the app's own runs, as in daprd, and else
// the first declared.
func (s *Subscriber) active() []*sub {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.activeLocked()
}

// activeLocked is active, s.mu held. With no app channel, none: only
// streams deliver.
func (s *Subscriber) activeLocked() []*sub {
	if s.cfg.HTTP == nil && s.cfg.GRPC == nil {
		return nil
	}
	taken := map[[2]string]bool{}
	for _, sb := range s.app {
		taken[[2]string{sb.PubsubName, sb.Topic}] = true
	}
	out := make([]*sub, 0, len(s.declared)+len(s.app))
	for _, sb := range s.declared {
		key := [2]string{sb.PubsubName, sb.Topic}
		if !taken[key] {
			taken[key] = true
			out = append(out, sb)
		}
	}
	return append(out, s.app...)
}

// Run delivers the events of the subscriptions to the app until ctx ends.
//
// It starts once the app is healthy: it then reads the app's own
// subscriptions (once, when the first pub/sub component is there, as
// daprd), and subscribes. A subscription that cannot start (its pubsub is
// not configured, its broker fails) is logged and tried again every
// RetryInterval. While the app is unhealthy every subscription is stopped,
// so that events wait in the broker rather than in the sidecar; they start
// again when it is healthy.
//
// When ctx ends, Run stops reading, lets the deliveries in flight finish
// within ShutdownGrace, cuts the rest short (their events stay pending),
// and returns. Run is called once.
func (s *Subscriber) Run(ctx context.Context) error {
	defer s.drain()
	paused := false
	for {
		select {
		case <-s.healthy():
		case <-ctx.Done():
			return nil
		}
		if paused {
			s.log.Info("app is healthy again: pub/sub delivery resumes")
		}
		run, stop := context.WithCancel(ctx)
		s.running(run)
		stop()
		if ctx.Err() != nil {
			return nil
		}
		paused = true
		s.log.Warn("app is unhealthy: pub/sub delivery paused, events wait in their brokers")
	}
}

// running keeps the subscriptions running until ctx ends or the app is
// unhealthy.
func (s *Subscriber) running(ctx context.Context) {
	unhealthy := s.unhealthy()
	started := map[*sub]context.CancelFunc{}
	defer func() {
		for _, stop := range started {
			stop()
		}
	}()
	failed := map[*sub]string{} // the last error logged, to log a change once
	t := time.NewTicker(s.cfg.RetryInterval)
	defer t.Stop()
	for {
		s.readApp(ctx)
		subs := s.active()
		for sb, stop := range started {
			if !slices.Contains(subs, sb) {
				stop()
				delete(started, sb)
				s.log.Info("unsubscribed", "pubsub", sb.PubsubName, "topic", sb.Topic, "type", sb.Type)
			}
		}
		for sb := range failed {
			if !slices.Contains(subs, sb) {
				delete(failed, sb)
			}
		}
		for _, sb := range subs {
			if started[sb] != nil {
				continue
			}
			subCtx, stop := context.WithCancel(ctx)
			err := s.cfg.PubSub.Subscribe(subCtx, sb.PubsubName, pubsub.Subscription{Topic: sb.Topic, Metadata: sb.Metadata}, s.handler(subCtx, sb))
			if err != nil {
				stop()
				if msg := err.Error(); failed[sb] != msg {
					failed[sb] = msg
					if errors.Is(err, pubsub.ErrForbidden) {
						// Tried again all the same: a reload may change the access.
						s.log.Warn("subscription not started: the component's topic access refuses it", "pubsub", sb.PubsubName, "topic", sb.Topic, "err", err)
					} else {
						s.log.Warn("cannot subscribe yet; trying again", "pubsub", sb.PubsubName, "topic", sb.Topic, "every", s.cfg.RetryInterval, "err", err)
					}
				}
				continue
			}
			if _, was := failed[sb]; was || sb.Type == Declarative {
				delete(failed, sb)
				s.log.Info("subscribed", "pubsub", sb.PubsubName, "topic", sb.Topic, "type", sb.Type)
			}
			started[sb] = stop
		}
		select {
		case <-ctx.Done():
			return
		case <-unhealthy:
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

func (s *Subscriber) healthy() <-chan struct{} {
	if s.cfg.Health == nil {
		return closed
	}
	return s.cfg.Health.AppHealthy()
}

func (s *Subscriber) unhealthy() <-chan struct{} {
	if s.cfg.Health == nil {
		return nil
	}
	return s.cfg.Health.AppUnhealthy()
}

var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// drain waits for the deliveries in flight, at most ShutdownGrace, then
// cuts the rest short and waits for them to return.
func (s *Subscriber) drain() {
	idle := s.flight.close()
	t := time.NewTimer(s.cfg.ShutdownGrace)
	defer t.Stop()
	select {
	case <-idle:
		return
	case <-t.C:
	}
	s.log.Warn("deliveries still in flight after the shutdown grace period are cut short; their events stay pending", "grace", s.cfg.ShutdownGrace)
	s.hardStop()
	<-idle
}

// inflight counts the deliveries in flight; once closed it admits none.
type inflight struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when closed and n is 0
}

func (f *inflight) init() { f.idle = make(chan struct{}) }

func (f *inflight) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.n++
	return true
}

func (f *inflight) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.closed && f.n == 0 {
		close(f.idle)
	}
}

// close admits no more deliveries and returns a channel closed once none
// is in flight.
func (f *inflight) close() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		if f.n == 0 {
			close(f.idle)
		}
	}
	return f.idle
}

// errStopped is the error of a delivery that the subscriber did not make
// because it is paused or stopping: its event stays pending.
var errStopped = errors.New("subscriber paused or stopping: the event stays pending")

// policy is the retry policy and per-try timeout of deliveries from
// pubsubName.
func (s *Subscriber) policy(pubsubName string) (resiliency.Retry, time.Duration) {
	var p *resiliency.Policy
	if s.cfg.Inbound != nil {
		p = s.cfg.Inbound(pubsubName)
	}
	if p == nil {
		return DefaultRetry, 0
	}
	if p.Retry == nil {
		return resiliency.Retry{}, p.Timeout // one try
	}
	return *p.Retry, p.Timeout
}
