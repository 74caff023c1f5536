package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Export, to Zipkin (zipkin.go) or OTLP (otlp.go), by exporters of our
// own, which write spans in the collector's format and post them. OTLP's
// sits behind the OpenTelemetry SDK's batcher; Zipkin's writes each span
// as it ends and batches the bytes (zipkin.go says why). (OpenTelemetry's
// Zipkin exporter is deprecated; its OTLP exporters, zipkin-go's reporter
// and the batcher tell what they drop only in their logs, and the OTLP
// exporters brought a fifth of the sidecar's binary, whose pages are most
// of its idle memory.)
//
// A request never waits on export. Spans are held in two bounded places,
// and every span dropped is counted in tandem_trace_spans_dropped_total by
// reason and logged, at most once every warnEvery per reason:
//   - the queue of ended spans not yet taken by a post, exportQueue long:
//     a span ended when it is full is dropped ("queue_full");
//   - the spans of posts that could not reach the collector, kept and sent
//     again with the next post, up to exportBacklog: the oldest beyond it
//     are dropped ("collector_unreachable"), as are those still kept when
//     the sidecar stops.
//
// A collector that answers a post with an error of its own has refused
// it: its spans are dropped ("collector_rejected"), not sent again.

const (
	exportQueue      = 2048 // ended spans waiting for export
	exportBacklog    = 4096 // spans kept while the collector cannot be reached
	exportBatchSize  = 256
	exportBatchEvery = time.Second
	exportTimeout    = 5 * time.Second
	warnEvery        = 30 * time.Second

	// flushRoom is room in the batcher's queue beyond exportQueue for the
	// marker each ForceFlush puts in it.
	flushRoom = 64
)

// exportProcessor is the SDK's batcher, counting the spans its queue has
// no room for, which the batcher drops without saying. It hands the
// batcher no more than exportQueue spans that have not reached the
// exporter yet, so the batcher's own queue is never full.
type exportProcessor struct {
	sdktrace.SpanProcessor // the batcher

	exp    sdktrace.SpanExporter
	drops  *drops
	queued atomic.Int64 // spans given to the batcher and not yet to exp
	closed atomic.Bool
}

func newExportProcessor(exp sdktrace.SpanExporter, d *drops) *exportProcessor {
	p := &exportProcessor{exp: exp, drops: d}
	p.SpanProcessor = sdktrace.NewBatchSpanProcessor(batcherExport{p},
		sdktrace.WithMaxQueueSize(exportQueue+flushRoom),
		sdktrace.WithMaxExportBatchSize(exportBatchSize),
		sdktrace.WithBatchTimeout(exportBatchEvery),
	)
	return p
}

func (p *exportProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() || p.closed.Load() {
		return
	}
	if p.queued.Add(1) > exportQueue {
		p.queued.Add(-1)
		p.drops.add("queue_full", 1, "the export queue is full")
		return
	}
	p.SpanProcessor.OnEnd(s)
}

// Shutdown exports what is queued, makes a last post of the spans kept,
// and stops.
func (p *exportProcessor) Shutdown(ctx context.Context) error {
	p.closed.Store(true)
	return p.SpanProcessor.Shutdown(ctx)
}

// batcherExport is the exporter as the batcher sees it: it counts spans
// out of the queue, and returns no error, because the exporter has counted
// and logged each failure and the batcher would hand the error to
// otel.Handle, which prints every one to stderr: a line a second while the
// collector is down.
type batcherExport struct{ p *exportProcessor }

func (b batcherExport) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	b.p.queued.Add(-int64(len(spans)))
	_ = b.p.exp.ExportSpans(ctx, spans)
	return nil
}

func (b batcherExport) Shutdown(ctx context.Context) error { return b.p.exp.Shutdown(ctx) }

// backlog is an exporter of spans converted to T: it posts them, after
// those kept from posts that could not reach the collector, up to
// exportBacklog, the oldest dropped beyond it.
type backlog[T any] struct {
	drops   *drops
	convert func(sdktrace.ReadOnlySpan) T
	post    func(context.Context, []T) error // a *rejectedError when refused
	close   func()                           // after the last post, or nil

	mu      sync.Mutex
	pending []T // spans to post, oldest first
}

// ExportSpans posts spans, after those kept from posts that failed. It
// returns the post's error: the collector could not be reached (the spans
// are kept), or it refused them (a *rejectedError; the spans are dropped).
func (b *backlog[T]) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	converted := make([]T, len(spans))
	for i, s := range spans {
		converted[i] = b.convert(s)
		yieldEvery(i)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, converted...)
	return b.flush(ctx)
}

// Shutdown makes a last post of the spans kept from failed posts; those it
// cannot send are dropped.
func (b *backlog[T]) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.flush(ctx); err != nil && len(b.pending) > 0 {
		b.drops.add("collector_unreachable", len(b.pending), "the sidecar is stopping and the collector cannot be reached ("+err.Error()+")")
		b.pending = nil
	}
	if b.close != nil {
		b.close()
	}
	return nil
}

// flush posts the pending spans. Called with mu held.
func (b *backlog[T]) flush(ctx context.Context) error {
	if len(b.pending) == 0 {
		return nil
	}
	err := b.post(ctx, b.pending)
	var rejected *rejectedError
	switch {
	case err == nil:
	case errors.As(err, &rejected):
		b.drops.add("collector_rejected", len(b.pending), "the collector answered "+rejected.status+rejected.detail())
	default:
		if over := len(b.pending) - exportBacklog; over > 0 {
			b.pending = slices.Delete(b.pending, 0, over)
			b.drops.add("collector_unreachable", over, fmt.Sprintf("the collector cannot be reached (%v) and %d spans are kept already", err, exportBacklog))
		}
		b.drops.warn("post", "cannot post spans to the collector; keeping up to a backlog, then dropping", "err", err, "kept", len(b.pending), "backlog", exportBacklog)
		return err
	}
	clear(b.pending)
	b.pending = b.pending[:0]
	return err
}

// collectorClient is the HTTP client of a post to a collector: the post
// bounded by exportTimeout, and few idle connections, as posts come a
// batch at a time.
func collectorClient() *http.Client {
	return &http.Client{Timeout: exportTimeout, Transport: &http.Transport{
		DialContext:     (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConns:    2,
		IdleConnTimeout: 90 * time.Second,
	}}
}

// exportYield is how many spans the exporter converts or writes between
// yields of its CPU.
const exportYield = 32

// yieldEvery lets the calls waiting for the CPU run after every
// exportYield-th span. A sidecar runs its Go code on one CPU by default
// (internal/maxprocs), and Go's scheduler lets a goroutine run for up
// to 10 ms before it preempts it: a batch of spans converted and written
// in one go held every call waiting behind it for the whole batch, which
// showed in the tail of traced calls.
func yieldEvery(i int) {
	if i%exportYield == exportYield-1 {
		runtime.Gosched()
	}
}

// rejectedError is a collector's answer to a post that refused it: the
// collector was reached and did not take the spans.
type rejectedError struct {
	protocol, endpoint, status, body string
}

func (e *rejectedError) Error() string {
	return e.protocol + ": " + e.endpoint + " answered " + e.status + e.detail()
}

func (e *rejectedError) detail() string {
	if e.body == "" {
		return ""
	}
	return ": " + e.body
}

// drops counts the spans export drops, by reason, and logs them, at most
// once every warnEvery per reason, so that a collector outage does not
// flood the log.
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
	_ sdktrace.SpanProcessor = (*exportProcessor)(nil)
	_ sdktrace.SpanExporter  = (*backlog[int])(nil)
	_ sdktrace.SpanExporter  = batcherExport{}
)
