package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/redisconn"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/statetest"
)

// openMD returns a store on md with short timeouts, closed when t ends.
func openMD(t *testing.T, md map[string]string) *Store {
	t.Helper()
	all := map[string]string{"dialTimeout": "1s", "readTimeout": "1s", "writeTimeout": "1s"}
	for k, v := range md {
		all[k] = v
	}
	cfg, err := ParseMetadata(all)
	if err != nil {
		t.Fatal(err)
	}
	s := Open("statestore", cfg)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func sentinelMD(s *redisserver.Sentinels) map[string]string {
	return map[string]string{"redisHost": s.Addrs(), "failover": "true", "sentinelMasterName": redisserver.MasterName}
}

// flushAll empties every master the client reaches.
func flushAll(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	ctx := context.Background()
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.FlushAll(ctx).Err() })
	} else {
		err = c.FlushAll(ctx).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestContractSentinel(t *testing.T) {
	s := redisserver.StartSentinels(t, 1)
	statetest.Run(t, func(t *testing.T) state.Store {
		st := openMD(t, sentinelMD(s))
		flushAll(t, st.client)
		return st
	})
}

func TestContractCluster(t *testing.T) {
	c := redisserver.StartCluster(t, 3)
	statetest.Run(t, func(t *testing.T) state.Store {
		st := openMD(t, map[string]string{"redisHost": c.Addrs(), "redisType": "cluster"})
		flushAll(t, st.client)
		return st
	}, statetest.OneSlotTransactions())
}

// In a cluster a transaction whose keys are in several hash slots is
// refused before anything is written, naming its keys and their slots;
// one whose keys share a hash tag applies. Through the state Service the
// error names the keys as the app gave them.
func TestClusterRefusesCrossSlotTransaction(t *testing.T) {
	c := redisserver.StartCluster(t, 3)
	st := openMD(t, map[string]string{"redisHost": c.Addrs(), "redisType": "cluster"})
	ctx := context.Background()
	svc := state.NewService("app", "")
	if err := svc.Add(state.StoreConfig{Name: "s", Type: "state.redis", Store: st}); err != nil {
		t.Fatal(err)
	}
	// The slots computed here are the server's.
	node := redis.NewClient(&redis.Options{Addr: c.Nodes[0].Addr})
	defer node.Close()
	for i := range 200 {
		k := fmt.Sprintf("app||key-%d", i)
		if i%3 == 0 {
			k = fmt.Sprintf("app||{order-%d}items", i)
		}
		if want, err := node.ClusterKeySlot(ctx, k).Result(); err != nil || int(want) != redisconn.Slot(k) {
			t.Fatalf("Slot(%q) = %d; CLUSTER KEYSLOT says %d, %v", k, redisconn.Slot(k), want, err)
		}
	}
	// "app||a" and "app||b" are in different slots.
	if redisconn.Slot("app||a") == redisconn.Slot("app||b") {
		t.Fatal("test keys share a slot")
	}
	err := svc.Transact(ctx, "s", []state.Op{
		{Set: &state.SetRequest{Key: "a", Value: []byte("1")}},
		{Set: &state.SetRequest{Key: "b", Value: []byte("2")}},
	})
	want := fmt.Sprintf(`"a" (slot %d); "b" (slot %d)`, redisconn.Slot("app||a"), redisconn.Slot("app||b"))
	if !errors.Is(err, state.ErrNotAtomic) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "app||") {
		t.Fatalf("cross-slot transaction: %v; want ErrNotAtomic naming %s", err, want)
	}
	for _, k := range []string{"app||a", "app||b"} {
		if it, err := st.Get(ctx, k); err != nil || it != nil {
			t.Errorf("%s after a refused transaction: %v, %v", k, it, err)
		}
	}
	// A common hash tag: applied.
	if err := svc.Transact(ctx, "s", []state.Op{
		{Set: &state.SetRequest{Key: "{order-1}items", Value: []byte("3")}},
		{Set: &state.SetRequest{Key: "{order-1}total", Value: []byte("4")}},
	}); err != nil {
		t.Fatalf("transaction of one hash tag: %v", err)
	}
	// Keys of many slots: the message stays bounded.
	var ops []state.Op
	for i := range 100 {
		ops = append(ops, state.Op{Delete: &state.DeleteRequest{Key: fmt.Sprintf("k%d", i)}})
	}
	err = svc.Transact(ctx, "s", ops)
	if !errors.Is(err, state.ErrNotAtomic) || len(err.Error()) > 1000 {
		t.Errorf("100-slot transaction: %v (%d bytes)", err, len(err.Error()))
	}
}

// After a Sentinel failover the store goes on, on the new master, with
// what the old one had replicated.
func TestSentinelFailover(t *testing.T) {
	s := redisserver.StartSentinels(t, 1)
	st := openMD(t, sentinelMD(s))
	ctx := context.Background()
	for i := range 10 {
		if err := st.Set(ctx, state.SetRequest{Key: fmt.Sprint("k", i), Value: []byte("before")}); err != nil {
			t.Fatal(err)
		}
	}
	// Every write above is on the replica before it is promoted.
	m := redis.NewClient(&redis.Options{Addr: s.Master.Addr})
	defer m.Close()
	if n, err := m.Wait(ctx, 1, 10*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}
	old := s.Master.Addr
	if now := s.Failover(t); now.Addr == old {
		t.Fatal("no new master")
	}
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for {
		if err = st.Set(ctx, state.SetRequest{Key: "after", Value: []byte("v")}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write succeeded within 30s of the failover: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range 10 {
		it, err := st.Get(ctx, fmt.Sprint("k", i))
		if err != nil || it == nil || string(it.Value) != "before" {
			t.Fatalf("k%d after the failover: %+v, %v", i, it, err)
		}
	}
	if err := st.Transact(ctx, []state.Op{{Set: &state.SetRequest{Key: "k0", Value: []byte("tx")}}, {Delete: &state.DeleteRequest{Key: "k1"}}}); err != nil {
		t.Fatal(err)
	}
	// The new master holds it: the store writes there.
	nm := redis.NewClient(&redis.Options{Addr: s.Master.Addr})
	defer nm.Close()
	if v, err := nm.HGet(ctx, "k0", "data").Result(); err != nil || v != "tx" {
		t.Errorf("new master %s has k0 = %q, %v", s.Master.Addr, v, err)
	}
}

// An ACL user (redisUsername) connects with its password, and the
// server's refusal of a wrong one reaches the caller.
func TestACLUser(t *testing.T) {
	srv := redisserver.Start(t)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">s3cret", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "default", "off").Err(); err != nil {
		t.Fatal(err)
	}
	st := openMD(t, map[string]string{"redisHost": srv.Addr, "redisUsername": "app", "redisPassword": "s3cret"})
	if err := st.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("as ACL user app: %v", err)
	}
	bad := openMD(t, map[string]string{"redisHost": srv.Addr, "redisUsername": "app", "redisPassword": "wrong"})
	if err := bad.Ping(ctx); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("wrong password: %v, want WRONGPASS", err)
	}
}
