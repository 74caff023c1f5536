package redisserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// Cluster is a Redis Cluster of masters only.
type Cluster struct {
	Nodes []*Server
}

// Addrs are the nodes' addresses, comma-separated, as a component's
// redisHost names them.
func (c *Cluster) Addrs() string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr
	}
	return strings.Join(a, ",")
}

// StartCluster starts a Redis Cluster of masters nodes (at least 3) for
// t, the slots spread over them (redis-cli --cluster create), and returns
// once every node says the cluster is ok. Everything stops when t ends.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for range masters {
		n := start(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--cluster-config-file", "nodes.conf")
		c.Nodes = append(c.Nodes, n)
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range c.Nodes {
		rc := redis.NewClient(&redis.Options{Addr: n.Addr})
		for {
			info, _ := rc.ClusterInfo(context.Background()).Result()
			if strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(masters)+"\r") {
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
