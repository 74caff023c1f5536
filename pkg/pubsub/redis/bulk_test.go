package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// roundTrips counts a client's round trips to Redis: single commands by
// name, and pipelines.
type roundTrips struct {
	mu        sync.Mutex
	single    map[string]int
	pipelines int
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := strings.ToLower(cmd.Name()); name != "hello" { // a new connection's
			r.mu.Lock()
			r.single[name]++
			r.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if strings.ToLower(cmds[0].Name()) != "client" { // not a new connection's CLIENT SETINFO
			r.mu.Lock()
			r.pipelines++
			r.mu.Unlock()
		}
		return next(ctx, cmds)
	}
}

func (r *roundTrips) take() (map[string]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, p := r.single, r.pipelines
	r.single, r.pipelines = map[string]int{}, 0
	return s, p
}

// countedBroker returns a broker on addr whose client counts its round
// trips.
func countedBroker(t *testing.T, addr string, md map[string]string) (*Broker, *roundTrips) {
	t.Helper()
	all := map[string]string{"redisHost": addr, "dialTimeout": "500ms", "readTimeout": "500ms", "writeTimeout": "500ms"}
	for k, v := range md {
		all[k] = v
	}
	cfg, err := ParseMetadata(all, Env{AppID: "app"})
	if err != nil {
		t.Fatal(err)
	}
	client := cfg.Conn.NewClient()
	rt := &roundTrips{single: map[string]int{}}
	client.AddHook(rt)
	b := New("pubsub", client, cfg)
	t.Cleanup(func() { _ = b.Close() })
	return b, rt
}

// A bulk publish through the Service is one round trip to Redis, whatever
// its size; each entry keeps its own answer and its own middleware: one
// the middleware refuses is the only one failed, and a try again after
// the bulk went alone.
func TestBulkPublishOneRoundTrip(t *testing.T) {
	srv := redisserver.Start(t)
	b, rt := countedBroker(t, srv.Addr, nil)
	svc := pubsub.NewService()
	var mu sync.Mutex
	calls := map[string]int{}
	refused := errors.New("refused by the middleware")
	svc.Use(func(ctx context.Context, c *pubsub.Call, next func(context.Context) error) error {
		mu.Lock()
		calls[string(c.Message.Data)]++
		mu.Unlock()
		switch string(c.Message.Data) {
		case "e7":
			return refused
		case "e9": // a retry after a first try that went through
			if err := next(ctx); err != nil {
				return err
			}
			return next(ctx)
		}
		return next(ctx)
	})
	if err := svc.Add(pubsub.BrokerConfig{Name: "pubsub", Type: "pubsub.redis", Broker: b}); err != nil {
		t.Fatal(err)
	}
	const n = 100
	ms := make([]*pubsub.Message, n)
	for i := range ms {
		ms[i] = &pubsub.Message{Topic: "orders", Data: []byte(fmt.Sprint("e", i)), Metadata: map[string]string{"k": "v"}}
	}
	rt.take()
	errs := svc.PublishBulk(context.Background(), "pubsub", ms, nil)
	single, pipelines := rt.take()
	for i, err := range errs {
		if (i == 7) != (err != nil) || (i == 7 && !errors.Is(err, refused)) {
			t.Errorf("entry %d: %v", i, err)
		}
	}
	// e9's second try went alone: one XADD besides the pipeline.
	if pipelines != 1 || single["xadd"] != 1 || len(single) != 1 {
		t.Errorf("a bulk publish of %d took %d pipelines and single commands %v; want one pipeline and e9's retry", n, pipelines, single)
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	entries, err := admin.XRange(context.Background(), "orders", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n { // all but e7, and e9 twice
		t.Errorf("%d entries in the stream; want %d", len(entries), n)
	}
	for _, e := range entries {
		if e.Values["metadata"] != `{"k":"v"}` {
			t.Errorf("entry %v: want the metadata kept", e.Values)
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["e0"] != 1 || calls["e99"] != 1 || len(calls) != n {
		t.Errorf("middleware calls %v; want one per entry", calls)
	}
}

// PublishBulk answers each entry as Redis did: one stream key that is not
// a stream fails alone; with maxLenApprox the stream is trimmed; with
// waitForReplicas (a server without replicas) every entry added says so,
// in one round trip with its WAIT.
func TestPublishBulkPerEntry(t *testing.T) {
	srv := redisserver.Start(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	ctx := context.Background()
	if err := admin.Set(ctx, "not-a-stream", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	b, rt := countedBroker(t, srv.Addr, map[string]string{"maxLenApprox": "10"})
	var ms []*pubsub.Message
	for i := range 300 {
		topic := "orders"
		if i == 5 {
			topic = "not-a-stream"
		}
		ms = append(ms, &pubsub.Message{Topic: topic, Data: []byte(fmt.Sprint(i))})
	}
	errs := b.PublishBulk(ctx, ms)
	for i, err := range errs {
		if (i == 5) != (err != nil) || (i == 5 && !strings.Contains(err.Error(), "WRONGTYPE")) {
			t.Errorf("entry %d: %v", i, err)
		}
	}
	if _, p := rt.take(); p != 1 {
		t.Errorf("%d pipelines; want 1", p)
	}
	if n, err := admin.XLen(ctx, "orders").Result(); err != nil || n >= 299 {
		t.Errorf("XLEN %d, %v: want the stream trimmed to about 10", n, err)
	}

	w, rt := countedBroker(t, srv.Addr, map[string]string{"waitForReplicas": "1", "readTimeout": "200ms"})
	errs = w.PublishBulk(ctx, ms[:3])
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "0 of 1 replicas") {
			t.Errorf("entry %d with waitForReplicas and no replica: %v", i, err)
		}
	}
	if s, p := rt.take(); p != 1 || len(s) != 0 {
		t.Errorf("%d pipelines, single commands %v; want one pipeline", p, s)
	}
}
