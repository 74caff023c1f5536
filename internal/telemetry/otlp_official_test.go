package telemetry

import (
	"testing"

	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// What an exporter built on the official OTLP types
// (go.opentelemetry.io/proto/otlp) would do with a batch: fill the generated
// structs and proto.Marshal them. It is here to be compared with ours,
// for bytes (TestOTLPMatchesOfficialTypes) and for cost
// (BenchmarkOTLPEncode); bench/RESULTS.md has the decision and its figures.

func officialRequest(spans []sdktrace.ReadOnlySpan) *coltracepb.ExportTraceServiceRequest {
	req := &coltracepb.ExportTraceServiceRequest{}
	var rs *tracepb.ResourceSpans
	scopes := map[string]*tracepb.ScopeSpans{}
	for _, s := range spans {
		if rs == nil { // the sidecar's spans share one resource
			rs = &tracepb.ResourceSpans{Resource: &resourcepb.Resource{}, SchemaUrl: s.Resource().SchemaURL()}
			for _, kv := range s.Resource().Attributes() {
				rs.Resource.Attributes = append(rs.Resource.Attributes, officialKV(kv))
			}
			req.ResourceSpans = append(req.ResourceSpans, rs)
		}
		sc := s.InstrumentationScope()
		ss := scopes[sc.Name+"\x00"+sc.Version]
		if ss == nil {
			ss = &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: sc.Name, Version: sc.Version}, SchemaUrl: sc.SchemaURL}
			scopes[sc.Name+"\x00"+sc.Version] = ss
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		ss.Spans = append(ss.Spans, officialSpan(s))
	}
	return req
}

func officialSpan(s sdktrace.ReadOnlySpan) *tracepb.Span {
	sc, parent := s.SpanContext(), s.Parent()
	tid, sid := sc.TraceID(), sc.SpanID()
	sp := &tracepb.Span{
		TraceId: tid[:], SpanId: sid[:], TraceState: sc.TraceState().String(), Name: s.Name(),
		Kind:              tracepb.Span_SpanKind(s.SpanKind()),
		StartTimeUnixNano: unixNano(s.StartTime()), EndTimeUnixNano: unixNano(s.EndTime()),
		DroppedAttributesCount: uint32(s.DroppedAttributes()), DroppedEventsCount: uint32(s.DroppedEvents()),
		DroppedLinksCount: uint32(s.DroppedLinks()), Flags: spanFlags(sc.TraceFlags(), parent),
	}
	if parent.HasSpanID() {
		psid := parent.SpanID()
		sp.ParentSpanId = psid[:]
	}
	for _, kv := range s.Attributes() {
		sp.Attributes = append(sp.Attributes, officialKV(kv))
	}
	for _, e := range s.Events() {
		ev := &tracepb.Span_Event{TimeUnixNano: unixNano(e.Time), Name: e.Name, DroppedAttributesCount: uint32(e.DroppedAttributeCount)}
		for _, kv := range e.Attributes {
			ev.Attributes = append(ev.Attributes, officialKV(kv))
		}
		sp.Events = append(sp.Events, ev)
	}
	for _, l := range s.Links() {
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		ln := &tracepb.Span_Link{TraceId: ltid[:], SpanId: lsid[:], TraceState: l.SpanContext.TraceState().String(),
			DroppedAttributesCount: uint32(l.DroppedAttributeCount), Flags: spanFlags(l.SpanContext.TraceFlags(), l.SpanContext)}
		for _, kv := range l.Attributes {
			ln.Attributes = append(ln.Attributes, officialKV(kv))
		}
		sp.Links = append(sp.Links, ln)
	}
	if st := s.Status(); st.Code != otelcodes.Unset {
		sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK}
		if st.Code == otelcodes.Error {
			sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: st.Description}
		}
	}
	return sp
}

func officialKV(kv attribute.KeyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: string(kv.Key), Value: officialValue(kv.Value)}
}

func officialValue(v attribute.Value) *commonpb.AnyValue {
	array := func(vs []*commonpb.AnyValue) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vs}}}
	}
	switch v.Type() {
	case attribute.BOOL:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}}
	case attribute.INT64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}}
	case attribute.FLOAT64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}}
	case attribute.STRING:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v.AsString()}}
	case attribute.BOOLSLICE:
		return array(officialValues(v.AsBoolSlice(), attribute.BoolValue))
	case attribute.INT64SLICE:
		return array(officialValues(v.AsInt64Slice(), attribute.Int64Value))
	case attribute.FLOAT64SLICE:
		return array(officialValues(v.AsFloat64Slice(), attribute.Float64Value))
	case attribute.STRINGSLICE:
		return array(officialValues(v.AsStringSlice(), attribute.StringValue))
	}
	return &commonpb.AnyValue{}
}

func officialValues[T any](vs []T, value func(T) attribute.Value) []*commonpb.AnyValue {
	out := make([]*commonpb.AnyValue, len(vs))
	for i, v := range vs {
		out[i] = officialValue(value(v))
	}
	return out
}

// Our writer and the official types say the same thing: our bytes read
// back as the request the official types build from the same spans.
func TestOTLPMatchesOfficialTypes(t *testing.T) {
	spans := recordSpans(t)
	var enc []otlpSpan
	for _, s := range spans {
		enc = append(enc, encodeOTLPSpan(s))
	}
	var got coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(otlpRequest(enc), &got); err != nil {
		t.Fatal(err)
	}
	if want := officialRequest(spans); !proto.Equal(&got, want) {
		t.Errorf("ours reads back as\n%v\nthe official types build\n%v", &got, want)
	}
}

// BenchmarkOTLPEncode writes a batch of 64 spans of the shape the sidecar
// exports (a client span with four attributes) as an
// ExportTraceServiceRequest: ours appends each span's bytes when it ends
// and the request when it is posted; "official" fills the generated
// structs and marshals them.
func BenchmarkOTLPEncode(b *testing.B) {
	span := sidecarSpan()
	batch := make([]sdktrace.ReadOnlySpan, 64)
	for i := range batch {
		batch[i] = span
	}
	b.Run("ours", func(b *testing.B) {
		b.ReportAllocs()
		enc := make([]otlpSpan, len(batch))
		for b.Loop() {
			for i, s := range batch {
				enc[i] = encodeOTLPSpan(s)
			}
			_ = otlpRequest(enc)
		}
	})
	b.Run("official", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(officialRequest(batch)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// sidecarSpan is a span of the shape the sidecar exports most: a state
// store call with its peer's attributes.
func sidecarSpan() sdktrace.ReadOnlySpan {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	return tracetest.SpanStub{
		Name: "GET statestore", SpanKind: trace.SpanKindClient, SpanContext: sc, Parent: sc,
		StartTime: time.Now(), EndTime: time.Now().Add(time.Millisecond),
		Attributes: []attribute.KeyValue{attrString("peer.service", "redis"), attrString("server.address", "127.0.0.1"),
			attrString("server.port", "6379"), attrString("db.system", "redis")},
		Resource: resource.NewSchemaless(attribute.String("service.name", "front")),
	}.Snapshot()
}
