package calculator_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
)

// startCalculator runs the one-command local runner as a real process and
// returns the front end's base URL once it says it is ready.
func startCalculator(t *testing.T, extra ...string) string {
	t.Helper()
	base, _ := startRunner(t, extra...)
	return base
}

// startRunner is startCalculator that also returns the runner's process,
// whose output says what it started.
func startRunner(t *testing.T, extra ...string) (string, *proc.Proc) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "calculator-local")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/local").CombinedOutput(); err != nil {
		t.Fatalf("building the runner: %v\n%s", err, out)
	}
	port := proc.For(t).FreePort()
	p, err := proc.Start("runner", bin, nil, append([]string{"-port", strconv.Itoa(port)}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(syscall.SIGINT, 15*time.Second); err != nil {
			t.Errorf("runner after Ctrl-C: %v", err)
		}
		if t.Failed() {
			t.Logf("runner output:\n%s", p.Out.String())
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(p.Out.String(), "calculator ready") {
		select {
		case <-p.Done():
			t.Fatalf("runner exited: %v\n%s", p.Err(), p.Out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("runner not ready after 2 minutes:\n%s", p.Out.String())
		}
	}
	for _, id := range []string{"addapp", "subtractapp", "multiplyapp", "divideapp", "calculator-front-end"} {
		if !strings.Contains(p.Out.String(), id+" sidecar") {
			t.Errorf("no log lines prefixed with %q", id+" sidecar")
		}
	}
	return "http://localhost:" + strconv.Itoa(port), p
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// curlSession is the reference session of the calculator sample.
func curlSession(t *testing.T, base string) {
	operands := `{"operandOne":"52","operandTwo":"34"}`
	for op, want := range map[string]string{"add": "86", "subtract": "18", "divide": "1.5294117647058822", "multiply": "1768"} {
		if code, got := post(t, base+"/calculate/"+op, operands); code != 200 || got != want {
			t.Errorf("/calculate/%s = %d %q, want 200 %q", op, code, got, want)
		}
	}
	code, got := post(t, base+"/persist", `[{"key":"calculatorState","value":{"total":"54","next":null,"operation":null}}]`)
	if code != 200 || got != "" {
		t.Errorf("/persist = %d %q, want 200 and an empty body", code, got)
	}
	resp, err := http.Get(base + "/state")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var state, want map[string]any
	_ = json.Unmarshal([]byte(`{"operation":null,"total":"54","next":null}`), &want)
	if err := json.Unmarshal(b, &state); err != nil || len(state) != 3 || state["total"] != "54" || state["next"] != nil || state["operation"] != nil {
		t.Errorf("/state = %s, want %v", b, want)
	}
	// Bad input is a clear 400 that passes through both sidecars.
	code, got = post(t, base+"/calculate/add", `{"operandOne":"fifty","operandTwo":"34"}`)
	if code != 400 || !strings.Contains(got, "operandOne") {
		t.Errorf("bad operand: %d %q", code, got)
	}
	code, got = post(t, base+"/calculate/divide", `{"operandOne":"1","operandTwo":"0"}`)
	if code != 400 || !strings.Contains(got, "zero") {
		t.Errorf("divide by zero: %d %q", code, got)
	}
}

func TestCalculatorEmbeddedStore(t *testing.T) {
	base := startCalculator(t)
	resp, err := http.Get(base + "/state")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "{}" {
		t.Errorf("fresh /state = %q, want {}", b)
	}
	curlSession(t, base)
	page, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if !strings.Contains(string(html), "Distributed Calculator") {
		t.Errorf("the page is not served")
	}
}

func TestCalculatorRedis(t *testing.T) {
	srv := redisserver.Start(t)
	base := startCalculator(t, "-redis", srv.Addr)
	curlSession(t, base)
}

func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	out, err := exec.Command("go", "run", "./cmd/local", "-port", strconv.Itoa(port)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "port "+strconv.Itoa(port)+" is taken") {
		t.Errorf("port taken: %v\n%s", err, out)
	}
}
