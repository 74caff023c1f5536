package subscribe

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/internal/resiliency"
	"github.com/tandem-run/tandem/pkg/pubsub/memory"
)

// bulkRequest is a bulk request an HTTP app received.
type bulkRequest struct {
	Path   string
	Header http.Header
	Body   bulkEnvelope
	ns     []string // the entries' data.n, in order
}

// bulkHTTPApp is an HTTP app that takes bulk requests; answer decides its
// answer to each: a status code and, for a 2xx, a status per entry data.n
// ("" leaves the entry out of the answer).
type bulkHTTPApp struct {
	srv    *httptest.Server
	answer func(r bulkRequest) (int, map[string]string)
	got    chan bulkRequest
}

func newBulkHTTPApp(t *testing.T, answer func(r bulkRequest) (int, map[string]string)) *bulkHTTPApp {
	a := &bulkHTTPApp{answer: answer, got: make(chan bulkRequest, 1000)}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dapr/subscribe" {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		req := bulkRequest{Path: r.URL.Path, Header: r.Header.Clone()}
		if err := json.Unmarshal(b, &req.Body); err != nil {
			t.Errorf("a bulk request that is not JSON: %v: %s", err, b)
		}
		byN := map[string]string{} // data.n -> entryId
		for _, e := range req.Body.Entries {
			ev, _ := e.Event.(map[string]any)
			data, _ := ev["data"].(map[string]any)
			n, _ := data["n"].(string)
			req.ns = append(req.ns, n)
			byN[n] = e.EntryID
		}
		code, statuses := a.answer(req)
		a.got <- req
		var out bulkAnswer
		for n, st := range statuses {
			if st != "" {
				out.Statuses = append(out.Statuses, struct {
					EntryID string `json:"entryId"`
					Status  string `json:"status"`
				}{byN[n], st})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *bulkHTTPApp) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

// next waits for the app's next bulk request.
func (a *bulkHTTPApp) next(t *testing.T) bulkRequest {
	t.Helper()
	select {
	case r := <-a.got:
		return r
	case <-time.After(wait):
		t.Fatalf("no bulk request after %s", wait)
		panic("unreachable")
	}
}

// bulkOrders is a bulk subscription to orders; a long wait, so that only a
// full batch goes.
func bulkOrders(n int32) Subscription {
	return Subscription{PubsubName: "pubsub", Topic: "orders", Type: Declarative, Rules: []Rule{{Path: "/bulk"}},
		BulkSubscribe: BulkSubscribe{Enabled: true, MaxMessagesCount: n, MaxAwaitDurationMs: 600_000}}
}

// sameSet tells whether got holds exactly want, in any order.
func sameSet(got []string, want ...string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

// acked waits for n handler results and fails on any that is not nil.
func acked(t *testing.T, e *env, n int) {
	t.Helper()
	for range n {
		if r := e.broker.next(t); r.err != nil {
			t.Errorf("event %s not acknowledged: %v", r.data, r.err)
		}
	}
}

// TestBulkHTTP: the handler calls waiting at once go to the app as one
// request of daprd's envelope; an entry answered RETRY, and one the answer
// leaves out, are tried again (in a later batch) and they only; each event
// is acknowledged once, on its own.
func TestBulkHTTP(t *testing.T) {
	var mu sync.Mutex
	round := 0
	app := newBulkHTTPApp(t, func(r bulkRequest) (int, map[string]string) {
		mu.Lock()
		defer mu.Unlock()
		round++
		if round == 1 {
			return 200, map[string]string{"a": "SUCCESS", "b": "RETRY", "c": ""}
		}
		out := map[string]string{}
		for _, n := range r.ns {
			out[n] = "SUCCESS"
		}
		return 200, out
	})
	e := newEnv(t, app.addr(), envOptions{memory: memory.Config{Concurrency: 3}})
	e.run(e.config(bulkOrders(3)))
	for _, n := range []string{"a", "b", "c"} {
		e.publish("orders", `{"n":"`+n+`"}`, map[string]string{"customer": n})
	}
	r := app.next(t)
	if !sameSet(r.ns, "a", "b", "c") {
		t.Fatalf("first request's entries %v, want a, b and c", r.ns)
	}
	env := r.Body
	if r.Path != "/bulk" || env.Type != "com.dapr.event.sent.bulk" || env.PubsubName != "pubsub" || env.Topic != "orders" || env.ID == "" ||
		env.Metadata["pubsubname"] != "pubsub" || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Pubsubname") != "pubsub" {
		t.Errorf("request %s %+v %v", r.Path, env, r.Header)
	}
	ids := map[string]bool{}
	for i, it := range env.Entries {
		ev, _ := it.Event.(map[string]any)
		if it.ContentType != "application/cloudevents+json" || it.Metadata["customer"] != r.ns[i] || ev["topic"] != "orders" || ev["specversion"] != "1.0" || it.EntryID == "" {
			t.Errorf("entry %+v", it)
		}
		ids[it.EntryID] = true
	}
	if len(ids) != 3 {
		t.Errorf("entry ids %v are not distinct", ids)
	}
	acked(t, e, 1) // a
	e.publish("orders", `{"n":"d"}`, nil)
	if r := app.next(t); !sameSet(r.ns, "b", "c", "d") {
		t.Fatalf("second request's entries %v, want b, c (again) and d", r.ns)
	}
	acked(t, e, 3)
	if n := e.broker.handlerCalls(); n != 4 {
		t.Errorf("%d handler calls, want 4: the broker delivered no event twice", n)
	}
	if got := e.delivered("orders", "retry"); got != 2 {
		t.Errorf("tandem_pubsub_delivered_total{status=retry} = %v, want 2", got)
	}
}

// TestBulkDropAll: DROP of an entry sends it to the dead-letter topic; a
// 404 drops the whole batch (not to the dead-letter topic); another status
// retries the whole batch, then sends its events to the dead-letter
// topic.
func TestBulkDropAll(t *testing.T) {
	app := newBulkHTTPApp(t, func(r bulkRequest) (int, map[string]string) {
		switch {
		case slices.Contains(r.ns, "p"):
			return 404, nil
		case slices.Contains(r.ns, "r"):
			return 500, nil
		}
		return 200, map[string]string{"x": "DROP", "y": "SUCCESS"}
	})
	e := newEnv(t, app.addr(), envOptions{memory: memory.Config{Concurrency: 2}})
	sub := bulkOrders(2)
	sub.DeadLetterTopic = "orders-dead"
	e.run(e.config(sub))
	dead := func() []string {
		var ns []string
		for _, d := range e.broker.publishedTo("orders-dead") {
			var ce struct{ Data struct{ N string } }
			_ = json.Unmarshal([]byte(d), &ce)
			ns = append(ns, ce.Data.N)
		}
		return ns
	}

	e.publish("orders", `{"n":"x"}`, nil)
	e.publish("orders", `{"n":"y"}`, nil)
	acked(t, e, 2)
	if got := dead(); !sameSet(got, "x") {
		t.Errorf("dead-letter topic %v, want x (DROP)", got)
	}

	e.publish("orders", `{"n":"p"}`, nil)
	e.publish("orders", `{"n":"q"}`, nil)
	acked(t, e, 2)
	if got := dead(); !sameSet(got, "x") {
		t.Errorf("dead-letter topic %v after a 404, want x only", got)
	}

	e.publish("orders", `{"n":"r"}`, nil)
	e.publish("orders", `{"n":"s"}`, nil)
	acked(t, e, 2)
	if got := dead(); !sameSet(got, "x", "r", "s") {
		t.Errorf("dead-letter topic %v after 500s, want x, r and s", got)
	}
	tries := 0
	for len(app.got) > 0 {
		if r := <-app.got; slices.Contains(r.ns, "r") {
			if !sameSet(r.ns, "r", "s") {
				t.Errorf("a retry of the whole batch holds %v, want r and s", r.ns)
			}
			tries++
		}
	}
	if tries != 3 { // the first try and two retries of the fast policy
		t.Errorf("%d tries of the batch answered 500, want 3", tries)
	}
}

// TestBulkMaxAwait: a batch that does not fill goes maxAwaitDurationMs
// after its first entry; events routed to different paths go in batches
// of their own.
func TestBulkMaxAwait(t *testing.T) {
	app := newBulkHTTPApp(t, func(r bulkRequest) (int, map[string]string) {
		out := map[string]string{}
		for _, n := range r.ns {
			out[n] = "SUCCESS"
		}
		return 200, out
	})
	e := newEnv(t, app.addr(), envOptions{memory: memory.Config{Concurrency: 10}})
	sub := bulkOrders(10)
	sub.BulkSubscribe.MaxAwaitDurationMs = 20
	sub.Rules = []Rule{{Match: `event.data.n == "rush"`, Path: "/rush"}, {Path: "/bulk"}}
	e.run(e.config(sub))
	e.publish("orders", `{"n":"rush"}`, nil)
	e.publish("orders", `{"n":"calm"}`, nil)
	got := map[string][]string{}
	for range 2 {
		r := app.next(t)
		got[r.Path] = append(got[r.Path], r.ns...)
	}
	if !sameSet(got["/rush"], "rush") || !sameSet(got["/bulk"], "calm") {
		t.Errorf("requests by path %v, want rush to /rush and calm to /bulk, each alone", got)
	}
	acked(t, e, 2)
}

// bulkGRPCApp is a gRPC app with a bulk subscription; answer gives the
// status of each entry by its data.n (none: left out).
type bulkGRPCApp struct {
	runtimev1pb.UnimplementedAppCallbackServer
	runtimev1pb.UnimplementedAppCallbackAlphaServer
	subs   *runtimev1pb.ListTopicSubscriptionsResponse
	answer func(n string, round int) (runtimev1pb.TopicEventResponse_TopicEventResponseStatus, bool)

	mu    sync.Mutex
	round int
	got   chan *runtimev1pb.TopicEventBulkRequest
}

func (a *bulkGRPCApp) ListTopicSubscriptions(context.Context, *emptypb.Empty) (*runtimev1pb.ListTopicSubscriptionsResponse, error) {
	return a.subs, nil
}

func (a *bulkGRPCApp) OnInvoke(context.Context, *commonv1pb.InvokeRequest) (*commonv1pb.InvokeResponse, error) {
	return nil, status.Error(codes.Unimplemented, "no")
}

func (a *bulkGRPCApp) OnBulkTopicEventAlpha1(_ context.Context, req *runtimev1pb.TopicEventBulkRequest) (*runtimev1pb.TopicEventBulkResponse, error) {
	a.mu.Lock()
	a.round++
	round := a.round
	a.mu.Unlock()
	resp := &runtimev1pb.TopicEventBulkResponse{}
	for _, e := range req.GetEntries() {
		var data struct{ N string }
		_ = json.Unmarshal(e.GetCloudEvent().GetData(), &data)
		if st, ok := a.answer(data.N, round); ok {
			resp.Statuses = append(resp.Statuses, &runtimev1pb.TopicEventBulkResponseEntry{EntryId: e.GetEntryId(), Status: st})
		}
	}
	a.got <- req
	return resp, nil
}

// ns is the data.n of each entry of req.
func ns(req *runtimev1pb.TopicEventBulkRequest) []string {
	var out []string
	for _, e := range req.GetEntries() {
		var data struct{ N string }
		_ = json.Unmarshal(e.GetCloudEvent().GetData(), &data)
		out = append(out, data.N)
	}
	return out
}

// TestBulkGRPC: a gRPC app's bulk subscription (ListTopicSubscriptions'
// bulk_subscribe) gets its events through OnBulkTopicEventAlpha1 as daprd
// sends them; RETRY tries that entry again alone, DROP sends it to the
// dead-letter topic.
func TestBulkGRPC(t *testing.T) {
	app := &bulkGRPCApp{got: make(chan *runtimev1pb.TopicEventBulkRequest, 100)}
	app.subs = &runtimev1pb.ListTopicSubscriptionsResponse{Subscriptions: []*runtimev1pb.TopicSubscription{{
		PubsubName: "pubsub", Topic: "orders", DeadLetterTopic: "orders-dead",
		Routes:        &runtimev1pb.TopicRoutes{Default: "orders"},
		BulkSubscribe: &runtimev1pb.BulkSubscribeConfig{Enabled: true, MaxMessagesCount: 2, MaxAwaitDurationMs: 600_000},
	}}}
	app.answer = func(n string, round int) (runtimev1pb.TopicEventResponse_TopicEventResponseStatus, bool) {
		switch {
		case n == "b" && round == 1:
			return runtimev1pb.TopicEventResponse_RETRY, true
		case n == "c":
			return runtimev1pb.TopicEventResponse_DROP, true
		}
		return runtimev1pb.TopicEventResponse_SUCCESS, true
	}
	ln, addr := freeAddr(t)
	srv := grpc.NewServer()
	runtimev1pb.RegisterAppCallbackServer(srv, app)
	runtimev1pb.RegisterAppCallbackAlphaServer(srv, app)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	e := newEnv(t, addr, envOptions{memory: memory.Config{Concurrency: 2}, invoke: invoke.Config{AppProtocol: "grpc"}})
	e.run(e.config())

	e.publish("orders", `{"n":"a"}`, map[string]string{"customer": "c1"})
	e.publish("orders", `{"n":"b"}`, nil)
	var req *runtimev1pb.TopicEventBulkRequest
	select {
	case req = <-app.got:
	case <-time.After(wait):
		t.Fatal("no OnBulkTopicEventAlpha1")
	}
	if got := ns(req); !sameSet(got, "a", "b") {
		t.Fatalf("first request's entries %v, want a and b", got)
	}
	if req.Type != "com.dapr.event.sent.bulk" || req.PubsubName != "pubsub" || req.Topic != "orders" || req.Path != "orders" || req.Id == "" || req.Metadata["pubsubname"] != "pubsub" {
		t.Errorf("request %v", req)
	}
	for _, it := range req.Entries {
		ce := it.GetCloudEvent()
		if it.EntryId == "" || it.ContentType != "application/cloudevents+json" || ce.GetSource() != "shop" || ce.GetType() != "com.dapr.event.sent" ||
			ce.GetDataContentType() != "application/json" || ce.GetExtensions().AsMap()["topic"] != "orders" {
			t.Errorf("entry %v", it)
		}
		if strings.Contains(string(ce.GetData()), `"a"`) && it.Metadata["customer"] != "c1" {
			t.Errorf("entry a's metadata %v", it.Metadata)
		}
	}
	acked(t, e, 1) // a
	e.publish("orders", `{"n":"c"}`, nil)
	select {
	case req = <-app.got:
	case <-time.After(wait):
		t.Fatal("no second OnBulkTopicEventAlpha1")
	}
	if got := ns(req); !sameSet(got, "b", "c") {
		t.Fatalf("second request's entries %v, want b (again) and c", got)
	}
	acked(t, e, 2)
	if dead := e.broker.publishedTo("orders-dead"); len(dead) != 1 || !strings.Contains(dead[0], `"n":"c"`) {
		t.Errorf("dead-letter topic %v, want c only", dead)
	}
}

// TestBulkAbandoned: a batch whose every event gave up waiting (the
// inbound timeout of its try) is not sent, and takes no more events: those
// that come later go in a batch of their own.
func TestBulkAbandoned(t *testing.T) {
	app := newBulkHTTPApp(t, func(r bulkRequest) (int, map[string]string) {
		out := map[string]string{}
		for _, n := range r.ns {
			out[n] = "SUCCESS"
		}
		return 200, out
	})
	e := newEnv(t, app.addr(), envOptions{memory: memory.Config{Concurrency: 2, RedeliverInterval: time.Hour}})
	cfg := e.config(bulkOrders(2))
	cfg.Inbound = func(string) *resiliency.Policy { return &resiliency.Policy{Timeout: 2 * time.Second} }
	e.run(cfg)
	e.publish("orders", `{"n":"a"}`, nil)
	if r := e.broker.next(t); r.err == nil || !strings.Contains(r.err.Error(), "no answer within the inbound timeout of 2s") {
		t.Fatalf("%v; want a pending, its batch never full", r.err)
	}
	e.publish("orders", `{"n":"b"}`, nil)
	e.publish("orders", `{"n":"c"}`, nil)
	if r := app.next(t); !sameSet(r.ns, "b", "c") {
		t.Errorf("request of %v, want b and c", r.ns)
	}
	acked(t, e, 2)
}

// TestBulkRawPayload: a rawPayload bulk subscription's entries hold what
// was published, in base64, as application/octet-stream (as daprd's).
func TestBulkRawPayload(t *testing.T) {
	app := newBulkHTTPApp(t, func(r bulkRequest) (int, map[string]string) { return 200, map[string]string{"": "SUCCESS"} })
	e := newEnv(t, app.addr(), envOptions{})
	sub := bulkOrders(1)
	sub.Metadata = map[string]string{"rawPayload": "true"}
	e.run(e.config(sub))
	const raw = "\x00\x01 not json \xff"
	e.publish("orders", raw, map[string]string{"rawPayload": "true"})
	r := app.next(t)
	if len(r.Body.Entries) != 1 {
		t.Fatalf("entries %+v", r.Body.Entries)
	}
	it := r.Body.Entries[0]
	if got, err := base64.StdEncoding.DecodeString(fmt.Sprint(it.Event)); err != nil || string(got) != raw || it.ContentType != "application/octet-stream" || it.Metadata["rawPayload"] != "true" {
		t.Errorf("entry %+v (%v); want the bytes published, base64", it, err)
	}
	acked(t, e, 1)
}

// TestBulkGRPCUnimplemented: a gRPC app without OnBulkTopicEventAlpha1
// has its bulk batches dropped, as daprd drops them: acknowledged, not to
// the dead-letter topic.
func TestBulkGRPCUnimplemented(t *testing.T) {
	app, addr := newGRPCApp(t, &runtimev1pb.ListTopicSubscriptionsResponse{Subscriptions: []*runtimev1pb.TopicSubscription{{
		PubsubName: "pubsub", Topic: "orders", DeadLetterTopic: "orders-dead",
		BulkSubscribe: &runtimev1pb.BulkSubscribeConfig{Enabled: true, MaxMessagesCount: 1},
	}}})
	e := newEnv(t, addr, envOptions{invoke: invoke.Config{AppProtocol: "grpc"}})
	e.run(e.config())
	e.publish("orders", `{"n":"a"}`, nil)
	acked(t, e, 1)
	if dead := e.broker.publishedTo("orders-dead"); len(dead) != 0 {
		t.Errorf("dead-letter topic got %v", dead)
	}
	if len(app.got) != 0 {
		t.Errorf("OnTopicEvent was called")
	}
	if got := e.delivered("orders", "drop"); got != 1 {
		t.Errorf("tandem_pubsub_delivered_total{status=drop} = %v, want 1", got)
	}
}

// TestBulkerLeaveTakesTheEntryOut: an entry that gives up waiting leaves
// its open batch at once, so the batch goes to the app without it
// (TestBulkAbandoned, end to end, saw an event that had timed out sent
// with a later one when it left a moment late).
func TestBulkerLeaveTakesTheEntryOut(t *testing.T) {
	sent := make(chan *batch, 1)
	send := func(b *batch) { sent <- b }
	ids := func(b *batch) (out []string) {
		for _, e := range b.entries {
			out = append(out, e.id)
		}
		return out
	}

	// Alone in its batch: the batch is canceled, the next event opens one.
	k := newBulker(BulkSubscribe{MaxMessagesCount: 2, MaxAwaitDurationMs: 60_000})
	a := &bulkEntry{id: "a"}
	first := k.add("/bulk", a, send)
	k.leave("/bulk", first, a)
	if first.ctx.Err() == nil {
		t.Error("the batch its only entry left was not canceled")
	}
	second := k.add("/bulk", &bulkEntry{id: "b"}, send)
	if second == first {
		t.Fatal("an event joined the batch its only entry had left")
	}
	k.add("/bulk", &bulkEntry{id: "c"}, send)
	if got := ids(<-sent); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("batch sent with %v, want [b c]", got)
	}

	// With another waiting: the batch stays open for it, without the one
	// that left.
	k = newBulker(BulkSubscribe{MaxMessagesCount: 3, MaxAwaitDurationMs: 60_000})
	d := &bulkEntry{id: "d"}
	open := k.add("/bulk", d, send)
	k.add("/bulk", &bulkEntry{id: "e"}, send)
	k.leave("/bulk", open, d)
	if open.ctx.Err() != nil {
		t.Fatal("the batch was canceled with an entry still waiting")
	}
	k.add("/bulk", &bulkEntry{id: "f"}, send)
	k.add("/bulk", &bulkEntry{id: "g"}, send)
	if got := ids(<-sent); !slices.Equal(got, []string{"e", "f", "g"}) {
		t.Errorf("batch sent with %v, want [e f g]", got)
	}
}
