package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A Resiliency resource on the caller's sidecar: a timeout cuts a call the
// app does not answer, 5xx answers are retried and trip the circuit
// breaker, which fails calls fast until it half-opens and a good call
// closes it.
func TestResiliencyPolicies(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "resiliency.yaml"), []byte(`apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: calls
spec:
  policies:
    timeouts:
      quick: 300ms
    retries:
      twice: {policy: constant, duration: 20ms, maxRetries: 2}
    circuitBreakers:
      cb: {maxRequests: 1, timeout: 1s, trip: consecutiveFailures >= 3}
  targets:
    apps:
      flaky: {timeout: quick, retry: twice, circuitBreaker: cb}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	appPort, _ := w.app("flaky")
	callee := w.sidecar("flaky", appPort)
	caller := w.sidecar("front", 0, "--resources-path", dir)
	callee.waitHealthy(t)
	url := caller.url + "/v1.0/invoke/flaky/method/"

	// The timeout: the app holds /slow; the call ends within the timeout and
	// its retries, with a message naming the policy.
	start := time.Now()
	resp, b := do(t, "GET", url+"slow", nil, nil)
	if resp.StatusCode != 500 || !strings.Contains(string(b), "no answer within the timeout of 300ms") || time.Since(start) > 5*time.Second {
		t.Errorf("slow call: %d %s after %s", resp.StatusCode, b, time.Since(start))
	}
	time.Sleep(1100 * time.Millisecond) // the timeouts tripped the breaker

	// 503 three times (one call, two retries): the caller gets the app's
	// last answer, and the breaker opens.
	resp, b = do(t, "GET", url+"status/503", nil, nil)
	if resp.StatusCode != 503 || string(b) != "status body" {
		t.Errorf("503 call: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", url+"echo/x", nil, nil)
	if resp.StatusCode != 500 || !strings.Contains(string(b), "circuit breaker open") {
		t.Errorf("with the breaker open: %d %s", resp.StatusCode, b)
	}
	time.Sleep(1100 * time.Millisecond)
	if resp, b = do(t, "GET", url+"echo/x", nil, nil); resp.StatusCode != 200 {
		t.Errorf("after the breaker's timeout: %d %s", resp.StatusCode, b)
	}
	if resp, b = do(t, "GET", url+"echo/y", nil, nil); resp.StatusCode != 200 {
		t.Errorf("closed again: %d %s", resp.StatusCode, b)
	}
}
