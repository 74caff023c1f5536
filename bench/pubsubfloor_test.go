package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
)

// TestPubSubFloor publishes through the floor's publisher into a real
// redis-server and delivers with its subscriber to an app: an event the
// app takes is acknowledged, one it refuses stays pending in Redis.
func TestPubSubFloor(t *testing.T) {
	rs := redisserver.Start(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: rs.Addr})
	defer rdb.Close()
	pub := httptest.NewServer(pubFloorHandler(rdb))
	defer pub.Close()

	status := make(chan int, 1)
	got := make(chan []byte, 4)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		got <- b.Bytes()
		w.WriteHeader(<-status)
	}))
	defer app.Close()
	sf := &subFloor{rdb: rdb, group: "g", topic: "orders", url: app.URL, concurrency: 2}
	if err := sf.createGroup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := sf.createGroup(t.Context()); err != nil {
		t.Fatalf("a group that exists: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- sf.Run(ctx) }()

	publish := func(body string) {
		t.Helper()
		resp, err := http.Post(pub.URL+"/publish/orders", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("publish: %s, want 204", resp.Status)
		}
	}
	pending := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			p, err := rdb.XPending(t.Context(), "orders", "g").Result()
			if err != nil {
				t.Fatal(err)
			}
			if p.Count == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d pending in Redis, want %d", p.Count, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	status <- http.StatusOK
	publish(`{"n":1}`)
	if b := <-got; string(b) != `{"n":1}` {
		t.Errorf("the app received %q, want the body published", b)
	}
	pending(0)

	status <- http.StatusInternalServerError
	publish(`{"n":2}`)
	<-got
	pending(1)

	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run after its context ended: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return 30 s after its context ended")
	}
	if n, err := rdb.XLen(t.Context(), "orders").Result(); err != nil || n != 2 {
		t.Errorf("the stream holds %d entries (%v), want the 2 published", n, err)
	}
}

// TestPubSubFloorArgs: the floor modes refuse a wrong command line with
// their usage.
func TestPubSubFloorArgs(t *testing.T) {
	for _, tc := range []struct {
		serve func([]string) error
		args  []string
	}{
		{servePubSubFloorPub, []string{"127.0.0.1:0"}},
		{servePubSubFloorSub, []string{"127.0.0.1:0", "127.0.0.1:1", "g", "t", "http://x/"}},
		{servePubSubFloorSub, []string{"127.0.0.1:0", "127.0.0.1:1", "g", "t", "http://x/", "0"}},
	} {
		if err := tc.serve(tc.args); err == nil {
			t.Errorf("%q: no error", tc.args)
		}
	}
}
