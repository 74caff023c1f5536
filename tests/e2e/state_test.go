package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/counter"
	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

func TestStateEmbeddedDefault(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar("stateapp", 0)
	resp, b := do(t, "POST", s.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"calculatorState","value":{"total":"54","next":null,"operation":null}}]`), nil)
	if resp.StatusCode != 204 {
		t.Fatalf("save: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", s.url+"/v1.0/state/statestore/calculatorState", nil, nil)
	if resp.StatusCode != 200 || string(b) != `{"total":"54","next":null,"operation":null}` {
		t.Fatalf("get: %d %s", resp.StatusCode, b)
	}
	if !strings.Contains(s.Out.String(), "embedded in-memory store") {
		t.Errorf("the log does not say the embedded store is in use")
	}
	_, b = do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	if !strings.Contains(string(b), `"name":"statestore","type":"state.in-memory"`) {
		t.Errorf("metadata lists no embedded store: %s", b)
	}
}

func TestStateRedisComponent(t *testing.T) {
	srv := redisserver.Start(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "statestore.yaml"), resources.RedisYAML("statestore", srv.Addr, "dialTimeout", "300ms"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	s := w.sidecar("redisapp", 0, "--resources-path", dir)
	resp, b := do(t, "POST", s.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"k","value":"v"}]`), nil)
	if resp.StatusCode != 204 {
		t.Fatalf("save: %d %s", resp.StatusCode, b)
	}
	// The value is in Redis under the app id prefix.
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer rc.Close()
	if v, err := rc.HGet(context.Background(), "redisapp||k", "data").Result(); err != nil || v != `"v"` {
		t.Fatalf("redis holds %q, %v", v, err)
	}
	// Redis down: a fast, clear 500; back up: it works again by itself.
	srv.Stop()
	start := time.Now()
	resp, b = do(t, "GET", s.url+"/v1.0/state/statestore/k", nil, nil)
	if resp.StatusCode != 500 || !strings.Contains(string(b), "ERR_STATE_GET") || !strings.Contains(string(b), srv.Addr) {
		t.Errorf("with Redis down: %d %s", resp.StatusCode, b)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failing request took %s", d)
	}
	srv.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, b = do(t, "POST", s.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"k","value":"again"}]`), nil)
		if resp.StatusCode == 204 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %d %s", resp.StatusCode, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestBadComponentStopsTheSidecar(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "store.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.cassandra\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := proc.For(t).Start("sidecar", sidecarBin, nil, "--app-id", "x", "--dapr-http-port", "0", "--dapr-grpc-port", "0",
		"--dapr-internal-grpc-port", "0", "--metrics-port", "0", "--resources-path", dir, "--registry-dir", t.TempDir())
	if code := proc.For(t).ExitCode(p, 10*time.Second); code == 0 {
		t.Fatal("sidecar started with a bad component")
	}
	for _, want := range []string{file, "state.cassandra", "state.redis"} {
		if !strings.Contains(p.Out.String(), want) {
			t.Errorf("output does not mention %q:\n%s", want, p.Out.String())
		}
	}
}

func TestBadFlagExitsNamingIt(t *testing.T) {
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"--app-port", "99999"}, "--app-port"},
		// Past what an int or a Duration holds: refused, never wrapped.
		{[]string{"--dapr-graceful-shutdown-seconds", "18446744074"}, `--dapr-graceful-shutdown-seconds "18446744074" is not valid`},
		{[]string{"--app-max-concurrency", "99999999999999999999"}, `--app-max-concurrency "99999999999999999999" is not valid`},
		{[]string{"--app-max-concurrency", "-2"}, "-1 or 0 for no bound"},
		{[]string{"--dapr-http-read-buffer-size", "9999999"}, "--dapr-http-read-buffer-size"},
	} {
		p := proc.For(t).Start("sidecar", sidecarBin, nil, append([]string{"--app-id", "x"}, c.args...)...)
		if code := proc.For(t).ExitCode(p, 10*time.Second); code != 2 {
			t.Errorf("%v: exit code %d, want 2", c.args, code)
		}
		if !strings.Contains(p.Out.String(), c.says) {
			t.Errorf("%v: output does not say %q: %s", c.args, c.says, p.Out.String())
		}
	}
}

// TestConcurrentIncrementsThroughSidecar: 20 clients add to one counter
// through a real sidecar with read-ETag-write retries; none is lost.
func TestConcurrentIncrementsThroughSidecar(t *testing.T) {
	srv := redisserver.Start(t)
	dir := t.TempDir()
	comp := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: " + srv.Addr + "\n"
	if err := os.WriteFile(filepath.Join(dir, "statestore.yaml"), []byte(comp), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, extra := range map[string][]string{"embedded": nil, "redis": {"--resources-path", dir}} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			s := w.sidecar("counter-"+name, 0, extra...)
			base := s.url + "/v1.0/state/statestore"
			const clients, each = 20, 5
			if err := counter.Concurrently(base, "counter", clients, each); err != nil {
				t.Error(err)
			}
			_, b := do(t, "GET", base+"/counter", nil, nil)
			if string(b) != strconv.Itoa(clients*each) {
				t.Errorf("counter = %s, want %d", b, clients*each)
			}
		})
	}
}

// --resources-path may be given more than once, as daprd takes it: the
// Components of every folder are loaded, and a store added to the second
// folder while the sidecar serves comes into use.
func TestSeveralResourcesPaths(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	comp := func(name string) []byte {
		return []byte("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: " + name + "\nspec:\n  type: state.in-memory\n  version: v1\n  metadata: []\n")
	}
	if err := os.WriteFile(filepath.Join(first, "a.yaml"), comp("storea"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(second, "b.yaml"), comp("storeb"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	s := w.sidecar("paths", 0, "--resources-path", first, "--resources-path", second)
	for _, store := range []string{"storea", "storeb"} {
		if resp, b := do(t, "POST", s.url+"/v1.0/state/"+store, strings.NewReader(`[{"key":"k","value":1}]`), nil); resp.StatusCode != 204 {
			t.Errorf("save to %s: %d %s", store, resp.StatusCode, b)
		}
	}
	if err := os.WriteFile(filepath.Join(second, "c.yaml"), comp("storec"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, b := do(t, "POST", s.url+"/v1.0/state/storec", strings.NewReader(`[{"key":"k","value":1}]`), nil)
		if resp.StatusCode == 204 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a store added to the second folder is not in use: %d %s", resp.StatusCode, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
