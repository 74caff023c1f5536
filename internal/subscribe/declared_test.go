package subscribe

import (
	"reflect"
	"strings"
	"testing"
)

// The examples of Dapr's docs (declarative subscriptions, message routing).
const (
	docsV2 = `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: myevent-subscription
spec:
  pubsubname: pubsub
  topic: inventory
  routes:
    rules:
      - match: event.type == "widget"
        path: /widgets
      - match: event.type == "gadget"
        path: /gadgets
    default: /products
scopes:
  - app1
  - app2
`
	docsV1 = `apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: order-pub-sub
spec:
  topic: orders
  route: /checkout
  pubsubname: order-pub-sub
scopes:
- orderprocessing
- checkout
`
)

func TestParseResources(t *testing.T) {
	tests := []struct {
		name, yaml, appID string
		want              []Declared // those that apply to appID
		err               string     // a part of the error; "": none
	}{
		{name: "v2alpha1 of the docs", yaml: docsV2, appID: "app1", want: []Declared{{Name: "myevent-subscription", Scopes: []string{"app1", "app2"}, Subscription: Subscription{
			PubsubName: "pubsub", Topic: "inventory", Type: Declarative,
			Rules: []Rule{{Match: `event.type == "widget"`, Path: "/widgets"}, {Match: `event.type == "gadget"`, Path: "/gadgets"}, {Path: "/products"}},
		}}}},
		{name: "v1alpha1 of the docs", yaml: docsV1, appID: "checkout", want: []Declared{{Name: "order-pub-sub", Scopes: []string{"orderprocessing", "checkout"}, Subscription: Subscription{
			PubsubName: "order-pub-sub", Topic: "orders", Type: Declarative, Rules: []Rule{{Path: "/checkout"}},
		}}}},
		{name: "scoped to other apps", yaml: docsV2, appID: "app3"},
		{name: "no scopes: every app", appID: "any", yaml: `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: s, namespace: prod}
spec:
  pubsubname: pubsub
  topic: t
  routes: {default: /t}
  deadLetterTopic: poison
  metadata: {rawPayload: "true"}
  bulkSubscribe: {enabled: false}
`, want: []Declared{{Name: "s", Namespace: "prod", Subscription: Subscription{
			PubsubName: "pubsub", Topic: "t", Type: Declarative, Rules: []Rule{{Path: "/t"}},
			DeadLetterTopic: "poison", Metadata: map[string]string{"rawPayload": "true"},
		}}}},
		{name: "other kinds are left", appID: "a", yaml: "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: c}\nspec: {type: pubsub.in-memory, version: v1}\n"},
		{name: "unknown field in spec", appID: "a", yaml: strings.Replace(docsV1, "  route:", "  routes: x\n  route:", 1),
			err: `subs.yaml: subscription "order-pub-sub": yaml: unmarshal errors:
  line 7: field routes not found`},
		{name: "v2 field in v1", appID: "a", yaml: strings.Replace(docsV1, "  route:", "  deadletter: x\n  route:", 1), err: "field deadletter not found"},
		{name: "unknown top-level field", appID: "a", yaml: docsV1 + "scope: [a]\n", err: "field scope not found"},
		{name: "rule that does not compile", appID: "app1", yaml: strings.Replace(docsV2, `event.type == "gadget"`, `event.type ==`, 1),
			err: `subs.yaml: subscription "myevent-subscription": rule 1: match "event.type ==" does not compile`},
		{name: "a rule refused even when scoped to other apps", appID: "app3", yaml: strings.Replace(docsV2, `event.type == "gadget"`, `event.type ==`, 1),
			err: "rule 1"},
		{name: "unknown apiVersion", appID: "a", yaml: strings.Replace(docsV1, "v1alpha1", "v1", 1),
			err: `subs.yaml: subscription "order-pub-sub": apiVersion "dapr.io/v1" is not supported; use dapr.io/v2alpha1 or dapr.io/v1alpha1`},
		{name: "no route", appID: "a", yaml: strings.Replace(docsV1, "  route: /checkout\n", "", 1), err: "it has no route"},
		{name: "no name", appID: "a", yaml: strings.Replace(docsV1, "name: order-pub-sub", "labels: {}", 1), err: "subs.yaml: document 1: subscription without metadata.name"},
		{name: "bulk v1alpha1", appID: "checkout", yaml: strings.Replace(docsV1, "  pubsubname:", "  bulkSubscribe: {enabled: true, maxMessagesCount: 50, maxAwaitDurationMs: 20}\n  pubsubname:", 1),
			want: []Declared{{Name: "order-pub-sub", Scopes: []string{"orderprocessing", "checkout"}, Subscription: Subscription{
				PubsubName: "order-pub-sub", Topic: "orders", Type: Declarative, Rules: []Rule{{Path: "/checkout"}},
				BulkSubscribe: BulkSubscribe{Enabled: true, MaxMessagesCount: 50, MaxAwaitDurationMs: 20},
			}}}},
		{name: "bulk v2alpha1", appID: "app1", yaml: strings.Replace(docsV2, "  pubsubname:", "  bulkSubscribe: {enabled: true}\n  pubsubname:", 1),
			want: []Declared{{Name: "myevent-subscription", Scopes: []string{"app1", "app2"}, Subscription: Subscription{
				PubsubName: "pubsub", Topic: "inventory", Type: Declarative, BulkSubscribe: BulkSubscribe{Enabled: true},
				Rules: []Rule{{Match: `event.type == "widget"`, Path: "/widgets"}, {Match: `event.type == "gadget"`, Path: "/gadgets"}, {Path: "/products"}},
			}}}},
		{name: "bulk with a negative count", appID: "a", yaml: strings.Replace(docsV1, "  pubsubname:", "  bulkSubscribe: {enabled: true, maxMessagesCount: -5}\n  pubsubname:", 1),
			err: `subs.yaml: subscription "order-pub-sub": subscription to topic "orders" of pubsub "order-pub-sub": bulkSubscribe.maxMessagesCount -5: want a count from 1, or 0 for 100`},
		{name: "bulk a string", appID: "a", yaml: strings.Replace(docsV1, "  pubsubname:", "  bulkSubscribe: {enabled: true, maxAwaitDurationMs: soon}\n  pubsubname:", 1),
			err: "cannot unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			all, err := ParseResources([]byte(tc.yaml), "subs.yaml")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []Declared
			for _, d := range all {
				if d.AppliesTo(tc.appID) {
					got = append(got, d)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
