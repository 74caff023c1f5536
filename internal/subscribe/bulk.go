package subscribe

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Bulk subscriptions, as daprd delivers them: the events of a subscription
// with bulkSubscribe enabled go to the app in batches, one request per
// batch (HTTP: a JSON envelope of entries; gRPC: OnBulkTopicEventAlpha1),
// and the app answers a status per entry.
//
// A broker calls the subscription's handler once per event, concurrently
// up to its concurrency. A bulk subscription gathers the handler calls
// that wait at once into batches, one per route path: a batch goes when it
// holds MaxMessagesCount entries, or MaxAwaitDurationMs after its first
// entry came, whichever is first. Each handler call then returns its own
// entry's result, so every event is acknowledged on its own, and none
// before the app answered for it. An entry the app answers RETRY for (or
// does not answer for) is tried again under the inbound retry policy, in
// a later batch, and alone: the others of its batch are done.

// BulkSubscribe is a subscription's bulkSubscribe, as daprd names it.
type BulkSubscribe struct {
	Enabled bool
	// MaxMessagesCount is the most entries a batch holds; 0:
	// DefaultMaxMessagesCount.
	MaxMessagesCount int32
	// MaxAwaitDurationMs is how long a batch waits for more entries after
	// its first; 0: DefaultMaxAwaitDurationMs.
	MaxAwaitDurationMs int32
}

// The defaults of BulkSubscribe, as daprd's.
const (
	DefaultMaxMessagesCount   = 100
	DefaultMaxAwaitDurationMs = 1000
)

// bulkEventType is the type of a bulk request, as daprd's.
const bulkEventType = "com.dapr.event.sent.bulk"

// check checks the bounds of b when it is enabled.
func (b BulkSubscribe) check() error {
	if !b.Enabled {
		return nil
	}
	if b.MaxMessagesCount < 0 {
		return fmt.Errorf("bulkSubscribe.maxMessagesCount %d: want a count from 1, or 0 for %d", b.MaxMessagesCount, DefaultMaxMessagesCount)
	}
	if b.MaxAwaitDurationMs < 0 {
		return fmt.Errorf("bulkSubscribe.maxAwaitDurationMs %d: want milliseconds from 1, or 0 for %d", b.MaxAwaitDurationMs, DefaultMaxAwaitDurationMs)
	}
	return nil
}

// bulker gathers the deliveries of a bulk subscription into batches.
type bulker struct {
	max   int
	await time.Duration

	mu   sync.Mutex
	open map[string]*batch // by path: the batch that takes entries
}

func newBulker(b BulkSubscribe) *bulker {
	n, ms := int(b.MaxMessagesCount), int(b.MaxAwaitDurationMs)
	if n == 0 {
		n = DefaultMaxMessagesCount
	}
	if ms == 0 {
		ms = DefaultMaxAwaitDurationMs
	}
	return &bulker{max: n, await: time.Duration(ms) * time.Millisecond, open: map[string]*batch{}}
}

// batch is the entries that go to the app in one request.
type batch struct {
	path    string
	entries []*bulkEntry
	sent    atomic.Bool // the request went to the app whole

	ctx     context.Context // the request's: ends once every entry gave up
	cancel  context.CancelFunc
	waiting atomic.Int32 // entries waiting for their outcome; changed under bulker.mu
}

// bulkEntry is one event of a batch.
type bulkEntry struct {
	id   string // its entryId
	d    *pubsub.Delivery
	ev   pubsub.Event
	done chan outcome // its result, once
}

// call returns the call that gives ev to the app in a batch of path: each
// call joins the open batch, or opens one, and waits for its own entry's
// outcome.
func (s *Subscriber) bulkCall(sb *sub, d *pubsub.Delivery, ev pubsub.Event, path string) (func(context.Context) outcome, error) {
	if s.cfg.HTTP == nil {
		if _, err := bulkEntryGRPC(&bulkEntry{d: d, ev: ev}, sb); err != nil {
			return nil, err
		}
		if s.bulkClient() == nil {
			return nil, fmt.Errorf("%s: the app channel cannot call OnBulkTopicEventAlpha1", sb.Subscription)
		}
	}
	return func(ctx context.Context) outcome {
		e := &bulkEntry{id: pubsub.NewUUID(), d: d, ev: ev, done: make(chan outcome, 1)}
		b := sb.bulk.add(path, e, func(b *batch) { s.sendBatch(sb, b) })
		select {
		case o := <-e.done:
			return o
		case <-ctx.Done():
			// Out of the batch before the delivery's outcome is known, so
			// that no event published after it joins a batch holding it.
			sb.bulk.leave(path, b, e)
			return outcome{status: pubsub.Retry, reached: b.sent.Load(), err: fmt.Errorf("bulk delivery to %s: %w", path, ctx.Err())}
		}
	}, nil
}

// add puts e in the open batch of path, or a new one; a batch that is full
// goes at once (send runs it in a goroutine of its own), one that is not
// once its wait is over.
func (k *bulker) add(path string, e *bulkEntry, send func(*batch)) *batch {
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.open[path]
	if b == nil {
		b = &batch{path: path}
		b.ctx, b.cancel = context.WithCancel(context.Background())
		k.open[path] = b
		time.AfterFunc(k.await, func() {
			if k.take(path, b) {
				send(b)
			}
		})
	}
	b.entries = append(b.entries, e)
	b.waiting.Add(1)
	if len(b.entries) >= k.max && k.open[path] == b {
		delete(k.open, path)
		go send(b)
	}
	return b
}

// leave is entry e of b that gave up waiting (its delivery was cut
// short): out of b while b is open, so the app is not given an event whose
// delivery has already failed (the broker delivers it again); once none
// waits, b is not sent, or its request is canceled.
func (k *bulker) leave(path string, b *batch, e *bulkEntry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.open[path] == b {
		b.entries = slices.DeleteFunc(b.entries, func(x *bulkEntry) bool { return x == e })
	}
	if b.waiting.Add(-1) > 0 {
		return
	}
	if k.open[path] == b {
		delete(k.open, path)
	}
	b.cancel()
}

// take closes b to more entries, and reports whether it was open.
func (k *bulker) take(path string, b *batch) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.open[path] != b {
		return false
	}
	delete(k.open, path)
	return true
}

// sendBatch makes the app request of b and gives each entry its outcome.
func (s *Subscriber) sendBatch(sb *sub, b *batch) {
	defer b.cancel()
	var got map[string]outcome
	var all outcome // of every entry got has no outcome for
	if s.cfg.HTTP != nil {
		got, all = s.bulkHTTP(b.ctx, sb, b)
	} else {
		got, all = s.bulkGRPC(b.ctx, sb, b)
	}
	s.log.Debug("bulk delivery", "pubsub", sb.PubsubName, "topic", sb.Topic, "path", b.path, "entries", len(b.entries), "answered", len(got), "err", all.err)
	for _, e := range b.entries {
		o, ok := got[e.id]
		if !ok {
			o = all
		}
		e.done <- o
	}
}

// missing is the outcome of an entry a 2xx answer has no status for.
func missing(what string) outcome {
	return outcome{status: pubsub.Retry, reached: true, err: fmt.Errorf("%s: the app's answer has no status for the entry", what)}
}

// bulkItem is an entry of an HTTP bulk request, as daprd sends it.
type bulkItem struct {
	EntryID     string            `json:"entryId"`
	Event       any               `json:"event"`
	Metadata    map[string]string `json:"metadata"`
	ContentType string            `json:"contentType,omitempty"`
}

// bulkEnvelope is an HTTP bulk request, as daprd sends it.
type bulkEnvelope struct {
	Entries    []bulkItem        `json:"entries"`
	ID         string            `json:"id"`
	Metadata   map[string]string `json:"metadata"`
	PubsubName string            `json:"pubsubname"`
	Topic      string            `json:"topic"`
	Type       string            `json:"type"`
}

// bulkAnswer is an app's answer to a bulk request.
type bulkAnswer struct {
	Statuses []struct {
		EntryID string `json:"entryId"`
		Status  string `json:"status"`
	} `json:"statuses"`
}

// bulkHTTP posts b to an HTTP app, as daprd does: each entry's event is
// its CloudEvent (rawPayload: what was published, base64, as
// application/octet-stream). A 2xx answer gives each entry its status
// (SUCCESS, DROP; RETRY, any other, or none: RETRY); 404 drops them all;
// any other answer retries them all.
func (s *Subscriber) bulkHTTP(ctx context.Context, sb *sub, b *batch) (map[string]outcome, outcome) {
	env := bulkEnvelope{ID: pubsub.NewUUID(), Metadata: map[string]string{"pubsubname": sb.PubsubName}, PubsubName: sb.PubsubName, Topic: sb.Topic, Type: bulkEventType}
	for _, e := range b.entries {
		it := bulkItem{EntryID: e.id, Metadata: e.d.Metadata, Event: e.ev.CloudEvent(), ContentType: pubsub.ContentTypeCloudEvent}
		if sb.raw {
			it.Event, it.ContentType = base64.StdEncoding.EncodeToString(e.d.Data), "application/octet-stream"
		}
		if it.Metadata == nil {
			it.Metadata = map[string]string{}
		}
		env.Entries = append(env.Entries, it)
	}
	body, err := json.Marshal(env)
	if err != nil {
		return nil, outcome{status: pubsub.Retry, err: fmt.Errorf("encoding the bulk request: %w", err)}
	}
	u, err := routeURL(b.path)
	if err != nil {
		return nil, outcome{status: pubsub.Retry, err: err}
	}
	what := "POST " + u.Path + " (bulk)"
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { b.sent.Store(i.Err == nil) },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, outcome{status: pubsub.Retry, err: err}
	}
	req.Header = deliveryHeader(nil, sb.PubsubName)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.cfg.HTTP.RoundTrip(req)
	if err != nil {
		return nil, outcome{status: pubsub.Retry, reached: b.sent.Load(), err: fmt.Errorf("%s: %w", what, err)}
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	if err != nil {
		return nil, outcome{status: pubsub.Retry, reached: true, err: fmt.Errorf("%s: reading the app's answer: %w", what, err)}
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, outcome{status: pubsub.Drop, reached: true, err: fmt.Errorf("%s: the app answered %s", what, resp.Status)}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, outcome{status: pubsub.Retry, reached: true, err: fmt.Errorf("%s: the app answered %s%s", what, resp.Status, snippet(answer))}
	}
	var a bulkAnswer
	if err := json.NewDecoder(bytes.NewReader(answer)).Decode(&a); err != nil {
		return nil, outcome{status: pubsub.Retry, reached: true, err: fmt.Errorf("%s: the answer is not {\"statuses\": [{\"entryId\", \"status\"}]}: %w%s", what, err, snippet(answer))}
	}
	got := make(map[string]outcome, len(a.Statuses))
	for _, st := range a.Statuses {
		o := outcome{reached: true}
		switch pubsub.Status(st.Status) {
		case pubsub.Success:
			o.status = pubsub.Success
		case pubsub.Drop:
			o.status, o.deadLetter = pubsub.Drop, true
			o.err = fmt.Errorf("%s: the app answered DROP for the entry", what)
		default:
			o.status = pubsub.Retry
			o.err = fmt.Errorf("%s: the app answered %q for the entry", what, st.Status)
		}
		got[st.EntryID] = o
	}
	return got, missing(what)
}

// bulkCaller is the app channel's OnBulkTopicEventAlpha1.
type bulkCaller interface {
	OnBulkTopicEventAlpha1(ctx context.Context, in *runtimev1pb.TopicEventBulkRequest, opts ...grpc.CallOption) (*runtimev1pb.TopicEventBulkResponse, error)
}

// bulkClient is the gRPC app channel's bulk client, or nil.
func (s *Subscriber) bulkClient() bulkCaller {
	c, _ := s.cfg.GRPC.(bulkCaller)
	return c
}

// bulkEntryGRPC is the TopicEventBulkRequestEntry of e, as daprd builds
// it: the CloudEvent as OnTopicEvent gets it (rawPayload: the bytes
// published).
func bulkEntryGRPC(e *bulkEntry, sb *sub) (*runtimev1pb.TopicEventBulkRequestEntry, error) {
	if sb.raw {
		return &runtimev1pb.TopicEventBulkRequestEntry{EntryId: e.id, ContentType: "application/octet-stream", Metadata: e.d.Metadata,
			Event: &runtimev1pb.TopicEventBulkRequestEntry_Bytes{Bytes: e.d.Data}}, nil
	}
	r, err := topicEvent(e.ev, sb, "")
	if err != nil {
		return nil, err
	}
	return &runtimev1pb.TopicEventBulkRequestEntry{EntryId: e.id, ContentType: pubsub.ContentTypeCloudEvent, Metadata: e.d.Metadata,
		Event: &runtimev1pb.TopicEventBulkRequestEntry_CloudEvent{CloudEvent: &runtimev1pb.TopicEventCERequest{
			Id: r.Id, Source: r.Source, Type: r.Type, SpecVersion: r.SpecVersion, DataContentType: r.DataContentType,
			Data: r.Data, Extensions: r.Extensions,
		}}}, nil
}

// bulkGRPC gives b to a gRPC app's OnBulkTopicEventAlpha1, as daprd does.
// Its answer gives each entry its status (an entry it has none for:
// RETRY); Unimplemented drops them all; any other error retries them all.
func (s *Subscriber) bulkGRPC(ctx context.Context, sb *sub, b *batch) (map[string]outcome, outcome) {
	req := &runtimev1pb.TopicEventBulkRequest{Id: pubsub.NewUUID(), Metadata: map[string]string{"pubsubname": sb.PubsubName},
		Topic: sb.Topic, PubsubName: sb.PubsubName, Type: bulkEventType, Path: b.path}
	for _, e := range b.entries {
		it, err := bulkEntryGRPC(e, sb) // checked by bulkCall
		if err != nil {
			return nil, outcome{status: pubsub.Retry, err: err}
		}
		req.Entries = append(req.Entries, it)
	}
	const what = "OnBulkTopicEventAlpha1"
	md := deliveryMD(nil, sb.PubsubName, "", "")
	resp, err := s.bulkClient().OnBulkTopicEventAlpha1(metadata.NewOutgoingContext(ctx, md), req)
	st, isStatus := status.FromError(err)
	switch {
	case !isStatus || (err != nil && (st.Code() == codes.Unavailable || st.Code() == codes.Canceled)):
		return nil, outcome{status: pubsub.Retry, err: fmt.Errorf("%s: %w", what, err)}
	case err != nil && st.Code() == codes.Unimplemented:
		return nil, outcome{status: pubsub.Drop, reached: true, err: fmt.Errorf("%s: the app answered %s: %s", what, st.Code(), st.Message())}
	case err != nil:
		return nil, outcome{status: pubsub.Retry, reached: true, err: fmt.Errorf("%s: the app answered %s: %s", what, st.Code(), st.Message())}
	}
	b.sent.Store(true)
	got := make(map[string]outcome, len(resp.GetStatuses()))
	for _, r := range resp.GetStatuses() {
		o := outcome{reached: true, status: pubsub.StatusFromGRPC(codes.OK, int32(r.GetStatus()))}
		o.deadLetter = o.status == pubsub.Drop
		if o.status != pubsub.Success {
			o.err = fmt.Errorf("%s: the app answered %s for the entry", what, r.GetStatus())
		}
		got[r.GetEntryId()] = o
	}
	return got, missing(what)
}
