package telemetry

import (
	"context"
	"net/http"
	"regexp"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tandem-run/tandem/internal/config"
)

// newUnsampled is what a new traceparent looks like: version 00, random
// ids, not sampled.
var newUnsampled = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-00$`)

const callerTP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func TestValidTraceparent(t *testing.T) {
	for _, c := range []struct {
		tp   string
		want bool
	}{
		{callerTP, true},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", true},
		{"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later", true},
		{"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", true},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x", false},
		{"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x", false},
		{"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false},
		{"00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01", false},
		{"00-00000000000000000000000000000000-b7ad6b7169203331-01", false},
		{"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", false},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", false},
		{"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false},
		{"0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0z", false},
		{"", false},
	} {
		if got := validTraceparent(c.tp); got != c.want {
			t.Errorf("validTraceparent(%q) = %v, want %v", c.tp, got, c.want)
		}
	}
}

// With tracing off the app still gets a trace context: the caller's valid
// one as it is, a B3 one carried over, else a new one, not sampled.
func TestUntracedHeader(t *testing.T) {
	for _, c := range []struct {
		name       string
		in         http.Header
		want       string // "" : a new, unsampled one
		tracestate bool
	}{
		{"caller's kept", http.Header{"Traceparent": {callerTP}, "Tracestate": {"a=1"}}, callerTP, true},
		{"none", http.Header{}, "", false},
		{"malformed", http.Header{"Traceparent": {"00-xyz"}, "Tracestate": {"a=1"}}, "", false},
		{"two", http.Header{"Traceparent": {callerTP, callerTP}}, "", false},
		{"B3 single", http.Header{"B3": {"0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1"}},
			"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false},
		{"B3 multiple, not sampled", http.Header{"X-B3-Traceid": {"0af7651916cd43dd8448eb211c80319c"}, "X-B3-Spanid": {"b7ad6b7169203331"}, "X-B3-Sampled": {"0"}},
			"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", false},
		{"W3C over B3", http.Header{"Traceparent": {callerTP}, "B3": {"1111111111111111-2222222222222222-0"}}, callerTP, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := c.in.Clone()
			untracedHeader(h)
			got := h.Values("Traceparent")
			if len(got) != 1 || (c.want != "" && got[0] != c.want) || (c.want == "" && !newUnsampled.MatchString(got[0])) {
				t.Fatalf("traceparent %q, want %q (empty: a new unsampled one)", got, c.want)
			}
			if has := h.Get("Tracestate") != ""; has != c.tracestate {
				t.Errorf("tracestate %q kept: %v, want %v", h.Get("Tracestate"), has, c.tracestate)
			}
		})
	}
	a, b := http.Header{}, http.Header{}
	untracedHeader(a)
	untracedHeader(b)
	if a.Get("Traceparent") == b.Get("Traceparent") {
		t.Errorf("two calls got the same new trace context %q", a.Get("Traceparent"))
	}
}

// The app channel's wrappers give the app a trace context with tracing off,
// whether or not the sidecar can turn tracing on while it runs.
func TestAppChannelWithTracingOff(t *testing.T) {
	for _, reloadable := range []bool{false, true} {
		tr, err := NewTracing(config.TracingSettings{}, Options{AppID: "orders", Reloadable: reloadable})
		if err != nil {
			t.Fatal(err)
		}
		var sent string
		rt := tr.AppClient("orders")(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent = r.Header.Get("Traceparent")
			return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
		}))
		req, _ := http.NewRequest("GET", "http://app/x", nil)
		if _, err := rt.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if !newUnsampled.MatchString(sent) {
			t.Errorf("reloadable %v: the HTTP app got traceparent %q", reloadable, sent)
		}

	}
}

// A call to a gRPC app with tracing off carries the caller's trace context
// in its metadata, or a new one.
func TestUntracedUnary(t *testing.T) {
	var md metadata.MD
	invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		md, _ = metadata.FromOutgoingContext(ctx)
		return nil
	}
	for _, c := range []struct {
		name string
		in   metadata.MD
		want string // "": a new, unsampled one
	}{
		{"caller's kept", metadata.Pairs("traceparent", callerTP, "dapr-caller-app-id", "front"), callerTP},
		{"none", metadata.Pairs("dapr-caller-app-id", "front"), ""},
		{"no metadata", nil, ""},
		{"malformed", metadata.Pairs("traceparent", "junk", "tracestate", "a=1"), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			if c.in != nil {
				ctx = metadata.NewOutgoingContext(ctx, c.in)
			}
			if err := untracedUnary(ctx, "/dapr.proto.runtime.v1.AppCallback/OnInvoke", nil, nil, nil, invoker); err != nil {
				t.Fatal(err)
			}
			got := md.Get("traceparent")
			if len(got) != 1 || (c.want != "" && got[0] != c.want) || (c.want == "" && !newUnsampled.MatchString(got[0])) {
				t.Errorf("traceparent %q, want %q (empty: a new unsampled one)", got, c.want)
			}
			if len(md.Get("tracestate")) != 0 {
				t.Errorf("tracestate %q kept with a new trace context", md.Get("tracestate"))
			}
			if c.in != nil && len(c.in.Get("dapr-caller-app-id")) > 0 && len(md.Get("dapr-caller-app-id")) != 1 {
				t.Errorf("other metadata lost: %v", md)
			}
		})
	}
}
