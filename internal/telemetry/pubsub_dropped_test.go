package telemetry

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/memory"
)

// droppingBroker is a stand-in for a broker that dropped events with
// replicas' groups (pkg/pubsub/redis drops them for real, tested there).
type droppingBroker struct {
	*memory.Broker
	dropped map[string]int64
}

func (b droppingBroker) Dropped() map[string]int64 { return b.dropped }

// tandem_pubsub_replica_dropped_total reads each broker's count, the topic
// labelled as the other pub/sub metrics.
func TestReplicaDroppedCounter(t *testing.T) {
	svc := pubsub.NewService()
	b := droppingBroker{Broker: memory.New(memory.Config{}), dropped: map[string]int64{"news": 3, "random": 2}}
	if err := svc.Add(pubsub.BrokerConfig{Name: "pubsub", Type: "pubsub.redis", Broker: b}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := svc.Subscribe(ctx, "pubsub", pubsub.Subscription{Topic: "news"}, func(context.Context, *pubsub.Delivery) error { return nil }); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ReplicaDropped("app", svc, reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"tandem_pubsub_replica_dropped_total app_id=app pubsub=pubsub topic=news":  3,
		"tandem_pubsub_replica_dropped_total app_id=app pubsub=pubsub topic=other": 2,
	}
	if len(got) != len(want) || got["tandem_pubsub_replica_dropped_total app_id=app pubsub=pubsub topic=news"] != 3 ||
		got["tandem_pubsub_replica_dropped_total app_id=app pubsub=pubsub topic=other"] != 2 {
		t.Errorf("got %v; want %v", got, want)
	}
}
