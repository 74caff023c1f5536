package middleware

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
)

// TypeRateLimit is Dapr's rate limit middleware.
const TypeRateLimit = "middleware.http.ratelimit"

// DefaultMaxRequestsPerSecond is Dapr's rate when the Component names none.
const DefaultMaxRequestsPerSecond = 100

// RateLimitConfig is a middleware.http.ratelimit Component's metadata.
type RateLimitConfig struct {
	// MaxRequestsPerSecond is the rate a client is held to (Dapr's
	// maxRequestsPerSecond; default 100).
	MaxRequestsPerSecond float64
	// Burst is how many calls a client may make at once after a quiet
	// spell (burst; default: MaxRequestsPerSecond, rounded up, at least 1).
	Burst int
}

// rateLimitFields are the metadata fields middleware.http.ratelimit reads.
var rateLimitFields = []string{"maxRequestsPerSecond", "burst"}

// ParseRateLimit reads a middleware.http.ratelimit Component's metadata.
func ParseRateLimit(md map[string]string) (RateLimitConfig, error) {
	c := RateLimitConfig{MaxRequestsPerSecond: DefaultMaxRequestsPerSecond}
	for k, v := range md {
		switch {
		case strings.EqualFold(k, "maxRequestsPerSecond"):
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				return c, fmt.Errorf("metadata maxRequestsPerSecond %q is not a number above 0 (for example \"10\" or \"0.5\")", v)
			}
			c.MaxRequestsPerSecond = f
		case strings.EqualFold(k, "burst"):
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 1 {
				return c, fmt.Errorf("metadata burst %q is not a whole number of at least 1", v)
			}
			c.Burst = n
		default:
			return c, fmt.Errorf("metadata field %q is not read by %s; it reads %s", k, TypeRateLimit, strings.Join(rateLimitFields, ", "))
		}
	}
	if c.Burst == 0 {
		c.Burst = max(1, int(math.Ceil(c.MaxRequestsPerSecond)))
	}
	return c, nil
}

// RateLimit holds each client (by address) to a rate: a token bucket per
// client, in memory, of Burst tokens filled at MaxRequestsPerSecond. A
// call takes a token; without one it is refused with 429
// ERR_TOO_MANY_REQUESTS (ResourceExhausted on gRPC) and the time until
// the next token.
type RateLimit struct {
	buckets *Buckets
	name    string
}

// NewRateLimit returns the rate limit of the Component name; now is its
// clock (nil: time.Now).
func NewRateLimit(name string, c RateLimitConfig, now func() time.Time) *RateLimit {
	return &RateLimit{name: name, buckets: NewBuckets(c.MaxRequestsPerSecond, c.Burst, now)}
}

// Handle takes a token of the client's bucket, or refuses the call.
func (l *RateLimit) Handle(_ context.Context, c *Call) error {
	ok, wait := l.buckets.Take(c.ClientAddr)
	if ok {
		return nil
	}
	return &Refusal{Wait: wait, Err: apierr.New(CodeTooManyRequests, http.StatusTooManyRequests, codes.ResourceExhausted,
		"too many requests: the rate limit %q allows %g per second per client; try again in %s", l.name, l.buckets.rate, wait.Round(time.Millisecond))}
}

// Buckets are token buckets by key, filled at rate tokens a second up to
// burst; a key seen first starts full. Full buckets are forgotten once
// there are more than maxKeys, so that a flood of client addresses holds
// no memory beyond the clients still held back.
type Buckets struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was counted
}

// maxKeys is how many buckets are kept before the full ones are dropped.
const maxKeys = 10000

// NewBuckets returns empty Buckets; now is the clock (nil: time.Now).
func NewBuckets(rate float64, burst int, now func() time.Time) *Buckets {
	if now == nil {
		now = time.Now
	}
	return &Buckets{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

// Take takes a token of key's bucket: true if there was one; else false
// and how long until there is.
func (b *Buckets) Take(key string) (bool, time.Duration) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	bk, ok := b.buckets[key]
	if !ok {
		if len(b.buckets) >= maxKeys {
			b.sweep(now)
		}
		bk = &bucket{tokens: b.burst, at: now}
		b.buckets[key] = bk
	}
	b.fill(bk, now)
	if bk.tokens >= 1 {
		bk.tokens--
		return true, 0
	}
	wait := time.Duration((1 - bk.tokens) / b.rate * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// fill adds the tokens earned since bk was last counted.
func (b *Buckets) fill(bk *bucket, now time.Time) {
	if d := now.Sub(bk.at); d > 0 {
		bk.tokens = min(b.burst, bk.tokens+d.Seconds()*b.rate)
	}
	bk.at = now
}

// sweep drops the buckets that are full by now: a new bucket starts full,
// so forgetting them changes nothing.
func (b *Buckets) sweep(now time.Time) {
	for k, bk := range b.buckets {
		b.fill(bk, now)
		if bk.tokens >= b.burst {
			delete(b.buckets, k)
		}
	}
}

// Len is how many buckets are kept.
func (b *Buckets) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buckets)
}
