package pubsub

import (
	"fmt"
	"strconv"
	"time"
)

// Subscription metadata that asks every replica of the app for every
// event, beyond Dapr: see AllReplicas.
const (
	// DeliverToAllReplicas ("true") gives each replica of the app every
	// event published while it is subscribed, not a share of them.
	DeliverToAllReplicas = "deliverToAllReplicas"
	// ReplicaTimeout is how long a replica may be gone before another
	// drops what was kept for it (default DefaultReplicaTimeout).
	ReplicaTimeout = "replicaTimeout"
)

// DefaultReplicaTimeout is ReplicaTimeout's default, and
// MinReplicaTimeout the shortest accepted (a replica's heartbeat is
// refreshed every third of it).
const (
	DefaultReplicaTimeout = 10 * time.Minute
	MinReplicaTimeout     = time.Second
)

// AllReplicas reads DeliverToAllReplicas and ReplicaTimeout from a
// subscription's metadata (md may be nil): whether the subscription is one
// per replica, and after how long gone a replica's events are dropped.
// Errors name the field and what it accepts.
func AllReplicas(md map[string]string) (on bool, timeout time.Duration, err error) {
	timeout = DefaultReplicaTimeout
	if v, ok := md[DeliverToAllReplicas]; ok {
		if on, err = strconv.ParseBool(v); err != nil {
			return false, 0, fmt.Errorf("subscription metadata %s %q: want true or false", DeliverToAllReplicas, v)
		}
	}
	if v, ok := md[ReplicaTimeout]; ok {
		if !on {
			return false, 0, fmt.Errorf("subscription metadata %s %q is set without %s \"true\": it only applies to a subscription of every replica", ReplicaTimeout, v, DeliverToAllReplicas)
		}
		if timeout, err = ParseDuration(ReplicaTimeout, v); err != nil {
			return false, 0, fmt.Errorf("subscription %w", err)
		}
		if timeout < MinReplicaTimeout {
			return false, 0, fmt.Errorf("subscription metadata %s %q: want at least %s", ReplicaTimeout, v, MinReplicaTimeout)
		}
	}
	return on, timeout, nil
}

// Dropper is a broker that counts, by topic, the events it dropped with
// the consumer group of a replica (DeliverToAllReplicas): the one case of
// events published and never delivered that the sidecar tells of.
type Dropper interface {
	Dropped() map[string]int64
}

// Dropped is what the brokers that are Droppers dropped, by broker name
// and topic, and whether each topic is declared (see Call.Declared).
func (s *Service) Dropped(each func(name, topic string, declared bool, n int64)) {
	for _, n := range *s.brokers.Load() {
		d, ok := n.Broker.(Dropper)
		if !ok {
			continue
		}
		for topic, count := range d.Dropped() {
			each(n.Name, topic, s.declared(n, topic), count)
		}
	}
}
