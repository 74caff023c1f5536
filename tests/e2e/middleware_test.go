package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// rateLimitComponent is a middleware.http.ratelimit Component.
func rateLimitComponent(name, perSecond, burst string) []byte {
	b := fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: middleware.http.ratelimit\n  version: v1\n  metadata:\n  - name: maxRequestsPerSecond\n    value: %q\n", name, perSecond)
	if burst != "" {
		b += fmt.Sprintf("  - name: burst\n    value: %q\n", burst)
	}
	return []byte(b)
}

// pipelineConfig is a Configuration whose pipeline field names the
// ratelimit Component name.
func pipelineConfig(field, name string) []byte {
	return fmt.Appendf(nil, "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: limits\nspec:\n  %s:\n    handlers:\n    - name: %s\n      type: middleware.http.ratelimit\n", field, name)
}

// burstHTTP sends n GETs to url and counts the answers by status; it
// returns the first 429.
func burstHTTP(t *testing.T, url string, n int) (byStatus map[int]int, refused *http.Response, body []byte) {
	t.Helper()
	byStatus = map[int]int{}
	for range n {
		resp, b := do(t, "GET", url, nil, nil)
		byStatus[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests && refused == nil {
			refused, body = resp, b
		}
	}
	return byStatus, refused, body
}

// wantRetryInfo checks err is ResourceExhausted with a RetryInfo.
func wantRetryInfo(t *testing.T, what string, err error) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "too many requests") {
		t.Fatalf("%s: %v, want ResourceExhausted", what, err)
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			return
		}
	}
	t.Errorf("%s: no RetryInfo in %v", what, st.Details())
}

// httpPipeline with a limit of 10/s: the HTTP API answers 429 with
// Retry-After past the burst (its health routes never), the gRPC API and
// the gRPC calls it proxies ResourceExhausted; refusals are counted; a
// changed limit is in force without a restart.
func TestMiddlewareRateLimitAPI(t *testing.T) {
	dir, confDir := t.TempDir(), t.TempDir()
	saveFile(t, filepath.Join(dir, "limit.yaml"), rateLimitComponent("limit", "10", ""))
	conf := filepath.Join(confDir, "config.yaml")
	saveFile(t, conf, pipelineConfig("httpPipeline", "limit"))
	w := newWorld(t)
	appPort, _ := w.grpcApp("grpcapp")
	callee := w.sidecar("grpcapp", appPort, "--app-protocol", "grpc")
	front := w.sidecar("front", 0, "--resources-path", dir, "--config", conf)
	callee.waitHealthy(t)
	front.waitHealthy(t)
	metrics := "http://127.0.0.1:" + strconv.Itoa(getMetadata(t, front).Ports["metrics"])

	byStatus, refused, body := burstHTTP(t, front.url+"/v1.0/metadata", 100)
	t.Logf("100 calls to the HTTP API in a row, limit 10/s: %v", byStatus)
	if refused == nil || byStatus[200] == 0 || byStatus[200]+byStatus[429] != 100 {
		t.Fatalf("answers %v: want some 200 and some 429, nothing else", byStatus)
	}
	if ra, err := strconv.Atoi(refused.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", refused.Header.Get("Retry-After"))
	}
	if !strings.Contains(string(body), `"errorCode":"ERR_TOO_MANY_REQUESTS"`) {
		t.Errorf("429 body %s", body)
	}
	if resp, _ := do(t, "GET", front.url+"/v1.0/healthz", nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("healthz under the limit: %d", resp.StatusCode)
	}

	// The gRPC API: the same limit, the same client (127.0.0.1).
	api := runtimev1pb.NewDaprClient(grpcConn(t, front))
	var grpcErr error
	for range 100 {
		if _, err := api.GetMetadata(ctxT(t), &runtimev1pb.GetMetadataRequest{}); err != nil {
			grpcErr = err
			break
		}
	}
	wantRetryInfo(t, "gRPC API", grpcErr)

	// A gRPC call the API proxies to another app.
	ts := testpb.NewTestServiceClient(grpcConn(t, front))
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "dapr-app-id", "grpcapp")
	var proxyErr error
	for range 100 {
		if _, err := ts.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}}); err != nil {
			proxyErr = err
			break
		}
	}
	wantRetryInfo(t, "proxied gRPC call", proxyErr)
	waitFor(t, "a proxied call admitted as the bucket refills", func() bool {
		_, err := ts.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}})
		return err == nil
	})

	labels := func(protocol string) string {
		return `app_id="front",middleware="limit",pipeline="httpPipeline",protocol="` + protocol + `",type="middleware.http.ratelimit"`
	}
	if n := metricValue(t, metrics, "tandem_middleware_refused_total", labels("http")); n != float64(byStatus[429]) {
		t.Errorf("HTTP refusals counted: %v, want %d", n, byStatus[429])
	}
	if n := metricValue(t, metrics, "tandem_middleware_refused_total", labels("grpc")); n < 2 {
		t.Errorf("gRPC refusals counted: %v", n)
	}

	// Hot reload: a limit of 10,000/s lets a burst of 40 through.
	saveFile(t, filepath.Join(dir, "limit.yaml"), rateLimitComponent("limit", "10000", ""))
	took := waitFor(t, "the new limit in force", func() bool {
		byStatus, _, _ := burstHTTP(t, front.url+"/v1.0/metadata", 40)
		return byStatus[200] == 40
	})
	t.Logf("new limit in force after %v", took)
	// And back to a burst of 1 at 0.01/s: the second call is refused.
	saveFile(t, filepath.Join(dir, "limit.yaml"), rateLimitComponent("limit", "0.01", "1"))
	waitFor(t, "the low limit in force", func() bool {
		byStatus, refused, _ := burstHTTP(t, front.url+"/v1.0/metadata", 3)
		return byStatus[200] <= 1 && refused != nil && refused.Header.Get("Retry-After") == "100"
	})
}

// appHttpPipeline on the callee's sidecar limits the invocations arriving
// from another sidecar, HTTP and proxied gRPC alike, before the app; the
// caller's own API is not limited by it.
func TestMiddlewareRateLimitApp(t *testing.T) {
	dir, confDir := t.TempDir(), t.TempDir()
	saveFile(t, filepath.Join(dir, "limit.yaml"), rateLimitComponent("limit", "0.001", "2"))
	conf := filepath.Join(confDir, "config.yaml")
	saveFile(t, conf, pipelineConfig("appHttpPipeline", "limit"))
	w := newWorld(t)
	appPort, _ := w.app("orders")
	grpcPort, _ := w.grpcApp("grpcapp")
	orders := w.sidecar("orders", appPort, "--resources-path", dir, "--config", conf)
	grpcCallee := w.sidecar("grpcapp", grpcPort, "--app-protocol", "grpc", "--resources-path", dir, "--config", conf)
	front := w.sidecar("front", 0)
	orders.waitHealthy(t)
	grpcCallee.waitHealthy(t)
	front.waitHealthy(t)

	byStatus, refused, body := burstHTTP(t, front.url+"/v1.0/invoke/orders/method/echo/x", 6)
	if byStatus[200] != 2 || byStatus[429] != 4 {
		t.Fatalf("6 invocations against a burst of 2: %v", byStatus)
	}
	if refused.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"errorCode":"ERR_TOO_MANY_REQUESTS"`) {
		t.Errorf("refusal: Retry-After %q, body %s", refused.Header.Get("Retry-After"), body)
	}
	if byStatus, _, _ := burstHTTP(t, front.url+"/v1.0/metadata", 6); byStatus[200] != 6 {
		t.Errorf("the caller's API: %v", byStatus)
	}
	// The callee's own API is not limited by its appHttpPipeline.
	if byStatus, _, _ := burstHTTP(t, orders.url+"/v1.0/metadata", 6); byStatus[200] != 6 {
		t.Errorf("the callee's API: %v", byStatus)
	}
	// Its metadata lists the middleware Component, as daprd's does.
	listed := false
	for _, c := range getMetadata(t, orders).Components {
		listed = listed || c.Name == "limit" && c.Type == "middleware.http.ratelimit" && c.Version == "v1"
	}
	if !listed {
		t.Errorf("metadata components %+v", getMetadata(t, orders).Components)
	}

	ts := testpb.NewTestServiceClient(grpcConn(t, front))
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "dapr-app-id", "grpcapp")
	var errs []error
	for range 4 {
		_, err := ts.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}})
		errs = append(errs, err)
	}
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("the burst of 2: %v", errs)
	}
	wantRetryInfo(t, "proxied gRPC call past the callee's limit", errs[2])
}

// A Configuration whose pipeline names a Component that is not there stops
// the sidecar at start, naming the field.
func TestMiddlewareMissingComponent(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(conf, pipelineConfig("httpPipeline", "nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	p := proc.For(t).Start("bad sidecar", sidecarBin, nil, "--app-id", "bad", "--dapr-http-port", "0", "--dapr-grpc-port", "0",
		"--dapr-internal-grpc-port", "0", "--metrics-port", "0", "--registry-dir", w.registry, "--resources-path", t.TempDir(), "--config", conf)
	if code := proc.For(t).ExitCode(p, 10*time.Second); code == 0 || !strings.Contains(p.Out.String(), `spec.httpPipeline.handlers[0].name: no Component "nope" applies to this app`) {
		t.Errorf("exit %d: %s", code, p.Out.String())
	}
}

// appHttpPipeline does not run on what the sidecar itself sends to its
// app: with a limit of 1/s (burst 1) in force on the subscriber's sidecar,
// GET /dapr/subscribe is read and 50 events published at once all reach
// the app, each once, none refused nor retried; while invocations from
// another sidecar are limited in the same run.
func TestMiddlewareAppPipelineSkipsDeliveries(t *testing.T) {
	dir, confDir := t.TempDir(), t.TempDir()
	saveFile(t, filepath.Join(dir, "limit.yaml"), rateLimitComponent("limit", "1", "1"))
	saveFile(t, filepath.Join(dir, "pubsub.yaml"), resources.PubSubYAML("pubsub", "pubsub.in-memory"))
	conf := filepath.Join(confDir, "config.yaml")
	saveFile(t, conf, pipelineConfig("appHttpPipeline", "limit"))
	w := newWorld(t)
	port := w.subscribingApp("orders-app", "orders")
	orders := w.sidecar("orders", port, "--resources-path", dir, "--config", conf)
	front := w.sidecar("front", 0)
	orders.waitHealthy(t)
	front.waitHealthy(t)
	// The programmatic subscription was read through the app channel.
	waitMetadata(t, orders, `"type":"PROGRAMMATIC"`)
	metrics := "http://127.0.0.1:" + strconv.Itoa(getMetadata(t, orders).Ports["metrics"])

	invoke := func() map[int]int {
		byStatus, _, _ := burstHTTP(t, front.url+"/v1.0/invoke/orders/method/echo/x", 10)
		if byStatus[429] == 0 || byStatus[200]+byStatus[429] != 10 {
			t.Fatalf("10 invocations in a row against 1/s, burst 1: %v; want some refused", byStatus)
		}
		return byStatus
	}
	refused := invoke()[429]

	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, b := do(t, "POST", orders.url+"/v1.0/publish/pubsub/orders", strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)), http.Header{"Content-Type": {"application/json"}})
			if resp.StatusCode != http.StatusNoContent {
				t.Errorf("publish %d: %d %s", i, resp.StatusCode, b)
			}
		}()
	}
	wg.Wait()
	got := waitDeliveries(t, port, "the 50 events", func(d []delivered) bool { return len(byN(t, d)) == n })
	for k, c := range byN(t, got) {
		if c != 1 {
			t.Errorf("event %s delivered %d times; want once", k, c)
		}
	}
	refused += invoke()[429]

	delivered := `app_id="orders",pubsub="pubsub",status="success",topic="orders"`
	if v := metricValue(t, metrics, "tandem_pubsub_delivered_total", delivered); v != n {
		t.Errorf("deliveries answered SUCCESS: %v, want %d", v, n)
	}
	if v := metricValue(t, metrics, "tandem_pubsub_retried_total", `app_id="orders",pubsub="pubsub",topic="orders"`); v != 0 {
		t.Errorf("deliveries retried: %v, want 0", v)
	}
	limited := `app_id="orders",middleware="limit",pipeline="appHttpPipeline",protocol="http",type="middleware.http.ratelimit"`
	if v := metricValue(t, metrics, "tandem_middleware_refused_total", limited); v != float64(refused) {
		t.Errorf("appHttpPipeline refusals: %v, want the %d invocations refused", v, refused)
	}
}

// The API token is checked before httpPipeline, on the HTTP API as on the
// gRPC API (as daprd does on its HTTP API): calls without the token are
// refused 401 / Unauthenticated and take nothing from a rate limit's
// bucket, so that a flood of them cannot use up the app's limit.
func TestMiddlewareAfterAPIToken(t *testing.T) {
	dir, confDir := t.TempDir(), t.TempDir()
	saveFile(t, filepath.Join(dir, "limit.yaml"), rateLimitComponent("limit", "0.001", "2"))
	conf := filepath.Join(confDir, "config.yaml")
	saveFile(t, conf, pipelineConfig("httpPipeline", "limit"))
	w := newWorld(t)
	front := w.sidecarEnv("front", 0, []string{"DAPR_API_TOKEN=front-secret"}, "--resources-path", dir, "--config", conf)
	front.waitHealthy(t)
	token := http.Header{"Dapr-Api-Token": {"front-secret"}}

	for i := range 10 {
		if resp, b := do(t, "GET", front.url+"/v1.0/metadata", nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("HTTP call %d without the token: %d %s; want 401", i, resp.StatusCode, b)
		}
	}
	api := runtimev1pb.NewDaprClient(grpcConn(t, front))
	for i := range 10 {
		if _, err := api.GetMetadata(ctxT(t), &runtimev1pb.GetMetadataRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("gRPC call %d without the token: %v; want Unauthenticated", i, err)
		}
	}
	// The bucket (burst 2, shared by both APIs) is full: one call with the
	// token on each API goes through, the next is limited.
	if resp, b := do(t, "GET", front.url+"/v1.0/metadata", nil, token); resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP call with the token after 20 without: %d %s; want 200", resp.StatusCode, b)
	}
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "dapr-api-token", "front-secret")
	if _, err := api.GetMetadata(ctx, &runtimev1pb.GetMetadataRequest{}); err != nil {
		t.Fatalf("gRPC call with the token after 20 without: %v", err)
	}
	if resp, b := do(t, "GET", front.url+"/v1.0/metadata", nil, token); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("third call with the token: %d %s; want 429", resp.StatusCode, b)
	}
	_, err := api.GetMetadata(ctx, &runtimev1pb.GetMetadataRequest{})
	wantRetryInfo(t, "fourth call with the token", err)
}
