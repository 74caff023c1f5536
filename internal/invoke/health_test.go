package invoke

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/pkg/resolver"
)

// TestAppHealthThreshold: the app is unhealthy until a probe succeeds, then
// after Threshold failed probes in a row (not fewer), and healthy again
// after one success; AppUnhealthy's channel is closed exactly while it is
// unhealthy, and AppHealthy's exactly while it is healthy.
func TestAppHealthThreshold(t *testing.T) {
	h := &appHealth{cfg: HealthCheck{Threshold: 3}, log: slog.New(slog.DiscardHandler), failures: 3, last: errNotProbed, down: make(chan struct{})}
	close(h.down)
	inv := &Invoker{health: h}
	down := func() bool {
		select {
		case <-inv.AppUnhealthy():
			return true
		default:
			return false
		}
	}
	up := func() bool {
		select {
		case <-inv.AppHealthy():
			return true
		default:
			return false
		}
	}
	if up() {
		t.Fatal("AppHealthy is closed before the first probe")
	}
	fail := errors.New("503")
	for i, step := range []struct {
		probe   error
		healthy bool
	}{
		{nil, true}, {fail, true}, {fail, true}, {nil, true}, {fail, true}, {fail, true}, {fail, false}, {fail, false}, {nil, true},
	} {
		h.record(step.probe)
		err := h.unhealthy()
		if (err == nil) != step.healthy || down() != !step.healthy || up() != step.healthy {
			t.Fatalf("probe %d (%v): unhealthy %v, AppUnhealthy closed %v, AppHealthy closed %v; want healthy %v", i, step.probe, err, down(), up(), step.healthy)
		}
		if !step.healthy && !strings.Contains(err.Error(), "last 3 health probes failed") {
			t.Errorf("why unhealthy: %v", err)
		}
	}
}

// TestAppNotCalledWhileUnhealthy: with health checks, a call to an app
// whose probe fails is refused with wire.KindAppUnhealthy without reaching it,
// readiness says unhealthy, and both recover with the app.
func TestAppNotCalledWhileUnhealthy(t *testing.T) {
	var ok atomic.Bool
	var calls atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" {
			if !ok.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		calls.Add(1)
	}))
	defer app.Close()
	inv, err := New(Config{AppID: "self", AppAddress: app.Listener.Addr().String(),
		Health: &HealthCheck{Path: "/ready", Interval: 20 * time.Millisecond, Timeout: 10 * time.Millisecond, Threshold: 2}}, staticResolver{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go inv.RunHealthChecks(ctx)
	call := func() error {
		resp, err := inv.Invoke(ctx, &Call{Target: resolver.Target{ID: "self"}, Method: "x", Verb: "GET", Header: http.Header{}})
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	waitFor := func(healthy bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for inv.AppReady(ctx) != healthy {
			if time.Now().After(deadline) {
				t.Fatalf("the app did not become healthy=%v", healthy)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(false)
	var ie *Error
	err = call()
	if !errors.As(err, &ie) || ie.Kind != wire.KindAppUnhealthy || !strings.Contains(err.Error(), "not in a healthy state") {
		t.Fatalf("call to an unhealthy app: %v", err)
	}
	if e := apierr.Invoke(err); e.HTTPStatus != 500 || e.Code != "ERR_DIRECT_INVOKE" || e.GRPCCode.String() != "Internal" {
		t.Errorf("shown as %d %s %s", e.HTTPStatus, e.Code, e.GRPCCode)
	}
	if calls.Load() != 0 {
		t.Errorf("the unhealthy app was called %d times", calls.Load())
	}
	ok.Store(true)
	waitFor(true)
	if err := call(); err != nil || calls.Load() != 1 {
		t.Errorf("call to the healthy app: %v, %d calls", err, calls.Load())
	}
	ok.Store(false)
	waitFor(false)
}
