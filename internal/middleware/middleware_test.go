package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/invoke/wire"
)

type funcMW func(context.Context, *Call) error

func (f funcMW) Handle(ctx context.Context, c *Call) error { return f(ctx, c) }

func serve(t *testing.T, h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// The pipeline runs its handlers in order; a refusal ends the call with
// its status, body and Retry-After, and is counted; the app's pipeline is
// not the API's.
func TestSwitchHTTP(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := NewSwitch("app", reg, nil)
	var order []string
	seen := func(name string) Middleware {
		return funcMW(func(_ context.Context, c *Call) error {
			order = append(order, name+" "+c.ClientAddr+" "+c.Method)
			return nil
		})
	}
	c := newClock()
	limit := NewRateLimit("rl", RateLimitConfig{MaxRequestsPerSecond: 0.25, Burst: 1}, c.now)
	s.Set(Pipeline{{Name: "a", Type: "t", Middleware: seen("a")}, {Name: "rl", Type: TypeRateLimit, Middleware: limit}}, nil)
	reached := 0
	h := s.HTTP(API, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached++ }))
	r := httptest.NewRequest("GET", "/v1.0/state/s/k", nil)
	r.RemoteAddr = "192.0.2.1:5000"
	if w := serve(t, h, r); w.Code != 200 || reached != 1 {
		t.Fatalf("first call: %d, reached %d", w.Code, reached)
	}
	w := serve(t, h, r)
	if w.Code != 429 || reached != 1 || w.Header().Get("Retry-After") != "4" {
		t.Fatalf("second call: %d, Retry-After %q, reached %d", w.Code, w.Header().Get("Retry-After"), reached)
	}
	var body struct{ ErrorCode, Message string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.ErrorCode != CodeTooManyRequests {
		t.Fatalf("body %s: %v", w.Body, err)
	}
	if strings.Join(order, ",") != "a 192.0.2.1 /v1.0/state/s/k,a 192.0.2.1 /v1.0/state/s/k" {
		t.Fatalf("order %v", order)
	}
	if n := testutil.ToFloat64(s.refused.WithLabelValues("httpPipeline", "rl", TypeRateLimit, "http")); n != 1 {
		t.Fatalf("refusals counted: %v", n)
	}
	// The app's pipeline is empty: the hop passes.
	if w := serve(t, s.Hop(App, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached++ })), r); w.Code != 200 || reached != 2 {
		t.Fatalf("app pipeline: %d", w.Code)
	}
}

// A middleware that panics, or fails, fails that call with a 500; the
// next call goes through it again.
func TestSwitchPanics(t *testing.T) {
	s := NewSwitch("app", nil, nil)
	n := 0
	s.Set(Pipeline{{Name: "boom", Type: "t", Middleware: funcMW(func(context.Context, *Call) error {
		n++
		if n == 1 {
			panic("boom")
		}
		if n == 2 {
			return errors.New("broken")
		}
		return nil
	})}}, nil)
	h := s.HTTP(API, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for i, want := range []int{500, 500, 200} {
		w := serve(t, h, httptest.NewRequest("GET", "/x", nil))
		if w.Code != want {
			t.Fatalf("call %d: %d, want %d", i, w.Code, want)
		}
		if want == 500 && !strings.Contains(w.Body.String(), `middleware \"boom\"`) {
			t.Fatalf("call %d: body %s", i, w.Body)
		}
	}
}

// A gRPC call proxied on the hop and refused gets a trailers-only gRPC
// answer: ResourceExhausted, with its RetryInfo.
func TestSwitchHopGRPC(t *testing.T) {
	s := NewSwitch("app", nil, nil)
	c := newClock()
	s.Set(nil, Pipeline{{Name: "rl", Type: TypeRateLimit, Middleware: NewRateLimit("rl", RateLimitConfig{MaxRequestsPerSecond: 1, Burst: 1}, c.now)}})
	h := s.Hop(App, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest("POST", "/svc.S/M", nil)
	r.Header.Set("Content-Type", "application/grpc")
	wire.SetCallKind(r.Header, true)
	serve(t, h, r)
	w := serve(t, h, r)
	if w.Code != 200 || w.Header().Get("Grpc-Status") != "8" || w.Header().Get("Retry-After") != "1" || w.Header().Get("Grpc-Status-Details-Bin") == "" {
		t.Fatalf("refused gRPC call on the hop: %d %v", w.Code, w.Header())
	}
	l := NewRateLimit("rl", RateLimitConfig{MaxRequestsPerSecond: 1, Burst: 1}, c.now)
	_ = l.Handle(context.Background(), &Call{})
	st := GRPCStatus(l.Handle(context.Background(), &Call{}))
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("code %v", st.Code())
	}
	found := false
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() == time.Second {
			found = true
		}
	}
	if !found {
		t.Fatalf("no RetryInfo of 1s in %v", st.Details())
	}
}

// On a gRPC server: a refusal is ResourceExhausted, a panic Internal, the
// calls of an unknown service (the proxy's) go through the pipeline too,
// and gRPC's health service never does.
func TestSwitchGRPC(t *testing.T) {
	s := NewSwitch("app", nil, nil)
	var mode atomic.Value
	mode.Store("refuse")
	s.Set(Pipeline{{Name: "m", Type: "t", Middleware: funcMW(func(_ context.Context, c *Call) error {
		switch mode.Load() {
		case "refuse":
			return &Refusal{Wait: time.Second, Err: apierr.New(CodeTooManyRequests, 429, codes.ResourceExhausted, "too many requests")}
		case "panic":
			panic("boom")
		}
		return nil
	})}}, nil)
	srv := grpc.NewServer(append(s.GRPCServerOptions(API), grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unimplemented, "reached the proxy")
	}))...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health service: %v", err)
	}
	proxied := func() error {
		return conn.Invoke(ctx, "/some.App/Method", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	}
	var hdr metadata.MD
	err = conn.Invoke(ctx, "/some.App/Method", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}, grpc.Header(&hdr))
	if status.Code(err) != codes.ResourceExhausted || len(hdr.Get("retry-after")) != 1 || hdr.Get("retry-after")[0] != "1" {
		t.Fatalf("refused: %v, header %v", err, hdr)
	}
	mode.Store("panic")
	if err := proxied(); status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "panic: boom") {
		t.Fatalf("panic: %v", err)
	}
	mode.Store("pass")
	if err := proxied(); status.Code(err) != codes.Unimplemented {
		t.Fatalf("passed: %v", err)
	}
}
