package subscribe

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tandem-run/tandem/internal/invoke"
)

// grpcApp is a gRPC app: AppCallback, with answers a test decides.
type grpcApp struct {
	runtimev1pb.UnimplementedAppCallbackServer
	subs   *runtimev1pb.ListTopicSubscriptionsResponse
	answer func(req *runtimev1pb.TopicEventRequest, n int) (runtimev1pb.TopicEventResponse_TopicEventResponseStatus, error)

	mu   sync.Mutex
	byID map[string]int
	got  chan grpcCall
}

type grpcCall struct {
	req *runtimev1pb.TopicEventRequest
	md  metadata.MD
}

func (a *grpcApp) ListTopicSubscriptions(context.Context, *emptypb.Empty) (*runtimev1pb.ListTopicSubscriptionsResponse, error) {
	if a.subs == nil {
		return nil, status.Error(codes.Unimplemented, "no subscriptions here")
	}
	return a.subs, nil
}

func (a *grpcApp) OnTopicEvent(ctx context.Context, req *runtimev1pb.TopicEventRequest) (*runtimev1pb.TopicEventResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	a.mu.Lock()
	a.byID[req.GetId()]++
	n := a.byID[req.GetId()]
	a.mu.Unlock()
	a.got <- grpcCall{req: req, md: md}
	st, err := a.answer(req, n)
	if err != nil {
		return nil, err
	}
	return &runtimev1pb.TopicEventResponse{Status: st}, nil
}

func (a *grpcApp) OnInvoke(context.Context, *commonv1pb.InvokeRequest) (*commonv1pb.InvokeResponse, error) {
	return nil, status.Error(codes.Unimplemented, "no")
}

func newGRPCApp(t *testing.T, subs *runtimev1pb.ListTopicSubscriptionsResponse) (*grpcApp, string) {
	a := &grpcApp{subs: subs, byID: map[string]int{}, got: make(chan grpcCall, 1000)}
	ln, addr := freeAddr(t)
	srv := grpc.NewServer()
	runtimev1pb.RegisterAppCallbackServer(srv, a)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return a, addr
}

// TestGRPCApp: a gRPC app's subscriptions come from ListTopicSubscriptions
// and its events reach OnTopicEvent as daprd sends them; its answers mean
// what they mean to daprd: SUCCESS, RETRY then SUCCESS, DROP (to the
// dead-letter topic), Unimplemented (dropped, not to the dead-letter
// topic), any other error retried, then to the dead-letter topic or left
// pending.
func TestGRPCApp(t *testing.T) {
	app, addr := newGRPCApp(t, &runtimev1pb.ListTopicSubscriptionsResponse{Subscriptions: []*runtimev1pb.TopicSubscription{{
		PubsubName: "pubsub", Topic: "orders", DeadLetterTopic: "orders-dead",
		Routes: &runtimev1pb.TopicRoutes{Rules: []*runtimev1pb.TopicRule{{Match: `event.data.kind == "rush"`, Path: "rush"}}, Default: "orders"},
	}, {
		PubsubName: "pubsub", Topic: "raw", Metadata: map[string]string{"rawPayload": "true"},
	}}})
	app.answer = func(req *runtimev1pb.TopicEventRequest, n int) (runtimev1pb.TopicEventResponse_TopicEventResponseStatus, error) {
		switch {
		case strings.Contains(req.Id, "retry") && n == 1:
			return runtimev1pb.TopicEventResponse_RETRY, nil
		case strings.Contains(req.Id, "drop"):
			return runtimev1pb.TopicEventResponse_DROP, nil
		case strings.Contains(req.Id, "unimplemented"):
			return 0, status.Error(codes.Unimplemented, "not here")
		case strings.Contains(req.Id, "internal"), string(req.Data) == "fail":
			return 0, status.Error(codes.Internal, "boom")
		case strings.Contains(req.Id, "unknown"):
			return 7, nil
		}
		return runtimev1pb.TopicEventResponse_SUCCESS, nil
	}
	e := newEnv(t, addr, envOptions{invoke: invoke.Config{AppProtocol: "grpc", AppToken: "app-secret"}})
	e.run(e.config())

	e.publish("orders", `{"kind":"rush","id":"success"}`, map[string]string{"customer": "c1", "dapr-api-token": "forged", "Bad Key": "x"})
	if r := e.broker.next(t); r.err != nil {
		t.Fatal(r.err)
	}
	c := <-app.got
	req := c.req
	if req.Id != `{"kind":"rush","id":"success"}` || req.Source != "shop" || req.Type != "com.dapr.event.sent" || req.SpecVersion != "1.0" ||
		req.DataContentType != "application/json" || req.Topic != "orders" || req.PubsubName != "pubsub" || req.Path != "rush" {
		t.Errorf("request %v", req)
	}
	if string(req.Data) != `{"id":"success","kind":"rush"}` {
		t.Errorf("data %s", req.Data)
	}
	ext := req.GetExtensions().AsMap()
	if ext["traceparent"] != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" || ext["topic"] != "orders" || ext["pubsubname"] != "pubsub" || ext["data"] != nil || ext["id"] != nil {
		t.Errorf("extensions %v", ext)
	}
	for k, want := range map[string]string{"pubsubname": "pubsub", "customer": "c1", "dapr-api-token": "app-secret", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "bad key": ""} {
		if got := strings.Join(c.md.Get(k), ","); got != want {
			t.Errorf("metadata %s: %q, want %q", k, got, want)
		}
	}

	for _, c := range []struct {
		id     string
		acked  bool
		calls  int
		toDead bool
	}{
		{"retry", true, 2, false},
		{"drop", true, 1, true},
		{"unimplemented", true, 1, false},
		{"internal", true, 3, true}, // retries exhausted: to the dead-letter topic
		{"unknown", true, 3, true},
	} {
		before := len(e.broker.publishedTo("orders-dead"))
		e.publish("orders", fmt.Sprintf(`{"kind":"normal","id":%q}`, c.id), nil)
		r := e.broker.next(t)
		if (r.err == nil) != c.acked {
			t.Errorf("%s: acknowledged %v (%v), want %v", c.id, r.err == nil, r.err, c.acked)
		}
		for range c.calls {
			if got := <-app.got; got.req.Path != "orders" {
				t.Errorf("%s: path %q", c.id, got.req.Path)
			}
		}
		if extra := len(app.got); extra != 0 {
			t.Errorf("%s: %d calls more than %d", c.id, extra, c.calls)
		}
		if got := len(e.broker.publishedTo("orders-dead")) - before; (got == 1) != c.toDead {
			t.Errorf("%s: %d events to the dead-letter topic", c.id, got)
		}
	}

	e.publish("raw", "\x00raw bytes", map[string]string{"rawPayload": "true"})
	if r := e.broker.next(t); r.err != nil {
		t.Fatal(r.err)
	}
	if c := <-app.got; string(c.req.Data) != "\x00raw bytes" || c.req.DataContentType != "application/octet-stream" || c.req.Path != "" {
		t.Errorf("raw event: data %q, content type %q, path %q", c.req.Data, c.req.DataContentType, c.req.Path)
	}
	e.publish("raw", "fail", map[string]string{"rawPayload": "true"})
	if r := e.broker.next(t); r.err == nil || !strings.Contains(r.err.Error(), "the app answered Internal: boom") {
		t.Errorf("an error without a dead-letter topic: %v; want the event pending", r.err)
	}
}

// TestTopicEventData: the data of OnTopicEvent is the event's data as
// bytes: a string as it is (unless the content type is JSON), anything
// else as JSON, data_base64 decoded; data_base64 that is not base64 makes
// the event one the app cannot be given.
func TestTopicEventData(t *testing.T) {
	sb := &sub{Subscription: Subscription{PubsubName: "pubsub", Topic: "t"}}
	for _, c := range []struct {
		ce   map[string]any
		data string
		err  string
	}{
		{map[string]any{"datacontenttype": "text/plain", "data": "hello"}, "hello", ""},
		{map[string]any{"datacontenttype": "application/json", "data": "hello"}, `"hello"`, ""},
		{map[string]any{"datacontenttype": "application/json; charset=utf-8", "data": map[string]any{"a": 1.0}}, `{"a":1}`, ""},
		{map[string]any{"datacontenttype": "application/xml", "data": "<a/>"}, "<a/>", ""},
		{map[string]any{"datacontenttype": "application/x-custom", "data": "abc"}, "abc", ""},
		{map[string]any{"data": []any{1.0, "x"}}, `[1,"x"]`, ""},
		{map[string]any{"data_base64": "aGk="}, "hi", ""},
		{map[string]any{}, "", ""},
		{map[string]any{"data_base64": "!!"}, "", "data_base64 is not base64"},
		{map[string]any{"data_base64": 7.0}, "", "data_base64 is not a string"},
	} {
		c.ce["id"] = "e1"
		req, err := topicEvent(eventOf(c.ce), sb, "/p")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want %q", c.ce, err, c.err)
			}
			continue
		}
		if err != nil || string(req.GetData()) != c.data {
			t.Errorf("%v: data %q (%v), want %q", c.ce, req.GetData(), err, c.data)
		}
	}
}
