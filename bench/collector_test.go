package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestCollectorCountsSpans(t *testing.T) {
	srv := httptest.NewServer(collectorHandler(new(atomic.Int64)))
	defer srv.Close()
	post := func(body string) int {
		t.Helper()
		resp, err := http.Post(srv.URL+"/api/v2/spans", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(`[{"traceId":"1","id":"a"},{"traceId":"1","id":"b"}]`); got != http.StatusAccepted {
		t.Errorf("a batch of two: %d, want 202", got)
	}
	if got := post(`[{"traceId":"1","id":"c"}`); got != http.StatusBadRequest {
		t.Errorf("a cut batch: %d, want 400", got)
	}
	if got := post(`[{"id":"d"}]`); got != http.StatusAccepted {
		t.Errorf("a batch of one: %d, want 202", got)
	}
	resp, err := http.Get(srv.URL + "/count")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "3" {
		t.Errorf("count %q, want 3 (the cut batch not counted)", b)
	}
}
