package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
)

// TestStateFloor stores and reads a value through the state floor in a
// real redis-server, and reads it back with go-redis.
func TestStateFloor(t *testing.T) {
	rs := redisserver.Start(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: rs.Addr})
	defer rdb.Close()
	srv := httptest.NewServer(stateFloorHandler(rdb))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/state/k")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("a missing key: %s, want 204", resp.Status)
	}

	value := bytes.Repeat([]byte("v"), 1024)
	resp, err = http.Post(srv.URL+"/state/k", "application/octet-stream", bytes.NewReader(value))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("save: %s", resp.Status)
	}
	if got, err := rdb.Get(t.Context(), "k").Bytes(); err != nil || !bytes.Equal(got, value) {
		t.Errorf("in Redis: %d bytes, %v; want the 1024 saved", len(got), err)
	}

	resp, err = http.Get(srv.URL + "/state/k")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, value) {
		t.Errorf("get: %s, %d bytes; want 200 with the value", resp.Status, len(got))
	}

	rs.Stop()
	resp, err = http.Get(srv.URL + "/state/k")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("Redis down: %s, want 500", resp.Status)
	}
}

// TestStateFloorEmbedded stores and reads a value through the state floor
// over a map.
func TestStateFloorEmbedded(t *testing.T) {
	srv := httptest.NewServer(stateFloorMapHandler(newMemMap()))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/state/k")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("a missing key: %s, want 204", resp.Status)
	}
	value := bytes.Repeat([]byte("v"), 1024)
	resp, err = http.Post(srv.URL+"/state/k", "application/octet-stream", bytes.NewReader(value))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("save: %s", resp.Status)
	}
	resp, err = http.Get(srv.URL + "/state/k")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, value) {
		t.Errorf("get: %s, %d bytes; want 200 with the value", resp.Status, len(got))
	}
}
