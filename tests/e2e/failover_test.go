package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
	"github.com/tandem-run/tandem/internal/testutil/steady"
)

// followBound is how soon after the Sentinels switch master a sidecar
// must write to the new one.
const followBound = 5 * time.Second

// A sidecar on Redis Sentinel (a master, two replicas, three Sentinels)
// under a steady load of state writes and publishes, while the master is
// cut off from its replicas and Sentinels but not from the sidecar: the
// Sentinels promote a replica, and within 5 s of their +switch-master the
// sidecar writes state and publishes to the new master, its process never
// restarted. The partition then heals (the old master becomes a replica
// and drops what it took alone); the acknowledged writes and publishes
// missing from the new master are logged without WAIT, and none is
// missing with strong writes and waitForReplicas 2 (the new master is a
// replica short until the old one rejoins, so only state, which waits for
// the replicas the master has, is timed there).
func TestSentinelPartitionSidecar(t *testing.T) {
	for _, wait := range []bool{false, true} {
		name := map[bool]string{false: "no WAIT", true: "WAIT all replicas"}[wait]
		t.Run(name, func(t *testing.T) { sidecarPartition(t, name, wait) })
	}
}

func sidecarPartition(t *testing.T, name string, wait bool) {
	s := redisserver.StartPartitionable(t, 2)
	conn := []string{"failover", "true", "sentinelMasterName", redisserver.MasterName, "dialTimeout", "1s", "readTimeout", "1s", "writeTimeout", "1s"}
	ps := append([]string{"redisHost", s.Addrs()}, conn...)
	if wait {
		ps = append(ps, "waitForReplicas", "2")
	}
	w := newWorld(t)
	sc, _ := w.pubsubSidecar("orders", map[string][]byte{
		"state.yaml":  resources.RedisYAML("statestore", s.Addrs(), conn...),
		"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", ps...),
	})
	sc.waitHealthy(t)
	ctx := context.Background()
	client := &http.Client{Timeout: 10 * time.Second}
	consistency := ""
	if wait {
		consistency = `,"options":{"consistency":"strong"}`
	}
	save := func(key string) bool {
		body := fmt.Sprintf(`[{"key":%q,"value":"v"%s}]`, key, consistency)
		resp, err := client.Post(sc.url+"/v1.0/state/statestore", "application/json", strings.NewReader(body))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNoContent
	}
	publish := func(id string) bool {
		resp, err := client.Post(sc.url+"/v1.0/publish/pubsub/orders", "text/plain", strings.NewReader(id))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNoContent
	}

	// The Sentinels' word on the switch.
	sn := goredis.NewSentinelClient(&goredis.Options{Addr: s.Sentinels[0].Addr})
	defer sn.Close()
	sub := sn.Subscribe(ctx, "+switch-master")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	// The load: two writers of state, two publishers.
	load := steady.Start(4, "l", 5*time.Millisecond, func(g int, id string) error {
		ok := false
		if g%2 == 0 {
			ok = save(id)
		} else {
			ok = publish(id)
		}
		if !ok {
			return errors.New("refused")
		}
		return nil
	})
	defer load.Stop()
	load.WaitAcked(t, "requests before the partition", 100)

	old := s.Master.Addr
	if now := s.Partition(t); now.Addr == old {
		t.Fatal("no failover")
	}
	var switched time.Time
	select {
	case m := <-sub.Channel():
		switched = time.Now()
		if !strings.Contains(m.Payload, s.Master.Addr[strings.LastIndex(s.Master.Addr, ":")+1:]) {
			t.Fatalf("+switch-master %q does not name the new master %s", m.Payload, s.Master.Addr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no +switch-master")
	}

	// Probes until each lands on the new master.
	m := goredis.NewClient(&goredis.Options{Addr: s.Master.Addr})
	defer m.Close()
	follow := func(what string, write func(string) bool, on func(string) bool) time.Duration {
		for i := 0; ; i++ {
			id := fmt.Sprintf("probe-%s-%d", what, i)
			if write(id) && on(id) {
				return time.Since(switched)
			}
			if time.Since(switched) > followBound+10*time.Second {
				t.Fatalf("the sidecar does not %s on the new master %s, %s after +switch-master", what, s.Master.Addr, time.Since(switched))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	onMaster := func(key string) bool {
		n, err := m.Exists(ctx, "orders||"+key).Result()
		return err == nil && n == 1
	}
	inStream := func(id string) bool {
		return streamData(ctx, m, 50)[id] // the probe is among the last
	}
	took := follow("write state", save, onMaster)
	t.Logf("%s: the sidecar wrote state on the new master %s after +switch-master", name, took.Round(time.Millisecond))
	if took > followBound {
		t.Errorf("state written on the new master %s after +switch-master; want within %s", took, followBound)
	}
	if !wait {
		took := follow("publish", publish, inStream)
		t.Logf("%s: the sidecar published on the new master %s after +switch-master", name, took.Round(time.Millisecond))
		if took > followBound {
			t.Errorf("published on the new master %s after +switch-master; want within %s", took, followBound)
		}
	}

	s.Heal(t)
	load.WaitAcked(t, "requests after the partition healed", load.Count()+100)
	load.Stop()
	keys, events, failed := load.Acked(0, 2), load.Acked(1, 3), load.Failed()
	select {
	case <-sc.Done():
		t.Fatalf("the sidecar exited: %v", sc.Err())
	default:
	}

	lostKeys, lostEvents := 0, 0
	for _, k := range keys {
		if !onMaster(k) {
			lostKeys++
		}
	}
	inAll := streamData(ctx, m, 0)
	for _, id := range events {
		if !inAll[id] {
			lostEvents++
		}
	}
	t.Logf("%s, through the sidecar: %d state writes acknowledged, %d lost; %d events acknowledged, %d lost; %d requests failed",
		name, len(keys), lostKeys, len(events), lostEvents, failed)
	if wait && lostKeys+lostEvents != 0 {
		t.Errorf("with WAIT for every replica, %d acknowledged state writes and %d acknowledged events lost", lostKeys, lostEvents)
	}
}

// streamData returns the data of the last n events of the stream orders
// (n 0: all), each a CloudEvent whose data is a string.
func streamData(ctx context.Context, m *goredis.Client, n int64) map[string]bool {
	var entries []goredis.XMessage
	if n > 0 {
		entries, _ = m.XRevRangeN(ctx, "orders", "+", "-", n).Result()
	} else {
		entries, _ = m.XRange(ctx, "orders", "-", "+").Result()
	}
	out := map[string]bool{}
	for _, e := range entries {
		var ce struct{ Data string }
		if d, ok := e.Values["data"].(string); ok && json.Unmarshal([]byte(d), &ce) == nil {
			out[ce.Data] = true
		}
	}
	return out
}
