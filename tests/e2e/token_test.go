package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestAPITokens(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("tokapp")
	callee := w.sidecarEnv("tokapp", appPort, []string{"DAPR_API_TOKEN=callee-secret", "APP_API_TOKEN=app-secret"})
	caller := w.sidecarEnv("front", 0, []string{"DAPR_API_TOKEN=front-secret"})
	tok := func(v string) http.Header { return http.Header{"Dapr-Api-Token": {v}} }

	// Probes need no token; everything else does.
	for _, p := range []string{"/v1.0/healthz", "/v1.0/healthz/outbound"} {
		if resp, b := do(t, "GET", caller.url+p, nil, nil); resp.StatusCode != 204 {
			t.Errorf("%s without a token: %d %s", p, resp.StatusCode, b)
		}
	}
	for _, c := range []struct {
		method, path string
		h            http.Header
	}{
		{"GET", "/v1.0/metadata", nil},
		{"GET", "/v1.0/metadata", tok("callee-secret")},
		{"POST", "/v1.0/invoke/tokapp/method/echo/x", nil},
		{"GET", "/v1.0/healthz/../metadata", nil},
		{"GET", "/v1.0/state/statestore/k?/v1.0/healthz", nil},
		{"POST", "/v1.0/shutdown", nil},
		{"GET", "/no/such/route", nil},
	} {
		resp, b := do(t, c.method, caller.url+c.path, nil, c.h)
		if resp.StatusCode != 401 || !strings.Contains(string(b), `"errorCode":"invalid api token"`) {
			t.Errorf("%s %s: %d %s, want 401 invalid api token", c.method, c.path, resp.StatusCode, b)
		}
	}
	callee.waitHealthy(t)

	// With its token, the call goes through; the callee's app gets its own
	// token, never the caller's.
	resp, b := do(t, "POST", caller.url+"/v1.0/invoke/tokapp/method/echo/x", strings.NewReader("hi"), tok("front-secret"))
	if resp.StatusCode != 200 {
		t.Fatalf("invoke with the token: %d %s", resp.StatusCode, b)
	}
	var echo struct{ Headers map[string][]string }
	if err := json.Unmarshal(b, &echo); err != nil {
		t.Fatal(err)
	}
	if got := echo.Headers["Dapr-Api-Token"]; len(got) != 1 || got[0] != "app-secret" {
		t.Errorf("the app saw dapr-api-token %v, want only [app-secret]", got)
	}

	// gRPC: the Dapr SDK sends DAPR_API_TOKEN from its environment.
	addr := "127.0.0.1:" + strconv.Itoa(caller.grpcPort)
	t.Setenv("DAPR_API_TOKEN", "")
	anon, err := dapr.NewClientWithAddress(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	_, err = anon.InvokeMethod(ctxT(t), "tokapp", "echo/x", "get")
	wantStatus(t, err, codes.Unauthenticated, "invalid api token", "dapr-api-token")
	t.Setenv("DAPR_API_TOKEN", "front-secret")
	c, err := dapr.NewClientWithAddress(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, err := c.InvokeMethod(ctxT(t), "tokapp", "echo/x", "get")
	if err != nil || !strings.Contains(string(out), `"Dapr-Api-Token":["app-secret"]`) {
		t.Errorf("gRPC invoke with the token: %v %s", err, out)
	}
	if err := c.SaveState(ctxT(t), "statestore", "k", []byte("v"), nil); err != nil {
		t.Errorf("gRPC state with the token: %v", err)
	}
}

// Every routing form of an invocation needs the token, whatever its path:
// the health routes' exemption covers the health answer only, and the
// dapr-app-id header never turns an exempt path into an unauthenticated
// call. The app receives nothing of a refused call.
func TestAPITokenEveryRoutingForm(t *testing.T) {
	w := newWorld(t)
	victim := newRecordingApp(t)
	callee := w.sidecarEnv("victim", victim.port, []string{"APP_API_TOKEN=app-secret"})
	caller := w.sidecarEnv("front", 0, []string{"DAPR_API_TOKEN=front-secret"})
	callee.waitHealthy(t)
	byHeader := func(id string) http.Header { return http.Header{"Dapr-App-Id": {id}} }

	for _, c := range []struct {
		method, path string
		h            http.Header
	}{
		{"GET", "/v1.0/healthz?anything=1", byHeader("victim")},
		{"GET", "/v1.0/healthz", byHeader("victim")},
		{"GET", "/v1.0/healthz/outbound", byHeader("victim")},
		{"GET", "/v1.0/healthz", byHeader("victim.default")},
		{"POST", "/v1.0/healthz", byHeader("victim")},
		{"GET", "/any/path", byHeader("victim")},
		{"GET", "/v1.0/invoke/victim/method/healthz", nil},
		{"GET", "/v1.0/invoke/victim.default/method/x", nil},
		{"GET", "/v1.0/healthz/../invoke/victim/method/x", nil},
	} {
		resp, b := do(t, c.method, caller.url+c.path, nil, c.h)
		if resp.StatusCode != 401 || !strings.Contains(string(b), `"errorCode":"invalid api token"`) {
			t.Errorf("%s %s %v without a token: %d %s, want 401 invalid api token", c.method, c.path, c.h, resp.StatusCode, b)
		}
	}
	// The probes themselves still need none.
	if resp, b := do(t, "GET", caller.url+"/v1.0/healthz?probe=1", nil, nil); resp.StatusCode != 204 {
		t.Errorf("probe without a token: %d %s", resp.StatusCode, b)
	}

	// gRPC: InvokeService and a proxied call need the token; a health
	// check with dapr-app-id is answered by the sidecar itself.
	conn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(caller.grpcPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "dapr-app-id", "victim")
	_, err = runtimev1pb.NewDaprClient(conn).InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{
		Id: "victim", Message: &commonv1pb.InvokeRequest{Method: "x"}})
	wantStatus(t, err, codes.Unauthenticated, "invalid api token")
	err = conn.Invoke(ctx, "/some.Service/Method", &emptypb.Empty{}, &emptypb.Empty{})
	wantStatus(t, err, codes.Unauthenticated, "invalid api token")
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health check with dapr-app-id: %v %v", hc, err)
	}

	if n := victim.received(); n != 0 {
		t.Fatalf("the app received %d requests without a token", n)
	}
	// The same call with the token reaches it: the count above can move.
	h := byHeader("victim")
	h.Set("Dapr-Api-Token", "front-secret")
	if resp, b := do(t, "GET", caller.url+"/v1.0/healthz?anything=1", nil, h); resp.StatusCode != 200 || victim.received() != 1 {
		t.Errorf("with the token: %d %s, app received %d", resp.StatusCode, b, victim.received())
	}
}
