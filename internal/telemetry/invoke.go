package telemetry

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"

	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// The spans of an invocation, named as Dapr names them: CallLocal/<app>/<method>
// for the hop (both sides), CallApp/<app>/<method> for the call to the app.

// HopClient traces the calls to peer sidecars.
func (t *Tracing) HopClient(rt http.RoundTripper) http.RoundTripper {
	return t.HTTPClient(func(r *http.Request) string {
		return InvokeSpanName(r.Header.Get(wire.CalleeAppID), r.URL.Path)
	}, func(r *http.Request) string { return r.Header.Get(wire.CalleeAppID) }, rt)
}

// HopServer traces the calls from peer sidecars to app appID.
func (t *Tracing) HopServer(appID string, next http.Handler) http.Handler {
	return t.httpServer(func(r *http.Request) string { return InvokeSpanName(appID, r.URL.Path) }, next, true)
}

// AppClient traces the calls of app appID's sidecar to its app over HTTP;
// while tracing is off, each call still carries a trace context, as daprd
// sends one (untracedHeader).
func (t *Tracing) AppClient(appID string) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		if !t.wraps() {
			return untracedTransport{rt}
		}
		return &clientTransport{t: t, rt: rt, untraced: true,
			name: func(r *http.Request) string { return appSpanName(appID, r.URL.Path) },
			peer: func(*http.Request) string { return appID }}
	}
}

// AppGRPCOptions trace the calls of app appID's sidecar to its gRPC app;
// while tracing is off, each call still carries a trace context.
func (t *Tracing) AppGRPCOptions(appID string) []grpc.DialOption {
	return t.GRPCClientOptions(func(m string) string { return appSpanName(appID, m) })
}

func appSpanName(appID, method string) string {
	return "CallApp/" + appID + "/" + strings.TrimPrefix(method, "/")
}

// setCall records the attributes of a call of method to app peer at
// hostport.
func (s *span) setCall(method, peer, hostport string) {
	s.SetAttributes(attribute.String(attrHTTPMethod, method), attribute.String(attrPeerService, peer))
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		s.SetAttributes(attribute.String(attrServerAddr, h))
		if n, err := strconv.Atoi(p); err == nil {
			s.SetAttributes(attribute.Int(attrServerPort, n))
		}
	}
}
