package api

import (
	"context"
	"encoding/json"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/memory"
)

// The envelope carries the trace context of the publish's span: its
// traceparent (also as traceid) and tracestate; none without a span, as
// daprd with tracing off.
func TestPublishTraceContext(t *testing.T) {
	svc := pubsub.NewService()
	defer svc.Close()
	b := memory.New(memory.Config{})
	if err := svc.Add(pubsub.BrokerConfig{Name: "pubsub", Broker: b}); err != nil {
		t.Fatal(err)
	}
	got := make(chan map[string]any, 2)
	if err := svc.Subscribe(context.Background(), "pubsub", pubsub.Subscription{Topic: "orders"}, func(_ context.Context, d *pubsub.Delivery) error {
		var ce map[string]any
		_ = json.Unmarshal(d.Data, &ce)
		got <- ce
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	p := Publisher{PubSub: svc, AppID: "checkout"}

	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ts, _ := trace.ParseTraceState("congo=t61rcWkgMzE")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts}))
	if err := p.Publish(ctx, PublishRequest{PubsubName: "pubsub", Topic: "orders", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	ce := <-got
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if ce["traceparent"] != tp || ce["traceid"] != tp || ce["tracestate"] != "congo=t61rcWkgMzE" {
		t.Errorf("with a span: traceparent %v, traceid %v, tracestate %v", ce["traceparent"], ce["traceid"], ce["tracestate"])
	}

	if err := p.Publish(context.Background(), PublishRequest{PubsubName: "pubsub", Topic: "orders", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if ce := <-got; ce["traceparent"] != "" || ce["tracestate"] != "" {
		t.Errorf("without a span: traceparent %v, tracestate %v", ce["traceparent"], ce["tracestate"])
	}
}
