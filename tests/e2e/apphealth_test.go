package e2e

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// healthApp is an HTTP app in the test process whose GET /healthz answers
// 200 or 503 as the test sets it, and which counts the other requests.
type healthApp struct {
	port    int
	healthy atomic.Bool
	calls   atomic.Int64
}

func newHealthApp(t *testing.T, tlsToo bool) *healthApp {
	t.Helper()
	a := &healthApp{}
	a.healthy.Store(true)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if !a.healthy.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		a.calls.Add(1)
		_, _ = w.Write([]byte("app saw " + r.URL.Path))
	}))
	if tlsToo {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	a.port = srv.Listener.Addr().(*net.TCPAddr).Port
	return a
}

// healthFlags check fast: a probe a second, unhealthy at the first failure.
var healthFlags = []string{"--enable-app-health-check", "--app-health-probe-interval", "1", "--app-health-probe-timeout", "500", "--app-health-threshold", "1"}

// waitReady waits until GET /v1.0/healthz answers want.
func waitReady(t *testing.T, s *sidecar, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.url + "/v1.0/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /v1.0/healthz did not answer %d", s.appID, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAppHealthCheck: with --enable-app-health-check, while the app's
// health probe fails its sidecar reports it not ready and calls to it from
// other apps are refused, over HTTP (500 ERR_DIRECT_INVOKE) and gRPC
// (Internal), as daprd does, without reaching it; then it recovers.
func TestAppHealthCheck(t *testing.T) {
	w := newWorld(t)
	app := newHealthApp(t, false)
	callee := w.sidecar("healthapp", app.port, healthFlags...)
	caller := w.sidecar("healthcaller", 0)
	waitReady(t, callee, 204)
	if resp, b := do(t, "GET", caller.url+"/v1.0/invoke/healthapp/method/work", nil, nil); resp.StatusCode != 200 || string(b) != "app saw /work" {
		t.Fatalf("healthy app: %d %s", resp.StatusCode, b)
	}
	m := getMetadata(t, callee)
	if h := m.AppConnectionProperties.Health; h == nil || h.HealthCheckPath != "/healthz" || h.HealthProbeInterval != "1s" ||
		h.HealthProbeTimeout != "500ms" || h.HealthThreshold != 1 {
		t.Errorf("metadata health %+v", m.AppConnectionProperties.Health)
	}

	app.healthy.Store(false)
	waitReady(t, callee, 500)
	before := app.calls.Load()
	resp, b := do(t, "GET", caller.url+"/v1.0/invoke/healthapp/method/work", nil, nil)
	if resp.StatusCode != 500 || !strings.Contains(string(b), "ERR_DIRECT_INVOKE") || !strings.Contains(string(b), "not in a healthy state") {
		t.Errorf("call to the unhealthy app over HTTP: %d %s", resp.StatusCode, b)
	}
	_, err := runtimev1pb.NewDaprClient(grpcConn(t, caller)).InvokeService(ctxT(t), &runtimev1pb.InvokeServiceRequest{Id: "healthapp", Message: invokeRequest("work")})
	wantStatus(t, err, codes.Internal, "ERR_DIRECT_INVOKE", "not in a healthy state")
	if n := app.calls.Load() - before; n != 0 {
		t.Errorf("the unhealthy app was called %d times", n)
	}
	if !strings.Contains(callee.Out.String(), "app entered unhealthy status") {
		t.Errorf("the sidecar does not log the change:\n%s", callee.Out.String())
	}

	app.healthy.Store(true)
	waitReady(t, callee, 204)
	if resp, b := do(t, "GET", caller.url+"/v1.0/invoke/healthapp/method/work", nil, nil); resp.StatusCode != 200 {
		t.Errorf("recovered app: %d %s", resp.StatusCode, b)
	}
}

// TestBlockShutdown: with --dapr-block-shutdown-duration, a SIGTERM leaves
// the sidecar serving, calls to its app included, until the app's health
// check fails (here, with a block of an hour), or until the time is up.
func TestBlockShutdown(t *testing.T) {
	w := newWorld(t)
	t.Run("until the app is unhealthy", func(t *testing.T) {
		app := newHealthApp(t, false)
		s := w.sidecar("blockhealth", app.port, append(healthFlags, "--dapr-block-shutdown-duration", "1h")...)
		waitReady(t, s, 204)
		if err := s.Cmd.Process.Signal(sigterm); err != nil {
			t.Fatal(err)
		}
		waitLog(t, s, "blocking graceful shutdown")
		for range 3 {
			if resp, b := do(t, "GET", s.url+"/v1.0/invoke/blockhealth/method/x", nil, nil); resp.StatusCode != 200 {
				t.Fatalf("call after SIGTERM, while blocked: %d %s", resp.StatusCode, b)
			}
			time.Sleep(300 * time.Millisecond)
		}
		app.healthy.Store(false)
		if code := proc.For(t).ExitCode(s.Proc, 20*time.Second); code != 0 || !strings.Contains(s.Out.String(), "app reported unhealthy, entering shutdown") {
			t.Errorf("exit %d:\n%s", code, s.Out.String())
		}
	})
	t.Run("until the time is up", func(t *testing.T) {
		appPort, _ := w.app("blocktime")
		s := w.sidecar("blocktime", appPort, "--dapr-block-shutdown-duration", "2s")
		s.waitHealthy(t)
		if err := s.Cmd.Process.Signal(sigterm); err != nil {
			t.Fatal(err)
		}
		waitLog(t, s, "blocking graceful shutdown")
		if resp, b := do(t, "GET", s.url+"/v1.0/invoke/blocktime/method/echo/x", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("call after SIGTERM, while blocked: %d %s", resp.StatusCode, b)
		}
		if code := proc.For(t).ExitCode(s.Proc, 20*time.Second); code != 0 || !strings.Contains(s.Out.String(), "block shutdown period expired") {
			t.Errorf("exit %d:\n%s", code, s.Out.String())
		}
	})
}

// waitLog waits until s has logged text.
func waitLog(t *testing.T, s *sidecar, text string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(s.Out.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q:\n%s", s.appID, text, s.Out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// grpcsApp is a gRPC app over TLS (a self-signed certificate) in the test
// process: OnInvoke answers with the method it was called with, and its
// health check fails when the test says so.
type grpcsApp struct {
	runtimev1pb.UnimplementedAppCallbackServer
	runtimev1pb.UnimplementedAppCallbackHealthCheckServer
	port    int
	healthy atomic.Bool
}

func (a *grpcsApp) OnInvoke(_ context.Context, in *commonv1pb.InvokeRequest) (*commonv1pb.InvokeResponse, error) {
	return &commonv1pb.InvokeResponse{Data: &anypb.Any{Value: []byte("grpcs app saw " + in.GetMethod())}, ContentType: "text/plain"}, nil
}

func (a *grpcsApp) HealthCheck(context.Context, *emptypb.Empty) (*runtimev1pb.HealthCheckResponse, error) {
	if !a.healthy.Load() {
		return nil, status.Error(codes.Unavailable, "not now")
	}
	return &runtimev1pb.HealthCheckResponse{}, nil
}

func newGRPCSApp(t *testing.T) *grpcsApp {
	t.Helper()
	a := &grpcsApp{}
	a.healthy.Store(true)
	g := grpc.NewServer()
	runtimev1pb.RegisterAppCallbackServer(g, a)
	runtimev1pb.RegisterAppCallbackHealthCheckServer(g, a)
	// grpc.Server is an http.Handler over HTTP/2; httptest gives it TLS.
	srv := httptest.NewUnstartedServer(g)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	a.port = srv.Listener.Addr().(*net.TCPAddr).Port
	return a
}

// TestTLSApps: --app-protocol grpcs (here as --app-protocol grpc
// --app-ssl, the CLI's older form) reaches a gRPC app over TLS, whose
// health is checked with AppCallbackHealthCheck; --app-ssl makes http
// https.
func TestTLSApps(t *testing.T) {
	w := newWorld(t)
	app := newGRPCSApp(t)
	s := w.sidecar("grpcsapp", app.port, append([]string{"--app-protocol", "grpc", "--app-ssl"}, healthFlags...)...)
	waitReady(t, s, 204)
	if resp, b := do(t, "POST", s.url+"/v1.0/invoke/grpcsapp/method/hello", strings.NewReader("x"), nil); resp.StatusCode != 200 || string(b) != "grpcs app saw hello" {
		t.Errorf("grpcs app: %d %s", resp.StatusCode, b)
	}
	if m := getMetadata(t, s); m.AppConnectionProperties.Protocol != "grpcs" || m.AppConnectionProperties.Health == nil || m.AppConnectionProperties.Health.HealthCheckPath != "" {
		t.Errorf("metadata app connection %+v", m.AppConnectionProperties)
	}
	app.healthy.Store(false)
	waitReady(t, s, 500)
	if resp, b := do(t, "POST", s.url+"/v1.0/invoke/grpcsapp/method/hello", strings.NewReader("x"), nil); resp.StatusCode != 500 || !strings.Contains(string(b), "not in a healthy state") {
		t.Errorf("unhealthy grpcs app: %d %s", resp.StatusCode, b)
	}

	httpsApp := newHealthApp(t, true)
	s2 := w.sidecar("httpsapp", httpsApp.port, "--app-ssl")
	s2.waitHealthy(t)
	if resp, b := do(t, "GET", s2.url+"/v1.0/invoke/httpsapp/method/x", nil, nil); resp.StatusCode != 200 || string(b) != "app saw /x" {
		t.Errorf("https app: %d %s", resp.StatusCode, b)
	}
}
