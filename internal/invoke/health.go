package invoke

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// HealthCheck is how a sidecar checks its app's health
// (--enable-app-health-check), as daprd does: a probe every Interval, each
// given Timeout; Threshold failed probes in a row make the app unhealthy,
// and one that succeeds makes it healthy again. An HTTP app is probed with
// GET Path (any 2xx is healthy); a gRPC app with
// AppCallbackHealthCheck.HealthCheck. The app is unhealthy until its first
// probe succeeds.
//
// While the app is unhealthy, the sidecar's readiness (GET /v1.0/healthz)
// says so, and calls to the app are refused without reaching it (500
// ERR_DIRECT_INVOKE, gRPC Internal, as daprd: "app is not in a healthy
// state").
type HealthCheck struct {
	Path      string // HTTP apps: path (and query) of the probe
	Interval  time.Duration
	Timeout   time.Duration // at most Interval
	Threshold int
}

// The defaults of the app health check flags, daprd's.
const (
	DefaultHealthPath      = "/healthz"
	DefaultHealthInterval  = 5 * time.Second
	DefaultHealthTimeout   = 500 * time.Millisecond
	DefaultHealthThreshold = 3
)

// appHealth is the app's health as the probes find it.
type appHealth struct {
	cfg   HealthCheck
	probe func(context.Context) error
	log   *slog.Logger

	mu       sync.Mutex
	failures int   // failed probes in a row; Threshold or more: unhealthy
	last     error // of the last failed probe
	// down is closed while the app is unhealthy, and replaced by an open
	// one when it becomes healthy (AppUnhealthy).
	down chan struct{}
	// up is closed while the app is healthy, and replaced by an open one
	// when it becomes unhealthy (AppHealthy); nil until asked for.
	up chan struct{}
}

func newAppHealth(cfg HealthCheck, app appChannel, log *slog.Logger) (*appHealth, error) {
	h := &appHealth{cfg: cfg, log: log, failures: cfg.Threshold, last: errNotProbed, down: make(chan struct{})}
	close(h.down)
	switch a := app.(type) {
	case *httpApp:
		u, err := url.Parse(a.scheme + "://" + a.addr + cfg.Path)
		if err != nil {
			return nil, fmt.Errorf("app health check path %q: %w", cfg.Path, err)
		}
		h.probe = func(ctx context.Context) error { return a.probeHTTP(ctx, u) }
	case *grpcApp:
		client := runtimev1pb.NewAppCallbackHealthCheckClient(a.conn)
		h.probe = func(ctx context.Context) error {
			_, err := client.HealthCheck(ctx, &emptypb.Empty{})
			return err
		}
	default:
		return nil, fmt.Errorf("app health checks need an app (--app-port)")
	}
	return h, nil
}

var errNotProbed = fmt.Errorf("not probed yet")

// probeHTTP GETs u from the app: healthy on a 2xx answer.
func (a *httpApp) probeHTTP(ctx context.Context, u *url.URL) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := a.t.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s answered %s", u.Path, resp.Status)
	}
	return nil
}

// run probes the app at once and then every Interval until ctx ends.
func (h *appHealth) run(ctx context.Context) {
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
		err := h.probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.record(err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// record counts a probe's outcome and logs a change of health.
func (h *appHealth) record(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	was := h.failures < h.cfg.Threshold
	if err == nil {
		h.failures = 0
		if !was {
			h.down = make(chan struct{})
			if h.up != nil {
				close(h.up)
			}
			h.log.Info("app entered healthy status")
		}
		return
	}
	h.failures = min(h.failures+1, h.cfg.Threshold)
	h.last = err
	if was && h.failures >= h.cfg.Threshold {
		close(h.down)
		if h.up != nil {
			h.up = make(chan struct{})
		}
		h.log.Warn("app entered unhealthy status: it is not called until a health probe succeeds", "failed_probes", h.failures, "err", err)
	}
}

// unhealthy returns nil while the app is healthy, and otherwise why not.
func (h *appHealth) unhealthy() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failures < h.cfg.Threshold {
		return nil
	}
	if h.last == errNotProbed {
		return h.last
	}
	return fmt.Errorf("its last %d health probes failed, the last with: %w", h.failures, h.last)
}

// RunHealthChecks probes the app's health until ctx ends, when health
// checks are on (Config.Health); otherwise it returns at once.
func (inv *Invoker) RunHealthChecks(ctx context.Context) {
	if inv.health != nil {
		inv.health.run(ctx)
	}
}

// AppUnhealthy returns a channel that is closed while the app is unhealthy
// (it is replaced when the app becomes healthy again: ask again after a
// receive). Without health checks it is nil: never ready.
func (inv *Invoker) AppUnhealthy() <-chan struct{} {
	if inv.health == nil {
		return nil
	}
	inv.health.mu.Lock()
	defer inv.health.mu.Unlock()
	return inv.health.down
}

// AppHealthy returns a channel that is closed while the app is healthy (it
// is replaced when the app becomes unhealthy: ask again after a receive).
// Without health checks it is closed: the app is taken to be healthy once
// it is ready (WaitAppReady).
func (inv *Invoker) AppHealthy() <-chan struct{} {
	if inv.health == nil {
		return closedChan
	}
	h := inv.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.up == nil {
		h.up = make(chan struct{})
		if h.failures < h.cfg.Threshold {
			close(h.up)
		}
	}
	return h.up
}

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// checkAppHealth refuses a call to an app that fails its health checks.
func (inv *Invoker) checkAppHealth() *Error {
	if inv.health == nil {
		return nil
	}
	if err := inv.health.unhealthy(); err != nil {
		return errorf(wire.KindAppUnhealthy, inv.cfg.AppID, inv.cfg.AppAddress, err, "app %q is not in a healthy state", inv.cfg.AppID)
	}
	return nil
}
