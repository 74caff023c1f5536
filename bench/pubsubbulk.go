package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// The bulk pub/sub profile (-pubsub-bulk FILE) weighs bulk publish and bulk
// subscribe against single events, through sidecars on a real
// redis-server, interleaved in rounds:
//
//   - publish: o.Backlog events of o.Size bytes, 100 at a time, through a
//     publisher sidecar (no app) into Redis: each 100 as one bulk publish
//     request, or as 100 single publishes over o.Conns connections;
//   - delivery: a backlog of o.Backlog events in the stream, delivered by
//     a subscriber sidecar started on it to the app, in batches of up to
//     100 (concurrency 100) or one by one (concurrency 100, and the
//     default 10), until Redis holds none pending or unread.

// bulkBatch is how many events a bulk publish request (and a bulk
// delivery) holds.
const bulkBatch = 100

// bulkPubSample is one round of one way of publishing.
type bulkPubSample struct {
	PerBatch *stats        // the time of each 100 events
	Events   int           // published (2xx)
	Elapsed  time.Duration // from the first publish call to the last answer
	CPU      time.Duration // the publisher sidecar's
}

// bulkPubWay is one way of publishing 100 events, and its rounds.
type bulkPubWay struct {
	name, about string
	bulk        bool
	rounds      []*bulkPubSample
}

// bulkSubSample is one round of one way of delivering the backlog.
type bulkSubSample struct {
	Events   int           // delivered after the first request, and acknowledged
	Elapsed  time.Duration // from the first request at the app to the last acknowledgment seen in Redis
	CPU      time.Duration // the subscriber sidecar's over Elapsed
	Requests int           // the app's requests after the first
}

// bulkSubWay is one way of delivering, and its rounds.
type bulkSubWay struct {
	name, about string
	bulk        bool
	concurrency int
	rounds      []*bulkSubSample
}

func pubsubBulkBench(o options, out string) error {
	e, cleanup, err := newEnv(o)
	if err != nil {
		return err
	}
	defer cleanup()
	rp, err := e.startRedis()
	if err != nil {
		return err
	}
	defer rp.stop()
	ln, addr, err := listenLocal()
	if err != nil {
		return err
	}
	p := &psEnv{env: e, sinkURL: addr, redisP: rp, admin: goredis.NewClient(&goredis.Options{Addr: e.redis})}
	defer p.admin.Close()
	k := &bulkSink{arrived: make(chan struct{}, 1)}
	srv := &http.Server{Handler: k}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	pubs := []*bulkPubWay{
		{name: "publish-bulk", bulk: true, about: "each 100 events as one `POST /v1.0-alpha1/publish/bulk/pubsub/{topic}` (a JSON array of 100 entries, `application/json`)"},
		{name: "publish-single", about: fmt.Sprintf("each 100 events as 100 `POST /v1.0/publish/pubsub/{topic}`, %d at once (one per connection)", o.Conns)},
	}
	subs := []*bulkSubWay{
		{name: "deliver-bulk-100", bulk: true, concurrency: 100, about: "`bulkSubscribe` `{\"enabled\": true, \"maxMessagesCount\": 100, \"maxAwaitDurationMs\": 100}`, `concurrency` 100: up to 100 events a request, the app answering a `SUCCESS` status for each"},
		{name: "deliver-bulk-100-c200", bulk: true, concurrency: 200, about: "the same bulk subscription with `concurrency` 200: two batches can be on their way at once"},
		{name: "deliver-single-100", concurrency: 100, about: "one event a request, `concurrency` 100"},
		{name: "deliver-single-10", concurrency: 10, about: "one event a request, `concurrency` 10 (the default)"},
	}
	// The backlogs are filled by a sidecar of their own, in bulk, so that
	// they hold what a sidecar publishes.
	filler, err := p.bulkPublisher()
	if err != nil {
		return err
	}
	defer filler.stop()
	for i := range o.Rounds {
		for _, w := range pubs {
			s, err := p.publishRound(w, fmt.Sprintf("bulk-%d-%s", i+1, w.name))
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", w.name, i+1, err)
			}
			log.Printf("round %d/%d %s: 100 events p50 %s p90 %s, %.0f events/s", i+1, o.Rounds, w.name,
				s.PerBatch.quantile(.5), s.PerBatch.quantile(.9), float64(s.Events)/s.Elapsed.Seconds())
			w.rounds = append(w.rounds, s)
			if err := p.admin.FlushAll(context.Background()).Err(); err != nil {
				return err
			}
		}
		for _, w := range subs {
			topic := fmt.Sprintf("bulk-%d-%s", i+1, w.name)
			if err := filler.fill(topic, o.Backlog, o.Size); err != nil {
				return fmt.Errorf("%s, round %d: the backlog: %w", w.name, i+1, err)
			}
			s, err := p.deliverRound(k, w, topic)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", w.name, i+1, err)
			}
			log.Printf("round %d/%d %s: %.0f events/s", i+1, o.Rounds, w.name, float64(s.Events)/s.Elapsed.Seconds())
			w.rounds = append(w.rounds, s)
			if err := p.admin.FlushAll(context.Background()).Err(); err != nil {
				return err
			}
		}
	}
	section := pubsubBulkReport(o, pubs, subs)
	fmt.Print(section)
	if out == "" {
		return nil
	}
	return writeSection(out, pubsubBulkTitle, section)
}

// bulkComponent writes a folder holding the pubsub.redis Component
// "pubsub" for the harness's Redis with concurrency, and returns it.
func (p *psEnv) bulkComponent(concurrency int) (string, error) {
	dir := filepath.Join(p.dir, fmt.Sprintf("pubsub-concurrency-%d", concurrency))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	yaml := resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", p.redis, "concurrency", itoa(concurrency))
	return dir, os.WriteFile(filepath.Join(dir, "pubsub.yaml"), yaml, 0o644)
}

// bulkPub is a publisher sidecar and a client to it.
type bulkPub struct {
	proc   *proc
	base   string // the sidecar's HTTP address
	client *http.Client
}

func (b *bulkPub) stop() {
	b.client.CloseIdleConnections()
	b.proc.stop()
}

// bulkPublisher starts a publisher sidecar (no app) with the pubsub
// Component.
func (p *psEnv) bulkPublisher() (*bulkPub, error) {
	res, err := p.bulkComponent(10)
	if err != nil {
		return nil, err
	}
	reg, err := os.MkdirTemp(p.dir, "registry-")
	if err != nil {
		return nil, err
	}
	pr, a, err := p.startSidecar("bench-pub", "", "http", reg, "--resources-path", res)
	if err != nil {
		return nil, err
	}
	c := p.o.Conns
	return &bulkPub{proc: pr, base: a.httpURL, client: &http.Client{Transport: &http.Transport{MaxIdleConns: c, MaxIdleConnsPerHost: c, MaxConnsPerHost: c}}}, nil
}

// bulkBody is a bulk publish request of n JSON events of size bytes, each
// carrying the time sent.
func bulkBody(n, size int, sent time.Time) []byte {
	b := []byte{'['}
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"entryId":"%d","contentType":"application/json","event":`, i)
		b = append(b, eventBody(size, sent)...)
		b = append(b, '}')
	}
	return append(b, ']')
}

// post POSTs body to the sidecar's path and wants a 204.
func (b *bulkPub) post(ctx context.Context, path string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("POST %s: HTTP %d %s", path, resp.StatusCode, msg)
	}
	return nil
}

// publish100 publishes 100 events to topic, in one bulk request or in 100
// single ones over the client's connections.
func (b *bulkPub) publish100(ctx context.Context, topic string, bulk bool, size, conns int) error {
	if bulk {
		return b.post(ctx, "/v1.0-alpha1/publish/bulk/pubsub/"+topic, bulkBody(bulkBatch, size, time.Now()))
	}
	jobs := make(chan struct{}, bulkBatch)
	for range bulkBatch {
		jobs <- struct{}{}
	}
	close(jobs)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range min(conns, bulkBatch) {
		wg.Go(func() {
			for range jobs {
				if err := b.post(ctx, "/v1.0/publish/pubsub/"+topic, eventBody(size, time.Now())); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	wg.Wait()
	return first
}

// fill puts n events of size bytes into topic's stream, in bulk.
func (b *bulkPub) fill(topic string, n, size int) error {
	ctx := context.Background()
	for left := n; left > 0; left -= bulkBatch {
		if err := b.post(ctx, "/v1.0-alpha1/publish/bulk/pubsub/"+topic, bulkBody(min(left, bulkBatch), size, time.Now())); err != nil {
			return err
		}
	}
	return nil
}

// publishRound publishes o.Backlog events (rounded up to 100s) to topic
// through a fresh publisher sidecar, 100 at a time, one 100 after another.
func (p *psEnv) publishRound(w *bulkPubWay, topic string) (*bulkPubSample, error) {
	b, err := p.bulkPublisher()
	if err != nil {
		return nil, err
	}
	defer b.stop()
	ctx := context.Background()
	// A warm-up hundred: connections open, the component's client too.
	if err := b.publish100(ctx, topic, w.bulk, p.o.Size, p.o.Conns); err != nil {
		return nil, err
	}
	batches := (p.o.Backlog + bulkBatch - 1) / bulkBatch
	s := &bulkPubSample{PerBatch: &stats{}}
	cpu0, t0 := b.proc.cpu(), time.Now()
	for range batches {
		t := time.Now()
		if err := b.publish100(ctx, topic, w.bulk, p.o.Size, p.o.Conns); err != nil {
			return nil, err
		}
		s.PerBatch.Latencies = append(s.PerBatch.Latencies, time.Since(t))
		s.Events += bulkBatch
	}
	s.Elapsed, s.CPU = time.Since(t0), b.proc.cpu()-cpu0
	slices.Sort(s.PerBatch.Latencies)
	s.PerBatch.Requests = batches
	if n, err := p.admin.XLen(ctx, topic).Result(); err != nil || n != int64(s.Events+bulkBatch) {
		return nil, fmt.Errorf("the stream holds %d events (%v), want the %d published", n, err, s.Events+bulkBatch)
	}
	return s, nil
}

// deliverRound starts a subscriber sidecar on topic's backlog and measures
// from the app's first request until Redis holds nothing pending or
// unread for the group.
func (p *psEnv) deliverRound(k *bulkSink, w *bulkSubWay, topic string) (*bulkSubSample, error) {
	k.reset(topic, w.bulk)
	res, err := p.bulkComponent(w.concurrency)
	if err != nil {
		return nil, err
	}
	reg, err := os.MkdirTemp(p.dir, "registry-")
	if err != nil {
		return nil, err
	}
	sub, _, err := p.startSidecar(psGroup, p.sinkURL, "http", reg, "--resources-path", res)
	if err != nil {
		return nil, err
	}
	defer sub.stop()
	if !k.waitFor(1, 60*time.Second) {
		return nil, fmt.Errorf("no event reached the app 60 s after the subscriber started\nsubscriber: %s", sub.Out.String())
	}
	cpu0 := sub.cpu()
	first, t0 := k.firstRequest()
	if !k.waitFor(p.o.Backlog, drainWait) {
		return nil, fmt.Errorf("%d of the %d events reached the app in %s", k.received(), p.o.Backlog, drainWait)
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainWait)
	defer cancel()
	done, err := drained(ctx, p.admin, topic, psGroup)
	if err != nil {
		return nil, err
	}
	s := &bulkSubSample{Events: p.o.Backlog - first, Elapsed: done.Sub(t0), CPU: sub.cpu() - cpu0, Requests: k.requestCount() - 1}
	if bad := k.failed(); bad != "" {
		return nil, fmt.Errorf("the app: %s", bad)
	}
	return s, nil
}

// drained polls Redis until group holds no entry of topic pending or
// unread (every event delivered and acknowledged), and returns when it saw
// so.
func drained(ctx context.Context, rdb *goredis.Client, topic, group string) (time.Time, error) {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		pend, err := rdb.XPending(ctx, topic, group).Result()
		if err != nil {
			return time.Time{}, fmt.Errorf("XPENDING %s %s: %w", topic, group, err)
		}
		if pend.Count == 0 {
			groups, err := rdb.XInfoGroups(ctx, topic).Result()
			if err != nil {
				return time.Time{}, fmt.Errorf("XINFO GROUPS %s: %w", topic, err)
			}
			for _, g := range groups {
				if g.Name == group && g.Lag == 0 && g.Pending == 0 {
					return time.Now(), nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s: %d events still pending for %s: %w", topic, pend.Count, group, ctx.Err())
		case <-t.C:
		}
	}
}

// bulkSink is the subscribing app of the bulk profile: subscribed to one
// topic, in bulk or not, it counts the events it is sent and acknowledges
// each.
type bulkSink struct {
	mu       sync.Mutex
	topic    string
	bulk     bool
	n        int       // events received since the reset
	first    int       // events in the first request
	firstAt  time.Time // the first request's receipt
	bad      string    // the first request the app could not read
	arrived  chan struct{}
	requests int
}

func (s *bulkSink) reset(topic string, bulk bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.topic, s.bulk, s.n, s.first, s.firstAt, s.bad, s.requests = topic, bulk, 0, 0, time.Time{}, "", 0
}

func (s *bulkSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	switch r.Method + " " + r.URL.Path {
	case "GET /dapr/subscribe":
		s.mu.Lock()
		sub := map[string]any{"pubsubname": "pubsub", "topic": s.topic, "route": "/events"}
		if s.bulk {
			sub["bulkSubscribe"] = map[string]any{"enabled": true, "maxMessagesCount": bulkBatch, "maxAwaitDurationMs": 100}
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode([]any{sub})
	case "POST /events":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n, answer, err := bulkAnswer(body)
		s.mu.Lock()
		if err != nil {
			if s.bad == "" {
				s.bad = err.Error()
			}
			s.mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if s.requests == 0 {
			s.first, s.firstAt = n, now
		}
		s.requests++
		s.n += n
		s.mu.Unlock()
		select {
		case s.arrived <- struct{}{}:
		default:
		}
		if answer != nil {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(answer)
			return
		}
		w.WriteHeader(http.StatusOK)
	default:
		http.NotFound(w, r)
	}
}

// bulkAnswer reads a request to the app: a bulk envelope (its entries, and
// a SUCCESS status for each to answer) or one CloudEvent (1, nil). Each
// event must carry its send time.
func bulkAnswer(body []byte) (int, []byte, error) {
	var env struct {
		Entries []struct {
			EntryID string          `json:"entryId"`
			Event   json.RawMessage `json:"event"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return 0, nil, fmt.Errorf("%w: %.100s", err, body)
	}
	if env.Entries == nil {
		if _, err := sentOf(body); err != nil {
			return 0, nil, err
		}
		return 1, nil, nil
	}
	type status struct {
		EntryID string `json:"entryId"`
		Status  string `json:"status"`
	}
	st := make([]status, len(env.Entries))
	for i, e := range env.Entries {
		if e.EntryID == "" {
			return 0, nil, fmt.Errorf("a bulk entry without its entryId: %.100s", body)
		}
		if _, err := sentOf(e.Event); err != nil {
			return 0, nil, fmt.Errorf("entry %s: %w", e.EntryID, err)
		}
		st[i] = status{e.EntryID, "SUCCESS"}
	}
	answer, err := json.Marshal(map[string]any{"statuses": st})
	return len(st), answer, err
}

func (s *bulkSink) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// firstRequest is how many events the first request held, and when it came.
func (s *bulkSink) firstRequest() (int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, s.firstAt
}

func (s *bulkSink) requestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func (s *bulkSink) failed() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad
}

func (s *bulkSink) waitFor(n int, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for s.received() < n {
		select {
		case <-s.arrived:
		case <-deadline.C:
			return s.received() >= n
		}
	}
	return true
}
