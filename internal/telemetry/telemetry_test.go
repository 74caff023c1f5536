package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
)

// recording returns a Tracing that samples everything into a recorder.
func recording(t *testing.T, appID string) (*Tracing, *recorder) {
	rec := &recorder{}
	tp := newSpanProvider(appID, 1, rec)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := &Tracing{prop: Propagator(), appID: appID}
	tr.cur.Store(&provider{tp: tp, tracer: tp.tracer})
	return tr, rec
}

// recorder keeps the spans that end.
type recorder struct {
	mu    sync.Mutex
	spans []endedSpan
}

func (r *recorder) OnEnd(s endedSpan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = append(r.spans, s)
}

func (r *recorder) ForceFlush(context.Context) error { return nil }
func (r *recorder) Shutdown(context.Context) error   { return nil }

// Ended is the spans ended so far, in the order they ended.
func (r *recorder) Ended() []endedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestHopServerAnswersATraceparentOnlyWhenNoneCame: a peer sidecar that
// sends a traceparent puts its own span's on its app's answer, so the hop
// does not carry the callee's back; a caller that sends none gets it.
func TestHopServerAnswersATraceparentOnlyWhenNoneCame(t *testing.T) {
	tr, rec := recording(t, "addapp")
	h := tr.HopServer("addapp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	for _, sent := range []string{parent, ""} {
		req := httptest.NewRequest("POST", "/add", nil)
		if sent != "" {
			req.Header.Set("traceparent", sent)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		spans := rec.Ended()
		s := spans[len(spans)-1]
		got := w.Result().Header.Get("Traceparent")
		if sent != "" {
			if got != "" || s.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Errorf("called with a traceparent: answered %q, span's parent %v", got, s.Parent())
			}
			continue
		}
		if want := "00-" + s.SpanContext().TraceID().String() + "-" + s.SpanContext().SpanID().String() + "-01"; got != want {
			t.Errorf("called without a traceparent: answered %q, want the span's %q", got, want)
		}
	}
}

func TestHTTPServerContinuesTheAppsTrace(t *testing.T) {
	tr, rec := recording(t, "front")
	var seen trace.SpanContext
	h := tr.HTTPServer(func(r *http.Request) string { return "CallLocal/addapp/add" }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = trace.SpanContextFromContext(r.Context())
		w.Header().Set("Traceparent", "00-11111111111111111111111111111111-2222222222222222-01") // from downstream
		w.WriteHeader(http.StatusCreated)
	}))
	req := httptest.NewRequest("POST", "/v1.0/invoke/addapp/method/add", nil)
	req.Header.Set("traceparent", parent)
	req.Header.Set("baggage", "tenant=blue")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)

	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	if s.Name() != "CallLocal/addapp/add" || s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span %q kind %s", s.Name(), s.SpanKind())
	}
	if s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("span is not the app's trace's child: trace %s parent %s", s.SpanContext().TraceID(), s.Parent().SpanID())
	}
	if seen.SpanID() != s.SpanContext().SpanID() {
		t.Error("the handler does not see the server span in its context")
	}
	// The answer carries this span's traceparent, not the downstream one.
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + s.SpanContext().SpanID().String() + "-01"
	if got := w.Header().Values("Traceparent"); len(got) != 1 || got[0] != want {
		t.Errorf("response traceparent %v, want %s", got, want)
	}
	if v := attr(s, attrHTTPStatus); v != "201" {
		t.Errorf("status attribute %q", v)
	}
}

func TestHTTPServerAcceptsB3AndStartsNewTraces(t *testing.T) {
	tr, rec := recording(t, "front")
	var fwd http.Header
	h := tr.HTTPServer(func(*http.Request) string { return "x" }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fwd = r.Header.Clone()
		w.WriteHeader(http.StatusInternalServerError)
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124")
	req.Header.Set("X-B3-SpanId", "a2fb4a1d1a96d312")
	req.Header.Set("X-B3-Sampled", "1")
	h.ServeHTTP(httptest.NewRecorder(), req)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	if spans[0].SpanContext().TraceID().String() != "463ac35c9f6413ad48485a3953bb6124" || spans[0].Parent().SpanID().String() != "a2fb4a1d1a96d312" {
		t.Errorf("B3 context not continued: %s %s", spans[0].SpanContext().TraceID(), spans[0].Parent().SpanID())
	}
	if fwd.Get("X-B3-TraceId") != "" {
		t.Error("B3 headers are passed on after being read")
	}
	if spans[1].Parent().IsValid() || spans[1].SpanContext().TraceID() == spans[0].SpanContext().TraceID() {
		t.Error("a call without context does not start a new trace")
	}
	if spans[0].Status().Code != codes.Error {
		t.Errorf("a 500 leaves the span status %v", spans[0].Status())
	}
}

func TestHTTPClientInjectsAndEndsWithTheBody(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		_, _ = io.WriteString(w, "body")
	}))
	defer srv.Close()
	tr, rec := recording(t, "front")
	rt := tr.HTTPClient(func(*http.Request) string { return "CallLocal/addapp/add" },
		func(*http.Request) string { return "addapp" }, http.DefaultTransport)
	ctx, parentSpan := tr.provider().tracer.Start(context.Background(), "api")
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("the client span ended before the body was read (%d ended)", n)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	parentSpan.End()
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	c := spans[0]
	if c.SpanKind() != trace.SpanKindClient || c.Parent().SpanID() != parentSpan.SpanContext().SpanID() {
		t.Errorf("client span kind %s parent %s", c.SpanKind(), c.Parent().SpanID())
	}
	if !strings.Contains(got.Get("Traceparent"), c.SpanContext().SpanID().String()) {
		t.Errorf("sent traceparent %q does not name the client span %s", got.Get("Traceparent"), c.SpanContext().SpanID())
	}

	// A failed connection is an error span.
	req, _ = http.NewRequest("GET", "http://127.0.0.1:1/", nil)
	if _, err := rt.RoundTrip(req); err == nil {
		t.Fatal("no error from port 1")
	}
	if s := rec.Ended()[2]; s.Status().Code != codes.Error {
		t.Errorf("failed call status %v", s.Status())
	}
}

func TestStoreSpans(t *testing.T) {
	tr, rec := recording(t, "app")
	svc := state.NewService("app", "")
	if err := svc.Add(state.StoreConfig{Name: "statestore", Type: "state.in-memory", Store: memory.New(0)}); err != nil {
		t.Fatal(err)
	}
	svc.Use(tr.StateMiddleware())
	ctx := context.Background()
	_ = svc.Save(ctx, "statestore", []state.SetRequest{{Key: "k", Value: []byte("v")}})
	bad := "999"
	err := svc.Save(ctx, "statestore", []state.SetRequest{{Key: "k", Value: []byte("v"), ETag: &bad}})
	if err == nil {
		t.Fatal("a stale etag was accepted")
	}
	_, _ = svc.Get(ctx, "statestore", "k")
	spans := rec.Ended()
	if len(spans) != 3 || spans[0].Name() != "SET statestore" || spans[2].Name() != "GET statestore" {
		t.Fatalf("spans %v", names(spans))
	}
	if attr(spans[2], "db.system.name") != "in-memory" || attr(spans[2], "db.operation.name") != "GET" || attr(spans[2], "db.namespace") != "statestore" {
		t.Errorf("attributes %v", spans[2].Attributes())
	}
	if spans[1].Status().Code == codes.Error {
		t.Error("an ETag conflict marks the store span as failed")
	}
	ops := []state.Op{{Delete: &state.DeleteRequest{Key: "k"}}, {Delete: &state.DeleteRequest{Key: "j"}}}
	if err := svc.Transact(ctx, "statestore", ops); err != nil {
		t.Fatal(err)
	}
	if s := rec.Ended()[3]; s.Name() != "TRANSACTION statestore" || attr(s, "db.operation.batch.size") != "2" {
		t.Errorf("transaction span %s %v", s.Name(), s.Attributes())
	}
	// Off: no middleware.
	var off *Tracing
	if off.StateMiddleware() != nil {
		t.Error("with tracing off store calls are traced")
	}
}

func TestStoreMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics("app", reg)
	svc := state.NewService("app", "")
	if err := svc.Add(state.StoreConfig{Name: "statestore", Type: "state.in-memory", Store: memory.New(0)}); err != nil {
		t.Fatal(err)
	}
	svc.Use(m.StateMiddleware())
	ctx := context.Background()
	_ = svc.Save(ctx, "statestore", []state.SetRequest{{Key: "k", Value: []byte("v")}})
	bad := "999"
	_ = svc.Delete(ctx, "statestore", state.DeleteRequest{Key: "k", ETag: &bad})
	_, _ = svc.Get(ctx, "statestore", "k")
	_ = svc.Transact(ctx, "statestore", []state.Op{{Delete: &state.DeleteRequest{Key: "k"}}})
	for _, c := range []struct{ op, outcome string }{{"set", "ok"}, {"delete", "conflict"}, {"get", "ok"}, {"transaction", "ok"}} {
		if n := testutil.ToFloat64(m.stateOps.WithLabelValues("app", "statestore", c.op, c.outcome)); n != 1 {
			t.Errorf("%s %s counted %v times, want 1", c.op, c.outcome, n)
		}
	}
	if (*Metrics)(nil).StateMiddleware() != nil {
		t.Error("without metrics store calls are counted")
	}
}

func TestSamplingRateZeroTurnsTracingOff(t *testing.T) {
	tr, err := NewTracing(config.TracingSettings{SamplingRate: 0, ZipkinEndpoint: "http://127.0.0.1:1/api/v2/spans"}, Options{AppID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() {
		t.Fatal("rate 0 is enabled")
	}
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if got := tr.HTTPServer(func(*http.Request) string { return "" }, h); got == nil || tr.GRPCServerOptions() != nil {
		t.Error("an untraced sidecar gets wrappers")
	}
}

func attr(s endedSpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func names(spans []endedSpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func attrString(k, v string) attribute.KeyValue { return attribute.String(k, v) }

// A reloadable Tracing installs its wrappers while off; Update turns
// tracing on and off for the calls that start after it.
func TestUpdate(t *testing.T) {
	var logs syncbuf.Buffer
	tr, err := NewTracing(config.TracingSettings{}, Options{AppID: "front", Reloadable: true, Drain: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h := tr.HTTPServer(func(r *http.Request) string { return "span-" + r.URL.Path[1:] }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	call := func(n string) { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/"+n, nil)) }
	call("1")
	if err := tr.Update(config.TracingSettings{SamplingRate: 1, Stdout: true}); err != nil {
		t.Fatal(err)
	}
	if !tr.Enabled() {
		t.Error("after Update: tracing is off")
	}
	call("2")
	if err := tr.Update(config.TracingSettings{SamplingRate: 0, Stdout: true}); err != nil {
		t.Fatal(err)
	}
	call("3")
	l := logs.String()
	if strings.Contains(l, "span-1") || !strings.Contains(l, "span-2") || strings.Contains(l, "span-3") {
		t.Errorf("log %s; want a span for the call made while tracing was on only", l)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := tr.Update(config.TracingSettings{SamplingRate: 1, Stdout: true}); err == nil {
		t.Error("Update after Shutdown: no error")
	}
	fixed, _ := NewTracing(config.TracingSettings{}, Options{})
	if err := fixed.Update(config.TracingSettings{SamplingRate: 1, Stdout: true}); err == nil {
		t.Error("Update of a Tracing made without Reloadable: no error")
	}
	if fixed.StateMiddleware() != nil {
		t.Error("a Tracing off and not reloadable has store middleware")
	}
}
