package middleware

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
)

// redisLimit is a rate limit of name in the Redis at addr; extra adds
// metadata (a different connection field gives a client of its own, as
// another sidecar has).
func redisLimit(t *testing.T, name, addr, rate, burst string, extra ...string) *RateLimit {
	t.Helper()
	md := map[string]string{"store": "redis", "redisHost": addr, "maxRequestsPerSecond": rate, "burst": burst, "key": "callerAppID"}
	for i := 0; i+1 < len(extra); i += 2 {
		md[extra[i]] = extra[i+1]
	}
	c, err := ParseRateLimit(md)
	if err != nil {
		t.Fatal(err)
	}
	return NewRateLimit(name, c, nil)
}

// 50 goroutines on two "sidecars" (two clients) calling at once share
// one bucket in Redis: no more pass than the burst and what the rate
// earns while they call, and no fewer than the burst.
func TestRedisBucketsConcurrent(t *testing.T) {
	srv := redisserver.Start(t)
	const rate, burst = 20.0, 50
	sidecars := []*RateLimit{
		redisLimit(t, "shared", srv.Addr, "20", "50"),
		redisLimit(t, "shared", srv.Addr, "20", "50", "poolSize", "7"),
	}
	if sidecars[0].buckets.(*redisBuckets).client == sidecars[1].buckets.(*redisBuckets).client {
		t.Fatal("the two limits share a client; want one each, as two sidecars")
	}
	var admitted, refused atomic.Int64
	var failed []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	call := &Call{CallerAppID: "front", ClientAddr: "10.0.0.1"}
	start := time.Now()
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				err := sidecars[g%2].Handle(context.Background(), call)
				var r *Refusal
				switch {
				case err == nil:
					admitted.Add(1)
				case errors.As(err, &r) && r.Err.Code == CodeTooManyRequests && r.Wait > 0 && r.Wait <= time.Second/rate+time.Millisecond:
					refused.Add(1)
				default:
					mu.Lock()
					failed = append(failed, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(failed) > 0 {
		t.Fatalf("%d calls failed, first: %v", len(failed), failed[0])
	}
	bound := burst + int64(rate*elapsed.Seconds()) + 1
	t.Logf("1000 calls from 50 goroutines in %v: %d admitted (bound %d), %d refused", elapsed, admitted.Load(), bound, refused.Load())
	if a := admitted.Load(); a < burst || a > bound || a+refused.Load() != 1000 {
		t.Fatalf("%d admitted, %d refused; want %d to %d admitted of 1000", a, refused.Load(), burst, bound)
	}

	// The bucket is kept in Redis until it would be full again, no longer.
	cl := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer cl.Close()
	ttl, err := cl.PTTL(context.Background(), "ratelimit||shared||app:/front").Result()
	if err != nil || ttl <= 0 || ttl > time.Duration(burst/rate*float64(time.Second))+time.Second {
		t.Fatalf("bucket's time to live %v %v; want at most burst/rate + 1s", ttl, err)
	}
	// Another caller has its own bucket.
	if err := sidecars[0].Handle(context.Background(), &Call{CallerAppID: "quiet"}); err != nil {
		t.Fatalf("another caller: %v", err)
	}
}

// With Redis down or hung, failureMode open lets calls through (saying
// so now and then), closed refuses them 503 ERR_RATE_LIMIT_UNAVAILABLE
// (Unavailable on gRPC); either answers within the connection's
// timeouts, and the limit counts again once Redis is back.
func TestRedisBucketsFailureMode(t *testing.T) {
	srv := redisserver.Start(t)
	open := redisLimit(t, "open", srv.Addr, "1", "1")
	closed := redisLimit(t, "closed", srv.Addr, "1", "1", "failureMode", "closed")
	call := &Call{CallerAppID: "front"}
	for _, l := range []*RateLimit{open, closed} {
		if err := l.Handle(context.Background(), call); err != nil {
			t.Fatalf("%s, Redis up: %v", l.name, err)
		}
		if err := l.Handle(context.Background(), call); apierr.As(err, "").Code != CodeTooManyRequests {
			t.Fatalf("%s, Redis up, second call: %v", l.name, err)
		}
	}

	check := func(what string) {
		t.Helper()
		for i := range 3 {
			start := time.Now()
			err := open.Handle(context.Background(), call)
			var d *Degraded
			if err != nil && (i > 0 || !errors.As(err, &d)) {
				t.Fatalf("%s, fail open, call %d: %v; want through", what, i, err)
			}
			if i == 0 && err == nil {
				t.Fatalf("%s, fail open: nothing said of the failure", what)
			}
			err = closed.Handle(context.Background(), call)
			e := apierr.As(err, "")
			var r *Refusal
			if !errors.As(err, &r) || e.Code != CodeRateLimitUnavailable || e.HTTPStatus != 503 || e.GRPCCode != codes.Unavailable || r.Wait != time.Second {
				t.Fatalf("%s, fail closed: %v; want 503 %s", what, err, CodeRateLimitUnavailable)
			}
			took := time.Since(start)
			if took > 10*time.Second {
				t.Fatalf("%s: two calls took %v; want them bounded by the timeouts (2s each)", what, took)
			}
			if i == 0 {
				t.Logf("%s: fail closed answers %q (two calls in %v)", what, e.Message, took)
			}
		}
		open.buckets.(*redisBuckets).lastLog.Store(0)
	}
	srv.Pause()
	check("Redis hung")
	// A call that ends while Redis is silent: let through, or refused,
	// without a word of Redis in the log.
	for _, l := range []*RateLimit{open, closed} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := l.Handle(ctx, call)
		cancel()
		if l == open && err != nil || l == closed && !strings.Contains(apierr.As(err, "").Message, "the call ended before Redis answered") {
			t.Fatalf("%s, the call's deadline passed: %v", l.name, err)
		}
	}
	srv.Resume()
	srv.Stop()
	check("Redis stopped")
	srv.Restart(t)
	waitFor(t, "the closed limit counts again", func() bool {
		return closed.Handle(context.Background(), call) == nil
	})
	if err := closed.Handle(context.Background(), call); apierr.As(err, "").Code != CodeTooManyRequests {
		t.Fatalf("Redis back: second call %v", err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 30s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The connection is redisconn's: the limit counts alike on a Redis
// Cluster (each bucket on the node of its slot) and on a master that
// Sentinels name.
func TestRedisBucketsClusterAndSentinel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) []string
	}{
		{"cluster", func(t *testing.T) []string {
			return []string{"redisHost", redisserver.StartCluster(t, 3).Addrs(), "redisType", "cluster"}
		}},
		{"sentinel", func(t *testing.T) []string {
			return []string{"redisHost", redisserver.StartSentinels(t, 0).Addrs(), "failover", "true", "sentinelMasterName", redisserver.MasterName}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md := tc.start(t)
			l := redisLimit(t, "limit-"+tc.name, md[1], "0.001", "3", md[2:]...)
			for i := range 20 { // keys over every node's slots
				call := &Call{CallerAppID: "app" + strconv.Itoa(i)}
				for j := range 4 {
					err := l.Handle(context.Background(), call)
					if j < 3 && err != nil || j == 3 && apierr.As(err, "").Code != CodeTooManyRequests {
						t.Fatalf("caller %d, call %d: %v; want the burst of 3, then 429", i, j, err)
					}
				}
			}
		})
	}
}
