package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// Allocations per invocation through two in-process sidecars (HTTP API,
// hop, app channel; the client and the app are counted too, as the process
// makes them), and the bytes they take. Not a timing: counts the hot path
// must not grow past, so that a regression fails make test. The bounds are
// today's counts and a tenth more (bytes: a quarter, as exporting spans and
// the pools vary them more); lower them when the path gets leaner. Bytes
// are bounded as well as allocations: a 32 KB buffer made on every call is
// one allocation, and was two thirds of a call's bytes before anything
// said so.
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
	conf := tracingConfig(t)
	for _, c := range []struct {
		name   string
		extra  []string
		bound  float64
		kbytes float64
	}{
		{"plaintext", []string{"--enable-mtls=false"}, 330, 34},
		{"mtls", nil, 345, 35},
		// Every call sampled and exported, as the calculator traces.
		{"traced", []string{"--config", conf}, 395, 45},
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
			kb := bytesPerRun(300, call) / 1024
			t.Logf("%.1f KiB allocated per invocation (bound %.0f)", kb, c.kbytes)
			if kb > c.kbytes {
				t.Errorf("%.1f KiB allocated per invocation, over the bound of %.0f KiB: the hot path allocates more than it did", kb, c.kbytes)
			}
		})
	}
}

// bytesPerRun is the bytes the process allocates per call of f, over runs
// calls.
func bytesPerRun(runs int, f func()) float64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / float64(runs)
}

// tracingConfig is a Configuration that samples every call and exports it
// to a Zipkin collector of the test's that takes and drops the spans.
func tracingConfig(t testing.TB) string {
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(collector.Close)
	conf := filepath.Join(t.TempDir(), "tracing.yaml")
	if err := os.WriteFile(conf, resources.ZipkinYAML("tracing", collector.URL+"/api/v2/spans"), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

// Allocations per state save of one item of 1 KiB, and per get of it, on
// the embedded store through an in-process sidecar's HTTP API, the client
// counted too.
func TestStateAllocations(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("counts allocations of a build without the race detector")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := startInProcess(t, ctx, t.TempDir(), []string{"--app-id", "alloc-state"})
	value := `"` + strings.Repeat("x", 1024) + `"`
	body := []byte(`[{"key":"k","value":` + value + `}]`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	save := func() {
		resp, err := client.Post("http://"+addr+"/v1.0/state/statestore", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("save: status %d", resp.StatusCode)
		}
	}
	get := func() {
		resp, err := client.Get("http://" + addr + "/v1.0/state/statestore/k")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n != int64(len(value)) {
			t.Fatalf("get: status %d, %d bytes", resp.StatusCode, n)
		}
	}
	for _, c := range []struct {
		name   string
		call   func()
		bound  float64
		kbytes float64
	}{
		{"save", save, 101, 11},
		{"get", get, 93, 8},
	} {
		t.Run(c.name, func(t *testing.T) {
			for range 50 {
				c.call()
			}
			got := testing.AllocsPerRun(300, c.call)
			t.Logf("%.0f allocations per %s (bound %.0f)", got, c.name, c.bound)
			if got > c.bound {
				t.Errorf("%.0f allocations per %s, over the bound of %.0f: the state path allocates more than it did", got, c.name, c.bound)
			}
			kb := bytesPerRun(300, c.call) / 1024
			t.Logf("%.1f KiB allocated per %s (bound %.0f)", kb, c.name, c.kbytes)
			if kb > c.kbytes {
				t.Errorf("%.1f KiB allocated per %s, over the bound of %.0f KiB: the state path allocates more than it did", kb, c.name, c.kbytes)
			}
		})
	}
}
