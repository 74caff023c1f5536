package subscribe

import (
	"fmt"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Type is where a subscription comes from, as daprd's metadata API names
// it.
type Type string

// The types of subscription.
const (
	// Programmatic: the app's own, from GET /dapr/subscribe or
	// ListTopicSubscriptions.
	Programmatic Type = "PROGRAMMATIC"
	// Declarative: a Subscription resource.
	Declarative Type = "DECLARATIVE"
)

// Subscription is one of the app's subscriptions: the events of Topic on
// the pub/sub component PubsubName go to the app.
type Subscription struct {
	PubsubName string
	Topic      string
	// Rules route each event: the first whose match holds gives the path
	// it is delivered to. The last usually has no match: the default
	// route, or the subscription's single route. An event no rule matches
	// is not delivered, and acknowledged (as daprd).
	Rules []Rule
	// DeadLetterTopic, when set, is the topic of the same component that
	// an event goes to when the app cannot take it: retries exhausted, an
	// event that is not a CloudEvent, a match that cannot be evaluated; it
	// is then acknowledged. The app's DROP, an event that expired and one
	// no rule matches go there too (as daprd), if it can take them.
	DeadLetterTopic string
	// Metadata goes to the component's Subscribe; the subscriber reads
	// rawPayload: "true" delivers what was published, whatever it is,
	// inside an envelope of its own.
	Metadata map[string]string
	// BulkSubscribe, when enabled, delivers the events in batches: see
	// BulkSubscribe.
	BulkSubscribe BulkSubscribe
	Type          Type
}

// String names the subscription in messages.
func (s Subscription) String() string {
	return fmt.Sprintf("subscription to topic %q of pubsub %q", s.Topic, s.PubsubName)
}

// sub is a subscription, checked and ready to run.
type sub struct {
	Subscription
	routes *Routes
	raw    bool
	stream *Stream // a streaming subscription's; nil for the others
	bulk   *bulker // a bulk subscription's; nil for the others
}

// Check checks s as the subscriber runs it and returns the first problem
// found: no pubsubname, a bad topic or dead-letter topic, a rawPayload
// that is not a boolean, a bad deliverToAllReplicas or replicaTimeout, no
// route, a rule that does not compile, or a negative bound of
// bulkSubscribe.
func (s Subscription) Check() error {
	_, err := prepare(s)
	return err
}

// prepare checks s and compiles its rules.
func prepare(s Subscription) (*sub, error) {
	if s.PubsubName == "" {
		return nil, fmt.Errorf("%s: pubsubname is empty", s)
	}
	if err := pubsub.CheckTopic(s.Topic); err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	if s.DeadLetterTopic != "" {
		if err := pubsub.CheckTopic(s.DeadLetterTopic); err != nil {
			return nil, fmt.Errorf("%s: deadLetterTopic: %w", s, err)
		}
		if s.DeadLetterTopic == s.Topic {
			return nil, fmt.Errorf("%s: deadLetterTopic is the topic itself", s)
		}
	}
	raw, err := pubsub.RawPayload(s.Metadata)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	if _, _, err := pubsub.AllReplicas(s.Metadata); err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	if len(s.Rules) == 0 {
		return nil, fmt.Errorf("%s: it has no route", s)
	}
	routes, err := CompileRoutes(s.Rules)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	if err := s.BulkSubscribe.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	sb := &sub{Subscription: s, routes: routes, raw: raw}
	if s.BulkSubscribe.Enabled {
		sb.bulk = newBulker(s.BulkSubscribe)
	}
	return sb, nil
}

// sameTopic tells whether o is of the same pubsub and topic as s.
func (s *sub) sameTopic(o *sub) bool {
	return s.PubsubName == o.PubsubName && s.Topic == o.Topic
}
