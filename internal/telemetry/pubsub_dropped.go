package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// replicaDroppedDesc describes tandem_pubsub_replica_dropped_total.
var replicaDroppedDesc = prometheus.NewDesc("tandem_pubsub_replica_dropped_total",
	"Events dropped with the consumer group of a replica (subscription metadata deliverToAllReplicas), by pubsub and topic: a replica gone longer than replicaTimeout, or one that unsubscribed with events not yet acknowledged. Counted by the sidecar that dropped them.",
	[]string{"app_id", "pubsub", "topic"}, nil)

// ReplicaDropped registers with reg (nil: none) the counter
// tandem_pubsub_replica_dropped_total, read from svc's brokers when scraped
// (those that are pubsub.Droppers; a broker replaced by hot reload starts
// again from 0, which Prometheus reads as a counter reset). A second
// registration (two sidecars in one process) is ignored.
func ReplicaDropped(appID string, svc *pubsub.Service, reg prometheus.Registerer) {
	if reg != nil {
		_ = reg.Register(&topicSums{desc: replicaDroppedDesc, kind: prometheus.CounterValue, appID: appID,
			read: func(add func(string, string, bool, float64)) {
				svc.Dropped(func(name, topic string, declared bool, n int64) { add(name, topic, declared, float64(n)) })
			}})
	}
}
