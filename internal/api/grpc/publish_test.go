package grpcapi

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/api"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/pubsubtest"
)

// PublishEvent answers as daprd's: empty once the broker holds the event,
// daprd's gRPC codes and ErrorInfo reasons for each refusal.
func TestPublishEvent(t *testing.T) {
	svc := pubsub.NewService()
	defer svc.Close()
	rec := &pubsubtest.Recorder{}
	for _, c := range []pubsub.BrokerConfig{
		{Name: "pubsub", Broker: rec},
		{Name: "scoped", Broker: &pubsubtest.Recorder{}, Access: pubsub.ParseAccess(map[string]string{"publishingScopes": "checkout=audit"}, "checkout")},
		{Name: "down", Broker: &pubsubtest.Recorder{Err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")}},
	} {
		if err := svc.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	s := New(Config{Publisher: api.Publisher{PubSub: svc, AppID: "checkout"}})
	ctx := context.Background()

	_, err := s.PublishEvent(ctx, &runtimev1pb.PublishEventRequest{PubsubName: "pubsub", Topic: "orders", Data: []byte(`{"a":1}`),
		DataContentType: "application/json", Metadata: map[string]string{"partitionKey": "k"}})
	if err != nil {
		t.Fatal(err)
	}
	var ce map[string]any
	msgs := rec.Take()
	if len(msgs) != 1 || json.Unmarshal(msgs[0].Data, &ce) != nil || ce["datacontenttype"] != "application/json" ||
		ce["source"] != "checkout" || msgs[0].Metadata["partitionKey"] != "k" {
		t.Fatalf("published %+v", msgs)
	}

	for _, c := range []struct {
		name   string
		in     *runtimev1pb.PublishEventRequest
		code   codes.Code
		reason string
		says   string
	}{
		{"unknown pubsub", &runtimev1pb.PublishEventRequest{PubsubName: "nope", Topic: "orders"}, codes.InvalidArgument, "DAPR_PUBSUB_NOT_FOUND", `"nope"`},
		{"no pubsub name", &runtimev1pb.PublishEventRequest{Topic: "orders"}, codes.InvalidArgument, "DAPR_PUBSUB_NAME_EMPTY", "pubsub name is empty"},
		{"no topic", &runtimev1pb.PublishEventRequest{PubsubName: "pubsub"}, codes.InvalidArgument, "DAPR_PUBSUB_TOPIC_NAME_EMPTY", "topic is empty"},
		{"control character", &runtimev1pb.PublishEventRequest{PubsubName: "pubsub", Topic: "a\x07"}, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "control character"},
		{"bad rawPayload", &runtimev1pb.PublishEventRequest{PubsubName: "pubsub", Topic: "orders", Metadata: map[string]string{"rawPayload": "maybe"}}, codes.InvalidArgument, "DAPR_PUBSUB_METADATA_DESERIALIZATION", "rawPayload"},
		{"not a cloud event", &runtimev1pb.PublishEventRequest{PubsubName: "pubsub", Topic: "orders", Data: []byte("1"), DataContentType: "application/cloudevents+json"}, codes.InvalidArgument, "DAPR_PUBSUB_CLOUD_EVENT_CREATION", "JSON object"},
		{"forbidden", &runtimev1pb.PublishEventRequest{PubsubName: "scoped", Topic: "orders"}, codes.PermissionDenied, "DAPR_PUBSUB_FORBIDDEN", "publishingScopes"},
		{"broker down", &runtimev1pb.PublishEventRequest{PubsubName: "down", Topic: "orders"}, codes.Internal, "DAPR_PUBSUB_PUBLISH_MESSAGE", "connection refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.PublishEvent(ctx, c.in)
			wantStatus(t, err, c.code, c.reason, c.says)
		})
	}
}
