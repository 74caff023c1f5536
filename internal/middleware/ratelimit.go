package middleware

import (
	"container/list"
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/redisconn"
)

// TypeRateLimit is Dapr's rate limit middleware.
const TypeRateLimit = "middleware.http.ratelimit"

// DefaultMaxRequestsPerSecond is Dapr's rate when the Component names none.
const DefaultMaxRequestsPerSecond = 100

// The stores of a rate limit's buckets (metadata store).
const (
	StoreMemory = "memory" // in each sidecar
	StoreRedis  = "redis"  // shared by the sidecars that use the same Redis
)

// RateLimitConfig is a middleware.http.ratelimit Component's metadata.
type RateLimitConfig struct {
	// MaxRequestsPerSecond is the rate a client is held to (Dapr's
	// maxRequestsPerSecond; default 100).
	MaxRequestsPerSecond float64
	// Burst is how many calls a client may make at once after a quiet
	// spell (burst; default: MaxRequestsPerSecond, rounded down, at least
	// 1, as daprd's).
	Burst int
	// Key is whose bucket a call takes its token from (key; default the
	// client's address).
	Key Key
	// Store is StoreMemory (the default) or StoreRedis (store).
	Store string
	// Redis is the connection of StoreRedis (redisHost, ...).
	Redis redisconn.Config
	// FailClosed refuses the calls while the Redis store cannot be
	// reached (failureMode: closed); by default they are let through.
	FailClosed bool
	// redisID says which Redis connection this is: the fields it was
	// read from, so that limits with the same connection share a client.
	redisID string
}

// Key says whose bucket a call takes its token from.
type Key struct {
	// Kind is KeyClientAddress, KeyCallerAppID or KeyHeader.
	Kind string
	// Header is the header of KeyHeader, canonical.
	Header string
}

// The kinds of Key (metadata key).
const (
	// KeyClientAddress is the address of the connection.
	KeyClientAddress = "clientAddress"
	// KeyCallerAppID is the caller's verified app id: the certificate's
	// on appHttpPipeline, the sidecar's own app on httpPipeline; without
	// one (mutual TLS off), the client's address.
	KeyCallerAppID = "callerAppID"
	// KeyHeader is the value of a header (key: header:<Name>); without
	// it, the client's address.
	KeyHeader = "header"
)

// maxKeyLen is the longest key kept as it is; longer ones (a header's
// value) are kept as their hash, so keys hold little memory.
const maxKeyLen = 128

// Of is c's bucket key. Keys of different kinds never meet: a header's
// value cannot name a client address's bucket.
func (k Key) Of(c *Call) string {
	var s string
	switch k.Kind {
	case KeyCallerAppID:
		if c.CallerAppID != "" {
			s = "app:" + c.CallerNamespace + "/" + c.CallerAppID
		}
	case KeyHeader:
		if v := c.Header.Get(k.Header); v != "" {
			s = "header:" + v
		}
	}
	if s == "" {
		s = "addr:" + clientPrefix(c.ClientAddr)
	}
	if len(s) > maxKeyLen {
		s = "hash:" + hashKey(s)
	}
	return s
}

// clientPrefix is addr, an IPv6 address by its /64 prefix (as daprd):
// a host has a whole /64 to take new addresses from.
func clientPrefix(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is6() || a.Is4In6() {
		return addr
	}
	p, _ := a.Prefix(64)
	return p.Addr().String()
}

// String is the key as the metadata names it.
func (k Key) String() string {
	if k.Kind == KeyHeader {
		return "header:" + k.Header
	}
	return k.Kind
}

// per says whose limit it is, for messages.
func (k Key) per() string {
	switch k.Kind {
	case KeyCallerAppID:
		return "per caller app"
	case KeyHeader:
		return "per value of the header " + k.Header
	}
	return "per client"
}

// parseKey reads the metadata key.
func parseKey(v string) (Key, error) {
	v = strings.TrimSpace(v)
	switch {
	case strings.EqualFold(v, KeyClientAddress):
		return Key{Kind: KeyClientAddress}, nil
	case strings.EqualFold(v, KeyCallerAppID):
		return Key{Kind: KeyCallerAppID}, nil
	case len(v) > len("header:") && strings.EqualFold(v[:len("header:")], "header:"):
		name := strings.TrimSpace(v[len("header:"):])
		if !validHeaderName(name) {
			return Key{}, fmt.Errorf("metadata key %q: %q is not a header name", v, name)
		}
		return Key{Kind: KeyHeader, Header: http.CanonicalHeaderKey(name)}, nil
	}
	return Key{}, fmt.Errorf("metadata key %q: want clientAddress (the connection's address), callerAppID (the caller's verified app id) or header:<Name> (a header's value, e.g. header:X-Tenant)", v)
}

// validHeaderName reports whether s is an HTTP header name (a token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 126 || r <= 32 || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}

// rateLimitFields are the metadata fields middleware.http.ratelimit reads,
// beside the Redis connection's (redisconn.Fields and redisMaxRetries).
var rateLimitFields = []string{"maxRequestsPerSecond", "burst", "key", "store", "failureMode"}

// redisFields are the Redis connection's fields, read with store: redis.
var redisFields = append(slices.Clone(redisconn.Fields), "redisMaxRetries")

// ParseRateLimit reads a middleware.http.ratelimit Component's metadata.
// Field names are matched without regard to case, as daprd does.
func ParseRateLimit(md map[string]string) (RateLimitConfig, error) {
	c := RateLimitConfig{MaxRequestsPerSecond: DefaultMaxRequestsPerSecond, Key: Key{Kind: KeyClientAddress}, Store: StoreMemory}
	redisMD := map[string]string{}
	var failureMode string
	for k, v := range md {
		name := canonicalField(k)
		switch name {
		case "maxRequestsPerSecond":
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				return c, fmt.Errorf("metadata maxRequestsPerSecond %q is not a number above 0 (for example \"10\" or \"0.5\")", v)
			}
			c.MaxRequestsPerSecond = f
		case "burst":
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 1 {
				return c, fmt.Errorf("metadata burst %q is not a whole number of at least 1", v)
			}
			c.Burst = n
		case "key":
			var err error
			if c.Key, err = parseKey(v); err != nil {
				return c, err
			}
		case "store":
			switch s := strings.ToLower(strings.TrimSpace(v)); s {
			case StoreMemory, StoreRedis:
				c.Store = s
			default:
				return c, fmt.Errorf("metadata store %q: want memory (buckets in each sidecar) or redis (buckets in Redis, shared by the sidecars that use it)", v)
			}
		case "failureMode":
			switch s := strings.ToLower(strings.TrimSpace(v)); s {
			case "open":
			case "closed":
				c.FailClosed = true
			default:
				return c, fmt.Errorf("metadata failureMode %q: want open (calls go through while Redis cannot be reached) or closed (they are refused, 503)", v)
			}
			failureMode = k
		case "":
			all := slices.Concat(rateLimitFields, redisFields)
			return c, fmt.Errorf("metadata field %q is not read by %s; it reads %s", k, TypeRateLimit, strings.Join(all, ", "))
		default:
			redisMD[name] = v
		}
	}
	if c.Burst == 0 {
		c.Burst = max(1, int(c.MaxRequestsPerSecond)) // daprd's: rounded down
	}
	if c.Store != StoreRedis {
		for name := range redisMD {
			return c, fmt.Errorf("metadata %s is read with store: redis only; this limit's store is memory", name)
		}
		if failureMode != "" {
			return c, fmt.Errorf("metadata failureMode is read with store: redis only: a limit in memory cannot fail")
		}
		return c, nil
	}
	conn, err := redisconn.Parse(redisMD, redisDialect)
	if err != nil {
		return c, err
	}
	// Shorter waits than a store's, as every call waits on them, and no
	// retry, so that a call takes one script call.
	o := conn.Options
	for f, d := range map[string]*time.Duration{"dialTimeout": &o.DialTimeout, "readTimeout": &o.ReadTimeout, "writeTimeout": &o.WriteTimeout, "poolTimeout": &o.PoolTimeout} {
		if _, ok := redisMD[f]; !ok {
			*d = redisDefaults[f]
		}
	}
	if _, ok := redisMD["redisMaxRetries"]; !ok {
		o.MaxRetries = -1 // go-redis: none
	}
	c.Redis, c.redisID = conn, redisID(redisMD)
	return c, nil
}

// canonicalField is the name of the field k names, without regard to
// case; "" when it is none.
func canonicalField(k string) string {
	for _, f := range rateLimitFields {
		if strings.EqualFold(k, f) {
			return f
		}
	}
	for _, f := range redisFields {
		if strings.EqualFold(k, f) {
			return f
		}
	}
	return ""
}

// RateLimit holds each client to a rate: a token bucket per key, in
// memory or in Redis, of Burst tokens filled at MaxRequestsPerSecond. A
// call takes a token; without one it is refused with 429
// ERR_TOO_MANY_REQUESTS (ResourceExhausted on gRPC) and the time until
// the next token.
type RateLimit struct {
	name    string
	key     Key
	rate    float64
	buckets takeStore
}

// takeStore is where the buckets are.
type takeStore interface {
	// Take takes a token of key's bucket: true if there was one; else
	// false and how long until there is. An error refuses or admits the
	// call, as the store was configured to fail (a *Refusal), or fails it.
	Take(ctx context.Context, key string) (bool, time.Duration, error)
}

// NewRateLimit returns the rate limit of the Component name; now is the
// clock of a store in memory (nil: time.Now).
func NewRateLimit(name string, c RateLimitConfig, now func() time.Time) *RateLimit {
	l := &RateLimit{name: name, key: c.Key, rate: c.MaxRequestsPerSecond}
	if l.key.Kind == "" {
		l.key.Kind = KeyClientAddress
	}
	if c.Store == StoreRedis {
		l.buckets = newRedisBuckets(name, c)
	} else {
		l.buckets = memoryTaker{NewBuckets(c.MaxRequestsPerSecond, c.Burst, now)}
	}
	return l
}

// Handle takes a token of the call's bucket, or refuses the call.
func (l *RateLimit) Handle(ctx context.Context, c *Call) error {
	ok, wait, err := l.buckets.Take(ctx, l.key.Of(c))
	if err != nil || ok {
		return err
	}
	return &Refusal{Wait: wait, Err: apierr.New(CodeTooManyRequests, http.StatusTooManyRequests, codes.ResourceExhausted,
		"too many requests: the rate limit %q allows %g per second %s; try again in %s", l.name, l.rate, l.key.per(), wait.Round(time.Millisecond))}
}

// memoryTaker is Buckets as a store.
type memoryTaker struct{ *Buckets }

func (m memoryTaker) Take(_ context.Context, key string) (bool, time.Duration, error) {
	ok, wait := m.Buckets.Take(key)
	return ok, wait, nil
}

// Buckets are token buckets by key, in memory, filled at rate tokens a
// second up to burst; a key seen first starts full. At most maxKeys are
// kept: past that, the bucket used least recently is forgotten (it starts
// full if its key comes back), so a flood of keys holds no more memory.
type Buckets struct {
	rate  float64
	burst float64
	now   func() time.Time
	max   int

	mu      sync.Mutex
	buckets map[string]*list.Element // of *bucket
	lru     list.List                // most recently used first
}

type bucket struct {
	key    string
	tokens float64
	at     time.Time // when tokens was counted
}

// maxKeys is how many buckets are kept in memory.
const maxKeys = 10000

// NewBuckets returns empty Buckets; now is the clock (nil: time.Now).
func NewBuckets(rate float64, burst int, now func() time.Time) *Buckets {
	if now == nil {
		now = time.Now
	}
	return &Buckets{rate: rate, burst: float64(burst), now: now, max: maxKeys, buckets: map[string]*list.Element{}}
}

// Take takes a token of key's bucket: true if there was one; else false
// and how long until there is.
func (b *Buckets) Take(key string) (bool, time.Duration) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.buckets[key]
	if ok {
		b.lru.MoveToFront(e)
	} else {
		if b.lru.Len() >= b.max {
			b.evict(now)
		}
		e = b.lru.PushFront(&bucket{key: key, tokens: b.burst, at: now})
		b.buckets[key] = e
	}
	bk := e.Value.(*bucket)
	b.fill(bk, now)
	if bk.tokens >= 1 {
		bk.tokens--
		return true, 0
	}
	wait := time.Duration((1 - bk.tokens) / b.rate * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// evict forgets the bucket used least recently, and with it any full
// ones at the back of the list: forgetting a full bucket changes nothing,
// as a new one starts full.
func (b *Buckets) evict(now time.Time) {
	for e := b.lru.Back(); e != nil; {
		prev := e.Prev()
		bk := e.Value.(*bucket)
		b.fill(bk, now)
		if b.lru.Len() >= b.max || bk.tokens >= b.burst {
			b.lru.Remove(e)
			delete(b.buckets, bk.key)
			e = prev
			continue
		}
		return
	}
}

// fill adds the tokens earned since bk was last counted.
func (b *Buckets) fill(bk *bucket, now time.Time) {
	if d := now.Sub(bk.at); d > 0 {
		bk.tokens = min(b.burst, bk.tokens+d.Seconds()*b.rate)
	}
	bk.at = now
}

// Len is how many buckets are kept.
func (b *Buckets) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buckets)
}
