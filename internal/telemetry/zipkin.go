package telemetry

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openzipkin/zipkin-go/model"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Zipkin export: the OpenTelemetry SDK's batcher in front of an exporter of
// our own, which converts spans to zipkin-go's model, writes them in Zipkin's
// v2 JSON (zipkinjson.go) and posts them to the collector. (OpenTelemetry's
// Zipkin exporter is deprecated, and zipkin-go's reporter tells what it
// drops only in its log.)
//
// A request never waits on export. Spans are held in two bounded places,
// and every span dropped is counted in tandem_trace_spans_dropped_total by
// reason and logged, at most once every warnEvery per reason:
//   - the batcher's queue of ended spans, zipkinQueue long: a span ended
//     when it is full is dropped ("queue_full");
//   - the spans of posts that could not reach the collector, kept and sent
//     again with the next post, up to zipkinBacklog: the oldest beyond it
//     are dropped ("collector_unreachable"), as are those still kept when
//     the sidecar stops.
//
// A collector that answers a post with other than 2xx has refused it: its
// spans are dropped ("collector_rejected"), not sent again.

const (
	zipkinQueue      = 2048 // ended spans waiting for export
	zipkinBacklog    = 4096 // spans kept while the collector cannot be reached
	zipkinBatchSize  = 256
	zipkinBatchEvery = time.Second
	zipkinTimeout    = 5 * time.Second
	warnEvery        = 30 * time.Second

	// flushRoom is room in the batcher's queue beyond zipkinQueue for the
	// marker each ForceFlush puts in it.
	flushRoom = 64
)

// zipkinProcessor is the SDK's batcher, counting the spans its queue has no
// room for, which the batcher drops without saying. It hands the batcher no
// more than zipkinQueue spans that have not reached the exporter yet, so
// the batcher's own queue is never full.
type zipkinProcessor struct {
	sdktrace.SpanProcessor // the batcher

	exp    *zipkinExporter
	queued atomic.Int64 // spans given to the batcher and not yet to exp
	closed atomic.Bool
}

func newZipkinProcessor(endpoint string, logger *slog.Logger, reg prometheus.Registerer) (*zipkinProcessor, error) {
	exp, err := newZipkinExporter(endpoint, newDrops(endpoint, logger, reg))
	if err != nil {
		return nil, err
	}
	p := &zipkinProcessor{exp: exp}
	p.SpanProcessor = sdktrace.NewBatchSpanProcessor(batcherExport{p},
		sdktrace.WithMaxQueueSize(zipkinQueue+flushRoom),
		sdktrace.WithMaxExportBatchSize(zipkinBatchSize),
		sdktrace.WithBatchTimeout(zipkinBatchEvery),
	)
	return p, nil
}

func (p *zipkinProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() || p.closed.Load() {
		return
	}
	if p.queued.Add(1) > zipkinQueue {
		p.queued.Add(-1)
		p.exp.drops.add("queue_full", 1, "the export queue is full")
		return
	}
	p.SpanProcessor.OnEnd(s)
}

// Shutdown exports what is queued, makes a last post of the spans kept,
// and stops.
func (p *zipkinProcessor) Shutdown(ctx context.Context) error {
	p.closed.Store(true)
	return p.SpanProcessor.Shutdown(ctx)
}

// batcherExport is the exporter as the batcher sees it: it counts spans
// out of the queue, and returns no error, because the exporter has counted
// and logged each failure and the batcher would hand the error to
// otel.Handle, which prints every one to stderr: a line a second while the
// collector is down.
type batcherExport struct{ p *zipkinProcessor }

func (b batcherExport) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	b.p.queued.Add(-int64(len(spans)))
	_ = b.p.exp.ExportSpans(ctx, spans)
	return nil
}

func (b batcherExport) Shutdown(ctx context.Context) error { return b.p.exp.Shutdown(ctx) }

// zipkinExporter posts spans to a Zipkin collector's v2 API. The spans of a
// post that cannot reach the collector are kept and sent with the next
// post, up to zipkinBacklog, the oldest dropped beyond it.
type zipkinExporter struct {
	endpoint string
	client   *http.Client
	drops    *drops

	mu      sync.Mutex
	pending []*model.SpanModel // spans to post, oldest first
}

func newZipkinExporter(endpoint string, d *drops) (*zipkinExporter, error) {
	if _, err := http.NewRequest(http.MethodPost, endpoint, nil); err != nil {
		return nil, fmt.Errorf("zipkin: %w", err)
	}
	return &zipkinExporter{endpoint: endpoint, drops: d, client: &http.Client{
		Timeout: zipkinTimeout,
		Transport: &http.Transport{
			DialContext:     (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConns:    2,
			IdleConnTimeout: 90 * time.Second,
		},
	}}, nil
}

// ExportSpans posts spans, after those kept from posts that failed. It
// returns the post's error: the collector could not be reached (the spans
// are kept), or it refused them (a *rejectedError; the spans are dropped).
func (e *zipkinExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	models := make([]model.SpanModel, len(spans))
	for i, s := range spans {
		models[i] = zipkinSpan(s)
		yieldEvery(i)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range models {
		e.pending = append(e.pending, &models[i])
	}
	return e.flush(ctx)
}

// Shutdown makes a last post of the spans kept from failed posts; those it
// cannot send are dropped.
func (e *zipkinExporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.flush(ctx); err != nil && len(e.pending) > 0 {
		e.drops.add("collector_unreachable", len(e.pending), "the sidecar is stopping and the collector cannot be reached ("+err.Error()+")")
		e.pending = nil
	}
	return nil
}

// flush posts the pending spans. Called with mu held.
func (e *zipkinExporter) flush(ctx context.Context) error {
	if len(e.pending) == 0 {
		return nil
	}
	err := e.post(ctx, e.pending)
	var rejected *rejectedError
	switch {
	case err == nil:
	case errors.As(err, &rejected):
		e.drops.add("collector_rejected", len(e.pending), "the collector answered "+rejected.status+rejected.detail())
	default:
		if over := len(e.pending) - zipkinBacklog; over > 0 {
			e.pending = slices.Delete(e.pending, 0, over)
			e.drops.add("collector_unreachable", over, fmt.Sprintf("the collector cannot be reached (%v) and %d spans are kept already", err, zipkinBacklog))
		}
		e.drops.warn("post", "cannot post spans to the collector; keeping up to a backlog, then dropping", "err", err, "kept", len(e.pending), "backlog", zipkinBacklog)
		return err
	}
	clear(e.pending)
	e.pending = e.pending[:0]
	return err
}

func (e *zipkinExporter) post(ctx context.Context, spans []*model.SpanModel) error {
	body, _ := zipkinJSON{}.Serialize(spans) // it does not fail
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("zipkin: %w", err)
	}
	req.Header.Set("Content-Type", zipkinJSON{}.ContentType())
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("zipkin: %w", err) // it names the endpoint
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &rejectedError{endpoint: e.endpoint, status: resp.Status, body: strings.TrimSpace(string(msg))}
	}
	return nil
}

// exportYield is how many spans the exporter converts or writes between
// yields of its CPU.
const exportYield = 32

// yieldEvery lets the calls waiting for the CPU run after every
// exportYield-th span. A sidecar runs its Go code on one CPU by default
// (cmd/sidecar/procs.go), and Go's scheduler lets a goroutine run for up
// to 10 ms before it preempts it: a batch of spans converted and written
// in one go held every call waiting behind it for the whole batch, which
// showed in the tail of traced calls.
func yieldEvery(i int) {
	if i%exportYield == exportYield-1 {
		runtime.Gosched()
	}
}

// rejectedError is a collector's answer to a post other than 2xx: the
// collector was reached and did not take the spans.
type rejectedError struct {
	endpoint, status, body string
}

func (e *rejectedError) Error() string {
	return "zipkin: " + e.endpoint + " answered " + e.status + e.detail()
}

func (e *rejectedError) detail() string {
	if e.body == "" {
		return ""
	}
	return ": " + e.body
}

// zipkinSpan converts an OpenTelemetry span to Zipkin's model.
func zipkinSpan(s sdktrace.ReadOnlySpan) model.SpanModel {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	m := model.SpanModel{
		SpanContext: model.SpanContext{
			TraceID: model.TraceID{High: binary.BigEndian.Uint64(tid[:8]), Low: binary.BigEndian.Uint64(tid[8:])},
			ID:      model.ID(binary.BigEndian.Uint64(sid[:])),
		},
		Name:      s.Name(),
		Kind:      zipkinKind(s.SpanKind()),
		Timestamp: s.StartTime(),
		Duration:  max(s.EndTime().Sub(s.StartTime()), time.Microsecond),
		Tags:      make(map[string]string, len(s.Attributes())+2),
	}
	if p := s.Parent(); p.IsValid() {
		psid := p.SpanID()
		id := model.ID(binary.BigEndian.Uint64(psid[:]))
		m.ParentID = &id
	}
	service := ""
	for _, kv := range s.Resource().Attributes() {
		if kv.Key == "service.name" {
			service = kv.Value.AsString()
		}
	}
	m.LocalEndpoint = &model.Endpoint{ServiceName: service}
	var remote model.Endpoint
	for _, kv := range s.Attributes() {
		v := kv.Value.Emit()
		m.Tags[string(kv.Key)] = v
		switch kv.Key {
		case "peer.service":
			remote.ServiceName = v
		case "server.address", "network.peer.address":
			if ip := net.ParseIP(v); ip != nil {
				if ip.To4() != nil {
					remote.IPv4 = ip
				} else {
					remote.IPv6 = ip
				}
			}
		case "server.port", "network.peer.port":
			if n, err := strconv.ParseUint(v, 10, 16); err == nil {
				remote.Port = uint16(n)
			}
		}
	}
	if remote.ServiceName != "" || remote.IPv4 != nil || remote.IPv6 != nil {
		m.RemoteEndpoint = &remote
	}
	switch st := s.Status(); st.Code {
	case codes.Error:
		m.Tags["otel.status_code"] = "ERROR"
		m.Tags["error"] = st.Description
		if st.Description == "" {
			m.Tags["error"] = "true"
		}
	case codes.Ok:
		m.Tags["otel.status_code"] = "OK"
	}
	for _, e := range s.Events() {
		m.Annotations = append(m.Annotations, model.Annotation{Timestamp: e.Time, Value: eventValue(e.Name, e.Attributes)})
	}
	return m
}

func eventValue(name string, attrs []attribute.KeyValue) string {
	if len(attrs) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name)
	for i, kv := range attrs {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%s", kv.Key, kv.Value.Emit())
	}
	return b.String()
}

func zipkinKind(k trace.SpanKind) model.Kind {
	switch k {
	case trace.SpanKindClient:
		return model.Client
	case trace.SpanKindServer:
		return model.Server
	case trace.SpanKindProducer:
		return model.Producer
	case trace.SpanKindConsumer:
		return model.Consumer
	}
	return model.Undetermined
}

// drops counts the spans the Zipkin export drops, by reason, and logs
// them, at most once every warnEvery per reason, so that a collector outage
// does not flood the log.
type drops struct {
	endpoint string
	log      *slog.Logger
	counter  *prometheus.CounterVec
	mu       sync.Mutex
	total    map[string]int64
	lastWarn map[string]time.Time
}

func newDrops(endpoint string, logger *slog.Logger, reg prometheus.Registerer) *drops {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_trace_spans_dropped_total",
		Help: "Spans dropped before export, by reason (queue_full, collector_unreachable, collector_rejected).",
	}, []string{"reason"})
	if reg != nil {
		if err := reg.Register(c); err != nil {
			if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
				c = are.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	return &drops{endpoint: endpoint, log: logger, counter: c, total: map[string]int64{}, lastWarn: map[string]time.Time{}}
}

func (d *drops) add(reason string, n int, why string) {
	d.counter.WithLabelValues(reason).Add(float64(n))
	d.mu.Lock()
	d.total[reason] += int64(n)
	total := d.total[reason]
	d.mu.Unlock()
	d.warn(reason, "dropping spans", "reason", reason, "why", why, "dropped_total", total)
}

// warn logs msg unless a warning of the same kind was logged less than
// warnEvery ago.
func (d *drops) warn(kind, msg string, args ...any) {
	d.mu.Lock()
	due := time.Since(d.lastWarn[kind]) >= warnEvery
	if due {
		d.lastWarn[kind] = time.Now()
	}
	d.mu.Unlock()
	if due {
		d.log.Warn(msg, append(args, "collector", d.endpoint)...)
	}
}

var (
	_ sdktrace.SpanProcessor = (*zipkinProcessor)(nil)
	_ sdktrace.SpanExporter  = (*zipkinExporter)(nil)
	_ sdktrace.SpanExporter  = batcherExport{}
)
