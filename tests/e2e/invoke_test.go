package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// echo is what testapp's /echo/ answers.
type echo struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query"`
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body"`
}

type apiError struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

// twoApps starts frontend (no app needed to call out, but it has one) and
// backend, each with its sidecar, and waits until both are healthy.
func twoApps(t *testing.T) (w *world, caller, callee *sidecar) {
	w = newWorld(t)
	backendPort, _ := w.app("backend app")
	callee = w.sidecar("backend", backendPort)
	caller = w.sidecar("frontend", 0)
	callee.waitHealthy(t)
	caller.waitHealthy(t)
	return w, caller, callee
}

func TestInvokeVerbsPathsQueriesHeaders(t *testing.T) {
	_, caller, _ := twoApps(t)
	for _, verb := range []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		t.Run(verb, func(t *testing.T) {
			body := ""
			if verb != "GET" && verb != "OPTIONS" {
				body = `{"verb":"` + verb + `"}`
			}
			h := http.Header{
				"X-Custom":           {"one", "two"},
				"Dapr-Caller-App-Id": {"forged"},
				"X-Forwarded-For":    {"6.6.6.6"},
				"Forwarded":          {"for=6.6.6.6"},
				"Connection":         {"X-Drop-Me"},
				"X-Drop-Me":          {"hop-by-hop"},
				"Content-Type":       {"application/json"},
			}
			resp, b := do(t, verb, caller.url+"/v1.0/invoke/backend/method/echo/a/b%20c?x=1&y=%2Fz&x=2", strings.NewReader(body), h)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if got := resp.Header.Get("X-App-Header"); got != "from-app" {
				t.Errorf("response header X-App-Header = %q, want from-app", got)
			}
			var e echo
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("%v: %s", err, b)
			}
			checks := []struct{ what, got, want string }{
				{"method", e.Method, verb},
				{"path", e.Path, "/echo/a/b%20c"},
				{"query", e.Query, "x=1&y=%2Fz&x=2"},
				{"body", e.Body, body},
				{"X-Custom", strings.Join(e.Headers["X-Custom"], ","), "one,two"},
				{"Dapr-Caller-App-Id", strings.Join(e.Headers["Dapr-Caller-App-Id"], ","), "frontend"},
				{"Dapr-Callee-App-Id", strings.Join(e.Headers["Dapr-Callee-App-Id"], ","), "backend"},
				{"X-Forwarded-For", strings.Join(e.Headers["X-Forwarded-For"], ","), "127.0.0.1"},
				{"X-Drop-Me", strings.Join(e.Headers["X-Drop-Me"], ","), ""},
				{"Content-Type", strings.Join(e.Headers["Content-Type"], ","), "application/json"},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("app saw %s %q, want %q", c.what, c.got, c.want)
				}
			}
			if fwd := strings.Join(e.Headers["Forwarded"], ","); !strings.HasPrefix(fwd, "for=127.0.0.1") || strings.Contains(fwd, "6.6.6.6") {
				t.Errorf("app saw Forwarded %q, want the sidecar's own value for=127.0.0.1...", fwd)
			}
		})
	}
	t.Run("HEAD", func(t *testing.T) {
		resp, _ := do(t, "HEAD", caller.url+"/v1.0/invoke/backend/method/download?n=1234", nil, nil)
		if resp.StatusCode != http.StatusOK || resp.ContentLength != 1234 {
			t.Errorf("HEAD: status %d, length %d; want 200, 1234", resp.StatusCode, resp.ContentLength)
		}
	})
}

func TestInvokeStatusAndHeaderForm(t *testing.T) {
	_, caller, _ := twoApps(t)
	for _, code := range []int{200, 201, 204, 301, 404, 418, 500, 503} {
		resp, b := do(t, "GET", caller.url+"/v1.0/invoke/backend/method/status/"+itoa(code), nil, nil)
		if resp.StatusCode != code {
			t.Errorf("status %d: got %d", code, resp.StatusCode)
		}
		if got := resp.Header.Get("X-Test"); got != "status-"+itoa(code) {
			t.Errorf("status %d: X-Test %q", code, got)
		}
		if code != 204 && code != 304 && string(b) != "status body" {
			t.Errorf("status %d: body %q", code, b)
		}
	}
	// The dapr-app-id header form: the whole path is the method.
	resp, b := do(t, "POST", caller.url+"/echo/by-header?q=1", strings.NewReader("hi"), http.Header{"Dapr-App-Id": {"backend"}})
	var e echo
	if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != 200 {
		t.Fatalf("header form: status %d, %s", resp.StatusCode, b)
	}
	if e.Path != "/echo/by-header" || e.Query != "q=1" || e.Body != "hi" || e.Headers["Dapr-App-Id"] != nil {
		t.Errorf("header form: app saw %+v", e)
	}
	// id.namespace form resolves the id.
	resp, _ = do(t, "GET", caller.url+"/v1.0/invoke/backend.default/method/status/200", nil, nil)
	if resp.StatusCode != 200 {
		t.Errorf("id.namespace form: status %d", resp.StatusCode)
	}
}

func TestInvokeTrailers(t *testing.T) {
	_, caller, _ := twoApps(t)
	resp, err := http.Get(caller.url + "/v1.0/invoke/backend/method/trailer")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if len(b) != 100 || resp.Trailer.Get("X-Sum") != "100" {
		t.Errorf("body %d bytes, trailer X-Sum %q; want 100 and 100", len(b), resp.Trailer.Get("X-Sum"))
	}
}

func TestInvokeErrors(t *testing.T) {
	w, caller, _ := twoApps(t)
	// A sidecar whose app port has nothing listening.
	deadApp := w.sidecar("deadapp", proc.For(t).FreePort())
	_ = deadApp

	cases := []struct {
		name, method, path string
		header             http.Header
		status             int
		code               string
		msgHas             []string
	}{
		{"unknown app id", "GET", "/v1.0/invoke/nosuchapp/method/x", nil, 500, "ERR_DIRECT_INVOKE", []string{"nosuchapp", "backend", "frontend"}},
		{"app down", "GET", "/v1.0/invoke/deadapp/method/x", nil, 500, "ERR_DIRECT_INVOKE", []string{"deadapp", "127.0.0.1:"}},
		{"no app id", "GET", "/v1.0/invoke//method/x", nil, 404, "ERR_DIRECT_INVOKE", []string{"app id"}},
		{"no method", "GET", "/v1.0/invoke/backend/nomethod", nil, 404, "ERR_DIRECT_INVOKE", []string{"method"}},
		{"invalid app id", "GET", "/v1.0/invoke/Bad_ID/method/x", nil, 400, "ERR_MALFORMED_REQUEST", []string{"Bad_ID"}},
		{"dot-dot", "GET", "/v1.0/invoke/backend/method/echo/../admin", nil, 400, "ERR_MALFORMED_REQUEST", []string{".."}},
		{"encoded slash", "GET", "/v1.0/invoke/backend/method/admin%2F..%2Fpublic", nil, 400, "ERR_MALFORMED_REQUEST", []string{"encoded"}},
		{"encoded NUL", "GET", "/v1.0/invoke/backend/method/a%00b", nil, 400, "ERR_MALFORMED_REQUEST", []string{"control"}},
		{"empty method", "GET", "/v1.0/invoke/backend/method/", nil, 400, "ERR_MALFORMED_REQUEST", []string{"empty"}},
		{"unknown route", "GET", "/v1.0/nothing", nil, 404, "ERR_NOT_FOUND", []string{"/v1.0/nothing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, b := do(t, c.method, caller.url+c.path, nil, c.header)
			var e apiError
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("status %d, body not JSON: %q", resp.StatusCode, b)
			}
			if resp.StatusCode != c.status || e.ErrorCode != c.code {
				t.Errorf("got %d %s (%s), want %d %s", resp.StatusCode, e.ErrorCode, e.Message, c.status, c.code)
			}
			for _, s := range c.msgHas {
				if !strings.Contains(e.Message, s) {
					t.Errorf("message %q does not name %q", e.Message, s)
				}
			}
		})
	}
}

func TestInvokeServerSentEvents(t *testing.T) {
	_, caller, _ := twoApps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", caller.url+"/v1.0/invoke/backend/method/sse?n=3", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	for i := range 3 {
		if i > 0 {
			// The app holds event i until released: event i-1 must have
			// arrived on its own, before the response was complete.
			release, _ := do(t, "GET", caller.url+"/v1.0/invoke/backend/method/release", nil, nil)
			_ = release
		}
		ev := readEvent(t, r)
		if want := "data: event " + itoa(i); !strings.Contains(ev, want) {
			t.Fatalf("event %d = %q, want %q", i, ev, want)
		}
	}
}

func readEvent(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading event: %v (so far %q)", err, b.String())
		}
		if line == "\n" {
			return b.String()
		}
		b.WriteString(line)
	}
}

func TestHealthzBeforeAndAfterApp(t *testing.T) {
	w := newWorld(t)
	port := proc.For(t).FreePort()
	s := w.sidecar("lateapp", port)
	resp, b := do(t, "GET", s.url+"/v1.0/healthz", nil, nil)
	var e apiError
	_ = json.Unmarshal(b, &e)
	if resp.StatusCode != 500 || e.ErrorCode != "ERR_HEALTH_NOT_READY" {
		t.Fatalf("before the app: %d %s, want 500 ERR_HEALTH_NOT_READY", resp.StatusCode, b)
	}
	proc.For(t).Start("late app", testappBin, []string{"APP_PORT=" + itoa(port)})
	s.waitHealthy(t)
	resp, _ = do(t, "GET", s.url+"/v1.0/healthz/outbound", nil, nil)
	if resp.StatusCode != 204 {
		t.Errorf("healthz/outbound: %d", resp.StatusCode)
	}
}

func TestMetadataReportsChosenPorts(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar("metaapp", 0, "--dapr-public-port", "0")
	resp, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	var m struct {
		ID    string         `json:"id"`
		Ports map[string]int `json:"ports"`
	}
	if err := json.Unmarshal(b, &m); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if m.ID != "metaapp" || m.Ports["http"] != s.httpPort {
		t.Errorf("metadata %s", b)
	}
	for _, p := range []string{"grpc", "internal", "public", "metrics"} {
		if m.Ports[p] == 0 {
			t.Errorf("metadata reports no %s port: %s", p, b)
		}
	}
	// The public port serves the two health routes and nothing else, as
	// daprd's: no metadata (components, ports) to the pod network, and its
	// 404 names no route it does not serve.
	pub := "http://127.0.0.1:" + itoa(m.Ports["public"])
	for _, p := range []string{"/v1.0/healthz", "/v1.0/healthz/outbound"} {
		if resp, _ := do(t, "GET", pub+p, nil, nil); resp.StatusCode != 204 {
			t.Errorf("public %s: %d", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/v1.0/metadata", "/v1.0/invoke/metaapp/method/x", "/v1.0/state/statestore/k"} {
		resp, b := do(t, "GET", pub+p, nil, nil)
		_, served, _ := strings.Cut(string(b), "this port serves")
		if resp.StatusCode != 404 || served != ` GET /v1.0/healthz, GET /v1.0/healthz/outbound"}` {
			t.Errorf("public port %s: %d %s; want 404 naming the health routes only", p, resp.StatusCode, b)
		}
	}
	if resp, _ := do(t, "POST", pub+"/v1.0/shutdown", nil, nil); resp.StatusCode != 404 {
		t.Errorf("public port serves shutdown: %d", resp.StatusCode)
	}
}

func TestShutdownDrainsInFlightCalls(t *testing.T) {
	_, caller, callee := twoApps(t)
	appAddr := appAddrOf(t, callee)
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(caller.url + "/v1.0/invoke/backend/method/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, string(b), err}
	}()
	// Wait until the call reached the app, then stop the callee's sidecar.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, b := do(t, "GET", "http://"+appAddr+"/slow/waiting", nil, nil); string(b) == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow call did not reach the app")
		}
	}
	if err := callee.Cmd.Process.Signal(sigterm); err != nil {
		t.Fatal(err)
	}
	// New calls are refused while the one in flight goes on.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, b := do(t, "GET", caller.url+"/v1.0/invoke/backend/method/status/200", nil, nil)
		if resp.StatusCode != 200 {
			if !strings.Contains(string(b), "ERR_") {
				t.Errorf("refused call has no error code: %d %s", resp.StatusCode, b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("calls to a draining sidecar are still accepted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Release the app through its own port: the in-flight call completes.
	if resp, _ := do(t, "GET", "http://"+appAddr+"/release", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("release: %d", resp.StatusCode)
	}
	r := <-done
	if r.err != nil || r.status != 200 || r.body != "done" {
		t.Fatalf("in-flight call: %d %q %v; want 200 done", r.status, r.body, r.err)
	}
	if code := proc.For(t).ExitCode(callee.Proc, 10*time.Second); code != 0 {
		t.Errorf("sidecar exit code %d after SIGTERM, want 0", code)
	}
}

func TestShutdownEndpoint(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar("stopme", 0)
	resp, _ := do(t, "POST", s.url+"/v1.0/shutdown", nil, nil)
	if resp.StatusCode != 204 {
		t.Fatalf("shutdown: %d", resp.StatusCode)
	}
	if code := proc.For(t).ExitCode(s.Proc, 10*time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
}
