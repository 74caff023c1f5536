package pubsub

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Event is a delivered event as the subscriber's app receives it.
//
// Its envelope is read in two steps: ReadEvent checks that the whole of
// it is JSON and an object, and splits it into its top-level fields, each
// still JSON (the few a delivery always reads, id, expiration and the
// trace context, are read from those alone); CloudEvent decodes the whole
// envelope, once, only for what needs it (routing rules, a gRPC or bulk
// delivery). An HTTP delivery so never decodes the event's data.
type Event struct {
	// Data is the body of an HTTP delivery (application/cloudevents+json):
	// the bytes published, or for a raw subscription the envelope built
	// around them.
	Data  []byte
	top   map[string]json.RawMessage // the envelope's fields, nil when whole is decoded already
	whole *decoded                   // shared by copies of the Event
}

// decoded is an envelope decoded whole, once.
type decoded struct {
	once sync.Once
	ce   map[string]any
}

// EventOf is the event whose envelope is ce, and data its JSON.
func EventOf(ce map[string]any, data []byte) Event {
	e := Event{Data: data, whole: &decoded{ce: ce}}
	e.whole.once.Do(func() {})
	return e
}

// CloudEvent is the envelope, decoded as daprd decodes it (numbers are
// float64): routing rules and the gRPC and bulk deliveries read it. It is
// decoded on first use, and shared by copies of e; callers must not
// change it.
func (e Event) CloudEvent() map[string]any {
	if e.whole == nil {
		return nil
	}
	e.whole.once.Do(func() {
		// ReadEvent checked that Data is a JSON object.
		_ = json.Unmarshal(e.Data, &e.whole.ce)
	})
	return e.whole.ce
}

// Field is the value of the envelope's top-level field name, decoded as
// CloudEvent decodes it, and whether the envelope has it.
func (e Event) Field(name string) (any, bool) {
	if e.top == nil {
		v, ok := e.CloudEvent()[name]
		return v, ok
	}
	raw, ok := e.top[name]
	if !ok {
		return nil, false
	}
	var v any
	_ = json.Unmarshal(raw, &v) // part of a JSON object ReadEvent checked
	return v, true
}

// ReadEvent reads data, delivered on topic of pubsubName, for a
// subscription that is raw (its metadata says rawPayload) or not, as daprd
// does: a raw subscription's event is wrapped in a new envelope (a new id,
// datacontenttype application/octet-stream, the bytes in data_base64);
// otherwise the data must be a CloudEvent, and anything but a JSON object
// is an error wrapping ErrBadCloudEvent (daprd leaves it pending and
// delivers it again, forever, unless the subscription has a dead-letter
// topic). The whole of data is checked; only its top-level fields are
// split, the rest is decoded when CloudEvent is first called.
func ReadEvent(data []byte, topic, pubsubName string, raw bool) (Event, error) {
	if raw {
		ce := map[string]any{
			"id":              NewUUID(),
			"specversion":     SpecVersion,
			"datacontenttype": "application/octet-stream",
			"source":          DefaultSource,
			"type":            EventType,
			"topic":           topic,
			"pubsubname":      pubsubName,
			"data_base64":     base64.StdEncoding.EncodeToString(data),
		}
		b, err := json.Marshal(ce)
		if err != nil {
			return Event{}, fmt.Errorf("encoding the envelope of a raw event: %w", err)
		}
		return EventOf(ce, b), nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return Event{}, fmt.Errorf("an event on topic %q of %q is not a JSON object (publish it with rawPayload and subscribe with rawPayload): %w", topic, pubsubName, ErrBadCloudEvent)
	}
	return Event{Data: data, top: top, whole: &decoded{}}, nil
}

// ID is the event's id, or "" when it has none.
func (e Event) ID() string {
	v, _ := e.Field("id")
	id, _ := v.(string)
	return id
}

// Expired reports whether the event's expiration (RFC 3339) is before now,
// as daprd decides it: an event without one, or with one it cannot read,
// never expires. An expired event is dropped, not delivered.
func (e Event) Expired(now time.Time) bool {
	v, ok := e.Field("expiration")
	if !ok || v == "" {
		return false
	}
	s, ok := v.(string)
	if !ok {
		return false
	}
	t, err := time.Parse(time.RFC3339, s)
	return err == nil && t.Before(now)
}
