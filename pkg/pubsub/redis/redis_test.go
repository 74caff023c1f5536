package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/pubsubtest"
)

// newBroker returns a broker of consumer group "app" on the server at
// addr, with md over short timeouts, closed when the test ends.
func newBroker(t *testing.T, addr string, md map[string]string) *Broker {
	t.Helper()
	all := map[string]string{"redisHost": addr, "dialTimeout": "500ms", "readTimeout": "500ms", "writeTimeout": "500ms"}
	for k, v := range md {
		all[k] = v
	}
	cfg, err := ParseMetadata(all, Env{AppID: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	b := Open("pubsub", cfg)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestContract(t *testing.T) {
	srv := redisserver.Start(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	pubsubtest.Run(t, func(t *testing.T, s pubsubtest.Settings) pubsubtest.Backend {
		if err := admin.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		md := map[string]string{
			"concurrency":       strconv.Itoa(s.Concurrency),
			"processingTimeout": s.Redelivery.String(),
			"redeliverInterval": (s.Redelivery / 3).String(),
		}
		return func(t *testing.T) pubsub.Broker { return newBroker(t, srv.Addr, md) }
	})
}

func TestParseMetadata(t *testing.T) {
	c, err := ParseMetadata(map[string]string{"redisHost": "h:1"}, Env{AppID: "checkout"})
	if err != nil || c.Group != "checkout" || c.Concurrency != 10 || c.QueueDepth != 100 || c.ProcessingTimeout != time.Minute ||
		c.RedeliverInterval != 15*time.Second || c.MaxLenApprox != 0 || c.Conn.Addr() != "h:1" || c.Conn.Options.MaxRetries != 1 {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	c, err = ParseMetadata(map[string]string{
		"redisHost": "h:1", "redisDB": "2", "enableTLS": "true", "redisUsername": "u", "redisPassword": "p", "consumerID": "group",
		"concurrency": "3", "queueDepth": "7", "processingTimeout": "90000", "redeliverInterval": "2s", "maxLenApprox": "1000",
		"dialTimeout": "1500", "poolSize": "4", "redisMaxRetries": "0", "redisType": "node", "failover": "false",
		"allowedTopics": "a,b", "publishingScopes": "app=a", "waitForReplicas": "1",
	}, Env{AppID: "checkout"})
	if err != nil || c.Group != "group" || c.Concurrency != 3 || c.QueueDepth != 7 || c.ProcessingTimeout != 90*time.Second ||
		c.RedeliverInterval != 2*time.Second || c.MaxLenApprox != 1000 || c.Conn.Options.DB != 2 || c.Conn.Options.TLSConfig == nil ||
		c.Conn.Options.DialTimeout != 1500*time.Millisecond || c.Conn.Options.PoolSize != 4 || c.Conn.Options.MaxRetries != 0 || c.WaitForReplicas != 1 {
		t.Fatalf("got %+v (%+v), %v", c, c.Conn.Options, err)
	}
	for field, md := range map[string]map[string]string{
		"redisHost":         {},
		"redisDB":           {"redisDB": "16"},
		"enableTLS":         {"enableTLS": "yes please"},
		"concurrency":       {"concurrency": "0"},
		"queueDepth":        {"queueDepth": "-1"},
		"processingTimeout": {"processingTimeout": "0"},
		"redeliverInterval": {"redeliverInterval": "soon"},
		"maxLenApprox":      {"maxLenApprox": "-5"},
		"dialTimeout":       {"dialTimeout": "2 seconds"},
		"redisType":         {"redisType": "sharded"},
		"failover":          {"failover": "maybe"},
		"maxRetries":        {"maxRetries": "3"}, // state.redis's name; daprd's pubsub.redis reads redisMaxRetries
		"redisHots":         {"redisHots": "typo"},
		"waitForReplicas":   {"waitForReplicas": "-1"},
	} {
		if _, ok := md["redisHost"]; !ok && field != "redisHost" {
			md["redisHost"] = "h:1"
		}
		if _, err := ParseMetadata(md, Env{AppID: "a"}); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: error %v does not name the field", field, err)
		}
	}
}

func TestConsumerIDTemplates(t *testing.T) {
	env := Env{AppID: "checkout", Namespace: "shop", PodName: "checkout-7d9f-x2"}
	for v, want := range map[string]string{
		"":                    "checkout",
		"  ":                  "checkout",
		"{appID}":             "checkout",
		"{namespace}":         "shop.checkout",
		"{podName}":           "checkout-7d9f-x2",
		"g-{appID}-{podName}": "g-checkout-checkout-7d9f-x2",
		"{appID}{appID}":      "checkoutcheckout",
		"literal":             "literal",
	} {
		got, err := consumerID(v, env)
		if err != nil || got != want {
			t.Errorf("consumerID(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
	if a, _ := consumerID("{uuid}", env); len(a) != 36 {
		t.Errorf("{uuid}: %q", a)
	}
	if _, err := consumerID("{podName}", Env{AppID: "a"}); err == nil || !strings.Contains(err.Error(), "podName") {
		t.Errorf("{podName} without a pod name: %v", err)
	}
	if _, err := consumerID("", Env{}); err == nil {
		t.Error("no consumerID and no app id: no error")
	}
}

// Each broker is a consumer of its own: the group, its replica name and a
// random part.
func TestConsumerNames(t *testing.T) {
	c1 := New("p", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), Config{Group: "app", Replica: "pod-1"})
	defer c1.Close()
	c2 := New("p", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), Config{Group: "app", Replica: "pod-1"})
	defer c2.Close()
	if !strings.HasPrefix(c1.Consumer(), "app-pod-1-") || c1.Consumer() == c2.Consumer() {
		t.Errorf("consumers %q and %q: want app-pod-1-<random>, apart", c1.Consumer(), c2.Consumer())
	}
}

// The stream entry is daprd's: "data" and "metadata" (JSON), and an entry
// daprd wrote is delivered with its metadata.
func TestWireCompatibleWithDaprd(t *testing.T) {
	srv := redisserver.Start(t)
	b := newBroker(t, srv.Addr, nil)
	ctx := context.Background()
	if err := b.Publish(ctx, &pubsub.Message{Topic: "orders", Data: []byte(`{"a":1}`), Metadata: map[string]string{"rawPayload": "true"}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, &pubsub.Message{Topic: "orders", Data: []byte("no metadata")}); err != nil {
		t.Fatal(err)
	}
	entries, err := b.client.XRange(ctx, "orders", "-", "+").Result()
	if err != nil || len(entries) != 2 {
		t.Fatalf("XRANGE: %v, %v", entries, err)
	}
	if v := entries[0].Values; len(v) != 2 || v["data"] != `{"a":1}` || v["metadata"] != `{"rawPayload":"true"}` {
		t.Errorf("entry %v; want data and metadata as daprd writes them", v)
	}
	if v := entries[1].Values; len(v) != 1 || v["data"] != "no metadata" {
		t.Errorf("entry %v; want data only", v)
	}
	// As daprd's publisher writes it (the map's order is Go's).
	if err := b.client.XAdd(ctx, &redis.XAddArgs{Stream: "orders", Values: map[string]any{"metadata": []byte(`{"k":"v"}`), "data": []byte("from daprd")}}).Err(); err != nil {
		t.Fatal(err)
	}
	got := make(chan pubsub.Message, 3)
	err = b.Subscribe(ctx, pubsub.Subscription{Topic: "orders"}, func(_ context.Context, d *pubsub.Delivery) error {
		got <- d.Message
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	byData := map[string]pubsub.Message{}
	for range 3 {
		m := <-got
		byData[string(m.Data)] = m
	}
	if m := byData["from daprd"]; m.Metadata["k"] != "v" || len(m.Metadata) != 1 {
		t.Errorf("daprd's entry delivered as %+v", m)
	}
	if m := byData[`{"a":1}`]; m.Metadata["rawPayload"] != "true" {
		t.Errorf("our entry delivered as %+v", m)
	}
}

func newBrokerLogging(t *testing.T, addr string, md map[string]string, w *syncbuf.Buffer) *Broker {
	all := map[string]string{"redisHost": addr, "dialTimeout": "500ms", "readTimeout": "500ms", "writeTimeout": "500ms"}
	for k, v := range md {
		all[k] = v
	}
	cfg, err := ParseMetadata(all, Env{AppID: "app"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(w, nil))
	b := Open("pubsub", cfg)
	t.Cleanup(func() {
		_ = b.Close()
		t.Log(w.String())
	})
	return b
}

// maxLenApprox trims the stream when publishing.
func TestMaxLenApprox(t *testing.T) {
	srv := redisserver.Start(t)
	b := newBroker(t, srv.Addr, map[string]string{"maxLenApprox": "100"})
	for i := range 1000 {
		if err := b.Publish(context.Background(), &pubsub.Message{Topic: "orders", Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	// "~" trims whole stream nodes (100 entries each by default).
	if n, err := b.client.XLen(context.Background(), "orders").Result(); err != nil || n < 100 || n > 200 {
		t.Errorf("stream length %d, %v; want about 100", n, err)
	}
	unbounded := newBroker(t, srv.Addr, nil)
	for i := range 300 {
		if err := unbounded.Publish(context.Background(), &pubsub.Message{Topic: "all", Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := b.client.XLen(context.Background(), "all").Result(); n != 300 {
		t.Errorf("stream length %d without maxLenApprox; want 300", n)
	}
}
func TestSubscribeErrors(t *testing.T) {
	srv := redisserver.Start(t)
	b := newBroker(t, srv.Addr, nil)
	ctx := context.Background()
	if err := b.client.Set(ctx, "plain", "a string", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err := b.Subscribe(ctx, pubsub.Subscription{Topic: "plain"}, nil)
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") || !strings.Contains(err.Error(), srv.Addr) {
		t.Errorf("Subscribe to a key that is not a stream: %v", err)
	}
	if err := b.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	srv.Stop()
	if err := b.Ping(ctx); err == nil || !strings.Contains(err.Error(), srv.Addr) {
		t.Errorf("Ping with Redis down: %v; want an error naming the server", err)
	}
	if err := b.Subscribe(ctx, pubsub.Subscription{Topic: "t"}, nil); err == nil {
		t.Error("Subscribe with Redis down: no error")
	}
	if err := b.Publish(ctx, &pubsub.Message{Topic: "t"}); err == nil || !strings.Contains(err.Error(), srv.Addr) {
		t.Errorf("Publish with Redis down: %v; want an error naming the server", err)
	}
	_ = b.Close()
	if err := b.Publish(ctx, &pubsub.Message{Topic: "t"}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Publish after Close: %v", err)
	}
}

// pendingOf is how many entries of stream are pending in group "app" for
// consumer ("": for all).
func pendingOf(t *testing.T, c redis.UniversalClient, stream, consumer string) int64 {
	t.Helper()
	p, err := c.XPending(context.Background(), stream, "app").Result()
	if err != nil {
		t.Fatalf("XPENDING: %v", err)
	}
	if consumer == "" {
		return p.Count
	}
	return p.Consumers[consumer]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A read answered MOVED or ASK (the stream's slot moved) waits for the
// cluster's slots and reads again: Redis answers, so the subscription is
// not said to be paused.
func TestReadMovedIsNoOutage(t *testing.T) {
	var logs syncbuf.Buffer
	b := &Broker{down: episode{log: slog.New(slog.NewTextHandler(&logs, nil))}}
	r := &reader{b: b}
	for _, err := range []error{errors.New("MOVED 3999 127.0.0.1:7002"), errors.New("ASK 3999 127.0.0.1:7002")} {
		if !r.failed(context.Background(), err) {
			t.Errorf("%v: read again at once; want a wait for the slots", err)
		}
	}
	if logs.String() != "" {
		t.Errorf("a moved slot logged as an outage:\n%s", logs.String())
	}
	r.failed(context.Background(), errors.New("dial tcp 127.0.0.1:1: connect: connection refused"))
	if !strings.Contains(logs.String(), "paused") {
		t.Errorf("an unreachable Redis not logged:\n%s", logs.String())
	}
}

// A run of failures is logged once, and a new run right after the last
// one logged is not: no flood while broken connections fail one by one.
func TestEpisodeLogsOnce(t *testing.T) {
	var logs syncbuf.Buffer
	e := episode{log: slog.New(slog.NewTextHandler(&logs, nil))}
	for range 3 {
		e.fail(fmt.Errorf("connection refused"))
	}
	e.ok()
	e.ok()
	for range 5 { // broken connections after the restart
		e.fail(fmt.Errorf("EOF"))
		e.ok()
	}
	if p, r := strings.Count(logs.String(), "paused"), strings.Count(logs.String(), "resumed"); p != 1 || r != 1 {
		t.Errorf("%d paused and %d resumed lines; want 1 each:\n%s", p, r, logs.String())
	}
	e.last = time.Now().Add(-quietFor)
	e.fail(fmt.Errorf("down again"))
	if p := strings.Count(logs.String(), "paused"); p != 2 {
		t.Errorf("a new outage a minute later: %d paused lines, want 2", p)
	}
}

// A subscription that follows one that ended, on the same broker and
// topic, takes the entries the first released (a handler that failed once
// its subscription had ended: a streaming subscription whose stream broke
// before the app answered) at once, not at its next redeliverInterval,
// even when it started before they were released.
func TestReleasedEntriesClaimedAtOnce(t *testing.T) {
	srv := redisserver.Start(t)
	b := newBroker(t, srv.Addr, map[string]string{"processingTimeout": "60s", "redeliverInterval": "60s"})
	ctx := context.Background()

	got1 := make(chan string, 1)
	answer1 := make(chan error)
	ctx1, end1 := context.WithCancel(ctx)
	err := b.Subscribe(ctx1, pubsub.Subscription{Topic: "orders"}, func(_ context.Context, d *pubsub.Delivery) error {
		got1 <- d.ID
		return <-answer1
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, &pubsub.Message{Topic: "orders", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	var id string
	select {
	case id = <-got1:
	case <-time.After(10 * time.Second):
		t.Fatal("the first subscription got nothing")
	}
	end1()

	got2 := make(chan string, 1)
	if err := b.Subscribe(ctx, pubsub.Subscription{Topic: "orders"}, func(_ context.Context, d *pubsub.Delivery) error {
		got2 <- d.ID
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the second's first claim is over: what it gets now comes from the release
	start := time.Now()
	answer1 <- errors.New("the stream broke before the app answered")
	select {
	case id2 := <-got2:
		if id2 != id {
			t.Errorf("the second subscription got %s, want the released %s", id2, id)
		}
		t.Logf("released entry taken by the next subscription %s after its release", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the released entry did not come to the next subscription within 10 s (redeliverInterval is 60 s)")
	}
}
