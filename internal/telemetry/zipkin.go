package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Zipkin export (export.go has what it shares with OTLP): each sampled
// span is written in Zipkin's v2 JSON (zipkinjson.go) as it ends, by the
// call that ends it, into the batch being filled; a goroutine of the
// exporter's posts full batches, and every exportBatchEvery what there is,
// to the collector's /api/v2/spans.
//
// Writing spans as they end, rather than the SDK's batcher handing a
// goroutine of its own exportBatchSize spans to convert and write in one
// go, spreads the work over the calls: on the sidecar's one CPU, a batch
// written at once held the calls waiting behind it, which showed in the
// tail of traced calls. It also lets each span go as soon as it is
// written, instead of living until its batch is posted, and takes no
// goroutine wake-up per span.
//
// What is held is bounded as export.go says: exportQueue spans written
// and not yet taken by a post ("queue_full" beyond), and exportBacklog
// spans of posts that could not reach the collector ("collector_unreachable"
// beyond, the oldest first).

// newZipkinProcessor exports to the Zipkin collector at endpoint.
func newZipkinProcessor(endpoint string, logger *slog.Logger, reg prometheus.Registerer) (*zipkinProcessor, error) {
	p, err := newZipkinExporter(endpoint, newDrops(endpoint, logger, reg))
	if err != nil {
		return nil, err
	}
	go p.run(p.postAll, p.stop)
	return p, nil
}

// zipkinProcessor writes spans as they end and posts them (above).
type zipkinProcessor struct {
	endpoint string
	client   *http.Client
	drops    *drops

	queued atomic.Int64 // spans ended and not taken by a post
	poster              // kicked when a batch is full
	mu     sync.Mutex
	fill   *zipkinBatch   // the batch being filled; nil: none yet
	ready  []*zipkinBatch // full batches, oldest first
	spare  []*zipkinBatch // posted batches, for reuse

	scr sync.Pool // *[]byte: a span being written

	// Owned by run: the spans of posts that could not reach the collector,
	// oldest first, to be sent with the next post.
	pending []*zipkinBatch
	// What pending holds after each post: spans, and bytes.
	kept, keptBytes atomic.Int64
}

// zipkinBatch is spans written in JSON, one after the other, with commas.
type zipkinBatch struct {
	b    []byte
	ends []int // where each span ends in b
}

func (z *zipkinBatch) spans() int { return len(z.ends) }

// dropOldest drops the first n spans of z.
func (z *zipkinBatch) dropOldest(n int) {
	cut := min(z.ends[n-1]+1, len(z.b)) // the span and its comma
	z.b = z.b[:copy(z.b, z.b[cut:])]
	z.ends = z.ends[:copy(z.ends, z.ends[n:])]
	for i := range z.ends {
		z.ends[i] -= cut
	}
}

// spareBatches is how many posted batches are kept for reuse.
const spareBatches = 4

// newZipkinExporter is the processor without its posting goroutine.
func newZipkinExporter(endpoint string, d *drops) (*zipkinProcessor, error) {
	if _, err := http.NewRequest(http.MethodPost, endpoint, nil); err != nil {
		return nil, fmt.Errorf("zipkin: %w", err)
	}
	p := &zipkinProcessor{
		endpoint: endpoint, client: collectorClient(), drops: d,
		scr: sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }},
	}
	p.poster.init()
	return p, nil
}

// OnEnd writes s into the batch being filled, or counts it dropped when
// exportQueue spans are waiting already. It never waits on export.
func (p *zipkinProcessor) OnEnd(s endedSpan) {
	if !s.SpanContext().IsSampled() || p.closed.Load() {
		return
	}
	if p.queued.Add(1) > exportQueue {
		p.queued.Add(-1)
		p.drops.add("queue_full", 1, "the export queue is full")
		return
	}
	scr := p.scr.Get().(*[]byte)
	*scr = appendZipkinSpan((*scr)[:0], s)
	p.mu.Lock()
	if p.fill == nil {
		p.fill = p.newBatch()
	}
	f := p.fill
	if len(f.ends) > 0 {
		f.b = append(f.b, ',')
	}
	f.b = append(f.b, *scr...)
	f.ends = append(f.ends, len(f.b))
	full := len(f.ends) >= exportBatchSize
	if full {
		p.ready = append(p.ready, f)
		p.fill = nil
	}
	p.mu.Unlock()
	p.scr.Put(scr)
	if full {
		p.batchFull()
	}
}

// newBatch is a spare batch, or a new one. Called with mu held.
func (p *zipkinProcessor) newBatch() *zipkinBatch {
	if n := len(p.spare); n > 0 {
		z := p.spare[n-1]
		p.spare = p.spare[:n-1]
		return z
	}
	return &zipkinBatch{b: make([]byte, 0, 512*exportBatchSize), ends: make([]int, 0, exportBatchSize)}
}

// take moves the full batches, and with all the one being filled, to the
// pending ones.
func (p *zipkinProcessor) take(all bool) {
	p.mu.Lock()
	taken := p.ready
	p.ready = nil
	if all && p.fill != nil && len(p.fill.ends) > 0 {
		taken = append(taken, p.fill)
		p.fill = nil
	}
	p.mu.Unlock()
	for _, z := range taken {
		p.queued.Add(-int64(z.spans()))
	}
	p.pending = append(p.pending, taken...)
}

// postAll posts the full batches, and with all the one being filled too,
// after those kept from failed posts (poster.run calls it).
func (p *zipkinProcessor) postAll(ctx context.Context, all bool) error {
	p.take(all)
	err := p.flush(ctx)
	p.count()
	return err
}

// stop drops what the last post could not send, and closes the client.
func (p *zipkinProcessor) stop(_ context.Context, err error) {
	if n := p.held(); err != nil && n > 0 {
		p.drops.add("collector_unreachable", n, "the sidecar is stopping and the collector cannot be reached ("+err.Error()+")")
	}
	p.pending = nil
	p.client.CloseIdleConnections()
}

// count records what pending holds.
func (p *zipkinProcessor) count() {
	var bytes int64
	for _, z := range p.pending {
		bytes += int64(len(z.b))
	}
	p.kept.Store(int64(p.held()))
	p.keptBytes.Store(bytes)
}

// held is how many spans the pending batches hold.
func (p *zipkinProcessor) held() int {
	n := 0
	for _, z := range p.pending {
		n += z.spans()
	}
	return n
}

// flush posts the pending batches: those the collector takes, or refuses,
// are done with; those it cannot be sent are kept, up to exportBacklog
// spans, the oldest dropped beyond.
func (p *zipkinProcessor) flush(ctx context.Context) error {
	n := p.held()
	if n == 0 {
		return nil
	}
	err := p.post(ctx, p.pending)
	var rejected *rejectedError
	switch {
	case err == nil:
	case errors.As(err, &rejected):
		p.drops.add("collector_rejected", n, "the collector answered "+rejected.status+rejected.detail())
	default:
		if over := n - exportBacklog; over > 0 {
			p.dropOldest(over)
			p.drops.add("collector_unreachable", over, fmt.Sprintf("the collector cannot be reached (%v) and %d spans are kept already", err, exportBacklog))
		}
		p.drops.warn("post", "cannot post spans to the collector; keeping up to a backlog, then dropping", "err", err, "kept", p.held(), "backlog", exportBacklog)
		return err
	}
	p.mu.Lock()
	for _, z := range p.pending {
		if len(p.spare) < spareBatches {
			z.b, z.ends = z.b[:0], z.ends[:0]
			p.spare = append(p.spare, z)
		}
	}
	p.mu.Unlock()
	clear(p.pending)
	p.pending = p.pending[:0]
	return err
}

// dropOldest drops the n oldest pending spans.
func (p *zipkinProcessor) dropOldest(n int) {
	for n > 0 && len(p.pending) > 0 {
		z := p.pending[0]
		if k := z.spans(); k <= n {
			n -= k
			p.pending[0] = nil
			p.pending = p.pending[1:]
			continue
		}
		z.dropOldest(n)
		n = 0
	}
}

// post sends batches to the collector in one JSON array.
func (p *zipkinProcessor) post(ctx context.Context, batches []*zipkinBatch) error {
	bufs := make(net.Buffers, 0, 2*len(batches)+1)
	size := int64(1)
	for i, z := range batches {
		sep := "["
		if i > 0 {
			sep = ","
		}
		bufs = append(bufs, []byte(sep), z.b)
		size += int64(1 + len(z.b))
	}
	bufs = append(bufs, []byte("]"))
	body := func() io.Reader { b := slices.Clone(bufs); return &b }
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, body())
	if err != nil {
		return fmt.Errorf("zipkin: %w", err)
	}
	req.ContentLength = size
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(body()), nil }
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("zipkin: %w", err) // it names the endpoint
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &rejectedError{protocol: "zipkin", endpoint: p.endpoint, status: resp.Status, body: strings.TrimSpace(string(msg))}
	}
	return nil
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

// zipkinKind is Zipkin's name of k; empty for kinds Zipkin has none of.
func zipkinKind(k trace.SpanKind) string {
	switch k {
	case trace.SpanKindClient:
		return "CLIENT"
	case trace.SpanKindServer:
		return "SERVER"
	case trace.SpanKindProducer:
		return "PRODUCER"
	case trace.SpanKindConsumer:
		return "CONSUMER"
	}
	return ""
}
