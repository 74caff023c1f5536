package redisserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/netns"
)

// MasterName is the name the Sentinels of StartSentinels monitor the
// master under.
const MasterName = "mymaster"

// Sentinels is a master, its replicas and three Sentinels watching them.
type Sentinels struct {
	Master    *Server
	Replicas  []*Server
	Sentinels []*Server

	// Of StartPartitionable: the network, the master's namespace and
	// that of the replicas and Sentinels; cut is the master Partition cut
	// off.
	net        *netns.Network
	alone, all *netns.Namespace
	cut        *Server
}

// Addrs are the Sentinels' addresses, comma-separated, as a component's
// redisHost names them.
func (s *Sentinels) Addrs() string {
	a := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		a[i] = sn.Addr
	}
	return strings.Join(a, ",")
}

// StartSentinels starts a master with replicas replicas and three
// Sentinels (quorum 2) for t, and returns once every Sentinel knows the
// replicas and the other Sentinels, so that a failover can pick a replica
// and every Sentinel learns of it. Everything stops when t ends.
func StartSentinels(t testing.TB, replicas int) *Sentinels {
	t.Helper()
	return startSentinels(t, &Sentinels{}, replicas)
}

// StartPartitionable is StartSentinels on a network of namespaces of t's
// own (package netns): the master alone in one, its replicas and the
// Sentinels in another, so that Partition can cut the master off from
// them while the test, and the clients it runs, still reach every
// server. It skips t where network namespaces cannot be made.
func StartPartitionable(t testing.TB, replicas int) *Sentinels {
	t.Helper()
	requireRedis(t)
	n := netns.New(t)
	return startSentinels(t, &Sentinels{net: n, alone: n.Add("m"), all: n.Add("r")}, replicas)
}

func startSentinels(t testing.TB, s *Sentinels, replicas int) *Sentinels {
	t.Helper()
	ctx := context.Background()
	// No wait before a full sync: replicas are in sync sooner.
	s.Master = startIn(t, s.alone, nil, "--dir", t.TempDir(), "--repl-diskless-sync-delay", "0")
	deadline := time.Now().Add(30 * time.Second)
	for range replicas {
		r := startIn(t, s.all, nil, "--dir", t.TempDir(), "--replicaof", s.Master.host(), strconv.Itoa(s.Master.port))
		s.Replicas = append(s.Replicas, r)
		// In sync, as the replica itself says (a Sentinel may not have
		// asked it yet).
		c := redis.NewClient(&redis.Options{Addr: r.Addr})
		for {
			info, _ := c.Info(ctx, "replication").Result()
			if strings.Contains(info, "master_link_status:up") && strings.Contains(info, "master_sync_in_progress:0") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("replica %s not in sync:\n%s", r.Addr, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.Close()
	}
	for range 3 {
		s.Sentinels = append(s.Sentinels, startSentinel(t, s.all, s.Master))
	}
	for _, sn := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr})
		for {
			r, err1 := c.Replicas(ctx, MasterName).Result()
			o, err2 := c.Sentinels(ctx, MasterName).Result()
			up := 0
			for _, m := range r {
				if m["flags"] == "slave" && m["master-link-status"] == "ok" {
					up++
				}
			}
			if err1 == nil && err2 == nil && up == replicas && len(o) == len(s.Sentinels)-1 {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("Sentinel %s does not see %d replicas up and %d Sentinels: %v %v; %v %v", sn.Addr, replicas, len(s.Sentinels)-1, r, err1, o, err2)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return s
}

// startSentinel starts a Sentinel in ns monitoring master, which fails
// over within seconds of its master going away.
func startSentinel(t testing.TB, ns *netns.Namespace, master *Server) *Server {
	t.Helper()
	requireRedis(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("sentinel monitor %s %s %d 2\n"+
		"sentinel down-after-milliseconds %[1]s 1000\n"+
		"sentinel failover-timeout %[1]s 10000\n"+
		"sentinel parallel-syncs %[1]s 1\n", MasterName, master.host(), master.port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return startIn(t, ns, []string{conf, "--sentinel"}, "--dir", dir)
}

// Failover makes the Sentinels promote a replica (SENTINEL FAILOVER), and
// returns the new master once every Sentinel names it and it answers as
// master.
func (s *Sentinels) Failover(t testing.TB) *Server {
	t.Helper()
	old := s.Master.Addr
	first := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0].Addr})
	defer first.Close()
	if err := first.Failover(context.Background(), MasterName).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	return s.promoted(t, old)
}

// KillMaster kills the master (SIGKILL: what it had not sent its replicas
// is lost), and returns the replica the Sentinels promote, once every
// Sentinel names it and it answers as master.
func (s *Sentinels) KillMaster(t testing.TB) *Server {
	t.Helper()
	old := s.Master.Addr
	s.Master.Stop()
	return s.promoted(t, old)
}

// Partition cuts the master of StartPartitionable off from its replicas
// and the Sentinels, leaving it running and reachable from the test: it
// takes writes that no replica receives. It returns the replica the
// Sentinels promote, once every Sentinel names it and it answers as
// master. It can be called once; Heal ends the partition.
func (s *Sentinels) Partition(t testing.TB) *Server {
	t.Helper()
	if s.net == nil || s.cut != nil || s.Master.ns != s.alone {
		t.Fatal("redisserver: Partition needs the master of StartPartitionable, not yet partitioned")
	}
	s.cut = s.Master
	s.net.Cut(s.alone, s.all)
	return s.promoted(t, s.cut.Addr)
}

// Heal ends the partition, and returns once the Sentinels have made the
// master cut off a replica of the new master and it is in sync: whatever
// it took alone is gone.
func (s *Sentinels) Heal(t testing.TB) {
	t.Helper()
	if s.cut == nil {
		t.Fatal("redisserver: Heal without a Partition")
	}
	s.net.Heal(s.alone)
	c := redis.NewClient(&redis.Options{Addr: s.cut.Addr})
	defer c.Close()
	want := "master_host:" + s.Master.host() + "\r\nmaster_port:" + strconv.Itoa(s.Master.port) + "\r\n"
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, _ := c.Info(context.Background(), "replication").Result()
		if strings.Contains(info, "role:slave") && strings.Contains(info, want) &&
			strings.Contains(info, "master_link_status:up") && strings.Contains(info, "master_sync_in_progress:0") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the master cut off (%s) is not an in-sync replica of %s after the partition:\n%s", s.cut.Addr, s.Master.Addr, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// promoted waits until every Sentinel names a master other than old, and
// it answers as master, and returns it.
func (s *Sentinels) promoted(t testing.TB, old string) *Server {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	var addr string
	for _, sn := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr})
		for {
			if f, err := c.GetMasterAddrByName(ctx, MasterName).Result(); err == nil && len(f) == 2 {
				if a := net.JoinHostPort(f[0], f[1]); a != old {
					addr = a
					break
				}
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("Sentinel %s still names %s as master after the failover", sn.Addr, old)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	m := redis.NewClient(&redis.Options{Addr: addr})
	defer m.Close()
	for {
		if role, err := m.Do(ctx, "ROLE").Slice(); err == nil && len(role) > 0 && role[0] == "master" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new master %s does not answer as master", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i, r := range s.Replicas {
		if r.Addr == addr {
			s.Replicas[i] = s.Master
			s.Master = r
		}
	}
	return s.Master
}

// Cluster is a Redis Cluster: its masters, and a replica of each when
// StartClusterReplicas started it.
type Cluster struct {
	// Nodes are the masters.
	Nodes []*Server
	// Replicas[i] replicates Nodes[i] (StartClusterReplicas only).
	Replicas []*Server
}

// Addrs are the masters' addresses, comma-separated, as a component's
// redisHost names them.
func (c *Cluster) Addrs() string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr
	}
	return strings.Join(a, ",")
}

// clusterArgs are every cluster node's: a node missing for 2s is failing.
var clusterArgs = []string{"--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--cluster-config-file", "nodes.conf"}

// StartCluster starts a Redis Cluster of masters nodes (at least 3) for
// t, the slots spread over them (redis-cli --cluster create), and returns
// once every node says the cluster is ok. Everything stops when t ends.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	return startCluster(t, masters, false)
}

// StartClusterReplicas starts a Redis Cluster of masters nodes (at least
// 3), each with a replica in sync, for t. Its nodes serve the slots they
// hold while another master is failing (cluster-require-full-coverage
// no), as a cluster must for a failing master to stop only its own slots.
// Everything stops when t ends.
func StartClusterReplicas(t testing.TB, masters int) *Cluster {
	t.Helper()
	return startCluster(t, masters, true)
}

func startCluster(t testing.TB, masters int, replicas bool) *Cluster {
	t.Helper()
	ctx := context.Background()
	nodeArgs := clusterArgs
	if replicas {
		nodeArgs = append(slices.Clone(clusterArgs), "--cluster-require-full-coverage", "no", "--repl-diskless-sync-delay", "0")
	}
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for range masters {
		n := start(t, nodeArgs...)
		c.Nodes = append(c.Nodes, n)
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	if replicas {
		for _, m := range c.Nodes {
			c.Replicas = append(c.Replicas, startClusterReplica(t, m, nodeArgs, deadline))
		}
	}
	known := strconv.Itoa(len(c.Nodes) + len(c.Replicas))
	for _, n := range append(slices.Clone(c.Nodes), c.Replicas...) {
		rc := redis.NewClient(&redis.Options{Addr: n.Addr})
		for {
			info, _ := rc.ClusterInfo(ctx).Result()
			if strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, "cluster_known_nodes:"+known+"\r") {
				break
			}
			if time.Now().After(deadline) {
				rc.Close()
				t.Fatalf("cluster node %s not ready:\n%s", n.Addr, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		rc.Close()
	}
	return c
}

// startClusterReplica starts a node that joins the cluster of master
// (CLUSTER MEET) as its replica (CLUSTER REPLICATE), and returns once it
// is in sync.
func startClusterReplica(t testing.TB, master *Server, nodeArgs []string, deadline time.Time) *Server {
	t.Helper()
	ctx := context.Background()
	id := NodeID(t, master)
	r := start(t, nodeArgs...)
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()
	if err := rc.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(master.port)).Err(); err != nil {
		t.Fatalf("CLUSTER MEET from %s: %v", r.Addr, err)
	}
	// REPLICATE is refused until the node knows the master.
	for {
		err := rc.ClusterReplicate(ctx, id).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CLUSTER REPLICATE %s on %s: %v", id, r.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		info, _ := rc.Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") && strings.Contains(info, "master_sync_in_progress:0") {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster replica %s not in sync:\n%s", r.Addr, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NodeID is the cluster node id of s (CLUSTER MYID).
func NodeID(t testing.TB, s *Server) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	id, err := c.ClusterMyID(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLUSTER MYID on %s: %v", s.Addr, err)
	}
	return id
}

// Owner is the index in Nodes of the master that serves slot, as Nodes[0]
// says (CLUSTER SLOTS).
func (c *Cluster) Owner(t testing.TB, slot int) int {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: c.Nodes[0].Addr})
	defer rc.Close()
	ranges, err := rc.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	for _, r := range ranges {
		if slot >= int(r.Start) && slot <= int(r.End) && len(r.Nodes) > 0 {
			for i, n := range c.Nodes {
				if n.Addr == r.Nodes[0].Addr {
					return i
				}
			}
		}
	}
	t.Fatalf("slot %d: no master of the cluster serves it", slot)
	return -1
}

// KillMaster kills master i (SIGKILL) and returns when its replica
// answers as master (ROLE), and the time it first did: the promotion. The
// replica takes its place in Nodes, the dead master its place in
// Replicas.
func (c *Cluster) KillMaster(t testing.TB, i int) time.Time {
	t.Helper()
	old, r := c.Nodes[i], c.Replicas[i]
	old.Stop()
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if role, err := rc.Do(context.Background(), "ROLE").Slice(); err == nil && len(role) > 0 && role[0] == "master" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica %s of killed master %s was not promoted within 30s", r.Addr, old.Addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	at := time.Now()
	c.Nodes[i], c.Replicas[i] = r, old
	return at
}

// MoveSlot moves slot, and the keys it holds, from master from to master
// to while clients use it, as redis-cli --cluster reshard does: to
// imports it, from migrates it (so that from answers ASK for a key it no
// longer holds), MIGRATE carries its keys in batches, and CLUSTER SETSLOT
// NODE gives it to to, on to first, then on every master. It returns the
// number of keys moved.
func (c *Cluster) MoveSlot(t testing.TB, slot, from, to int) int {
	t.Helper()
	ctx := context.Background()
	src := redis.NewClient(&redis.Options{Addr: c.Nodes[from].Addr})
	defer src.Close()
	dst := redis.NewClient(&redis.Options{Addr: c.Nodes[to].Addr})
	defer dst.Close()
	srcID, dstID := NodeID(t, c.Nodes[from]), NodeID(t, c.Nodes[to])
	if err := dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err(); err != nil {
		t.Fatalf("slot %d: CLUSTER SETSLOT IMPORTING on %s: %v", slot, c.Nodes[to].Addr, err)
	}
	if err := src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err(); err != nil {
		t.Fatalf("slot %d: CLUSTER SETSLOT MIGRATING on %s: %v", slot, c.Nodes[from].Addr, err)
	}
	moved := 0
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, 10).Result()
		if err != nil {
			t.Fatalf("slot %d: CLUSTER GETKEYSINSLOT: %v", slot, err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", c.Nodes[to].port, "", 0, 10000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		// NOKEY: the keys were deleted meanwhile.
		if err := src.Do(ctx, args...).Err(); err != nil && !strings.HasPrefix(err.Error(), "NOKEY") {
			t.Fatalf("slot %d: MIGRATE %v: %v", slot, keys, err)
		}
		moved += len(keys)
	}
	for _, n := range append([]*Server{c.Nodes[to], c.Nodes[from]}, c.Nodes...) {
		rc := redis.NewClient(&redis.Options{Addr: n.Addr})
		err := rc.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err()
		rc.Close()
		if err != nil {
			t.Fatalf("slot %d: CLUSTER SETSLOT NODE on %s: %v", slot, n.Addr, err)
		}
	}
	return moved
}
