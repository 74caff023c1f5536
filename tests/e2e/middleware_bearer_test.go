package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/testutil/oidcop"
)

// middlewareComponent is a middleware Component of type typ, its metadata
// as name, value pairs.
func middlewareComponent(name, typ string, md ...string) []byte {
	b := fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: %s\n  version: v1\n  metadata:\n", name, typ)
	for i := 0; i+1 < len(md); i += 2 {
		b += fmt.Sprintf("  - name: %s\n    value: %q\n", md[i], md[i+1])
	}
	return []byte(b)
}

// handlerConfig is a Configuration whose pipeline field has the handler
// name of type typ.
func handlerConfig(field, name, typ string) []byte {
	return fmt.Appendf(nil, "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: auth\nspec:\n  %s:\n    handlers:\n    - name: %s\n      type: %s\n", field, name, typ)
}

// authResources writes a folder with the Component and a Configuration of it.
func authResources(t *testing.T, comp, conf []byte) (dir, confFile string) {
	dir = t.TempDir()
	saveFile(t, filepath.Join(dir, "component.yaml"), comp)
	confFile = filepath.Join(t.TempDir(), "config.yaml")
	saveFile(t, confFile, conf)
	return dir, confFile
}

// Real sidecars and a real OpenID provider: the callers' sidecar fetches
// a token with the client-credentials grant and puts it on its calls
// (httpPipeline); the callees' sidecars check it (appHttpPipeline) and
// pass its claims to the app, HTTP and proxied gRPC alike; a call without
// a good token is refused, 401 with WWW-Authenticate, Unauthenticated.
func TestMiddlewareBearerAndClientCredentials(t *testing.T) {
	idp := oidcop.Start(t, nil)
	calleeDir, calleeConf := authResources(t,
		middlewareComponent("auth", "middleware.http.bearer", "issuer", idp.Issuer(), "audience", oidcop.Audience),
		handlerConfig("appHttpPipeline", "auth", "middleware.http.bearer"))
	callerDir, callerConf := authResources(t,
		middlewareComponent("cc", "middleware.http.oauth2clientcredentials", "clientId", oidcop.ClientID, "clientSecret", oidcop.ClientSecret,
			"tokenURL", idp.TokenURL(), "headerName", "Authorization", "scopes", "openid"),
		handlerConfig("httpPipeline", "cc", "middleware.http.oauth2clientcredentials"))
	w := newWorld(t)
	appPort, _ := w.app("orders")
	grpcPort, _ := w.grpcApp("grpcapp")
	orders := w.sidecar("orders", appPort, "--resources-path", calleeDir, "--config", calleeConf)
	grpcCallee := w.sidecar("grpcapp", grpcPort, "--app-protocol", "grpc", "--resources-path", calleeDir, "--config", calleeConf)
	front := w.sidecar("front", 0, "--resources-path", callerDir, "--config", callerConf)
	plain := w.sidecar("plain", 0)
	for _, s := range []*sidecar{orders, grpcCallee, front, plain} {
		s.waitHealthy(t)
	}
	if n := idp.Requests(); n != 0 {
		t.Fatalf("the sidecars reached the provider %d times before any call", n)
	}

	echo := func(s *sidecar, h http.Header) (*http.Response, http.Header) {
		t.Helper()
		resp, b := do(t, "GET", s.url+"/v1.0/invoke/orders/method/echo/x", nil, h)
		var got struct{ Headers http.Header }
		if resp.StatusCode == 200 {
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("echo %s: %v", b, err)
			}
		} else {
			t.Logf("%d %s: %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b)
		}
		return resp, got.Headers
	}
	forged := http.Header{"Dapr-Bearer-Subject": {"admin"}}
	for i := range 3 {
		resp, seen := echo(front, forged)
		if resp.StatusCode != 200 || !strings.HasPrefix(seen.Get("Authorization"), "Bearer ey") ||
			len(seen.Values("Dapr-Bearer-Subject")) != 1 || seen.Get("Dapr-Bearer-Subject") != oidcop.ClientID || seen.Get("Dapr-Bearer-Claims") == "" {
			t.Fatalf("call %d through the client-credentials sidecar: %d, the app saw %v", i, resp.StatusCode, seen)
		}
	}
	if n := idp.TokenRequests(); n != 1 {
		t.Errorf("token requests for 3 calls: %d", n)
	}

	// Without the caller's middleware: no token, a bad one, a good one.
	resp, _ := echo(plain, forged)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="orders-api"` {
		t.Fatalf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	idp.Storage.SetTokens(-10*time.Minute, oidcop.Audience)
	expired := idp.Token(t)
	idp.Storage.SetTokens(5*time.Minute, oidcop.Audience)
	resp, _ = echo(plain, http.Header{"Authorization": {"Bearer " + expired}})
	if ch := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || !strings.Contains(ch, `error="invalid_token", error_description="the token expired at`) {
		t.Fatalf("expired token: %d %q", resp.StatusCode, ch)
	}
	resp, seen := echo(plain, http.Header{"Authorization": {"Bearer " + idp.Token(t)}, "Dapr-Bearer-Subject": {"admin"}})
	if resp.StatusCode != 200 || seen.Get("Dapr-Bearer-Subject") != oidcop.ClientID {
		t.Fatalf("a token of the app's own: %d %v", resp.StatusCode, seen)
	}

	// Proxied gRPC: the same.
	call := func(s *sidecar) (metadata.MD, error) {
		var hdr metadata.MD
		ctx := metadata.AppendToOutgoingContext(ctxT(t), "dapr-app-id", "grpcapp", "dapr-bearer-subject", "admin")
		_, err := testpb.NewTestServiceClient(grpcConn(t, s)).UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}}, grpc.Header(&hdr))
		return hdr, err
	}
	hdr, err := call(front)
	if err != nil || strings.Join(hdr.Get("x-seen-bearer-subject"), ",") != oidcop.ClientID {
		t.Fatalf("proxied gRPC through the client-credentials sidecar: %v, app saw subject %v", err, hdr.Get("x-seen-bearer-subject"))
	}
	if _, err := call(plain); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "no bearer token") {
		t.Fatalf("proxied gRPC without a token: %v", err)
	}
}

// A sidecar whose provider is down when it starts: it starts and is
// healthy, answers the calls its httpPipeline checks with 503
// (Unavailable on gRPC) naming the issuer, and lets tokens through once
// the provider is back.
func TestMiddlewareBearerProviderDown(t *testing.T) {
	idp := oidcop.Start(t, nil)
	tok := idp.Token(t)
	idp.SetDown(true)
	dir, conf := authResources(t,
		middlewareComponent("auth", "middleware.http.bearer", "issuer", idp.Issuer(), "audience", oidcop.Audience),
		handlerConfig("httpPipeline", "auth", "middleware.http.bearer"))
	w := newWorld(t)
	s := w.sidecar("guarded", 0, "--resources-path", dir, "--config", conf)
	s.waitHealthy(t)
	bearer := http.Header{"Authorization": {"Bearer " + tok}}
	resp, body := do(t, "GET", s.url+"/v1.0/metadata", nil, bearer)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"errorCode":"ERR_AUTH_PROVIDER_UNAVAILABLE"`) ||
		!strings.Contains(string(body), idp.Issuer()) {
		t.Fatalf("provider down: %d %s", resp.StatusCode, body)
	}
	api := runtimev1pb.NewDaprClient(grpcConn(t, s))
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+tok)
	if _, err := api.GetMetadata(ctx, &runtimev1pb.GetMetadataRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC API, provider down: %v", err)
	}
	idp.SetDown(false)
	waitFor(t, "the token let through once the provider is back", func() bool {
		resp, _ := do(t, "GET", s.url+"/v1.0/metadata", nil, bearer)
		return resp.StatusCode == 200
	})
	if _, err := api.GetMetadata(ctx, &runtimev1pb.GetMetadataRequest{}); err != nil {
		t.Fatalf("gRPC API with a token: %v", err)
	}
	if _, err := api.GetMetadata(ctxT(t), &runtimev1pb.GetMetadataRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC API without a token: %v", err)
	}
}
