package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	psredis "github.com/tandem-run/tandem/pkg/pubsub/redis"
)

// The pub/sub floor is the least that publishing to Redis Streams and
// delivering to an app over HTTP costs, in two processes as the sidecars
// are two, this binary re-run in its modes:
//
//	bench -pubsub-floor-pub LISTEN REDIS
//	bench -pubsub-floor-sub LISTEN REDIS GROUP TOPIC APPURL CONCURRENCY
//
// The publisher answers POST /publish/TOPIC with XADD TOPIC * data BODY,
// 204 once Redis answered. The subscriber creates the consumer group at the
// stream's start (as the sidecar does), reads new entries with XREADGROUP,
// up to CONCURRENCY at a time, and has CONCURRENCY workers POST each
// entry's data to APPURL and XACK it when the app answered 2xx. Both use a
// go-redis client configured as the sidecar's pubsub.redis component
// configures its own. Neither wraps, decodes nor checks anything, and the
// subscriber neither claims entries left pending nor keeps them fresh: no
// redelivery, the part of at-least-once delivery a floor can leave out.
// The subscriber listens only to tell the harness it is ready (its group
// exists), answering 204 to anything.
func servePubSubFloorPub(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: -pubsub-floor-pub LISTEN REDIS, got %q", args)
	}
	rdb, err := pubsubFloorClient(args[1])
	if err != nil {
		return err
	}
	defer rdb.Close()
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	announce(ln)
	return http.Serve(ln, pubFloorHandler(rdb))
}

func servePubSubFloorSub(args []string) error {
	if len(args) != 6 {
		return fmt.Errorf("usage: -pubsub-floor-sub LISTEN REDIS GROUP TOPIC APPURL CONCURRENCY, got %q", args)
	}
	n, err := strconv.Atoi(args[5])
	if err != nil || n < 1 {
		return fmt.Errorf("-pubsub-floor-sub: CONCURRENCY %q: want a whole number from 1", args[5])
	}
	rdb, err := pubsubFloorClient(args[1])
	if err != nil {
		return err
	}
	defer rdb.Close()
	sf := &subFloor{rdb: rdb, group: args[2], topic: args[3], url: args[4], concurrency: n}
	ctx := context.Background()
	if err := sf.createGroup(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	announce(ln)
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	}()
	return sf.Run(ctx)
}

// pubsubFloorClient is a go-redis client configured as the sidecar's
// pubsub.redis component configures its own.
func pubsubFloorClient(addr string) (*goredis.Client, error) {
	cfg, err := psredis.ParseMetadata(map[string]string{"redisHost": addr}, psredis.Env{AppID: "bench-floor"})
	if err != nil {
		return nil, err
	}
	return goredis.NewClient(cfg.Conn.Options.Simple()), nil
}

func pubFloorHandler(rdb *goredis.Client) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /publish/{topic}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := rdb.XAdd(r.Context(), &goredis.XAddArgs{Stream: r.PathValue("topic"), Values: []any{"data", body}}).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// subFloor is the pub/sub floor's subscriber.
type subFloor struct {
	rdb         *goredis.Client
	group       string
	topic       string
	url         string
	concurrency int
	client      *http.Client // nil: one with concurrency keep-alive connections
}

// createGroup creates the consumer group at the stream's start, and the
// stream if need be; a group that exists is fine.
func (f *subFloor) createGroup(ctx context.Context) error {
	err := f.rdb.XGroupCreateMkStream(ctx, f.topic, f.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("redis: XGROUP CREATE %s %s: %w", f.topic, f.group, err)
	}
	return nil
}

// Run reads and delivers until ctx ends or Redis fails.
func (f *subFloor) Run(ctx context.Context) error {
	client := f.client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConns: f.concurrency, MaxIdleConnsPerHost: f.concurrency, IdleConnTimeout: time.Minute,
		}}
	}
	// Each message held takes a slot until acknowledged (or not), so that
	// at most concurrency are read and not finished, as the sidecar bounds
	// its own with queueDepth.
	slots := make(chan struct{}, f.concurrency)
	work := make(chan goredis.XMessage, f.concurrency)
	defer close(work)
	for range f.concurrency {
		go func() {
			for m := range work {
				f.deliver(ctx, client, m)
				<-slots
			}
		}()
	}
	for {
		slots <- struct{}{}
		n := 1
		for n < f.concurrency && tryTake(slots) {
			n++
		}
		streams, err := f.rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{
			Group: f.group, Consumer: "floor", Streams: []string{f.topic, ">"}, Count: int64(n), Block: time.Second,
		}).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("redis: XREADGROUP: %w", err)
		}
		got := 0
		for _, s := range streams {
			for _, m := range s.Messages {
				work <- m
				got++
			}
		}
		for range n - got {
			<-slots
		}
	}
}

// deliver POSTs m's data to the app and acknowledges it when the app
// answered 2xx.
func (f *subFloor) deliver(ctx context.Context, client *http.Client, m goredis.XMessage) {
	data, _ := m.Values["data"].(string)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewBufferString(data))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_ = f.rdb.XAck(ctx, f.topic, f.group, m.ID).Err()
	}
}

// tryTake takes a slot if one is free at once.
func tryTake(slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
		return false
	}
}
