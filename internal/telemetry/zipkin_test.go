package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"
	"github.com/openzipkin/zipkin-go/reporter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
)

// collector is a Zipkin v2 API endpoint that keeps what it is sent.
type collector struct {
	mu      sync.Mutex
	spans   []map[string]any
	status  int // if not 0, the answer to every post, which is refused
	refused int // spans in posts refused
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var batch []map[string]any
	if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status != 0 {
		c.refused += len(batch)
		w.WriteHeader(c.status)
		return
	}
	c.spans = append(c.spans, batch...)
	w.WriteHeader(http.StatusAccepted)
}

func TestZipkinExport(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	tr, err := NewTracing(config.TracingSettings{SamplingRate: 1, ZipkinEndpoint: srv.URL + "/api/v2/spans"}, Options{AppID: "front"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, root := tr.provider().tracer.Start(context.Background(), "CallLocal/addapp/add", trace.WithSpanKind(trace.SpanKindServer))
	_, child := tr.provider().tracer.Start(ctx, "GET statestore", trace.WithSpanKind(trace.SpanKindClient))
	child.SetAttributes(attrString("peer.service", "redis"), attrString("server.address", "127.0.0.1"), attrString("server.port", "6379"))
	child.SetStatus(codes.Error, "redis down")
	child.End()
	root.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.spans) != 2 {
		t.Fatalf("collector got %d spans", len(col.spans))
	}
	c, r := col.spans[0], col.spans[1]
	// Zipkin names are lower case (zipkin-go writes them so, as Zipkin does).
	if r["name"] != "calllocal/addapp/add" || r["kind"] != "SERVER" || r["parentId"] != nil {
		t.Errorf("root %v", r)
	}
	if c["parentId"] != r["id"] || c["traceId"] != r["traceId"] || c["kind"] != "CLIENT" {
		t.Errorf("child %v of root %v", c, r)
	}
	if r["traceId"] != root.SpanContext().TraceID().String() || r["id"] != root.SpanContext().SpanID().String() {
		t.Errorf("ids %v %v, want %s %s", r["traceId"], r["id"], root.SpanContext().TraceID(), root.SpanContext().SpanID())
	}
	if le := c["localEndpoint"].(map[string]any); le["serviceName"] != "front" {
		t.Errorf("local endpoint %v", le)
	}
	if re := c["remoteEndpoint"].(map[string]any); re["serviceName"] != "redis" || re["ipv4"] != "127.0.0.1" || re["port"] != float64(6379) {
		t.Errorf("remote endpoint %v", re)
	}
	if tags := c["tags"].(map[string]any); tags["error"] != "redis down" || tags["otel.status_code"] != "ERROR" {
		t.Errorf("tags %v", tags)
	}
}

func TestZipkinDropsAreCountedAndLogged(t *testing.T) {
	// A collector that refuses every batch.
	col := &collector{status: http.StatusServiceUnavailable}
	srv := httptest.NewServer(col)
	defer srv.Close()
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	reg := prometheus.NewRegistry()
	tr, err := NewTracing(config.TracingSettings{SamplingRate: 1, ZipkinEndpoint: srv.URL}, Options{AppID: "a", Logger: logger, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		_, s := tr.provider().tracer.Start(context.Background(), "x")
		s.End()
	}
	_ = tr.Shutdown(context.Background())
	n := testutil.ToFloat64(counterOf(t, reg, "collector_rejected"))
	if n != 10 {
		t.Errorf("collector_rejected = %v, want 10", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "dropping spans") || !strings.Contains(logs.String(), "503") {
		t.Errorf("log: %s", logs.String())
	}
}

func TestZipkinCollectorDownNeverBlocks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every post fails
	reg := prometheus.NewRegistry()
	tr, err := NewTracing(config.TracingSettings{SamplingRate: 1, ZipkinEndpoint: "http://" + addr + "/api/v2/spans"}, Options{AppID: "a", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3 * (exportQueue + exportBacklog)
	for range n {
		_, s := tr.provider().tracer.Start(context.Background(), "x")
		s.End()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = tr.provider().tp.ForceFlush(ctx)
	// Let the reporter take the queue in and fail a post.
	deadline := time.Now().Add(10 * time.Second)
	var dropped float64
	for time.Now().Before(deadline) {
		dropped = testutil.ToFloat64(counterOf(t, reg, "queue_full")) + testutil.ToFloat64(counterOf(t, reg, "collector_unreachable"))
		if dropped >= n-exportBacklog-exportQueue {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dropped < n-exportBacklog-exportQueue {
		t.Errorf("dropped %v of %d spans; at most %d can be held", dropped, n, exportBacklog+exportQueue)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer scancel()
	_ = tr.Shutdown(sctx)
}

// While the collector cannot be reached, what the exporter holds stays
// bounded however many spans end: exportQueue spans waiting and
// exportBacklog kept, in as many bytes as they take written; every span
// beyond is dropped and counted.
func TestZipkinCollectorDownHoldsBoundedMemory(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String() + "/api/v2/spans"
	ln.Close() // nothing listens: every post fails
	reg := prometheus.NewRegistry()
	p, err := newZipkinProcessor(endpoint, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	tp := newSpanProvider("front", 1, p)
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("test")
	end := func() {
		_, s := tracer.Start(context.Background(), "CallLocal/addapp/add", trace.WithSpanKind(trace.SpanKindClient))
		s.SetAttributes(attrString("peer.service", "addapp"), attrString("server.address", "127.0.0.1"), attribute.Int("server.port", 50002))
		s.End()
	}
	const ended = 5 * (exportQueue + exportBacklog)
	for i := range ended {
		end()
		if i%(exportQueue/2) == 0 {
			if err := tp.ForceFlush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, one := tracer.Start(context.Background(), "CallLocal/addapp/add", trace.WithSpanKind(trace.SpanKindClient))
	one.SetAttributes(attrString("peer.service", "addapp"), attrString("server.address", "127.0.0.1"), attribute.Int("server.port", 50002))
	one.End()
	size := int64(len(appendZipkinSpan(nil, one.(endedSpan))) + 1)
	kept, bytes, queued := p.kept.Load(), p.keptBytes.Load(), p.queued.Load()
	if kept != exportBacklog || queued > exportQueue {
		t.Errorf("kept %d spans and %d queued, want %d kept and at most %d queued", kept, queued, exportBacklog, exportQueue)
	}
	if bytes > kept*(size+16) { // +16: the times' digits vary
		t.Errorf("%d bytes kept for %d spans of about %d bytes", bytes, kept, size)
	}
	dropped := testutil.ToFloat64(counterOf(t, reg, "collector_unreachable")) + testutil.ToFloat64(counterOf(t, reg, "queue_full"))
	if want := float64(ended + 1 - kept - queued); dropped != want {
		t.Errorf("dropped %v spans, want %v: every span not held is counted", dropped, want)
	}
}

// A collector that cannot be reached and then can: the spans ended
// meanwhile reach it afterwards, up to the backlog; the oldest beyond it are
// dropped and counted.
func TestZipkinCollectorDownThenUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every post fails
	reg := prometheus.NewRegistry()
	logs := &syncbuf.Buffer{}
	tr, err := NewTracing(config.TracingSettings{SamplingRate: 1, ZipkinEndpoint: "http://" + addr + "/api/v2/spans"},
		Options{AppID: "a", Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	const over = 100
	var want []string
	for i := range exportBacklog + over {
		name := fmt.Sprintf("s%d", i)
		_, s := tr.provider().tracer.Start(context.Background(), name)
		s.End()
		if i >= over {
			want = append(want, name)
		}
		// Never more ended spans than the queue holds.
		if (i+1)%exportQueue == 0 {
			flush(t, tr)
		}
	}
	flush(t, tr)
	if n := testutil.ToFloat64(counterOf(t, reg, "collector_unreachable")); n != over {
		t.Errorf("collector_unreachable = %v, want %d", n, over)
	}
	if n := testutil.ToFloat64(counterOf(t, reg, "queue_full")); n != 0 {
		t.Errorf("queue_full = %v, want 0", n)
	}
	if got := logs.String(); strings.Count(got, "cannot post spans to the collector") != 1 || strings.Count(got, "dropping spans") != 1 ||
		!strings.Contains(got, "reason=collector_unreachable") || !strings.Contains(got, "connection refused") {
		t.Errorf("log: %s", got)
	}

	// The collector comes up, at the same address.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{}
	srv := httptest.NewUnstartedServer(col)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	_, s := tr.provider().tracer.Start(context.Background(), "after")
	s.End()
	flush(t, tr)
	want = append(want, "after")
	col.mu.Lock()
	defer col.mu.Unlock()
	got := make([]string, len(col.spans))
	for i, s := range col.spans {
		got[i], _ = s["name"].(string)
	}
	if !slices.Equal(got, want) {
		t.Errorf("the collector got %d spans, %q ... %q; want %d, %q ... %q", len(got), head(got), tail(got), len(want), head(want), tail(want))
	}
}

// A collector that refuses posts: their spans are dropped, not sent again,
// counted, and logged once.
func TestZipkinCollectorRefuses(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusInternalServerError} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			col := &collector{status: status}
			srv := httptest.NewServer(col)
			defer srv.Close()
			reg := prometheus.NewRegistry()
			logs := &syncbuf.Buffer{}
			tr, err := NewTracing(config.TracingSettings{SamplingRate: 1, ZipkinEndpoint: srv.URL},
				Options{AppID: "a", Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{3, 2} {
				for range n {
					_, s := tr.provider().tracer.Start(context.Background(), "x")
					s.End()
				}
				flush(t, tr)
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := testutil.ToFloat64(counterOf(t, reg, "collector_rejected")); n != 5 {
				t.Errorf("collector_rejected = %v, want 5", n)
			}
			col.mu.Lock()
			defer col.mu.Unlock()
			if col.refused != 5 {
				t.Errorf("the collector was sent %d spans, want 5, each once", col.refused)
			}
			if got := logs.String(); strings.Count(got, "dropping spans") != 1 || !strings.Contains(got, "answered "+strconv.Itoa(status)) {
				t.Errorf("log: %s", got)
			}
		})
	}
}

// The exporter's error names the collector and what went wrong; the spans
// of a post that did not reach the collector are kept, those of a post it
// refused are not.
func TestZipkinExporterErrors(t *testing.T) {
	srv := httptest.NewServer(&collector{status: http.StatusBadRequest})
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/api/v2/spans"
	ln.Close()
	for _, c := range []struct {
		name, endpoint, want string
		rejected             bool
		kept                 int
	}{
		{"refused", srv.URL, srv.URL + " answered 400 Bad Request", true, 0},
		{"unreachable", down, down, false, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			exp, err := newZipkinExporter(c.endpoint, newDrops(c.endpoint, slog.New(slog.DiscardHandler), nil))
			if err != nil {
				t.Fatal(err)
			}
			span := tracetest.SpanStub{Name: "x", SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled,
			})}.Snapshot()
			exp.OnEnd(span)
			exp.take(true)
			err = exp.flush(context.Background())
			var rejected *rejectedError
			if err == nil || !strings.Contains(err.Error(), c.want) || errors.As(err, &rejected) != c.rejected {
				t.Errorf("err = %v, want one naming %q (rejected: %v)", err, c.want, c.rejected)
			}
			if n := exp.held(); n != c.kept {
				t.Errorf("%d spans kept, want %d", n, c.kept)
			}
		})
	}
}

// A collector that takes posts in and does not answer never holds up the
// end of a span: the spans the queue has no room for are dropped and
// counted.
func TestZipkinBlockedCollectorNeverBlocksEnd(t *testing.T) {
	checkQueueFullWhileThePostWaits(t, func(url string) config.TracingSettings {
		return config.TracingSettings{SamplingRate: 1, ZipkinEndpoint: url}
	}, func(body []byte) (int, error) {
		var batch []json.RawMessage
		err := json.Unmarshal(body, &batch)
		return len(batch), err
	})
}

func flush(t *testing.T, tr *Tracing) {
	t.Helper()
	if err := tr.provider().tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func head(s []string) []string { return s[:min(len(s), 3)] }
func tail(s []string) []string { return s[max(len(s)-3, 0):] }

func counterOf(t testing.TB, reg *prometheus.Registry, reason string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "tandem_trace_spans_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					c.Add(m.GetCounter().GetValue())
				}
			}
		}
	}
	return c
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var _ io.Writer = writerFunc(nil)

// The hand-written serializer writes what zipkin-go's reflective one does.
func TestZipkinJSONMatchesZipkinGo(t *testing.T) {
	parent := model.ID(7)
	now := time.Date(2026, 11, 24, 22, 0, 0, 123456789, time.UTC)
	spans := []*model.SpanModel{
		{
			SpanContext: model.SpanContext{TraceID: model.TraceID{High: 1, Low: 0xabcdef}, ID: 0x1f, ParentID: &parent},
			Name:        "CallLocal/addapp/add", Kind: model.Server, Timestamp: now, Duration: 1500 * time.Microsecond,
			LocalEndpoint:  &model.Endpoint{ServiceName: "Front"},
			RemoteEndpoint: &model.Endpoint{ServiceName: "addapp", IPv4: net.ParseIP("127.0.0.1").To4(), Port: 50002},
			Annotations:    []model.Annotation{{Timestamp: now, Value: "event: k=v"}},
			Tags:           map[string]string{"error": "quote \" backslash \\ nl \n ctl \x01 bad \xff é", "http.status": "500"},
		},
		{SpanContext: model.SpanContext{TraceID: model.TraceID{Low: 2}, ID: 3}, Name: "x", Timestamp: now, Duration: 0},
	}
	got, err := zipkinJSON{}.Serialize(spans)
	if err != nil {
		t.Fatal(err)
	}
	want, err := reporter.JSONSerializer{}.Serialize(spans)
	if err != nil {
		t.Fatal(err)
	}
	var g, w []map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	// zipkin-go writes a zero duration as absent; a duration is required by
	// Zipkin, so ours is at least 1 µs.
	delete(w[1], "duration")
	delete(g[1], "duration")
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// The exporter writes each span as zipkin-go's serializer writes the span
// converted to its model: spans of every kind, with a parent or not, a
// status or not, remote endpoints from each attribute that makes one, tags
// of every attribute type, and events.
func TestZipkinSpanMatchesZipkinGo(t *testing.T) {
	now := time.Date(2026, 11, 24, 22, 0, 0, 123456789, time.UTC)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0, 0, 0, 0, 0, 0, 0, 1, 0xab}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	low := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{15: 2}, SpanID: trace.SpanID{7: 3}, TraceFlags: trace.FlagsSampled})
	res := resource.NewSchemaless(attribute.String("service.name", "Front"))
	stubs := []tracetest.SpanStub{
		{Name: "CallLocal/addapp/add", SpanKind: trace.SpanKindServer, SpanContext: sc, StartTime: now, EndTime: now.Add(1500 * time.Microsecond), Resource: res,
			Attributes: []attribute.KeyValue{attrString("http.request.method", "POST"), attribute.Int("http.response.status_code", 500),
				attrString("url.full", "/v1.0/invoke/addapp/method/add?x=\"y\""), attrString("client.address", "127.0.0.1")},
			Status: sdktrace.Status{Code: codes.Error, Description: "HTTP 500 Internal Server Error"}},
		{Name: "CallApp/addapp/add", SpanKind: trace.SpanKindClient, SpanContext: low, Parent: sc, StartTime: now, EndTime: now, Resource: res,
			Attributes: []attribute.KeyValue{attrString("peer.service", "AddApp"), attrString("server.address", "::ffff:10.0.0.1"), attribute.Int("server.port", 3000),
				attribute.Bool("b", true), attribute.Float64("f", 1.5), attribute.StringSlice("s", []string{"a", "b"}), attribute.Int64Slice("i", []int64{1})},
			Status: sdktrace.Status{Code: codes.Ok}},
		{Name: "GET statestore", SpanKind: trace.SpanKindProducer, SpanContext: sc, StartTime: now, EndTime: now.Add(time.Millisecond),
			Attributes: []attribute.KeyValue{attrString("network.peer.address", "fe80::1"), attrString("network.peer.port", "6379"), attrString("error", "mine")},
			Status:     sdktrace.Status{Code: codes.Error},
			Events:     []sdktrace.Event{{Name: "exception", Time: now, Attributes: []attribute.KeyValue{attrString("exception.message", "bad \xff é")}}, {Name: "plain", Time: now.Add(time.Microsecond)}}},
		{Name: "x", SpanKind: trace.SpanKindConsumer, SpanContext: sc, StartTime: now, EndTime: now.Add(time.Millisecond),
			Attributes: []attribute.KeyValue{attrString("server.address", "not an ip"), attrString("server.port", "70000")}},
		{Name: "", SpanKind: trace.SpanKindInternal, SpanContext: sc},
	}
	for i, stub := range stubs {
		span := stub.Snapshot()
		got := appendZipkinSpan(nil, span)
		m := zipkinSpan(span)
		want, err := reporter.JSONSerializer{}.Serialize([]*model.SpanModel{&m})
		if err != nil {
			t.Fatal(err)
		}
		var g map[string]any
		var w []map[string]any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("span %d: %v: %s", i, err, got)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		if _, ok := w[0]["duration"]; !ok { // zipkin-go leaves out a zero duration; ours is at least 1 µs
			w[0]["duration"] = float64(1)
		}
		if _, ok := w[0]["timestamp"]; !ok && stub.StartTime.IsZero() {
			w[0]["duration"] = g["duration"] // a span that never started: any
		}
		if !reflect.DeepEqual(g, w[0]) {
			t.Errorf("span %d:\ngot  %s\nwant %s", i, got, want)
		}
	}
}

func BenchmarkZipkinSerialize(b *testing.B) {
	parent := model.ID(7)
	s := &model.SpanModel{
		SpanContext: model.SpanContext{TraceID: model.TraceID{High: 1, Low: 2}, ID: 3, ParentID: &parent},
		Name:        "CallLocal/addapp/add", Kind: model.Client, Timestamp: time.Now(), Duration: time.Millisecond,
		LocalEndpoint: &model.Endpoint{ServiceName: "front"}, RemoteEndpoint: &model.Endpoint{ServiceName: "addapp"},
		Tags: map[string]string{"http.request.method": "POST", "http.response.status_code": "200", "peer.service": "addapp", "server.address": "127.0.0.1"},
	}
	batch := []*model.SpanModel{s, s, s, s}
	for _, c := range []struct {
		name string
		ser  reporter.SpanSerializer
	}{{"zipkin-go", reporter.JSONSerializer{}}, {"ours", zipkinJSON{}}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = c.ser.Serialize(batch)
			}
		})
	}
}

// BenchmarkZipkinExport measures a span from End to the collector, over
// many spans: the time and allocations of the sidecar (and of the test's
// collector) per span, not the latency of a batch.
func BenchmarkZipkinExport(b *testing.B) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got.Add(int64(bytes.Count(body, []byte(`"traceId"`))))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	tr, err := NewTracing(config.TracingSettings{SamplingRate: 1, ZipkinEndpoint: srv.URL}, Options{AppID: "front", Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	ctx, root := tr.provider().tracer.Start(context.Background(), "CallLocal/addapp/add", trace.WithSpanKind(trace.SpanKindServer))
	defer root.End()
	var sent int64
	// wait until the collector has all but max of the spans sent: the
	// queue is never full, so none is dropped.
	wait := func(max int64) {
		for sent-got.Load() > max {
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		_, s := tr.provider().tracer.Start(ctx, "GET statestore", trace.WithSpanKind(trace.SpanKindClient))
		s.SetAttributes(attrString("peer.service", "redis"), attrString("server.address", "127.0.0.1"), attrString("server.port", "6379"))
		s.End()
		if sent++; sent%exportBatchSize == 0 {
			wait(2 * exportBatchSize)
		}
	}
	b.StopTimer()
	wait(sent % exportBatchSize)
	for _, reason := range []string{"queue_full", "collector_unreachable", "collector_rejected"} {
		if n := testutil.ToFloat64(counterOf(b, reg, reason)); n != 0 {
			b.Fatalf("%v spans dropped: %s", n, reason)
		}
	}
}

// BenchmarkZipkinWriteSpan measures writing one span of the sidecar's
// shape in Zipkin's JSON, as the exporter does when a span ends.
func BenchmarkZipkinWriteSpan(b *testing.B) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	span := tracetest.SpanStub{
		Name: "CallLocal/addapp/add", SpanKind: trace.SpanKindClient, SpanContext: sc, Parent: sc,
		StartTime: time.Now(), EndTime: time.Now().Add(time.Millisecond),
		Attributes: []attribute.KeyValue{attrString("http.request.method", "POST"), attribute.Int("http.response.status_code", 200),
			attrString("peer.service", "addapp"), attrString("server.address", "127.0.0.1"), attribute.Int("server.port", 50002)},
	}.Snapshot()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendZipkinSpan(buf[:0], span)
	}
}
