package subscribe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The bounds of reading the app's subscriptions.
const (
	maxSubscribeAnswer = 16 << 20
	readTimeout        = 30 * time.Second
)

// readApp reads the app's own subscriptions once the first pub/sub
// component is there, and adds them. An app that does not answer is asked
// again on the next round; one that answers badly is not: the sidecar goes
// on without its subscriptions, as daprd.
func (s *Subscriber) readApp(ctx context.Context) {
	s.mu.Lock()
	read := s.read
	s.mu.Unlock()
	if read || len(s.cfg.PubSub.Brokers()) == 0 || (s.cfg.HTTP == nil && s.cfg.GRPC == nil) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	from := "GET /dapr/subscribe"
	fetch := s.fetchHTTP
	if s.cfg.GRPC != nil {
		from, fetch = "ListTopicSubscriptions", s.fetchGRPC
	}
	subs, skipped, err := fetch(ctx)
	var na notAnswered
	if errors.As(err, &na) {
		s.log.Warn("the app did not answer for its subscriptions; asking again", "from", from, "in", s.cfg.RetryInterval, "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read = true
	if err != nil {
		s.log.Error("the app's subscriptions are refused; the sidecar goes on without them", "from", from, "err", err)
		return
	}
	for _, err := range skipped {
		s.log.Warn("a subscription of the app is left out", "from", from, "err", err)
	}
	for _, sub := range subs {
		sb, err := prepare(sub) // sift checked it
		if err != nil {
			s.log.Warn("a subscription of the app is left out", "from", from, "err", err)
			continue
		}
		s.app = append(s.app, sb)
		if slices.ContainsFunc(s.declared, sb.sameTopic) {
			s.log.Warn("the app subscribes to a topic a Subscription resource declares; the app's subscription is in force", "pubsub", sb.PubsubName, "topic", sb.Topic)
		}
		s.log.Info("app subscribed", "pubsub", sub.PubsubName, "topic", sub.Topic, "routes", len(sub.Rules), "dead_letter_topic", sub.DeadLetterTopic)
	}
}

// notAnswered is a failure to ask the app: it was not reached, or did not
// answer in time.
type notAnswered struct{ err error }

func (e notAnswered) Error() string { return e.err.Error() }
func (e notAnswered) Unwrap() error { return e.err }

func (s *Subscriber) fetchHTTP(ctx context.Context) ([]Subscription, []error, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+appHost+"/dapr/subscribe", nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := s.cfg.HTTP.RoundTrip(req)
	if err != nil {
		return nil, nil, notAnswered{err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSubscribeAnswer+1))
	if err != nil {
		return nil, nil, notAnswered{fmt.Errorf("reading the answer: %w", err)}
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, nil, nil // no subscriptions, as daprd
	case resp.StatusCode != http.StatusOK:
		return nil, nil, fmt.Errorf("the app answered %s; want 200 with a JSON array, or 404 for none", resp.Status)
	case len(body) > maxSubscribeAnswer:
		return nil, nil, fmt.Errorf("the answer is over %d MiB", maxSubscribeAnswer>>20)
	}
	return ParseHTTP(body)
}

func (s *Subscriber) fetchGRPC(ctx context.Context) ([]Subscription, []error, error) {
	resp, err := s.cfg.GRPC.ListTopicSubscriptions(ctx, &emptypb.Empty{})
	if err != nil {
		st, isStatus := status.FromError(err)
		switch {
		case isStatus && st.Code() == codes.Unimplemented:
			return nil, nil, nil // no subscriptions, as daprd
		case !isStatus || unreached(st.Code()):
			return nil, nil, notAnswered{err}
		}
		return nil, nil, fmt.Errorf("the app answered %s: %s", st.Code(), st.Message())
	}
	return ParseGRPC(resp)
}

// unreached reports the codes of a gRPC call that did not reach the app,
// or that it did not answer.
func unreached(c codes.Code) bool {
	return c == codes.Unavailable || c == codes.Canceled || c == codes.DeadlineExceeded
}
