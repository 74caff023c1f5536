package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-run/tandem/internal/ports"
	"github.com/tandem-run/tandem/pkg/resolver"
)

// Options is everything the command line and environment say. It is filled
// once, by parseOptions, and handed to run. Every number in it has been
// range-checked: run never sees a port past 65535, a negative size or a
// duration that wrapped.
type Options struct {
	AppID             string
	AppPort           int // 0: no app (--app-port absent or 0)
	AppProtocol       string
	AppChannelAddress string

	HTTPPort     int // 0: pick a free port
	GRPCPort     int
	InternalPort int
	// InternalAddress is the host the internal (sidecar-to-sidecar) port
	// binds: 127.0.0.1 in standalone mode, where every peer runs on this
	// host; "" (all interfaces) in kubernetes mode, where peers reach it
	// from other pods. --dapr-internal-grpc-listen-address overrides both.
	InternalAddress string
	PublicPort      int // -1: none
	MetricsPort     int
	EnableMetrics   bool
	ListenAddresses []string // empty: all interfaces

	Mode          string // standalone or kubernetes
	Namespace     string
	ResourcesPath string
	Config        string

	LogLevel slog.Level
	LogJSON  bool

	AppMaxConcurrency int // 0: no bound; at most maxAppConcurrency

	MaxBodySize    int64 // bytes, 1 to maxBodySize; default 4 MiB
	MaxBodySizeSet bool  // streamed invocation is limited only when set
	// ReadBufferSize is the largest request header block the HTTP API
	// reads, in bytes (daprd's read buffer): minReadBufferSize to
	// maxReadBufferSize, default 64 KiB.
	ReadBufferSize   int
	GracefulShutdown time.Duration // 0 to maxGraceSeconds seconds; default 5 s

	APIToken string // DAPR_API_TOKEN: required of every API call
	AppToken string // APP_API_TOKEN: sent to this sidecar's app

	// InternalStallTimeout ends a call on the internal port whose answer
	// makes no progress for this long because the peer keeps its HTTP/2
	// flow-control window shut (a call that waits for the app, such as an
	// idle event stream, is not stalled).
	InternalStallTimeout time.Duration

	RegistryDir   string // standalone: registry folder
	ClusterDomain string // kubernetes: DNS cluster domain
	DNSServer     string // kubernetes: host:port of the DNS server; empty: system
}

// Defaults and bounds of the numeric flags. The injector checks its
// annotations against the same numbers (internal/injector), so an admitted
// pod's sidecar always starts.
const (
	defaultMaxBodySize    = 4 << 20
	maxBodySize           = 1 << 40 // 1 TiB: a limit, never allocated
	defaultReadBufferSize = 64 << 10
	minReadBufferSize     = 1 << 10
	maxReadBufferSize     = 8 << 20 // as Envoy's largest max_request_headers_kb
	// maxAppConcurrency bounds --app-max-concurrency: the sidecar allocates a
	// channel of that capacity.
	maxAppConcurrency   = 1 << 20
	defaultGraceSeconds = 5
	maxGraceSeconds     = 3600
)

// The accepted values of each numeric flag. -1 means "unset: the default, or
// no bound" where daprd gives it that meaning.
var (
	portRange        = intRange{lo: 0, hi: math.MaxUint16, accepted: "0 to 65535 (0 picks a free port)"}
	appPortRange     = intRange{lo: 0, hi: math.MaxUint16, accepted: "0 to 65535 (0: no app port)"}
	publicPortRange  = intRange{lo: 0, hi: math.MaxUint16, accepted: "0 to 65535 (0 picks a free port; leave it out for none)"}
	concurrencyRange = intRange{lo: 0, hi: maxAppConcurrency, unset: true, accepted: "-1 or 0 for no bound, or 1 to 1048576 calls in flight"}
	graceRange       = intRange{lo: 0, hi: maxGraceSeconds, unset: true, accepted: "-1 for the default (5), or 0 to 3600 seconds"}
	readBufferKB     = intRange{lo: minReadBufferSize >> 10, hi: maxReadBufferSize >> 10, unset: true, accepted: "-1 for the default (64 KB), or 1 to 8192 KB"}
	maxRequestMB     = intRange{lo: 1, hi: maxBodySize >> 20, unset: true, accepted: "-1 for the default (4 MB for buffered APIs, invocation unlimited), or 1 to 1048576 MB"}
)

// parseOptions parses the sidecar's flags (daprd's names) and environment.
// It is pure: tests call it with any args and getenv.
func parseOptions(args []string, getenv func(string) string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("sidecar", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// refused keeps the first refusal of a numeric flag: the flag package
	// rewords the errors of Set.
	var refused error
	intVar := func(p *int, name string, def int, r intRange, usage string) {
		*p = def
		fs.Var(&intFlag{p: p, name: name, r: r, refused: &refused}, name, usage+"; accepted: "+r.accepted)
	}
	var appPort, publicPort, maxBody, readBuffer, listen, logLevel string
	var grace, readBufferSizeKB, maxRequestSizeMB int
	fs.StringVar(&o.AppID, "app-id", "", "this app's id (required): a DNS-1123 label")
	fs.StringVar(&appPort, "app-port", "", "port the app listens on; none or 0: outbound-only sidecar")
	fs.StringVar(&o.AppProtocol, "app-protocol", "http", "protocol of the app: http, grpc, h2c or https")
	fs.StringVar(&o.AppChannelAddress, "app-channel-address", "127.0.0.1", "host of the app")
	intVar(&o.AppMaxConcurrency, "app-max-concurrency", -1, concurrencyRange, "most `calls` in flight to the app; more wait for a free slot")
	intVar(&o.HTTPPort, "dapr-http-port", ports.HTTP, portRange, "HTTP API `port`")
	intVar(&o.GRPCPort, "dapr-grpc-port", ports.GRPC, portRange, "gRPC API `port`")
	intVar(&o.InternalPort, "dapr-internal-grpc-port", ports.Internal, portRange, "sidecar-to-sidecar `port`")
	fs.StringVar(&o.InternalAddress, "dapr-internal-grpc-listen-address", "", "address the sidecar-to-sidecar port binds; default 127.0.0.1 in standalone mode (peers run on this host), all interfaces in kubernetes mode; 0.0.0.0 or :: for all")
	fs.StringVar(&o.InternalAddress, "dapr-internal-listen-address", "", "alias of --dapr-internal-grpc-listen-address")
	fs.StringVar(&publicPort, "dapr-public-port", "", "port for the two health routes only; none by default")
	intVar(&o.MetricsPort, "metrics-port", ports.Metrics, portRange, "Prometheus metrics `port`")
	fs.BoolVar(&o.EnableMetrics, "enable-metrics", true, "serve Prometheus metrics on --metrics-port")
	fs.StringVar(&listen, "dapr-listen-addresses", "", "comma-separated addresses the APIs bind to; default all")
	fs.StringVar(&o.Mode, "mode", "standalone", "standalone or kubernetes")
	fs.StringVar(&o.ResourcesPath, "resources-path", "", "folder of Component YAML files")
	fs.StringVar(&o.ResourcesPath, "components-path", "", "alias of --resources-path")
	fs.StringVar(&o.Config, "config", "", "Configuration file (standalone) or name (kubernetes)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.LogJSON, "log-as-json", false, "log as JSON")
	fs.StringVar(&maxBody, "max-body-size", "", "largest request body, e.g. 4Mi, up to 1Ti (default 4Mi for buffered APIs; invocation unlimited unless set)")
	intVar(&maxRequestSizeMB, "dapr-http-max-request-size", -1, maxRequestMB, "largest request body in `MB` (daprd's older flag; --max-body-size in MB)")
	fs.StringVar(&readBuffer, "read-buffer-size", "", "largest request header block the HTTP API reads, e.g. 64Ki; a plain number is bytes, as in daprd; 1Ki to 8Mi (default 64Ki)")
	intVar(&readBufferSizeKB, "dapr-http-read-buffer-size", -1, readBufferKB, "largest request header block in `KB` (daprd's older flag; --read-buffer-size in KB)")
	intVar(&grace, "dapr-graceful-shutdown-seconds", defaultGraceSeconds, graceRange, "how many `seconds` in-flight calls may take to finish on shutdown")
	fs.DurationVar(&o.InternalStallTimeout, "internal-stall-timeout", 30*time.Second, "end a call on the internal port whose answer the peer has not accepted for this long (its flow-control window stays shut); 1s to 1h")
	fs.StringVar(&o.RegistryDir, "registry-dir", getenv("TANDEM_REGISTRY_DIR"), "standalone: registry folder of running sidecars (env TANDEM_REGISTRY_DIR)")
	fs.StringVar(&o.ClusterDomain, "kubernetes-cluster-domain", "cluster.local", "kubernetes: the cluster's DNS domain")
	fs.StringVar(&o.DNSServer, "kubernetes-dns-server", "", "kubernetes: DNS server host:port (default: the system's)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			b.WriteString("Usage: sidecar --app-id ID [--app-port PORT] [flags]\n\n")
			fs.SetOutput(&b)
			fs.PrintDefaults()
			return o, &usageError{b.String()}
		}
		if refused != nil {
			return o, refused
		}
		return o, flagError(err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: every option is a flag (--name value)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	var err error
	if err = resolver.ValidateID(o.AppID); err != nil {
		return o, fmt.Errorf("--app-id: %w", err)
	}
	if appPort != "" {
		if o.AppPort, err = appPortRange.parse("--app-port", appPort); err != nil {
			return o, err
		}
	}
	switch o.AppProtocol {
	case "http", "h2c", "https", "grpc":
	case "grpcs":
		return o, fmt.Errorf("--app-protocol grpcs (gRPC over TLS to the app) is not supported; the app channel is loopback: use grpc")
	default:
		return o, fmt.Errorf("--app-protocol %q is not valid; accepted: http, grpc, h2c, https", o.AppProtocol)
	}
	o.AppMaxConcurrency = max(o.AppMaxConcurrency, 0) // -1: no bound, as 0
	if o.AppChannelAddress == "" {
		return o, errors.New("--app-channel-address is empty; give the app's host, e.g. 127.0.0.1")
	}
	o.PublicPort = -1
	if publicPort != "" {
		if o.PublicPort, err = publicPortRange.parse("--dapr-public-port", publicPort); err != nil {
			return o, err
		}
	}
	for a := range strings.SplitSeq(listen, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.ListenAddresses = append(o.ListenAddresses, strings.Trim(a, "[]"))
		}
	}
	switch o.Mode {
	case "standalone":
		// Peers of a standalone sidecar run on this host: nothing else
		// needs its internal port.
		if o.InternalAddress == "" {
			o.InternalAddress = "127.0.0.1"
		}
	case "kubernetes":
		o.Namespace = getenv("NAMESPACE")
		if o.Namespace == "" {
			return o, errors.New("--mode kubernetes needs the NAMESPACE environment variable (the injector sets it)")
		}
	default:
		return o, fmt.Errorf("--mode %q is not valid; accepted: standalone, kubernetes", o.Mode)
	}
	if o.DNSServer != "" {
		_, port, err := net.SplitHostPort(o.DNSServer)
		if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 1 || p > math.MaxUint16 {
			return o, fmt.Errorf("--kubernetes-dns-server %q is not valid; accepted: host:port with a port from 1 to 65535, e.g. 10.96.0.10:53", o.DNSServer)
		}
	}
	if err = o.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return o, fmt.Errorf("--log-level %q is not valid; accepted: debug, info, warn, error", logLevel)
	}
	o.APIToken, o.AppToken = getenv("DAPR_API_TOKEN"), getenv("APP_API_TOKEN")

	o.MaxBodySize = defaultMaxBodySize
	switch {
	case maxBody != "" && maxRequestSizeMB >= 0:
		return o, errors.New("--max-body-size and --dapr-http-max-request-size set the same limit; give one")
	case maxBody != "":
		if o.MaxBodySize, err = parseSizeIn("--max-body-size", maxBody, 1, maxBodySize, "1 to 1Ti, e.g. 16Mi"); err != nil {
			return o, err
		}
		o.MaxBodySizeSet = true
	case maxRequestSizeMB >= 0:
		o.MaxBodySize, o.MaxBodySizeSet = int64(maxRequestSizeMB)<<20, true
	}
	o.ReadBufferSize = defaultReadBufferSize
	switch {
	case readBuffer != "" && readBufferSizeKB >= 0:
		return o, errors.New("--read-buffer-size and --dapr-http-read-buffer-size set the same limit; give one")
	case readBuffer != "":
		n, err := parseSizeIn("--read-buffer-size", readBuffer, minReadBufferSize, maxReadBufferSize, "1Ki to 8Mi, e.g. 64Ki (a plain number is bytes)")
		if err != nil {
			return o, err
		}
		o.ReadBufferSize = int(n)
	case readBufferSizeKB >= 0:
		o.ReadBufferSize = readBufferSizeKB << 10
	}
	if o.InternalStallTimeout < time.Second || o.InternalStallTimeout > time.Hour {
		return o, fmt.Errorf("--internal-stall-timeout %s is not valid; accepted: 1s to 1h, e.g. 30s", o.InternalStallTimeout)
	}
	if grace < 0 {
		grace = defaultGraceSeconds
	}
	o.GracefulShutdown = time.Duration(grace) * time.Second
	return o, nil
}

// intRange is what a numeric flag accepts: lo to hi, and -1 when unset is
// true. Parsing never wraps: strconv refuses what an int cannot hold.
type intRange struct {
	lo, hi   int
	unset    bool // -1 is accepted: the default, or no bound
	accepted string
}

func (r intRange) parse(flag, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || (n < r.lo || n > r.hi) && !(r.unset && n == -1) {
		return 0, fmt.Errorf("%s %q is not valid; accepted: %s", flag, s, r.accepted)
	}
	return n, nil
}

// intFlag is a numeric flag checked against its range as it is parsed.
type intFlag struct {
	p       *int
	name    string
	r       intRange
	refused *error
}

func (f *intFlag) String() string {
	if f == nil || f.p == nil {
		return ""
	}
	return strconv.Itoa(*f.p)
}

func (f *intFlag) Set(s string) error {
	n, err := f.r.parse("--"+f.name, s)
	if err != nil {
		if *f.refused == nil {
			*f.refused = err
		}
		return err
	}
	*f.p = n
	return nil
}

// parseSizeIn parses a size with ParseSize and checks it is in [lo, hi].
func parseSizeIn(flag, s string, lo, hi int64, accepted string) (int64, error) {
	n, err := ParseSize(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s %q is not valid; accepted: %s", flag, s, accepted)
	}
	return n, nil
}

// usageError carries the usage text asked for with --help.
type usageError struct{ text string }

func (e *usageError) Error() string { return e.text }

// flagError rewrites the flag package's errors so they name the flag and say
// what to do.
func flagError(err error) error {
	msg := err.Error()
	if strings.HasPrefix(msg, "flag provided but not defined: ") {
		return fmt.Errorf("unknown flag %s; run with --help for the list", strings.TrimPrefix(msg, "flag provided but not defined: "))
	}
	return err
}

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
