package telemetry

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// Span attribute keys: OpenTelemetry's semantic conventions, and Dapr's own.
const (
	attrDaprAPI        = "dapr.api"
	attrDaprProtocol   = "dapr.protocol"
	attrDaprStatusCode = "dapr.status_code"
	attrDaprMethod     = "dapr.invoke_method"
	attrHTTPMethod     = "http.request.method"
	attrHTTPStatus     = "http.response.status_code"
	attrURLFull        = "url.full"
	attrClientAddr     = "client.address"
	attrServerAddr     = "server.address"
	attrServerPort     = "server.port"
	attrPeerService    = "peer.service"
	attrRPCSystem      = "rpc.system"
	attrRPCService     = "rpc.service"
	attrRPCMethod      = "rpc.method"
	attrGRPCStatus     = "rpc.grpc.status_code"
)

// HTTPServer wraps an HTTP handler with a server span named by name(r). The
// trace context comes from the request (W3C, else B3), and the span's
// traceparent goes back on the response.
func (t *Tracing) HTTPServer(name func(r *http.Request) string, next http.Handler) http.Handler {
	return t.httpServer(name, next, false)
}

// httpServer is HTTPServer; for a hop (quiet), the span's traceparent goes
// on the response only when the request came without one. A peer sidecar
// that sends one traces the call, and puts its own span's on the answer it
// gives its app in place of this one: sent, it would be a header new on
// every call on the hop, which HTTP/2's header compression adds to its
// table and evicts again on both sides.
func (t *Tracing) httpServer(name func(r *http.Request) string, next http.Handler, quiet bool) http.Handler {
	if !t.wraps() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := t.provider()
		if p == nil {
			next.ServeHTTP(w, r)
			return
		}
		answer := !quiet || r.Header.Get("Traceparent") == ""
		ctx := t.prop.Extract(r.Context(), headerCarrier(r.Header))
		for _, h := range b3Headers {
			delete(r.Header, h)
		}
		ctx, sp := p.tracer.Start(ctx, name(r), serverKind)
		s, sampled := sp.(*span)
		var api, uri, client string
		if sampled { // the request as it came, before the handler
			api, uri, client = r.Method+" "+r.URL.Path, r.URL.RequestURI(), hostOf(r.RemoteAddr)
		}
		sw := &statusWriter{ResponseWriter: w, t: t, span: sp, answer: answer}
		defer func() {
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			if sampled {
				s.SetAttributes(
					attribute.String(attrDaprProtocol, "http"),
					attribute.String(attrDaprAPI, api),
					attribute.String(attrHTTPMethod, r.Method),
					attribute.String(attrURLFull, uri),
					attribute.String(attrClientAddr, client),
					attribute.Int(attrHTTPStatus, status), attribute.Int(attrDaprStatusCode, status))
			}
			if status >= 500 {
				sp.SetStatus(codes.Error, fmt.Sprintf("HTTP %d %s", status, http.StatusText(status)))
			}
			sp.End()
		}()
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// statusWriter records the status and, when answer, puts the span's
// traceparent on the response, replacing any a downstream answer carried.
type statusWriter struct {
	http.ResponseWriter
	t      *Tracing
	span   trace.Span
	status int
	answer bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		if w.answer {
			h := w.Header()
			delete(h, "Traceparent")
			delete(h, "Tracestate")
			w.t.prop.Inject(trace.ContextWithSpan(context.Background(), w.span), headerCarrier(h))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush and full duplex.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// HTTPClient wraps a RoundTripper with client spans named by name(req),
// of calls to app peer(req), and sends the span's context with the
// request. It sets the trace headers on the request it is given: its
// callers (the hop and the app channel) build each request for one round
// trip. The span ends when the response body is closed or read to the end,
// so a stream's span covers the stream.
func (t *Tracing) HTTPClient(name, peer func(*http.Request) string, rt http.RoundTripper) http.RoundTripper {
	if !t.wraps() {
		return rt
	}
	return &clientTransport{t: t, name: name, peer: peer, rt: rt}
}

type clientTransport struct {
	t          *Tracing
	name, peer func(*http.Request) string
	rt         http.RoundTripper
	// untraced: while tracing is off, requests still get a trace context
	// (untracedHeader); for the app channel.
	untraced bool
}

func (c *clientTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := c.t.provider()
	if p == nil {
		if c.untraced {
			untracedHeader(req.Header)
		}
		return c.rt.RoundTrip(req)
	}
	ctx, sp := p.tracer.Start(req.Context(), c.name(req), clientKind)
	c.t.prop.Inject(ctx, headerCarrier(req.Header))
	// The request keeps its context: nothing below it reads the span, and
	// a request made over for a context is an allocation a call.
	resp, err := c.rt.RoundTrip(req)
	s, sampled := sp.(*span)
	if sampled {
		s.setCall(req.Method, c.peer(req), req.URL.Host)
	}
	if err != nil {
		sp.RecordError(err)
		sp.SetStatus(codes.Error, err.Error())
		sp.End()
		return nil, err
	}
	if sampled {
		s.SetAttributes(attribute.Int(attrHTTPStatus, resp.StatusCode))
	}
	if kind := resp.Header.Get(wire.HopError); kind != "" {
		sp.SetStatus(codes.Error, "the peer sidecar failed: "+kind)
	} else if resp.StatusCode >= 500 {
		sp.SetStatus(codes.Error, fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode)))
	}
	resp.Body = &spanBody{ReadCloser: resp.Body, span: sp}
	return resp, nil
}

// spanBody ends its span at EOF, error or Close, once.
type spanBody struct {
	io.ReadCloser
	span  trace.Span
	ended atomic.Bool
}

func (b *spanBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.ended.CompareAndSwap(false, true) {
		if err != io.EOF {
			b.span.RecordError(err)
			b.span.SetStatus(codes.Error, err.Error())
		}
		b.span.End()
	}
	return n, err
}

func (b *spanBody) Close() error {
	if b.ended.CompareAndSwap(false, true) {
		b.span.End()
	}
	return b.ReadCloser.Close()
}

// InvokeSpanName is the name of invocation spans, as Dapr names them:
// CallLocal/<app-id>/<method>.
func InvokeSpanName(appID, method string) string {
	return "CallLocal/" + appID + "/" + strings.TrimPrefix(method, "/")
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
