package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawRequest sends bytes as they are and returns the status and body.
func rawRequest(t *testing.T, port int, raw string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() { _, _ = io.WriteString(c, raw) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%.60q: %v", raw, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(path, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", path, len(body), body)
}

// manyHeaders is n small header lines: little text, a large header list.
func manyHeaders(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-H%d: v\r\n", i)
	}
	return b.String()
}

func get(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
}

// TestHostileRequests: each shape gets its exact status, with the error
// body where the sidecar answers, and the sidecar goes on serving.
func TestHostileRequests(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("target")
	callee := w.sidecar("target", appPort)
	s := w.sidecar("front", 0)
	callee.waitHealthy(t)
	for _, c := range []struct {
		name, raw string
		status    int
		code      string // errorCode in the body, when the API answers
	}{
		{"header over 1 MiB", "GET /v1.0/metadata HTTP/1.1\r\nHost: localhost\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 431, ""},
		{"header over 64 KiB", "GET /v1.0/metadata HTTP/1.1\r\nHost: localhost\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431, ""},
		{"headers over 64 KiB as HTTP/2 counts them", "GET /v1.0/invoke/target/method/echo/x HTTP/1.1\r\nHost: localhost\r\n" + manyHeaders(2000) + "\r\n", 431, "ERR_MALFORMED_REQUEST"},
		{"state body over 4 MiB", post("/v1.0/state/statestore", `[{"key":"k","value":"`+strings.Repeat("a", 5<<20)+`"}]`), 413, "ERR_BODY_TOO_LARGE"},
		{"JSON nested 100k deep", post("/v1.0/state/statestore", strings.Repeat("[", 100000)+strings.Repeat("]", 100000)), 400, "ERR_MALFORMED_REQUEST"},
		{"malformed JSON", post("/v1.0/state/statestore", `[{"key":`), 400, "ERR_MALFORMED_REQUEST"},
		{"invalid UTF-8 in a JSON body", post("/v1.0/state/statestore", "[{\"key\":\"k\",\"value\":\"\xff\xfe\"}]"), 400, "ERR_MALFORMED_REQUEST"},
		{"invalid UTF-8 key", get("/v1.0/state/statestore/%FF%FE"), 400, "ERR_MALFORMED_REQUEST"},
		{"key with the prefix separator", get("/v1.0/state/statestore/a%7C%7Cb"), 400, "ERR_MALFORMED_REQUEST"},
		{"unknown store", get("/v1.0/state/nostore/k"), 400, "ERR_STATE_STORE_NOT_FOUND"},
		{"dot-dot segment", get("/v1.0/invoke/target/method/a/../admin"), 400, "ERR_MALFORMED_REQUEST"},
		{"encoded slashes and dots", get("/v1.0/invoke/target/method/admin%2F..%2Fpublic"), 400, "ERR_MALFORMED_REQUEST"},
		{"encoded dot-dot", get("/v1.0/invoke/target/method/%2e%2e/admin"), 400, "ERR_MALFORMED_REQUEST"},
		{"encoded NUL", get("/v1.0/invoke/target/method/a%00b"), 400, "ERR_MALFORMED_REQUEST"},
		{"encoded query mark", get("/v1.0/invoke/target/method/a%3Fb"), 400, "ERR_MALFORMED_REQUEST"},
		{"lone percent", get("/v1.0/invoke/target/method/%"), 400, ""},
		{"raw fragment", get("/v1.0/invoke/target/method/a#b"), 400, "ERR_MALFORMED_REQUEST"},
		{"bad app id", get("/v1.0/invoke/Bad_ID/method/x"), 400, "ERR_MALFORMED_REQUEST"},
		{"no such route", get("/v2/anything"), 404, "ERR_NOT_FOUND"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := rawRequest(t, s.httpPort, c.raw)
			if status != c.status {
				t.Fatalf("status %d, want %d: %.300s", status, c.status, body)
			}
			if c.code != "" && !strings.Contains(body, `"errorCode":"`+c.code+`"`) {
				t.Errorf("body %.300s lacks %s", body, c.code)
			}
		})
	}
	// Still serving, and nothing half saved.
	if resp, b := do(t, "GET", s.url+"/v1.0/state/statestore/k", nil, nil); resp.StatusCode != 204 {
		t.Errorf("after the hostile requests: %d %s", resp.StatusCode, b)
	}
	if resp, _ := do(t, "POST", s.url+"/v1.0/invoke/target/method/echo/ok", strings.NewReader("x"), nil); resp.StatusCode != 200 {
		t.Errorf("invoke after the hostile requests: %d", resp.StatusCode)
	}
}

// TestAppMaxConcurrency: with --app-max-concurrency 1, a second call waits
// for the first to end instead of reaching the app beside it.
func TestAppMaxConcurrency(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("one")
	s := w.sidecar("one", appPort, "--app-max-concurrency", "1")
	s.waitHealthy(t)
	first := make(chan int, 1)
	go func() {
		resp, _ := do(t, "GET", s.url+"/v1.0/invoke/one/method/slow", nil, nil)
		first <- resp.StatusCode
	}()
	time.Sleep(300 * time.Millisecond) // the first call is in the app
	second := make(chan int, 1)
	go func() {
		resp, _ := do(t, "GET", s.url+"/v1.0/invoke/one/method/echo/x", nil, nil)
		second <- resp.StatusCode
	}()
	select {
	case code := <-second:
		t.Fatalf("the second call ran beside the first (%d)", code)
	case <-time.After(500 * time.Millisecond):
	}
	if resp, _ := do(t, "GET", "http://127.0.0.1:"+strconv.Itoa(appPort)+"/release", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("release: %d", resp.StatusCode)
	}
	if code := <-first; code != 200 {
		t.Errorf("first: %d", code)
	}
	select {
	case code := <-second:
		if code != 200 {
			t.Errorf("second: %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second call never ran")
	}
}

// Slow-header clients (slowloris) hold nothing for long: the sidecar serves
// others meanwhile, and drops each slow connection when its header has not
// arrived within the header timeout.
func TestSlowHeaderClients(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the header timeout")
	}
	w := newWorld(t)
	s := w.sidecar("slowloris", 0)
	var conns []net.Conn
	for range 200 {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.httpPort))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /v1.0/metadata HTTP/1.1\r\nHost: localhost\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a byte a second on every connection, never the end
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
				for _, c := range conns {
					_, _ = c.Write([]byte("a"))
				}
			}
		}
	}()
	start := time.Now()
	if resp, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil); resp.StatusCode != 200 || time.Since(start) > 2*time.Second {
		t.Errorf("a normal request beside 200 slow ones: %d after %s: %.100s", resp.StatusCode, time.Since(start), b)
	}
	closed := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.ReadAll(c); err == nil { // EOF: the server closed it
			closed++
		}
	}
	if closed != len(conns) {
		t.Errorf("%d of %d slow connections were closed by the sidecar within 15 s", closed, len(conns))
	}
}
