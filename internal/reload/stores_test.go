package reload

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
	"github.com/tandem-run/tandem/pkg/state"
)

// storeRig is the Components' reconciler of app "front" with its state
// stores on svc, started with the sources docs.
type storeRig struct {
	k   *componentKind
	svc *state.Service
	m   *metrics
}

func startStores(t *testing.T, defaultStore bool, docs ...doc) *storeRig {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	g := &storeRig{svc: state.NewService("front", ""), m: testMetrics()}
	t.Cleanup(func() { _ = g.svc.Close() })
	g.k = newComponentKind("front", "", log, map[string]componentType{"state": newStores(nil, log, g.m, time.Second, defaultStore)})
	for _, d := range docs {
		put(t, g.k, d)
	}
	if err := g.k.start(context.Background(), Targets{State: g.svc}); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *storeRig) store(name string) (state.StoreConfig, bool) {
	for _, s := range g.svc.Stores() {
		if s.Name == name {
			return s, true
		}
	}
	return state.StoreConfig{}, false
}

func (g *storeRig) failure(name string) string {
	var st Status
	g.k.report(&st)
	for _, r := range st.Rejected {
		if r.Name == name {
			return r.Error
		}
	}
	return ""
}

func (g *storeRig) rejectedCount() float64 {
	return testutil.ToFloat64(g.m.reloads.WithLabelValues(kindComponent, "rejected"))
}

// A store that does not build is refused at stage, unless its Component
// sets ignoreErrors: then it is taken, and its failure reported on apply.
func TestStoreStage(t *testing.T) {
	bad := resources.RedisYAML("cache", "127.0.0.1:1", "ttlInSeconds", "soon")
	for _, ignore := range []bool{false, true} {
		g := startStores(t, false)
		y := bad
		if ignore {
			y = []byte(strings.Replace(string(bad), "  version: v1\n", "  version: v1\n  ignoreErrors: true\n", 1))
		}
		_, err := g.k.stage(context.Background(), docOf("cache.yaml", y))
		if !ignore {
			if err == nil || !strings.Contains(err.Error(), "ttlInSeconds") {
				t.Errorf("without ignoreErrors: %v; want the store's error", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("with ignoreErrors: %v", err)
		}
		if err := g.k.commit("cache.yaml"); err != nil {
			t.Fatal(err)
		}
		g.k.apply(context.Background(), false)
		if _, ok := g.store("cache"); ok || !strings.Contains(g.failure("cache"), "ttlInSeconds") {
			t.Errorf("with ignoreErrors: in force %v, failure %q; want none, and the store's error", ok, g.failure("cache"))
		}
	}
}

// A store that builds but does not answer is not put in force: the one it
// replaces keeps serving. It is counted once, tried again on retry only,
// and put in force once its server answers.
func TestStoreThatCannotConnectIsRetried(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	srv.Stop()
	g := startStores(t, false, docOf("statestore.yaml", memoryYAML("statestore")))
	put(t, g.k, docOf("statestore.yaml", resources.RedisYAML("statestore", srv.Addr, "dialTimeout", "200ms")))
	g.k.apply(ctx, false)
	if s, _ := g.store("statestore"); s.Type != "state.in-memory" {
		t.Fatalf("in force: %q; want the in-memory store it would replace", s.Type)
	}
	if got := g.failure("statestore"); !strings.Contains(got, "does not answer") || !strings.Contains(got, srv.Addr) {
		t.Errorf("failure %q; want it to say the store does not answer, at its address", got)
	}
	g.k.apply(ctx, false) // another source changed: not tried again
	g.k.apply(ctx, true)  // a retry: tried again, failing the same way
	if n := g.rejectedCount(); n != 1 {
		t.Errorf("counted %v rejections, want 1", n)
	}
	srv.Restart(t)
	g.k.apply(ctx, false)
	if s, _ := g.store("statestore"); s.Type != "state.in-memory" {
		t.Errorf("tried again without a retry")
	}
	g.k.apply(ctx, true)
	if s, _ := g.store("statestore"); s.Type != "state.redis" || g.failure("statestore") != "" {
		t.Errorf("after a retry with its server up: %q, failure %q; want the redis store in force", s.Type, g.failure("statestore"))
	}
}

// The embedded default store, there when the sidecar starts without store
// Components, stays until a Component of its name replaces it, and does
// not come back.
func TestEmbeddedDefaultStore(t *testing.T) {
	ctx := context.Background()
	g := startStores(t, true)
	if s, ok := g.store("statestore"); !ok || s.Type != "state.in-memory" {
		t.Fatal("no default store")
	}
	var st Status
	g.k.report(&st)
	if len(st.InUse) != 0 {
		t.Errorf("the default store listed as a resource: %+v", st.InUse)
	}
	put(t, g.k, docOf("cache.yaml", memoryYAML("cache")))
	g.k.apply(ctx, false)
	if _, ok := g.store("statestore"); !ok {
		t.Error("the default store went when a Component of another name came")
	}
	put(t, g.k, docOf("statestore.yaml", memoryYAML("statestore", "keyPrefix", "name")))
	g.k.apply(ctx, false)
	if s, _ := g.store("statestore"); s.KeyPrefix != "name" {
		t.Errorf("statestore %+v; want the Component's", s)
	}
	g.k.remove("statestore.yaml")
	g.k.apply(ctx, false)
	if _, err := g.svc.Get(ctx, "statestore", "k"); !errors.Is(err, state.ErrStoreNotFound) {
		t.Errorf("the default came back: %v", err)
	}
	if got := startStores(t, true, docOf("cache.yaml", memoryYAML("cache"))).svc.Stores(); len(got) != 1 || got[0].Name != "cache" {
		t.Errorf("stores %v; want only cache: no default beside a store Component at start", got)
	}
}
