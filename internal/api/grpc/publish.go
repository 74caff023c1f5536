package grpcapi

import (
	"context"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tandem-run/tandem/internal/api"
)

// PublishEvent publishes an event, as POST /v1.0/publish does: its
// metadata is the request's metadata (rawPayload, ttlInSeconds,
// cloudevent.*), data_content_type the envelope's datacontenttype. It
// answers once the broker holds the event.
func (s *Server) PublishEvent(ctx context.Context, in *runtimev1pb.PublishEventRequest) (*emptypb.Empty, error) {
	err := s.pub.Publish(ctx, api.PublishRequest{PubsubName: in.GetPubsubName(), Topic: in.GetTopic(), Data: in.GetData(),
		ContentType: in.GetDataContentType(), Metadata: in.GetMetadata()})
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}
