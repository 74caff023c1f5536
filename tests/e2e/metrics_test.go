package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestPrometheusMetrics(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("metapp")
	callee := w.sidecar("metapp", appPort)
	caller := w.sidecar("front", 0)
	callee.waitHealthy(t)

	for range 3 {
		if resp, b := do(t, "POST", caller.url+"/v1.0/invoke/metapp/method/echo/secret-path-123", strings.NewReader("x"), nil); resp.StatusCode != 200 {
			t.Fatalf("invoke: %d %s", resp.StatusCode, b)
		}
	}
	do(t, "GET", caller.url+"/v1.0/invoke/nosuchapp/method/x", nil, nil)
	if resp, b := do(t, "POST", caller.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"k","value":1}]`), nil); resp.StatusCode != 204 {
		t.Fatalf("save: %d %s", resp.StatusCode, b)
	}
	do(t, "POST", caller.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"k","value":2,"etag":"999"}]`), nil)
	if _, err := sdkClient(t, caller).GetState(ctxT(t), "statestore", "k", nil); err != nil {
		t.Fatal(err)
	}

	_, b := do(t, "GET", caller.url+"/v1.0/metadata", nil, nil)
	var md struct{ Ports struct{ Metrics int } }
	if err := json.Unmarshal(b, &md); err != nil || md.Ports.Metrics == 0 {
		t.Fatalf("metadata: %s %v", b, err)
	}
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(md.Ports.Metrics) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		`tandem_http_server_requests_total{app_id="front",route="InvokeService",status="200"} 3`,
		`tandem_http_server_requests_total{app_id="front",route="InvokeService",status="500"} 1`,
		`tandem_http_server_requests_total{app_id="front",route="SaveState",status="409"} 1`,
		`tandem_invoke_requests_total{app_id="front",status="200",target="metapp"} 3`,
		`tandem_state_operations_total{app_id="front",operation="set",outcome="ok",store="statestore"} 1`,
		`tandem_state_operations_total{app_id="front",operation="set",outcome="conflict",store="statestore"} 1`,
		`tandem_grpc_server_requests_total{app_id="front",code="OK",method="/dapr.proto.runtime.v1.Dapr/GetState"} 1`,
		`tandem_http_server_request_duration_seconds_count{app_id="front",route="InvokeService"} 4`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// A sidecar runs on one CPU by default (internal/maxprocs), unless
	// its container has a CPU limit.
	if limit, _ := os.ReadFile("/sys/fs/cgroup/cpu.max"); len(limit) == 0 || strings.HasPrefix(string(limit), "max") {
		if !strings.Contains(text, "\ngo_sched_gomaxprocs_threads 1\n") {
			t.Error("/metrics: go_sched_gomaxprocs_threads is not 1 (the sidecar's default GOMAXPROCS)")
		}
	}
	// Its collector runs at GOGC=200 (cmd/sidecar/gc.go) unless GOGC says.
	if os.Getenv("GOGC") == "" && !strings.Contains(text, "\ngo_gc_gogc_percent 200\n") {
		t.Error("/metrics: go_gc_gogc_percent is not 200 (the sidecar's default GOGC)")
	}
	if strings.Contains(text, "secret-path") || strings.Contains(text, `key="k"`) {
		t.Error("a method path or key became a label")
	}
	if t.Failed() {
		for line := range strings.SplitSeq(text, "\n") {
			if strings.HasPrefix(line, "tandem_") && !strings.Contains(line, "_bucket") {
				t.Log(line)
			}
		}
	}
}

// The sidecar starts on one CPU before its packages initialise
// (internal/maxprocs); what --max-procs and GOMAXPROCS say still wins, and
// --max-procs 0 gives back Go's own default.
func TestMaxProcs(t *testing.T) {
	w := newWorld(t)
	goDefault := runtime.NumCPU()
	if limit, _ := os.ReadFile("/sys/fs/cgroup/cpu.max"); len(limit) > 0 && !strings.HasPrefix(string(limit), "max") {
		goDefault = 0 // Go rounds the limit up; not worked out here
	}
	for _, c := range []struct {
		id   string
		env  []string
		args []string
		want int
	}{
		{"procs-default", nil, nil, 1},
		{"procs-flag", nil, []string{"--max-procs", "3"}, 3},
		{"procs-env", []string{"GOMAXPROCS=3"}, nil, 3},
		{"procs-go", nil, []string{"--max-procs", "0"}, goDefault},
	} {
		if c.want == 0 {
			continue
		}
		s := w.sidecarEnv(c.id, 0, c.env, c.args...)
		if got := gomaxprocs(t, s); got != c.want {
			t.Errorf("%s (%v %v): go_sched_gomaxprocs_threads %d, want %d", c.id, c.env, c.args, got, c.want)
		}
	}
}

// gomaxprocs reads a sidecar's GOMAXPROCS from its /metrics.
func gomaxprocs(t *testing.T, s *sidecar) int {
	t.Helper()
	_, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	var md struct{ Ports struct{ Metrics int } }
	if err := json.Unmarshal(b, &md); err != nil || md.Ports.Metrics == 0 {
		t.Fatalf("metadata: %s %v", b, err)
	}
	_, body := do(t, "GET", "http://127.0.0.1:"+strconv.Itoa(md.Ports.Metrics)+"/metrics", nil, nil)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_sched_gomaxprocs_threads "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("go_sched_gomaxprocs_threads %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("/metrics of %s has no go_sched_gomaxprocs_threads", s.appID)
	return 0
}
