package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// pubsubYAML is a pubsub.in-memory Component named name, with metadata as
// name, value pairs.
func pubsubYAML(name string, md ...string) []byte {
	b := fmt.Appendf(nil, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: pubsub.in-memory\n  version: v1\n  metadata:\n", name)
	for i := 0; i+1 < len(md); i += 2 {
		b = fmt.Appendf(b, "  - name: %s\n    value: %q\n", md[i], md[i+1])
	}
	return b
}

// pubsubRig is the Components' reconciler of app "front" with its pub/sub
// brokers on svc, started with the sources docs.
type pubsubRig struct {
	k   *componentKind
	svc *pubsub.Service
	m   *metrics
}

func startPubSubs(t *testing.T, docs ...doc) *pubsubRig {
	t.Helper()
	g, err := tryStartPubSubs(t, docs...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func tryStartPubSubs(t *testing.T, docs ...doc) (*pubsubRig, error) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	g := &pubsubRig{svc: pubsub.NewService(), m: testMetrics()}
	t.Cleanup(func() { _ = g.svc.Close() })
	g.k = newComponentKind("front", "", log, map[string]componentType{
		"pubsub": newPubSubs(nil, log, g.m, time.Second, components.Env{AppID: "front"}),
	})
	for _, d := range docs {
		if _, err := g.k.stage(context.Background(), d); err != nil {
			return nil, err
		}
		if err := g.k.commit(d.key); err != nil {
			return nil, err
		}
	}
	return g, g.k.start(context.Background(), Targets{PubSub: g.svc})
}

// publish publishes one event to topic of the broker called name.
func (g *pubsubRig) publish(name, topic string) error {
	return g.svc.Publish(context.Background(), name, &pubsub.Message{Topic: topic, Data: []byte("x")})
}

func (g *pubsubRig) status() Status {
	var st Status
	g.k.report(&st)
	return st
}

func (g *pubsubRig) failure(name string) string {
	for _, r := range g.status().Rejected {
		if r.Name == name {
			return r.Error
		}
	}
	return ""
}

// A pub/sub Component that does not build is refused at stage, naming the
// field, unless it sets ignoreErrors: then the sidecar starts without it,
// and its failure is listed.
func TestPubSubStage(t *testing.T) {
	bad := pubsubYAML("pubsub", "concurency", "4")
	if _, err := tryStartPubSubs(t, docOf("pubsub.yaml", bad)); err == nil || !strings.Contains(err.Error(), `"concurency"`) || !strings.Contains(err.Error(), "pubsub.yaml") {
		t.Errorf("a broker that does not build: %v; want its error", err)
	}
	ignored := []byte(strings.Replace(string(bad), "  version: v1\n", "  version: v1\n  ignoreErrors: true\n", 1))
	g := startPubSubs(t, docOf("pubsub.yaml", ignored), docOf("other.yaml", pubsubYAML("other")))
	if err := g.publish("pubsub", "orders"); !errors.Is(err, pubsub.ErrNotFound) {
		t.Errorf("the broker left out: %v", err)
	}
	if err := g.publish("other", "orders"); err != nil {
		t.Errorf("the other broker: %v", err)
	}
	if got := g.failure("pubsub"); !strings.Contains(got, "concurency") {
		t.Errorf("failure %q; want the broker's error", got)
	}
}

// Brokers come, change and go with their Components: each in force is
// listed with its source and version; a changed one replaces the one in
// force, with its topic access; a removed one is not found.
func TestPubSubApply(t *testing.T) {
	ctx := context.Background()
	g := startPubSubs(t, docOf("pubsub.yaml", pubsubYAML("pubsub")))
	if err := g.publish("pubsub", "orders"); err != nil {
		t.Fatalf("at start: %v", err)
	}
	st := g.status()
	if len(st.InUse) != 1 || st.InUse[0].Name != "pubsub" || st.InUse[0].Source != "pubsub.yaml" || !strings.HasPrefix(st.InUse[0].Version, "sha256:") {
		t.Errorf("in use %+v", st.InUse)
	}

	put(t, g.k, docOf("pubsub.yaml", pubsubYAML("pubsub", "allowedTopics", "audit")))
	put(t, g.k, docOf("more.yaml", pubsubYAML("more")))
	g.k.apply(ctx, false)
	if err := g.publish("pubsub", "orders"); !errors.Is(err, pubsub.ErrForbidden) {
		t.Errorf("after a change to allowedTopics: %v; want the topic forbidden", err)
	}
	if err := g.publish("more", "orders"); err != nil {
		t.Errorf("a new broker: %v", err)
	}

	g.k.remove("pubsub.yaml")
	g.k.apply(ctx, false)
	if err := g.publish("pubsub", "audit"); !errors.Is(err, pubsub.ErrNotFound) {
		t.Errorf("a removed broker: %v; want it not found", err)
	}
	if st := g.status(); len(st.InUse) != 1 || st.InUse[0].Name != "more" || len(st.Rejected) != 0 {
		t.Errorf("status %+v; want only more in use", st)
	}
}

// A broker whose Component did not change is not built again: its events
// stay.
func TestPubSubUnchangedStays(t *testing.T) {
	ctx := context.Background()
	g := startPubSubs(t, docOf("pubsub.yaml", pubsubYAML("pubsub")))
	if err := g.publish("pubsub", "orders"); err != nil {
		t.Fatal(err)
	}
	put(t, g.k, docOf("pubsub.yaml", pubsubYAML("pubsub"), []byte("# a comment\n")))
	g.k.apply(ctx, false)
	got := make(chan string, 1)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := g.svc.Subscribe(sctx, "pubsub", pubsub.Subscription{Topic: "orders"}, func(_ context.Context, d *pubsub.Delivery) error {
		got <- string(d.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d != "x" {
			t.Errorf("delivered %q", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the event published before the file changed is gone: the broker was built again")
	}
}

// typeOf is the type of the broker in force called name, "" when none.
func (g *pubsubRig) typeOf(name string) string {
	bc, err := g.svc.Get(name)
	if err != nil {
		return ""
	}
	return bc.Type
}

// A broker that builds but does not answer is not put in force: the one it
// would replace keeps serving. It is counted once, tried again on retry
// only, and put in force once its server answers.
func TestPubSubThatCannotConnectIsRetried(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	srv.Stop()
	g := startPubSubs(t, docOf("pubsub.yaml", pubsubYAML("pubsub")))
	put(t, g.k, docOf("pubsub.yaml", resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr, "dialTimeout", "200ms")))
	g.k.apply(ctx, false)
	if got := g.typeOf("pubsub"); got != "pubsub.in-memory" {
		t.Fatalf("in force: %q; want the in-memory broker it would replace", got)
	}
	if err := g.publish("pubsub", "orders"); err != nil {
		t.Errorf("the broker in force: %v", err)
	}
	if got := g.failure("pubsub"); !strings.Contains(got, "does not answer") || !strings.Contains(got, srv.Addr) {
		t.Errorf("failure %q; want it to say the broker does not answer, at its address", got)
	}
	g.k.apply(ctx, false) // another source changed: not tried again
	g.k.apply(ctx, true)  // a retry: tried again, failing the same way
	if n := testutil.ToFloat64(g.m.reloads.WithLabelValues(kindComponent, "rejected")); n != 1 {
		t.Errorf("counted %v rejections, want 1", n)
	}
	srv.Restart(t)
	g.k.apply(ctx, false)
	if g.typeOf("pubsub") != "pubsub.in-memory" {
		t.Errorf("tried again without a retry")
	}
	g.k.apply(ctx, true)
	if got := g.typeOf("pubsub"); got != "pubsub.redis" || g.failure("pubsub") != "" {
		t.Errorf("after a retry with its server up: %q, failure %q; want the redis broker in force", got, g.failure("pubsub"))
	}
	if err := g.publish("pubsub", "orders"); err != nil {
		t.Errorf("publishing to the redis broker: %v", err)
	}
}
