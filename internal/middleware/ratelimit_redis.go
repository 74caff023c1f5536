package middleware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/redisconn"
)

// CodeRateLimitUnavailable is the error code of a call refused because a
// rate limit that fails closed cannot reach its Redis store.
const CodeRateLimitUnavailable = "ERR_RATE_LIMIT_UNAVAILABLE"

// redisDialect reads the Redis fields of a rate limit: retries as
// redisMaxRetries, durations as Go durations.
var redisDialect = redisconn.Dialect{
	MaxRetries: []string{"redisMaxRetries"},
	Duration: func(name, v string) (time.Duration, error) {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("metadata %s %q: want a positive Go duration such as 500ms or 2s", name, v)
		}
		return d, nil
	},
}

// redisDefaults are the waits of a rate limit's Redis connection where
// the metadata says nothing.
var redisDefaults = map[string]time.Duration{
	"dialTimeout": time.Second, "readTimeout": 500 * time.Millisecond,
	"writeTimeout": 500 * time.Millisecond, "poolTimeout": time.Second,
}

// redisID is the identity of a Redis connection: the fields it is read
// from.
func redisID(md map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range md {
			if !yield(k) {
				return
			}
		}
	}) {
		b.WriteString(k + "=" + md[k] + "\x00")
	}
	return b.String()
}

// redisClients are the clients of the rate limits, by connection: a
// limit built again (a hot reload, a check) takes the client of its
// connection instead of opening new ones; a client lives as long as the
// sidecar.
var redisClients struct {
	sync.Mutex
	m map[string]redis.UniversalClient
}

func redisClient(c RateLimitConfig) redis.UniversalClient {
	redisClients.Lock()
	defer redisClients.Unlock()
	if cl, ok := redisClients.m[c.redisID]; ok {
		return cl
	}
	cl := c.Redis.NewClient()
	if redisClients.m == nil {
		redisClients.m = map[string]redis.UniversalClient{}
	}
	redisClients.m[c.redisID] = cl
	return cl
}

// takeScript takes a token of the bucket KEYS[1] (a hash: tokens, and at,
// when they were counted, in microseconds of the server's clock), filled
// at ARGV[1] tokens a second up to ARGV[2]. It answers {1, 0} when there
// was a token, else {0, microseconds until there is one}. A bucket is
// kept until it is full again: a new one starts full. One script, so the
// read and the write are one step, whatever the sidecars calling at once;
// the server's clock, so sidecars whose clocks differ count alike.
var takeScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end -- Redis before 5: TIME, then writes
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000000)
  at = now
end
if tokens < 1 then
  return {0, math.ceil((1 - tokens) * 1000000 / rate)}
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%d', at))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {1, 0}
`)

// redisBuckets are token buckets in Redis, shared by the sidecars whose
// rate limits of the same name use the same Redis.
type redisBuckets struct {
	name       string
	client     redis.UniversalClient
	addr       string
	rate       string
	burst      int
	prefix     string
	timeout    time.Duration
	failClosed bool
	lastLog    atomic.Int64 // unix nanoseconds of the last failure said
}

func newRedisBuckets(name string, c RateLimitConfig) *redisBuckets {
	cl := redisClient(c)
	o := c.Redis.Options
	return &redisBuckets{
		name: name, client: cl, addr: c.Redis.Addr(),
		rate: fmt.Sprintf("%.17g", c.MaxRequestsPerSecond), burst: c.Burst,
		prefix:     "ratelimit||" + name + "||",
		timeout:    o.DialTimeout + o.WriteTimeout + o.ReadTimeout,
		failClosed: c.FailClosed,
	}
}

// Take runs takeScript on key's bucket, within the connection's timeouts.
// When Redis cannot answer, the call is let through, or refused with 503
// ERR_RATE_LIMIT_UNAVAILABLE (Unavailable on gRPC) with failureMode:
// closed.
func (r *redisBuckets) Take(ctx context.Context, key string) (bool, time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	res, err := takeScript.Run(cctx, r.client, []string{r.prefix + key}, r.rate, r.burst).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("the script answered %v", res)
	}
	switch {
	case err == nil && res[0] == 1:
		return true, 0, nil
	case err == nil:
		return false, max(time.Duration(res[1])*time.Microsecond, time.Millisecond), nil
	case ended(ctx):
		// The call ended (its caller left, or its deadline passed) while
		// Redis had not answered: nothing to say of Redis.
		if !r.failClosed {
			return true, 0, nil
		}
		return false, 0, r.unavailable(errors.New("the call ended before Redis answered"))
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("no answer within %s", r.timeout)
	}
	err = fmt.Errorf("redis %s: %w", r.addr, err)
	if !r.failClosed {
		// Said once in a while (the pipeline logs it), not on every call.
		if last := r.lastLog.Load(); time.Since(time.Unix(0, last)) > 10*time.Second && r.lastLog.CompareAndSwap(last, time.Now().UnixNano()) {
			return true, 0, &Degraded{Err: fmt.Errorf("the rate limit cannot reach its Redis store; calls go through unlimited until it can (failureMode: open): %w", err)}
		}
		return true, 0, nil
	}
	return false, 0, r.unavailable(err)
}

// ended reports whether the call of ctx is over: cancelled, or past its
// deadline (which Redis's client may see a moment before ctx says so).
func ended(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && !time.Now().Before(dl)
}

// unavailable is the refusal of a limit that fails closed: 503
// ERR_RATE_LIMIT_UNAVAILABLE, Unavailable on gRPC, try again in a second.
func (r *redisBuckets) unavailable(err error) *Refusal {
	return &Refusal{Wait: time.Second, Err: apierr.New(CodeRateLimitUnavailable, http.StatusServiceUnavailable, codes.Unavailable,
		"the rate limit %q cannot reach its Redis store: %v; it refuses calls until it can (failureMode: closed)", r.name, err)}
}

// hashKey is a long key's SHA-256, in hex.
func hashKey(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
