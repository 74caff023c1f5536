package pubsubtest

import (
	"context"
	"errors"
	"sync"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Recorder is a stand-in broker for the tests of what publishes (the
// APIs): it keeps the messages published to it, or refuses each with Err
// as a broker that cannot be reached does. It delivers nothing.
type Recorder struct {
	Err error

	mu   sync.Mutex
	msgs []pubsub.Message
}

func (r *Recorder) Publish(_ context.Context, m *pubsub.Message) error {
	if r.Err != nil {
		return r.Err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, *m)
	return nil
}

// Subscribe refuses: a Recorder delivers nothing.
func (r *Recorder) Subscribe(context.Context, pubsub.Subscription, pubsub.Handler) error {
	return errors.New("pubsubtest.Recorder delivers nothing")
}

// Take returns the messages published since the last Take.
func (r *Recorder) Take() []pubsub.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.msgs
	r.msgs = nil
	return out
}
