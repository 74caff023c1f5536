package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// Redis stopped and restarted under load: while it is down every save fails
// fast with an error naming the store's address; after, saves succeed by
// themselves; and every save that was acknowledged is there.
func TestRedisOutageUnderLoad(t *testing.T) {
	srv := redisserver.StartDurable(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "statestore.yaml"), resources.RedisYAML("statestore", srv.Addr, "dialTimeout", "300ms"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	s := w.sidecar("durable", 0, "--resources-path", dir)

	var mu sync.Mutex
	acked := map[string]int{}
	var failures, slow int
	var firstErr string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", g, n)
				start := time.Now()
				resp, b := do(t, "POST", s.url+"/v1.0/state/statestore", strings.NewReader(fmt.Sprintf(`[{"key":%q,"value":%d}]`, key, n)), nil)
				took := time.Since(start)
				mu.Lock()
				switch {
				case resp.StatusCode == 204:
					acked[key] = n
				default:
					failures++
					if took > 5*time.Second {
						slow++
					}
					if !strings.Contains(string(b), "ERR_STATE_SAVE") || !strings.Contains(string(b), srv.Addr) {
						firstErr = fmt.Sprintf("%d %s", resp.StatusCode, b)
					}
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	srv.Stop()
	time.Sleep(1500 * time.Millisecond)
	srv.Restart(t)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	if failures == 0 {
		t.Fatal("no save failed while Redis was down: the outage was not tested")
	}
	if slow > 0 || firstErr != "" {
		t.Errorf("%d failures took over 5 s; an unclear error: %s", slow, firstErr)
	}
	// Every acknowledged save is readable, with its value.
	lost := 0
	for key, n := range acked {
		resp, b := do(t, "GET", s.url+"/v1.0/state/statestore/"+key, nil, nil)
		if resp.StatusCode != 200 || string(b) != fmt.Sprint(n) {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged %s=%d reads %d %q", key, n, resp.StatusCode, b)
			}
		}
	}
	t.Logf("%d saves acknowledged, %d refused during the outage, %d lost", len(acked), failures, lost)
	// And it works again.
	if resp, b := do(t, "POST", s.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"after","value":1}]`), nil); resp.StatusCode != 204 {
		t.Errorf("after the restart: %d %s", resp.StatusCode, b)
	}
}

// The callee's sidecar killed in the middle of a call: the caller gets a
// clear error at once, not a hang, and goes on serving.
func TestCalleeSidecarKilledMidCall(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("victim")
	callee := w.sidecar("victim", appPort)
	caller := w.sidecar("front", 0)
	callee.waitHealthy(t)
	done := make(chan string, 1)
	go func() {
		resp, b := do(t, "GET", caller.url+"/v1.0/invoke/victim/method/slow", nil, nil)
		done <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	time.Sleep(300 * time.Millisecond) // the call waits in the app
	if err := callee.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if !strings.HasPrefix(got, "500 ") || !strings.Contains(got, "ERR_DIRECT_INVOKE") || !strings.Contains(got, "victim") {
			t.Errorf("the call in flight ended with %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call in flight hangs after the callee's sidecar died")
	}
	resp, b := do(t, "GET", caller.url+"/v1.0/invoke/victim/method/echo/x", nil, nil)
	if resp.StatusCode != 500 || !strings.Contains(string(b), "victim") {
		t.Errorf("a new call to the dead app: %d %s", resp.StatusCode, b)
	}
	caller.waitHealthy(t)
}
