package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
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
