package resiliency

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/pkg/resolver"
	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
)

const doc = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: myresiliency
scopes: [front]
spec:
  policies:
    timeouts:
      general: 300ms
    retries:
      quick: {policy: constant, duration: 10ms, maxRetries: 2}
      growing: {policy: exponential, duration: 100ms, maxInterval: 1s, maxRetries: -1}
    circuitBreakers:
      cb: {maxRequests: 1, timeout: 200ms, trip: consecutiveFailures >= 3}
  targets:
    apps:
      addapp: {timeout: general, retry: quick, circuitBreaker: cb}
    components:
      statestore:
        outbound: {timeout: 1s, retry: quick}
`

func TestParse(t *testing.T) {
	rs, err := Parse([]byte("kind: Component\n---\n"+doc), "r.yaml")
	if err != nil || len(rs) != 1 {
		t.Fatalf("%v %v", rs, err)
	}
	s := newSet()
	if _, err := s.build(rs[0]); err != nil {
		t.Fatal(err)
	}
	p := s.App("addapp")
	if p.Timeout != 300*time.Millisecond || p.Retry.MaxRetries != 2 || p.Retry.Interval != 10*time.Millisecond || p.Breaker.Trip != 3 || p.Breaker.Timeout != 200*time.Millisecond {
		t.Errorf("policy %+v %+v %+v", p, p.Retry, p.Breaker)
	}
	if c := s.Component("statestore"); c.Timeout != time.Second || c.Retry == nil {
		t.Errorf("component %+v", c)
	}
	g := &Retry{Exponential: true, Interval: 100 * time.Millisecond, MaxInterval: time.Second}
	if g.Delay(1) != 100*time.Millisecond || g.Delay(3) != 400*time.Millisecond || g.Delay(10) != time.Second {
		t.Errorf("exponential delays %s %s %s", g.Delay(1), g.Delay(3), g.Delay(10))
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	for name, c := range map[string]struct{ from, to, want string }{
		"unknown retry":    {"retry: quick, circuitBreaker", "retry: slow, circuitBreaker", `retry "slow" is not a policy`},
		"bad duration":     {"general: 300ms", "general: soon", `timeout "general"`},
		"bad policy":       {"policy: constant", "policy: linear", `policy "linear" is not valid`},
		"bad trip":         {"trip: consecutiveFailures >= 3", "trip: requests > 3", `trip "requests > 3" is not supported`},
		"unknown field":    {"maxRequests: 1,", "maxRequest: 1,", "maxRequest"},
		"negative retries": {"maxRetries: 2", "maxRetries: -5", "maxRetries -5"},
	} {
		t.Run(name, func(t *testing.T) {
			d := strings.Replace(doc, c.from, c.to, 1)
			if d == doc {
				t.Fatal("the case changes nothing")
			}
			if _, err := Parse([]byte(d), "r.yaml"); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestBreaker(t *testing.T) {
	b := &breaker{cfg: BreakerConfig{Trip: 2, Timeout: time.Second, MaxRequests: 1}}
	now := time.Now()
	for range 2 {
		if err := b.allow(now); err != nil {
			t.Fatal(err)
		}
		b.done(false, now)
	}
	if err := b.allow(now); !errors.Is(err, ErrOpen) {
		t.Fatalf("not open after 2 failures: %v", err)
	}
	later := now.Add(1100 * time.Millisecond)
	if err := b.allow(later); err != nil {
		t.Fatalf("not half-open after the timeout: %v", err)
	}
	if err := b.allow(later); !errors.Is(err, ErrOpen) {
		t.Fatal("half-open let a second trial through")
	}
	b.done(true, later)
	if err := b.allow(later); err != nil {
		t.Fatalf("a good trial did not close it: %v", err)
	}
}

// With an interval, a closed breaker forgets the failures of the last
// interval: failures further apart than it never open the breaker.
func TestBreakerInterval(t *testing.T) {
	rs, err := Parse([]byte(strings.Replace(doc, "cb: {maxRequests: 1,", "cb: {maxRequests: 1, interval: 1s,", 1)), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := newSet()
	if _, err := s.build(rs[0]); err != nil {
		t.Fatal(err)
	}
	cfg := *s.App("addapp").Breaker
	if cfg.Interval != time.Second {
		t.Fatalf("interval %s, want 1s", cfg.Interval)
	}
	b := &breaker{cfg: cfg} // trips at 3 consecutive failures
	now := time.Now()
	fail := func(at time.Duration) error {
		if err := b.allow(now.Add(at)); err != nil {
			return err
		}
		b.done(false, now.Add(at))
		return nil
	}
	for _, at := range []time.Duration{0, 500 * time.Millisecond, 1100 * time.Millisecond, 1200 * time.Millisecond} {
		if err := fail(at); err != nil {
			t.Fatalf("failure at %s: %v; the first two were an interval before", at, err)
		}
	}
	_ = fail(1300 * time.Millisecond) // the third of this interval
	if err := b.allow(now.Add(1400 * time.Millisecond)); !errors.Is(err, ErrOpen) {
		t.Fatalf("three failures within an interval did not open it: %v", err)
	}
	if _, err := Parse([]byte(strings.Replace(doc, "cb: {maxRequests: 1,", "cb: {maxRequests: 1, interval: often,", 1)), "r.yaml"); err == nil || !strings.Contains(err.Error(), `interval: "often"`) {
		t.Errorf("a bad interval: %v", err)
	}
}

// A component's inbound policy (what a pub/sub component delivers to the
// app) is read apart from its outbound one; a bad one is refused naming
// it.
func TestInboundPolicies(t *testing.T) {
	d := strings.Replace(doc, "outbound: {timeout: 1s, retry: quick}", "outbound: {timeout: 1s, retry: quick}\n      pubsub:\n        inbound: {timeout: general, retry: growing}", 1)
	rs, err := Parse([]byte(d), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewSet(rs, "front")
	if err != nil {
		t.Fatal(err)
	}
	in := set.ComponentInbound("pubsub")
	if in == nil || in.Timeout != 300*time.Millisecond || in.Retry == nil || !in.Retry.Exponential || in.Retry.MaxRetries != -1 {
		t.Fatalf("inbound policy of pubsub: %+v", in)
	}
	if set.ComponentInbound("statestore") != nil {
		t.Error("statestore has an inbound policy it was not given")
	}
	if (*Set)(nil).ComponentInbound("pubsub") != nil {
		t.Error("a nil Set has an inbound policy")
	}
	bad := strings.Replace(d, "inbound: {timeout: general, retry: growing}", "inbound: {retry: nope}", 1)
	if _, err := Parse([]byte(bad), "r.yaml"); err == nil || !strings.Contains(err.Error(), `components.pubsub.inbound: retry "nope" is not a policy`) {
		t.Errorf("an unknown inbound retry: %v", err)
	}
}

// Dapr's fields that have no effect here load, and are listed by file and
// resource so the sidecar can say so once.
func TestIgnoredFieldsAreListed(t *testing.T) {
	dir := t.TempDir()
	d := strings.Replace(doc, "maxRetries: 2}", "maxRetries: 2, matching: {httpStatusCodes: \"429,500-599\", gRPCStatusCodes: \"1-4\"}}", 1)
	d = strings.Replace(d, "outbound: {timeout: 1s, retry: quick}", "outbound: {timeout: 1s, retry: quick}\n        inbound: {timeout: 1s, retry: quick, circuitBreaker: cb}", 1)
	d += "    actors:\n      myActorType: {timeout: general}\n"
	path := filepath.Join(dir, "resiliency.yaml")
	if err := os.WriteFile(path, []byte(d), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Parse(b, path)
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewSet(rs, "front")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		path + `: resiliency "myresiliency": spec.policies.retries.quick.matching`,
		path + `: resiliency "myresiliency": spec.targets.actors`,
		path + `: resiliency "myresiliency": spec.targets.components.statestore.inbound.circuitBreaker`,
	}
	if !slices.Equal(set.Ignored, want) {
		t.Errorf("ignored\n%s\nwant\n%s", strings.Join(set.Ignored, "\n"), strings.Join(want, "\n"))
	}
	if set.Component("statestore") == nil || set.App("addapp") == nil {
		t.Error("the policies that apply were not loaded")
	}
	rs, _ = Parse([]byte(doc), "r.yaml")
	if got := rs[0].Ignored(); len(got) != 0 {
		t.Errorf("a resource using only what applies lists %v", got)
	}
}

// failing is a store that fails its first n calls (a test double of an
// outage; the real-Redis outage is in pkg/state/redis's tests).
type failing struct {
	state.Store
	left  atomic.Int32
	calls atomic.Int32
}

func (f *failing) Get(ctx context.Context, key string) (*state.Item, error) {
	f.calls.Add(1)
	if f.left.Add(-1) >= 0 {
		return nil, errors.New("connection refused")
	}
	return f.Store.Get(ctx, key)
}

func (f *failing) Set(ctx context.Context, req state.SetRequest) error {
	f.calls.Add(1)
	if f.left.Add(-1) >= 0 {
		return errors.New("connection refused")
	}
	return f.Store.Set(ctx, req)
}

func TestStoreRetriesOnlyRepeatableOperations(t *testing.T) {
	rs, _ := Parse([]byte(doc), "r.yaml")
	s := &Set{Apps: map[string]*Policy{}, Components: map[string]*Policy{}}
	if _, err := s.build(rs[0]); err != nil {
		t.Fatal(err)
	}
	f := &failing{Store: memory.New(0)}
	other := &failing{Store: memory.New(0)}
	svc := state.NewService("app", "")
	for name, st := range map[string]state.Store{"statestore": f, "other": other} {
		if err := svc.Add(state.StoreConfig{Name: name, Store: st}); err != nil {
			t.Fatal(err)
		}
	}
	svc.Use(s.StateMiddleware())
	ctx := context.Background()
	f.left.Store(2)
	if _, err := svc.Get(ctx, "statestore", "k"); err != nil || f.calls.Load() != 3 {
		t.Errorf("get: %v after %d calls, want success on the third", err, f.calls.Load())
	}
	f.calls.Store(0)
	f.left.Store(1)
	etag := "1"
	if err := svc.Save(ctx, "statestore", []state.SetRequest{{Key: "k", Value: []byte("v"), ETag: &etag}}); err == nil || f.calls.Load() != 1 {
		t.Errorf("a set with an ETag was retried: %v, %d calls", err, f.calls.Load())
	}
	f.calls.Store(0)
	f.left.Store(1)
	if err := svc.Save(ctx, "statestore", []state.SetRequest{{Key: "k", Value: []byte("v")}}); err != nil || f.calls.Load() != 2 {
		t.Errorf("a last-write set: %v, %d calls", err, f.calls.Load())
	}
	f.calls.Store(0)
	f.left.Store(1)
	if err := svc.Save(ctx, "statestore", []state.SetRequest{{Key: "k", Value: []byte("v"), FirstWrite: true}}); err == nil || f.calls.Load() != 1 {
		t.Errorf("a first-write set was retried: %v, %d calls", err, f.calls.Load())
	}
	other.left.Store(1)
	if _, err := svc.Get(ctx, "other", "k"); err == nil || other.calls.Load() != 1 {
		t.Errorf("a store without a policy was retried: %v, %d calls", err, other.calls.Load())
	}
	if newSet().StateMiddleware() != nil {
		t.Error("a set without component policies gives middleware")
	}
}

// refusingCaller answers every call with an invocation error of one kind
// (a test double of the hop's answers; the real ones are in tests/e2e).
type refusingCaller struct {
	kind  wire.Kind
	calls atomic.Int32
}

func (r *refusingCaller) Invoke(context.Context, *invoke.Call) (*http.Response, error) {
	r.calls.Add(1)
	return nil, &invoke.Error{Kind: r.kind, AppID: "addapp", Msg: string(r.kind)}
}

// A refused call (malformed, headers too large, denied) is neither retried
// nor counted against the breaker; an unreachable target is both.
func TestInvokerRefusalsAreNotFailures(t *testing.T) {
	rs, _ := Parse([]byte(doc), "r.yaml")
	s := newSet()
	if _, err := s.build(rs[0]); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		kind      wire.Kind
		calls     int32 // per Invoke: 1 + retries
		breakerOK bool  // still closed after 5 calls
	}{
		{wire.KindBadRequest, 1, true},
		{wire.KindHeadersTooLarge, 1, true},
		{wire.KindPermissionDenied, 1, true},
		{wire.KindUnreachable, 3, false},
	} {
		t.Run(string(c.kind), func(t *testing.T) {
			next := &refusingCaller{kind: c.kind}
			inv := NewSwitch(next, s)
			call := func() error {
				_, err := inv.Invoke(context.Background(), &invoke.Call{Target: resolver.Target{ID: "addapp"}, Verb: "GET", Header: http.Header{}})
				return err
			}
			_ = call()
			if got := next.calls.Load(); got != c.calls {
				t.Errorf("%d tries of one call, want %d", got, c.calls)
			}
			for range 4 {
				_ = call()
			}
			if err := call(); errors.Is(err, ErrOpen) == c.breakerOK {
				t.Errorf("after 6 calls the breaker says %v; want open=%v", err, !c.breakerOK)
			}
		})
	}
}
