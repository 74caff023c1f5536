// Package telemetry is the sidecar's tracing: an OpenTelemetry tracer
// provider set up from the Configuration's spec.tracing, W3C (and, inbound,
// B3) propagation, and the middleware that wraps the API adapters, the
// internal hop, the app channel and the state stores. When tracing is off
// every wrapper returns what it was given, so an untraced sidecar pays
// nothing.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandem-run/tandem/internal/config"
)

const instrumentation = "github.com/tandem-run/tandem"

// Tracing creates the sidecar's spans. The zero value and a nil *Tracing
// trace nothing.
type Tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	appID  string
}

// Options are what NewTracing needs besides the settings.
type Options struct {
	AppID  string
	Logger *slog.Logger
	// Registerer receives the exporters' counters (spans dropped); nil:
	// not registered.
	Registerer prometheus.Registerer
}

// NewTracing sets up tracing as s says: a parent-based ratio sampler, and
// an exporter for each endpoint given. With tracing off it returns a
// Tracing that traces nothing.
func NewTracing(s config.TracingSettings, o Options) (*Tracing, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if !s.Enabled() {
		return &Tracing{}, nil
	}
	res := resource.NewSchemaless(attribute.String("service.name", o.AppID))
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(s.SamplingRate))),
	}
	if s.ZipkinEndpoint != "" {
		zp, err := newZipkinProcessor(s.ZipkinEndpoint, o.Logger.With("exporter", "zipkin"), o.Registerer)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithSpanProcessor(zp))
	}
	if s.OTLPEndpoint != "" {
		exp, err := newOTLPExporter(s)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	if s.Stdout {
		opts = append(opts, sdktrace.WithSpanProcessor(logProcessor{o.Logger.With("exporter", "stdout")}))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	o.Logger.Info("tracing on", "sampling_rate", s.SamplingRate, "zipkin", s.ZipkinEndpoint, "otlp", s.OTLPEndpoint)
	return &Tracing{tp: tp, tracer: tp.Tracer(instrumentation), prop: Propagator(), appID: o.AppID}, nil
}

func newOTLPExporter(s config.TracingSettings) (*otlptrace.Exporter, error) {
	ctx := context.Background()
	endpoint := s.OTLPEndpoint
	isURL := strings.Contains(endpoint, "://")
	if s.OTLPProtocol == "grpc" {
		opts := []otlptracegrpc.Option{}
		if isURL {
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
		} else {
			opts = append(opts, otlptracegrpc.WithEndpoint(endpoint))
		}
		if s.OTLPInsecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	opts := []otlptracehttp.Option{}
	if isURL {
		opts = append(opts, otlptracehttp.WithEndpointURL(endpoint))
	} else {
		opts = append(opts, otlptracehttp.WithEndpoint(endpoint))
	}
	if s.OTLPInsecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("spec.tracing.otel: %w", err)
	}
	return exp, nil
}

// Enabled reports whether spans are recorded.
func (t *Tracing) Enabled() bool { return t != nil && t.tp != nil }

// Shutdown flushes spans and stops the exporters.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.tp.Shutdown(ctx)
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

func (logProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p logProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	p.log.Info("span", "name", s.Name(), "trace_id", s.SpanContext().TraceID().String(),
		"span_id", s.SpanContext().SpanID().String(), "parent_id", s.Parent().SpanID().String(),
		"kind", s.SpanKind().String(), "duration", s.EndTime().Sub(s.StartTime()), "status", s.Status().Code.String())
}
func (logProcessor) Shutdown(context.Context) error   { return nil }
func (logProcessor) ForceFlush(context.Context) error { return nil }
