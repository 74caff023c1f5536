package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-run/tandem/pkg/resolver"
)

// Options is everything the command line and environment say. It is filled
// once, by parseOptions, and handed to run.
type Options struct {
	AppID             string
	AppPort           int // 0: no app
	AppProtocol       string
	AppChannelAddress string

	HTTPPort        int // 0: pick a free port
	GRPCPort        int
	InternalPort    int
	InternalAddress string // host the internal port binds; empty: all
	PublicPort      int    // -1: none
	MetricsPort     int
	EnableMetrics   bool
	ListenAddresses []string // empty: all interfaces

	Mode          string // standalone or kubernetes
	Namespace     string
	ResourcesPath string
	Config        string

	LogLevel slog.Level
	LogJSON  bool

	AppMaxConcurrency int // 0: no bound

	MaxBodySize      int64
	MaxBodySizeSet   bool // streamed invocation is limited only when set
	GracefulShutdown time.Duration

	APIToken string // DAPR_API_TOKEN: required of every API call
	AppToken string // APP_API_TOKEN: sent to this sidecar's app

	RegistryDir   string // standalone: registry folder
	ClusterDomain string // kubernetes: DNS cluster domain
	DNSServer     string // kubernetes: host:port of the DNS server; empty: system
}

const defaultMaxBodySize = 4 << 20

// parseOptions parses the sidecar's flags (daprd's names) and environment.
// It is pure: tests call it with any args and getenv.
func parseOptions(args []string, getenv func(string) string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("sidecar", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var appPort, publicPort, maxBody, listen, logLevel string
	var grace int
	fs.StringVar(&o.AppID, "app-id", "", "this app's id (required): a DNS-1123 label")
	fs.StringVar(&appPort, "app-port", "", "port the app listens on; none: outbound-only sidecar")
	fs.StringVar(&o.AppProtocol, "app-protocol", "http", "protocol of the app: http, grpc, h2c or https")
	fs.StringVar(&o.AppChannelAddress, "app-channel-address", "127.0.0.1", "host of the app")
	fs.IntVar(&o.AppMaxConcurrency, "app-max-concurrency", 0, "most calls in flight to the app; more wait for a free slot (0: no bound)")
	fs.IntVar(&o.HTTPPort, "dapr-http-port", 3500, "HTTP API port (0: pick a free port)")
	fs.IntVar(&o.GRPCPort, "dapr-grpc-port", 50001, "gRPC API port (0: pick a free port)")
	fs.IntVar(&o.InternalPort, "dapr-internal-grpc-port", 50002, "sidecar-to-sidecar port (0: pick a free port)")
	fs.StringVar(&o.InternalAddress, "dapr-internal-listen-address", "", "address the sidecar-to-sidecar port binds; default all, as peers reach it from other hosts")
	fs.StringVar(&publicPort, "dapr-public-port", "", "port for healthz and metadata only; none by default")
	fs.IntVar(&o.MetricsPort, "metrics-port", 9090, "Prometheus metrics port (0: pick a free port)")
	fs.BoolVar(&o.EnableMetrics, "enable-metrics", true, "serve Prometheus metrics on --metrics-port")
	fs.StringVar(&listen, "dapr-listen-addresses", "", "comma-separated addresses the APIs bind to; default all")
	fs.StringVar(&o.Mode, "mode", "standalone", "standalone or kubernetes")
	fs.StringVar(&o.ResourcesPath, "resources-path", "", "folder of Component YAML files")
	fs.StringVar(&o.ResourcesPath, "components-path", "", "alias of --resources-path")
	fs.StringVar(&o.Config, "config", "", "Configuration file (standalone) or name (kubernetes)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.LogJSON, "log-as-json", false, "log as JSON")
	fs.StringVar(&maxBody, "max-body-size", "", "largest request body, e.g. 4Mi (default 4Mi for buffered APIs; invocation unlimited unless set)")
	fs.IntVar(&grace, "dapr-graceful-shutdown-seconds", 5, "how long in-flight calls may take to finish on shutdown")
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
		return o, flagError(err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: every option is a flag (--name value)", fs.Arg(0))
	}

	var err error
	if err = resolver.ValidateID(o.AppID); err != nil {
		return o, fmt.Errorf("--app-id: %w", err)
	}
	if appPort != "" {
		if o.AppPort, err = parsePort(appPort, false); err != nil {
			return o, fmt.Errorf("--app-port: %w", err)
		}
	}
	switch o.AppProtocol {
	case "http", "h2c", "https", "grpc":
	case "grpcs":
		return o, fmt.Errorf("--app-protocol grpcs (gRPC over TLS to the app) is not supported; the app channel is loopback: use grpc")
	default:
		return o, fmt.Errorf("--app-protocol %q is not valid; accepted: http, grpc, h2c, https", o.AppProtocol)
	}
	if o.AppMaxConcurrency < 0 {
		return o, fmt.Errorf("--app-max-concurrency %d is negative; give 0 for no bound or the most calls in flight", o.AppMaxConcurrency)
	}
	if o.AppChannelAddress == "" {
		return o, errors.New("--app-channel-address is empty; give the app's host, e.g. 127.0.0.1")
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"--dapr-http-port", o.HTTPPort}, {"--dapr-grpc-port", o.GRPCPort}, {"--dapr-internal-grpc-port", o.InternalPort}, {"--metrics-port", o.MetricsPort}} {
		if p.v < 0 || p.v > math.MaxUint16 {
			return o, fmt.Errorf("%s %d is not a port: use 0 to 65535 (0 picks a free port)", p.name, p.v)
		}
	}
	o.PublicPort = -1
	if publicPort != "" {
		if o.PublicPort, err = parsePort(publicPort, true); err != nil {
			return o, fmt.Errorf("--dapr-public-port: %w", err)
		}
	}
	for a := range strings.SplitSeq(listen, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.ListenAddresses = append(o.ListenAddresses, strings.Trim(a, "[]"))
		}
	}
	switch o.Mode {
	case "standalone":
	case "kubernetes":
		o.Namespace = getenv("NAMESPACE")
		if o.Namespace == "" {
			return o, errors.New("--mode kubernetes needs the NAMESPACE environment variable (the injector sets it)")
		}
	default:
		return o, fmt.Errorf("--mode %q is not valid; accepted: standalone, kubernetes", o.Mode)
	}
	if err = o.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return o, fmt.Errorf("--log-level %q is not valid; accepted: debug, info, warn, error", logLevel)
	}
	o.APIToken, o.AppToken = getenv("DAPR_API_TOKEN"), getenv("APP_API_TOKEN")
	o.MaxBodySize = defaultMaxBodySize
	if maxBody != "" {
		if o.MaxBodySize, err = ParseSize(maxBody); err != nil {
			return o, fmt.Errorf("--max-body-size: %w", err)
		}
		o.MaxBodySizeSet = true
	}
	if grace < 0 {
		return o, fmt.Errorf("--dapr-graceful-shutdown-seconds %d is negative", grace)
	}
	o.GracefulShutdown = time.Duration(grace) * time.Second
	return o, nil
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

func parsePort(s string, allowZero bool) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > math.MaxUint16 || (n == 0 && !allowZero) {
		if allowZero {
			return 0, fmt.Errorf("%q is not a port: use 0 to 65535", s)
		}
		return 0, fmt.Errorf("%q is not a port: use 1 to 65535", s)
	}
	return n, nil
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
