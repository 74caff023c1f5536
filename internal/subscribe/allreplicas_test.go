package subscribe

import (
	"strings"
	"testing"
)

// A subscription with a bad deliverToAllReplicas or replicaTimeout cannot
// run: Check names the field, and a good one passes.
func TestCheckDeliverToAllReplicas(t *testing.T) {
	for md, want := range map[[2]string]string{
		{"deliverToAllReplicas", "yes"}: "deliverToAllReplicas",
		{"replicaTimeout", "5m"}:        "replicaTimeout",
	} {
		s := Subscription{PubsubName: "pubsub", Topic: "prices", Rules: []Rule{{Path: "prices"}}, Metadata: map[string]string{md[0]: md[1]}}
		if err := s.Check(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v; want an error naming %s", md, err, want)
		}
	}
	s := Subscription{PubsubName: "pubsub", Topic: "prices", Rules: []Rule{{Path: "prices"}},
		Metadata: map[string]string{"deliverToAllReplicas": "true", "replicaTimeout": "5m"}}
	if err := s.Check(); err != nil {
		t.Errorf("a good subscription: %v", err)
	}
}
