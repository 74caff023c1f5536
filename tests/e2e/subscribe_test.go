package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// subscribingApp starts a testapp whose GET /dapr/subscribe subscribes it
// to topic of pubsub "pubsub", delivered to /events/<topic>.
func (w *world) subscribingApp(name, topic string) int {
	w.t.Helper()
	subs := fmt.Sprintf(`[{"pubsubname":"pubsub","topic":%q,"route":"/events/%s"}]`, topic, topic)
	port, _ := w.appBin(name, testappBin, "SUBSCRIBE="+subs)
	return port
}

// delivered is a delivery the testapp recorded, its event decoded.
type delivered struct {
	Path        string
	ContentType string
	Event       struct {
		ID              string          `json:"id"`
		Source          string          `json:"source"`
		Topic           string          `json:"topic"`
		PubsubName      string          `json:"pubsubname"`
		DataContentType string          `json:"datacontenttype"`
		Data            json.RawMessage `json:"data"`
	}
}

// deliveries returns what the testapp on port was delivered so far.
func deliveries(t *testing.T, port int) []delivered {
	t.Helper()
	resp, b := do(t, "GET", "http://127.0.0.1:"+itoa(port)+"/deliveries", nil, nil)
	var out []delivered
	if err := json.Unmarshal(b, &out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /deliveries: %d %s (%v)", resp.StatusCode, b, err)
	}
	return out
}

// waitDeliveries waits until done holds for the deliveries of the testapp
// on port, and returns them.
func waitDeliveries(t *testing.T, port int, what string, done func([]delivered) bool) []delivered {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := deliveries(t, port)
		if done(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; delivered %d events", what, len(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// publishOK publishes data (JSON) to topic of pubsub "pubsub" through s and
// requires the 204.
func publishOK(t *testing.T, s *sidecar, topic, data string) {
	t.Helper()
	resp, b := do(t, "POST", s.url+"/v1.0/publish/pubsub/"+topic, strings.NewReader(data), http.Header{"Content-Type": {"application/json"}})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("publish %s: %d %s", data, resp.StatusCode, b)
	}
}

// An app subscribed through GET /dapr/subscribe gets what it publishes
// through its own sidecar (pubsub.in-memory), as a CloudEvent on its route
// with its data intact; the metadata APIs list the subscription as
// PROGRAMMATIC.
func TestSubscribeInMemory(t *testing.T) {
	w := newWorld(t)
	port := w.subscribingApp("checkout-app", "orders")
	s, _ := w.pubsubSidecarApp("checkout", port, map[string][]byte{
		"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.in-memory"),
	})
	// The subscription is read once the app answers; until then a publish
	// would find no subscriber, and pubsub.in-memory keeps nothing.
	waitMetadata(t, s, `"topic":"orders"`)
	const data = `{"orderId":1,"note":"ünï \"quoted\""}`
	publishOK(t, s, "orders", data)
	got := waitDeliveries(t, port, "the event", func(d []delivered) bool { return len(d) >= 1 })
	d := got[0]
	if d.Path != "/events/orders" || d.ContentType != "application/cloudevents+json" {
		t.Errorf("delivered to %s as %s; want /events/orders as application/cloudevents+json", d.Path, d.ContentType)
	}
	// The envelope holds data as JSON, as daprd's does: the same value,
	// its keys in an order of its own.
	var sent, came any
	_ = json.Unmarshal([]byte(data), &sent)
	_ = json.Unmarshal(d.Event.Data, &came)
	if !reflect.DeepEqual(sent, came) || d.Event.Topic != "orders" || d.Event.PubsubName != "pubsub" || d.Event.Source != "checkout" || d.Event.DataContentType != "application/json" {
		t.Errorf("event %+v; want data %s from checkout on pubsub/orders", d.Event, data)
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
	if want := `{"deadLetterTopic":"","pubsubname":"pubsub","rules":[{"path":"/events/orders"}],"topic":"orders","type":"PROGRAMMATIC"}`; string(sub) != want {
		t.Errorf("metadata subscription %s; want %s", sub, want)
	}
	gm, err := runtimev1pb.NewDaprClient(grpcConn(t, s)).GetMetadata(ctxT(t), &runtimev1pb.GetMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if subs := gm.GetSubscriptions(); len(subs) != 1 || subs[0].GetType() != runtimev1pb.PubsubSubscriptionType_PROGRAMMATIC ||
		subs[0].GetTopic() != "orders" || len(subs[0].GetRules().GetRules()) != 1 || subs[0].GetRules().GetRules()[0].GetPath() != "/events/orders" {
		t.Errorf("gRPC metadata subscriptions: %v", subs)
	}
}

// waitMetadata waits until s's metadata has want.
func waitMetadata(t *testing.T, s *sidecar, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metadata never had %s: %s", want, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// byN counts the deliveries of each event by its data's n.
func byN(t *testing.T, ds []delivered) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, d := range ds {
		var data struct {
			N json.RawMessage `json:"n"`
		}
		if err := json.Unmarshal(d.Event.Data, &data); err != nil {
			t.Fatalf("delivered data %s: %v", d.Event.Data, err)
		}
		out[string(data.N)]++
	}
	return out
}

// pubsub.redis on a real Redis, a publishing sidecar and a subscribing
// app's: every event acknowledged to the publisher reaches the subscriber
// at least once; one the app answers RETRY is delivered again and then
// taken, one it answers DROP is not delivered again.
func TestSubscribeRedis(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	files := map[string][]byte{"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr)}
	pub, _ := w.pubsubSidecar("shop", files)
	port := w.subscribingApp("shipping-app", "orders")
	sub, _ := w.pubsubSidecarApp("shipping", port, files)
	waitMetadata(t, sub, `"type":"PROGRAMMATIC"`)

	const n = 20
	publishOK(t, pub, "orders", `{"n":"drop","answer":"DROP"}`)
	publishOK(t, pub, "orders", `{"n":"retry","answer":"RETRY_ONCE"}`)
	for i := range n {
		publishOK(t, pub, "orders", fmt.Sprintf(`{"n":%d}`, i))
	}
	got := waitDeliveries(t, port, "every event, and the RETRY one again", func(d []delivered) bool {
		c := byN(t, d)
		for i := range n {
			if c[itoa(i)] == 0 {
				return false
			}
		}
		return c[`"retry"`] >= 2
	})
	// The event answered RETRY was delivered again after the events
	// published after it: the DROP one, published before it, had its
	// chance to come again by then.
	c := byN(t, got)
	if c[`"drop"`] != 1 {
		t.Errorf("the event answered DROP was delivered %d times; want 1", c[`"drop"`])
	}
	for k, v := range c {
		if v > 1 && k != `"retry"` {
			t.Logf("event %s delivered %d times", k, v)
		}
	}
}

// A subscribing sidecar killed with SIGKILL while events come, and started
// again: every event the publisher had acknowledged is delivered at least
// once (those the killed one had read and not acknowledged, once the
// broker's processingTimeout hands them to the new one).
func TestSubscribeRedisSidecarKilled(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	files := map[string][]byte{"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr,
		"processingTimeout", "1s", "redeliverInterval", "200ms")}
	pub, _ := w.pubsubSidecar("shop", files)
	port := w.subscribingApp("shipping-app", "orders")
	sub, _ := w.pubsubSidecarApp("shipping", port, files)
	waitMetadata(t, sub, `"type":"PROGRAMMATIC"`)

	// The app holds the first delivery of event 10 unanswered: the killed
	// sidecar has it in flight, not acknowledged.
	const n = 60
	for i := range n / 2 {
		data := fmt.Sprintf(`{"n":%d}`, i)
		if i == 10 {
			data = `{"n":10,"answer":"HOLD_ONCE"}`
		}
		publishOK(t, pub, "orders", data)
	}
	waitDeliveries(t, port, "event 10, held", func(d []delivered) bool { return byN(t, d)["10"] == 1 })
	_ = sub.Stop(syscall.SIGKILL, 10*time.Second)
	for i := n / 2; i < n; i++ {
		publishOK(t, pub, "orders", fmt.Sprintf(`{"n":%d}`, i))
	}
	w.pubsubSidecarApp("shipping", port, files)
	got := waitDeliveries(t, port, "every acknowledged event, and event 10 again", func(d []delivered) bool {
		c := byN(t, d)
		for i := range n {
			if c[itoa(i)] == 0 {
				return false
			}
		}
		return c["10"] >= 2
	})
	dups := 0
	for k, v := range byN(t, got) {
		if v > 1 {
			dups++
			t.Logf("event %s delivered %d times", k, v)
		}
	}
	t.Logf("%d deliveries of %d events; %d events delivered more than once", len(got), n, dups)
}
