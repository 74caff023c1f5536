package subscribe

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts deliveries, for Prometheus on the metrics port. Every
// series is labelled with the app id, the pub/sub component and the topic,
// which is always one the app subscribes to (a topic of no subscription
// has no delivery to count). A nil *Metrics counts nothing.
type Metrics struct {
	appID     string
	delivered *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	events    [numEvents]*prometheus.CounterVec
}

// The status label of tandem_pubsub_delivered_total: the app's answer, or
// error when it gave none (it could not be reached, or the delivery was
// cut short by shutdown).
const (
	statusSuccess = "success"
	statusRetry   = "retry"
	statusDrop    = "drop"
	statusError   = "error"
)

// event is what else befalls an event, each counted on its own.
type event int

const (
	evRetried event = iota
	evRedelivered
	evDeadLettered
	evExpired
	evUnrouted
	numEvents
)

// NewMetrics registers the subscriber's metrics with reg (nil: none). A
// second registration (two sidecars in one process) shares the first's.
func NewMetrics(appID string, reg prometheus.Registerer) *Metrics {
	labels := []string{"app_id", "pubsub", "topic"}
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(labels, extra...))
		return register(reg, c).(*prometheus.CounterVec)
	}
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tandem_pubsub_delivery_duration_seconds",
		Help:    "Time from sending an event to the app to its answer, by pubsub and topic.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, labels)
	m := &Metrics{
		appID:     appID,
		delivered: counter("tandem_pubsub_delivered_total", "Events sent to the app, by pubsub, topic and the app's answer (success, retry, drop; error: no answer).", "status"),
		duration:  register(reg, h).(*prometheus.HistogramVec),
	}
	m.events[evRetried] = counter("tandem_pubsub_retried_total", "Events sent to the app again after it answered RETRY or did not answer, under the retry policy.")
	m.events[evRedelivered] = counter("tandem_pubsub_redelivered_total", "Events the broker delivered more than once (after a failure, a restart or processingTimeout): duplicates the app may see.")
	m.events[evDeadLettered] = counter("tandem_pubsub_dead_lettered_total", "Events published to the subscription's dead-letter topic, by the topic they came from.")
	m.events[evExpired] = counter("tandem_pubsub_expired_total", "Events dropped because their expiration (ttlInSeconds) had passed.")
	m.events[evUnrouted] = counter("tandem_pubsub_unrouted_total", "Events no routing rule matched: acknowledged without delivery.")
	return m
}

// register registers c, or returns the collector already registered under
// its name.
func register(reg prometheus.Registerer, c prometheus.Collector) prometheus.Collector {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector
		}
	}
	return c
}

// answered counts a call to the app and its time.
func (m *Metrics) answered(s *sub, status string, took time.Duration) {
	if m == nil {
		return
	}
	m.delivered.WithLabelValues(m.appID, s.PubsubName, s.Topic, status).Inc()
	m.duration.WithLabelValues(m.appID, s.PubsubName, s.Topic).Observe(took.Seconds())
}

// count counts e for an event of s.
func (m *Metrics) count(e event, s *sub) {
	if m == nil {
		return
	}
	m.events[e].WithLabelValues(m.appID, s.PubsubName, s.Topic).Inc()
}
