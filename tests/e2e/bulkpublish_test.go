package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	dapr "github.com/dapr/go-sdk/client"
	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// Bulk publish through a real sidecar into a real Redis: over HTTP (every
// entry its own CloudEvent in the stream) and with the Go SDK's
// PublishEvents over gRPC; with Redis down every entry is reported failed,
// by id over HTTP, and the SDK is told all failed.
func TestBulkPublishRedis(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	s, _ := w.pubsubSidecar("checkout", map[string][]byte{
		"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr, "dialTimeout", "300ms"),
	})
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rc.Close() })
	streamEvents := func(stream string) []map[string]any {
		t.Helper()
		msgs, err := rc.XRange(context.Background(), stream, "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE %s: %v", stream, err)
		}
		var out []map[string]any
		for _, m := range msgs {
			var ce map[string]any
			if err := json.Unmarshal([]byte(fmt.Sprint(m.Values["data"])), &ce); err != nil {
				t.Fatalf("entry %v is not a cloud event: %v", m.Values, err)
			}
			out = append(out, ce)
		}
		return out
	}

	const n = 200
	entries := make([]string, n)
	for i := range entries {
		entries[i] = fmt.Sprintf(`{"entryId":"e%d","event":{"n":%d},"contentType":"application/json"}`, i, i)
	}
	resp, b := do(t, "POST", s.url+"/v1.0-alpha1/publish/bulk/pubsub/orders", strings.NewReader("["+strings.Join(entries, ",")+"]"),
		http.Header{"Content-Type": {"application/json"}})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("bulk publish: %d %s", resp.StatusCode, b)
	}
	got := streamEvents("orders")
	if len(got) != n {
		t.Fatalf("%d events in the stream, want %d", len(got), n)
	}
	seen := map[float64]bool{}
	ids := map[string]bool{}
	for _, ce := range got {
		d, _ := ce["data"].(map[string]any)
		seen[d["n"].(float64)] = true
		ids[fmt.Sprint(ce["id"])] = true
		if ce["source"] != "checkout" || ce["datacontenttype"] != "application/json" || ce["traceparent"] == nil {
			t.Errorf("envelope %v", ce)
		}
	}
	if len(seen) != n || len(ids) != n {
		t.Errorf("%d distinct events and %d distinct ids of %d", len(seen), len(ids), n)
	}

	// The Go SDK, over gRPC.
	c := sdkClient(t, s)
	res := c.PublishEvents(ctxT(t), "pubsub", "sdk", []interface{}{map[string]int{"a": 1}, "two", map[string]int{"c": 3}})
	if res.Error != nil || len(res.FailedEvents) != 0 {
		t.Fatalf("SDK PublishEvents: %v, failed %v", res.Error, res.FailedEvents)
	}
	if got := streamEvents("sdk"); len(got) != 3 {
		t.Errorf("%d SDK events in the stream, want 3", len(got))
	}
	res = c.PublishEvents(ctxT(t), "nope", "sdk", []interface{}{"x"})
	if res.Error == nil || !strings.Contains(res.Error.Error(), "nope") || len(res.FailedEvents) != 1 {
		t.Errorf("SDK PublishEvents to an unknown pubsub: %v, failed %v", res.Error, res.FailedEvents)
	}

	// Redis down: every entry failed, named.
	srv.Stop()
	resp, b = do(t, "POST", s.url+"/v1.0-alpha1/publish/bulk/pubsub/orders",
		strings.NewReader(`[{"entryId":"x","event":"1","contentType":"text/plain"},{"entryId":"y","event":"2","contentType":"text/plain"}]`), nil)
	var failed struct {
		FailedEntries []struct{ EntryID, Error string } `json:"failedEntries"`
		ErrorCode     string
	}
	if err := json.Unmarshal(b, &failed); err != nil || resp.StatusCode != 500 || failed.ErrorCode != "ERR_PUBSUB_PUBLISH_MESSAGE" ||
		len(failed.FailedEntries) != 2 || !strings.Contains(failed.FailedEntries[0].Error, srv.Addr) {
		t.Errorf("Redis down: %d %s", resp.StatusCode, b)
	}
	res = c.PublishEvents(ctxT(t), "pubsub", "sdk", []interface{}{"x", "y"})
	if res.Error == nil || len(res.FailedEvents) != 2 {
		t.Errorf("SDK with Redis down: %v, failed %v", res.Error, res.FailedEvents)
	}
	var _ dapr.Client = c
}
