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
)

// Export, to Zipkin (zipkin.go) or OTLP (otlp.go), by exporters of our
// own, which write spans in the collector's format as they end (span.go
// hands them over) and post them. Zipkin's batches the bytes (zipkin.go
// says why); OTLP's queues each span's message (queueProcessor).
// (OpenTelemetry's Zipkin exporter is deprecated; its OTLP exporters,
// zipkin-go's reporter and the SDK's batcher tell what they drop only in
// their logs, and the OTLP exporters brought a fifth of the sidecar's
// binary, whose pages are most of its idle memory.)
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
)

// queueProcessor writes each span as it ends (encode, by the call that
// ends it), queues it, up to exportQueue ("queue_full" beyond), and posts
// the queue through exp from a goroutine of its own: when exportBatchSize
// spans are queued, and every exportBatchEvery what there is. OTLP's.
type queueProcessor[T any] struct {
	encode func(endedSpan) T
	exp    *backlog[T]
	drops  *drops

	poster // kicked when exportBatchSize spans are queued
	mu     sync.Mutex
	queue  []T
}

func newQueueProcessor[T any](encode func(endedSpan) T, exp *backlog[T]) *queueProcessor[T] {
	p := &queueProcessor[T]{encode: encode, exp: exp, drops: exp.drops}
	p.poster.init()
	go p.run(p.post, p.stop)
	return p
}

func (p *queueProcessor[T]) OnEnd(s endedSpan) {
	if !s.SpanContext().IsSampled() || p.closed.Load() {
		return
	}
	t := p.encode(s)
	p.mu.Lock()
	n := len(p.queue)
	if n < exportQueue {
		p.queue = append(p.queue, t)
	}
	p.mu.Unlock()
	switch {
	case n >= exportQueue:
		p.drops.add("queue_full", 1, "the export queue is full")
	case n+1 == exportBatchSize:
		p.batchFull()
	}
}

// post exports the queue, full or not, after the spans kept from failed
// posts (poster.run calls it).
func (p *queueProcessor[T]) post(ctx context.Context, _ bool) error {
	p.mu.Lock()
	q := p.queue
	p.queue = nil
	p.mu.Unlock()
	return p.exp.export(ctx, q)
}

// stop makes the backlog's last post and drops what it cannot send.
func (p *queueProcessor[T]) stop(ctx context.Context, _ error) { _ = p.exp.Shutdown(ctx) }

// poster is a processor's posting goroutine (run) and what reaches it:
// a kick when a batch is full, and ForceFlush and Shutdown. Failed posts
// are counted and logged by the processor, not returned.
type poster struct {
	closed atomic.Bool       // Shutdown was called: ended spans are not taken
	kick   chan struct{}     // a batch is full
	reqs   chan flushRequest // ForceFlush and Shutdown
	done   chan struct{}     // run has returned
}

func (p *poster) init() {
	p.kick, p.reqs, p.done = make(chan struct{}, 1), make(chan flushRequest), make(chan struct{})
}

// run posts until Shutdown: post(ctx, false) when a batch is full,
// post(ctx, true) every exportBatchEvery and for a ForceFlush; for a
// Shutdown a last post(ctx, true), then stop with that post's error.
func (p *poster) run(post func(ctx context.Context, all bool) error, stop func(ctx context.Context, err error)) {
	defer close(p.done)
	tick := time.NewTicker(exportBatchEvery)
	defer tick.Stop()
	ctx := context.Background()
	for {
		select {
		case <-p.kick:
			_ = post(ctx, false)
		case <-tick.C:
			_ = post(ctx, true)
		case r := <-p.reqs:
			err := post(r.ctx, true)
			if r.stop {
				stop(r.ctx, err)
				r.done <- nil
				return
			}
			r.done <- nil
		}
	}
}

// batchFull wakes run to post a full batch; it never waits.
func (p *poster) batchFull() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// ForceFlush posts the spans ended so far.
func (p *poster) ForceFlush(ctx context.Context) error {
	return flushRequest{ctx: ctx}.send(p.reqs, p.done)
}

// Shutdown posts what is queued, with the spans kept from failed posts,
// drops what it cannot send, and stops.
func (p *poster) Shutdown(ctx context.Context) error {
	if p.closed.Swap(true) {
		return nil
	}
	return flushRequest{ctx: ctx, stop: true}.send(p.reqs, p.done)
}

// flushRequest is a ForceFlush (stop false) or a Shutdown of a
// processor's posting goroutine: post what is queued, and answer on done.
type flushRequest struct {
	ctx  context.Context
	stop bool
	done chan error
}

// send hands r to the goroutine that takes reqs until done is closed,
// and waits for its answer, or for r's context.
func (r flushRequest) send(reqs chan<- flushRequest, done <-chan struct{}) error {
	r.done = make(chan error, 1)
	select {
	case reqs <- r:
	case <-done:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// backlog posts spans written as T, after those kept from posts that could
// not reach the collector, up to exportBacklog, the oldest dropped beyond.
type backlog[T any] struct {
	drops *drops
	post  func(context.Context, []T) error // a *rejectedError when refused
	close func()                           // after the last post, or nil

	mu      sync.Mutex
	pending []T // spans to post, oldest first
}

// export posts spans, after those kept from posts that failed. It returns
// the post's error: the collector could not be reached (the spans are
// kept), or it refused them (a *rejectedError; the spans are dropped).
func (b *backlog[T]) export(ctx context.Context, spans []T) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, spans...)
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

// exportYield is how many spans a post groups or writes between yields of
// its CPU.
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
	_ spanProcessor = (*queueProcessor[int])(nil)
	_ spanProcessor = (*zipkinProcessor)(nil)
)
