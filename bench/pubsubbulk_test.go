package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
)

// TestBulkBody: a bulk publish request of n entries, each with its own id,
// a JSON event of the size asked carrying its send time.
func TestBulkBody(t *testing.T) {
	sent := time.Now()
	var entries []struct {
		EntryID     string          `json:"entryId"`
		ContentType string          `json:"contentType"`
		Event       json.RawMessage `json:"event"`
	}
	if err := json.Unmarshal(bulkBody(3, 1024, sent), &entries); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, e := range entries {
		ids[e.EntryID] = true
		if e.ContentType != "application/json" || len(e.Event) != 1024 {
			t.Errorf("entry %s: %s of %d bytes, want application/json of 1024", e.EntryID, e.ContentType, len(e.Event))
		}
		if got, err := sentOf(e.Event); err != nil || !got.Equal(time.Unix(0, sent.UnixNano())) {
			t.Errorf("entry %s: send time %v (%v)", e.EntryID, got, err)
		}
	}
	if len(entries) != 3 || len(ids) != 3 {
		t.Errorf("%d entries, %d ids, want 3 of each", len(entries), len(ids))
	}
}

// TestBulkSink: subscribed in bulk, the app answers each entry of daprd's
// envelope with SUCCESS and counts them; subscribed one by one, it counts
// each CloudEvent; an event without its send time is refused and
// reported.
func TestBulkSink(t *testing.T) {
	k := &bulkSink{arrived: make(chan struct{}, 1)}
	k.reset("orders", true)
	srv := httptest.NewServer(k)
	defer srv.Close()

	subscriptions := func() map[string]any {
		t.Helper()
		resp, err := http.Get(srv.URL + "/dapr/subscribe")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var subs []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&subs); err != nil || len(subs) != 1 {
			t.Fatalf("subscriptions %v (%v), want one", subs, err)
		}
		return subs[0]
	}
	sub := subscriptions()
	bulk, _ := sub["bulkSubscribe"].(map[string]any)
	if sub["topic"] != "orders" || sub["route"] != "/events" || bulk["enabled"] != true || bulk["maxMessagesCount"] != float64(100) {
		t.Fatalf("subscription %v, want orders to /events in bulk of 100", sub)
	}

	ev := string(eventBody(200, time.Now()))
	post := func(body string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	resp, answer := post(`{"entries":[{"entryId":"a","event":{"specversion":"1.0","data":` + ev + `},"contentType":"application/cloudevents+json"},` +
		`{"entryId":"b","event":{"specversion":"1.0","data":` + ev + `},"contentType":"application/cloudevents+json"}],"id":"x","topic":"orders","type":"com.dapr.event.sent.bulk"}`)
	if resp.StatusCode != http.StatusOK || answer != `{"statuses":[{"entryId":"a","status":"SUCCESS"},{"entryId":"b","status":"SUCCESS"}]}` {
		t.Fatalf("bulk request: %s %s, want 200 and SUCCESS for a and b", resp.Status, answer)
	}
	if n, at := k.firstRequest(); n != 2 || at.IsZero() {
		t.Errorf("first request: %d events at %v, want 2", n, at)
	}

	k.reset("payments", false)
	if _, ok := subscriptions()["bulkSubscribe"]; ok {
		t.Error("a subscription one by one has bulkSubscribe")
	}
	if resp, _ := post(`{"specversion":"1.0","data":` + ev + `}`); resp.StatusCode != http.StatusOK {
		t.Errorf("one event: %s, want 200", resp.Status)
	}
	if !k.waitFor(1, 10*time.Second) || k.received() != 1 || k.requestCount() != 1 {
		t.Errorf("%d events in %d requests after the reset, want 1 in 1", k.received(), k.requestCount())
	}
	if resp, _ := post(`{"entries":[{"entryId":"c","event":{"data":{"orderId":1}}}]}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("an entry without its send time: %s, want 400", resp.Status)
	}
	if bad := k.failed(); !strings.Contains(bad, "entry c") || !strings.Contains(bad, "no sent field") {
		t.Errorf("failure %q, want one naming entry c and its missing send time", bad)
	}
}

// TestDrained: on a real redis-server, the group is drained only once
// nothing is left unread (lag) nor read and unacknowledged (pending).
func TestDrained(t *testing.T) {
	rs := redisserver.Start(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: rs.Addr})
	defer rdb.Close()
	ctx := t.Context()
	if err := rdb.XGroupCreateMkStream(ctx, "orders", "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := rdb.XAdd(ctx, &goredis.XAddArgs{Stream: "orders", Values: []any{"data", "x"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	notYet := func(what string) {
		t.Helper()
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if _, err := drained(short, rdb, "orders", "g"); err == nil {
			t.Fatalf("drained with %s", what)
		}
	}
	notYet("two entries unread")
	read, err := rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{"orders", ">"}, Count: 10}).Result()
	if err != nil || len(read) != 1 || len(read[0].Messages) != 2 {
		t.Fatalf("XREADGROUP: %v (%v)", read, err)
	}
	notYet("two entries pending")
	for _, m := range read[0].Messages {
		if err := rdb.XAck(ctx, "orders", "g", m.ID).Err(); err != nil {
			t.Fatal(err)
		}
	}
	long, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if at, err := drained(long, rdb, "orders", "g"); err != nil || at.IsZero() {
		t.Fatalf("every entry acknowledged: %v, %v", at, err)
	}
	short, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if _, err := drained(short, rdb, "orders", "no-group"); err == nil {
		t.Error("a group that does not exist is drained")
	}
}

// TestPubSubBulkReport: the ratios are of the bulk way's medians over the
// single ways'.
func TestPubSubBulkReport(t *testing.T) {
	pub := func(per time.Duration, cpu time.Duration) *bulkPubSample {
		return &bulkPubSample{PerBatch: &stats{Latencies: []time.Duration{per, per}, Requests: 2}, Events: 1000, Elapsed: 10 * per, CPU: cpu}
	}
	sub := func(elapsed time.Duration, requests int) *bulkSubSample {
		return &bulkSubSample{Events: 1000, Elapsed: elapsed, CPU: elapsed / 2, Requests: requests}
	}
	pubs := []*bulkPubWay{
		{name: "publish-bulk", about: "a", rounds: []*bulkPubSample{pub(10*time.Millisecond, time.Second), pub(20*time.Millisecond, time.Second), pub(10*time.Millisecond, time.Second)}},
		{name: "publish-single", about: "b", rounds: []*bulkPubSample{pub(40*time.Millisecond, 4*time.Second)}},
	}
	subs := []*bulkSubWay{
		{name: "deliver-bulk-100", about: "c", rounds: []*bulkSubSample{sub(time.Second, 10)}},
		{name: "deliver-bulk-100-c200", bulk: true, about: "f", rounds: []*bulkSubSample{sub(time.Second/2, 10)}},
		{name: "deliver-single-100", about: "d", rounds: []*bulkSubSample{sub(2*time.Second, 1000)}},
		{name: "deliver-single-10", about: "e", rounds: []*bulkSubSample{sub(4*time.Second, 1000)}},
	}
	out := pubsubBulkReport(options{Rounds: 3, Backlog: 1000, Size: 1024, load: load{Conns: 16}}, pubs, subs)
	for _, want := range []string{
		"-pubsub-bulk bench/RESULTS.md -rounds 3 -backlog 1000",
		"publish-bulk over publish-single: time per 100 events p50 **0.25x**, p90 0.25x; events/s **4.00x**; publisher CPU per event **0.25x**.",
		"| publish-bulk | 10.0 ms (10.0–20.0) |",
		"deliver-bulk-100 over deliver-single-100 (ratios of medians): events/s **2.00x**; subscriber CPU per event **0.50x**.",
		"deliver-bulk-100 over deliver-single-10 (ratios of medians): events/s **4.00x**; subscriber CPU per event **0.25x**.",
		"- deliver-bulk-100-c200 over deliver-single-10: events/s 8.00x; subscriber CPU per event 0.12x.",
		"| deliver-bulk-100 | 1000 /s (1000–1000) | 0.500 s (0.500–0.500) | 100.0 (100.0–100.0) |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report has no %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "over deliver-bulk-100-c200") {
		t.Errorf("a bulk way is weighed against another:\n%s", out)
	}
}
