package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// StartDelivery starts the span of a pub/sub delivery to the app, named as
// daprd names it, pubsub/<topic>: a consumer span, child of the publisher's
// span whose W3C trace context the event carries (a missing or malformed
// one starts a new trace). The calls to the app it makes are its children.
// end records the app's answer (SUCCESS, RETRY, DROP; "" for none) and
// ends it. With tracing off it records nothing.
func (t *Tracing) StartDelivery(ctx context.Context, pubsubName, topic, traceparent, tracestate string) (context.Context, func(status string, err error)) {
	p := t.provider()
	if p == nil {
		return ctx, func(string, error) {}
	}
	carrier := propagation.MapCarrier{"traceparent": traceparent}
	if tracestate != "" {
		carrier["tracestate"] = tracestate
	}
	ctx = propagation.TraceContext{}.Extract(ctx, carrier)
	ctx, span := p.tracer.Start(ctx, "pubsub/"+topic, consumerKind, trace.WithAttributes(
		attribute.String("messaging.system", "pubsub"),
		attribute.String("messaging.destination.name", topic),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("dapr.pubsub", pubsubName),
	))
	return ctx, func(status string, err error) {
		if status != "" {
			span.SetAttributes(attribute.String("dapr.pubsub.status", status))
		}
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
