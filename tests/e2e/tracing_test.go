package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/tandem-run/tandem/internal/testutil/jaegerquery"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// jaeger is a running Jaeger all-in-one: a real collector with Zipkin's
// span API, and its query API to read traces back.
type jaeger struct {
	zipkinURL string // POST spans here (Zipkin v2 JSON)
	otlpAddr  string // host:port of its OTLP/HTTP receiver
	otlpGRPC  string // host:port of its OTLP/gRPC receiver
	queryURL  string // base URL of the query API
}

func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	s := jaegerquery.Start(t)
	return &jaeger{zipkinURL: s.ZipkinURL, otlpAddr: s.OTLPAddr, otlpGRPC: s.OTLPGRPC, queryURL: s.QueryURL}
}

// trace polls the query API until the trace has at least n spans.
func (j *jaeger) trace(t *testing.T, traceID string, n int) []jaegerquery.Span {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var spans []jaegerquery.Span
	for time.Now().Before(deadline) {
		spans = nil
		if traces, err := jaegerquery.Get(j.queryURL + "/api/traces/" + traceID); err == nil {
			if len(traces) > 1 {
				t.Fatalf("trace %s came back as %d traces", traceID, len(traces))
			}
			for _, tr := range traces {
				spans = append(spans, tr...)
			}
			if len(spans) >= n {
				return spans
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("trace %s has %d spans in Jaeger after 20 s, want %d: %+v", traceID, len(spans), n, spans)
	return nil
}

func TestTracingThroughTwoSidecarsToZipkinCollector(t *testing.T) {
	j := startJaeger(t)
	conf := filepath.Join(t.TempDir(), "appconfig.yaml")
	if err := os.WriteFile(conf, resources.ZipkinYAML("appconfig", j.zipkinURL), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	appPort, _ := w.app("addapp")
	callee := w.sidecar("addapp", appPort, "--config", conf)
	caller := w.sidecar("front", 0, "--config", conf)
	callee.waitHealthy(t)

	// The "front end" starts the trace, as an app with its own tracing would.
	const traceID, appSpan = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
	tp := "00-" + traceID + "-" + appSpan + "-01"
	resp, b := do(t, "POST", caller.url+"/v1.0/invoke/addapp/method/echo/add", strings.NewReader(`{"operandOne":"52"}`),
		http.Header{"Traceparent": {tp}, "Content-Type": {"application/json"}})
	if resp.StatusCode != 200 {
		t.Fatalf("invoke: %d %s", resp.StatusCode, b)
	}
	var echo struct {
		Headers map[string][]string
	}
	if err := json.Unmarshal(b, &echo); err != nil {
		t.Fatal(err)
	}
	appTP := strings.Split(strings.Join(echo.Headers["Traceparent"], ""), "-")
	if len(appTP) != 4 || appTP[1] != traceID {
		t.Fatalf("the app got traceparent %v, want trace %s", echo.Headers["Traceparent"], traceID)
	}
	if back := resp.Header.Get("Traceparent"); !strings.HasPrefix(back, "00-"+traceID+"-") {
		t.Errorf("the answer carries traceparent %q", back)
	}
	// A state call in the same trace, failing one too.
	resp, b = do(t, "POST", caller.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"k","value":1}]`), http.Header{"Traceparent": {tp}})
	if resp.StatusCode != 204 {
		t.Fatalf("save: %d %s", resp.StatusCode, b)
	}

	spans := j.trace(t, traceID, 6)
	byName := map[string]jaegerquery.Span{}
	for _, s := range spans {
		key := s.Service + " " + s.OperationName + " " + s.Tag("span.kind")
		if _, dup := byName[key]; dup {
			t.Errorf("span %q twice", key)
		}
		byName[key] = s
	}
	get := func(key string) jaegerquery.Span {
		s, ok := byName[key]
		if !ok {
			names := make([]string, 0, len(byName))
			for k := range byName {
				names = append(names, k)
			}
			t.Fatalf("no span %q; spans: %q", key, names)
		}
		return s
	}
	api := get("front calllocal/addapp/echo/add server")
	hop := get("front calllocal/addapp/echo/add client")
	recv := get("addapp calllocal/addapp/echo/add server")
	app := get("addapp callapp/addapp/echo/add client")
	save := get("front /v1.0/state/statestore server")
	set := get("front set statestore client")
	for _, c := range []struct {
		child, parent jaegerquery.Span
		what          string
	}{
		{api, jaegerquery.Span{SpanID: appSpan}, "API call under the app's span"},
		{hop, api, "hop under the API call"},
		{recv, hop, "receipt under the hop"},
		{app, recv, "app call under the receipt"},
		{save, jaegerquery.Span{SpanID: appSpan}, "state API call under the app's span"},
		{set, save, "store operation under the state API call"},
	} {
		if c.child.Parent() != c.parent.SpanID {
			t.Errorf("%s: parent %s, want %s", c.what, c.child.Parent(), c.parent.SpanID)
		}
	}
	if appTP[2] != app.SpanID {
		t.Errorf("the app's traceparent names span %s, want the app call span %s", appTP[2], app.SpanID)
	}
	if set.Tag("db.system.name") != "in-memory" || api.Tag("http.request.method") != "POST" || hop.Tag("peer.service") != "addapp" {
		t.Errorf("attributes: set %v api %v hop %v", set.Tags, api.Tags, hop.Tags)
	}
}

// The same collector over OTLP (spec.tracing.otel) instead of Zipkin, over
// HTTP and over gRPC.
func TestTracingOverOTLP(t *testing.T) {
	j := startJaeger(t)
	for i, c := range []struct{ protocol, addr, traceID string }{
		{"http", j.otlpAddr, "0af7651916cd43dd8448eb211c80319c"},
		{"grpc", j.otlpGRPC, "1bf7651916cd43dd8448eb211c80319d"},
	} {
		t.Run(c.protocol, func(t *testing.T) {
			conf := filepath.Join(t.TempDir(), "otel.yaml")
			if err := os.WriteFile(conf, []byte(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: otel
spec:
  tracing:
    samplingRate: "1"
    otel:
      endpointAddress: "`+c.addr+`"
      isSecure: false
      protocol: `+c.protocol+`
`), 0o644); err != nil {
				t.Fatal(err)
			}
			w := newWorld(t)
			app := "otlpapp" + strconv.Itoa(i)
			s := w.sidecar(app, 0, "--config", conf)
			resp, b := do(t, "POST", s.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"k","value":1}]`),
				http.Header{"Traceparent": {"00-" + c.traceID + "-b7ad6b7169203331-01"}})
			if resp.StatusCode != 204 {
				t.Fatalf("save: %d %s", resp.StatusCode, b)
			}
			spans := j.trace(t, c.traceID, 2)
			names := map[string]bool{}
			for _, sp := range spans {
				if sp.Service != app {
					t.Errorf("span %s of service %q", sp.OperationName, sp.Service)
				}
				names[sp.OperationName] = true
			}
			if !names["/v1.0/state/statestore"] || !names["SET statestore"] {
				t.Errorf("spans %v", names)
			}
		})
	}
}

// With tracing off the app still gets a W3C trace context on every
// invocation, as from daprd: the caller's when it sent one (its trace id
// kept), else a new one, not sampled. For HTTP apps, gRPC apps
// (AppCallback) and proxied gRPC calls alike.
func TestTraceparentWithTracingOff(t *testing.T) {
	w := newWorld(t)
	httpPort, _ := w.app("httpapp")
	httpApp := w.sidecar("httpapp", httpPort)
	grpcPort, _ := w.grpcApp("grpcapp")
	grpcApp := w.sidecar("grpcapp", grpcPort, "--app-protocol", "grpc")
	caller := w.sidecar("front", 0)
	httpApp.waitHealthy(t)
	grpcApp.waitHealthy(t)
	newUnsampled := regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-00$`)
	const sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

	// seen is the traceparent values the app saw of a call with header h.
	seen := map[string]func(h http.Header) []string{
		"HTTP app": func(h http.Header) []string {
			resp, b := do(t, "GET", caller.url+"/v1.0/invoke/httpapp/method/echo/x", nil, h)
			var echo struct{ Headers map[string][]string }
			if err := json.Unmarshal(b, &echo); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			return echo.Headers["Traceparent"]
		},
		"gRPC app": func(h http.Header) []string {
			resp, b := do(t, "POST", caller.url+"/v1.0/invoke/grpcapp/method/echo", strings.NewReader("x"), h)
			var echo struct{ Traceparent []string }
			if err := json.Unmarshal(b, &echo); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			return echo.Traceparent
		},
		"proxied gRPC": func(h http.Header) []string {
			ctx := metadata.AppendToOutgoingContext(ctxT(t), "dapr-app-id", "grpcapp")
			if tp := h.Get("Traceparent"); tp != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tp)
			}
			var hdr metadata.MD
			if _, err := testpb.NewTestServiceClient(grpcConn(t, caller)).UnaryCall(ctx,
				&testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("x")}}, grpc.Header(&hdr)); err != nil {
				t.Fatal(err)
			}
			return hdr.Get("x-seen-traceparent")
		},
	}
	for name, seen := range seen {
		t.Run(name, func(t *testing.T) {
			if got := seen(nil); len(got) != 1 || !newUnsampled.MatchString(got[0]) {
				t.Errorf("a call without a trace context: the app saw traceparent %q, want a new one, not sampled", got)
			}
			if got := seen(http.Header{"Traceparent": {sent}}); len(got) != 1 || !strings.HasPrefix(got[0], sent[:35]) || !strings.HasSuffix(got[0], "-01") {
				t.Errorf("a call with traceparent %s: the app saw %q, want its trace id, sampled", sent, got)
			}
		})
	}
}
