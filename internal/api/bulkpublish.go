package api

import (
	"context"
	"fmt"
	"net/http"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	grpccodes "google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// MaxBulkEntries bounds the entries of one bulk publish (daprd has no
// bound). Its bytes are bounded by the API's body limit.
const MaxBulkEntries = 10_000

// BulkEntry is one event of a bulk publish: its own CloudEvent.
type BulkEntry struct {
	EntryID string
	// Event is the entry's data as bytes (the HTTP adapter converts the
	// JSON value by ContentType, as daprd does).
	Event       []byte
	ContentType string
	// Metadata is the entry's own; it overrides the request's key by key.
	Metadata map[string]string
}

// BulkPublishRequest is a bulk publish as the adapters read it (HTTP POST
// /v1.0-alpha1/publish/bulk/..., gRPC BulkPublishEventAlpha1).
type BulkPublishRequest struct {
	PubsubName, Topic string
	Entries           []BulkEntry
	Metadata          map[string]string // the request's, for every entry
}

// FailedEntry is an entry the broker did not take, and why.
type FailedEntry struct {
	EntryID string
	Err     error
}

// CheckBulk checks a bulk publish before anything is published: the names
// (Check), the request's metadata, and every entry id present and unique,
// within MaxBulkEntries. Its error is an *apierr.Error.
func (p Publisher) CheckBulk(r BulkPublishRequest) error {
	if err := p.Check(r.PubsubName, r.Topic); err != nil {
		return err
	}
	if _, err := pubsub.RawPayload(r.Metadata); err != nil {
		return apierr.PubSub(err)
	}
	if len(r.Entries) > MaxBulkEntries {
		return BulkEventsError(r.PubsubName, r.Topic, "MARSHAL_EVENTS",
			fmt.Sprintf("the request holds %d entries; a bulk publish takes at most %d: split it", len(r.Entries), MaxBulkEntries))
	}
	seen := make(map[string]struct{}, len(r.Entries))
	for i, e := range r.Entries {
		if e.EntryID == "" {
			return BulkEventsError(r.PubsubName, r.Topic, "MARSHAL_EVENTS", fmt.Sprintf("entry %d has no entryId: every entry needs one, unique in the request", i))
		}
		if _, dup := seen[e.EntryID]; dup {
			return BulkEventsError(r.PubsubName, r.Topic, "MARSHAL_EVENTS", fmt.Sprintf("entryId %q is in the request twice: entry ids must be unique", e.EntryID))
		}
		seen[e.EntryID] = struct{}{}
	}
	return nil
}

// BulkEventsError is daprd's 400 ERR_PUBSUB_EVENTS_SER for a bulk publish
// whose entries cannot be read, with daprd's ErrorInfo reason for the case
// (UNMARSHAL_EVENTS: the body; MARSHAL_EVENTS: the entry ids;
// MARSHAL_ENVELOPE: an event that is not what its contentType says).
func BulkEventsError(pubsubName, topic, reason, msg string) *apierr.Error {
	e := apierr.New(apierr.CodePubSubEventsSer, http.StatusBadRequest, grpccodes.InvalidArgument,
		"bulk publish to topic %s of pubsub %s: %s", topic, pubsubName, msg)
	e.Reason = "DAPR_PUBSUB_" + reason
	return e
}

// BulkPublish checks r (CheckBulk) and publishes each entry as its own
// event (a CloudEvent unless the metadata says rawPayload), each with a
// producer span of its own under ctx's, through pubsub.Service.PublishBulk:
// to a broker that takes them at once (Redis: one pipeline) together, to
// another 16 at a time, in no promised order. It returns the entries the broker did not take; an
// entry not returned is held by the broker. The error is an *apierr.Error:
// a refusal of the whole request (nothing published), or, when entries
// failed, ERR_PUBSUB_PUBLISH_MESSAGE naming how many.
func (p Publisher) BulkPublish(ctx context.Context, r BulkPublishRequest) ([]FailedEntry, error) {
	if err := p.CheckBulk(r); err != nil {
		return nil, err
	}
	datas := make([][]byte, len(r.Entries))
	mds := make([]map[string]string, len(r.Entries))
	spans := make([]trace.Span, len(r.Entries))
	endSpans := func(failed map[int]error) {
		for i, s := range spans {
			if s == nil {
				continue
			}
			if err := failed[i]; err != nil {
				s.RecordError(err)
				s.SetStatus(codes.Error, err.Error())
			}
			s.End()
		}
	}
	tracer := trace.SpanFromContext(ctx).TracerProvider().Tracer("github.com/tandem-run/tandem/internal/api")
	for i, e := range r.Entries {
		mds[i] = mergeMetadata(r.Metadata, e.Metadata)
		ectx, span := tracer.Start(ctx, "BulkPublishEvent/"+r.PubsubName+"/"+r.Topic,
			trace.WithSpanKind(trace.SpanKindProducer))
		spans[i] = span
		tc := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ectx, tc)
		data, err := pubsub.Envelope(pubsub.Publication{
			AppID:       p.AppID,
			PubsubName:  r.PubsubName,
			Topic:       r.Topic,
			Data:        e.Event,
			ContentType: e.ContentType,
			TraceParent: tc["traceparent"],
			TraceState:  tc["tracestate"],
			Metadata:    mds[i],
		})
		if err != nil {
			ae := apierr.PubSub(fmt.Errorf("entry %q: %w", e.EntryID, err))
			endSpans(map[int]error{i: ae})
			return nil, ae
		}
		datas[i] = data
	}

	ms := make([]*pubsub.Message, len(r.Entries))
	ctxs := make([]context.Context, len(r.Entries))
	for i := range r.Entries {
		ms[i] = &pubsub.Message{Topic: r.Topic, Data: datas[i], Metadata: mds[i]}
		ctxs[i] = trace.ContextWithSpan(ctx, spans[i])
	}
	failed := map[int]error{}
	for i, err := range p.PubSub.PublishBulk(ctx, r.PubsubName, ms, ctxs) {
		if err != nil {
			failed[i] = err
		}
	}
	endSpans(failed)
	if len(failed) == 0 {
		return nil, nil
	}
	out := make([]FailedEntry, 0, len(failed))
	var first error
	for i, e := range r.Entries {
		if err, ok := failed[i]; ok {
			out = append(out, FailedEntry{EntryID: e.EntryID, Err: err})
			if first == nil {
				first = err
			}
		}
	}
	// A refusal that holds for every entry (topic not allowed, the pub/sub
	// removed meanwhile) is the request's, with its own code.
	if ae := apierr.PubSub(first); ae.Code != apierr.CodePubSubPublishMessage && len(out) == len(r.Entries) {
		return out, ae
	}
	return out, apierr.New(apierr.CodePubSubPublishMessage, http.StatusInternalServerError, grpccodes.Internal,
		"bulk publish to topic %s of pubsub %s: %d of %d entries were not published (the first: %v)",
		r.Topic, r.PubsubName, len(out), len(r.Entries), first)
}

// mergeMetadata is the request's metadata overridden key by key by an
// entry's; nil when both are empty.
func mergeMetadata(req, entry map[string]string) map[string]string {
	if len(entry) == 0 {
		return req
	}
	if len(req) == 0 {
		return entry
	}
	md := make(map[string]string, len(req)+len(entry))
	for k, v := range req {
		md[k] = v
	}
	for k, v := range entry {
		md[k] = v
	}
	return md
}
