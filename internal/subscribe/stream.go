package subscribe

import (
	"context"
	"errors"
	"fmt"
	"sync"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Streaming is a subscription the app holds open over the gRPC API
// (SubscribeTopicEventsAlpha1): it lives as long as its stream.
const Streaming Type = "STREAMING"

// ErrSubscribed is the error of a streaming subscription to a topic the
// app is already subscribed to (by a stream, its own subscriptions or a
// Subscription resource), as daprd refuses it.
var ErrSubscribed = errors.New("already subscribed")

// StreamRequest is the first message of a streaming subscription.
type StreamRequest struct {
	PubsubName, Topic string
	DeadLetterTopic   string
	Metadata          map[string]string
}

// Stream is a streaming subscription: the events of its topic are sent
// to the app on its stream, one TopicEventRequest each, and an event is
// acknowledged to the broker only once the app answered it (Answer) as
// the rules of any subscription say. When the stream ends the events it
// held but for which no answer came stay pending, for the next
// subscription to the topic.
type Stream struct {
	s      *Subscriber
	sb     *sub
	send   func(*runtimev1pb.TopicEventRequest) error
	sendMu sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	waiting map[string]chan *runtimev1pb.TopicEventResponse // by event id
}

// Stream starts a streaming subscription whose events go out through
// send (called by one goroutine at a time) until ctx ends or Close is
// called. It returns once the broker's subscription is set up. The error
// names what is wrong: a bad request, an unknown pub/sub
// (pubsub.ErrNotFound), a topic the component's access refuses
// (pubsub.ErrForbidden), or a topic the app is subscribed to already
// (ErrSubscribed).
func (s *Subscriber) Stream(ctx context.Context, r StreamRequest, send func(*runtimev1pb.TopicEventRequest) error) (*Stream, error) {
	if r.PubsubName == "" {
		return nil, fmt.Errorf("the initial request names no pubsub_name")
	}
	sb, err := prepare(Subscription{PubsubName: r.PubsubName, Topic: r.Topic, DeadLetterTopic: r.DeadLetterTopic,
		Metadata: r.Metadata, Rules: []Rule{{Path: "/"}}, Type: Streaming})
	if err != nil {
		return nil, err
	}
	sb.Rules = nil // the metadata API lists no route for it
	st := &Stream{s: s, sb: sb, send: send, waiting: map[string]chan *runtimev1pb.TopicEventResponse{}}
	sb.stream = st
	st.ctx, st.cancel = context.WithCancel(ctx)

	s.mu.Lock()
	taken := containsTopic(s.streams, sb) || containsTopic(s.activeLocked(), sb)
	if !taken {
		s.streams = append(s.streams, sb)
	}
	s.mu.Unlock()
	if taken {
		st.cancel()
		return nil, fmt.Errorf("%s: the app is %w to it (a stream, its own subscriptions or a Subscription resource)", sb.Subscription, ErrSubscribed)
	}
	if !s.flight.enter() {
		st.end()
		return nil, fmt.Errorf("%s: %w", sb.Subscription, errStopped)
	}
	defer s.flight.leave()
	err = s.cfg.PubSub.Subscribe(st.ctx, r.PubsubName, pubsub.Subscription{Topic: r.Topic, Metadata: r.Metadata}, st.handler())
	if err != nil {
		st.end()
		return nil, err
	}
	context.AfterFunc(st.ctx, st.end)
	s.log.Info("stream subscribed", "pubsub", r.PubsubName, "topic", r.Topic)
	return st, nil
}

func containsTopic(subs []*sub, sb *sub) bool {
	for _, o := range subs {
		if o.sameTopic(sb) {
			return true
		}
	}
	return false
}

// end forgets the stream (its topic may be subscribed again).
func (st *Stream) end() {
	st.cancel()
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	for i, o := range st.s.streams {
		if o == st.sb {
			st.s.streams = append(st.s.streams[:i:i], st.s.streams[i+1:]...)
			break
		}
	}
}

// Close ends the subscription: nothing more is sent, and what has not been
// answered stays pending in the broker.
func (st *Stream) Close() { st.cancel() }

// Done is closed when the subscription ends.
func (st *Stream) Done() <-chan struct{} { return st.ctx.Done() }

// Answer gives the app's answer to the event id. An id nothing waits for
// (answered already, or its delivery given up) is an error, which the
// stream's reader may log: it changes nothing.
func (st *Stream) Answer(id string, resp *runtimev1pb.TopicEventResponse) error {
	st.mu.Lock()
	ch, ok := st.waiting[id]
	delete(st.waiting, id)
	st.mu.Unlock()
	if !ok {
		return fmt.Errorf("no event %q awaits an answer on this stream", id)
	}
	ch <- resp
	return nil
}

// handler is the broker's handler of the stream's deliveries: as any
// subscription's, but ended with the stream (an event in flight then
// stays pending).
func (st *Stream) handler() pubsub.Handler {
	h := st.s.handler(st.ctx, st.sb)
	return func(ctx context.Context, d *pubsub.Delivery) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(st.ctx, cancel)()
		return h(ctx, d)
	}
}

// call returns the call that sends ev on the stream and waits for the
// app's answer.
func (st *Stream) call(ev pubsub.Event, path string) (func(context.Context) outcome, error) {
	req, err := topicEvent(ev, st.sb, path)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) outcome {
		ch := make(chan *runtimev1pb.TopicEventResponse, 1)
		st.mu.Lock()
		if _, dup := st.waiting[req.GetId()]; dup {
			st.mu.Unlock()
			return outcome{status: pubsub.Retry, err: fmt.Errorf("an event with id %q awaits the app's answer already on this stream", req.GetId())}
		}
		st.waiting[req.GetId()] = ch
		st.mu.Unlock()
		defer func() {
			st.mu.Lock()
			delete(st.waiting, req.GetId())
			st.mu.Unlock()
		}()
		st.sendMu.Lock()
		err := st.send(req)
		st.sendMu.Unlock()
		if err != nil {
			return outcome{status: pubsub.Retry, err: fmt.Errorf("sending the event on the stream: %w", err)}
		}
		select {
		case resp := <-ch:
			ps := pubsub.StatusFromGRPC(0, int32(resp.GetStatus()))
			o := outcome{status: ps, reached: true, deadLetter: ps == pubsub.Drop}
			if ps != pubsub.Success {
				o.err = fmt.Errorf("the stream answered %s", resp.GetStatus())
			}
			return o
		case <-ctx.Done():
			return outcome{status: pubsub.Retry, reached: true, err: fmt.Errorf("no answer on the stream: %w", context.Cause(ctx))}
		}
	}, nil
}
