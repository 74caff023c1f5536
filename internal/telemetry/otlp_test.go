package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-run/tandem/internal/config"
)

// recordSpans ends two spans of two tracers (scopes) on one resource: the
// first with a remote parent, attributes of every type, an event, a link
// and an error status.
func recordSpans(t *testing.T) []sdktrace.ReadOnlySpan {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "otlpapp"))))
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0x0a, 0xf7}, SpanID: trace.SpanID{0xb7}, TraceFlags: trace.FlagsSampled, Remote: true})
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{8}, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), parent)
	_, s := tp.Tracer(instrumentation).Start(ctx, "CallLocal/addapp/add", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithLinks(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.String("why", "retry")}}))
	s.SetAttributes(attribute.String("rpc.method", "add"), attribute.Int64("n", -7), attribute.Bool("ok", true),
		attribute.Float64("f", 2.5), attribute.StringSlice("ss", []string{"a", ""}), attribute.Int64Slice("is", []int64{1, 2}),
		attribute.String("empty", ""))
	s.AddEvent("retry", trace.WithAttributes(attribute.Int("attempt", 2)))
	s.SetStatus(codes.Error, "app answered 500")
	s.End()
	_, s2 := tp.Tracer("other", trace.WithInstrumentationVersion("1.2")).Start(context.Background(), "GET statestore", trace.WithSpanKind(trace.SpanKindClient))
	s2.End()
	return rec.Ended()
}

// What the exporter writes reads back, with the official OTLP types, as the
// spans that were ended.
func TestOTLPEncoding(t *testing.T) {
	spans := recordSpans(t)
	var enc []otlpSpan
	for _, s := range spans {
		enc = append(enc, encodeOTLPSpan(s))
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(otlpRequest(enc), &req); err != nil {
		t.Fatal(err)
	}
	if len(req.ResourceSpans) != 1 {
		t.Fatalf("%d ResourceSpans, want 1 (one resource)", len(req.ResourceSpans))
	}
	rs := req.ResourceSpans[0]
	if got := attrs(rs.Resource.Attributes); got["service.name"] != `string_value:"otlpapp"` {
		t.Errorf("resource %v", got)
	}
	if len(rs.ScopeSpans) != 2 || rs.ScopeSpans[0].Scope.Name != instrumentation || rs.ScopeSpans[1].Scope.Name != "other" || rs.ScopeSpans[1].Scope.Version != "1.2" {
		t.Fatalf("scopes %v", rs.ScopeSpans)
	}
	sp := rs.ScopeSpans[0].Spans[0]
	want := spans[0]
	tid, sid, psid := want.SpanContext().TraceID(), want.SpanContext().SpanID(), want.Parent().SpanID()
	if string(sp.TraceId) != string(tid[:]) || string(sp.SpanId) != string(sid[:]) || string(sp.ParentSpanId) != string(psid[:]) {
		t.Errorf("ids %x %x %x", sp.TraceId, sp.SpanId, sp.ParentSpanId)
	}
	if sp.Name != "CallLocal/addapp/add" || sp.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("name %q kind %v", sp.Name, sp.Kind)
	}
	if sp.StartTimeUnixNano != uint64(want.StartTime().UnixNano()) || sp.EndTimeUnixNano != uint64(want.EndTime().UnixNano()) {
		t.Errorf("times %d %d", sp.StartTimeUnixNano, sp.EndTimeUnixNano)
	}
	got := attrs(sp.Attributes)
	for k, v := range map[string]string{
		"rpc.method": `string_value:"add"`, "n": `int_value:-7`, "ok": `bool_value:true`, "f": `double_value:2.5`,
		"ss": `array_value:{values:{string_value:"a"} values:{string_value:""}}`, "is": `array_value:{values:{int_value:1} values:{int_value:2}}`,
		"empty": `string_value:""`,
	} {
		if strings.Join(strings.Fields(got[k]), " ") != v {
			t.Errorf("attribute %s = %s, want %s", k, got[k], v)
		}
	}
	if len(sp.Events) != 1 || sp.Events[0].Name != "retry" || attrs(sp.Events[0].Attributes)["attempt"] != "int_value:2" {
		t.Errorf("events %v", sp.Events)
	}
	if len(sp.Links) != 1 || sp.Links[0].SpanId[0] != 8 || attrs(sp.Links[0].Attributes)["why"] != `string_value:"retry"` {
		t.Errorf("links %v", sp.Links)
	}
	if sp.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || sp.Status.GetMessage() != "app answered 500" {
		t.Errorf("status %v", sp.Status)
	}
	if sp.Flags != 0x301 { // sampled, parent's remoteness known, parent remote
		t.Errorf("flags %#x", sp.Flags)
	}
	if c := rs.ScopeSpans[1].Spans[0]; c.Kind != tracepb.Span_SPAN_KIND_CLIENT || c.ParentSpanId != nil || c.Status != nil || c.Flags != 0x101 {
		t.Errorf("second span %v", c)
	}
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// exportOne sends the recorded spans through an OTLP processor for s and
// returns the drops counted.
func exportOne(t *testing.T, s config.TracingSettings) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := newOTLPProcessor(s, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range recordSpans(t) {
		p.OnEnd(sp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	return reg
}

func dropped(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.Counter.GetValue()
				}
			}
		}
	}
	return 0
}

// OTLP/HTTP: the request a collector decodes; a refusal drops the spans
// and counts them; an answer to send again later keeps them.
func TestOTLPHTTPExport(t *testing.T) {
	var mu sync.Mutex
	var got []*tracepb.Span
	answer := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(b, &req) != nil {
			http.Error(w, "bad request to "+r.URL.Path, http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if answer != http.StatusOK {
			w.WriteHeader(answer)
			return
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				got = append(got, ss.Spans...)
			}
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	reg := exportOne(t, config.TracingSettings{OTLPEndpoint: host, OTLPInsecure: true, OTLPProtocol: "http"})
	if len(got) != 2 || got[0].Name != "CallLocal/addapp/add" {
		t.Fatalf("the collector got %v", got)
	}
	if n := dropped(t, reg, "collector_rejected") + dropped(t, reg, "collector_unreachable"); n != 0 {
		t.Errorf("%v dropped", n)
	}
	// A URL with a path is taken as it is.
	reg = exportOne(t, config.TracingSettings{OTLPEndpoint: srv.URL + "/other", OTLPProtocol: "http"})
	if n := dropped(t, reg, "collector_rejected"); n != 2 {
		t.Errorf("a post to /other: %v rejected, want 2", n)
	}
	mu.Lock()
	answer = http.StatusServiceUnavailable
	mu.Unlock()
	reg = exportOne(t, config.TracingSettings{OTLPEndpoint: host, OTLPInsecure: true, OTLPProtocol: "http"})
	if n := dropped(t, reg, "collector_rejected"); n != 0 {
		t.Errorf("503: %v rejected, want the spans kept to send again", n)
	}
}

type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	mu     sync.Mutex
	spans  []*tracepb.Span
	refuse bool
}

func (s *traceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	if s.refuse {
		return nil, status.Error(grpccodes.InvalidArgument, "no spans wanted")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			s.spans = append(s.spans, ss.Spans...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// OTLP/gRPC: TraceService/Export with the request a collector decodes; a
// refusal drops the spans and counts them.
func TestOTLPGRPCExport(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &traceService{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, svc)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	reg := exportOne(t, config.TracingSettings{OTLPEndpoint: ln.Addr().String(), OTLPInsecure: true, OTLPProtocol: "grpc"})
	svc.mu.Lock()
	n := len(svc.spans)
	svc.mu.Unlock()
	if n != 2 || dropped(t, reg, "collector_rejected") != 0 {
		t.Fatalf("the collector got %d spans", n)
	}
	svc.refuse = true
	reg = exportOne(t, config.TracingSettings{OTLPEndpoint: "http://" + ln.Addr().String(), OTLPProtocol: "grpc"})
	if n := dropped(t, reg, "collector_rejected"); n != 2 {
		t.Errorf("%v rejected, want 2", n)
	}
}

func TestOTLPEndpoints(t *testing.T) {
	for _, c := range []struct {
		endpoint  string
		plaintext bool
		want      string
	}{
		{"collector:4318", true, "http://collector:4318/v1/traces"},
		{"collector:4318", false, "https://collector:4318/v1/traces"},
		{"https://collector:4318", true, "https://collector:4318/v1/traces"},
		{"http://collector/custom/path", false, "http://collector/custom/path"},
		{"ftp://collector", true, ""},
		{"http://", true, ""},
	} {
		got, err := otlpHTTPURL(c.endpoint, c.plaintext)
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("otlpHTTPURL(%q, %v) = %q, %v; want %q", c.endpoint, c.plaintext, got, err, c.want)
		}
	}
	if _, _, err := otlpGRPCTarget("collector", true); err == nil {
		t.Error("a gRPC endpoint without a port was taken")
	}
	for _, c := range []struct {
		endpoint  string
		plaintext bool
		want      string
	}{
		{"collector:4317", true, "insecure"},
		{"collector:4317", false, "tls"},
		{"https://collector:4317", true, "tls"}, // a URL's scheme says
		{"http://collector:4317", false, "insecure"},
	} {
		target, creds, err := otlpGRPCTarget(c.endpoint, c.plaintext)
		if err != nil || target != "collector:4317" || creds.Info().SecurityProtocol != c.want {
			t.Errorf("otlpGRPCTarget(%q, %v): %q %v %v; want %s", c.endpoint, c.plaintext, target, creds.Info(), err, c.want)
		}
	}
}

// While the collector takes a post and holds it, exportQueue spans more
// are queued and every span beyond is dropped and counted; once it
// answers, the queue is posted and nothing else is lost.
func TestOTLPQueueFullWhileThePostWaits(t *testing.T) {
	checkQueueFullWhileThePostWaits(t, func(url string) config.TracingSettings {
		return config.TracingSettings{SamplingRate: 1, OTLPEndpoint: url, OTLPProtocol: "http"}
	}, func(body []byte) (int, error) {
		var req coltracepb.ExportTraceServiceRequest
		n := 0
		err := proto.Unmarshal(body, &req)
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				n += len(ss.Spans)
			}
		}
		return n, err
	})
}

// With no collector listening, exportBacklog spans are kept to send again
// and every span beyond is dropped and counted, the oldest first.
func TestOTLPCollectorDownHoldsABoundedBacklog(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := ln.Addr().String()
	ln.Close() // nothing listens: every post fails
	reg := prometheus.NewRegistry()
	p, err := newOTLPProcessor(config.TracingSettings{OTLPEndpoint: endpoint, OTLPInsecure: true, OTLPProtocol: "http"}, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	spans := recordSpans(t)
	const ended = 3 * (exportQueue + exportBacklog)
	for i := range ended {
		p.OnEnd(spans[i%len(spans)])
		if i%(exportQueue/2) == 0 {
			if err := p.ForceFlush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.exp.mu.Lock()
	kept := len(p.exp.pending)
	p.exp.mu.Unlock()
	if kept != exportBacklog {
		t.Errorf("%d spans kept, want %d", kept, exportBacklog)
	}
	if n := dropped(t, reg, "collector_unreachable") + dropped(t, reg, "queue_full"); n != ended-exportBacklog {
		t.Errorf("%v dropped, want %d", n, ended-exportBacklog)
	}
}
