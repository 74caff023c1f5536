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

// BulkPublishEventAlpha1 publishes each entry as its own event, as POST
// /v1.0-alpha1/publish/bulk does (an entry's event is its bytes, as sent).
// As daprd's, it answers an error when any entry failed (the message names
// how many and the first cause); a response's failed_entries stays empty.
func (s *Server) BulkPublishEventAlpha1(ctx context.Context, in *runtimev1pb.BulkPublishRequest) (*runtimev1pb.BulkPublishResponse, error) {
	req := api.BulkPublishRequest{PubsubName: in.GetPubsubName(), Topic: in.GetTopic(), Metadata: in.GetMetadata(),
		Entries: make([]api.BulkEntry, len(in.GetEntries()))}
	for i, e := range in.GetEntries() {
		req.Entries[i] = api.BulkEntry{EntryID: e.GetEntryId(), Event: e.GetEvent(), ContentType: e.GetContentType(), Metadata: e.GetMetadata()}
	}
	if _, err := s.pub.BulkPublish(ctx, req); err != nil {
		return nil, err
	}
	return &runtimev1pb.BulkPublishResponse{}, nil
}
