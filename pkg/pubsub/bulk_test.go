package pubsub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// bulkFake is a fake broker that takes many messages at once and records
// each call.
type bulkFake struct {
	fakeBroker
	mu    sync.Mutex
	bulks [][]string // the data of each PublishBulk
	alone []string   // the data of each Publish
}

func (b *bulkFake) PublishBulk(_ context.Context, ms []*Message) []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var data []string
	errs := make([]error, len(ms))
	for i, m := range ms {
		data = append(data, string(m.Data))
		switch {
		case m.Topic != "ns-t":
			errs[i] = fmt.Errorf("topic %q, not prefixed", m.Topic)
		case string(m.Data) == "fails":
			errs[i] = errors.New("the broker refused it")
		}
	}
	b.bulks = append(b.bulks, data)
	return errs
}

func (b *bulkFake) Publish(_ context.Context, m *Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.alone = append(b.alone, string(m.Data))
	return nil
}

// PublishBulk runs each message's middleware, then gives the broker the
// first try of every message at once, topic prefixed: one the middleware
// answered itself is not sent, nor one whose try gave up before the
// others came; a try again after goes alone; each message has its own
// answer.
func TestPublishBulkGathersFirstTries(t *testing.T) {
	b := &bulkFake{fakeBroker: *newFake()}
	s := NewService()
	refused := errors.New("refused")
	s.Use(func(ctx context.Context, c *Call, next func(context.Context) error) error {
		switch string(c.Message.Data) {
		case "refused":
			return refused
		case "gave-up":
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return next(ctx)
		case "twice":
			_ = next(ctx)
			return next(ctx)
		}
		return next(ctx)
	})
	if err := s.Add(BrokerConfig{Name: "ps", Broker: b, TopicPrefix: "ns-"}); err != nil {
		t.Fatal(err)
	}
	data := []string{"a", "refused", "gave-up", "twice", "fails", "b"}
	var ms []*Message
	for _, d := range data {
		ms = append(ms, &Message{Topic: "t", Data: []byte(d)})
	}
	ms = append(ms, &Message{Topic: "", Data: []byte("no topic")})
	errs := s.PublishBulk(context.Background(), "ps", ms, nil)
	want := map[int]error{1: refused, 2: context.Canceled, 6: ErrBadTopic}
	for i, err := range errs {
		switch {
		case want[i] != nil && !errors.Is(err, want[i]):
			t.Errorf("%s: %v; want %v", ms[i].Data, err, want[i])
		case i == 4 && err == nil:
			t.Errorf("fails: no error; want the broker's")
		case want[i] == nil && i != 4 && err != nil:
			t.Errorf("%s: %v", ms[i].Data, err)
		}
	}
	if got := fmt.Sprint(b.bulks, b.alone); got != "[[a twice fails b]] [twice]" {
		t.Errorf("broker calls %s; want one bulk of the first tries, the second try of twice alone", got)
	}
}
