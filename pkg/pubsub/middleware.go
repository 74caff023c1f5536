package pubsub

import (
	"context"
	"maps"
)

// Call is one publish as Middleware sees it: the broker, the message
// exactly as the broker receives it, and whether its topic is one a metric
// may name. Middleware reads a Call and must not change it.
type Call struct {
	Broker  BrokerConfig // the broker called, as added
	Message *Message
	// Declared reports whether Message.Topic is a topic this app
	// subscribes to on the broker, or one its component names
	// (allowedTopics, protectedTopics). Any other topic is the caller's
	// choice and unbounded: metrics must not label with it.
	Declared bool
}

// Middleware runs around every publish of a Service (the app's, and the
// sidecar's own to dead-letter topics). It may act before and after next,
// which runs the rest of the chain, then checks the topic against the
// broker's Access and publishes; next returns the error as it is (not yet
// wrapped with the broker's name). It may call next again for a new try,
// one call at a time, or not at all, answering with an error of its own.
type Middleware func(ctx context.Context, c *Call, next func(context.Context) error) error

// Use adds middleware around every publish; the first given is the
// outermost, and nil ones are skipped. Call it before serving.
func (s *Service) Use(mw ...Middleware) {
	for _, m := range mw {
		if m != nil {
			s.mw = append(s.mw, m)
		}
	}
}

// call runs do, the publish c, inside the middleware.
func (s *Service) call(ctx context.Context, c *Call, do func(context.Context) error) error {
	return s.through(ctx, 0, c, do)
}

func (s *Service) through(ctx context.Context, i int, c *Call, do func(context.Context) error) error {
	if i == len(s.mw) {
		return do(ctx)
	}
	return s.mw[i](ctx, c, func(ctx context.Context) error { return s.through(ctx, i+1, c, do) })
}

// declared reports whether topic is declared on the broker n (see
// Call.Declared).
func (s *Service) declared(n *named, topic string) bool {
	if _, ok := (*s.topics.Load())[n.Name][topic]; ok {
		return true
	}
	for _, t := range n.Access.Allowed {
		if t == topic {
			return true
		}
	}
	for _, t := range n.Access.Protected {
		if t == topic {
			return true
		}
	}
	return false
}

// subscribed counts a subscription to topic on the broker called name
// (by +1 or -1). s.mu is held.
func (s *Service) subscribed(name, topic string, by int) {
	cur := *s.topics.Load()
	next := maps.Clone(cur)
	byTopic := maps.Clone(cur[name])
	if byTopic == nil {
		byTopic = map[string]int{}
	}
	byTopic[topic] += by
	if byTopic[topic] <= 0 {
		delete(byTopic, topic)
	}
	next[name] = byTopic
	s.topics.Store(&next)
}

// Held is what the brokers that are Holders hold, by broker name and
// topic, and whether each topic is declared (see Call.Declared).
func (s *Service) Held(each func(name, topic string, declared bool, n int)) {
	for _, n := range *s.brokers.Load() {
		h, ok := n.Broker.(Holder)
		if !ok {
			continue
		}
		for topic, count := range h.Held() {
			each(n.Name, topic, s.declared(n, topic), count)
		}
	}
}
