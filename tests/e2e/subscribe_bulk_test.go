package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// bulkDelivered is a bulk request the testapp recorded, decoded.
type bulkDelivered struct {
	Path        string
	ContentType string
	Body        struct {
		Entries []struct {
			EntryID     string            `json:"entryId"`
			ContentType string            `json:"contentType"`
			Metadata    map[string]string `json:"metadata"`
			Event       struct {
				ID   string `json:"id"`
				Data struct {
					N int `json:"n"`
				} `json:"data"`
			} `json:"event"`
		} `json:"entries"`
		ID         string            `json:"id"`
		Metadata   map[string]string `json:"metadata"`
		PubsubName string            `json:"pubsubname"`
		Topic      string            `json:"topic"`
		Type       string            `json:"type"`
	}
}

// A bulk subscription through real sidecars and Redis: the app gets its
// events in batches of daprd's envelope and answers a status per entry;
// an entry answered RETRY, and one the answer leaves out, come again
// (they only); one answered DROP goes to the dead-letter topic; every
// event is acknowledged in Redis once the app answered SUCCESS or DROP.
func TestSubscribeBulkRedis(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	files := map[string][]byte{"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr)}
	pub, _ := w.pubsubSidecar("shop", files)
	subs := `[{"pubsubname":"pubsub","topic":"orders","route":"/bulk/orders","deadLetterTopic":"orders-dead",` +
		`"bulkSubscribe":{"enabled":true,"maxMessagesCount":5,"maxAwaitDurationMs":2000}}]`
	port, _ := w.appBin("shipping-app", testappBin, "SUBSCRIBE="+subs)
	sub, _ := w.pubsubSidecarApp("shipping", port, files)
	waitMetadata(t, sub, `"type":"PROGRAMMATIC"`)

	const n = 8
	for i := range n {
		answer := map[int]string{1: "RETRY_ONCE", 2: "OMIT_ONCE", 3: "DROP"}[i]
		publishOK(t, pub, "orders", fmt.Sprintf(`{"n":%d,"answer":%q}`, i, answer))
	}
	url := "http://127.0.0.1:" + itoa(port) + "/bulk-deliveries"
	got := waitJSON(t, url, "every event answered", func(ds []bulkDelivered) bool {
		seen := map[int]int{}
		for _, d := range ds {
			for _, e := range d.Body.Entries {
				seen[e.Event.Data.N]++
			}
		}
		return len(seen) == n && seen[1] >= 2 && seen[2] >= 2
	})
	seen := map[int]int{}
	most := 0
	for _, d := range got {
		b := d.Body
		if d.Path != "/bulk/orders" || d.ContentType != "application/json" || b.Type != "com.dapr.event.sent.bulk" || b.Topic != "orders" ||
			b.PubsubName != "pubsub" || b.ID == "" || b.Metadata["pubsubname"] != "pubsub" || len(b.Entries) > 5 {
			t.Errorf("bulk request %+v", d)
		}
		for _, e := range b.Entries {
			if e.EntryID == "" || e.ContentType != "application/cloudevents+json" || e.Event.ID == "" {
				t.Errorf("entry %+v", e)
			}
			seen[e.Event.Data.N]++
		}
		most = max(most, len(b.Entries))
	}
	if most < 2 {
		t.Errorf("no request held more than one entry: %+v", got)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rc.Close() })
	ctx := context.Background()
	waitFor(t, "every event acknowledged", func() bool {
		p, err := rc.XPending(ctx, "orders", "shipping").Result()
		return err == nil && p.Count == 0
	})
	// Acknowledged: none comes again.
	after := getJSON[[]bulkDelivered](t, url)
	seen = map[int]int{}
	for _, d := range after {
		for _, e := range d.Body.Entries {
			seen[e.Event.Data.N]++
		}
	}
	for i := range n {
		want := 1
		if i == 1 || i == 2 {
			want = 2
		}
		if seen[i] != want {
			t.Errorf("event %d came %d times, want %d; all: %v", i, seen[i], want, seen)
		}
	}
	dead, err := rc.XRange(ctx, "orders-dead", "-", "+").Result()
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead-letter stream: %v, %v; want the DROP one", dead, err)
	}
	var ce struct{ Data struct{ N int } }
	_ = json.Unmarshal([]byte(fmt.Sprint(dead[0].Values["data"])), &ce)
	if ce.Data.N != 3 {
		t.Errorf("dead-letter entry %v; want event 3", dead[0].Values)
	}
}
