package telemetry

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/http"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// The trace context an app gets on an invocation while tracing is off.
// daprd always sends one, sampled or not, and apps log or propagate it; so
// does this sidecar, for the price of a header check and, for a call
// without one, a new trace id. Nothing is recorded or exported:
//
//   - a valid W3C traceparent from the caller goes on as it is (with its
//     tracestate): no span of this sidecar stands between the two apps;
//   - else a B3 context from the caller (Zipkin's libraries) is carried
//     over into a traceparent, as the propagator does when tracing is on;
//   - else (none, or a malformed one) a new trace, not sampled (flags 00),
//     and no tracestate.

// untracedTransport gives each request a trace context (untracedHeader).
type untracedTransport struct{ rt http.RoundTripper }

func (u untracedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	untracedHeader(req.Header)
	return u.rt.RoundTrip(req)
}

// untracedHeader sets the traceparent of h, the header of a request to the
// app, as described above.
func untracedHeader(h http.Header) {
	var b3 propagation.TextMapCarrier
	if h["B3"] != nil || h["X-B3-Traceid"] != nil {
		b3 = headerCarrier(h)
	}
	tp, keep := untracedTraceparent(h["Traceparent"], b3)
	if keep {
		return
	}
	h["Traceparent"] = []string{tp}
	delete(h, "Tracestate")
}

// untracedOutgoing is untracedHeader for the outgoing metadata of ctx.
func untracedOutgoing(ctx context.Context) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx) // a copy
	var b3 propagation.TextMapCarrier
	if md["b3"] != nil || md["x-b3-traceid"] != nil {
		b3 = mdCarrier(md)
	}
	tp, keep := untracedTraceparent(md["traceparent"], b3)
	if keep {
		return ctx
	}
	if md == nil {
		md = metadata.MD{}
	}
	md["traceparent"] = []string{tp}
	delete(md, "tracestate")
	return metadata.NewOutgoingContext(ctx, md)
}

// untracedUnary gives each call a trace context (untracedOutgoing).
func untracedUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(untracedOutgoing(ctx), method, req, reply, cc, opts...)
}

// b3In reads B3 contexts, single header or multiple.
var b3In = b3.New()

// untracedTraceparent returns the traceparent for a call that carries the
// traceparent values vals and, when b3 is not nil, B3 headers in it; keep
// reports that the one in vals is valid and goes on as it is.
func untracedTraceparent(vals []string, b3 propagation.TextMapCarrier) (tp string, keep bool) {
	if len(vals) == 1 && validTraceparent(vals[0]) {
		return "", true
	}
	if len(vals) == 0 && b3 != nil {
		if sc := trace.SpanContextFromContext(b3In.Extract(context.Background(), b3)); sc.IsValid() {
			return formatTraceparent(sc.TraceID(), sc.SpanID(), sc.TraceFlags()&trace.FlagsSampled), false
		}
	}
	var tid trace.TraceID
	var sid trace.SpanID
	for !tid.IsValid() || !sid.IsValid() {
		binary.BigEndian.PutUint64(tid[:8], rand.Uint64())
		binary.BigEndian.PutUint64(tid[8:], rand.Uint64())
		binary.BigEndian.PutUint64(sid[:], rand.Uint64())
	}
	return formatTraceparent(tid, sid, 0), false
}

// formatTraceparent is a version 00 traceparent.
func formatTraceparent(tid trace.TraceID, sid trace.SpanID, flags trace.TraceFlags) string {
	var b [55]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(flags)})
	return string(b[:])
}

// validTraceparent reports whether s is a traceparent W3C Trace Context
// accepts: version-traceid-parentid-flags in lower-case hex, a version
// other than ff (00 exactly 55 characters long; a later one at least, and
// then '-' after the flags), and neither id all zeros.
func validTraceparent(s string) bool {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	switch v := s[:2]; {
	case !lowerHex(v) || v == "ff":
		return false
	case v == "00" && len(s) != 55:
		return false
	case len(s) > 55 && s[55] != '-':
		return false
	}
	return lowerHex(s[3:35]) && !allZeros(s[3:35]) && lowerHex(s[36:52]) && !allZeros(s[36:52]) && lowerHex(s[53:55])
}

func lowerHex(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZeros(s string) bool {
	for i := range len(s) {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

var _ http.RoundTripper = untracedTransport{}

// headerCarrier is propagation.HeaderCarrier without its cost per call:
// the propagators ask for lower-case names ("traceparent"), which
// http.Header's Get and Set canonicalise with an allocation each time;
// here the names they use map to their canonical forms once.
type headerCarrier http.Header

// propagatedHeaders are the canonical forms of the names the propagators
// (W3C trace context and baggage, B3) read and write.
var propagatedHeaders = func() map[string]string {
	out := map[string]string{}
	for _, k := range []string{"traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"} {
		out[k] = http.CanonicalHeaderKey(k)
	}
	return out
}()

func (c headerCarrier) Get(key string) string {
	if k, ok := propagatedHeaders[key]; ok {
		if v := c[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return http.Header(c).Get(key)
}

func (c headerCarrier) Set(key, value string) {
	if k, ok := propagatedHeaders[key]; ok {
		c[k] = []string{value}
		return
	}
	http.Header(c).Set(key, value)
}

func (c headerCarrier) Keys() []string { return propagation.HeaderCarrier(c).Keys() }
