package pubsub

import (
	"strings"
	"testing"
	"time"
)

func TestAllReplicas(t *testing.T) {
	for _, c := range []struct {
		md      map[string]string
		on      bool
		timeout time.Duration
		err     string
	}{
		{md: nil, timeout: DefaultReplicaTimeout},
		{md: map[string]string{"rawPayload": "true"}, timeout: DefaultReplicaTimeout},
		{md: map[string]string{"deliverToAllReplicas": "false"}, timeout: DefaultReplicaTimeout},
		{md: map[string]string{"deliverToAllReplicas": "true"}, on: true, timeout: 10 * time.Minute},
		{md: map[string]string{"deliverToAllReplicas": "true", "replicaTimeout": "90s"}, on: true, timeout: 90 * time.Second},
		{md: map[string]string{"deliverToAllReplicas": "true", "replicaTimeout": "5000"}, on: true, timeout: 5 * time.Second},
		{md: map[string]string{"deliverToAllReplicas": "all"}, err: "deliverToAllReplicas"},
		{md: map[string]string{"replicaTimeout": "1m"}, err: "replicaTimeout"},
		{md: map[string]string{"deliverToAllReplicas": "false", "replicaTimeout": "1m"}, err: "replicaTimeout"},
		{md: map[string]string{"deliverToAllReplicas": "true", "replicaTimeout": "-1s"}, err: "replicaTimeout"},
		{md: map[string]string{"deliverToAllReplicas": "true", "replicaTimeout": "999ms"}, err: "at least 1s"},
		{md: map[string]string{"deliverToAllReplicas": "true", "replicaTimeout": "1s"}, on: true, timeout: time.Second},
	} {
		on, timeout, err := AllReplicas(c.md)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v; want one naming %s", c.md, err, c.err)
			}
			continue
		}
		if err != nil || on != c.on || timeout != c.timeout {
			t.Errorf("%v: %v, %v, %v; want %v, %v", c.md, on, timeout, err, c.on, c.timeout)
		}
	}
}
