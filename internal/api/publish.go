package api

import (
	"context"

	"go.opentelemetry.io/otel/propagation"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Publisher is the publish API behind both adapters (HTTP POST
// /v1.0/publish/..., gRPC PublishEvent), so that they check and answer
// alike, as daprd 1.14 does.
type Publisher struct {
	PubSub *pubsub.Service
	AppID  string // the events' source
}

// PublishRequest is a publish as the adapters read it.
type PublishRequest struct {
	PubsubName, Topic string
	Data              []byte
	// ContentType is the body's (HTTP Content-Type, gRPC
	// data_content_type): the envelope's datacontenttype.
	ContentType string
	// Metadata is the request's metadata (HTTP metadata.* query
	// parameters): rawPayload, ttlInSeconds, cloudevent.*, and whatever
	// the broker reads.
	Metadata map[string]string
}

// Check checks the names of a publish in daprd's order: a pub/sub name,
// a pub/sub of that name, a topic, then a valid topic name. Its error is
// an *apierr.Error.
func (p Publisher) Check(pubsubName, topic string) error {
	if pubsubName == "" {
		return apierr.PubSubNameEmpty()
	}
	if _, err := p.PubSub.Get(pubsubName); err != nil {
		return apierr.PubSub(err)
	}
	if topic == "" {
		return apierr.TopicNameEmpty(pubsubName)
	}
	if err := pubsub.CheckTopic(topic); err != nil {
		return apierr.PubSub(err)
	}
	return nil
}

// Publish checks r (Check), wraps its data in the CloudEvent daprd writes
// (unless its metadata says rawPayload) with the trace context of ctx's
// span, and publishes it. It returns nil once the broker holds the event;
// its error is an *apierr.Error.
func (p Publisher) Publish(ctx context.Context, r PublishRequest) error {
	if err := p.Check(r.PubsubName, r.Topic); err != nil {
		return err
	}
	tc := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, tc)
	data, err := pubsub.Envelope(pubsub.Publication{
		AppID:       p.AppID,
		PubsubName:  r.PubsubName,
		Topic:       r.Topic,
		Data:        r.Data,
		ContentType: r.ContentType,
		TraceParent: tc["traceparent"],
		TraceState:  tc["tracestate"],
		Metadata:    r.Metadata,
	})
	if err != nil {
		return apierr.PubSub(err)
	}
	if err := p.PubSub.Publish(ctx, r.PubsubName, &pubsub.Message{Topic: r.Topic, Data: data, Metadata: r.Metadata}); err != nil {
		return apierr.PubSub(err)
	}
	return nil
}
