package subscribe

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
)

// TestParseHTTP: the app's answer to GET /dapr/subscribe in daprd's v1
// and v2 shapes; an answer of another shape, or with a rule that does not
// compile, is refused whole, naming what is wrong; an entry daprd would
// not run either is left out, named.
func TestParseHTTP(t *testing.T) {
	for _, c := range []struct {
		name    string
		body    string
		want    []Subscription
		skipped []string // what each skipped entry's error says
		err     string
	}{
		{name: "empty", body: ""},
		{name: "null", body: "null"},
		{name: "no subscriptions", body: "[]"},
		{
			name: "v1",
			body: `[{"pubsubname":"pubsub","topic":"orders","route":"/orders"},{"pubsubname":"pubsub","topic":"pay","route":"pay","metadata":{"rawPayload":"true"}}]`,
			want: []Subscription{
				{PubsubName: "pubsub", Topic: "orders", Rules: []Rule{{Path: "/orders"}}, Type: Programmatic},
				{PubsubName: "pubsub", Topic: "pay", Rules: []Rule{{Path: "pay"}}, Metadata: map[string]string{"rawPayload": "true"}, Type: Programmatic},
			},
		},
		{
			name: "v2",
			body: `[{"pubsubname":"pubsub","topic":"orders","routes":{"rules":[{"match":"event.type == \"big\"","path":"/big"},{"match":"event.type == \"small\"","path":"/small"}],"default":"/orders"},"deadLetterTopic":"dead","metadata":{"k":"v"},"extra":"ignored"}]`,
			want: []Subscription{{PubsubName: "pubsub", Topic: "orders", DeadLetterTopic: "dead", Metadata: map[string]string{"k": "v"}, Type: Programmatic,
				Rules: []Rule{{Match: `event.type == "big"`, Path: "/big"}, {Match: `event.type == "small"`, Path: "/small"}, {Path: "/orders"}}}},
		},
		{
			name: "rules without default fall back to route",
			body: `[{"pubsubname":"pubsub","topic":"orders","route":"/all","routes":{"rules":[{"match":"event.type == \"a\"","path":"/a"}]}}]`,
			want: []Subscription{{PubsubName: "pubsub", Topic: "orders", Type: Programmatic, Rules: []Rule{{Match: `event.type == "a"`, Path: "/a"}, {Path: "/all"}}}},
		},
		{
			name: "default wins over route",
			body: `[{"pubsubname":"pubsub","topic":"orders","route":"/all","routes":{"default":"/def"}}]`,
			want: []Subscription{{PubsubName: "pubsub", Topic: "orders", Type: Programmatic, Rules: []Rule{{Path: "/def"}}}},
		},
		{
			name:    "entries left out, the others kept",
			body:    `[{"pubsubname":"pubsub","topic":"noroute"},{"pubsubname":"","topic":"t","route":"/t"},{"pubsubname":"pubsub","topic":"","route":"/t"},{"pubsubname":"pubsub","topic":"ok","route":"/ok"},{"pubsubname":"pubsub","topic":"ok","route":"/again"},{"pubsubname":"pubsub","topic":"bulk","route":"/b","bulkSubscribe":{"enabled":true,"maxMessagesCount":-1}},{"pubsubname":"pubsub","topic":"raw","route":"/r","metadata":{"rawPayload":"yes"}},{"pubsubname":"pubsub","topic":"self","route":"/s","deadLetterTopic":"self"}]`,
			want:    []Subscription{{PubsubName: "pubsub", Topic: "ok", Type: Programmatic, Rules: []Rule{{Path: "/ok"}}}},
			skipped: []string{"entry 0 is left out: subscription to topic \"noroute\" of pubsub \"pubsub\": it has no route", "entry 1 is left out: subscription to topic \"t\" of pubsub \"\": pubsubname is empty", "entry 2 is left out: subscription to topic \"\" of pubsub \"pubsub\": the topic is empty: bad topic name", "entry 4 is left out: entry 3 is a subscription to topic \"ok\" of pubsub \"pubsub\" already", "entry 5 is left out: subscription to topic \"bulk\" of pubsub \"pubsub\": bulkSubscribe.maxMessagesCount -1: want a count from 1, or 0 for 100", "entry 6 is left out: subscription to topic \"raw\" of pubsub \"pubsub\": metadata rawPayload \"yes\": want true or false: bad pubsub metadata", "entry 7 is left out: subscription to topic \"self\" of pubsub \"pubsub\": deadLetterTopic is the topic itself"},
		},
		{
			name: "bulkSubscribe, daprd's fields",
			body: `[{"pubsubname":"pubsub","topic":"a","route":"/a","bulkSubscribe":{"enabled":true,"maxMessagesCount":5,"maxAwaitDurationMs":40}},{"pubsubname":"pubsub","topic":"b","route":"/b","bulkSubscribe":{"enabled":true}}]`,
			want: []Subscription{
				{PubsubName: "pubsub", Topic: "a", Type: Programmatic, Rules: []Rule{{Path: "/a"}}, BulkSubscribe: BulkSubscribe{Enabled: true, MaxMessagesCount: 5, MaxAwaitDurationMs: 40}},
				{PubsubName: "pubsub", Topic: "b", Type: Programmatic, Rules: []Rule{{Path: "/b"}}, BulkSubscribe: BulkSubscribe{Enabled: true}},
			},
		},
		{name: "an object", body: `{"pubsubname":"pubsub","topic":"orders","route":"/orders"}`, err: "the answer is not a JSON array of subscriptions"},
		{name: "not JSON", body: `<html>`, err: "the answer is not a JSON array of subscriptions"},
		{name: "trailing garbage", body: `[] x`, err: "the answer has more after its JSON array"},
		{name: "an entry not an object", body: `[{"pubsubname":"pubsub","topic":"a","route":"/a"}, "orders"]`, err: "entry 1: json: cannot unmarshal string"},
		{name: "topic a number", body: `[{"pubsubname":"pubsub","topic":7,"route":"/a"}]`, err: "entry 0: topic: a JSON number where a string is wanted"},
		{name: "metadata value not a string", body: `[{"pubsubname":"pubsub","topic":"a","route":"/a","metadata":{"rawPayload":true}}]`, err: "entry 0: metadata: a JSON bool where a string is wanted"},
		{name: "rules not an array", body: `[{"pubsubname":"pubsub","topic":"a","routes":{"rules":{"match":"x"}}}]`, err: "entry 0: routes.rules: a JSON object where an array is wanted"},
		{
			name: "a rule that does not compile refuses the whole answer",
			body: `[{"pubsubname":"pubsub","topic":"ok","route":"/ok"},{"pubsubname":"pubsub","topic":"orders","routes":{"rules":[{"match":"event.type ==","path":"/x"}],"default":"/d"}}]`,
			err:  `entry 1 (subscription to topic "orders" of pubsub "pubsub"): rule 0: match "event.type ==" does not compile`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			subs, skipped, err := ParseHTTP([]byte(c.body))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(subs, c.want) {
				t.Errorf("subscriptions\n%+v\nwant\n%+v", subs, c.want)
			}
			if got := fmt.Sprint(skipped); got != fmt.Sprint(c.skipped) {
				t.Errorf("skipped\n%q\nwant\n%q", skipped, c.skipped)
			}
		})
	}
}

// TestParseGRPC: ListTopicSubscriptions' answer, as daprd reads it: rules,
// then the default; no routes at all is one route, "".
func TestParseGRPC(t *testing.T) {
	resp := &runtimev1pb.ListTopicSubscriptionsResponse{Subscriptions: []*runtimev1pb.TopicSubscription{
		{PubsubName: "pubsub", Topic: "orders"},
		{PubsubName: "pubsub", Topic: "pay", DeadLetterTopic: "dead", Metadata: map[string]string{"rawPayload": "true"},
			Routes: &runtimev1pb.TopicRoutes{Rules: []*runtimev1pb.TopicRule{{Match: `event.type == "a"`, Path: "a"}}, Default: "d"}},
		{PubsubName: "pubsub", Topic: "rules", Routes: &runtimev1pb.TopicRoutes{Rules: []*runtimev1pb.TopicRule{{Match: `event.type == "a"`, Path: "a"}}}},
		{PubsubName: "pubsub", Topic: "bulk", BulkSubscribe: &runtimev1pb.BulkSubscribeConfig{Enabled: true, MaxMessagesCount: 7, MaxAwaitDurationMs: 30}},
		{PubsubName: "pubsub", Topic: "badbulk", BulkSubscribe: &runtimev1pb.BulkSubscribeConfig{Enabled: true, MaxAwaitDurationMs: -1}},
	}}
	subs, skipped, err := ParseGRPC(resp)
	if err != nil {
		t.Fatal(err)
	}
	want := []Subscription{
		{PubsubName: "pubsub", Topic: "orders", Rules: []Rule{{}}, Type: Programmatic},
		{PubsubName: "pubsub", Topic: "pay", DeadLetterTopic: "dead", Metadata: map[string]string{"rawPayload": "true"}, Type: Programmatic,
			Rules: []Rule{{Match: `event.type == "a"`, Path: "a"}, {Path: "d"}}},
		{PubsubName: "pubsub", Topic: "rules", Type: Programmatic, Rules: []Rule{{Match: `event.type == "a"`, Path: "a"}}},
		{PubsubName: "pubsub", Topic: "bulk", Type: Programmatic, Rules: []Rule{{}}, BulkSubscribe: BulkSubscribe{Enabled: true, MaxMessagesCount: 7, MaxAwaitDurationMs: 30}},
	}
	if !reflect.DeepEqual(subs, want) {
		t.Errorf("subscriptions\n%+v\nwant\n%+v", subs, want)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0].Error(), "bulkSubscribe.maxAwaitDurationMs -1: want milliseconds from 1") {
		t.Errorf("skipped %v", skipped)
	}
	resp.Subscriptions[1].Routes.Rules[0].Match = "event.type =="
	if _, _, err := ParseGRPC(resp); err == nil || !strings.Contains(err.Error(), `entry 1 (subscription to topic "pay" of pubsub "pubsub"): rule 0: match "event.type ==" does not compile`) {
		t.Errorf("a rule that does not compile: %v", err)
	}
}
