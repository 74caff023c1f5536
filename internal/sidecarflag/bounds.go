// Package sidecarflag holds what the sidecar's flags accept, once, for the
// two programs that must agree on it: the sidecar (cmd/sidecar), which
// parses its flags with these bounds, and the injector (internal/injector),
// which checks a pod's annotations with the bounds of the flags they become
// and writes those flags, so that the sidecar of a pod the injector admitted
// always starts.
//
// Annotated is the table of the options a pod's annotation sets: the
// annotation, daprd's flag, what both accept and how the injector writes
// the flag. A new option a pod can set is a row there, and the sidecar's use
// of its flag. The bounds of every other numeric flag are here too, beside
// them.
//
// As in daprd, -1 means "unset: the default, or no bound" where daprd gives
// it that meaning, and sizes are in daprd's units where daprd has them (its
// dapr.io/http-max-request-size in MB, dapr.io/http-read-buffer-size in KB).
// The package imports nothing of this module, so that both programs can
// import it.
package sidecarflag

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Int is what a whole-number flag accepts: Lo to Hi, and -1 where Unset.
type Int struct {
	Lo, Hi int
	// Unset accepts -1 too: "unset, the default or no bound", as daprd.
	Unset bool
	// ZeroUnset says 0 means what -1 does.
	ZeroUnset bool
	// Accepted says what the flag accepts, in its errors.
	Accepted string
}

// Has reports whether the flag accepts n.
func (r Int) Has(n int) bool {
	return r.Lo <= n && n <= r.Hi || r.Unset && n == -1
}

// IsUnset reports whether n leaves the flag at its default: -1, or 0 where
// ZeroUnset.
func (r Int) IsUnset(n int) bool {
	return r.Unset && (n == -1 || r.ZeroUnset && n == 0)
}

// Parse parses s, the value of the flag name (as the user gave it, e.g.
// --app-port). It never wraps: strconv refuses what an int cannot hold.
func (r Int) Parse(name, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || !r.Has(n) {
		return 0, fmt.Errorf("%s %q is not valid; accepted: %s", name, s, r.Accepted)
	}
	return n, nil
}

// Size is what a flag of bytes accepts: Lo to Hi bytes, written as
// ParseSize reads them.
type Size struct {
	Lo, Hi   int64
	Accepted string
}

// Has reports whether the flag accepts n bytes.
func (r Size) Has(n int64) bool { return r.Lo <= n && n <= r.Hi }

// Parse parses s, the value of the flag name, with ParseSize.
func (r Size) Parse(name, s string) (int64, error) {
	n, err := ParseSize(s)
	if err != nil || !r.Has(n) {
		return 0, fmt.Errorf("%s %q is not valid; accepted: %s", name, s, r.Accepted)
	}
	return n, nil
}

// Duration is what a flag of a duration accepts: Lo to Hi.
type Duration struct {
	Lo, Hi   time.Duration
	Accepted string
}

// Has reports whether the flag accepts d.
func (r Duration) Has(d time.Duration) bool { return r.Lo <= d && d <= r.Hi }

// Check checks d, the parsed value of the flag name.
func (r Duration) Check(name string, d time.Duration) error {
	if !r.Has(d) {
		return fmt.Errorf("%s %s is not valid; accepted: %s", name, d, r.Accepted)
	}
	return nil
}

// The defaults of the sidecar's flags that the injector's annotations speak
// of, and of its sizes. Ports are internal/ports'.
const (
	DefaultAppProtocol          = "http"
	DefaultLogLevel             = "info"
	DefaultMaxBodySize          = 4 << 20
	DefaultReadBufferSize       = 64 << 10
	DefaultResourcesMaxFileSize = "4Mi"
	DefaultGracefulShutdown     = 5    // seconds
	DefaultProfilePort          = 7777 // daprd's
)

// The bounds of the sidecar's numeric flags.
var (
	// ListenPort is a port the sidecar listens on: --dapr-http-port,
	// --dapr-grpc-port, --dapr-internal-grpc-port, --metrics-port.
	ListenPort = Int{Lo: 0, Hi: math.MaxUint16, Accepted: "0 to 65535 (0 picks a free port)"}
	AppPort    = Int{Lo: 0, Hi: math.MaxUint16, Accepted: "0 to 65535 (0: no app port)"}
	PublicPort = Int{Lo: 0, Hi: math.MaxUint16, Accepted: "0 to 65535 (0 picks a free port; leave it out for none)"}
	// ProfilePort is --profile-port: -1 is daprd's default, 7777.
	ProfilePort = Int{Lo: 0, Hi: math.MaxUint16, Unset: true, Accepted: "-1 for the default (7777), 0 to pick a free port, or 1 to 65535"}

	// AppMaxConcurrency is --app-max-concurrency: the sidecar allocates a
	// channel of that capacity.
	AppMaxConcurrency = Int{Lo: 0, Hi: 1 << 20, Unset: true, ZeroUnset: true, Accepted: "-1 or 0 for no bound, or 1 to 1048576 calls in flight"}
	// GracefulShutdown is --dapr-graceful-shutdown-seconds.
	GracefulShutdown = Int{Lo: 0, Hi: 3600, Unset: true, Accepted: "-1 for the default (5), or 0 to 3600 seconds"}
	// MaxBodySize is --max-body-size, in bytes: a limit, never allocated.
	MaxBodySize = Size{Lo: 1, Hi: 1 << 40, Accepted: "1 to 1Ti, e.g. 16Mi"}
	// MaxRequestSizeMB is daprd's --dapr-http-max-request-size: MaxBodySize
	// in MB.
	MaxRequestSizeMB = Int{Lo: 1, Hi: int(MaxBodySize.Hi >> 20), Unset: true, Accepted: "-1 for the default (4 MB for buffered APIs, invocation unlimited), or 1 to 1048576 MB"}
	// ReadBufferSize is --read-buffer-size, in bytes: the largest request
	// header block, up to Envoy's largest max_request_headers_kb.
	ReadBufferSize = Size{Lo: 1 << 10, Hi: 8 << 20, Accepted: "1Ki to 8Mi, e.g. 64Ki (a plain number is bytes)"}
	// ReadBufferSizeKB is daprd's --dapr-http-read-buffer-size:
	// ReadBufferSize in KB.
	ReadBufferSizeKB = Int{Lo: int(ReadBufferSize.Lo >> 10), Hi: int(ReadBufferSize.Hi >> 10), Unset: true, Accepted: "-1 for the default (64 KB), or 1 to 8192 KB"}
	// ResourcesMaxFileSize is --resources-max-file-size: a resource file is
	// read whole into memory, at start and at every poll of hot reload.
	ResourcesMaxFileSize = Size{Lo: 1 << 10, Hi: 1 << 30, Accepted: "1Ki to 1Gi, e.g. 4Mi (a plain number is bytes)"}

	HealthProbeInterval = Int{Lo: 1, Hi: 3600, Accepted: "1 to 3600 seconds"}
	HealthProbeTimeout  = Int{Lo: 1, Hi: 3600 * 1000, Accepted: "1 to 3600000 milliseconds, at most --app-health-probe-interval"}
	HealthThreshold     = Int{Lo: 1, Hi: 1000000, Accepted: "1 to 1000000 failed probes in a row"}
	MaxProcs            = Int{Lo: 0, Hi: 1024, Unset: true, Accepted: "-1 for the default (1, or the container's CPU limit when it has one), 0 for Go's default (every CPU, or the CPU limit), or 1 to 1024"}
	SocketGroupID       = Int{Lo: 0, Hi: math.MaxUint32 - 1, Accepted: "a group's name, or its numeric id from 0 to 4294967294"}
	// GRPCStreams bounds --grpc-max-streams-per-connection and
	// --grpc-max-streams.
	GRPCStreams = Int{Lo: 1, Hi: 1 << 20, Accepted: "1 to 1048576 calls"}

	BlockShutdown           = Duration{Lo: 0, Hi: time.Hour, Accepted: "0 to 1h, e.g. 10s"}
	WorkloadCertTTL         = Duration{Lo: 10 * time.Second, Hi: 720 * time.Hour, Accepted: "10s to 720h, e.g. 24h"}
	SecretPoll              = Duration{Lo: time.Second, Hi: time.Hour, Accepted: "1s to 1h, e.g. 30s"}
	InternalStallTimeout    = Duration{Lo: time.Second, Hi: time.Hour, Accepted: "1s to 1h, e.g. 30s"}
	GRPCFirstMessageTimeout = Duration{Lo: time.Second, Hi: time.Hour, Accepted: "1s to 1h, e.g. 30s"}
)

// ParseSize parses a byte size: a plain number of bytes, or a number with a
// Kubernetes-style suffix (Ki, Mi, Gi, Ti binary; k, M, G, T decimal).
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}
	num, mult := s, int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size: use a positive number of bytes with an optional suffix Ki, Mi, Gi (e.g. 4Mi)", s)
	}
	return n * mult, nil
}
