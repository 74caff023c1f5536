package subscribe

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// streamApp is the app's end of a stream: it records each event sent and
// answers as answer says (nil: it does not answer).
type streamApp struct {
	mu     sync.Mutex
	got    []*runtimev1pb.TopicEventRequest
	events chan *runtimev1pb.TopicEventRequest
}

func newStreamApp() *streamApp {
	return &streamApp{events: make(chan *runtimev1pb.TopicEventRequest, 100)}
}

func (a *streamApp) send(ev *runtimev1pb.TopicEventRequest) error {
	a.mu.Lock()
	a.got = append(a.got, ev)
	a.mu.Unlock()
	a.events <- ev
	return nil
}

func (a *streamApp) next(t *testing.T) *runtimev1pb.TopicEventRequest {
	t.Helper()
	select {
	case ev := <-a.events:
		return ev
	case <-time.After(wait):
		t.Fatalf("no event on the stream after %s", wait)
		panic("unreachable")
	}
}

func answer(status runtimev1pb.TopicEventResponse_TopicEventResponseStatus) *runtimev1pb.TopicEventResponse {
	return &runtimev1pb.TopicEventResponse{Status: status}
}

// A streaming subscription: events go out on the stream; an event is
// acknowledged only on the app's SUCCESS or DROP (DROP to the dead-letter
// topic), RETRY sends it again; the metadata lists it as STREAMING; a
// second subscription to its topic is refused; when the stream ends,
// the event it was sent and not answered stays pending and the next
// stream to the topic gets it.
func TestStream(t *testing.T) {
	e := newEnv(t, "", envOptions{noBroker: false})
	cfg := e.config()
	cfg.HTTP, cfg.GRPC, cfg.Health = nil, nil, nil // no app: streams only
	s, _ := e.run(cfg)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	app := newStreamApp()
	st, err := s.Stream(ctx, StreamRequest{PubsubName: "pubsub", Topic: "orders", DeadLetterTopic: "dead"}, app.send)
	if err != nil {
		t.Fatal(err)
	}
	if subs := s.Subscriptions(); len(subs) != 1 || subs[0].Type != Streaming || subs[0].Topic != "orders" || subs[0].DeadLetterTopic != "dead" {
		t.Errorf("Subscriptions: %+v", subs)
	}
	if _, err := s.Stream(ctx, StreamRequest{PubsubName: "pubsub", Topic: "orders"}, app.send); !errors.Is(err, ErrSubscribed) {
		t.Errorf("a second stream to the topic: %v, want ErrSubscribed", err)
	}
	for _, c := range []struct {
		req  StreamRequest
		says string
	}{
		{StreamRequest{Topic: "orders"}, "pubsub_name"},
		{StreamRequest{PubsubName: "pubsub"}, "topic is empty"},
		{StreamRequest{PubsubName: "nope", Topic: "x"}, "not configured"},
		{StreamRequest{PubsubName: "pubsub", Topic: "x", Metadata: map[string]string{"rawPayload": "maybe"}}, "rawPayload"},
	} {
		if _, err := s.Stream(ctx, c.req, app.send); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Stream(%+v): %v, want an error saying %q", c.req, err, c.says)
		}
	}

	e.publish("orders", `"a"`, nil)
	ev := app.next(t)
	if ev.GetId() != `"a"` || ev.GetTopic() != "orders" || ev.GetPubsubName() != "pubsub" || string(ev.GetData()) != `"a"` {
		t.Errorf("event %v", ev)
	}
	if err := st.Answer(ev.GetId(), answer(runtimev1pb.TopicEventResponse_RETRY)); err != nil {
		t.Fatal(err)
	}
	ev = app.next(t) // sent again
	if err := st.Answer(ev.GetId(), answer(runtimev1pb.TopicEventResponse_SUCCESS)); err != nil {
		t.Fatal(err)
	}
	if r := e.broker.next(t); r.err != nil {
		t.Errorf("after SUCCESS: %v, want acknowledged", r.err)
	}
	if err := st.Answer(ev.GetId(), answer(runtimev1pb.TopicEventResponse_SUCCESS)); err == nil {
		t.Errorf("an answer for an event answered already was taken")
	}

	e.publish("orders", `"b"`, nil)
	ev = app.next(t)
	_ = st.Answer(ev.GetId(), answer(runtimev1pb.TopicEventResponse_DROP))
	if r := e.broker.next(t); r.err != nil {
		t.Errorf("after DROP: %v, want acknowledged", r.err)
	}
	if dead := e.broker.publishedTo("dead"); len(dead) != 1 {
		t.Errorf("dead-letter topic holds %d events after a DROP, want 1", len(dead))
	}

	// The stream ends with an event sent and not answered: it stays
	// pending, and a new stream to the topic gets it.
	e.publish("orders", `"c"`, nil)
	app.next(t)
	st.Close()
	if r := e.broker.next(t); r.err == nil {
		t.Fatalf("an event not answered when its stream ended was acknowledged")
	}
	<-st.Done()
	app2 := newStreamApp()
	var st2 *Stream
	deadline := time.Now().Add(wait)
	for {
		if st2, err = s.Stream(ctx, StreamRequest{PubsubName: "pubsub", Topic: "orders"}, app2.send); err == nil {
			break
		}
		if !errors.Is(err, ErrSubscribed) || time.Now().After(deadline) {
			t.Fatalf("a new stream after the first ended: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ev = app2.next(t)
	if ev.GetId() != `"c"` {
		t.Errorf("the new stream got %q first, want the pending %q", ev.GetId(), `"c"`)
	}
	_ = st2.Answer(ev.GetId(), answer(runtimev1pb.TopicEventResponse_SUCCESS))
	for {
		r := e.broker.next(t)
		if r.err == nil && r.data != "" {
			break
		}
	}
	_ = pubsub.Success
}
