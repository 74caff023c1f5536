package invoke

import "time"

// HealthCheck is how a sidecar checks its app's health
// (--enable-app-health-check), as daprd does: a probe every Interval, each
// given Timeout; Threshold failed probes in a row make the app unhealthy,
// and one that succeeds makes it healthy again. An HTTP app is probed with
// GET Path (any 2xx is healthy); a gRPC app with
// AppCallbackHealthCheck.HealthCheck. The app is unhealthy until its first
// probe succeeds.
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
