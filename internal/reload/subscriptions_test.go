package reload

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/subscribe"
)

// subscriptionYAML is a Subscription v2alpha1 of topic on pubsub "pubsub",
// delivered to route.
func subscriptionYAML(name, topic, route string, scopes ...string) []byte {
	b := fmt.Appendf(nil, `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: %s
spec:
  pubsubname: pubsub
  topic: %s
  routes:
    rules:
      - match: event.type == "big"
        path: /big
    default: %s
`, name, topic, route)
	if len(scopes) > 0 {
		b = fmt.Appendf(b, "scopes: [%s]\n", strings.Join(scopes, ", "))
	}
	return b
}

// A new version of a source is staged against the Subscriptions in force
// of the other sources: two of this app's to the same pubsub and topic are
// refused; a rule that does not compile is refused naming the file.
func TestSubscriptionStage(t *testing.T) {
	inForce := docOf("a.yaml", subscriptionYAML("a", "orders", "/orders"))
	cases := []struct {
		name string
		d    doc
		want string // in the error; "": taken
		n    int
	}{
		{"another topic", docOf("b.yaml", subscriptionYAML("b", "audit", "/audit")), "", 1},
		{"a topic in force", docOf("b.yaml", subscriptionYAML("b", "orders", "/o")), `b.yaml: subscriptions "a" and "b" are both a subscription to topic "orders" of pubsub "pubsub"`, 0},
		{"a topic twice in one source", docOf("b.yaml", subscriptionYAML("b", "audit", "/a"), subscriptionYAML("c", "audit", "/b")), `"b" and "c"`, 0},
		{"a topic in force, scoped to another app", docOf("b.yaml", subscriptionYAML("b", "orders", "/o", "back")), "", 1},
		{"the topic of the source's version in force", docOf("a.yaml", subscriptionYAML("a", "orders", "/new")), "", 1},
		{"a rule that does not compile", docOf("b.yaml", []byte(strings.Replace(string(subscriptionYAML("b", "audit", "/a")), `event.type == "big"`, `event.type ==`, 1))),
			`b.yaml: subscription "b": rule 0: match "event.type ==" does not compile`, 0},
		{"no Subscription", docOf("b.yaml", memoryYAML("cache")), "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newSubscriptionKind("front", slog.New(slog.DiscardHandler))
			put(t, k, inForce)
			n, err := k.stage(context.Background(), tc.d)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v; want one naming %q", err, tc.want)
			case n != tc.n:
				t.Errorf("n = %d, want %d", n, tc.n)
			}
		})
	}
}

// declarer records what it is given.
type declarer struct{ sets [][]subscribe.Subscription }

func (d *declarer) SetDeclared(s []subscribe.Subscription) error {
	d.sets = append(d.sets, s)
	return nil
}

// routes is the default route of each subscription of the last set.
func (d *declarer) routes() string {
	if len(d.sets) == 0 {
		return "(none set)"
	}
	var out []string
	for _, s := range d.sets[len(d.sets)-1] {
		out = append(out, s.Rules[len(s.Rules)-1].Path)
	}
	return strings.Join(out, " ")
}

// The subscriptions in force that apply to the app are on the subscriber
// after apply, and set again only when they changed; a staged or dropped
// version changes nothing; a removed source's go. Status lists the
// resources of this app.
func TestSubscriptionApply(t *testing.T) {
	ctx := context.Background()
	k := newSubscriptionKind("front", slog.New(slog.DiscardHandler))
	put(t, k, docOf("a.yaml", subscriptionYAML("a", "orders", "/orders")))
	put(t, k, docOf("b.yaml", subscriptionYAML("b", "audit", "/audit", "back")))
	d := &declarer{}
	if err := k.start(ctx, Targets{Subscriptions: d}); err != nil {
		t.Fatal(err)
	}
	if got := d.routes(); got != "/orders" {
		t.Fatalf("at start: %q, want /orders (b is scoped to another app)", got)
	}
	var st Status
	k.report(&st)
	if len(st.InUse) != 1 || st.InUse[0].Name != "a" || st.InUse[0].Kind != "Subscription" || st.InUse[0].Source != "a.yaml" {
		t.Errorf("in use %+v; want a only", st.InUse)
	}
	k.apply(ctx, false)
	if len(d.sets) != 1 {
		t.Errorf("nothing changed, yet set %d times", len(d.sets))
	}
	if _, err := k.stage(ctx, docOf("a.yaml", subscriptionYAML("a", "orders", "/v2"))); err != nil {
		t.Fatal(err)
	}
	k.apply(ctx, false)
	k.drop("a.yaml")
	k.apply(ctx, false)
	if got := d.routes(); got != "/orders" || len(d.sets) != 1 {
		t.Errorf("a staged, then dropped, version: %q after %d sets", got, len(d.sets))
	}
	put(t, k, docOf("a.yaml", subscriptionYAML("a", "orders", "/v2")))
	put(t, k, docOf("c.yaml", subscriptionYAML("c", "audit", "/audit")))
	k.apply(ctx, true)
	if len(d.sets) != 1 {
		t.Errorf("a retry applied a new version: it has nothing to retry")
	}
	k.apply(ctx, false)
	if got := d.routes(); got != "/v2 /audit" {
		t.Errorf("committed versions: %q, want /v2 /audit", got)
	}
	k.remove("a.yaml")
	k.apply(ctx, false)
	if got := d.routes(); got != "/audit" {
		t.Errorf("a removed source: %q, want /audit", got)
	}
}

// Without an app there is nothing to deliver to: the resources are read,
// and apply does nothing.
func TestSubscriptionNoApp(t *testing.T) {
	ctx := context.Background()
	k := newSubscriptionKind("front", slog.New(slog.DiscardHandler))
	put(t, k, docOf("a.yaml", subscriptionYAML("a", "orders", "/orders")))
	if err := k.start(ctx, Targets{}); err != nil {
		t.Fatal(err)
	}
	put(t, k, docOf("b.yaml", subscriptionYAML("b", "audit", "/audit")))
	k.apply(ctx, false)
}
