package subscribe

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/internal/resiliency"
	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/memory"
)

// wait bounds every wait of these tests: a subscriber that loses an event
// fails after it, and one that works is much faster.
const wait = 20 * time.Second

// fast is the retry policy of the tests: three tries, no wait to speak of.
var fast = &resiliency.Policy{Name: "test/fast", Retry: &resiliency.Retry{Interval: time.Millisecond, MaxRetries: 2}}

// result is what a subscriber's handler returned for one delivery: nil
// acknowledges the event, an error leaves it pending.
type result struct {
	data    string // the event's data, as published
	attempt int
	err     error
}

// recBroker is an in-memory broker that reports every handler's result and
// records every publish, so that tests see exactly what was acknowledged
// and what went to a dead-letter topic, without waiting for what does not
// happen.
type recBroker struct {
	*memory.Broker
	results chan result

	mu        sync.Mutex
	published map[string][]string // topic -> data
	handlers  int                 // handler calls so far
}

func newRecBroker(cfg memory.Config) *recBroker {
	return &recBroker{Broker: memory.New(cfg), results: make(chan result, 10_000), published: map[string][]string{}}
}

func (b *recBroker) Publish(ctx context.Context, m *pubsub.Message) error {
	b.mu.Lock()
	b.published[m.Topic] = append(b.published[m.Topic], string(m.Data))
	b.mu.Unlock()
	return b.Broker.Publish(ctx, m)
}

func (b *recBroker) Subscribe(ctx context.Context, s pubsub.Subscription, h pubsub.Handler) error {
	return b.Broker.Subscribe(ctx, s, func(ctx context.Context, d *pubsub.Delivery) error {
		b.mu.Lock()
		b.handlers++
		b.mu.Unlock()
		err := h(ctx, d)
		b.results <- result{data: string(d.Data), attempt: d.Attempt, err: err}
		return err
	})
}

func (b *recBroker) publishedTo(topic string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.published[topic]...)
}

func (b *recBroker) handlerCalls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.handlers
}

// next waits for the next handler result.
func (b *recBroker) next(t *testing.T) result {
	t.Helper()
	select {
	case r := <-b.results:
		return r
	case <-time.After(wait):
		t.Fatalf("no delivery after %s", wait)
		panic("unreachable")
	}
}

// call is one request the app received.
type call struct {
	Ctx    context.Context // the request's
	Path   string
	Header http.Header
	Body   []byte
	Event  map[string]any
}

// httpApp is an HTTP app whose answer to each delivery a test decides.
type httpApp struct {
	srv     *httptest.Server
	answer  func(c call, n int) (int, string) // n: the nth call with this event's id, from 1
	healthy chan bool                         // a value sets the health probe's answer

	mu        sync.Mutex
	calls     []call
	byID      map[string]int
	subscribe string // the answer to GET /dapr/subscribe; "" is 404
	reads     int    // GET /dapr/subscribe calls
	probes    int    // health probes
	isHealthy bool
	got       chan call
}

func newHTTPApp(t *testing.T, answer func(c call, n int) (int, string)) *httpApp {
	a := &httpApp{answer: answer, byID: map[string]int{}, isHealthy: true, got: make(chan call, 10_000)}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *httpApp) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/healthz":
		a.mu.Lock()
		ok := a.isHealthy
		a.probes++
		a.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		return
	case r.Method == http.MethodGet && r.URL.Path == "/dapr/subscribe":
		a.mu.Lock()
		s := a.subscribe
		a.reads++
		a.mu.Unlock()
		if s == "" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, s)
		return
	}
	body, _ := io.ReadAll(r.Body)
	c := call{Ctx: r.Context(), Path: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body}
	_ = json.Unmarshal(body, &c.Event)
	id, _ := c.Event["id"].(string)
	a.mu.Lock()
	a.calls = append(a.calls, c)
	a.byID[id]++
	n := a.byID[id]
	a.mu.Unlock()
	code, answer := http.StatusOK, ""
	if a.answer != nil {
		code, answer = a.answer(c, n)
	}
	a.got <- c
	w.WriteHeader(code)
	_, _ = io.WriteString(w, answer)
}

func (a *httpApp) setHealthy(ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.isHealthy = ok
}

func (a *httpApp) setSubscribe(answer string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.subscribe = answer
}

func (a *httpApp) counts() (reads, probes int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reads, a.probes
}

func (a *httpApp) callCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

func (a *httpApp) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

// env is a subscriber's world: a pub/sub service with one in-memory
// broker called "pubsub", and the app's channel through a real Invoker.
type env struct {
	t       *testing.T
	svc     *pubsub.Service
	broker  *recBroker
	inv     *invoke.Invoker
	reg     *prometheus.Registry
	metrics *Metrics
	logs    *syncbuf.Buffer
	log     *slog.Logger
}

type envOptions struct {
	memory   memory.Config
	invoke   invoke.Config // AppID and AppAddress are filled in
	noBroker bool
}

func newEnv(t *testing.T, appAddr string, o envOptions) *env {
	e := &env{t: t, svc: pubsub.NewService(), reg: prometheus.NewRegistry(), logs: &syncbuf.Buffer{}}
	e.log = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.metrics = NewMetrics("checkout", e.reg)
	if o.memory.RedeliverInterval == 0 {
		o.memory.RedeliverInterval = 20 * time.Millisecond
	}
	e.broker = newRecBroker(o.memory)
	if !o.noBroker {
		if err := e.svc.Add(pubsub.BrokerConfig{Name: "pubsub", Type: "pubsub.in-memory", Broker: e.broker}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = e.svc.Close() })
	o.invoke.AppID, o.invoke.AppAddress = "checkout", appAddr
	if o.invoke.AppProtocol == "" {
		o.invoke.AppProtocol = "http"
	}
	inv, err := invoke.New(o.invoke, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inv.Close)
	e.inv = inv
	if o.invoke.Health != nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); inv.RunHealthChecks(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return e
}

// probed are health checks that find the app's health at once.
var probed = &invoke.HealthCheck{Path: "/healthz", Interval: 10 * time.Millisecond, Timeout: 10 * time.Millisecond, Threshold: 1}

// config is a Subscriber's Config in e, for subs.
func (e *env) config(subs ...Subscription) Config {
	cfg := Config{
		AppID:         "checkout",
		PubSub:        e.svc,
		Declared:      subs,
		Health:        e.inv,
		Inbound:       func(string) *resiliency.Policy { return fast },
		Metrics:       e.metrics,
		Logger:        e.log,
		RetryInterval: 20 * time.Millisecond,
	}
	if rt := e.inv.AppTransport(); rt != nil {
		cfg.HTTP = rt
	} else {
		cfg.GRPC = e.inv.AppCallback()
	}
	return cfg
}

// run starts a Subscriber of cfg; stop ends its Run and waits for it.
func (e *env) run(cfg Config) (s *Subscriber, stop func()) {
	e.t.Helper()
	s, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Run: %v", err)
				}
			case <-time.After(wait):
				e.t.Errorf("Run did not return %s after its ctx ended", wait)
			}
		})
	}
	e.t.Cleanup(stop)
	return s, stop
}

// publish publishes data on topic as the publish API does: in daprd's
// envelope, unless md says rawPayload.
func (e *env) publish(topic, data string, md map[string]string) {
	e.t.Helper()
	b, err := pubsub.Envelope(pubsub.Publication{AppID: "shop", PubsubName: "pubsub", Topic: topic, Data: []byte(data),
		ContentType: "application/json", Metadata: md, ID: data,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "k=v"})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.svc.Publish(context.Background(), "pubsub", &pubsub.Message{Topic: topic, Data: b, Metadata: md}); err != nil {
		e.t.Fatal(err)
	}
}

// count is the count of ev for topic.
func (e *env) count(ev event, topic string) float64 {
	return testutil.ToFloat64(e.metrics.events[ev].WithLabelValues("checkout", "pubsub", topic))
}

// delivered is tandem_pubsub_delivered_total for topic and status.
func (e *env) delivered(topic, status string) float64 {
	return testutil.ToFloat64(e.metrics.delivered.WithLabelValues("checkout", "pubsub", topic, status))
}

// waitLog waits until the log holds s.
func (e *env) waitLog(s string) {
	e.t.Helper()
	deadline := time.Now().Add(wait)
	for !strings.Contains(e.logs.String(), s) {
		if time.Now().After(deadline) {
			e.t.Fatalf("the log never said %q:\n%s", s, e.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) (net.Listener, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, ln.Addr().String()
}

// publishAt publishes data on topic with the envelope's time now (its
// expiration is now plus the TTL that md gives).
func (e *env) publishAt(topic, data string, now time.Time, md map[string]string) {
	e.t.Helper()
	b, err := pubsub.Envelope(pubsub.Publication{AppID: "shop", PubsubName: "pubsub", Topic: topic, Data: []byte(data),
		ContentType: "application/json", Metadata: md, ID: data, Now: now})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.svc.Publish(context.Background(), "pubsub", &pubsub.Message{Topic: topic, Data: b, Metadata: md}); err != nil {
		e.t.Fatal(err)
	}
}

// counterMax is an int that tracks a maximum, safe for concurrent use.
type counterMax struct {
	mu sync.Mutex
	n  int
}

func (c *counterMax) add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += d
}

func (c *counterMax) max(v int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = max(c.n, v)
}

func (c *counterMax) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// stubTracer records what the subscriber asks of its tracer.
type stubTracer struct {
	mu    sync.Mutex
	calls []string
}

func (s *stubTracer) StartDelivery(ctx context.Context, pubsubName, topic, traceparent, tracestate string) (context.Context, func(string, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, strings.Join([]string{"start", pubsubName, topic, traceparent, tracestate}, " "))
	return ctx, func(status string, err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.calls = append(s.calls, fmt.Sprintf("end %s %v", status, err))
	}
}

// eventOf is a delivered event whose envelope is ce.
func eventOf(ce map[string]any) pubsub.Event {
	b, _ := json.Marshal(ce)
	return pubsub.EventOf(ce, b)
}
