package token

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/tandem-run/tandem/internal/api"
	httpapi "github.com/tandem-run/tandem/internal/api/http"
	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// The hostile shapes: every request but the two exact probes needs the token.
func TestHTTPGuard(t *testing.T) {
	g := New("s3cret")
	// The sidecar's own router decides which requests are public.
	router := httpapi.NewRouter(nil)
	router.Add(httpapi.InvokeRoutes(nil)...)
	router.Add(httpapi.LifecycleRoutes(api.Lifecycle{})...)
	h := g.HTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(wire.APIToken) != "s3cret" && !router.Public(r) {
			t.Errorf("%s %s reached the handler without the token", r.Method, r.URL)
		}
		w.WriteHeader(http.StatusNoContent)
	}), router.Public)
	for _, c := range []struct {
		req   string // request line
		token string
		want  int
		appID string // a dapr-app-id header: the request is an invocation
	}{
		{"GET /v1.0/healthz?anything", "", 401, "target"},
		{"GET /v1.0/healthz", "", 401, "target"},
		{"GET /v1.0/healthz/outbound", "", 401, "target.ns"},
		{"GET /v1.0/healthz", "s3cret", 204, "target"},
		{"GET /v1.0/healthz", "", 204, ""},
		{"GET /v1.0/healthz/outbound", "", 204, ""},
		{"GET /v1.0/healthz?probe=1", "", 204, ""},
		{"GET /v1.0/metadata", "", 401, ""},
		{"GET /v1.0/metadata", "wrong", 401, ""},
		{"GET /v1.0/metadata", "s3cret", 204, ""},
		{"POST /v1.0/healthz", "", 401, ""},
		{"GET /v1.0/healthz/", "", 401, ""},
		{"GET /v1.0/healthz/../state/s/k", "", 401, ""},
		{"GET /v1.0/healthz/..%2Fstate%2Fs%2Fk", "", 401, ""},
		{"GET /v1.0/healthz%2F..%2Fmetadata", "", 401, ""},
		{"GET //v1.0/healthz", "", 401, ""},
		{"GET /v1.0/state/s/k?x=/v1.0/healthz", "", 401, ""},
		{"GET /v1.0/invoke/a/method/v1.0/healthz", "", 401, ""},
		{"GET /v1.0/HEALTHZ", "", 401, ""},
		{"GET /v1.0/%68ealthz", "", 401, ""},
		{"GET /v1.0/healthz%00", "", 401, ""},
		{"POST /v1.0/invoke/a/method/x", "", 401, ""},
	} {
		raw := c.req + " HTTP/1.1\r\nHost: x\r\n"
		if c.token != "" {
			raw += "dapr-api-token: " + c.token + "\r\n"
		}
		if c.appID != "" {
			raw += "dapr-app-id: " + c.appID + "\r\n"
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n")))
		if err != nil {
			if c.want != 401 {
				t.Errorf("%s: %v", c.req, err)
			}
			continue
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.want {
			t.Errorf("%s (token %q): %d, want %d", c.req, c.token, w.Code, c.want)
		}
		if w.Code == 401 && !strings.Contains(w.Body.String(), `"errorCode":"invalid api token"`) {
			t.Errorf("%s: body %s", c.req, w.Body)
		}
	}
	// Two tokens, one right: refused.
	req := httptest.NewRequest("GET", "/v1.0/metadata", nil)
	req.Header[wire.APIToken] = []string{"wrong", "s3cret"}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 401 {
		t.Errorf("two tokens: %d", w.Code)
	}
}

func TestNoTokenNoGuard(t *testing.T) {
	next := http.NotFoundHandler()
	var g *Guard = New("")
	if g != nil || g.GRPC(&tap.Info{FullMethodName: "/dapr.proto.runtime.v1.Dapr/GetState"}) != nil {
		t.Fatal("an empty token makes a guard")
	}
	if h := g.HTTP(next, nil); h == nil {
		t.Fatal("nil handler")
	}
}

// A gRPC call is decided from its headers alone: every method needs the
// token, proxied ones too, but the health service's Check and Watch.
func TestGRPCGuard(t *testing.T) {
	g := New("s3cret")
	for _, c := range []struct {
		method string
		md     metadata.MD
		ok     bool
	}{
		{"/dapr.proto.runtime.v1.Dapr/GetState", nil, false},
		{"/dapr.proto.runtime.v1.Dapr/GetState", metadata.Pairs("dapr-api-token", "wrong"), false},
		{"/dapr.proto.runtime.v1.Dapr/GetState", metadata.Pairs("dapr-api-token", "s3cret"), true},
		{"/dapr.proto.runtime.v1.Dapr/GetState", metadata.Pairs("dapr-api-token", "s3cret", "dapr-api-token", "s3cret"), false},
		{"/app.Service/Method", metadata.Pairs("dapr-app-id", "app"), false},
		{"/app.Service/Method", metadata.Pairs("dapr-app-id", "app", "dapr-api-token", "s3cret"), true},
		{"/grpc.health.v1.Health/Check", nil, true},
		{"/grpc.health.v1.Health/Watch", metadata.Pairs("dapr-app-id", "app"), true},
		{"/grpc.health.v1.Health/List", nil, false},
		{"/grpc.health.v1.Health/Check/", nil, false},
	} {
		err := g.GRPC(&tap.Info{FullMethodName: c.method, Header: c.md})
		if c.ok != (err == nil) {
			t.Errorf("%s %v: %v, want admitted %v", c.method, c.md, err, c.ok)
		}
		if err != nil && status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: %v, want Unauthenticated", c.method, err)
		}
	}
}
