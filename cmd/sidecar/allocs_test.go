package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Allocations per invocation through two in-process sidecars (HTTP API,
// hop, app channel; the client and the app are counted too, as the process
// makes them). Not a timing: a count the hot path must not grow past, so
// that a regression fails make test. The bounds are today's counts and a
// tenth more; lower them when the path gets leaner.
func TestInvokeAllocations(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("counts allocations of a build without the race detector")
	}
	payload := bytes.Repeat([]byte("x"), 1024)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(body)
	}))
	defer app.Close()
	_, appPort, _ := net.SplitHostPort(app.Listener.Addr().String())
	for _, c := range []struct {
		name  string
		extra []string
		bound float64
	}{
		{"plaintext", []string{"--enable-mtls=false"}, 330},
		{"mtls", nil, 345},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			reg := t.TempDir()
			startInProcess(t, ctx, reg, append([]string{"--app-id", "alloc-app", "--app-port", appPort}, c.extra...))
			caller := startInProcess(t, ctx, reg, append([]string{"--app-id", "alloc-client"}, c.extra...))
			url := "http://" + caller + "/v1.0/invoke/alloc-app/method/echo"
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			call := func() {
				resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(payload))
				if err != nil {
					t.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n != int64(len(payload)) {
					t.Fatal(fmt.Errorf("status %d, %d bytes", resp.StatusCode, n))
				}
			}
			for range 50 { // warm the connections and pools
				call()
			}
			got := testing.AllocsPerRun(300, call)
			t.Logf("%.0f allocations per invocation (bound %.0f)", got, c.bound)
			if got > c.bound {
				t.Errorf("%.0f allocations per invocation, over the bound of %.0f: the hot path allocates more than it did", got, c.bound)
			}
		})
	}
}
