package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"runtime"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkscope "go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// The sidecar's spans are its own, behind OpenTelemetry's tracing API
// (trace.Tracer and trace.Span): a span records what the exporters write
// and nothing more, in one allocation (its attributes inline), and is
// handed to them as it ends. The SDK's spans cost a traced call a record,
// a snapshot of it at End and a slice for the attributes per span, and a
// sampler and an ID generator behind interfaces and a lock; four spans a
// call through two sidecars. What a span does is what the SDK's does
// (TestSpanMatchesSDK writes both in Zipkin's JSON and OTLP and compares):
// sampling by the parent, else by the trace id's ratio; attributes
// deduplicated by key, the last value at the first one's place, at most
// maxAttributes; a status Ok wins over Error, Error over none; errors as
// "exception" events.

// Limits of what a span records, the SDK's defaults.
const (
	maxAttributes = 128
	maxEvents     = 128
	maxLinks      = 128
)

// spanProcessor is what a provider hands each sampled span to as it ends,
// on the goroutine that ends it. A span does not change once ended.
type spanProcessor interface {
	OnEnd(s endedSpan)
	ForceFlush(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// endedSpan is what the exporters read of an ended span: a *span, or the
// SDK's sdktrace.ReadOnlySpan, which the writers' tests compare against.
type endedSpan interface {
	Name() string
	SpanContext() trace.SpanContext
	Parent() trace.SpanContext
	SpanKind() trace.SpanKind
	StartTime() time.Time
	EndTime() time.Time
	Attributes() []attribute.KeyValue
	Links() []sdktrace.Link
	Events() []sdktrace.Event
	Status() sdktrace.Status
	DroppedAttributes() int
	DroppedLinks() int
	DroppedEvents() int
	Resource() *resource.Resource
	InstrumentationScope() sdkscope.Scope
}

// spanProvider makes spans for one set of settings: the sampler, the
// resource (service.name) and the processors.
type spanProvider struct {
	embedded.TracerProvider
	res   *resource.Resource
	scope sdkscope.Scope
	procs []spanProcessor
	// Roots are sampled when the trace id's last 8 bytes, shifted right
	// by one, are below bound (the SDK's TraceIDRatioBased); all when
	// always.
	bound  uint64
	always bool
	tracer *spanTracer
}

// newSpanProvider samples roots at rate (parents decide for their
// children), for service, and hands the sampled spans to procs.
func newSpanProvider(service string, rate float64, procs ...spanProcessor) *spanProvider {
	p := &spanProvider{
		res:   resource.NewSchemaless(attribute.String("service.name", service)),
		scope: sdkscope.Scope{Name: instrumentation},
		procs: procs,
	}
	switch {
	case rate >= 1:
		p.always = true
	case rate > 0:
		p.bound = uint64(rate * (1 << 63))
	}
	p.tracer = &spanTracer{p: p}
	return p
}

// Tracer is the provider's one tracer, whatever the name.
func (p *spanProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return p.tracer }

// ForceFlush has the processors export what they hold.
func (p *spanProvider) ForceFlush(ctx context.Context) error {
	return eachProcessor(ctx, p.procs, spanProcessor.ForceFlush)
}

// Shutdown flushes and stops the processors.
func (p *spanProvider) Shutdown(ctx context.Context) error {
	return eachProcessor(ctx, p.procs, spanProcessor.Shutdown)
}

// eachProcessor calls do on every processor, and returns the first error.
func eachProcessor(ctx context.Context, procs []spanProcessor, do func(spanProcessor, context.Context) error) error {
	var first error
	for _, pr := range procs {
		if err := do(pr, ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// sample decides for a span of trace tid whose parent is parent.
func (p *spanProvider) sample(parent trace.SpanContext, tid trace.TraceID) bool {
	if parent.IsValid() {
		return parent.IsSampled()
	}
	return p.always || binary.BigEndian.Uint64(tid[8:])>>1 < p.bound
}

type spanTracer struct {
	embedded.Tracer
	p *spanProvider
}

// Start starts a span, a child of the span in ctx unless told to start a
// new trace; a span not sampled records nothing and carries its context.
func (t *spanTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg := trace.NewSpanStartConfig(opts...)
	var parent trace.SpanContext
	if !cfg.NewRoot() {
		parent = trace.SpanContextFromContext(ctx)
	}
	tid := parent.TraceID()
	if !parent.IsValid() {
		tid = newTraceID()
	}
	sampled := t.p.sample(parent, tid)
	var flags trace.TraceFlags
	if sampled {
		flags = trace.FlagsSampled
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: newSpanID(), TraceFlags: flags, TraceState: parent.TraceState()})
	if !sampled {
		ctx = trace.ContextWithSpanContext(ctx, sc)
		return ctx, trace.SpanFromContext(ctx)
	}
	s := &span{p: t.p, sc: sc, parent: parent, name: name, kind: trace.ValidateSpanKind(cfg.SpanKind()), start: cfg.Timestamp()}
	if s.start.IsZero() {
		s.start = time.Now()
	}
	s.attrs = s.inline[:0]
	s.setAttributes(cfg.Attributes())
	for _, l := range cfg.Links() {
		s.addLink(l)
	}
	return trace.ContextWithSpan(ctx, s), s
}

func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.NativeEndian.PutUint64(id[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.NativeEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

// span is a sampled span (above). Safe for concurrent use.
type span struct {
	embedded.Span
	p      *spanProvider
	sc     trace.SpanContext
	parent trace.SpanContext
	kind   trace.SpanKind
	start  time.Time

	mu           sync.Mutex
	ended        bool
	name         string
	end          time.Time
	attrs        []attribute.KeyValue // inline's until it outgrows it
	inline       [8]attribute.KeyValue
	events       []sdktrace.Event
	links        []sdktrace.Link
	status       sdktrace.Status
	droppedAttrs int
	droppedEvts  int
	droppedLinks int
}

// End ends the span and hands it to the provider's processors; later
// calls do nothing.
func (s *span) End(opts ...trace.SpanEndOption) {
	now := time.Now()
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	if len(opts) > 0 {
		if cfg := trace.NewSpanEndConfig(opts...); !cfg.Timestamp().IsZero() {
			now = cfg.Timestamp()
		}
	}
	s.end = now
	s.mu.Unlock()
	for _, p := range s.p.procs {
		p.OnEnd(s)
	}
}

func (s *span) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	if !s.ended {
		s.setAttributes(kv)
	}
	s.mu.Unlock()
}

// setAttributes adds kv, each replacing the value of an attribute of its
// key where there is one. Called with mu held, or before the span is
// shared.
func (s *span) setAttributes(kv []attribute.KeyValue) {
next:
	for _, a := range kv {
		if !a.Valid() {
			s.droppedAttrs++
			continue
		}
		for i := range s.attrs {
			if s.attrs[i].Key == a.Key {
				s.attrs[i] = a
				continue next
			}
		}
		if len(s.attrs) >= maxAttributes {
			s.droppedAttrs++
			continue
		}
		s.attrs = append(s.attrs, a)
	}
}

func (s *span) AddEvent(name string, opts ...trace.EventOption) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.addEvent(name, trace.NewEventConfig(opts...))
	}
}

// addEvent records an event. Called with mu held.
func (s *span) addEvent(name string, cfg trace.EventConfig) {
	if len(s.events) >= maxEvents {
		s.droppedEvts++
		return
	}
	t := cfg.Timestamp()
	if t.IsZero() {
		t = time.Now()
	}
	s.events = append(s.events, sdktrace.Event{Name: name, Attributes: cfg.Attributes(), Time: t})
}

// RecordError records err as an "exception" event, as the SDK does.
func (s *span) RecordError(err error, opts ...trace.EventOption) {
	if err == nil {
		return
	}
	opts = append(opts, trace.WithAttributes(
		attribute.String("exception.type", errorType(err)),
		attribute.String("exception.message", err.Error())))
	cfg := trace.NewEventConfig(opts...)
	if cfg.StackTrace() {
		buf := make([]byte, 2048)
		buf = buf[:runtime.Stack(buf, false)]
		cfg = trace.NewEventConfig(append(opts, trace.WithAttributes(attribute.String("exception.stacktrace", string(buf))))...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.addEvent("exception", cfg)
	}
}

// errorType is the SDK's exception.type of err: its type's package path
// and name, or the type as Go writes it for types without a name.
func errorType(err error) string {
	t := reflect.TypeOf(err)
	if t.PkgPath() == "" && t.Name() == "" {
		return t.String()
	}
	return t.PkgPath() + "." + t.Name()
}

func (s *span) AddLink(l trace.Link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.addLink(l)
	}
}

// addLink records a link to a valid span context. Called with mu held, or
// before the span is shared.
func (s *span) addLink(l trace.Link) {
	if !l.SpanContext.IsValid() {
		return
	}
	if len(s.links) >= maxLinks {
		s.droppedLinks++
		return
	}
	s.links = append(s.links, sdktrace.Link{SpanContext: l.SpanContext, Attributes: l.Attributes})
}

// SetStatus sets the status: Ok is final, Error replaces none or Error,
// and only Error keeps a description.
func (s *span) SetStatus(code codes.Code, description string) {
	st := sdktrace.Status{Code: code}
	if code == codes.Error {
		st.Description = description
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended && s.status.Code <= st.Code {
		s.status = st
	}
}

func (s *span) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.name = name
	}
}

func (s *span) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended
}

func (s *span) SpanContext() trace.SpanContext       { return s.sc }
func (s *span) TracerProvider() trace.TracerProvider { return s.p }
func (s *span) Parent() trace.SpanContext            { return s.parent }
func (s *span) SpanKind() trace.SpanKind             { return s.kind }
func (s *span) StartTime() time.Time                 { return s.start }
func (s *span) Resource() *resource.Resource         { return s.p.res }
func (s *span) InstrumentationScope() sdkscope.Scope { return s.p.scope }

// The rest is read by the exporters once the span has ended, when nothing
// changes it any more (every change is made under mu before End, which
// hands the span on after setting ended under mu), so without mu.

func (s *span) Name() string       { return s.name }
func (s *span) EndTime() time.Time { return s.end }
func (s *span) Attributes() []attribute.KeyValue {
	if len(s.attrs) == 0 {
		return nil // as the SDK's
	}
	return s.attrs
}
func (s *span) Links() []sdktrace.Link   { return s.links }
func (s *span) Events() []sdktrace.Event { return s.events }
func (s *span) Status() sdktrace.Status  { return s.status }
func (s *span) DroppedAttributes() int   { return s.droppedAttrs }
func (s *span) DroppedEvents() int       { return s.droppedEvts }
func (s *span) DroppedLinks() int        { return s.droppedLinks }

var (
	_ trace.Span           = (*span)(nil)
	_ endedSpan            = (*span)(nil)
	_ endedSpan            = sdktrace.ReadOnlySpan(nil)
	_ trace.Tracer         = (*spanTracer)(nil)
	_ trace.TracerProvider = (*spanProvider)(nil)
)
