package subscribe

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// handler is the pubsub.Handler of sb for the run that run bounds: once
// run ends it delivers nothing more (the event stays pending).
func (s *Subscriber) handler(run context.Context, sb *sub) pubsub.Handler {
	return func(ctx context.Context, d *pubsub.Delivery) error {
		if run.Err() != nil || !s.flight.enter() {
			return errStopped
		}
		defer s.flight.leave()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(s.hard, cancel)()
		return s.deliver(ctx, run, sb, d)
	}
}

// deliver hands the event of d to the app and returns nil when it may be
// acknowledged: the app answered SUCCESS or DROP, it expired, no rule
// routes it, or it went to the dead-letter topic. Any error leaves it
// pending in the broker.
func (s *Subscriber) deliver(ctx, run context.Context, sb *sub, d *pubsub.Delivery) error {
	m := s.cfg.Metrics
	if d.Attempt > 1 {
		m.count(evRedelivered, sb)
	}
	ev, err := pubsub.ReadEvent(d.Data, sb.Topic, sb.PubsubName, sb.raw)
	if err != nil {
		return s.undeliverable(ctx, sb, d, err)
	}
	if ev.Expired(time.Now()) {
		m.count(evExpired, sb)
		s.log.Debug("event expired: dropped", "pubsub", sb.PubsubName, "topic", sb.Topic, "id", ev.ID(), "expiration", expiration(ev))
		s.deadLetterAnyway(ctx, sb, d, "it expired")
		return nil
	}
	path, ok, err := sb.routes.Match(ev.CloudEvent)
	if err != nil {
		return s.undeliverable(ctx, sb, d, fmt.Errorf("routing event %q: %w", ev.ID(), err))
	}
	if !ok {
		m.count(evUnrouted, sb)
		s.log.Debug("no routing rule matches the event: dropped", "pubsub", sb.PubsubName, "topic", sb.Topic, "id", ev.ID())
		s.deadLetterAnyway(ctx, sb, d, "no routing rule matches it")
		return nil
	}
	var call func(context.Context) outcome
	switch {
	case sb.stream != nil:
		call, err = sb.stream.call(ev, path)
	case sb.bulk != nil:
		call, err = s.bulkCall(sb, d, ev, path)
	case s.cfg.HTTP != nil:
		call, err = s.httpCall(sb, d, ev, path)
	default:
		call, err = s.grpcCall(sb, d, ev, path)
	}
	if err != nil {
		return s.undeliverable(ctx, sb, d, err)
	}
	return s.send(ctx, run, sb, d, ev, call)
}

// outcome is what one try of a delivery came to.
type outcome struct {
	status pubsub.Status
	// reached: the app had the event: it answered, or the event was sent
	// and no answer came (the policy's timeout, the app crashed). An event
	// the app was not given (it could not be reached, was unhealthy, no
	// slot of --app-max-concurrency came in time) never goes to the
	// dead-letter topic.
	reached bool
	// deadLetter: a DROP the app answered itself (not a 404 or
	// Unimplemented): as in daprd, it goes to the dead-letter topic.
	deadLetter bool
	err        error // why not SUCCESS
}

func (o outcome) label() string {
	switch {
	case !o.reached:
		return statusError
	case o.status == pubsub.Success:
		return statusSuccess
	case o.status == pubsub.Drop:
		return statusDrop
	}
	return statusRetry
}

// send makes call until the app answers SUCCESS or DROP or the retry
// policy gives up; then an event the app had goes to the dead-letter
// topic, when there is one, and any other stays pending.
func (s *Subscriber) send(ctx, run context.Context, sb *sub, d *pubsub.Delivery, ev pubsub.Event, call func(context.Context) outcome) error {
	m := s.cfg.Metrics
	retry, timeout := s.policy(sb.PubsubName)
	end := func(string, error) {}
	if s.cfg.Tracer != nil {
		tp, ts := traceContext(ev)
		ctx, end = s.cfg.Tracer.StartDelivery(ctx, sb.PubsubName, sb.Topic, tp, ts)
	}
	var o outcome
	stopped := false
	for n := 0; ; n++ {
		if n > 0 {
			m.count(evRetried, sb)
		}
		o = s.try(ctx, timeout, sb, call)
		s.log.Debug("delivery try", "pubsub", sb.PubsubName, "topic", sb.Topic, "id", ev.ID(), "try", n+1, "status", o.label(), "err", o.err)
		if o.status != pubsub.Retry || (retry.MaxRetries >= 0 && n >= retry.MaxRetries) {
			break
		}
		if stopped = !sleep(ctx, run, retry.Delay(n+1)); stopped {
			break
		}
	}
	// A delivery cut short (the broker closed, the shutdown grace over)
	// leaves its event pending, whatever its last try came to.
	stopped = stopped || ctx.Err() != nil
	answer := ""
	if o.reached {
		answer = string(o.status)
	}
	end(answer, o.err)
	switch o.status {
	case pubsub.Success:
		return nil
	case pubsub.Drop:
		if o.deadLetter {
			s.deadLetterAnyway(ctx, sb, d, "the app answered DROP")
		}
		return nil
	}
	err := fmt.Errorf("event %q of topic %q: %w", ev.ID(), sb.Topic, o.err)
	if o.reached && !stopped && sb.DeadLetterTopic != "" {
		if derr := s.deadLetter(ctx, sb, d); derr != nil {
			err = fmt.Errorf("%w; %w", err, derr)
		} else {
			return nil
		}
	}
	if !stopped {
		s.log.Warn("event not delivered; it stays pending and comes again", "pubsub", sb.PubsubName, "topic", sb.Topic, "err", err)
	}
	return err
}

// try makes one call, bounded by the policy's timeout.
func (s *Subscriber) try(ctx context.Context, timeout time.Duration, sb *sub, call func(context.Context) outcome) outcome {
	tctx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		tctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	start := time.Now()
	o := call(tctx)
	took := time.Since(start)
	if o.err != nil && errors.Is(tctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		o.err = fmt.Errorf("no answer within the inbound timeout of %s: %w", timeout, o.err)
	}
	s.cfg.Metrics.answered(sb, o.label(), took)
	return o
}

// sleep waits d, and reports false when ctx or run ends first.
func sleep(ctx, run context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-run.Done():
	}
	return false
}

// undeliverable handles an event the app cannot be given (not a
// CloudEvent, a match that cannot be evaluated for it): to the dead-letter
// topic when there is one, else pending, as daprd.
func (s *Subscriber) undeliverable(ctx context.Context, sb *sub, d *pubsub.Delivery, why error) error {
	if sb.DeadLetterTopic != "" {
		err := s.deadLetter(ctx, sb, d)
		if err == nil {
			s.log.Warn("event cannot be delivered: sent to the dead-letter topic", "pubsub", sb.PubsubName, "topic", sb.Topic, "dead_letter_topic", sb.DeadLetterTopic, "why", why)
			return nil
		}
		why = fmt.Errorf("%w; %w", why, err)
	}
	s.log.Warn("event cannot be delivered; it stays pending and comes again", "pubsub", sb.PubsubName, "topic", sb.Topic, "broker_id", d.ID, "err", why)
	return why
}

// deadLetter publishes the event as it was delivered to the dead-letter
// topic of its subscription.
func (s *Subscriber) deadLetter(ctx context.Context, sb *sub, d *pubsub.Delivery) error {
	err := s.cfg.PubSub.Publish(ctx, sb.PubsubName, &pubsub.Message{Topic: sb.DeadLetterTopic, Data: d.Data, Metadata: d.Metadata})
	if err != nil {
		return fmt.Errorf("publishing it to dead-letter topic %q: %w", sb.DeadLetterTopic, err)
	}
	s.cfg.Metrics.count(evDeadLettered, sb)
	return nil
}

// deadLetterAnyway sends an event that is acknowledged whatever happens
// (dropped, expired, not routed) to the dead-letter topic, when there is
// one, as daprd does; a failure is logged.
func (s *Subscriber) deadLetterAnyway(ctx context.Context, sb *sub, d *pubsub.Delivery, why string) {
	if sb.DeadLetterTopic == "" {
		return
	}
	if err := s.deadLetter(ctx, sb, d); err != nil {
		s.log.Warn("event dropped ("+why+"); it could not go to the dead-letter topic", "pubsub", sb.PubsubName, "topic", sb.Topic, "err", err)
	}
}

// stringField is the envelope's top-level field name when it is a
// string, else "".
func stringField(ev pubsub.Event, name string) string {
	v, _ := ev.Field(name)
	s, _ := v.(string)
	return s
}

// expiration is the envelope's expiration, for logs.
func expiration(ev pubsub.Event) any {
	v, _ := ev.Field("expiration")
	return v
}

// traceContext is the publisher's W3C trace context the event carries:
// traceparent, or traceid (daprd's older name), and tracestate.
func traceContext(ev pubsub.Event) (traceparent, tracestate string) {
	tp := stringField(ev, "traceparent")
	if tp == "" {
		tp = stringField(ev, "traceid")
	}
	ts := stringField(ev, "tracestate")
	return tp, ts
}

// maxAnswer bounds what is read of an HTTP app's answer to a delivery.
const maxAnswer = 1 << 20

// httpCall returns the call that posts ev to path on an HTTP app, as daprd
// does: the envelope as application/cloudevents+json, the event's
// metadata and pubsubname as headers, and its trace context.
func (s *Subscriber) httpCall(sb *sub, d *pubsub.Delivery, ev pubsub.Event, path string) (func(context.Context) outcome, error) {
	u, err := routeURL(path)
	if err != nil {
		return nil, err
	}
	target := u.String()
	header := deliveryHeader(d.Metadata, sb.PubsubName)
	header.Set("Content-Type", pubsub.ContentTypeCloudEvent)
	tp, ts := traceContext(ev)
	if tp != "" && httpguts.ValidHeaderFieldValue(tp) {
		header.Set("Traceparent", tp)
		if ts != "" && httpguts.ValidHeaderFieldValue(ts) {
			header.Set("Tracestate", ts)
		}
	}
	return func(ctx context.Context) outcome {
		var sent atomic.Bool // the whole request went to the app
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest: func(i httptrace.WroteRequestInfo) { sent.Store(i.Err == nil) },
		})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(ev.Data))
		if err != nil {
			return outcome{status: pubsub.Retry, err: err}
		}
		req.Header = header.Clone()
		resp, err := s.cfg.HTTP.RoundTrip(req)
		if err != nil {
			return outcome{status: pubsub.Retry, reached: sent.Load(), err: fmt.Errorf("POST %s: %w", u.Path, err)}
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		_ = resp.Body.Close()
		if err != nil {
			return outcome{status: pubsub.Retry, reached: true, err: fmt.Errorf("POST %s: reading the app's answer: %w", u.Path, err)}
		}
		st := pubsub.StatusFromHTTP(resp.StatusCode, body)
		o := outcome{status: st, reached: true, deadLetter: st == pubsub.Drop && resp.StatusCode != http.StatusNotFound}
		if st != pubsub.Success {
			o.err = fmt.Errorf("POST %s: the app answered %s%s", u.Path, resp.Status, snippet(body))
		}
		return o
	}, nil
}

// snippet is the start of an answer's body, for messages.
func snippet(body []byte) string {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return ""
	}
	if len(b) > 200 {
		b = append(b[:200:200], "..."...)
	}
	return ": " + strings.ToValidUTF8(string(b), "?")
}

// grpcCall returns the call that gives ev to a gRPC app's OnTopicEvent, as
// daprd does.
func (s *Subscriber) grpcCall(sb *sub, d *pubsub.Delivery, ev pubsub.Event, path string) (func(context.Context) outcome, error) {
	req, err := topicEvent(ev, sb, path)
	if err != nil {
		return nil, err
	}
	tp, ts := traceContext(ev)
	md := deliveryMD(d.Metadata, sb.PubsubName, tp, ts)
	return func(ctx context.Context) outcome {
		resp, err := s.cfg.GRPC.OnTopicEvent(metadata.NewOutgoingContext(ctx, md), req)
		st, isStatus := status.FromError(err)
		if !isStatus || (err != nil && (st.Code() == codes.Unavailable || st.Code() == codes.Canceled)) {
			// Not sent, or cut short: an error of the app channel (no
			// slot, unhealthy), or of the connection.
			return outcome{status: pubsub.Retry, err: fmt.Errorf("OnTopicEvent: %w", err)}
		}
		ps := pubsub.StatusFromGRPC(st.Code(), int32(resp.GetStatus()))
		o := outcome{status: ps, reached: true, deadLetter: ps == pubsub.Drop && err == nil}
		switch {
		case err != nil:
			o.err = fmt.Errorf("OnTopicEvent: the app answered %s: %s", st.Code(), st.Message())
		case ps != pubsub.Success:
			o.err = fmt.Errorf("OnTopicEvent: the app answered %s", resp.GetStatus())
		}
		return o
	}, nil
}

// envelopeFields are the CloudEvent fields TopicEventRequest has fields
// of its own for; the others go in its extensions.
var envelopeFields = map[string]bool{"id": true, "source": true, "type": true, "specversion": true, "datacontenttype": true, "data": true, "data_base64": true}

// topicEvent is the OnTopicEvent request of ev, as daprd builds it: the
// CloudEvent's attributes, its data as bytes (data_base64 decoded; data
// that is a string as its bytes, unless the content type is JSON; other
// data as JSON), and its other fields as extensions. daprd leaves data out
// when its content type is neither text, XML nor JSON; here it is kept.
func topicEvent(ev pubsub.Event, sb *sub, path string) (*runtimev1pb.TopicEventRequest, error) {
	ce := ev.CloudEvent()
	str := func(k string) string { v, _ := ce[k].(string); return v }
	req := &runtimev1pb.TopicEventRequest{
		Id: str("id"), Source: str("source"), Type: str("type"), SpecVersion: str("specversion"),
		DataContentType: str("datacontenttype"),
		Topic:           sb.Topic, PubsubName: sb.PubsubName, Path: path,
	}
	if v, ok := ce["data_base64"]; ok && v != nil {
		b64, isString := v.(string)
		if !isString {
			return nil, fmt.Errorf("event %q: data_base64 is not a string", ev.ID())
		}
		b, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("event %q: data_base64 is not base64: %w", ev.ID(), err)
		}
		req.Data = b
	} else if v, ok := ce["data"]; ok && v != nil {
		if str, isString := v.(string); isString && !jsonContentType(req.DataContentType) {
			req.Data = []byte(str)
		} else {
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("event %q: encoding its data: %w", ev.ID(), err)
			}
			req.Data = b
		}
	}
	ext := map[string]any{}
	for k, v := range ce {
		if !envelopeFields[k] {
			ext[k] = v
		}
	}
	var err error
	if req.Extensions, err = structpb.NewStruct(ext); err != nil {
		return nil, fmt.Errorf("event %q: its extensions: %w", ev.ID(), err)
	}
	return req, nil
}

// jsonContentType reports application/json and application/cloudevents+json,
// whatever their parameters.
func jsonContentType(ct string) bool {
	ct, _, _ = strings.Cut(strings.ToLower(ct), ";")
	ct = strings.TrimSpace(ct)
	return ct == "application/json" || ct == pubsub.ContentTypeCloudEvent
}

// skippedMetadata are the metadata names that never become headers or gRPC
// metadata of a delivery: what describes the message or the connection,
// the trace context (the delivery's own goes), and the API token (only the
// sidecar gives the app one).
var skippedMetadata = map[string]bool{
	"content-type": true, "content-length": true, "traceparent": true, "tracestate": true,
	"dapr-api-token": true, "host": true, "connection": true, "keep-alive": true, "te": true,
	"trailer": true, "transfer-encoding": true, "upgrade": true, "proxy-connection": true,
	"proxy-authenticate": true, "proxy-authorization": true,
}

// deliveryHeader is the header of an HTTP delivery, as daprd sends it: the
// event's metadata (a name gRPC reserves, grpc-*, under dapr-grpc-*; a
// binary -bin one left out), and pubsubname. A name or value that is not
// valid in HTTP is left out.
func deliveryHeader(md map[string]string, pubsubName string) http.Header {
	h := make(http.Header, len(md)+4)
	for k, v := range md {
		lk := strings.ToLower(k)
		if skippedMetadata[lk] || strings.HasSuffix(lk, "-bin") || !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			continue
		}
		if strings.HasPrefix(lk, "grpc-") {
			k = "dapr-" + lk
		}
		h.Set(k, v)
	}
	h.Set("Pubsubname", pubsubName)
	return h
}

// deliveryMD is the metadata of a gRPC delivery: the event's metadata, as
// daprd sends it, pubsubname, and the event's trace context. A name that
// gRPC does not accept, or reserves (grpc-*), and a value that is not
// printable ASCII (but for -bin names) are left out.
func deliveryMD(md map[string]string, pubsubName, traceparent, tracestate string) metadata.MD {
	out := make(metadata.MD, len(md)+3)
	for k, v := range md {
		lk := strings.ToLower(k)
		if skippedMetadata[lk] || strings.HasPrefix(lk, "grpc-") || !validMDKey(lk) || (!strings.HasSuffix(lk, "-bin") && !printable(v)) {
			continue
		}
		out.Append(lk, v)
	}
	out.Set("pubsubname", pubsubName)
	if traceparent != "" && printable(traceparent) {
		out.Set("traceparent", traceparent)
		if tracestate != "" && printable(tracestate) {
			out.Set("tracestate", tracestate)
		}
	}
	return out
}

func validMDKey(k string) bool {
	if k == "" {
		return false
	}
	for i := range len(k) {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func printable(v string) bool {
	for i := range len(v) {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}
