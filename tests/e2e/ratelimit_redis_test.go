package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
)

// redisLimitComponent is a middleware.http.ratelimit Component whose
// buckets are in the Redis at addr; extra are more metadata, name then
// value.
func redisLimitComponent(name, addr, perSecond, burst string, extra ...string) []byte {
	b := string(rateLimitComponent(name, perSecond, burst))
	md := append([]string{"store", "redis", "redisHost", addr}, extra...)
	for i := 0; i+1 < len(md); i += 2 {
		b += fmt.Sprintf("  - name: %s\n    value: %q\n", md[i], md[i+1])
	}
	return []byte(b)
}

// limitedWorld starts sidecars of appID, one per replica, each with a
// testapp, whose pipeline field runs the Component in comp.
func limitedWorld(t *testing.T, w *world, appID string, replicas int, field string, comp []byte) []*sidecar {
	t.Helper()
	dir, confDir := t.TempDir(), t.TempDir()
	saveFile(t, filepath.Join(dir, "limit.yaml"), comp)
	conf := filepath.Join(confDir, "config.yaml")
	saveFile(t, conf, pipelineConfig(field, "limit"))
	var out []*sidecar
	for range replicas {
		port, _ := w.app(appID)
		out = append(out, w.sidecar(appID, port, "--resources-path", dir, "--config", conf))
	}
	for _, s := range out {
		s.waitHealthy(t)
	}
	return out
}

// pacedClient is an HTTP client for many calls at once.
var pacedClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}

// paced sends n GETs to url, one every interval from the first, at most
// 64 at once, and counts the answers by status (0: no answer). It
// returns the time from the first send to the last.
func paced(t *testing.T, url string, n int, interval time.Duration, header http.Header) (map[int]int, time.Duration) {
	t.Helper()
	var mu sync.Mutex
	byStatus := map[int]int{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	start := time.Now()
	var last time.Time
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		sem <- struct{}{}
		last = time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			code := 0
			req, _ := http.NewRequest("GET", url, nil)
			for k, v := range header {
				req.Header[k] = v
			}
			if resp, err := pacedClient.Do(req); err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			mu.Lock()
			byStatus[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return byStatus, last.Sub(start)
}

// Two sidecars of one app share a limit of 100/s in Redis: callers
// sending 500/s for 10 s are admitted the burst and then 100 a second,
// over both replicas together (each refuses its share).
func TestMiddlewareRateLimitRedisShared(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	replicas := limitedWorld(t, w, "orders", 2, "appHttpPipeline",
		redisLimitComponent("limit", srv.Addr, "100", "100", "key", "callerAppID"))
	front := w.sidecar("front", 0)
	front.waitHealthy(t)

	// Warm the path (connections, mutual TLS to both replicas), then wait
	// for the bucket to be full again: Redis drops it a second after.
	for range 4 {
		if resp, _ := do(t, "GET", front.url+"/v1.0/invoke/orders/method/echo/x", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("warm-up call: %d", resp.StatusCode)
		}
	}
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	waitFor(t, "the bucket full again", func() bool {
		n, err := rc.Exists(context.Background(), "ratelimit||limit||app:default/front").Result()
		return err == nil && n == 0
	})

	const burst, rate = 100, 100.0
	byStatus, took := paced(t, front.url+"/v1.0/invoke/orders/method/echo/x", 5000, 2*time.Millisecond, nil)
	admitted := byStatus[200]
	want := rate * took.Seconds()
	t.Logf("5,000 calls at 500/s over %v: %v; admitted after the burst of %d: %d (the rate over that time: %.0f)", took.Round(time.Millisecond), byStatus, burst, admitted-burst, want)
	if byStatus[200]+byStatus[429] != 5000 {
		t.Fatalf("answers %v: want 200 and 429 only", byStatus)
	}
	if d := float64(admitted-burst) - want; d < -50 || d > 50 {
		t.Fatalf("admitted after the burst: %d; want %.0f +/- 50", admitted-burst, want)
	}
	// Both replicas refused calls: the limit is theirs together.
	total := 0.0
	for i, s := range replicas {
		metrics := "http://127.0.0.1:" + strconv.Itoa(getMetadata(t, s).Ports["metrics"])
		n := metricValue(t, metrics, "tandem_middleware_refused_total", `app_id="orders",middleware="limit",pipeline="appHttpPipeline",protocol="http",type="middleware.http.ratelimit"`)
		t.Logf("replica %d refused %.0f", i, n)
		if n == 0 {
			t.Errorf("replica %d refused nothing: the calls did not spread, or its limit is its own", i)
		}
		total += n
	}
	if int(total) != byStatus[429] {
		t.Errorf("the replicas counted %.0f refusals; the callers saw %d", total, byStatus[429])
	}
}

// With key callerAppID, a noisy caller spends its own bucket only: a
// quiet caller of the same app keeps being admitted, and the
// Dapr-Caller-App-Id header the noisy one sends does not take the quiet
// one's bucket.
func TestMiddlewareRateLimitPerCaller(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	limitedWorld(t, w, "orders", 1, "appHttpPipeline",
		redisLimitComponent("limit", srv.Addr, "10", "10", "key", "callerAppID"))
	noisy, quiet := w.sidecar("noisy", 0), w.sidecar("quiet", 0)
	noisy.waitHealthy(t)
	quiet.waitHealthy(t)

	var noisyAnswers map[int]int
	done := make(chan struct{})
	go func() {
		defer close(done)
		noisyAnswers, _ = paced(t, noisy.url+"/v1.0/invoke/orders/method/echo/x", 600, 5*time.Millisecond, http.Header{"Dapr-Caller-App-Id": {"quiet"}})
	}()
	quietAnswers := map[int]int{}
	for range 12 {
		resp, _ := do(t, "GET", quiet.url+"/v1.0/invoke/orders/method/echo/x", nil, nil)
		quietAnswers[resp.StatusCode]++
		time.Sleep(200 * time.Millisecond)
	}
	<-done
	t.Logf("noisy (200/s for 3 s): %v; quiet (5/s meanwhile): %v", noisyAnswers, quietAnswers)
	if quietAnswers[200] != 12 {
		t.Errorf("the quiet caller: %v; want all 12 admitted", quietAnswers)
	}
	if noisyAnswers[429] < 400 || noisyAnswers[200]+noisyAnswers[429] != 600 {
		t.Errorf("the noisy caller: %v; want most of its 600 refused", noisyAnswers)
	}
}

// When Redis stops, failureMode open admits the calls and closed refuses
// them, 503 ERR_RATE_LIMIT_UNAVAILABLE with Retry-After on HTTP and
// Unavailable on gRPC, each within a bounded time; with Redis back the
// limit counts again.
func TestMiddlewareRateLimitRedisDown(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	open := limitedWorld(t, w, "open", 1, "httpPipeline", redisLimitComponent("limit", srv.Addr, "1000", "1000"))[0]
	closed := limitedWorld(t, w, "closed", 1, "httpPipeline", redisLimitComponent("limit", srv.Addr, "1000", "1000", "failureMode", "closed"))[0]
	for _, s := range []*sidecar{open, closed} {
		if resp, _ := do(t, "GET", s.url+"/v1.0/metadata", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("%s with Redis up: %d", s.appID, resp.StatusCode)
		}
	}
	srv.Stop()
	for i := range 5 {
		start := time.Now()
		resp, _ := do(t, "GET", open.url+"/v1.0/metadata", nil, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("fail open, Redis stopped, call %d: %d", i, resp.StatusCode)
		}
		resp, body := do(t, "GET", closed.url+"/v1.0/metadata", nil, nil)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(body), `"errorCode":"ERR_RATE_LIMIT_UNAVAILABLE"`) || !strings.Contains(string(body), "cannot reach its Redis store") {
			t.Fatalf("fail closed, Redis stopped, call %d: %d %v %s", i, resp.StatusCode, resp.Header, body)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("two calls took %v with Redis stopped; want them bounded by the timeouts", took)
		}
		if i == 0 {
			t.Logf("fail closed answers %d %s (two calls in %v)", resp.StatusCode, body, time.Since(start))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := runtimev1pb.NewDaprClient(grpcConn(t, closed)).GetMetadata(ctx, &runtimev1pb.GetMetadataRequest{})
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "failureMode: closed") {
		t.Errorf("gRPC API, fail closed: %v; want Unavailable", err)
	}
	srv.Restart(t)
	waitFor(t, "the closed limit admits again with Redis back", func() bool {
		resp, _ := do(t, "GET", closed.url+"/v1.0/metadata", nil, nil)
		return resp.StatusCode == 200
	})
}

// With key header:X-Tenant, each tenant has its bucket, on the HTTP API
// and the gRPC API alike (gRPC metadata x-tenant); a call without the
// header takes its client address's.
func TestMiddlewareRateLimitHeaderKey(t *testing.T) {
	w := newWorld(t)
	api := limitedWorld(t, w, "api", 1, "httpPipeline", append(rateLimitComponent("limit", "0.001", "2"), "  - name: key\n    value: header:X-Tenant\n"...))[0]
	call := func(tenant string) int {
		h := http.Header{}
		if tenant != "" {
			h.Set("X-Tenant", tenant)
		}
		resp, _ := do(t, "GET", api.url+"/v1.0/metadata", nil, h)
		return resp.StatusCode
	}
	got := []int{call("a"), call("a"), call("a"), call("b"), call(""), call(""), call("")}
	if want := []int{200, 200, 429, 200, 200, 200, 429}; !slices.Equal(got, want) {
		t.Fatalf("answers %v, want %v", got, want)
	}
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-tenant", "b")
	client := runtimev1pb.NewDaprClient(grpcConn(t, api))
	if _, err := client.GetMetadata(ctx, &runtimev1pb.GetMetadataRequest{}); err != nil {
		t.Fatalf("gRPC, tenant b's second call: %v", err)
	}
	_, err := client.GetMetadata(ctx, &runtimev1pb.GetMetadataRequest{})
	wantRetryInfo(t, "gRPC, tenant b's third call", err)
}
