package pubsub

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/envelope")

// envelopeCases are publish requests and, in testdata/envelope/<name>.json,
// the exact bytes published for them (daprd 1.14 writes the same bytes but
// for the id and time, which these cases fix).
var envelopeCases = []struct {
	name string
	p    Publication
}{
	{"json", Publication{ContentType: "application/json", Data: []byte(`{"orderId": 7, "items": ["a", "b"], "note": null}`)}},
	{"json-with-parameters", Publication{ContentType: "Application/JSON; charset=utf-8", Data: []byte(`[1, 2.50, 12345678901234567890123]`)}},
	{"json-html-characters", Publication{ContentType: "application/json", Data: []byte(`{"q": "<a href='x'>&</a>"}`)}},
	{"json-first-value-only", Publication{ContentType: "application/json", Data: []byte(`{"a": 1} trailing`)}},
	{"json-that-does-not-parse", Publication{ContentType: "application/json", Data: []byte(`{"a": `)}},
	{"json-empty", Publication{ContentType: "application/json"}},
	{"no-content-type", Publication{Data: []byte("hello")}},
	{"text", Publication{ContentType: "text/plain; charset=utf-8", Data: []byte("line 1\nline \"2\"")}},
	{"xml", Publication{ContentType: "application/xml", Data: []byte("<a>1</a>")}},
	{"form", Publication{ContentType: "application/x-www-form-urlencoded", Data: []byte("a=1&b=2")}},
	{"octet-stream", Publication{ContentType: "application/octet-stream", Data: []byte{0, 1, 2, 0xff, 0xfe}}},
	{"protobuf", Publication{ContentType: "application/x-protobuf", Data: []byte{0x0a, 0x03, 'a', 'b', 'c'}}},
	{"text-not-utf8", Publication{ContentType: "text/plain", Data: []byte{'a', 0xff, 'b'}}},
	{"trace-context", Publication{Data: []byte("x"), TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "congo=t61rcWkgMzE"}},
	{"overrides", Publication{Data: []byte("x"), TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Metadata: map[string]string{
		"cloudevent.id": "my-id", "CloudEvent.Source": "my-source", "cloudevent.type": "my.type",
		"cloudevent.traceid": "my-traceid", "cloudevent.tracestate": "k=v", "other": "kept out",
	}}},
	{"override-traceparent-wins", Publication{Data: []byte("x"), Metadata: map[string]string{
		"cloudevent.traceid": "my-traceid", "cloudevent.traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}}},
	{"overrides-empty-are-defaults", Publication{Data: []byte("x"), Metadata: map[string]string{"cloudevent.id": "", "cloudevent.source": "", "cloudevent.type": ""}}},
	{"ttl-seconds", Publication{Data: []byte("x"), Metadata: map[string]string{"ttlInSeconds": "90"}}},
	{"ttl-duration-alias", Publication{Data: []byte("x"), Metadata: map[string]string{"TTL": "1h30m"}}},
	{"cloudevent-minimal", Publication{ContentType: "application/cloudevents+json", Data: []byte(`{"id": "app-id-1", "data": {"n": 1.50}}`),
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "congo=t61rcWkgMzE"}},
	{"cloudevent-complete", Publication{ContentType: "application/cloudevents+json; charset=utf-8", Data: []byte(`{
		"id": "e1", "source": "src", "type": "t", "specversion": "1.0", "time": "2020-01-01T00:00:00Z",
		"traceid": "app-trace", "tracestate": "", "topic": "not-this", "pubsubname": "nor-this",
		"datacontenttype": "text/plain", "data": "d", "extension": 1}`),
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Metadata:    map[string]string{"cloudevent.id": "overrides do not apply to an app's envelope"}}},
	{"cloudevent-traceparent-without-traceid", Publication{ContentType: "application/cloudevents+json", Data: []byte(`{"traceparent": "app-parent", "source": null}`),
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
	{"cloudevent-ttl", Publication{ContentType: "application/cloudevents+json", Data: []byte(`{"expiration": "2000-01-01T00:00:00Z"}`), Metadata: map[string]string{"ttlInSeconds": "60"}}},
	{"raw-payload", Publication{ContentType: "application/json", Data: []byte("\x00 any bytes {"), Metadata: map[string]string{"rawPayload": "true", "ttlInSeconds": "60"}}},
	{"raw-payload-false", Publication{Data: []byte("x"), Metadata: map[string]string{"rawPayload": "false"}}},
}

// TestEnvelopeGolden: the bytes published for each case are its golden
// file's. go test -update rewrites them; a golden file without its case
// fails.
func TestEnvelopeGolden(t *testing.T) {
	want := map[string]bool{}
	for _, c := range envelopeCases {
		path := filepath.Join("testdata", "envelope", c.name+".json")
		want[path] = true
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			p.AppID, p.PubsubName, p.Topic = "checkout", "orderpubsub", "orders"
			p.Now = time.Date(2024, 7, 1, 12, 30, 45, 999, time.UTC)
			p.ID = "5f4dcc3b-5aa7-4c5e-8f0e-2f1d2b1e7a10"
			got, err := Envelope(p)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			golden, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if !bytes.Equal(got, golden) {
				t.Errorf("published\n%s\nwant (%s)\n%s", got, path, golden)
			}
		})
	}
	files, _ := filepath.Glob("testdata/envelope/*.json")
	for _, f := range files {
		if !want[f] {
			t.Errorf("%s has no case in envelopeCases: remove it", f)
		}
	}
}

func TestEnvelopeNewIDAndTime(t *testing.T) {
	a, err := Envelope(Publication{Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Envelope(Publication{Data: []byte("x")})
	ea, _ := ReadEvent(a, "t", "p", false)
	eb, _ := ReadEvent(b, "t", "p", false)
	if len(ea.ID()) != 36 || ea.ID() == eb.ID() {
		t.Errorf("ids %q and %q: want two different UUIDs", ea.ID(), eb.ID())
	}
	if ts, err := time.Parse(time.RFC3339, ea.CloudEvent()["time"].(string)); err != nil || time.Since(ts) > time.Minute {
		t.Errorf("time %v, %v: want now", ea.CloudEvent()["time"], err)
	}
}

func TestEnvelopeErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		p    Publication
		want error
	}{
		{"rawPayload not a boolean", Publication{Metadata: map[string]string{"rawPayload": "yes"}}, ErrBadMetadata},
		{"ttlInSeconds not a number", Publication{Metadata: map[string]string{"ttlInSeconds": "soon"}}, ErrBadMetadata},
		{"ttlInSeconds 0", Publication{Metadata: map[string]string{"ttlInSeconds": "0"}}, ErrBadMetadata},
		{"ttlInSeconds 0s", Publication{Metadata: map[string]string{"ttlInSeconds": "0s"}}, ErrBadMetadata},
		{"ttlInSeconds negative duration", Publication{Metadata: map[string]string{"ttlInSeconds": "-5s"}}, ErrBadMetadata},
		{"ttlInSeconds negative", Publication{Metadata: map[string]string{"ttlInSeconds": "-1"}}, ErrBadMetadata},
		{"ttl alias not a number", Publication{Metadata: map[string]string{"ttl": "1 hour"}}, ErrBadMetadata},
		{"cloud event not JSON", Publication{ContentType: "application/cloudevents+json", Data: []byte("hello")}, ErrBadCloudEvent},
		{"cloud event an array", Publication{ContentType: "application/cloudevents+json", Data: []byte("[1]")}, ErrBadCloudEvent},
		{"cloud event null", Publication{ContentType: "application/cloudevents+json", Data: []byte("null")}, ErrBadCloudEvent},
		{"cloud event empty", Publication{ContentType: "application/cloudevents+json"}, ErrBadCloudEvent},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Envelope(c.p); !errors.Is(err, c.want) {
				t.Errorf("Envelope: %v, want %v", err, c.want)
			}
		})
	}
}

func TestTTL(t *testing.T) {
	for _, c := range []struct {
		md   map[string]string
		want time.Duration
		has  bool
	}{
		{nil, 0, false},
		{map[string]string{"ttlInSeconds": ""}, 0, false},
		{map[string]string{"ttlInSeconds": "10"}, 10 * time.Second, true},
		{map[string]string{"TTLINSECONDS": "10"}, 10 * time.Second, true},
		{map[string]string{"ttlInSeconds": "1500ms"}, 1500 * time.Millisecond, true},
		{map[string]string{"ttlInSeconds": "9223372036854775807"}, 1<<63 - 1, true},
		{map[string]string{"ttl": "5", "ttlInSeconds": "10"}, 5 * time.Second, true},
	} {
		got, has, err := TTL(c.md)
		if err != nil || got != c.want || has != c.has {
			t.Errorf("TTL(%v) = %v, %v, %v; want %v, %v", c.md, got, has, err, c.want, c.has)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for v, want := range map[string]time.Duration{"60s": time.Minute, "60000": time.Minute, "1m30s": 90 * time.Second, "1": time.Millisecond, "250ms": 250 * time.Millisecond} {
		if got, err := ParseDuration("processingTimeout", v); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "0", "0s", "-1", "-5s", "soon", "1.5", "60 s", "9223372036854775807"} {
		if _, err := ParseDuration("processingTimeout", v); err == nil || !strings.Contains(err.Error(), "processingTimeout") {
			t.Errorf("ParseDuration(%q): %v; want an error naming the field", v, err)
		}
	}
}
