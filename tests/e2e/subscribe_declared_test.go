package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// declaredSubscription is a Subscription v2alpha1 of topic on pubsub
// "pubsub": events whose data.big holds go to /events/big, the others to
// /events/<topic>.
func declaredSubscription(name, topic, match string, scopes ...string) []byte {
	b := fmt.Appendf(nil, `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: %s
spec:
  pubsubname: pubsub
  topic: %s
  routes:
    rules:
      - match: %s
        path: /events/big
    default: /events/%s
`, name, topic, match, topic)
	if len(scopes) > 0 {
		b = fmt.Appendf(b, "scopes: [%s]\n", strings.Join(scopes, ", "))
	}
	return b
}

// A Subscription resource in the resources folder subscribes an app that
// has no subscriptions of its own: events are routed by its rules, the
// metadata lists it as DECLARATIVE, and one scoped to another app does not
// apply. A Subscription added while the sidecar runs starts delivering; one
// whose rule does not compile is refused, listed with the reason, and the
// others go on.
func TestSubscribeDeclarative(t *testing.T) {
	w := newWorld(t)
	port, _ := w.appBin("checkout-app", testappBin) // GET /dapr/subscribe: 404
	s, dir := w.pubsubSidecarApp("checkout", port, map[string][]byte{
		"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.in-memory"),
		"orders.yaml": declaredSubscription("orders", "orders", "event.data.big == true", "checkout"),
		"other.yaml":  declaredSubscription("other", "audit", "event.data.big == true", "another-app"),
	})
	waitMetadata(t, s, `"type":"DECLARATIVE"`)
	publishOK(t, s, "orders", `{"n":1,"big":true}`)
	publishOK(t, s, "orders", `{"n":2,"big":false}`)
	publishOK(t, s, "audit", `{"n":3,"big":false}`) // no subscription of this app
	got := waitDeliveries(t, port, "two events", func(d []delivered) bool { return len(d) >= 2 })
	paths := map[string]string{}
	for _, d := range got {
		paths[d.Path] = string(d.Event.Data)
	}
	if len(got) != 2 || !strings.Contains(paths["/events/big"], `"n":1`) || !strings.Contains(paths["/events/orders"], `"n":2`) {
		t.Errorf("deliveries %+v; want n 1 on /events/big, n 2 on /events/orders", got)
	}
	_, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	var md struct {
		Subscriptions []map[string]any `json:"subscriptions"`
	}
	if err := json.Unmarshal(b, &md); err != nil {
		t.Fatal(err)
	}
	if len(md.Subscriptions) != 1 {
		t.Fatalf("metadata subscriptions: %s", b)
	}
	sub, _ := json.Marshal(md.Subscriptions[0])
	if want := `{"deadLetterTopic":"","pubsubname":"pubsub","rules":[{"match":"event.data.big == true","path":"/events/big"},{"path":"/events/orders"}],"topic":"orders","type":"DECLARATIVE"}`; string(sub) != want {
		t.Errorf("metadata subscription %s; want %s", sub, want)
	}
	if st := resourcesOf(t, s.url); st.version("Subscription", "orders") == "" || st.version("Subscription", "other") != "" {
		t.Errorf("resources in use %+v; want Subscription orders, not other", st.InUse)
	}

	// Hot reload: a new Subscription starts delivering.
	saveFile(t, filepath.Join(dir, "payments.yaml"), declaredSubscription("payments", "payments", "event.data.big == true"))
	waitMetadata(t, s, `"topic":"payments"`)
	publishOK(t, s, "payments", `{"n":4,"big":false}`)
	waitDeliveries(t, port, "the event of the new subscription", func(d []delivered) bool {
		return len(d) >= 3 && d[2].Path == "/events/payments"
	})

	// A rule that does not compile: the file is refused, the rest goes on.
	saveFile(t, filepath.Join(dir, "broken.yaml"), declaredSubscription("broken", "refunds", "event.data.big =="))
	waitFor(t, "the refusal", func() bool { return resourcesOf(t, s.url).rejection("broken") != "" })
	if msg := resourcesOf(t, s.url).rejection("broken"); !strings.Contains(msg, `subscription "broken": rule 0: match "event.data.big ==" does not compile`) {
		t.Errorf("rejection %q; want it to name the subscription and its rule", msg)
	}
	publishOK(t, s, "orders", `{"n":5,"big":false}`)
	waitDeliveries(t, port, "an event after the refusal", func(d []delivered) bool {
		return len(d) >= 4 && d[3].Path == "/events/orders"
	})
	_, b = do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	if strings.Contains(string(b), `"topic":"refunds"`) {
		t.Errorf("the refused subscription is listed: %s", b)
	}
}
