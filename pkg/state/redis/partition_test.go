package redis

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/steady"
	"github.com/tandem-run/tandem/pkg/state"
)

// Redis replicates asynchronously: a master cut off from its replicas and
// Sentinels, but not from its clients, acknowledges writes that no
// replica gets; the Sentinels promote a replica, and when the partition
// heals the old master becomes a replica and drops them. Four writers
// write keys without pause across such a partition (a master, two
// replicas, three Sentinels), each about one write every 2 ms plus the
// round trip. Without WAIT the number of acknowledged
// writes missing afterwards is logged: what a failover loses. With strong
// writes (WAIT for every replica the master has) none is missing.
func TestPartitionLoss(t *testing.T) {
	for _, tc := range []struct {
		name   string
		strong bool
	}{{"no WAIT", false}, {"WAIT all replicas", true}} {
		t.Run(tc.name, func(t *testing.T) {
			acked, lost, failed := partitionLoss(t, tc.strong)
			t.Logf("state.redis, %s: %d writes acknowledged, %d of them lost; %d failed", tc.name, acked, lost, failed)
			if tc.strong && lost != 0 {
				t.Errorf("%d of %d strong writes acknowledged and lost", lost, acked)
			}
		})
	}
}

// partitionLoss writes across a partition of the master and its failover,
// and returns how many writes were acknowledged, how many of those the
// new master does not have once the old one is its replica again, and how
// many writes failed.
func partitionLoss(t *testing.T, strong bool) (acked, lost, failed int) {
	s := redisserver.StartPartitionable(t, 2)
	st := openMD(t, sentinelMD(s))
	load := steady.Start(4, "w", 2*time.Millisecond, func(_ int, k string) error {
		return st.Set(context.Background(), state.SetRequest{Key: k, Value: []byte("v"), Strong: strong})
	})
	defer load.Stop()
	load.WaitAcked(t, "writes before the partition", 200)
	old, cut := s.Master.Addr, time.Now()
	if now := s.Partition(t); now.Addr == old {
		t.Fatal("no failover")
	}
	t.Logf("the Sentinels promoted %s %s after the partition", s.Master.Addr, time.Since(cut).Round(time.Millisecond))
	load.WaitAcked(t, "writes on the new master", load.Count()+200)
	healed := time.Now()
	s.Heal(t)
	t.Logf("the old master was an in-sync replica %s after the partition healed", time.Since(healed).Round(time.Millisecond))
	load.WaitAcked(t, "writes after the partition healed", load.Count()+100)
	load.Stop()
	keys := load.Acked()

	m := redis.NewClient(&redis.Options{Addr: s.Master.Addr})
	defer m.Close()
	if role, err := m.Do(context.Background(), "ROLE").Slice(); err != nil || role[0] != "master" {
		t.Fatalf("%s is not the master after the failover: %v, %v", s.Master.Addr, role, err)
	}
	p := m.Pipeline()
	exists := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		exists[i] = p.Exists(context.Background(), k)
	}
	if _, err := p.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, e := range exists {
		if e.Val() == 0 {
			lost++
		}
	}
	return len(keys), lost, load.Failed()
}
