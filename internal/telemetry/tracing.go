// Package telemetry is the sidecar's tracing: spans of its own behind
// OpenTelemetry's tracing API (span.go), set up from the Configuration's
// spec.tracing and exported to Zipkin or OTLP, W3C (and, inbound,
// B3) propagation, and the middleware that wraps the API adapters, the
// internal hop, the app channel and the state stores. When tracing is off
// every wrapper returns what it was given, so an untraced sidecar pays
// nothing, but for the app channel's: as daprd, the sidecar gives its app a
// trace context on every invocation, the caller's or a new one, recording
// nothing (traceparent.go).
package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandem-run/tandem/internal/config"
)

const instrumentation = "github.com/tandem-run/tandem"

// Tracing creates the sidecar's spans. The zero value and a nil *Tracing
// trace nothing. Its settings can change while it serves (Update), when it
// was made with Options.Reloadable.
type Tracing struct {
	cur    atomic.Pointer[provider] // nil: tracing off
	live   bool                     // wrappers are installed even while off
	prop   propagation.TextMapPropagator
	appID  string
	opts   Options
	mu     sync.Mutex // held by Update and Shutdown
	closed bool
}

// provider is what one set of settings traces with.
type provider struct {
	tp       *spanProvider
	tracer   *spanTracer
	settings config.TracingSettings
}

// Options are what NewTracing needs besides the settings.
type Options struct {
	AppID  string
	Logger *slog.Logger
	// Registerer receives the exporters' counters (spans dropped); nil:
	// not registered.
	Registerer prometheus.Registerer
	// Reloadable installs the wrappers even while tracing is off, so that
	// Update can turn it on; a call then pays one atomic load to find
	// tracing off.
	Reloadable bool
	// Drain is how long a replaced provider keeps taking the spans of
	// calls that started before Update, before it flushes and stops;
	// default 10 s.
	Drain time.Duration
}

// NewTracing sets up tracing as s says: spans sampled as their parent
// was, else at the sampling rate, and an exporter for each endpoint given. With tracing off it returns a
// Tracing that traces nothing.
func NewTracing(s config.TracingSettings, o Options) (*Tracing, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Drain == 0 {
		o.Drain = 10 * time.Second
	}
	t := &Tracing{live: o.Reloadable, prop: Propagator(), appID: o.AppID, opts: o}
	p, err := t.newProvider(s)
	if err != nil {
		return nil, err
	}
	t.cur.Store(p)
	return t, nil
}

// newProvider is the provider of s, nil when s traces nothing.
func (t *Tracing) newProvider(s config.TracingSettings) (*provider, error) {
	if !s.Enabled() {
		return nil, nil
	}
	o := t.opts
	var procs []spanProcessor
	if s.ZipkinEndpoint != "" {
		zp, err := newZipkinProcessor(s.ZipkinEndpoint, o.Logger.With("exporter", "zipkin"), o.Registerer)
		if err != nil {
			return nil, err
		}
		procs = append(procs, zp)
	}
	if s.OTLPEndpoint != "" {
		op, err := newOTLPProcessor(s, o.Logger.With("exporter", "otlp"), o.Registerer)
		if err != nil {
			_ = eachProcessor(context.Background(), procs, spanProcessor.Shutdown)
			return nil, err
		}
		procs = append(procs, op)
	}
	if s.Stdout {
		procs = append(procs, logProcessor{o.Logger.With("exporter", "stdout")})
	}
	tp := newSpanProvider(o.AppID, s.SamplingRate, procs...)
	o.Logger.Info("tracing on", "sampling_rate", s.SamplingRate, "zipkin", s.ZipkinEndpoint, "otlp", s.OTLPEndpoint)
	return &provider{tp: tp, tracer: tp.tracer, settings: s}, nil
}

// Update puts s in force for the calls that start from now on. Calls in
// flight end their spans on the provider they started with, which flushes
// and stops Options.Drain later. Settings that cannot be set up (an OTLP
// endpoint its exporter refuses) are an error, and the settings in force
// stay. It needs a Tracing made with Options.Reloadable.
func (t *Tracing) Update(s config.TracingSettings) error {
	if !t.live {
		return errors.New("tracing was set up without reload")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("tracing is shut down")
	}
	old := t.cur.Load()
	if old == nil && !s.Enabled() || old != nil && old.settings == s {
		return nil
	}
	p, err := t.newProvider(s)
	if err != nil {
		return err
	}
	t.cur.Store(p)
	if p == nil {
		t.opts.Logger.Info("tracing off")
	}
	if old != nil {
		time.AfterFunc(t.opts.Drain, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = old.tp.Shutdown(ctx)
		})
	}
	return nil
}

// provider is the provider in force, nil when tracing is off.
func (t *Tracing) provider() *provider {
	if t == nil {
		return nil
	}
	return t.cur.Load()
}

// wraps reports whether the wrappers are to be installed: tracing is on,
// or may be turned on.
func (t *Tracing) wraps() bool { return t != nil && (t.live || t.cur.Load() != nil) }

// Enabled reports whether spans are recorded.
func (t *Tracing) Enabled() bool { return t.provider() != nil }

// Shutdown flushes spans and stops the exporters.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	p := t.cur.Load()
	if p == nil {
		return nil
	}
	return p.tp.Shutdown(ctx)
}

// Propagator is the sidecar's context propagation: W3C trace context and
// baggage in and out; B3 (single or multiple headers) also accepted in, for
// apps that use Zipkin's libraries.
func Propagator() propagation.TextMapPropagator {
	return propagator{
		w3c: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		b3:  b3.New(b3.WithInjectEncoding(b3.B3SingleHeader)),
	}
}

type propagator struct {
	w3c propagation.TextMapPropagator
	b3  propagation.TextMapPropagator
}

func (p propagator) Inject(ctx context.Context, c propagation.TextMapCarrier) { p.w3c.Inject(ctx, c) }

func (p propagator) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	if c.Get("traceparent") == "" {
		ctx = p.b3.Extract(ctx, c)
	}
	return p.w3c.Extract(ctx, c)
}

func (p propagator) Fields() []string { return append(p.w3c.Fields(), p.b3.Fields()...) }

// b3Headers are removed once read, so that an app further on does not see
// a B3 context that disagrees with the W3C one the sidecar sends.
var b3Headers = []string{"B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags"}

// logProcessor writes each ended span to the log (spec.tracing.stdout).
type logProcessor struct{ log *slog.Logger }

func (p logProcessor) OnEnd(s endedSpan) {
	p.log.Info("span", "name", s.Name(), "trace_id", s.SpanContext().TraceID().String(),
		"span_id", s.SpanContext().SpanID().String(), "parent_id", s.Parent().SpanID().String(),
		"kind", s.SpanKind().String(), "duration", s.EndTime().Sub(s.StartTime()), "status", s.Status().Code.String())
}
func (logProcessor) Shutdown(context.Context) error   { return nil }
func (logProcessor) ForceFlush(context.Context) error { return nil }

// The span kinds as options, made once: trace.WithSpanKind boxes the kind
// in an interface, an allocation on every span.
var (
	serverKind   = trace.WithSpanKind(trace.SpanKindServer)
	clientKind   = trace.WithSpanKind(trace.SpanKindClient)
	producerKind = trace.WithSpanKind(trace.SpanKindProducer)
	consumerKind = trace.WithSpanKind(trace.SpanKindConsumer)
)
