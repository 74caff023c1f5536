package pubsub

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestReadEvent(t *testing.T) {
	published, err := Envelope(Publication{AppID: "a", PubsubName: "ps", Topic: "t", ContentType: "application/json", Data: []byte(`{"n":1}`), ID: "id-1"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := ReadEvent(published, "t", "ps", false)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Data) != string(published) || e.ID() != "id-1" || e.CloudEvent()["data"].(map[string]any)["n"] != 1.0 {
		t.Errorf("ReadEvent = %+v; want the envelope as published", e)
	}

	raw := []byte{0, 0xff, 'x'}
	e, err = ReadEvent(raw, "t", "ps", true)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := ReadEvent(e.Data, "t", "ps", false)
	got, _ := base64.StdEncoding.DecodeString(again.CloudEvent()["data_base64"].(string))
	if string(got) != string(raw) || again.CloudEvent()["datacontenttype"] != "application/octet-stream" ||
		again.CloudEvent()["topic"] != "t" || again.CloudEvent()["pubsubname"] != "ps" || len(again.ID()) != 36 {
		t.Errorf("raw event = %s; want the bytes in data_base64 of a new envelope", e.Data)
	}

	for _, bad := range []string{"", "not json", "[1]", "null", `{"a":1} trailing`} {
		if _, err := ReadEvent([]byte(bad), "t", "ps", false); !errors.Is(err, ErrBadCloudEvent) {
			t.Errorf("ReadEvent(%q): %v, want ErrBadCloudEvent", bad, err)
		}
	}
}

func TestExpired(t *testing.T) {
	now := time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		expiration any
		want       bool
	}{
		{nil, false},
		{"", false},
		{"2024-07-01T11:59:59Z", true},
		{"2024-07-01T12:00:00Z", false},
		{"2024-07-01T12:00:01Z", false},
		{"2024-07-01T13:59:59+02:00", true},
		{"yesterday", false},
		{12, false},
	} {
		ce := map[string]any{"id": "x"}
		if c.expiration != nil {
			ce["expiration"] = c.expiration
		}
		e := EventOf(ce, nil)
		if got := e.Expired(now); got != c.want {
			t.Errorf("expiration %v: Expired = %v, want %v", c.expiration, got, c.want)
		}
	}
	// An event published with a TTL expires after it.
	b, _ := Envelope(Publication{Data: []byte("x"), Now: now, Metadata: map[string]string{"ttlInSeconds": "60"}})
	e, _ := ReadEvent(b, "t", "p", false)
	if e.Expired(now.Add(59*time.Second)) || !e.Expired(now.Add(61*time.Second)) {
		t.Errorf("an event with ttlInSeconds 60 (%v): want expired after 60 s only", e.CloudEvent()["expiration"])
	}
}

func TestCheckTopic(t *testing.T) {
	for topic, ok := range map[string]bool{"orders": true, "a/b.c-d_e:f": true, "ünïcode": true, "with space": true,
		"": false, "new\nline": false, "tab\t": false, "nul\x00": false, "\xff": false, "del\x7f": false} {
		err := CheckTopic(topic)
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrBadTopic)) {
			t.Errorf("CheckTopic(%q) = %v; want ok %v", topic, err, ok)
		}
	}
}

// Reading an event for an HTTP delivery (its id, expiration and trace
// context) does not decode its data: the allocations do not grow with
// the data's fields. A malformed event is refused all the same, whatever
// part of it is malformed, and CloudEvent decodes the whole as before.
func TestReadEventDecodesDataOnlyOnUse(t *testing.T) {
	fields := make(map[string]any, 500)
	for i := range 500 {
		fields[fmt.Sprint("field", i)] = map[string]any{"n": i, "s": "value"}
	}
	data, _ := json.Marshal(fields)
	ev, err := Envelope(Publication{AppID: "a", PubsubName: "ps", Topic: "t", ContentType: "application/json", Data: data, ID: "id-1",
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", Metadata: map[string]string{"ttlInSeconds": "60"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	allocs := testing.AllocsPerRun(20, func() {
		e, err := ReadEvent(ev, "t", "ps", false)
		if err != nil || e.ID() != "id-1" || e.Expired(now) {
			t.Fatalf("ReadEvent: %v, id %q", err, e.ID())
		}
		if tp, _ := e.Field("traceparent"); tp == "" {
			t.Fatal("no traceparent")
		}
	})
	t.Logf("%.0f allocations", allocs)
	// The envelope's dozen fields; its data's 500 maps are thousands.
	if allocs > 100 {
		t.Errorf("reading an event of 500 data fields for an HTTP delivery: %.0f allocations; want its data left undecoded", allocs)
	}
	e, _ := ReadEvent(ev, "t", "ps", false)
	var whole map[string]any
	_ = json.Unmarshal(ev, &whole)
	if !reflect.DeepEqual(e.CloudEvent(), whole) {
		t.Error("CloudEvent differs from the envelope decoded whole")
	}
	if v, ok := e.Field("missing"); ok || v != nil {
		t.Errorf("Field(missing) = %v, %v", v, ok)
	}
	for _, bad := range []string{`{"id":"x","data":{"a":[1,2}}`, `{"id":"x",}`, `{"id":"x"`, `"a string"`, `1`, `{"id":"x"}{}`, `{"data":{"a":tru}}`} {
		if _, err := ReadEvent([]byte(bad), "t", "ps", false); !errors.Is(err, ErrBadCloudEvent) {
			t.Errorf("ReadEvent(%q): %v, want ErrBadCloudEvent", bad, err)
		}
	}
}
