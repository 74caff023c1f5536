package middleware

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/identity"
	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// clock is a test's clock: it moves only when the test moves it.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Unix(1_000_000, 0)} }
func takeN(b *Buckets, key string, n int) (ok int) {
	for range n {
		if t, _ := b.Take(key); t {
			ok++
		}
	}
	return ok
}

// A bucket starts full (burst), refills at the rate, never above burst,
// and says how long until the next token.
func TestBucketsRefillAtTheRate(t *testing.T) {
	c := newClock()
	b := NewBuckets(10, 10, c.now)
	if n := takeN(b, "a", 15); n != 10 {
		t.Fatalf("a full bucket of 10 let %d of 15 through", n)
	}
	ok, wait := b.Take("a")
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("empty bucket: ok %v, wait %v; want refused, 100ms", ok, wait)
	}
	c.add(250 * time.Millisecond) // 2.5 tokens
	if n := takeN(b, "a", 5); n != 2 {
		t.Fatalf("after 250ms at 10/s: %d through, want 2", n)
	}
	if _, wait := b.Take("a"); wait != 50*time.Millisecond {
		t.Fatalf("half a token left: wait %v, want 50ms", wait)
	}
	c.add(time.Hour)
	if n := takeN(b, "a", 20); n != 10 {
		t.Fatalf("after an hour: %d through, want the burst, 10", n)
	}
	// Over 10 s of steady calls at 100/s, the rate is what passes, plus
	// the burst.
	b = NewBuckets(10, 10, c.now)
	total := 0
	for range 1000 {
		total += takeN(b, "k", 1)
		c.add(10 * time.Millisecond)
	}
	if total != 10+100-1 && total != 10+100 {
		t.Fatalf("10 s at 100/s against 10/s burst 10: %d through, want 109 or 110", total)
	}
}

// Each key has its bucket: one client spending its tokens leaves the
// others theirs.
func TestBucketsPerKey(t *testing.T) {
	c := newClock()
	b := NewBuckets(1, 3, c.now)
	if n := takeN(b, "noisy", 10); n != 3 {
		t.Fatalf("noisy: %d", n)
	}
	if n := takeN(b, "quiet", 3); n != 3 {
		t.Fatalf("quiet got %d of its 3", n)
	}
}

// A rate below 1/s waits more than a second; Retry-After rounds up.
func TestBucketsSlowRate(t *testing.T) {
	c := newClock()
	b := NewBuckets(0.5, 1, c.now)
	takeN(b, "a", 1)
	if _, wait := b.Take("a"); wait != 2*time.Second {
		t.Fatalf("wait %v, want 2s", wait)
	}
	for d, want := range map[time.Duration]int{time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, 2 * time.Second: 2} {
		if got := RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

// Full buckets are forgotten once there are many keys: a flood of
// addresses holds no memory past maxKeys.
func TestBucketsForgetFullOnes(t *testing.T) {
	c := newClock()
	b := NewBuckets(1, 1, c.now)
	for i := range maxKeys {
		b.Take(strconv.Itoa(i))
	}
	c.add(2 * time.Second) // all full again
	b.Take("new")
	if n := b.Len(); n != 1 {
		t.Fatalf("%d buckets kept, want 1", n)
	}
}

func TestParseRateLimit(t *testing.T) {
	c, err := ParseRateLimit(map[string]string{})
	if err != nil || c.MaxRequestsPerSecond != 100 || c.Burst != 100 {
		t.Fatalf("defaults %+v %v", c, err)
	}
	c, err = ParseRateLimit(map[string]string{"maxRequestsPerSecond": "0.5"})
	if err != nil || c.Burst != 1 {
		t.Fatalf("0.5/s: %+v %v", c, err)
	}
	c, err = ParseRateLimit(map[string]string{"maxRequestsPerSecond": "10.9"})
	if err != nil || c.Burst != 10 {
		t.Fatalf("10.9/s: burst %d %v; want 10, rounded down as daprd's", c.Burst, err)
	}
	c, err = ParseRateLimit(map[string]string{"maxRequestsPerSecond": "10", "burst": "3"})
	if err != nil || c.MaxRequestsPerSecond != 10 || c.Burst != 3 {
		t.Fatalf("10/s burst 3: %+v %v", c, err)
	}
	for md, want := range map[[2]string]string{
		{"maxRequestsPerSecond", "ten"}: `maxRequestsPerSecond "ten"`,
		{"maxRequestsPerSecond", "0"}:   `maxRequestsPerSecond "0"`,
		{"maxRequestsPerSecond", "NaN"}: `maxRequestsPerSecond "NaN"`,
		{"burst", "0"}:                  `burst "0"`,
		{"maxRequestPerSecond", "1"}:    `"maxRequestPerSecond" is not read by middleware.http.ratelimit; it reads maxRequestsPerSecond, burst, key, store, failureMode, redisHost`,
		{"key", "ip"}:                   `metadata key "ip": want clientAddress`,
		{"key", "header:"}:              `metadata key "header:": want clientAddress`,
		{"key", "header:X Tenant"}:      `metadata key "header:X Tenant": "X Tenant" is not a header name`,
		{"store", "etcd"}:               `metadata store "etcd": want memory`,
		{"failureMode", "open"}:         `failureMode is read with store: redis only`,
		{"redisHost", "localhost:6379"}: `redisHost is read with store: redis only`,
	} {
		if _, err := ParseRateLimit(map[string]string{md[0]: md[1]}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: error %v, want %q", md, err, want)
		}
	}
}

// Each key, its field; store redis reads the connection with
// redisconn's parser, its errors naming the field.
func TestParseRateLimitKeysAndStores(t *testing.T) {
	for v, want := range map[string]Key{
		"":                  {Kind: KeyClientAddress},
		"clientAddress":     {Kind: KeyClientAddress},
		"CallerAppId":       {Kind: KeyCallerAppID},
		"header:x-tenant":   {Kind: KeyHeader, Header: "X-Tenant"},
		"Header: X-Api-Key": {Kind: KeyHeader, Header: "X-Api-Key"},
	} {
		md := map[string]string{"key": v}
		if v == "" {
			md = nil
		}
		c, err := ParseRateLimit(md)
		if err != nil || c.Key != want || c.Store != StoreMemory {
			t.Errorf("key %q: %+v %v, want %+v", v, c.Key, err, want)
		}
	}
	c, err := ParseRateLimit(map[string]string{"store": "redis", "REDISHOST": "10.0.0.1", "failureMode": "closed", "redisDB": "3"})
	if err != nil || c.Store != StoreRedis || !c.FailClosed || c.Redis.Addr() != "10.0.0.1:6379" || c.Redis.Options.DB != 3 {
		t.Fatalf("redis: %+v %v", c, err)
	}
	if o := c.Redis.Options; o.ReadTimeout != 500*time.Millisecond || o.DialTimeout != time.Second || o.MaxRetries != -1 {
		t.Errorf("a rate limit's Redis waits: %+v", o)
	}
	c, _ = ParseRateLimit(map[string]string{"store": "redis", "redisHost": "h", "readTimeout": "3s", "redisMaxRetries": "2"})
	if c.Redis.Options.ReadTimeout != 3*time.Second || c.Redis.Options.MaxRetries != 2 {
		t.Errorf("readTimeout and redisMaxRetries given: %+v", c.Redis.Options)
	}
	if c.FailClosed {
		t.Error("failureMode defaults to closed; want open")
	}
	for _, tc := range []struct {
		md   map[string]string
		want string
	}{
		{map[string]string{"store": "redis"}, "metadata redisHost is missing"},
		{map[string]string{"store": "redis", "redisHost": "h", "failureMode": "deny"}, `metadata failureMode "deny": want open`},
		{map[string]string{"store": "redis", "redisHost": "h", "redisType": "cluster", "redisDB": "1"}, "metadata redisDB"},
		{map[string]string{"store": "redis", "redisHost": "h", "readTimeout": "soon"}, `metadata readTimeout "soon"`},
		{map[string]string{"store": "redis", "redisHost": "h", "enableTLS": "maybe"}, `metadata enableTLS "maybe"`},
	} {
		if _, err := ParseRateLimit(tc.md); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.md, err, tc.want)
		}
	}
}

// A key's bucket: the caller's verified app id, a header's value, else
// the client address; kinds never share a bucket, long values are hashed.
func TestKeyOf(t *testing.T) {
	call := &Call{ClientAddr: "10.0.0.1", CallerAppID: "orders", CallerNamespace: "prod", Header: http.Header{"X-Tenant": {"acme"}}}
	anon := &Call{ClientAddr: "10.0.0.1", Header: http.Header{}}
	for _, tc := range []struct {
		k    Key
		c    *Call
		want string
	}{
		{Key{Kind: KeyClientAddress}, call, "addr:10.0.0.1"},
		{Key{Kind: KeyClientAddress}, &Call{ClientAddr: "2001:db8:1:2:aaaa::1"}, "addr:2001:db8:1:2::"},
		{Key{Kind: KeyClientAddress}, &Call{ClientAddr: "2001:db8:1:2:bbbb::7"}, "addr:2001:db8:1:2::"},
		{Key{Kind: KeyClientAddress}, &Call{ClientAddr: "/tmp/app.sock"}, "addr:/tmp/app.sock"},
		{Key{Kind: KeyCallerAppID}, call, "app:prod/orders"},
		{Key{Kind: KeyCallerAppID}, anon, "addr:10.0.0.1"},
		{Key{Kind: KeyHeader, Header: "X-Tenant"}, call, "header:acme"},
		{Key{Kind: KeyHeader, Header: "X-Tenant"}, anon, "addr:10.0.0.1"},
		{Key{Kind: KeyHeader, Header: "X-Tenant"}, &Call{Header: http.Header{"X-Tenant": {strings.Repeat("a", 500)}}}, "hash:" + hashKey("header:"+strings.Repeat("a", 500))},
	} {
		if got := tc.k.Of(tc.c); got != tc.want {
			t.Errorf("%v of %+v: %q, want %q", tc.k, tc.c, got, tc.want)
		}
	}
}

// Past maxKeys, the buckets used least recently are forgotten, full or
// not: a flood of keys at a slow rate (none full again) holds no more
// than maxKeys, and the key in use keeps its bucket.
func TestBucketsBounded(t *testing.T) {
	c := newClock()
	b := NewBuckets(0.001, 1, c.now)
	b.Take("noisy")
	for i := range 3 * maxKeys {
		b.Take(strconv.Itoa(i))
		if i%1000 == 0 {
			b.Take("noisy")
		}
	}
	if n := b.Len(); n > maxKeys {
		t.Fatalf("%d buckets kept after %d keys; want at most %d", n, 3*maxKeys, maxKeys)
	}
	if ok, _ := b.Take("noisy"); ok {
		t.Fatal("the key in use lost its empty bucket")
	}
	if ok, _ := b.Take("0"); !ok {
		t.Fatal("the oldest key's bucket was kept")
	}
}

// Over the limit, a call is refused 429 ERR_TOO_MANY_REQUESTS with the
// wait, by client address.
func TestRateLimitRefuses(t *testing.T) {
	c := newClock()
	l := NewRateLimit("limit", RateLimitConfig{MaxRequestsPerSecond: 2, Burst: 1}, c.now)
	call := &Call{Protocol: "http", ClientAddr: "10.0.0.1"}
	if err := l.Handle(context.Background(), call); err != nil {
		t.Fatal(err)
	}
	err := l.Handle(context.Background(), call)
	var r *Refusal
	if !errors.As(err, &r) || r.Wait != 500*time.Millisecond {
		t.Fatalf("second call: %v", err)
	}
	e := apierr.As(err, "")
	if e.Code != CodeTooManyRequests || e.HTTPStatus != 429 || e.GRPCCode.String() != "ResourceExhausted" || !strings.Contains(e.Message, `"limit"`) {
		t.Fatalf("refusal %+v", e)
	}
	if err := l.Handle(context.Background(), &Call{ClientAddr: "10.0.0.2"}); err != nil {
		t.Fatalf("another client: %v", err)
	}
}

// The caller's app id is the verified identity the internal port put in
// the request's context, never the Dapr-Caller-App-Id header a caller
// sends; on httpPipeline it is the sidecar's own app.
func TestCallerAppIDIsVerified(t *testing.T) {
	s := NewSwitch("front", nil, nil)
	var seen []string
	k := Key{Kind: KeyCallerAppID}
	spy := funcMW(func(_ context.Context, c *Call) error { seen = append(seen, k.Of(c)); return nil })
	s.Set(Pipeline{{Name: "spy", Type: "t", Middleware: spy}}, Pipeline{{Name: "spy", Type: "t", Middleware: spy}})
	hop := s.Hop(App, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest("POST", "/v1.0/invoke/orders/method/x", nil)
	r.RemoteAddr = "10.0.0.9:4000"
	r.Header.Set(wire.CallerAppID, "quiet") // what a caller would set to take another's bucket
	serve(t, hop, r)
	verified := r.WithContext(identity.NewContext(r.Context(), identity.ID{TrustDomain: "public", Namespace: "default", AppID: "noisy"}))
	serve(t, hop, verified)
	serve(t, s.HTTP(API, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})), r)
	want := []string{"addr:10.0.0.9", "app:default/noisy", "app:/front"}
	if !slices.Equal(seen, want) {
		t.Fatalf("keys %q, want %q", seen, want)
	}
}

// A middleware that could not do its work and lets the call through
// (Degraded) does not stop the call; the pipeline logs the reason, and
// counts neither a refusal nor a failure.
func TestSwitchDegraded(t *testing.T) {
	var logged strings.Builder
	reg := prometheus.NewRegistry()
	s := NewSwitch("app", reg, slog.New(slog.NewTextHandler(&logged, nil)))
	s.Set(Pipeline{{Name: "rl", Type: TypeRateLimit, Middleware: funcMW(func(context.Context, *Call) error {
		return &Degraded{Err: errors.New("redis 10.0.0.1:6379: connection refused")}
	})}}, nil)
	reached := false
	w := serve(t, s.HTTP(API, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true })), httptest.NewRequest("GET", "/v1.0/metadata", nil))
	if !reached || w.Code != 200 {
		t.Fatalf("degraded: reached %v, %d", reached, w.Code)
	}
	if !strings.Contains(logged.String(), "connection refused") || !strings.Contains(logged.String(), "middleware=rl") {
		t.Fatalf("log %q", logged.String())
	}
	if n := testutil.CollectAndCount(reg); n != 0 {
		t.Fatalf("%d series counted; want none", n)
	}
}
