package grpcapi

import (
	"errors"
	"io"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/subscribe"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// SubscribeTopicEventsAlpha1 is a streaming subscription, as daprd's: the
// app's first message is the initial request (pubsub, topic, metadata,
// dead-letter topic); once the broker's subscription is set up the sidecar
// answers with the initial response, then sends each event, and the app
// answers each by id (event_processed: SUCCESS, RETRY, DROP) on the same
// stream. An event is acknowledged only on the app's answer; when the
// stream ends, what it was not answered for stays pending and goes to the
// next subscription to the topic at once.
func (s *Server) SubscribeTopicEventsAlpha1(stream runtimev1pb.Dapr_SubscribeTopicEventsAlpha1Server) error {
	if s.subs == nil {
		return status.Error(codes.Unimplemented, "streaming subscriptions are not served by this sidecar")
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	init := first.GetInitialRequest()
	if init == nil {
		return status.Error(codes.InvalidArgument, "the first message of SubscribeTopicEventsAlpha1 must be the initial request (pubsub_name, topic)")
	}
	ctx := stream.Context()
	ready := make(chan struct{})
	send := func(ev *runtimev1pb.TopicEventRequest) error {
		select {
		case <-ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		return stream.Send(&runtimev1pb.SubscribeTopicEventsResponseAlpha1{
			SubscribeTopicEventsResponseType: &runtimev1pb.SubscribeTopicEventsResponseAlpha1_EventMessage{EventMessage: ev},
		})
	}
	st, err := s.subs.Stream(ctx, subscribe.StreamRequest{PubsubName: init.GetPubsubName(), Topic: init.GetTopic(),
		DeadLetterTopic: init.GetDeadLetterTopic(), Metadata: init.GetMetadata()}, send)
	if err != nil {
		return streamError(err)
	}
	defer st.Close()
	err = stream.Send(&runtimev1pb.SubscribeTopicEventsResponseAlpha1{
		SubscribeTopicEventsResponseType: &runtimev1pb.SubscribeTopicEventsResponseAlpha1_InitialResponse{
			InitialResponse: &runtimev1pb.SubscribeTopicEventsResponseInitialAlpha1{},
		},
	})
	if err != nil {
		return err
	}
	close(ready)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := msg.GetEventProcessed()
		if p == nil {
			return status.Error(codes.InvalidArgument, "after the initial request, a streaming subscription takes event_processed messages only")
		}
		if err := st.Answer(p.GetId(), p.GetStatus()); err != nil {
			s.log.Debug("streaming subscription: an answer for no event", "pubsub", init.GetPubsubName(), "topic", init.GetTopic(), "err", err)
		}
	}
}

// streamError is the answer to a streaming subscription that cannot start.
func streamError(err error) error {
	switch {
	case errors.Is(err, subscribe.ErrSubscribed):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, pubsub.ErrNotFound), errors.Is(err, pubsub.ErrForbidden), errors.Is(err, pubsub.ErrBadTopic), errors.Is(err, pubsub.ErrBadMetadata):
		return apierr.PubSub(err)
	}
	var ae *apierr.Error
	if errors.As(err, &ae) {
		return ae
	}
	return status.Error(codes.InvalidArgument, err.Error())
}
