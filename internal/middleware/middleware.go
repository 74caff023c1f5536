// Package middleware runs the middleware pipelines of a sidecar's
// Configuration on every entrance of calls: spec.httpPipeline on the calls
// of the app to its sidecar's APIs (the HTTP API, the gRPC API and the gRPC
// calls it proxies), spec.appHttpPipeline on the calls arriving for the
// app from other sidecars, before the app sees them.
//
// A middleware looks at a Call and lets it through or refuses it
// (*apierr.Error: 429 on HTTP, ResourceExhausted on gRPC for a rate
// limit). A middleware that panics or fails otherwise fails that call
// alone: 500 ERR_INTERNAL on HTTP, Internal on gRPC.
package middleware

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/identity"
	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// Call is what a middleware sees of a call.
type Call struct {
	// Protocol is "http" or "grpc".
	Protocol string
	// Method is the HTTP path, or the gRPC full method (/pkg.Svc/Method).
	Method string
	// ClientAddr is the caller's address, without its port.
	ClientAddr string
	// CallerAppID and CallerNamespace are the caller's verified identity:
	// on appHttpPipeline the calling sidecar's certificate's, on
	// httpPipeline the sidecar's own app (the app is the caller). Empty
	// when nothing verified it (mutual TLS off, a plaintext peer): a
	// header the caller sets is never taken for it.
	CallerAppID, CallerNamespace string
	// Header holds the HTTP headers, or the gRPC metadata; a middleware
	// reads it, may set or remove headers (the call goes on with them, on
	// gRPC too), and does not keep it past the call.
	Header http.Header
}

// Middleware decides on a call: nil lets it through; an *apierr.Error
// refuses it with that answer; any other error fails it as a 500.
type Middleware interface {
	Handle(ctx context.Context, c *Call) error
}

// Handler is a middleware of a pipeline, as the Configuration names it.
type Handler struct {
	Name, Type string
	Middleware Middleware
}

// Pipeline is the handlers a call goes through, in order.
type Pipeline []Handler

// Which names a pipeline, as the Configuration does.
type Which string

// The two pipelines of a Configuration.
const (
	API Which = "httpPipeline"    // calls from the app to its sidecar's APIs
	App Which = "appHttpPipeline" // calls for the app from other sidecars
)

// retryAfter is an *apierr.Error's wait before a retry, set by a rate
// limit: its Retry-After header on HTTP.
type retryAfter interface{ RetryAfter() time.Duration }

// Refusal is the answer of a middleware that refuses a call, with how
// long the caller should wait before it tries again (0: not said).
type Refusal struct {
	Err  *apierr.Error
	Wait time.Duration
}

func (r *Refusal) Error() string { return r.Err.Message }

// RetryAfter is how long the caller should wait.
func (r *Refusal) RetryAfter() time.Duration { return r.Wait }

// Unwrap gives the API error.
func (r *Refusal) Unwrap() error { return r.Err }

// Degraded is the answer of a middleware that lets a call through though
// it could not do its work (a rate limit whose store is down, failing
// open): the call goes on, and the pipeline logs Err.
type Degraded struct{ Err error }

func (d *Degraded) Error() string { return d.Err.Error() }

// Unwrap gives the reason.
func (d *Degraded) Unwrap() error { return d.Err }

// CodeTooManyRequests is the error code of a call refused by a rate limit.
const CodeTooManyRequests = "ERR_TOO_MANY_REQUESTS"

// Switch holds the pipelines in force; a call goes through those in force
// when it starts.
type Switch struct {
	api, app atomic.Pointer[Pipeline]
	comps    atomic.Pointer[[]Component]
	refused  *prometheus.CounterVec
	failed   *prometheus.CounterVec
	log      *slog.Logger
	appID    string // the caller on httpPipeline
}

// NewSwitch returns a Switch with empty pipelines, its metrics registered
// on reg (nil: not registered).
func NewSwitch(appID string, reg prometheus.Registerer, log *slog.Logger) *Switch {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	labels := prometheus.Labels{"app_id": appID}
	s := &Switch{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_middleware_refused_total", ConstLabels: labels,
			Help: "Calls a middleware refused (a rate limit: 429, ResourceExhausted), by pipeline, middleware and protocol.",
		}, []string{"pipeline", "middleware", "type", "protocol"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_middleware_failed_total", ConstLabels: labels,
			Help: "Calls failed with a 500 because a middleware panicked or failed, by pipeline, middleware and protocol.",
		}, []string{"pipeline", "middleware", "type", "protocol"}),
		log:   log,
		appID: appID,
	}
	s.refused = register(reg, s.refused)
	s.failed = register(reg, s.failed)
	return s
}

// register registers c on reg, or returns the collector already
// registered under its name (sidecars run in one process, in tests).
func register(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}

// Set puts the pipelines in force, for the calls that start from now on.
func (s *Switch) Set(api, app Pipeline) {
	s.api.Store(&api)
	s.app.Store(&app)
}

// Component is a middleware Component in force, whether a pipeline names
// it or not.
type Component struct{ Name, Type string }

// SetComponents says which middleware Components are in force (for the
// sidecar's metadata).
func (s *Switch) SetComponents(cs []Component) { s.comps.Store(&cs) }

// Components are the middleware Components in force.
func (s *Switch) Components() []Component {
	if p := s.comps.Load(); p != nil {
		return *p
	}
	return nil
}

// Pipeline is the pipeline w in force.
func (s *Switch) Pipeline(w Which) Pipeline {
	p := s.api.Load()
	if w == App {
		p = s.app.Load()
	}
	if p == nil {
		return nil
	}
	return *p
}

// run takes c through the pipeline w: nil, or the error that ends the
// call (an *apierr.Error).
func (s *Switch) run(ctx context.Context, w Which, c *Call) error {
	for _, h := range s.Pipeline(w) {
		err := s.handle(ctx, h, c)
		if err == nil {
			continue
		}
		if d := (*Degraded)(nil); errors.As(err, &d) {
			s.log.Warn("middleware let a call through without doing its work", "pipeline", w, "middleware", h.Name, "type", h.Type, "err", d.Err)
			continue
		}
		if e := (*apierr.Error)(nil); errors.As(err, &e) {
			s.refused.WithLabelValues(string(w), h.Name, h.Type, c.Protocol).Inc()
			return err
		}
		s.failed.WithLabelValues(string(w), h.Name, h.Type, c.Protocol).Inc()
		s.log.Error("middleware failed; the call is answered 500", "pipeline", w, "middleware", h.Name, "type", h.Type, "method", c.Method, "err", err)
		return apierr.New("ERR_INTERNAL", http.StatusInternalServerError, codes.Internal,
			"middleware %q (%s) of %s failed: %v", h.Name, h.Type, w, err)
	}
	return nil
}

// handle runs one handler; a panic is its error.
func (s *Switch) handle(ctx context.Context, h Handler, c *Call) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return h.Middleware.Handle(ctx, c)
}

// HTTP wraps next with the pipeline w.
func (s *Switch) HTTP(w Which, next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if len(s.Pipeline(w)) == 0 {
			next.ServeHTTP(rw, r)
			return
		}
		c := &Call{Protocol: "http", Method: r.URL.Path, ClientAddr: host(r.RemoteAddr), Header: r.Header}
		s.caller(r.Context(), w, c)
		if err := s.run(r.Context(), w, c); err != nil {
			WriteHTTP(rw, err)
			return
		}
		next.ServeHTTP(rw, r)
	})
}

// WriteHTTP writes err, a pipeline's error, as an HTTP answer: the API's
// error body, and Retry-After (in whole seconds, at least 1) when the
// middleware said how long to wait.
func WriteHTTP(rw http.ResponseWriter, err error) {
	if rh, ok := err.(interface{ ResponseHeader() http.Header }); ok {
		for k, v := range rh.ResponseHeader() {
			rw.Header()[k] = v
		}
	}
	if ra, ok := err.(retryAfter); ok && ra.RetryAfter() > 0 {
		rw.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(ra.RetryAfter())))
	}
	apierr.Write(rw, err)
}

// RetryAfterSeconds is d in whole seconds, rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// GRPCStatus is err, a pipeline's error, as a gRPC status: its code, its
// ErrorInfo, and a RetryInfo when the middleware said how long to wait.
func GRPCStatus(err error) *status.Status {
	st := apierr.As(err, "ERR_INTERNAL").GRPCStatus()
	if ra, ok := err.(retryAfter); ok && ra.RetryAfter() > 0 {
		if d, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(ra.RetryAfter())}); derr == nil {
			return d
		}
	}
	return st
}

// healthService is gRPC's health service, which probes call and a limit
// must not fail: the pipelines do not run on it, as on the HTTP API's
// health routes.
const healthService = "/grpc.health.v1.Health/"

// GRPCServerOptions are the interceptors that run the pipeline w on the
// calls of a gRPC server, the proxied ones included (they pass through
// the stream interceptors), but those of gRPC's health service.
func (s *Switch) GRPCServerOptions(w Which) []grpc.ServerOption {
	check := func(ctx context.Context, method string) (context.Context, error) {
		if len(s.Pipeline(w)) == 0 || strings.HasPrefix(method, healthService) {
			return ctx, nil
		}
		c := &Call{Protocol: "grpc", Method: method}
		s.caller(ctx, w, c)
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			c.ClientAddr = host(p.Addr.String())
		}
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			c.Header = make(http.Header, len(md))
			for k, v := range md {
				c.Header[http.CanonicalHeaderKey(k)] = v
			}
		}
		err := s.run(ctx, w, c)
		if err == nil {
			return withMetadata(ctx, c.Header), nil
		}
		if ra, ok := err.(retryAfter); ok && ra.RetryAfter() > 0 {
			_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", strconv.Itoa(RetryAfterSeconds(ra.RetryAfter()))))
		}
		return ctx, GRPCStatus(err).Err()
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ctx, err := check(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			ctx, err := check(ss.Context(), info.FullMethod)
			if err != nil {
				return err
			}
			if ctx != ss.Context() {
				ss = &streamContext{ServerStream: ss, ctx: ctx}
			}
			return h(srv, ss)
		}),
	}
}

// caller sets the caller's verified identity on c: on httpPipeline the
// sidecar's own app; on appHttpPipeline the identity the internal port
// took from the calling sidecar's certificate (identity.FromContext), if
// any.
func (s *Switch) caller(ctx context.Context, w Which, c *Call) {
	if w == API {
		c.CallerAppID = s.appID
		return
	}
	if id, ok := identity.FromContext(ctx); ok {
		c.CallerAppID, c.CallerNamespace = id.AppID, id.Namespace
	}
}

// host is addr without its port; addr itself when it has none (a Unix
// socket's).
func host(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return strings.TrimSpace(addr)
}

// Hop wraps next, the handler of the calls from other sidecars, with the
// pipeline w: a refused HTTP call gets the refusal as the app's answer
// (429 and Retry-After, as from the app), a refused gRPC call proxied on
// the hop a trailers-only gRPC answer (ResourceExhausted), which the
// caller's sidecar relays.
func (s *Switch) Hop(w Which, next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		StripBearerHeaders(r.Header) // only the app's own sidecar sets them
		if len(s.Pipeline(w)) == 0 {
			next.ServeHTTP(rw, r)
			return
		}
		grpcProxy := wire.IsGRPCProxy(r.Header)
		protocol := "http"
		if grpcProxy {
			protocol = "grpc"
		}
		c := &Call{Protocol: protocol, Method: r.URL.Path, ClientAddr: host(r.RemoteAddr), Header: r.Header}
		s.caller(r.Context(), w, c)
		err := s.run(r.Context(), w, c)
		switch {
		case err == nil:
			next.ServeHTTP(rw, r)
		case grpcProxy:
			writeGRPCTrailersOnly(rw, err)
		default:
			WriteHTTP(rw, err)
		}
	})
}

// writeGRPCTrailersOnly answers a gRPC call with err's status alone.
func writeGRPCTrailersOnly(rw http.ResponseWriter, err error) {
	st := GRPCStatus(err)
	h := rw.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(int(st.Code())))
	h.Set("Grpc-Message", url.PathEscape(st.Message()))
	if b, merr := proto.Marshal(st.Proto()); merr == nil {
		h.Set("Grpc-Status-Details-Bin", base64.RawStdEncoding.EncodeToString(b))
	}
	if ra, ok := err.(retryAfter); ok && ra.RetryAfter() > 0 {
		h.Set("Retry-After", strconv.Itoa(RetryAfterSeconds(ra.RetryAfter())))
	}
	rw.WriteHeader(http.StatusOK)
}
