package telemetry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/codes"

	"github.com/tandem-run/tandem/internal/resiliency"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/memory"
	pubsubredis "github.com/tandem-run/tandem/pkg/pubsub/redis"
)

// 1,000 publishes to random topics make one series, "other"; the topic the
// app subscribes to, and the one the component protects, have their own.
// Outcomes are classed.
func TestPublishMetricsLabelOnlyDeclaredTopics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics("app", reg)
	svc := pubsub.NewService()
	access := pubsub.Access{AppID: "app", Protected: []string{"payments"}} // no publishingScopes: this app may not publish to it
	if err := svc.Add(pubsub.BrokerConfig{Name: "pubsub", Type: "pubsub.in-memory", Broker: memory.New(memory.Config{}), Access: access}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	svc.Use(m.PubsubMiddleware())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := svc.Subscribe(ctx, "pubsub", pubsub.Subscription{Topic: "orders"}, func(context.Context, *pubsub.Delivery) error { return nil }); err != nil {
		t.Fatal(err)
	}
	publish := func(topic string) error {
		return svc.Publish(context.Background(), "pubsub", &pubsub.Message{Topic: topic, Data: []byte("x")})
	}
	topics := map[string]bool{}
	for len(topics) < 1000 {
		topic := fmt.Sprintf("t-%016x", rand.Uint64())
		if topics[topic] {
			continue
		}
		topics[topic] = true
		if err := publish(topic); err != nil {
			t.Fatalf("publish to %s: %v", topic, err)
		}
	}
	for _, topic := range []string{"orders", "orders"} {
		if err := publish(topic); err != nil {
			t.Fatal(err)
		}
	}
	if err := publish("payments"); !errors.Is(err, pubsub.ErrForbidden) {
		t.Fatalf("publish to a protected topic: %v", err)
	}
	want := map[[2]string]float64{
		{"other", "success"}:      1000,
		{"orders", "success"}:     2,
		{"payments", "forbidden"}: 1,
	}
	if n := testutil.CollectAndCount(m.published); n != len(want) {
		t.Errorf("%d series of tandem_pubsub_published_total, want %d", n, len(want))
	}
	for k, n := range want {
		if got := testutil.ToFloat64(m.published.WithLabelValues("app", "pubsub", k[0], k[1])); got != n {
			t.Errorf("topic %s, outcome %s: %v, want %v", k[0], k[1], got, n)
		}
	}
	if n := testutil.CollectAndCount(m.publishTime); n != 3 {
		t.Errorf("%d series of tandem_pubsub_publish_duration_seconds, want 3 (other, orders, payments)", n)
	}
	if (*Metrics)(nil).PubsubMiddleware() != nil {
		t.Error("without metrics publishes are counted")
	}
}

func TestPublishOutcome(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "success"},
		{fmt.Errorf("pubsub %q: %w", "p", pubsub.ErrForbidden), "forbidden"},
		{fmt.Errorf("resiliency r/p: %w after 5 consecutive failures", resiliency.ErrOpen), "circuit_open"},
		{fmt.Errorf("no answer within the timeout: %w: %w", context.DeadlineExceeded, errors.New("i/o timeout")), "timeout"},
		{fmt.Errorf("XADD: %w", context.Canceled), "canceled"},
		{errors.New("connection refused"), "error"},
	} {
		if got := publishOutcome(c.err); got != c.want {
			t.Errorf("%v: %s, want %s", c.err, got, c.want)
		}
	}
}

// Each publish is a producer span, named for its topic, failed when the
// broker failed.
func TestPublishSpans(t *testing.T) {
	tr, rec := recording(t, "app")
	svc := pubsub.NewService()
	access := pubsub.Access{AppID: "app", Allowed: []string{"orders"}}
	if err := svc.Add(pubsub.BrokerConfig{Name: "pubsub", Type: "pubsub.in-memory", Broker: memory.New(memory.Config{}), Access: access}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	svc.Use(tr.PubsubMiddleware())
	_ = svc.Publish(context.Background(), "pubsub", &pubsub.Message{Topic: "orders", Data: []byte("xyz")})
	_ = svc.Publish(context.Background(), "pubsub", &pubsub.Message{Topic: "other"})
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Name() != "publish orders" || spans[1].Name() != "publish other" {
		t.Fatalf("spans %v", names(spans))
	}
	if attr(spans[0], "messaging.destination.name") != "orders" || attr(spans[0], "dapr.pubsub") != "pubsub" || attr(spans[0], "messaging.message.body.size") != "3" {
		t.Errorf("attributes %v", spans[0].Attributes())
	}
	if spans[0].Status().Code == codes.Error || spans[1].Status().Code != codes.Error {
		t.Errorf("statuses %v, %v", spans[0].Status(), spans[1].Status())
	}
	var off *Tracing
	if off.PubsubMiddleware() != nil {
		t.Error("with tracing off publishes are traced")
	}
}

// tandem_pubsub_pending counts the events read from a real Redis and not
// yet acknowledged: the one in the app's handler and those queued behind
// it; none once the handler answered.
func TestPendingGaugeCountsEventsHeld(t *testing.T) {
	srv := redisserver.Start(t)
	cfg, err := pubsubredis.ParseMetadata(map[string]string{"redisHost": srv.Addr, "concurrency": "1"}, pubsubredis.Env{AppID: "app"})
	if err != nil {
		t.Fatal(err)
	}
	svc := pubsub.NewService()
	if err := svc.Add(pubsub.BrokerConfig{Name: "pubsub", Type: "pubsub.redis", Broker: pubsubredis.Open("pubsub", cfg)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	reg := prometheus.NewRegistry()
	Pending("app", svc, reg)
	pending := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				out[mf.GetName()+fmt.Sprint(labels)] = m.GetGauge().GetValue()
			}
		}
		return out
	}
	waitFor := func(want map[string]float64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for got := pending(); fmt.Sprint(got) != fmt.Sprint(want); got = pending() {
			if time.Now().After(deadline) {
				t.Fatalf("pending %v, want %v", got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := svc.Subscribe(ctx, "pubsub", pubsub.Subscription{Topic: "orders"}, func(ctx context.Context, _ *pubsub.Delivery) error {
		<-release
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := svc.Publish(context.Background(), "pubsub", &pubsub.Message{Topic: "orders", Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(map[string]float64{"tandem_pubsub_pending[app_id=app pubsub=pubsub topic=orders]": 3})
	close(release)
	waitFor(map[string]float64{})
}
