package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/api"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/pubsubtest"
)

// pickyBroker refuses the events whose data holds "refuse", as a broker
// failing some writes of a batch would; it keeps the rest.
type pickyBroker struct{ pubsubtest.Recorder }

func (b *pickyBroker) Publish(ctx context.Context, m *pubsub.Message) error {
	if bytes.Contains(m.Data, []byte("refuse")) {
		return errors.New("redis: OOM command not allowed when used memory > 'maxmemory'")
	}
	return b.Recorder.Publish(ctx, m)
}

func bulkAPI(t *testing.T) (http.Handler, *pickyBroker) {
	t.Helper()
	svc := pubsub.NewService()
	t.Cleanup(func() { _ = svc.Close() })
	b := &pickyBroker{}
	for _, c := range []pubsub.BrokerConfig{
		{Name: "pubsub", Broker: b},
		{Name: "scoped", Broker: &pubsubtest.Recorder{}, Access: pubsub.ParseAccess(map[string]string{"allowedTopics": "orders"}, "checkout")},
	} {
		if err := svc.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	r := NewRouter(nil)
	r.Add(PublishRoutes(api.Publisher{PubSub: svc, AppID: "checkout"}, 1<<20)...)
	return r, b
}

// Each entry of a bulk publish is its own CloudEvent, its event converted
// by its contentType as daprd converts it; request metadata applies to
// every entry, an entry's own overrides it.
func TestBulkPublishEntries(t *testing.T) {
	h, b := bulkAPI(t)
	body := `[
	  {"entryId": "1", "event": {"orderId": 1,  "items": [ "a" ]}, "contentType": "application/json"},
	  {"entryId": "2", "event": "plain text", "contentType": "text/plain"},
	  {"entryId": "3", "event": "AAEC", "contentType": "application/octet-stream"},
	  {"entryId": "4", "event": {"specversion":"1.0","id":"own-4","source":"shop","type":"order","data":"x"}, "contentType": "application/cloudevents+json"},
	  {"entryId": "5", "event": "raw bytes", "contentType": "text/plain", "metadata": {"rawPayload": "true"}}
	]`
	req := httptest.NewRequest("POST", "/v1.0-alpha1/publish/bulk/pubsub/orders?metadata.ttlInSeconds=60", strings.NewReader(body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusNoContent {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	msgs := b.Take()
	if len(msgs) != 5 {
		t.Fatalf("%d events published, want 5", len(msgs))
	}
	byData := map[string]map[string]any{}
	var ids []string
	for _, m := range msgs {
		if string(m.Data) == "raw bytes" {
			if m.Metadata["rawPayload"] != "true" || m.Metadata["ttlInSeconds"] != "60" {
				t.Errorf("raw entry's metadata %v: want its own over the request's", m.Metadata)
			}
			continue
		}
		var ce map[string]any
		if err := json.Unmarshal(m.Data, &ce); err != nil {
			t.Fatalf("event %q is not JSON: %v", m.Data, err)
		}
		if ce["topic"] != "orders" || ce["pubsubname"] != "pubsub" || ce["expiration"] == nil {
			t.Errorf("envelope %v: want topic, pubsubname and the request's ttl", ce)
		}
		ids = append(ids, fmt.Sprint(ce["id"]))
		d, _ := json.Marshal(ce["data"])
		byData[string(d)+" "+fmt.Sprint(ce["data_base64"])] = ce
	}
	for key, ct := range map[string]string{
		`{"items":["a"],"orderId":1} <nil>`: "application/json",
		`"plain text" <nil>`:                "text/plain",
		`null AAEC`:                         "application/octet-stream",
		`"x" <nil>`:                         "",
	} {
		ce, ok := byData[key]
		if !ok {
			t.Errorf("no event with data %s; got %v", key, byData)
			continue
		}
		if ct != "" && ce["datacontenttype"] != ct {
			t.Errorf("data %s: datacontenttype %v, want %s", key, ce["datacontenttype"], ct)
		}
	}
	if ce := byData[`"x" <nil>`]; ce != nil && (ce["id"] != "own-4" || ce["source"] != "shop") {
		t.Errorf("the app's own cloud event was not kept: %v", ce)
	}
	sort.Strings(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			t.Errorf("two events share id %s", ids[i])
		}
	}
}

// Partial failure: 500 with daprd's body naming each failed entry and its
// cause; the other entries are published.
func TestBulkPublishPartialFailure(t *testing.T) {
	h, b := bulkAPI(t)
	body := `[{"entryId":"a","event":"ok","contentType":"text/plain"},
	  {"entryId":"b","event":"refuse me","contentType":"text/plain"},
	  {"entryId":"c","event":"ok too","contentType":"text/plain"},
	  {"entryId":"d","event":"refuse me too","contentType":"text/plain"}]`
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/v1.0-alpha1/publish/bulk/pubsub/orders", strings.NewReader(body)))
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d %s, want 500", w.Code, w.Body)
	}
	if !strings.Contains(w.Body.String(), `"entryID":"b"`) {
		t.Errorf("body %s: the failed entries do not carry entryID, the JavaScript SDK's name", w.Body)
	}
	var res struct {
		FailedEntries []struct{ EntryID, Error string } `json:"failedEntries"`
		ErrorCode     string                            `json:"errorCode"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.ErrorCode != "ERR_PUBSUB_PUBLISH_MESSAGE" || len(res.FailedEntries) != 2 ||
		res.FailedEntries[0].EntryID != "b" || res.FailedEntries[1].EntryID != "d" ||
		!strings.Contains(res.FailedEntries[0].Error, "OOM") {
		t.Errorf("body %s", w.Body)
	}
	if got := len(b.Take()); got != 2 {
		t.Errorf("%d events published, want the 2 that did not fail", got)
	}
}

// What is refused as a whole publishes nothing: each case a clear 4xx with
// daprd's code (ERR_PUBSUB_EVENTS_SER and its reasons for the entries).
func TestBulkPublishRefusals(t *testing.T) {
	h, b := bulkAPI(t)
	many := make([]string, api.MaxBulkEntries+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"entryId":"%d","event":1,"contentType":"application/json"}`, i)
	}
	for _, c := range []struct {
		name, target, body string
		status             int
		code, says         string
	}{
		{"not json", "/v1.0-alpha1/publish/bulk/pubsub/orders", `{`, 400, "ERR_PUBSUB_EVENTS_SER", "JSON array"},
		{"an object", "/v1.0-alpha1/publish/bulk/pubsub/orders", `{"entryId":"1"}`, 400, "ERR_PUBSUB_EVENTS_SER", "JSON array"},
		{"trailing", "/v1.0-alpha1/publish/bulk/pubsub/orders", `[] []`, 400, "ERR_PUBSUB_EVENTS_SER", "more than one"},
		{"no entry id", "/v1.0-alpha1/publish/bulk/pubsub/orders", `[{"event":1,"contentType":"application/json"}]`, 400, "ERR_PUBSUB_EVENTS_SER", "entry 0 has no entryId"},
		{"duplicate id", "/v1.0-alpha1/publish/bulk/pubsub/orders", `[{"entryId":"x","event":1,"contentType":"application/json"},{"entryId":"x","event":2,"contentType":"application/json"}]`, 400, "ERR_PUBSUB_EVENTS_SER", `"x" is in the request twice`},
		{"no content type", "/v1.0-alpha1/publish/bulk/pubsub/orders", `[{"entryId":"1","event":1}]`, 400, "ERR_PUBSUB_EVENTS_SER", "contentType is empty"},
		{"text not a string", "/v1.0-alpha1/publish/bulk/pubsub/orders", `[{"entryId":"1","event":{"a":1},"contentType":"text/plain"}]`, 400, "ERR_PUBSUB_EVENTS_SER", "JSON string"},
		{"binary not base64", "/v1.0-alpha1/publish/bulk/pubsub/orders", `[{"entryId":"1","event":"%%%","contentType":"application/octet-stream"}]`, 400, "ERR_PUBSUB_EVENTS_SER", "base64"},
		{"unknown content type", "/v1.0-alpha1/publish/bulk/pubsub/orders", `[{"entryId":"1","event":"x","contentType":"image/png"}]`, 400, "ERR_PUBSUB_EVENTS_SER", "image/png"},
		{"no event", "/v1.0-alpha1/publish/bulk/pubsub/orders", `[{"entryId":"1","contentType":"text/plain"}]`, 400, "ERR_PUBSUB_EVENTS_SER", "no event"},
		{"not a cloud event", "/v1.0-alpha1/publish/bulk/pubsub/orders", `[{"entryId":"1","event":[1],"contentType":"application/cloudevents+json"}]`, 400, "ERR_PUBSUB_CLOUD_EVENTS_SER", `entry "1"`},
		{"too many", "/v1.0-alpha1/publish/bulk/pubsub/orders", "[" + strings.Join(many, ",") + "]", 400, "ERR_PUBSUB_EVENTS_SER", "at most 10000"},
		{"unknown pubsub", "/v1.0-alpha1/publish/bulk/nope/orders", `[]`, 404, "ERR_PUBSUB_NOT_FOUND", `"nope"`},
		{"no topic", "/v1.0-alpha1/publish/bulk/pubsub/", `[]`, 404, "ERR_TOPIC_NAME_EMPTY", "topic is empty"},
		{"bad rawPayload", "/v1.0-alpha1/publish/bulk/pubsub/orders?metadata.rawPayload=maybe", `[]`, 400, "ERR_PUBSUB_REQUEST_METADATA", "rawPayload"},
		{"forbidden", "/v1.0-alpha1/publish/bulk/scoped/payments", `[{"entryId":"1","event":"x","contentType":"text/plain"}]`, 403, "ERR_PUBSUB_FORBIDDEN", "allowedTopics"},
		{"too large", "/v1.0-alpha1/publish/bulk/pubsub/orders", `["` + strings.Repeat("x", 1<<20) + `"]`, 413, "ERR_BODY_TOO_LARGE", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("POST", c.target, strings.NewReader(c.body)))
			if w.Code != c.status {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body, c.status)
			}
			var e struct{ ErrorCode, Message string }
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.ErrorCode != c.code || !strings.Contains(e.Message, c.says) {
				t.Errorf("body %s; want %s saying %q", w.Body, c.code, c.says)
			}
			if n := len(b.Take()); n != 0 {
				t.Errorf("%d events published by a refused request", n)
			}
		})
	}
	// An empty array publishes nothing, and is not an error.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/v1.0-alpha1/publish/bulk/pubsub/orders", strings.NewReader(`[]`)))
	if w.Code != http.StatusNoContent {
		t.Errorf("empty bulk: %d %s", w.Code, w.Body)
	}
}
