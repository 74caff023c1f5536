package telemetry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// exercise makes spans with tr the way the sidecar and its users can:
// every method of a span, before and after End, over the limits, with
// remote and local parents, sampled and not.
func exercise(t *testing.T, tr trace.Tracer) {
	t.Helper()
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	ts, err := trace.ParseTraceState("vendor=blue,other=1")
	if err != nil {
		t.Fatal(err)
	}
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0x4b, 0xf9, 1}, SpanID: trace.SpanID{0xf0, 2},
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true})
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{8}, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)

	ctx, s := tr.Start(ctx, "CallLocal/addapp/add", serverKind, trace.WithTimestamp(at),
		trace.WithAttributes(attribute.String("a", "1"), attribute.String("b", "2"), attribute.String("a", "3")),
		trace.WithLinks(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.String("why", "retry")}}, trace.Link{}))
	if !s.IsRecording() {
		t.Fatal("a sampled span does not record")
	}
	s.SetAttributes(attribute.Int("n", 7), attribute.String("b", "4"), attribute.KeyValue{}, attribute.Bool("ok", true),
		attribute.Float64("f", 2.5), attribute.StringSlice("ss", []string{"x", ""}))
	s.AddEvent("retry", trace.WithTimestamp(at.Add(time.Millisecond)), trace.WithAttributes(attribute.Int("attempt", 2)))
	s.RecordError(fmt.Errorf("app: %w", errors.ErrUnsupported), trace.WithTimestamp(at.Add(2*time.Millisecond)))
	s.RecordError(nil)
	s.AddLink(trace.Link{SpanContext: remote})
	s.SetStatus(codes.Error, "HTTP 500")
	s.SetStatus(codes.Unset, "")
	s.SetName("CallLocal/addapp/add2")

	_, child := tr.Start(ctx, "child", trace.WithTimestamp(at.Add(time.Microsecond)))
	for i := range maxAttributes + 2 {
		child.SetAttributes(attribute.Int(fmt.Sprint("k", i), i))
	}
	child.SetStatus(codes.Ok, "dropped: only errors keep one")
	child.SetStatus(codes.Error, "too late: Ok is final")
	child.End(trace.WithTimestamp(at.Add(3 * time.Millisecond)))

	s.End(trace.WithTimestamp(at.Add(4 * time.Millisecond)))
	s.SetAttributes(attribute.String("after", "end"))
	s.SetStatus(codes.Ok, "")
	s.End()
	if s.IsRecording() {
		t.Error("an ended span records")
	}

	// A remote parent not sampled: nothing recorded, the context carried.
	unsampled := trace.ContextWithRemoteSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{7}, SpanID: trace.SpanID{7}, Remote: true}))
	uctx, u := tr.Start(unsampled, "unsampled", clientKind)
	if u.IsRecording() || u.SpanContext().IsSampled() || u.SpanContext().TraceID() != (trace.TraceID{7}) ||
		!u.SpanContext().SpanID().IsValid() || !trace.SpanContextFromContext(uctx).Equal(u.SpanContext()) {
		t.Errorf("a child of an unsampled parent: recording %v, context %+v", u.IsRecording(), u.SpanContext())
	}
	u.End()

	// A new root in a context with a parent.
	_, root := tr.Start(ctx, "root", trace.WithNewRoot(), producerKind, trace.WithTimestamp(at))
	root.End(trace.WithTimestamp(at.Add(time.Millisecond)))
}

// TestSpanMatchesSDK makes the same spans with the sidecar's tracer and the
// OpenTelemetry SDK's, and checks that every exporter sees the same spans:
// every field alike, but the span ids, which are random; the same Zipkin
// JSON and OTLP bytes once those are made alike.
func TestSpanMatchesSDK(t *testing.T) {
	rec := &recorder{}
	exercise(t, newSpanProvider("front", 1, rec).Tracer(instrumentation))
	sdkRec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdkRec),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "front"))))
	exercise(t, tp.Tracer(instrumentation))

	ours, theirs := rec.Ended(), sdkRec.Ended()
	if len(ours) != len(theirs) || len(ours) != 3 {
		t.Fatalf("%d spans ended, the SDK's %d, want 3", len(ours), len(theirs))
	}
	ids := map[trace.SpanID]trace.SpanID{} // ours to the SDK's
	for i := range ours {
		ids[ours[i].SpanContext().SpanID()] = theirs[i].SpanContext().SpanID()
	}
	for i, o := range ours {
		s := theirs[i]
		t.Run(s.Name(), func(t *testing.T) {
			sid := func(sc trace.SpanContext) trace.SpanContext {
				if id, ok := ids[sc.SpanID()]; ok {
					return sc.WithSpanID(id)
				}
				return sc
			}
			if o.SpanContext().TraceID() != s.SpanContext().TraceID() && s.Name() != "root" {
				t.Errorf("trace id %v, the SDK's %v", o.SpanContext().TraceID(), s.SpanContext().TraceID())
			}
			same := func(what string, got, want any) {
				t.Helper()
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
				}
			}
			same("name", o.Name(), s.Name())
			same("flags and state", []any{o.SpanContext().TraceFlags(), o.SpanContext().TraceState().String(), o.SpanContext().IsRemote()},
				[]any{s.SpanContext().TraceFlags(), s.SpanContext().TraceState().String(), s.SpanContext().IsRemote()})
			same("parent", sid(o.Parent()), s.Parent())
			same("kind", o.SpanKind(), s.SpanKind())
			same("times", []time.Time{o.StartTime(), o.EndTime()}, []time.Time{s.StartTime(), s.EndTime()})
			same("attributes", o.Attributes(), s.Attributes())
			same("dropped attributes", o.DroppedAttributes(), s.DroppedAttributes())
			same("events", o.Events(), s.Events())
			same("links", o.Links(), s.Links())
			same("status", o.Status(), s.Status())
			same("resource", o.Resource().Attributes(), s.Resource().Attributes())
			same("scope", o.InstrumentationScope().Name, s.InstrumentationScope().Name)

			if s.Name() == "root" {
				return // its trace id is random too
			}
			zo, zs := string(appendZipkinSpan(nil, o)), string(appendZipkinSpan(nil, s))
			for ourID, sdkID := range ids {
				zo = strings.ReplaceAll(zo, ourID.String(), sdkID.String())
			}
			same("zipkin", zo, zs)
			po, ps := encodeOTLPSpan(o).b, encodeOTLPSpan(s).b
			for ourID, sdkID := range ids {
				po = []byte(strings.ReplaceAll(string(po), string(ourID[:]), string(sdkID[:])))
			}
			same("otlp", po, ps)
		})
	}
}

// TestSpanSamplesAsTheSDK checks the sampler against the SDK's
// ParentBased(TraceIDRatioBased(rate)) for random trace ids and every
// kind of parent.
func TestSpanSamplesAsTheSDK(t *testing.T) {
	for _, rate := range []float64{0, 0.0001, 0.25, 0.5, 0.999, 1, 2} {
		p := newSpanProvider("x", rate)
		sdk := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(rate))
		sampled := 0
		for i := range 4000 {
			var tid trace.TraceID
			for j := range tid {
				tid[j] = byte(rand.Uint32())
			}
			var parent trace.SpanContext
			switch i % 4 {
			case 1:
				parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true})
			case 2:
				parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1}, Remote: true})
			case 3:
				parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1}})
			}
			got := p.sample(parent, tid)
			want := sdk.ShouldSample(sdktrace.SamplingParameters{
				ParentContext: trace.ContextWithSpanContext(context.Background(), parent), TraceID: tid, Name: "x",
			}).Decision == sdktrace.RecordAndSample
			if got != want {
				t.Fatalf("rate %v, parent %+v, trace id %v: sampled %v, the SDK %v", rate, parent, tid, got, want)
			}
			if got && !parent.IsValid() {
				sampled++
			}
		}
		t.Logf("rate %v: %d of 1000 roots sampled", rate, sampled)
	}
}
