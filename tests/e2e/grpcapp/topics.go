package main

import (
	"context"
	"encoding/json"
	"log"
	"net"
	"net/http"
	"os"
	"sync"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// topics is a subscriber on the raw proto. ListTopicSubscriptions
// subscribes it, on pub/sub $PUBSUB (default "pubsub"), to "events" (no
// routes; dead-letter topic "events-dead"), "events-dead" and "plain" (no
// dead-letter topic). OnTopicEvent records each event and answers by its
// data.answer: "RETRY_ONCE" RETRY the first time its id comes, then
// SUCCESS; "RETRY" RETRY always; "ERROR_ONCE" an Internal error the first
// time, then SUCCESS; "DROP" DROP; "UNIMPLEMENTED" the Unimplemented
// status; else SUCCESS. Events of "events-dead" are always SUCCESS. GET
// /deliveries on $RECORD_PORT answers the records: [{topic, path, id,
// source, type, contentType, data, extensions, md}] (md: the call's
// metadata, first values).
type topics struct {
	runtimev1pb.UnimplementedAppCallbackServer
	pubsub string

	mu         sync.Mutex
	deliveries []topicDelivery
	seen       map[string]int // deliveries by topic and id
}

type topicDelivery struct {
	Topic       string            `json:"topic"`
	Path        string            `json:"path"`
	ID          string            `json:"id"`
	Source      string            `json:"source"`
	Type        string            `json:"type"`
	ContentType string            `json:"contentType"`
	Data        string            `json:"data"`
	Extensions  map[string]any    `json:"extensions"`
	MD          map[string]string `json:"md"`
}

func serveTopics(srv *grpc.Server, recordPort string) {
	t := &topics{pubsub: os.Getenv("PUBSUB"), deliveries: []topicDelivery{}, seen: map[string]int{}}
	if t.pubsub == "" {
		t.pubsub = "pubsub"
	}
	runtimev1pb.RegisterAppCallbackServer(srv, t)
	lis, err := net.Listen("tcp", "127.0.0.1:"+recordPort)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /deliveries", func(w http.ResponseWriter, _ *http.Request) {
		t.mu.Lock()
		defer t.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(t.deliveries)
	})
	go func() { log.Fatal(http.Serve(lis, mux)) }()
}

func (t *topics) ListTopicSubscriptions(context.Context, *emptypb.Empty) (*runtimev1pb.ListTopicSubscriptionsResponse, error) {
	return &runtimev1pb.ListTopicSubscriptionsResponse{Subscriptions: []*runtimev1pb.TopicSubscription{
		{PubsubName: t.pubsub, Topic: "events", DeadLetterTopic: "events-dead"},
		{PubsubName: t.pubsub, Topic: "events-dead"},
		{PubsubName: t.pubsub, Topic: "plain"},
	}}, nil
}

func (t *topics) OnTopicEvent(ctx context.Context, in *runtimev1pb.TopicEventRequest) (*runtimev1pb.TopicEventResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	d := topicDelivery{Topic: in.GetTopic(), Path: in.GetPath(), ID: in.GetId(), Source: in.GetSource(), Type: in.GetType(),
		ContentType: in.GetDataContentType(), Data: string(in.GetData()), Extensions: in.GetExtensions().AsMap(), MD: map[string]string{}}
	for k, v := range md {
		d.MD[k] = first(v)
	}
	t.mu.Lock()
	t.deliveries = append(t.deliveries, d)
	t.seen[in.GetTopic()+"/"+in.GetId()]++
	n := t.seen[in.GetTopic()+"/"+in.GetId()]
	t.mu.Unlock()

	var data struct {
		Answer string `json:"answer"`
	}
	_ = json.Unmarshal(in.GetData(), &data)
	if in.GetTopic() == "events-dead" {
		data.Answer = ""
	}
	answer := func(s runtimev1pb.TopicEventResponse_TopicEventResponseStatus) (*runtimev1pb.TopicEventResponse, error) {
		return &runtimev1pb.TopicEventResponse{Status: s}, nil
	}
	switch {
	case data.Answer == "RETRY_ONCE" && n == 1, data.Answer == "RETRY":
		return answer(runtimev1pb.TopicEventResponse_RETRY)
	case data.Answer == "ERROR_ONCE" && n == 1:
		return nil, status.Error(codes.Internal, "asked to fail once")
	case data.Answer == "DROP":
		return answer(runtimev1pb.TopicEventResponse_DROP)
	case data.Answer == "UNIMPLEMENTED":
		return nil, status.Error(codes.Unimplemented, "asked to be unimplemented")
	}
	return answer(runtimev1pb.TopicEventResponse_SUCCESS)
}

func (t *topics) ListInputBindings(context.Context, *emptypb.Empty) (*runtimev1pb.ListInputBindingsResponse, error) {
	return &runtimev1pb.ListInputBindingsResponse{}, nil
}

func (t *topics) OnInvoke(context.Context, *commonv1pb.InvokeRequest) (*commonv1pb.InvokeResponse, error) {
	return nil, status.Error(codes.Unimplemented, "this app only subscribes")
}
