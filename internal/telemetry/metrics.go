package telemetry

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/pkg/state"
)

// Metrics counts and times what the sidecar serves, for Prometheus on the
// metrics port. Labels are bounded: route and method names from the route
// tables and the Dapr service, store names from the Components, app ids of
// callees, status codes, and topics that are subscribed or declared
// (others are "other"). Method paths and keys are never labels.
type Metrics struct {
	appID                 string
	httpTotal, grpcTotal  *prometheus.CounterVec
	httpTime, grpcTime    *prometheus.HistogramVec
	invokeTotal, stateOps *prometheus.CounterVec
	invokeTime, stateTime *prometheus.HistogramVec
	published             *prometheus.CounterVec
	publishTime           *prometheus.HistogramVec
}

// latencyBuckets span 100 µs to 10 s.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewMetrics registers the sidecar's metrics with reg (nil: none).
func NewMetrics(appID string, reg prometheus.Registerer) *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		return register(reg, c).(*prometheus.CounterVec)
	}
	hist := func(name, help string, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets}, labels)
		return register(reg, h).(*prometheus.HistogramVec)
	}
	return &Metrics{
		appID:       appID,
		httpTotal:   counter("tandem_http_server_requests_total", "HTTP API requests, by route and status.", "app_id", "route", "status"),
		httpTime:    hist("tandem_http_server_request_duration_seconds", "HTTP API request time until the answer's header, by route.", "app_id", "route"),
		grpcTotal:   counter("tandem_grpc_server_requests_total", "gRPC API calls, by method (proxy for proxied calls) and code.", "app_id", "method", "code"),
		grpcTime:    hist("tandem_grpc_server_request_duration_seconds", "gRPC API call time, by method.", "app_id", "method"),
		invokeTotal: counter("tandem_invoke_requests_total", "Calls to peer sidecars, by callee app id and status.", "app_id", "target", "status"),
		invokeTime:  hist("tandem_invoke_request_duration_seconds", "Time until a peer sidecar's answer header, by callee app id.", "app_id", "target"),
		stateOps:    counter("tandem_state_operations_total", "State store operations, by store, operation and outcome (ok, conflict, error).", "app_id", "store", "operation", "outcome"),
		stateTime:   hist("tandem_state_operation_duration_seconds", "State store operation time, by store and operation.", "app_id", "store", "operation"),
		published:   counter("tandem_pubsub_published_total", "Events published, by pubsub, topic (other: a topic not subscribed or declared) and outcome (success, forbidden, timeout, circuit_open, canceled, error).", "app_id", "pubsub", "topic", "outcome"),
		publishTime: hist("tandem_pubsub_publish_duration_seconds", "Publish time, every try included, by pubsub and topic (other: a topic not subscribed or declared).", "app_id", "pubsub", "topic"),
	}
}

// register registers c, or returns the collector already registered under
// its name (two sidecars in one process, as in benchmarks).
func register(reg prometheus.Registerer, c prometheus.Collector) prometheus.Collector {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector
		}
	}
	return c
}

// HTTP wraps the handler of the route named route.
func (m *Metrics) HTTP(route string, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &codeWriter{ResponseWriter: w, start: start}
		next.ServeHTTP(sw, r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		if sw.header == 0 {
			sw.header = time.Since(start)
		}
		m.httpTotal.WithLabelValues(m.appID, route, strconv.Itoa(code)).Inc()
		m.httpTime.WithLabelValues(m.appID, route).Observe(sw.header.Seconds())
	})
}

// codeWriter records the status and when the header went out (a streamed
// answer's time is its first byte, not its end).
type codeWriter struct {
	http.ResponseWriter
	start  time.Time
	code   int
	header time.Duration
}

func (w *codeWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code, w.header = code, time.Since(w.start)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *codeWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *codeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// GRPCServerOptions are the interceptors that count every gRPC call.
func (m *Metrics) GRPCServerOptions() []grpc.ServerOption {
	if m == nil {
		return nil
	}
	observe := func(method string, start time.Time, err error) {
		m.grpcTotal.WithLabelValues(m.appID, method, status.Code(err).String()).Inc()
		m.grpcTime.WithLabelValues(m.appID, method).Observe(time.Since(start).Seconds())
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			start := time.Now()
			resp, err := h(ctx, req)
			observe(grpcMethodLabel(info.FullMethod), start, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			start := time.Now()
			err := h(srv, ss)
			observe(grpcMethodLabel(info.FullMethod), start, err)
			return err
		}),
	}
}

// grpcMethodLabel keeps the methods of the sidecar's own services; any
// other (a proxied call to an app's service) is "proxy".
func grpcMethodLabel(full string) string {
	if strings.HasPrefix(full, "/dapr.proto.runtime.v1.Dapr/") || strings.HasPrefix(full, "/grpc.health.v1.Health/") {
		return full
	}
	return "proxy"
}

// HopClient wraps the client of the hop to peer sidecars.
func (m *Metrics) HopClient(rt http.RoundTripper) http.RoundTripper {
	if m == nil {
		return rt
	}
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		start := time.Now()
		target := req.Header.Get(wire.CalleeAppID)
		resp, err := rt.RoundTrip(req)
		st := "error"
		if err == nil {
			st = strconv.Itoa(resp.StatusCode)
			if kind := resp.Header.Get(wire.HopError); kind != "" {
				st = kind
			}
		}
		m.invokeTotal.WithLabelValues(m.appID, target, st).Inc()
		m.invokeTime.WithLabelValues(m.appID, target).Observe(time.Since(start).Seconds())
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// StateMiddleware counts and times each state store call, by store,
// operation and outcome (ok, conflict, error). Give it to
// state.Service.Use. Without metrics (m nil) it is nil.
func (m *Metrics) StateMiddleware() state.Middleware {
	if m == nil {
		return nil
	}
	return func(ctx context.Context, c *state.Call, next func(context.Context) error) error {
		start := time.Now()
		err := next(ctx)
		outcome := "ok"
		switch {
		case errors.Is(err, state.ErrETagMismatch) || errors.Is(err, state.ErrETagInvalid):
			outcome = "conflict"
		case err != nil:
			outcome = "error"
		}
		m.stateOps.WithLabelValues(m.appID, c.Store.Name, string(c.Kind), outcome).Inc()
		m.stateTime.WithLabelValues(m.appID, c.Store.Name, string(c.Kind)).Observe(time.Since(start).Seconds())
		return err
	}
}
