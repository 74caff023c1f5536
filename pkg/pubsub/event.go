package pubsub

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// Event is a delivered event as the subscriber's app receives it.
type Event struct {
	// CloudEvent is the envelope, decoded as daprd decodes it (numbers are
	// float64): routing rules and the gRPC delivery read it.
	CloudEvent map[string]any
	// Data is the body of an HTTP delivery (application/cloudevents+json):
	// the bytes published, or for a raw subscription the envelope built
	// around them.
	Data []byte
}

// ReadEvent reads data, delivered on topic of pubsubName, for a
// subscription that is raw (its metadata says rawPayload) or not, as daprd
// does: a raw subscription's event is wrapped in a new envelope (a new id,
// datacontenttype application/octet-stream, the bytes in data_base64);
// otherwise the data must be a CloudEvent, and anything but a JSON object
// is an error wrapping ErrBadCloudEvent (daprd leaves it pending and
// delivers it again, forever, unless the subscription has a dead-letter
// topic).
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
		return Event{CloudEvent: ce, Data: b}, nil
	}
	var ce map[string]any
	if err := json.Unmarshal(data, &ce); err != nil || ce == nil {
		return Event{}, fmt.Errorf("an event on topic %q of %q is not a JSON object (publish it with rawPayload and subscribe with rawPayload): %w", topic, pubsubName, ErrBadCloudEvent)
	}
	return Event{CloudEvent: ce, Data: data}, nil
}

// ID is the event's id, or "" when it has none.
func (e Event) ID() string {
	id, _ := e.CloudEvent["id"].(string)
	return id
}

// Expired reports whether the event's expiration (RFC 3339) is before now,
// as daprd decides it: an event without one, or with one it cannot read,
// never expires. An expired event is dropped, not delivered.
func (e Event) Expired(now time.Time) bool {
	v, ok := e.CloudEvent["expiration"]
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
