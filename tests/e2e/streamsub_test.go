package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"
	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// Streaming subscriptions through a real sidecar with no app port, on a
// real Redis, with the Go SDK's Subscribe: every event published arrives
// and is acknowledged on the app's answer; a stream closed with events
// it was sent and did not answer leaves them pending, and the next
// stream to the topic gets them at once (well before processingTimeout);
// the metadata API lists the stream; a second stream to its topic is
// refused.
func TestStreamingSubscriptionRedis(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	s, _ := w.pubsubSidecar("streamer", map[string][]byte{
		"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr, "processingTimeout", "60s", "redeliverInterval", "60s"),
	})
	c := sdkClient(t, s)
	publish := func(topic string, n0, n int) {
		t.Helper()
		for i := n0; i < n0+n; i++ {
			resp, b := do(t, "POST", s.url+"/v1.0/publish/pubsub/"+topic, strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)),
				http.Header{"Content-Type": {"application/json"}})
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("publish %d: %d %s", i, resp.StatusCode, b)
			}
		}
	}

	var mu sync.Mutex
	got := map[string]int{}
	all := make(chan struct{})
	const n = 50
	stop, err := c.SubscribeWithHandler(context.Background(), dapr.SubscriptionOptions{PubsubName: "pubsub", Topic: "orders"},
		func(ev *common.TopicEvent) common.SubscriptionResponseStatus {
			mu.Lock()
			defer mu.Unlock()
			got[string(ev.RawData)]++
			if got[string(ev.RawData)] == 1 && string(ev.RawData) == `{"n":7}` {
				return common.SubscriptionResponseStatusRetry // sent again
			}
			if len(got) == n && got[`{"n":7}`] == 2 {
				select {
				case <-all:
				default:
					close(all)
				}
			}
			return common.SubscriptionResponseStatusSuccess
		})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	publish("orders", 0, n)
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		mu.Lock()
		t.Fatalf("%d of %d events arrived on the stream", len(got), n)
	}
	mu.Lock()
	if got[`{"n":7}`] != 2 {
		t.Errorf("the event answered RETRY arrived %d times, want 2", got[`{"n":7}`])
	}
	mu.Unlock()

	// The metadata API lists it; a second stream to the topic is refused.
	_, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	var md struct {
		Subscriptions []struct{ PubsubName, Topic, Type string }
	}
	if err := json.Unmarshal(b, &md); err != nil || len(md.Subscriptions) != 1 || md.Subscriptions[0].Topic != "orders" || md.Subscriptions[0].Type != "STREAMING" {
		t.Errorf("metadata subscriptions %s", b)
	}
	if _, err := c.Subscribe(ctxT(t), dapr.SubscriptionOptions{PubsubName: "pubsub", Topic: "orders"}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("a second stream to the topic: %v, want AlreadyExists", err)
	}
	if _, err := c.Subscribe(ctxT(t), dapr.SubscriptionOptions{PubsubName: "nope", Topic: "orders"}); status.Code(err) != codes.InvalidArgument || !strings.Contains(fmt.Sprint(err), "nope") {
		t.Errorf("a stream to an unknown pubsub: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A stream that holds events unanswered and ends: they go to the next
	// stream at once, not after processingTimeout (60 s).
	gc := runtimev1pb.NewDaprClient(grpcConn(t, s))
	subscribe := func() runtimev1pb.Dapr_SubscribeTopicEventsAlpha1Client {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			st, err := gc.SubscribeTopicEventsAlpha1(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&runtimev1pb.SubscribeTopicEventsRequestAlpha1{SubscribeTopicEventsRequestType: &runtimev1pb.SubscribeTopicEventsRequestAlpha1_InitialRequest{
				InitialRequest: &runtimev1pb.SubscribeTopicEventsRequestInitialAlpha1{PubsubName: "pubsub", Topic: "held"}}}); err != nil {
				t.Fatal(err)
			}
			first, err := st.Recv()
			if err == nil && first.GetInitialResponse() != nil {
				return st
			}
			if status.Code(err) != codes.AlreadyExists || time.Now().After(deadline) {
				t.Fatalf("subscribe: %v %v", first, err)
			}
			time.Sleep(50 * time.Millisecond) // the previous stream is still ending
		}
	}
	st := subscribe()
	publish("held", 0, 5)
	held := map[string]bool{}
	for len(held) < 5 {
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		held[r.GetEventMessage().GetId()] = true
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st2 := subscribe()
	again := map[string]bool{}
	for len(again) < 5 {
		r, err := st2.Recv()
		if err != nil {
			t.Fatal(err)
		}
		id := r.GetEventMessage().GetId()
		again[id] = true
		if err := st2.Send(&runtimev1pb.SubscribeTopicEventsRequestAlpha1{SubscribeTopicEventsRequestType: &runtimev1pb.SubscribeTopicEventsRequestAlpha1_EventProcessed{
			EventProcessed: &runtimev1pb.SubscribeTopicEventsRequestProcessedAlpha1{Id: id, Status: &runtimev1pb.TopicEventResponse{Status: runtimev1pb.TopicEventResponse_SUCCESS}}}}); err != nil {
			t.Fatal(err)
		}
	}
	for id := range held {
		if !again[id] {
			t.Errorf("event %s, held by the closed stream, did not come to the next", id)
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the held events took %s to come to the next stream, want at most 2s (processingTimeout is 60s)", took)
	}
	t.Logf("5 events held by a closed stream reached the next one %s after it closed", time.Since(start).Round(time.Millisecond))
	if err := st2.CloseSend(); err != nil {
		t.Fatal(err)
	}

	// Streams opened and closed leave no Redis connection behind
	// (components-contrib#4497): the server's client count comes back.
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rc.Close() })
	clients := func() int {
		t.Helper()
		list, err := rc.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(list, "\n")
	}
	before := clients()
	for i := 0; i < 30; i++ {
		st := subscribe()
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err == nil {
			t.Fatalf("stream %d: a message after it was closed", i)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := clients()
		if after <= before+2 {
			t.Logf("Redis clients: %d before 30 streams opened and closed, %d after", before, after)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis clients: %d before 30 streams opened and closed, %d after: connections leak", before, after)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
