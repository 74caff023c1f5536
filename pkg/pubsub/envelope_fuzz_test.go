package pubsub

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// FuzzEnvelope: whatever the request, Envelope does not panic; what it
// publishes is a JSON object the subscriber's side reads, with the topic
// and pubsub name given; and a body that is not JSON comes back byte for
// byte from data or data_base64.
func FuzzEnvelope(f *testing.F) {
	f.Add("text/plain", []byte("hello"), "ttlInSeconds", "60")
	f.Add("application/json", []byte(`{"a":[1,2.5e10,null]}`), "cloudevent.id", "x")
	f.Add("application/cloudevents+json", []byte(`{"id":"1","data":"x"}`), "rawPayload", "false")
	f.Add("application/octet-stream", []byte{0, 0xff}, "", "")
	f.Add("", []byte{'a', 0xc3}, "CloudEvent.Source", "")
	f.Fuzz(func(t *testing.T, contentType string, data []byte, mdKey, mdValue string) {
		p := Publication{AppID: "app", PubsubName: "ps", Topic: "t", ContentType: contentType, Data: data, Metadata: map[string]string{mdKey: mdValue}}
		out, err := Envelope(p)
		if err != nil {
			return
		}
		if raw, _ := RawPayload(p.Metadata); raw {
			if !bytes.Equal(out, data) {
				t.Fatalf("raw payload published as %q", out)
			}
			return
		}
		e, err := ReadEvent(out, "t", "ps", false)
		if err != nil {
			t.Fatalf("published %q, which the subscriber cannot read: %v", out, err)
		}
		if e.CloudEvent()["topic"] != "t" || e.CloudEvent()["pubsubname"] != "ps" {
			t.Fatalf("published %s: topic and pubsubname are not the request's", out)
		}
		if isContentType(contentType, "application/json") || isContentType(contentType, ContentTypeCloudEvent) {
			return
		}
		var got []byte
		if s, ok := e.CloudEvent()["data_base64"].(string); ok {
			got, err = base64.StdEncoding.DecodeString(s)
		} else {
			var s string
			err = json.Unmarshal(mustField(t, out, "data"), &s)
			got = []byte(s)
		}
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("body %q published as %s: its bytes are lost (%v)", data, out, err)
		}
	})
}

func mustField(t *testing.T, ce []byte, name string) json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(ce, &m); err != nil {
		t.Fatal(err)
	}
	return m[name]
}
