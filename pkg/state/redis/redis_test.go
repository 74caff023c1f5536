package redis

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/statetest"
)

func newStore(t *testing.T, addr string) *Store {
	cfg, err := ParseMetadata(map[string]string{"redisHost": addr, "dialTimeout": "500ms", "readTimeout": "500ms", "writeTimeout": "500ms"})
	if err != nil {
		t.Fatal(err)
	}
	return New("statestore", redis.NewClient(cfg.Options))
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
	good, err := ParseMetadata(map[string]string{"redisHost": "h:1", "redisDB": "3", "enableTLS": "true", "ttlInSeconds": "60", "poolSize": "20", "dialTimeout": "1s"})
	if err != nil || good.Options.DB != 3 || good.Options.TLSConfig == nil || good.TTL != time.Minute || good.Options.PoolSize != 20 || good.Options.DialTimeout != time.Second {
		t.Fatalf("got %+v, %v", good, err)
	}
	bad := map[string]map[string]string{
		"redisHost":    {},
		"redisDB":      {"redisHost": "h:1", "redisDB": "16"},
		"enableTLS":    {"redisHost": "h:1", "enableTLS": "yes please"},
		"dialTimeout":  {"redisHost": "h:1", "dialTimeout": "5"},
		"ttlInSeconds": {"redisHost": "h:1", "ttlInSeconds": "-3"},
		"redisHots":    {"redisHost": "h:1", "redisHots": "typo"},
	}
	for field, md := range bad {
		if _, err := ParseMetadata(md); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: error %v does not name the field", field, err)
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
	for s.replicas(ctx) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the replica did not connect")
		}
		s.strong.checked = time.Time{} // look again
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
	for i := range 20 {
		v := strconv.Itoa(i)
		if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte(v), Strong: true}); err != nil {
			t.Fatal(err)
		}
		// WAIT returned: the replica has the write now.
		if got, err := rc.HGet(ctx, "k", "data").Result(); err != nil || got != v {
			t.Fatalf("replica has %q, %v right after a strong write of %q", got, err, v)
		}
	}
}
