package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSink: the app subscribes to the topic it is told, and takes each
// event's latency from the send time it carries, bare (the floor) or in a
// CloudEvent's data (the sidecar).
func TestSink(t *testing.T) {
	k := newSink()
	k.reset("orders", 0)
	srv := httptest.NewServer(k)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/dapr/subscribe")
	if err != nil {
		t.Fatal(err)
	}
	var subs []map[string]string
	err = json.NewDecoder(resp.Body).Decode(&subs)
	resp.Body.Close()
	if err != nil || len(subs) != 1 || subs[0]["topic"] != "orders" || subs[0]["route"] != "/events" || subs[0]["pubsubname"] != "pubsub" {
		t.Fatalf("subscriptions %v (%v), want pubsub/orders to /events", subs, err)
	}

	sent := time.Now().Add(-time.Second)
	bare := eventBody(1024, sent)
	if len(bare) != 1024 {
		t.Errorf("event of %d bytes, want 1024", len(bare))
	}
	wrapped := []byte(`{"specversion":"1.0","datacontenttype":"application/json","data":` + string(bare) + `}`)
	for _, body := range [][]byte{bare, wrapped} {
		resp, err := http.Post(srv.URL+"/events", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("event: %s, want 200", resp.Status)
		}
	}
	if !k.waitFor(2, 10*time.Second) {
		t.Fatalf("%d events received, want 2", k.received())
	}
	st, last, err := k.take()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range st.Latencies {
		if l < time.Second || l > time.Minute {
			t.Errorf("latency %s, want the second since the send time and a little", l)
		}
	}
	if last.IsZero() {
		t.Error("no time of the last receipt")
	}

	resp, err = http.Post(srv.URL+"/events", "application/json", strings.NewReader(`{"data":{"orderId":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, _, err := k.take(); err == nil || !strings.Contains(err.Error(), "no sent field") {
		t.Errorf("an event without its send time: %v, want an error saying so", err)
	}
	k.reset("payments", 0)
	if k.received() != 0 {
		t.Error("reset kept what was received")
	}
}

func TestReplaceSection(t *testing.T) {
	const title = "## Pub/sub"
	for _, tc := range []struct{ name, doc, want string }{
		{"empty", "", "## Pub/sub\nnew\n"},
		{"appended", "# R\n\n## A\na\n", "# R\n\n## A\na\n\n## Pub/sub\nnew\n"},
		{"replaced at the end", "# R\n\n## Pub/sub\nold\n### sub\nold\n", "# R\n\n## Pub/sub\nnew\n"},
		{"replaced in the middle", "# R\n\n## Pub/sub\nold\n\n## B\nb\n", "# R\n\n## Pub/sub\nnew\n\n## B\nb\n"},
		{"a longer title is another section", "## Pub/sub two\nx\n", "## Pub/sub two\nx\n\n## Pub/sub\nnew\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := replaceSection(tc.doc, title, title+"\nnew\n"); got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

// TestPubSubReport: the ratios are of the sidecars' medians over each
// floor's, and the target is judged on p90.
func TestPubSubReport(t *testing.T) {
	sample := func(p90 time.Duration, rate float64) *psSample {
		lat := make([]time.Duration, 10)
		for i := range lat {
			lat[i] = p90 * time.Duration(i+1) / 9
		}
		return &psSample{Deliver: &stats{Latencies: lat, Requests: 10}, Publish: &stats{}, MaxRate: rate, PubCPU: time.Second, SubCPU: time.Second}
	}
	ways := []*psWay{
		{name: "pubsub-sidecars", about: "a", rounds: []*psSample{sample(2*time.Millisecond, 500), sample(3*time.Millisecond, 600), sample(2*time.Millisecond, 700)}},
		{name: "pubsub-floor", about: "b", rounds: []*psSample{sample(time.Millisecond, 1000)}},
		{name: "pubsub-floor-1cpu", about: "c", rounds: []*psSample{sample(2*time.Millisecond, 600)}},
	}
	slow := []slowSample{{QueueDepth: 0, Rate: 100, Delay: time.Second, Published: 1000, Received: 100, RSS: []int64{1 << 20}, Pending: 110, Lag: 790}}
	out := pubsubReport(options{load: load{Rate: 100, Conns: 1, Duration: time.Second}, Rounds: 3}, ways, slow, profile{})
	for _, want := range []string{
		"pubsub-sidecars over pubsub-floor (ratios of medians): p90 **2.00x** (target at most 1.3x: not met)",
		"maximum throughput 0.60x",
		"pubsub-sidecars over pubsub-floor-1cpu (ratios of medians): p90 **1.00x** (target at most 1.3x: met)",
		"| 100 (default) | 1000 | 100 |",
		"| 110 | 790 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report has no %q:\n%s", want, out)
		}
	}
}

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_xadd:calls=200,usec=900,usec_per_call=4.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_xreadgroup:calls=401,usec=2000,usec_per_call=4.99\r\ncmdstat_config|resetstat:calls=1,usec=5\r\ncmdstat_info:calls=3,usec=5\r\n"
	got := parseCommandStats(info)
	if len(got) != 2 || got["XADD"] != 200 || got["XREADGROUP"] != 401 {
		t.Errorf("%v, want XADD 200 and XREADGROUP 401 only", got)
	}
	s := []*psSample{{Deliver: &stats{Requests: 200}, Commands: got}}
	if line := commandsPerEvent(s); line != "XREADGROUP 2.00, XADD 1.00" {
		t.Errorf("per event: %q", line)
	}
}
