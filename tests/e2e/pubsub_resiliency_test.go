package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// The outbound policy of a pub/sub component applies to publishing, on a
// real Redis: a retry carries a publish across Redis refusing writes (204,
// and the event is in Redis once); a timeout ends a publish to a hung
// Redis (SIGSTOP) with a 500 while Redis is still hung; an open circuit
// answers at once with daprd's error, without calling Redis. The metrics
// count each publish once, by its last outcome.
func TestPublishResiliencyRedis(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	files := map[string][]byte{"resiliency.yaml": []byte(`apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: publishing
spec:
  policies:
    timeouts:
      short: 500ms
    retries:
      patient: {policy: constant, duration: 50ms, maxRetries: -1}
    circuitBreakers:
      cb: {maxRequests: 1, timeout: 1h, trip: consecutiveFailures >= 2}
  targets:
    components:
      retried: {outbound: {retry: patient}}
      bounded: {outbound: {timeout: short}}
      guarded: {outbound: {timeout: short, circuitBreaker: cb}}
`)}
	for _, name := range []string{"retried", "bounded", "guarded"} {
		// Long client timeouts: only the policy's can end a publish soon.
		files[name+".yaml"] = resources.PubSubYAML(name, "pubsub.redis", "redisHost", srv.Addr, "readTimeout", "60s", "writeTimeout", "60s")
	}
	s, _ := w.pubsubSidecar("checkout", files)
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rc.Close() })
	ctx := context.Background()
	publish := func(name, topic string) (*http.Response, []byte) {
		return do(t, "POST", s.url+"/v1.0/publish/"+name+"/"+topic, strings.NewReader(`{"n":1}`), http.Header{"Content-Type": {"application/json"}})
	}
	xlen := func(topic string) int64 {
		t.Helper()
		n, err := rc.XLen(ctx, topic).Result()
		if err != nil {
			t.Fatalf("XLEN %s: %v", topic, err)
		}
		return n
	}

	// Retry: Redis refuses writes (out of memory) until it has refused this
	// publish at least once, then takes it.
	if resp, b := publish("retried", "orders"); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("publish: %d %s", resp.StatusCode, b)
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	answered := make(chan struct{})
	var status int
	var body []byte
	go func() {
		defer close(answered)
		resp, b := publish("retried", "orders")
		status, body = resp.StatusCode, b
	}()
	for refused := 0; refused < 1; {
		stats, err := rc.Info(ctx, "errorstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.Index(stats, "errorstat_OOM:count="); i >= 0 {
			refused, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(stats[i+len("errorstat_OOM:count="):], "\r", 2)[0]))
		}
		select {
		case <-answered:
			t.Fatalf("the publish answered %d %s before Redis refused it", status, body)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	<-answered
	if status != http.StatusNoContent || xlen("orders") != 2 {
		t.Errorf("across refused writes: %d %s, %d events in Redis; want 204 and 2", status, body, xlen("orders"))
	}

	// Timeout: Redis hung; the publish ends by the policy's timeout while
	// Redis is still stopped.
	srv.Pause()
	t.Cleanup(srv.Resume)
	resp, b := publish("bounded", "hung")
	wantError(t, "hung Redis", resp, b, 500, "ERR_PUBSUB_PUBLISH_MESSAGE", `"bounded"`, `"hung"`, "no answer within the timeout of 500ms")

	// Circuit breaker: two timeouts open it; the next publish is refused
	// at once, while Redis is still hung (a call to it would time out).
	for i := 0; i < 2; i++ {
		resp, b = publish("guarded", "guarded")
		wantError(t, "hung Redis, guarded", resp, b, 500, "ERR_PUBSUB_PUBLISH_MESSAGE", "no answer within the timeout")
	}
	resp, b = publish("guarded", "guarded")
	wantError(t, "open circuit", resp, b, 500, "ERR_PUBSUB_PUBLISH_MESSAGE", `"guarded"`, "circuit breaker open")
	if strings.Contains(string(b), "timeout of") {
		t.Errorf("the open circuit called Redis: %s", b)
	}
	srv.Resume()

	// Metrics: a publish counts once, by its last outcome.
	_, mb := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	var md struct{ Ports struct{ Metrics int } }
	if err := json.Unmarshal(mb, &md); err != nil || md.Ports.Metrics == 0 {
		t.Fatalf("metadata: %s %v", mb, err)
	}
	_, m := do(t, "GET", "http://127.0.0.1:"+strconv.Itoa(md.Ports.Metrics)+"/metrics", nil, nil)
	for _, want := range []string{
		`tandem_pubsub_published_total{app_id="checkout",outcome="success",pubsub="retried",topic="other"} 2`,
		`tandem_pubsub_published_total{app_id="checkout",outcome="timeout",pubsub="bounded",topic="other"} 1`,
		`tandem_pubsub_published_total{app_id="checkout",outcome="timeout",pubsub="guarded",topic="other"} 2`,
		`tandem_pubsub_published_total{app_id="checkout",outcome="circuit_open",pubsub="guarded",topic="other"} 1`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
