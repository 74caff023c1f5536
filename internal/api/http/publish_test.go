package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/api"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/pubsubtest"
)

// publishAPI serves the publish route of app "checkout" with a body limit
// of 256 bytes over three brokers: "pubsub", "scoped" (allowedTopics
// orders) and "down" (its server unreachable).
func publishAPI(t *testing.T) (http.Handler, *pubsubtest.Recorder) {
	t.Helper()
	svc := pubsub.NewService()
	t.Cleanup(func() { _ = svc.Close() })
	rec := &pubsubtest.Recorder{}
	for _, c := range []pubsub.BrokerConfig{
		{Name: "pubsub", Broker: rec},
		{Name: "scoped", Broker: &pubsubtest.Recorder{}, Access: pubsub.ParseAccess(map[string]string{"allowedTopics": "orders"}, "checkout")},
		{Name: "down", Broker: &pubsubtest.Recorder{Err: errors.New("redis at 127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused")}},
	} {
		if err := svc.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	r := NewRouter(nil)
	r.Add(PublishRoutes(api.Publisher{PubSub: svc, AppID: "checkout"}, 256)...)
	return r, rec
}

// The publish API's answers, as daprd's: 204 once the broker holds the
// event, daprd's codes and statuses for each refusal (but for a cloud
// event body that is not one: 400, daprd 500), and clear 4xx for what
// daprd takes (bad topic names, bad methods).
func TestPublishAnswers(t *testing.T) {
	h, rec := publishAPI(t)
	for _, c := range []struct {
		name, method, target, body string
		contentType                string
		status                     int
		code                       string // errorCode; "" for 204
		says                       string // in the message
	}{
		{"json", "POST", "/v1.0/publish/pubsub/orders", `{"a":1}`, "application/json", 204, "", ""},
		{"put", "PUT", "/v1.0/publish/pubsub/orders", `x`, "", 204, "", ""},
		{"unknown pubsub", "POST", "/v1.0/publish/nope/orders", `x`, "", 404, "ERR_PUBSUB_NOT_FOUND", `"nope"`},
		{"unknown pubsub, no topic", "POST", "/v1.0/publish/nope/", `x`, "", 404, "ERR_PUBSUB_NOT_FOUND", `"nope"`},
		{"no pubsub name", "POST", "/v1.0/publish//orders", `x`, "", 404, "ERR_PUBSUB_EMPTY", "pubsub name is empty"},
		{"no topic", "POST", "/v1.0/publish/pubsub/", `x`, "", 404, "ERR_TOPIC_NAME_EMPTY", "topic is empty"},
		{"no topic, no slash", "POST", "/v1.0/publish/pubsub", `x`, "", 404, "ERR_TOPIC_NAME_EMPTY", "topic is empty"},
		{"control character", "POST", "/v1.0/publish/pubsub/a%0Ab", `x`, "", 400, "ERR_MALFORMED_REQUEST", "control character"},
		{"not UTF-8", "POST", "/v1.0/publish/pubsub/a%FFb", `x`, "", 400, "ERR_MALFORMED_REQUEST", "UTF-8"},
		{"bad rawPayload", "POST", "/v1.0/publish/pubsub/orders?metadata.rawPayload=maybe", `x`, "", 400, "ERR_PUBSUB_REQUEST_METADATA", "rawPayload"},
		{"bad ttl", "POST", "/v1.0/publish/pubsub/orders?metadata.ttlInSeconds=0", `x`, "", 400, "ERR_PUBSUB_REQUEST_METADATA", "ttlInSeconds"},
		{"bad query", "POST", "/v1.0/publish/pubsub/orders?metadata.ttlInSeconds=1;x", `x`, "", 400, "ERR_PUBSUB_REQUEST_METADATA", "query"},
		{"not a cloud event", "POST", "/v1.0/publish/pubsub/orders", `[1]`, "application/cloudevents+json", 400, "ERR_PUBSUB_CLOUD_EVENTS_SER", "JSON object"},
		{"forbidden", "POST", "/v1.0/publish/scoped/payments", `x`, "", 403, "ERR_PUBSUB_FORBIDDEN", "allowedTopics"},
		{"allowed", "POST", "/v1.0/publish/scoped/orders", `x`, "", 204, "", ""},
		{"broker down", "POST", "/v1.0/publish/down/orders", `x`, "", 500, "ERR_PUBSUB_PUBLISH_MESSAGE", "127.0.0.1:1"},
		{"too large", "POST", "/v1.0/publish/pubsub/orders", strings.Repeat("x", 257), "", 413, "ERR_BODY_TOO_LARGE", "256 bytes"},
		{"get", "GET", "/v1.0/publish/pubsub/orders", ``, "", 405, "ERR_MALFORMED_REQUEST", "POST"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, c.target, strings.NewReader(c.body))
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			rec.Take()
			if w.Code != c.status {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body, c.status)
			}
			if c.code == "" {
				if w.Body.Len() != 0 {
					t.Errorf("body %q", w.Body)
				}
				return
			}
			var e struct{ ErrorCode, Message string }
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.ErrorCode != c.code || !strings.Contains(e.Message, c.says) {
				t.Errorf("body %s; want %s saying %q", w.Body, c.code, c.says)
			}
		})
	}
}

// What is published: the envelope daprd writes around the body, the
// app's own cloud event completed, a raw payload as it is, the topic from
// the rest of the path, and the request's metadata beside the event.
func TestPublishEvent(t *testing.T) {
	h, rec := publishAPI(t)
	publish := func(target, contentType, body string) (pubsub.Message, map[string]any) {
		t.Helper()
		req := httptest.NewRequest("POST", target, strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		msgs := rec.Take()
		if w.Code != 204 || len(msgs) != 1 {
			t.Fatalf("%s: %d %s, %d events published", target, w.Code, w.Body, len(msgs))
		}
		var ce map[string]any
		_ = json.Unmarshal(msgs[0].Data, &ce)
		return msgs[0], ce
	}

	m, ce := publish("/v1.0/publish/pubsub/orders/new?metadata.partitionKey=k1", "application/json", `{"orderId":7}`)
	if m.Topic != "orders/new" || m.Metadata["partitionKey"] != "k1" {
		t.Errorf("published to %q with metadata %v", m.Topic, m.Metadata)
	}
	for k, want := range map[string]any{"source": "checkout", "type": "com.dapr.event.sent", "specversion": "1.0",
		"datacontenttype": "application/json", "topic": "orders/new", "pubsubname": "pubsub"} {
		if ce[k] != want {
			t.Errorf("%s = %v, want %v", k, ce[k], want)
		}
	}
	if d, _ := json.Marshal(ce["data"]); string(d) != `{"orderId":7}` || ce["id"] == "" || ce["time"] == nil {
		t.Errorf("envelope %v", ce)
	}

	if m, _ := publish("/v1.0/publish/pubsub/a%2Fb", "", "x"); m.Topic != "a/b" {
		t.Errorf("escaped topic published to %q", m.Topic)
	}
	if _, ce := publish("/v1.0/publish/pubsub/orders", "", "plain"); ce["data"] != "plain" || ce["datacontenttype"] != "text/plain" {
		t.Errorf("no Content-Type: %v", ce)
	}
	if _, ce := publish("/v1.0/publish/pubsub/orders", "application/octet-stream", "\x00\x01"); ce["data_base64"] != "AAE=" {
		t.Errorf("binary: %v", ce)
	}
	if _, ce := publish("/v1.0/publish/pubsub/orders", "application/cloudevents+json", `{"id":"mine","source":"app","type":"t","specversion":"1.0","data":1,"topic":"other"}`); ce["id"] != "mine" || ce["source"] != "app" || ce["topic"] != "orders" || ce["data"] != 1.0 {
		t.Errorf("the app's cloud event: %v", ce)
	}
	if m, _ := publish("/v1.0/publish/pubsub/orders?metadata.rawPayload=true", "application/json", `{"raw":true}`); string(m.Data) != `{"raw":true}` {
		t.Errorf("raw payload published as %s", m.Data)
	}
	if _, ce := publish("/v1.0/publish/pubsub/orders?metadata.cloudevent.id=given&metadata.ttlInSeconds=60", "", "x"); ce["id"] != "given" || ce["expiration"] == nil {
		t.Errorf("overrides and ttl: %v", ce)
	}
}
