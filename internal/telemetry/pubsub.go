package telemetry

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// OtherTopic is the topic label of every topic that is not declared: not
// subscribed to by the app, nor named by its component's allowedTopics or
// protectedTopics. A caller publishing to random topics so adds one series,
// not one a topic.
const OtherTopic = "other"

// topicLabel is the label a metric gives c's topic.
func topicLabel(topic string, declared bool) string {
	if declared {
		return topic
	}
	return OtherTopic
}

// The outcome label of tandem_pubsub_published_total.
const (
	publishSuccess     = "success"
	publishForbidden   = "forbidden"    // the component's topic access refused it
	publishTimeout     = "timeout"      // the resiliency timeout, or the caller's deadline, passed
	publishCircuitOpen = "circuit_open" // refused at once by an open circuit breaker
	publishCanceled    = "canceled"     // the caller went away
	publishError       = "error"        // the broker failed
)

// circuitOpen is an error saying a circuit breaker is open (the
// resiliency package's ErrOpen).
type circuitOpen interface{ CircuitOpen() bool }

// publishOutcome is the outcome label of a publish that returned err.
func publishOutcome(err error) string {
	var open circuitOpen
	switch {
	case err == nil:
		return publishSuccess
	case errors.Is(err, pubsub.ErrForbidden):
		return publishForbidden
	case errors.As(err, &open) && open.CircuitOpen():
		return publishCircuitOpen
	case errors.Is(err, context.DeadlineExceeded):
		return publishTimeout
	case errors.Is(err, context.Canceled):
		return publishCanceled
	}
	return publishError
}

// PubsubMiddleware counts and times each publish (the app's, and dead
// letters), by pub/sub, topic and outcome (success, forbidden, timeout,
// circuit_open, canceled, error). Give it to pubsub.Service.Use outside the
// resiliency middleware, so that a publish counts once, with its last
// outcome. Topics not declared are labelled "other" (OtherTopic). Without
// metrics (m nil) it is nil.
func (m *Metrics) PubsubMiddleware() pubsub.Middleware {
	if m == nil {
		return nil
	}
	return func(ctx context.Context, c *pubsub.Call, next func(context.Context) error) error {
		start := time.Now()
		err := next(ctx)
		topic := topicLabel(c.Message.Topic, c.Declared)
		m.published.WithLabelValues(m.appID, c.Broker.Name, topic, publishOutcome(err)).Inc()
		m.publishTime.WithLabelValues(m.appID, c.Broker.Name, topic).Observe(time.Since(start).Seconds())
		return err
	}
}

// pendingDesc describes tandem_pubsub_pending.
var pendingDesc = prometheus.NewDesc("tandem_pubsub_pending",
	"Events the sidecar holds, by pubsub and topic: read from the broker and not yet acknowledged, queued for delivery or being delivered.",
	[]string{"app_id", "pubsub", "topic"}, nil)

// topicSums is a metric read from a Service's brokers when scraped: each
// broker's counts by topic, summed by pubsub and topic label (topicLabel).
type topicSums struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	appID string
	read  func(add func(name, topic string, declared bool, n float64))
}

func (m *topicSums) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

func (m *topicSums) Collect(ch chan<- prometheus.Metric) {
	sums := map[[2]string]float64{}
	m.read(func(name, topic string, declared bool, n float64) {
		sums[[2]string{name, topicLabel(topic, declared)}] += n
	})
	for k, n := range sums {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, n, m.appID, k[0], k[1])
	}
}

// Pending registers with reg (nil: none) the gauge tandem_pubsub_pending,
// read from svc's brokers when scraped (those that are pubsub.Holders: a
// topic without events held has no series). A second registration (two
// sidecars in one process) is ignored.
func Pending(appID string, svc *pubsub.Service, reg prometheus.Registerer) {
	if reg != nil {
		_ = reg.Register(&topicSums{desc: pendingDesc, kind: prometheus.GaugeValue, appID: appID,
			read: func(add func(string, string, bool, float64)) {
				svc.Held(func(name, topic string, declared bool, n int) { add(name, topic, declared, float64(n)) })
			}})
	}
}

// PubsubMiddleware makes each try of a publish a producer span,
// "publish <topic>", with OpenTelemetry's messaging.* attributes and
// dapr.pubsub, the component. Give it to pubsub.Service.Use inside the
// resiliency middleware, so that each try is its own span. With tracing
// off (and not reloadable) it is nil.
func (t *Tracing) PubsubMiddleware() pubsub.Middleware {
	if !t.wraps() {
		return nil
	}
	return func(ctx context.Context, c *pubsub.Call, next func(context.Context) error) error {
		p := t.provider()
		if p == nil {
			return next(ctx)
		}
		ctx, span := p.tracer.Start(ctx, "publish "+c.Message.Topic, producerKind, trace.WithAttributes(
			attribute.String("messaging.system", "pubsub"),
			attribute.String("messaging.destination.name", c.Message.Topic),
			attribute.String("messaging.operation.type", "send"),
			attribute.Int("messaging.message.body.size", len(c.Message.Data)),
			attribute.String("dapr.pubsub", c.Broker.Name),
			attribute.String("dapr.pubsub.type", c.Broker.Type),
		))
		err := next(ctx)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		return err
	}
}
