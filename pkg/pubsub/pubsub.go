// Package pubsub is publish and subscribe, written once for the HTTP and
// gRPC adapters: the Broker contract that pub/sub components implement
// (pkg/pubsub/redis, pkg/pubsub/memory), the CloudEvents envelope daprd
// writes and reads, what an app's answer to a delivery means, and a Service
// of named brokers that hot reload may replace.
//
// Delivery is at least once: a broker acknowledges an event only when its
// Handler returned nil, which the caller does only once the app answered
// SUCCESS or DROP or the event reached a dead-letter topic. Anything else
// leaves the event with the broker, which delivers it again later. An event
// may so be delivered more than once; Delivery.Attempt says when the
// broker knows it.
package pubsub

import (
	"context"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Errors of this package, its brokers and the Service, wrapped with
// context.
var (
	// ErrNotFound: no pub/sub component has that name.
	ErrNotFound = errors.New("pubsub not found")
	// ErrClosed: the broker is closed (replaced, removed or shut down).
	ErrClosed = errors.New("pubsub closed")
	// ErrBadTopic: a topic name that is empty, not UTF-8 or holds a
	// control character.
	ErrBadTopic = errors.New("bad topic name")
	// ErrBadMetadata: publish metadata with a bad value (rawPayload,
	// ttlInSeconds).
	ErrBadMetadata = errors.New("bad pubsub metadata")
	// ErrBadCloudEvent: an event that should be a CloudEvent (a body
	// published as application/cloudevents+json, or an event delivered to a
	// subscription that is not raw) is not a JSON object.
	ErrBadCloudEvent = errors.New("not a cloud event")
	// ErrForbidden: the component's topic access (Access) does not let
	// this app publish or subscribe to the topic.
	ErrForbidden = errors.New("topic not allowed")
)

// Message is an event as a broker carries it.
type Message struct {
	Topic string
	// Data is what was published: the CloudEvent JSON, or the app's bytes
	// as they were when published with rawPayload.
	Data []byte
	// Metadata is the publish request's metadata, carried with the event
	// (daprd keeps it beside the data, and reads rawPayload from it).
	Metadata map[string]string
}

// Delivery is one delivery of an event to a Handler.
type Delivery struct {
	Message
	// ID is the broker's id of the event (on Redis, the stream entry id).
	// A redelivery has the same ID.
	ID string
	// Attempt is which delivery this is: 1 the first, more for a
	// redelivery (so a duplicate the app may see); 0 when the broker does
	// not know.
	Attempt int
}

// Handler handles one delivery. It returns nil to acknowledge the event:
// the broker then forgets it. Any error leaves the event with the broker,
// which delivers it again later. Handlers run concurrently, up to the
// broker's bound.
//
// Its ctx is not canceled when the subscription's ctx ends (a delivery in
// flight finishes); it is when the broker is closed, and the event is then
// delivered again later whatever the handler returns.
type Handler func(ctx context.Context, d *Delivery) error

// Subscription says what to subscribe to.
type Subscription struct {
	Topic string
	// Metadata is the subscription's metadata as the app or the
	// Subscription resource gave it; a broker reads what it knows of it.
	Metadata map[string]string
}

// Broker is a pub/sub component.
type Broker interface {
	// Publish returns nil once the broker holds the event (on Redis, once
	// XADD answered), never when it is only buffered.
	Publish(ctx context.Context, m *Message) error
	// Subscribe starts delivering the events of s.Topic to h and returns
	// once the subscription is set up (on Redis, its consumer group
	// exists), or with why it cannot be. Delivery goes on in the broker's
	// goroutines until ctx ends or the broker is closed. When ctx ends the
	// broker stops reading and starts no new handler; handlers in flight
	// finish and their answer counts; every event not acknowledged stays
	// with the broker, for a later subscription.
	Subscribe(ctx context.Context, s Subscription, h Handler) error
}

// BulkPublisher is a broker that publishes many events at once (on Redis,
// in one round trip). PublishBulk returns one answer per message, in
// order, each as Publish would have answered for it alone.
type BulkPublisher interface {
	PublishBulk(ctx context.Context, ms []*Message) []error
}

// Pinger is a broker that can check that its server answers. A broker
// without it is taken to be ready as soon as it is built (in-memory).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Holder is a broker that can say how many events the sidecar holds of
// each topic: read from the backend and not yet acknowledged, queued for a
// handler or in one. Its topics are those of its subscriptions.
type Holder interface {
	Held() map[string]int
}

// CheckTopic returns an error wrapping ErrBadTopic when topic is empty, is
// not UTF-8 or holds a control character.
func CheckTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("the topic is empty: %w", ErrBadTopic)
	}
	if !utf8.ValidString(topic) {
		return fmt.Errorf("topic %q is not UTF-8: %w", topic, ErrBadTopic)
	}
	for _, r := range topic {
		if unicode.IsControl(r) {
			return fmt.Errorf("topic %q holds a control character: %w", topic, ErrBadTopic)
		}
	}
	return nil
}
