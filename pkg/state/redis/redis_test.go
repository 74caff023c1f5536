package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/statetest"
)

func newStore(t *testing.T, addr string) *Store {
	cfg, err := ParseMetadata(map[string]string{"redisHost": addr, "dialTimeout": "500ms", "readTimeout": "500ms", "writeTimeout": "500ms"})
	if err != nil {
		t.Fatal(err)
	}
	return Open("statestore", cfg)
}

func TestContract(t *testing.T) {
	srv := redisserver.Start(t)
	statetest.Run(t, func(t *testing.T) state.Store {
		s := newStore(t, srv.Addr)
		if err := s.client.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestRedisDownFailsFastAndRecovers(t *testing.T) {
	srv := redisserver.Start(t)
	s := newStore(t, srv.Addr)
	defer s.Close()
	ctx := context.Background()
	if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	_, err := s.Get(ctx, "k")
	if err == nil || !strings.Contains(err.Error(), srv.Addr) {
		t.Fatalf("Get with Redis down: %v; want an error naming %s", err, srv.Addr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Get with Redis down took %s", d)
	}
	srv.Restart(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("again")})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after Redis came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestParseMetadata(t *testing.T) {
	good, err := ParseMetadata(map[string]string{"redisHost": "h:1", "redisDB": "3", "enableTLS": "true", "ttlInSeconds": "60", "poolSize": "20", "dialTimeout": "1s", "maxTransactionOperations": "10"})
	if o := good.Conn.Options; err != nil || o.DB != 3 || o.TLSConfig == nil || good.TTL != time.Minute || o.PoolSize != 20 || o.DialTimeout != time.Second || o.MaxRetries != 1 {
		t.Fatalf("got %+v, %v", good, err)
	}
	bad := map[string]map[string]string{
		"redisHost":       {},
		"redisDB":         {"redisHost": "h:1", "redisDB": "16"},
		"enableTLS":       {"redisHost": "h:1", "enableTLS": "yes please"},
		"dialTimeout":     {"redisHost": "h:1", "dialTimeout": "5"},
		"ttlInSeconds":    {"redisHost": "h:1", "ttlInSeconds": "-3"},
		"0 to 9223372036": {"redisHost": "h:1", "ttlInSeconds": "18446744074"},
		"redisHots":       {"redisHost": "h:1", "redisHots": "typo"},
		"maxRetries":      {"redisHost": "h:1", "maxRetries": "-1"},
	}
	for field, md := range bad {
		if _, err := ParseMetadata(md); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: error %v does not name the field", field, err)
		}
	}
}

// state.redis reads retries as maxRetries, or as redisMaxRetries (daprd's
// name, which wins when both are given).
func TestParseMetadataRetries(t *testing.T) {
	for _, c := range []struct {
		md   map[string]string
		want int
	}{
		{map[string]string{"maxRetries": "4"}, 4},
		{map[string]string{"redisMaxRetries": "5"}, 5},
		{map[string]string{"redisMaxRetries": "5", "maxRetries": "4"}, 5},
	} {
		c.md["redisHost"] = "h:1"
		got, err := ParseMetadata(c.md)
		if err != nil || got.Conn.Options.MaxRetries != c.want {
			t.Errorf("%v: MaxRetries %d, %v; want %d", c.md, got.Conn.Options.MaxRetries, err, c.want)
		}
	}
}

func TestInvalidETag(t *testing.T) {
	srv := redisserver.Start(t)
	s := newStore(t, srv.Addr)
	defer s.Close()
	bad := "abc"
	err := s.Set(context.Background(), state.SetRequest{Key: "k", Value: []byte("v"), ETag: &bad})
	if !errors.Is(err, state.ErrETagInvalid) {
		t.Errorf("got %v", err)
	}
}

func TestStrongConsistencyWaitsForReplica(t *testing.T) {
	primary := redisserver.Start(t)
	replica := redisserver.StartReplica(t, primary)
	s := newStore(t, primary.Addr)
	defer s.Close()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	node := s.client.(*redis.Client)
	for s.replicas(ctx, node) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the replica did not connect")
		}
		s.strong.byNode = nil // look again
		time.Sleep(100 * time.Millisecond)
	}
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	// Until the first sync is done the replica acknowledges nothing, and a
	// strong write fails (rightly); wait for the link.
	deadline = time.Now().Add(20 * time.Second)
	for {
		info, _ := rc.Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica link not up: %s", info)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitOnline(t, primary.Addr, 1)
	for i := range 20 {
		v := strconv.Itoa(i)
		if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte(v), Strong: true}); err != nil {
			t.Fatal(err)
		}
		// WAIT returned: the replica has the write now.
		if got, err := rc.HGet(ctx, "k", "data").Result(); err != nil || got != v {
			t.Fatalf("replica has %q, %v right after a strong write of %q", got, err, v)
		}
		err := s.Transact(ctx, []state.Op{{Set: &state.SetRequest{Key: "t", Value: []byte(v), Strong: true}}, {Delete: &state.DeleteRequest{Key: "k"}}})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := rc.HGet(ctx, "t", "data").Result(); err != nil || got != v {
			t.Fatalf("replica has %q, %v right after a strong transaction writing %q", got, err, v)
		}
	}
	// A replica that acknowledges nothing (its process stopped): every
	// strong write is an error, while other connections of the pool had
	// written before, and the replica had acknowledged that (WAIT counts
	// the writes of its own connection).
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := s.Set(ctx, state.SetRequest{Key: fmt.Sprint("e", i), Value: []byte("x"), Strong: true}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	replica.Pause()
	defer replica.Resume()
	var acked atomic.Int32
	for i := range 8 {
		wg.Go(func() {
			if err := s.Set(ctx, state.SetRequest{Key: fmt.Sprint("p", i), Value: []byte("unreplicated"), Strong: true}); err == nil {
				acked.Add(1)
			} else if !strings.Contains(err.Error(), "replicas acknowledged") {
				t.Errorf("strong write with the replica stopped: %v; want an error saying the replica did not acknowledge it", err)
			}
		})
	}
	wg.Wait()
	if n := acked.Load(); n != 0 {
		t.Errorf("%d of 8 strong writes acknowledged with the replica stopped", n)
	}
}

func TestTTLSeconds(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int64
	}{
		{0, 0},
		{-1, 0},
		{time.Nanosecond, 1},
		{time.Second, 1},
		{1500 * time.Millisecond, 2},
		{time.Hour, 3600},
		{time.Duration(state.MaxTTLSeconds) * time.Second, state.MaxTTLSeconds},
		{math.MaxInt64, state.MaxTTLSeconds + 1}, // rounding up used to overflow to 1 s
	} {
		if got := ttlSeconds(c.d); got != c.want {
			t.Errorf("ttlSeconds(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}

// TestTransactScript: the transaction script's checks, each against a real
// Redis: all operations apply, or (on any failed check) none.
func TestTransactScript(t *testing.T) {
	srv := redisserver.Start(t)
	s := newStore(t, srv.Addr)
	defer s.Close()
	ctx := context.Background()
	etag := func(v string) *string { return &v }
	set := func(k, v string) state.Op { return state.Op{Set: &state.SetRequest{Key: k, Value: []byte(v)}} }
	for _, c := range []struct {
		name string
		ops  []state.Op
		// err: "" for success, else what the error says; ErrETagMismatch
		// when mismatch is set.
		err      string
		mismatch bool
		want     map[string]string // values after; "" for missing
	}{
		{"etags that match", []state.Op{
			{Set: &state.SetRequest{Key: "a", Value: []byte("a2"), ETag: etag("1")}},
			{Delete: &state.DeleteRequest{Key: "b", ETag: etag("1")}},
		}, "", false, map[string]string{"a": "a2", "b": ""}},
		{"a stale etag last", []state.Op{
			set("new", "n"),
			{Delete: &state.DeleteRequest{Key: "a"}},
			{Set: &state.SetRequest{Key: "b", Value: []byte("b2"), ETag: etag("7")}},
		}, `operation 2: key "b": etag does not match`, true, map[string]string{"new": "", "a": "a1", "b": "b1"}},
		{"an etag of a missing key", []state.Op{
			set("a", "a2"),
			{Delete: &state.DeleteRequest{Key: "missing", ETag: etag("1")}},
		}, "operation 1", true, map[string]string{"a": "a1"}},
		{"first-write of an existing key", []state.Op{
			set("new", "n"),
			{Set: &state.SetRequest{Key: "a", Value: []byte("a2"), FirstWrite: true}},
		}, `operation 1: key "a" exists and first-write`, true, map[string]string{"new": "", "a": "a1"}},
		{"first-write after a delete in the same transaction", []state.Op{
			{Delete: &state.DeleteRequest{Key: "a"}},
			{Set: &state.SetRequest{Key: "a", Value: []byte("a2"), FirstWrite: true}},
		}, "", false, map[string]string{"a": "a2"}},
		{"first-write after a set in the same transaction", []state.Op{
			set("new", "n1"),
			{Set: &state.SetRequest{Key: "new", Value: []byte("n2"), FirstWrite: true}},
		}, "operation 1", true, map[string]string{"new": ""}},
		{"an etag after a set in the same transaction", []state.Op{
			set("a", "a2"),
			{Set: &state.SetRequest{Key: "a", Value: []byte("a3"), ETag: etag("2")}},
		}, "operation 1", true, map[string]string{"a": "a1"}},
		{"a key of another type", []state.Op{
			set("a", "a2"),
			set("str", "x"),
		}, "WRONGTYPE", false, map[string]string{"a": "a1"}},
		{"a malformed etag", []state.Op{
			set("a", "a2"),
			{Delete: &state.DeleteRequest{Key: "b", ETag: etag("x")}},
		}, "operation 1", false, map[string]string{"a": "a1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := s.client.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"a", "b"} {
				if err := s.Set(ctx, state.SetRequest{Key: k, Value: []byte(k + "1")}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.client.Set(ctx, "str", "a plain string", 0).Err(); err != nil {
				t.Fatal(err)
			}
			err := s.Transact(ctx, c.ops)
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("Transact: %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("Transact: %v; want an error with %q", err, c.err)
			case c.mismatch != errors.Is(err, state.ErrETagMismatch):
				t.Fatalf("Transact: %v; ErrETagMismatch: %v, want %v", err, errors.Is(err, state.ErrETagMismatch), c.mismatch)
			}
			for k, want := range c.want {
				it, err := s.Get(ctx, k)
				got := ""
				if it != nil {
					got = string(it.Value)
				}
				if err != nil || got != want {
					t.Errorf("%s = %q, %v; want %q", k, got, err, want)
				}
			}
		})
	}
}

func TestTransactTTLAndSize(t *testing.T) {
	srv := redisserver.Start(t)
	s := newStore(t, srv.Addr)
	defer s.Close()
	ctx := context.Background()
	if err := s.Set(ctx, state.SetRequest{Key: "p", Value: []byte("v"), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ops := make([]state.Op, state.DefaultMaxTransactionOperations)
	for i := range ops {
		ops[i].Set = &state.SetRequest{Key: "k" + strconv.Itoa(i), Value: []byte(strconv.Itoa(i)), TTL: time.Hour}
	}
	ops[0].Set = &state.SetRequest{Key: "p", Value: []byte("permanent now")} // no TTL: PERSIST
	ops[1].Set.TTL = time.Duration(state.MaxTTLSeconds) * time.Second
	if err := s.Transact(ctx, ops); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]time.Duration{"p": -1, "k1": time.Duration(state.MaxTTLSeconds) * time.Second, "k2": time.Hour, "k999": time.Hour} {
		got, err := s.client.TTL(ctx, k).Result()
		if err != nil || (want < 0) != (got < 0) || (want > 0 && (got > want || got < want-time.Minute)) {
			t.Errorf("TTL of %s = %v, %v; want %v", k, got, err, want)
		}
	}
	if n, err := s.client.DBSize(ctx).Result(); err != nil || n != int64(len(ops)) {
		t.Errorf("%d keys, %v; want %d", n, err, len(ops))
	}
}

// Ping answers when the server does: a store that cannot serve is known
// before it takes calls.
func TestPing(t *testing.T) {
	srv := redisserver.Start(t)
	ctx := context.Background()
	s := newStore(t, srv.Addr)
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	srv.Stop()
	if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), srv.Addr) {
		t.Errorf("ping with the server down: %v; want an error naming the server", err)
	}
}

// WAIT counts the writes of its own connection: a strong write waits on
// the connection that wrote. With a FIFO pool the next command takes
// another connection than the write's, one whose writes the replica had
// acknowledged before it stopped.
func TestStrongWriteWaitsOnItsOwnConnection(t *testing.T) {
	primary := redisserver.Start(t)
	replica := redisserver.StartReplica(t, primary)
	s := New("statestore", redis.NewClient(&redis.Options{Addr: primary.Addr, PoolFIFO: true, ReadTimeout: time.Second,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}}))
	defer s.Close()
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the replica in sync", func() bool {
		info, _ := rc.Info(ctx, "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	waitOnline(t, primary.Addr, 1)
	// Several connections that wrote, all acknowledged by the replica.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if err := s.Set(ctx, state.SetRequest{Key: fmt.Sprint("e", i), Value: []byte("x"), Strong: true}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	replica.Pause()
	defer replica.Resume()
	for i := range 3 {
		if err := s.Set(ctx, state.SetRequest{Key: fmt.Sprint("p", i), Value: []byte("unreplicated"), Strong: true}); err == nil || !strings.Contains(err.Error(), "replicas acknowledged") {
			t.Errorf("strong write %d with the replica stopped: %v; want an error saying the replica did not acknowledge it", i, err)
		}
	}
}

// A user whose ACL refuses ROLE still gets strong writes: the replicas
// are counted with INFO, a strong write is on the replica once it is
// acknowledged, and one the replica cannot take fails.
func TestStrongConsistencyWithoutRole(t *testing.T) {
	primary := redisserver.Start(t)
	replica := redisserver.StartReplica(t, primary)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: primary.Addr})
	defer admin.Close()
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-role").Err(); err != nil {
		t.Fatal(err)
	}
	s := openMD(t, map[string]string{"redisHost": primary.Addr, "redisUsername": "app", "redisPassword": "pw"})
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, _ := rc.Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica link not up: %s", info)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range 5 {
		v := strconv.Itoa(i)
		if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte(v), Strong: true}); err != nil {
			t.Fatal(err)
		}
		if got, err := rc.HGet(ctx, "k", "data").Result(); err != nil || got != v {
			t.Fatalf("replica has %q, %v right after a strong write of %q", got, err, v)
		}
	}
	replica.Pause()
	defer replica.Resume()
	err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("paused"), Strong: true})
	if err == nil || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Fatalf("strong write with the replica paused: %v; want 0 of 1 replicas", err)
	}
}

// waitOnline waits until the master at addr lists n replicas online in
// ROLE, those a strong write waits for: a replica is online once it first
// acknowledged the stream after its sync, up to a second after its link
// is up.
func waitOnline(t *testing.T, addr string, n int) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if got, ok := connectedReplicas(c.Do(context.Background(), "ROLE")); ok && got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not list %d replicas online", addr, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
