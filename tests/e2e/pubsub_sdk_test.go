package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tandem-run/tandem/internal/release"
	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

var sdksubBuild struct {
	once sync.Once
	bin  string
	err  error
}

// sdksubBin builds tests/e2e/sdksub once, for the tests that use it.
func sdksubBin(t *testing.T) string {
	t.Helper()
	b := &sdksubBuild
	b.once.Do(func() {
		b.bin = filepath.Join(binDir, "sdksub")
		cmd := release.Command(context.Background(), "", "github.com/tandem-run/tandem/tests/e2e/sdksub", b.bin, "")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("building sdksub: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

// getJSON decodes what GET url answers into a T.
func getJSON[T any](t *testing.T, url string) T {
	t.Helper()
	resp, b := do(t, "GET", url, nil, nil)
	var v T
	if err := json.Unmarshal(b, &v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s (%v)", url, resp.StatusCode, b, err)
	}
	return v
}

// waitJSON polls GET url until done holds for its answer, and returns it.
func waitJSON[T any](t *testing.T, url, what string, done func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := getJSON[T](t, url)
		if done(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; have %+v", what, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metricsOf returns s's Prometheus metrics, as text.
func metricsOf(t *testing.T, s *sidecar) string {
	t.Helper()
	var md struct{ Ports struct{ Metrics int } }
	_, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	if err := json.Unmarshal(b, &md); err != nil || md.Ports.Metrics == 0 {
		t.Fatalf("metadata: %s %v", b, err)
	}
	resp, err := http.Get("http://127.0.0.1:" + itoa(md.Ports.Metrics) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return string(text)
}

// waitMetrics waits until s's metrics have each of lines.
func waitMetrics(t *testing.T, s *sidecar, lines ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		text := metricsOf(t, s)
		missing := ""
		for _, l := range lines {
			if !strings.Contains(text, l+"\n") {
				missing = l
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never had %s", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sdkDelivery is what a handler of sdksub got.
type sdkDelivery struct {
	Handler, ID, Topic, PubsubName, Type, Source, ContentType string
	Data                                                      []byte
}

// jsonField returns data's field k, as JSON ("" when data is not JSON).
func jsonField(data []byte, k string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return ""
	}
	return string(m[k])
}

// Subscribers written with the Dapr Go SDK's service/http and service/grpc
// (AddTopicEventHandler, tests/e2e/sdksub), events published with the SDK
// client's PublishEvent, on pubsub.redis (a real redis-server, publisher
// and subscriber sidecars apart) and pubsub.in-memory (one sidecar): each
// handler gets its events with their data, topic, pubsub name, id and
// source; a handler answering retry=true gets its event again, then takes
// it; one answering an error without retry (the SDK's DROP) does not; the
// SDK's routing rules (Match, Priority) send each event to its handler; a
// raw payload comes as it was published; a publish to an unknown pub/sub
// gives the SDK daprd's error.
func TestGoSDKPubSub(t *testing.T) {
	bin := sdksubBin(t)
	for _, tc := range []struct{ proto, broker string }{
		{"http", "pubsub.redis"}, {"grpc", "pubsub.redis"}, {"http", "pubsub.in-memory"}, {"grpc", "pubsub.in-memory"},
	} {
		t.Run(tc.proto+"/"+tc.broker, func(t *testing.T) {
			if testing.Short() && tc.broker == "pubsub.in-memory" {
				t.Skip("-short: pubsub.redis is enough")
			}
			w := newWorld(t)
			files := map[string][]byte{"pubsub.yaml": resources.PubSubYAML("pubsub", tc.broker)}
			if tc.broker == "pubsub.redis" {
				srv := redisserver.Start(t)
				files["pubsub.yaml"] = resources.PubSubYAML("pubsub", tc.broker, "redisHost", srv.Addr)
			}
			recordPort := proc.For(t).FreePort()
			appPort, _ := w.appBin("sdksub-"+tc.proto, bin, "APP_PROTOCOL="+tc.proto, "RECORD_PORT="+itoa(recordPort))
			sub, _ := w.pubsubSidecarApp("sdk-subscriber", appPort, files, "--app-protocol", tc.proto)
			pub := sub // pubsub.in-memory: one sidecar
			if tc.broker == "pubsub.redis" {
				pub, _ = w.pubsubSidecar("sdk-publisher", files)
			}
			waitMetadata(t, sub, `"topic":"raw"`)
			c := sdkClient(t, pub)
			ctx := ctxT(t)

			type order struct {
				N      string `json:"n"`
				Answer string `json:"answer,omitempty"`
			}
			for _, o := range []order{{N: "plain"}, {N: "retry", Answer: "RETRY_ONCE"}, {N: "error", Answer: "ERROR"}} {
				if err := c.PublishEvent(ctx, "pubsub", "orders", o); err != nil {
					t.Fatalf("PublishEvent %v: %v", o, err)
				}
			}
			for _, amount := range []int{500, 50, 5} {
				if err := c.PublishEvent(ctx, "pubsub", "payments", map[string]int{"amount": amount}); err != nil {
					t.Fatalf("PublishEvent payment %d: %v", amount, err)
				}
			}
			raw := []byte("\x00raw \xff bytes")
			if err := c.PublishEvent(ctx, "pubsub", "raw", raw, dapr.PublishEventWithMetadata(map[string]string{"kind": "raw"}),
				dapr.PublishEventWithRawPayload()); err != nil {
				t.Fatalf("PublishEvent raw: %v", err)
			}
			err := c.PublishEvent(ctx, "nosuchpubsub", "orders", order{N: "lost"})
			wantStatus(t, err, codes.InvalidArgument, "DAPR_PUBSUB_NOT_FOUND", "nosuchpubsub")

			url := "http://127.0.0.1:" + itoa(recordPort) + "/deliveries"
			count := func(ds []sdkDelivery, handler, n string) int {
				c := 0
				for _, d := range ds {
					if d.Handler == handler && (jsonField(d.Data, "n") == n || jsonField(d.Data, "amount") == n || n == "") {
						c++
					}
				}
				return c
			}
			ds := waitJSON(t, url, "every event, the retried one twice", func(ds []sdkDelivery) bool {
				return count(ds, "orders", `"plain"`) >= 1 && count(ds, "orders", `"retry"`) >= 2 && count(ds, "orders", `"error"`) >= 1 &&
					count(ds, "big", "") >= 1 && count(ds, "medium", "") >= 1 && count(ds, "payments", "") >= 1 && count(ds, "raw", "") >= 1
			})
			// The sidecar read the SDK's answer to the error as DROP, and
			// its retry=true as RETRY, once.
			waitMetrics(t, sub,
				`tandem_pubsub_delivered_total{app_id="sdk-subscriber",pubsub="pubsub",status="drop",topic="orders"} 1`,
				`tandem_pubsub_delivered_total{app_id="sdk-subscriber",pubsub="pubsub",status="retry",topic="orders"} 1`,
				`tandem_pubsub_delivered_total{app_id="sdk-subscriber",pubsub="pubsub",status="success",topic="orders"} 2`)
			ds = getJSON[[]sdkDelivery](t, url)
			if n := count(ds, "orders", `"error"`); n != 1 {
				t.Errorf("the event whose handler failed without retry came %d times; want 1", n)
			}
			ids := map[string]string{}
			for _, d := range ds {
				switch d.Handler {
				case "orders":
					n := jsonField(d.Data, "n")
					if d.Topic != "orders" || d.PubsubName != "pubsub" || d.Source != pub.appID || d.Type != "com.dapr.event.sent" ||
						d.ContentType != "application/json" || !uuidRE.MatchString(d.ID) || n == "" {
						t.Errorf("orders event %+v (data %s)", d, d.Data)
					}
					if id, ok := ids[n]; ok && id != d.ID {
						t.Errorf("event %s came again with id %s, first %s", n, d.ID, id)
					}
					ids[n] = d.ID
					var got, want any
					_ = json.Unmarshal(d.Data, &got)
					b, _ := json.Marshal(map[string]string{"n": "plain"})
					if n == `"plain"` && (json.Unmarshal(b, &want) != nil || !reflect.DeepEqual(got, want)) {
						t.Errorf("data %s; want %s", d.Data, b)
					}
				case "big", "medium", "payments":
					want := map[string]string{"500": "big", "50": "medium", "5": "payments"}[jsonField(d.Data, "amount")]
					if d.Handler != want || d.Topic != "payments" {
						t.Errorf("payment %s (topic %s) went to %s; want %s", d.Data, d.Topic, d.Handler, want)
					}
				case "raw":
					if string(d.Data) != string(raw) || d.Topic != "raw" || d.PubsubName != "pubsub" {
						t.Errorf("raw payload: %q on %s/%s; want %q", d.Data, d.PubsubName, d.Topic, raw)
					}
				}
			}
			if t.Failed() {
				t.Logf("deliveries: %+v", ds)
			}
		})
	}
}

// grpcDelivery is what grpcapp's raw-proto subscriber recorded.
type grpcDelivery struct {
	Topic, Path, ID, Source, Type, ContentType, Data string
	Extensions                                       map[string]any
	MD                                               map[string]string
}

// A gRPC subscriber written on the raw proto (grpcapp with RECORD_PORT:
// ListTopicSubscriptions, OnTopicEvent), on pubsub.redis with tracing on:
// SUCCESS is taken; RETRY and then SUCCESS, or an Internal error and then
// SUCCESS, come twice; DROP once, and to the dead-letter topic; RETRY each
// time goes to the dead-letter topic when the tries run out; Unimplemented
// is taken as DROP, without the dead-letter topic. Events are published
// over HTTP and with the Go SDK's PublishEvent. Each delivery carries
// the publisher's trace (its traceparent's trace id), the publish metadata
// and pubsubname as gRPC metadata, and the envelope's other fields as
// extensions.
func TestGRPCSubscriberRawProto(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	conf := filepath.Join(t.TempDir(), "traced.yaml")
	if err := os.WriteFile(conf, tracedConfig, 0o644); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr)}
	recordPort := proc.For(t).FreePort()
	appPort, _ := w.appBin("grpcapp-topics", grpcappBin, "RECORD_PORT="+itoa(recordPort))
	sub, _ := w.pubsubSidecarApp("raw-subscriber", appPort, files, "--app-protocol", "grpc", "--config", conf)
	pub, _ := w.pubsubSidecar("raw-publisher", files, "--config", conf)
	waitMetadata(t, sub, `"topic":"plain"`)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	publish := func(topic, n, answer string) {
		t.Helper()
		resp, b := do(t, "POST", pub.url+"/v1.0/publish/pubsub/"+topic+"?metadata.kind=order",
			strings.NewReader(fmt.Sprintf(`{"n":%q,"answer":%q}`, n, answer)),
			http.Header{"Content-Type": {"application/json"}, "Traceparent": {"00-" + traceID + "-00f067aa0ba902b7-01"}})
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("publish %s: %d %s", n, resp.StatusCode, b)
		}
	}
	publish("events", "ok", "")
	publish("events", "retry-once", "RETRY_ONCE")
	publish("events", "error-once", "ERROR_ONCE")
	publish("events", "drop", "DROP")
	publish("events", "unimplemented", "UNIMPLEMENTED")
	publish("plain", "unimplemented", "UNIMPLEMENTED")
	publish("events", "retry", "RETRY")
	// The Go SDK's PublishEvent with metadata, in a trace of the caller's.
	sdkCtx := metadata.AppendToOutgoingContext(ctxT(t), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if err := sdkClient(t, pub).PublishEvent(sdkCtx, "pubsub", "plain", map[string]string{"n": "sdk"},
		dapr.PublishEventWithMetadata(map[string]string{"kind": "order"})); err != nil {
		t.Fatalf("SDK PublishEvent: %v", err)
	}

	count := func(ds []grpcDelivery, topic, n string) int {
		c := 0
		for _, d := range ds {
			if d.Topic == topic && jsonField([]byte(d.Data), "n") == `"`+n+`"` {
				c++
			}
		}
		return c
	}
	url := "http://127.0.0.1:" + itoa(recordPort) + "/deliveries"
	waitJSON(t, url, "every event, the retried ones again, and the dead letters", func(ds []grpcDelivery) bool {
		return count(ds, "events", "ok") >= 1 && count(ds, "events", "retry-once") >= 2 && count(ds, "events", "error-once") >= 2 &&
			count(ds, "events", "drop") >= 1 && count(ds, "events", "unimplemented") >= 1 && count(ds, "plain", "unimplemented") >= 1 && count(ds, "plain", "sdk") >= 1 &&
			count(ds, "events", "retry") >= 3 && count(ds, "events-dead", "drop") >= 1 && count(ds, "events-dead", "retry") >= 1
	})
	waitMetrics(t, sub,
		`tandem_pubsub_dead_lettered_total{app_id="raw-subscriber",pubsub="pubsub",topic="events"} 2`,
		`tandem_pubsub_delivered_total{app_id="raw-subscriber",pubsub="pubsub",status="drop",topic="plain"} 1`,
		`tandem_pubsub_delivered_total{app_id="raw-subscriber",pubsub="pubsub",status="drop",topic="events"} 2`)
	ds := getJSON[[]grpcDelivery](t, url)
	for topic, want := range map[string]map[string]int{
		"events":      {"ok": 1, "retry-once": 2, "error-once": 2, "drop": 1, "unimplemented": 1, "retry": 3},
		"events-dead": {"drop": 1, "retry": 1, "ok": 0, "retry-once": 0, "error-once": 0, "unimplemented": 0},
		"plain":       {"unimplemented": 1, "sdk": 1},
	} {
		for n, c := range want {
			if got := count(ds, topic, n); got != c {
				t.Errorf("%s: event %s came %d times; want %d", topic, n, got, c)
			}
		}
	}
	for _, d := range ds {
		tp := d.MD["traceparent"]
		if parts := strings.Split(tp, "-"); len(parts) != 4 || parts[1] != traceID {
			t.Errorf("%s %s: traceparent %q is not of the publisher's trace %s", d.Topic, d.Data, tp, traceID)
		}
		if ext, _ := d.Extensions["traceparent"].(string); !strings.Contains(ext, traceID) {
			t.Errorf("%s %s: the envelope's traceparent %q (extensions %v)", d.Topic, d.Data, ext, d.Extensions)
		}
		if d.MD["kind"] != "order" || d.MD["pubsubname"] != "pubsub" || d.Path != "" || d.Source != "raw-publisher" ||
			d.ContentType != "application/json" || !uuidRE.MatchString(d.ID) || d.Extensions["topic"] == nil {
			t.Errorf("delivery %+v", d)
		}
	}
}
