package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// tracedConfig is a Configuration that samples every trace and writes its
// spans to the log: the publish's span is then real.
var tracedConfig = []byte(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: traced
spec:
  tracing:
    samplingRate: "1"
    stdout: true
`)

// streamReader reads back what a sidecar wrote to Redis streams.
type streamReader struct {
	t  *testing.T
	rc *goredis.Client
}

// last returns the fields of the last entry of stream, and the event in
// its data field decoded (nil when it is not JSON).
func (r streamReader) last(stream string) (map[string]any, map[string]any) {
	r.t.Helper()
	msgs, err := r.rc.XRevRangeN(context.Background(), stream, "+", "-", 1).Result()
	if err != nil || len(msgs) != 1 {
		r.t.Fatalf("XREVRANGE %s: %v, %v", stream, msgs, err)
	}
	var ce map[string]any
	if s, ok := msgs[0].Values["data"].(string); ok {
		_ = json.Unmarshal([]byte(s), &ce)
	}
	return msgs[0].Values, ce
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// What a publish puts in Redis, read back with XRANGE: daprd's CloudEvent,
// exactly, with the trace context of the publish's span; the app's own
// cloud event completed, not wrapped; a raw payload as it was; the same
// over gRPC and the Go SDK. With Redis down a publish is a 500 naming its
// address, and publishing works again once Redis is back.
func TestPublishRedis(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	conf := filepath.Join(t.TempDir(), "traced.yaml")
	if err := os.WriteFile(conf, tracedConfig, 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ := w.pubsubSidecar("checkout", map[string][]byte{
		"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr, "dialTimeout", "300ms"),
	}, "--config", conf)
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rc.Close() })
	r := streamReader{t, rc}

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	resp, b := do(t, "POST", s.url+"/v1.0/publish/pubsub/orders", strings.NewReader(`{"orderId":1}`),
		http.Header{"Content-Type": {"application/json"}, "Traceparent": {"00-" + traceID + "-00f067aa0ba902b7-01"}})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("publish: %d %s", resp.StatusCode, b)
	}
	fields, ce := r.last("orders")
	if keys := slices.Sorted(maps.Keys(ce)); strings.Join(keys, " ") != "data datacontenttype id pubsubname source specversion time topic traceid traceparent tracestate type" {
		t.Errorf("envelope fields %v", keys)
	}
	for k, want := range map[string]any{"source": "checkout", "type": "com.dapr.event.sent", "specversion": "1.0",
		"datacontenttype": "application/json", "topic": "orders", "pubsubname": "pubsub", "tracestate": ""} {
		if ce[k] != want {
			t.Errorf("%s = %#v, want %#v", k, ce[k], want)
		}
	}
	if d, _ := json.Marshal(ce["data"]); string(d) != `{"orderId":1}` {
		t.Errorf("data %s", d)
	}
	if id, _ := ce["id"].(string); !uuidRE.MatchString(id) {
		t.Errorf("id %q is not a UUID", id)
	}
	if ts, _ := ce["time"].(string); func() error { _, err := time.Parse(time.RFC3339, ts); return err }() != nil {
		t.Errorf("time %q is not RFC 3339", ts)
	}
	tp, _ := ce["traceparent"].(string)
	if parts := strings.Split(tp, "-"); len(parts) != 4 || parts[1] != traceID || parts[2] == "00f067aa0ba902b7" || parts[3] != "01" || ce["traceid"] != tp {
		t.Errorf("traceparent %q, traceid %v: want the caller's trace, the publish span's id, sampled", tp, ce["traceid"])
	}
	if fields["metadata"] != "{}" { // as daprd writes it: the request's metadata, none here
		t.Errorf("metadata field %#v for a publish without metadata", fields["metadata"])
	}

	// Binary data goes in data_base64.
	do(t, "POST", s.url+"/v1.0/publish/pubsub/orders", strings.NewReader("\x00\x01\x02"), http.Header{"Content-Type": {"application/octet-stream"}})
	if _, ce := r.last("orders"); ce["data_base64"] != "AAEC" || ce["data"] != nil || ce["datacontenttype"] != "application/octet-stream" {
		t.Errorf("binary: %v", ce)
	}

	// The app's own CloudEvent is completed, not wrapped.
	resp, b = do(t, "POST", s.url+"/v1.0/publish/pubsub/orders", strings.NewReader(`{"specversion":"1.0","id":"order-42","source":"shop","type":"order.created","datacontenttype":"application/json","data":{"orderId":42}}`),
		http.Header{"Content-Type": {"application/cloudevents+json"}})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("publish a cloud event: %d %s", resp.StatusCode, b)
	}
	_, ce = r.last("orders")
	for k, want := range map[string]any{"id": "order-42", "source": "shop", "type": "order.created", "topic": "orders", "pubsubname": "pubsub"} {
		if ce[k] != want {
			t.Errorf("the app's cloud event: %s = %#v, want %#v", k, ce[k], want)
		}
	}
	if d, _ := json.Marshal(ce["data"]); string(d) != `{"orderId":42}` || ce["time"] == nil || ce["traceparent"] == "" || ce["traceparent"] == nil {
		t.Errorf("the app's cloud event: %v", ce)
	}

	// A raw payload is stored as it was, its metadata beside it.
	do(t, "POST", s.url+"/v1.0/publish/pubsub/raw?metadata.rawPayload=true", strings.NewReader(`{"raw":1}`), http.Header{"Content-Type": {"application/json"}})
	if fields, _ := r.last("raw"); fields["data"] != `{"raw":1}` || fields["metadata"] != `{"rawPayload":"true"}` {
		t.Errorf("raw payload: %v", fields)
	}

	// A TTL becomes the envelope's expiration.
	do(t, "POST", s.url+"/v1.0/publish/pubsub/orders?metadata.ttlInSeconds=120", strings.NewReader("x"), nil)
	if _, ce := r.last("orders"); ce["expiration"] == nil || ce["data"] != "x" || ce["datacontenttype"] != "text/plain" {
		t.Errorf("ttl: %v", ce)
	}

	// gRPC, and the Go SDK through it.
	dc := runtimev1pb.NewDaprClient(grpcConn(t, s))
	if _, err := dc.PublishEvent(ctxT(t), &runtimev1pb.PublishEventRequest{PubsubName: "pubsub", Topic: "grpc", Data: []byte("hello"), DataContentType: "text/plain"}); err != nil {
		t.Fatalf("gRPC PublishEvent: %v", err)
	}
	if _, ce := r.last("grpc"); ce["data"] != "hello" || ce["source"] != "checkout" || ce["datacontenttype"] != "text/plain" {
		t.Errorf("gRPC: %v", ce)
	}
	type order struct {
		OrderID int `json:"orderId"`
	}
	if err := sdkClient(t, s).PublishEvent(ctxT(t), "pubsub", "sdk", order{7}); err != nil {
		t.Fatalf("SDK PublishEvent: %v", err)
	}
	if _, ce := r.last("sdk"); ce["datacontenttype"] != "application/json" || ce["pubsubname"] != "pubsub" {
		t.Errorf("SDK: %v", ce)
	} else if d, _ := json.Marshal(ce["data"]); string(d) != `{"orderId":7}` {
		t.Errorf("SDK data %s", d)
	}

	// Redis down: a 500 naming the component and its address; back up,
	// publishing works again by itself.
	srv.Stop()
	resp, b = do(t, "POST", s.url+"/v1.0/publish/pubsub/orders", strings.NewReader("x"), nil)
	wantError(t, "Redis down", resp, b, 500, "ERR_PUBSUB_PUBLISH_MESSAGE", `"pubsub"`, `"orders"`, srv.Addr)
	_, err := dc.PublishEvent(ctxT(t), &runtimev1pb.PublishEventRequest{PubsubName: "pubsub", Topic: "orders"})
	wantStatus(t, err, codes.Internal, "DAPR_PUBSUB_PUBLISH_MESSAGE", srv.Addr)
	srv.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, b = do(t, "POST", s.url+"/v1.0/publish/pubsub/orders", strings.NewReader("again"), nil)
		if resp.StatusCode == http.StatusNoContent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %d %s", resp.StatusCode, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The pub/sub quickstart's own components/pubsub.yaml no longer stops the
// sidecar: it starts (Redis is not dialled at start) and lists the
// component.
func TestQuickstartPubSubComponentStarts(t *testing.T) {
	const quickstart = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisPassword
    value: ""
`
	w := newWorld(t)
	s, _ := w.pubsubSidecar("order-processor", map[string][]byte{"pubsub.yaml": []byte(quickstart)})
	_, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	if !strings.Contains(string(b), `{"name":"pubsub","type":"pubsub.redis","version":"v1"}`) {
		t.Errorf("metadata does not list the quickstart's pubsub: %s", b)
	}
}
