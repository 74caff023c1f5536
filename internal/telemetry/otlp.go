package telemetry

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdkscope "go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tandem-run/tandem/internal/config"
)

// OTLP export (export.go has what it shares with Zipkin): each span is
// written as OTLP's Span message when it is exported (protowire, by field
// number, as opentelemetry/proto/trace/v1/trace.proto numbers them), and a
// post is an ExportTraceServiceRequest of them, grouped by resource and
// instrumentation scope, over HTTP (POST to <endpoint>/v1/traces,
// application/x-protobuf) or gRPC (TraceService/Export).

// otlpExportMethod is the collector's gRPC method.
const otlpExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// newOTLPProcessor exports to the OTLP collector of s.
func newOTLPProcessor(s config.TracingSettings, logger *slog.Logger, reg prometheus.Registerer) (*queueProcessor[otlpSpan], error) {
	b := &backlog[otlpSpan]{drops: newDrops(s.OTLPEndpoint, logger, reg)}
	if s.OTLPProtocol == "grpc" {
		target, creds, err := otlpGRPCTarget(s.OTLPEndpoint, s.OTLPInsecure)
		if err != nil {
			return nil, err
		}
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, fmt.Errorf("spec.tracing.otel: endpointAddress %q: %w", s.OTLPEndpoint, err)
		}
		b.post = func(ctx context.Context, spans []otlpSpan) error { return otlpPostGRPC(ctx, conn, target, spans) }
		b.close = func() { _ = conn.Close() }
	} else {
		u, err := otlpHTTPURL(s.OTLPEndpoint, s.OTLPInsecure)
		if err != nil {
			return nil, err
		}
		client := collectorClient()
		b.post = func(ctx context.Context, spans []otlpSpan) error { return otlpPostHTTP(ctx, client, u, spans) }
		b.close = client.CloseIdleConnections
	}
	return newQueueProcessor(encodeOTLPSpan, b), nil
}

// otlpHTTPURL is where spans are posted: endpointAddress as a URL (its
// path, or /v1/traces when it has none), or host:port with the scheme
// isSecure says.
func otlpHTTPURL(endpoint string, plaintext bool) (string, error) {
	if !strings.Contains(endpoint, "://") {
		scheme := "https"
		if plaintext {
			scheme = "http"
		}
		endpoint = scheme + "://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("spec.tracing.otel: endpointAddress %q is neither host:port nor an http(s) URL", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// otlpGRPCTarget is the collector's host:port and the transport's
// credentials: as the URL's scheme says when endpointAddress is one, else
// TLS unless isSecure is false.
func otlpGRPCTarget(endpoint string, plaintext bool) (string, credentials.TransportCredentials, error) {
	host := endpoint
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" {
			return "", nil, fmt.Errorf("spec.tracing.otel: endpointAddress %q is neither host:port nor a URL", endpoint)
		}
		host = u.Host
		plaintext = u.Scheme == "http"
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		return "", nil, fmt.Errorf("spec.tracing.otel: endpointAddress %q: %v", endpoint, err)
	}
	if plaintext {
		return host, insecure.NewCredentials(), nil
	}
	return host, credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12}), nil
}

func otlpPostHTTP(ctx context.Context, client *http.Client, u string, spans []otlpSpan) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(otlpRequest(spans)))
	if err != nil {
		return fmt.Errorf("otlp: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("otlp: %w", err) // it names the endpoint
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusBadGateway ||
		resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout:
		// OTLP/HTTP's answers to send again later.
		return fmt.Errorf("otlp: %s answered %s", u, resp.Status)
	}
	body := ""
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); strings.HasPrefix(mt, "text/") || mt == "application/json" {
		body = strings.TrimSpace(string(msg))
	}
	return &rejectedError{protocol: "otlp", endpoint: u, status: resp.Status, body: body}
}

func otlpPostGRPC(ctx context.Context, conn *grpc.ClientConn, target string, spans []otlpSpan) error {
	ctx, cancel := context.WithTimeout(ctx, exportTimeout)
	defer cancel()
	var answer rawMessage
	err := conn.Invoke(ctx, otlpExportMethod, rawMessage(otlpRequest(spans)), &answer, grpc.ForceCodecV2(rawCodec{}))
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Canceled:
		// OTLP/gRPC's answers to send again later.
		return fmt.Errorf("otlp: %s: %w", target, err)
	}
	st := status.Convert(err)
	return &rejectedError{protocol: "otlp", endpoint: target, status: st.Code().String(), body: st.Message()}
}

// otlpSpan is a span written as OTLP's Span message, with what groups it
// in a request.
type otlpSpan struct {
	res   *resource.Resource
	scope sdkscope.Scope
	b     []byte
}

// otlpRequest writes an ExportTraceServiceRequest of spans: a
// ResourceSpans for each resource, a ScopeSpans in it for each scope, in
// the order they first come.
func otlpRequest(spans []otlpSpan) []byte {
	type group struct {
		res    *resource.Resource
		scopes []sdkscope.Scope
		spans  [][][]byte // by scope
	}
	var groups []*group
	for i, s := range spans {
		var g *group
		for _, c := range groups {
			if c.res == s.res {
				g = c
				break
			}
		}
		if g == nil {
			g = &group{res: s.res}
			groups = append(groups, g)
		}
		j := 0
		for j < len(g.scopes) && !sameScope(g.scopes[j], s.scope) {
			j++
		}
		if j == len(g.scopes) {
			g.scopes = append(g.scopes, s.scope)
			g.spans = append(g.spans, nil)
		}
		g.spans[j] = append(g.spans[j], s.b)
		yieldEvery(i)
	}
	size := 0
	for _, s := range spans {
		size += len(s.b) + 8
	}
	out := make([]byte, 0, size+256)
	for _, g := range groups {
		var rs []byte
		var res []byte
		if g.res != nil {
			for _, kv := range g.res.Attributes() {
				res = appendKeyValue(res, 1, kv)
			}
		}
		rs = appendMessage(rs, 1, res) // Resource
		for j, sc := range g.scopes {
			var ss, scope []byte
			scope = appendPBString(scope, 1, sc.Name)
			scope = appendPBString(scope, 2, sc.Version)
			for _, kv := range sc.Attributes.ToSlice() {
				scope = appendKeyValue(scope, 3, kv)
			}
			ss = appendMessage(ss, 1, scope) // InstrumentationScope
			for _, b := range g.spans[j] {
				ss = appendMessage(ss, 2, b)
			}
			ss = appendPBString(ss, 3, sc.SchemaURL)
			rs = appendMessage(rs, 2, ss) // ScopeSpans
		}
		if g.res != nil {
			rs = appendPBString(rs, 3, g.res.SchemaURL())
		}
		out = appendMessage(out, 1, rs) // ResourceSpans
	}
	return out
}

func sameScope(a, b sdkscope.Scope) bool {
	return a.Name == b.Name && a.Version == b.Version && a.SchemaURL == b.SchemaURL && a.Attributes.Equals(&b.Attributes)
}

// encodeOTLPSpan writes s as OTLP's Span message.
func encodeOTLPSpan(s endedSpan) otlpSpan {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b := make([]byte, 0, 256)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, tid[:])
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, sid[:])
	b = appendPBString(b, 3, sc.TraceState().String())
	parent := s.Parent()
	if parent.HasSpanID() {
		psid := parent.SpanID()
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, psid[:])
	}
	b = appendPBString(b, 5, s.Name())
	b = appendVarint(b, 6, uint64(s.SpanKind())) // OTLP numbers the kinds as OpenTelemetry does
	b = protowire.AppendTag(b, 7, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, unixNano(s.StartTime()))
	b = protowire.AppendTag(b, 8, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, unixNano(s.EndTime()))
	for _, kv := range s.Attributes() {
		b = appendKeyValue(b, 9, kv)
	}
	b = appendVarint(b, 10, uint64(s.DroppedAttributes()))
	for _, e := range s.Events() {
		var m []byte
		m = protowire.AppendTag(m, 1, protowire.Fixed64Type)
		m = protowire.AppendFixed64(m, unixNano(e.Time))
		m = appendPBString(m, 2, e.Name)
		for _, kv := range e.Attributes {
			m = appendKeyValue(m, 3, kv)
		}
		m = appendVarint(m, 4, uint64(e.DroppedAttributeCount))
		b = appendMessage(b, 11, m)
	}
	b = appendVarint(b, 12, uint64(s.DroppedEvents()))
	for _, l := range s.Links() {
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		var m []byte
		m = protowire.AppendTag(m, 1, protowire.BytesType)
		m = protowire.AppendBytes(m, ltid[:])
		m = protowire.AppendTag(m, 2, protowire.BytesType)
		m = protowire.AppendBytes(m, lsid[:])
		m = appendPBString(m, 3, l.SpanContext.TraceState().String())
		for _, kv := range l.Attributes {
			m = appendKeyValue(m, 4, kv)
		}
		m = appendVarint(m, 5, uint64(l.DroppedAttributeCount))
		m = protowire.AppendTag(m, 6, protowire.Fixed32Type)
		m = protowire.AppendFixed32(m, spanFlags(l.SpanContext.TraceFlags(), l.SpanContext))
		b = appendMessage(b, 13, m)
	}
	b = appendVarint(b, 14, uint64(s.DroppedLinks()))
	if st := s.Status(); st.Code != otelcodes.Unset {
		var m []byte
		code := uint64(1) // STATUS_CODE_OK
		if st.Code == otelcodes.Error {
			code = 2 // STATUS_CODE_ERROR
			m = appendPBString(m, 2, st.Description)
		}
		m = appendVarint(m, 3, code)
		b = appendMessage(b, 15, m)
	}
	b = protowire.AppendTag(b, 16, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, spanFlags(sc.TraceFlags(), parent))
	return otlpSpan{res: s.Resource(), scope: s.InstrumentationScope(), b: b}
}

// spanFlags is Span.flags: the W3C trace flags, and whether the parent
// (or a link's span) is remote, which is known.
func spanFlags(tf interface{ IsSampled() bool }, other interface{ IsRemote() bool }) uint32 {
	flags := uint32(0x100) // SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
	if tf.IsSampled() {
		flags |= 0x01
	}
	if other.IsRemote() {
		flags |= 0x200 // SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
	}
	return flags
}

func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}

// appendPBString appends a string field, unless it is empty (proto3's
// default).
func appendPBString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendVarint appends a varint field, unless it is 0.
func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendMessage appends m as the message field num.
func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

// appendKeyValue appends kv as the KeyValue field num.
func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	var m []byte
	m = appendPBString(m, 1, string(kv.Key))
	m = appendMessage(m, 2, anyValue(kv.Value))
	return appendMessage(b, num, m)
}

// anyValue writes v as OTLP's AnyValue; a slice is an ArrayValue of them.
func anyValue(v attribute.Value) []byte {
	var m []byte
	switch v.Type() {
	case attribute.BOOL:
		m = protowire.AppendTag(m, 2, protowire.VarintType)
		m = protowire.AppendVarint(m, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		m = protowire.AppendTag(m, 3, protowire.VarintType)
		m = protowire.AppendVarint(m, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		m = protowire.AppendTag(m, 4, protowire.Fixed64Type)
		m = protowire.AppendFixed64(m, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		m = protowire.AppendTag(m, 1, protowire.BytesType)
		m = protowire.AppendString(m, v.AsString())
	case attribute.BOOLSLICE:
		m = appendArray(m, v.AsBoolSlice(), attribute.BoolValue)
	case attribute.INT64SLICE:
		m = appendArray(m, v.AsInt64Slice(), attribute.Int64Value)
	case attribute.FLOAT64SLICE:
		m = appendArray(m, v.AsFloat64Slice(), attribute.Float64Value)
	case attribute.STRINGSLICE:
		m = appendArray(m, v.AsStringSlice(), attribute.StringValue)
	}
	return m
}

func appendArray[T any](b []byte, vs []T, value func(T) attribute.Value) []byte {
	var arr []byte
	for _, v := range vs {
		arr = appendMessage(arr, 1, anyValue(value(v)))
	}
	return appendMessage(b, 5, arr) // AnyValue.array_value
}

// rawMessage is a gRPC message already written (or to be read) as bytes.
type rawMessage []byte

// rawCodec passes rawMessage as it is.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(rawMessage)
	if !ok {
		return nil, errors.New("otlp: not a raw message")
	}
	return mem.BufferSlice{mem.SliceBuffer(m)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMessage)
	if !ok {
		return errors.New("otlp: not a raw message")
	}
	*m = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
