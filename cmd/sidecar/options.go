package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	grpcapi "github.com/tandem-run/tandem/internal/api/grpc"
	httpapi "github.com/tandem-run/tandem/internal/api/http"
	"github.com/tandem-run/tandem/internal/identity"
	"github.com/tandem-run/tandem/internal/invoke"
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

	Mode      string // standalone or kubernetes
	Namespace string
	// PodName is the POD_NAME environment variable (the injector sets it),
	// which pub/sub metadata templates read ({podName}), as daprd's.
	PodName string
	// ResourcesPaths are the folders of Component, Configuration and
	// Resiliency YAML (--resources-path, repeatable as in daprd).
	ResourcesPaths []string
	Config         string
	// HotReload watches the resources and applies their changes while
	// serving, unless the Configuration's HotReload feature is disabled.
	HotReload bool
	// SecretPoll is how often, in kubernetes mode, the Secrets that
	// Components read are got again, for hot reload (1s to 1h).
	SecretPoll time.Duration
	// ResourcesMaxFileSize is the most read of a file of ResourcesPaths
	// or Config, in bytes: minResourcesFileSize to maxResourcesFileSize,
	// default 4 MiB.
	ResourcesMaxFileSize int64

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

	// The gRPC API's bounds (internal/api/grpc): the calls one connection
	// carries at once, the calls in flight over all connections, and how
	// long a call to the sidecar's own methods may take to send its request.
	GRPCMaxStreamsPerConn   int
	GRPCMaxStreams          int
	GRPCFirstMessageTimeout time.Duration

	// InternalStallTimeout ends a call on the internal port whose answer
	// makes no progress for this long because the peer keeps its HTTP/2
	// flow-control window shut (a call that waits for the app, such as an
	// idle event stream, is not stalled).
	InternalStallTimeout time.Duration

	// Mutual TLS between sidecars (internal/identity). EnableMTLS defaults
	// to on in standalone mode (a local CA in the registry folder) and off
	// in kubernetes mode until the control plane's CA is deployed.
	EnableMTLS          bool
	AllowPlaintextPeers bool          // accept (and fall back to) plaintext peers: an upgrade window
	TrustDomain         string        // of this sidecar's SPIFFE ID
	TrustAnchorsFile    string        // PEM roots to trust, watched; standalone default: the local CA's bundle
	SentryAddress       string        // the CA's address (kubernetes mode)
	SentryTokenFile     string        // the projected service-account token sent to the CA
	CertTTL             time.Duration // of this sidecar's certificate
	// LocalCATTL is the life of a root the standalone local CA makes
	// (TANDEM_LOCAL_CA_TTL, for tests that bring its rotation forward).
	LocalCATTL time.Duration

	RegistryDir   string // standalone: registry folder
	ClusterDomain string // kubernetes: DNS cluster domain
	DNSServer     string // kubernetes: host:port of the DNS server; empty: system

	// UnixDomainSocket is the folder where the HTTP and gRPC APIs listen
	// on Unix sockets, named as daprd names them, instead of their ports;
	// "": on their ports.
	UnixDomainSocket string
	// UnixDomainSocketGroup is the group (a name, or a numeric id from 0
	// to 4294967294) that may connect to the Unix sockets too: they are
	// 0660 and belong to it; "": 0600, the sidecar's user only.
	UnixDomainSocketGroup string
	// ProfilePort is where Go's pprof is served when EnableProfiling
	// (0 picks a free port); daprd's default 7777.
	ProfilePort     int
	EnableProfiling bool
	// AppHealth checks the app's health (--enable-app-health-check); nil:
	// the app is ready once its port answers, and stays so.
	AppHealth        *invoke.HealthCheck
	EnableAPILogging bool // log every API call
	// BlockShutdown holds a SIGTERM's graceful shutdown back this long, or
	// until the app's health check fails, while the sidecar serves as
	// before (--dapr-block-shutdown-duration); 0: no wait.
	BlockShutdown time.Duration
	// AllowedOrigins are the origins browser pages may call the HTTP API
	// from (--allowed-origins): by default the loopback origins; "*" is
	// daprd's behaviour, every origin and no CORS headers.
	AllowedOrigins httpapi.Origins
	// AllowedHosts are the names the HTTP API answers to in a Host header
	// beyond localhost, *.localhost and IP addresses: --allowed-hosts and
	// the names among --dapr-listen-addresses.
	AllowedHosts httpapi.Hosts

	// MaxProcs is --max-procs: -1 for the default (see internal/maxprocs), 0 for
	// Go's own, or the number of CPUs the sidecar's Go code runs on at once.
	MaxProcs int
	// procs and procsWhy are the GOMAXPROCS run set, and why (for the log).
	procs    int
	procsWhy string
	// gcPercent and memoryLimit are the GOGC and soft memory limit in
	// force (see gc.go; -1 and 0: none), for the log.
	gcPercent   int
	memoryLimit int64

	// Unused are the flags given that this sidecar accepts without effect,
	// each with the reason; run logs them once.
	Unused []string
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
	// A resource file is read whole into memory, at start and at every
	// poll of hot reload.
	minResourcesFileSize = 1 << 10
	maxResourcesFileSize = 1 << 30
	// maxAppConcurrency bounds --app-max-concurrency: the sidecar allocates a
	// channel of that capacity.
	maxAppConcurrency   = 1 << 20
	defaultGraceSeconds = 5
	maxGraceSeconds     = 3600
	defaultProfilePort  = 7777 // daprd's
	maxBlockShutdown    = time.Hour
	maxProcs            = 1024
	maxGRPCStreams      = 1 << 20
	maxFirstMessage     = time.Hour
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
	profilePortRange = intRange{lo: 0, hi: math.MaxUint16, unset: true, accepted: "-1 for the default (7777), 0 to pick a free port, or 1 to 65535"}
	probeInterval    = intRange{lo: 1, hi: 3600, accepted: "1 to 3600 seconds"}
	probeTimeout     = intRange{lo: 1, hi: 3600 * 1000, accepted: "1 to 3600000 milliseconds, at most --app-health-probe-interval"}
	maxProcsRange    = intRange{lo: 0, hi: maxProcs, unset: true, accepted: "-1 for the default (1, or the container's CPU limit when it has one), 0 for Go's default (every CPU, or the CPU limit), or 1 to 1024"}
	gidRange         = intRange{lo: 0, hi: math.MaxUint32 - 1, accepted: "a group's name, or its numeric id from 0 to 4294967294"}
	healthThreshold  = intRange{lo: 1, hi: 1000000, accepted: "1 to 1000000 failed probes in a row"}
	grpcStreamsRange = intRange{lo: 1, hi: maxGRPCStreams, accepted: "1 to 1048576 calls"}
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
	var appPort, publicPort, maxBody, readBuffer, resourcesMaxFile, listen, logLevel, origins, hosts string
	var grace, readBufferSizeKB, maxRequestSizeMB int
	var appSSL, showVersion bool
	var health invoke.HealthCheck
	var healthOn bool
	var healthInterval, healthTimeout int
	var placement, scheduler string
	fs.StringVar(&o.AppID, "app-id", "", "this app's id (required): a DNS-1123 label")
	fs.StringVar(&appPort, "app-port", "", "port the app listens on; none or 0: outbound-only sidecar")
	fs.StringVar(&o.AppProtocol, "app-protocol", "http", "protocol of the app: http, grpc, h2c, https or grpcs")
	fs.BoolVar(&appSSL, "app-ssl", false, "TLS to the app: --app-protocol http becomes https, grpc grpcs (daprd's older flag)")
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
	addPath := func(v string) error {
		if v = strings.TrimSpace(v); v != "" {
			o.ResourcesPaths = append(o.ResourcesPaths, v)
		}
		return nil
	}
	fs.Func("resources-path", "folder of Component, Configuration and Resiliency YAML files; give it more than once for more folders", addPath)
	fs.Func("components-path", "alias of --resources-path", addPath)
	fs.StringVar(&o.Config, "config", "", "Configuration file (standalone) or name (kubernetes)")
	fs.StringVar(&resourcesMaxFile, "resources-max-file-size", "4Mi", "largest resource file read, in --resources-path and --config, e.g. 4Mi; 1Ki to 1Gi; a larger file, or one that is not a regular file, is refused")
	fs.BoolVar(&o.HotReload, "enable-hot-reload", true, "apply changed Components, Configuration and Resiliency without a restart (off also when the Configuration disables its HotReload feature)")
	fs.DurationVar(&o.SecretPoll, "kubernetes-secret-poll", 30*time.Second, "kubernetes: how often the Secrets that Components read are got again, to apply their changes (1s to 1h)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.LogJSON, "log-as-json", false, "log as JSON")
	fs.StringVar(&maxBody, "max-body-size", "", "largest request body, e.g. 4Mi, up to 1Ti (default 4Mi for buffered APIs; invocation unlimited unless set)")
	intVar(&maxRequestSizeMB, "dapr-http-max-request-size", -1, maxRequestMB, "largest request body in `MB` (daprd's older flag; --max-body-size in MB)")
	fs.StringVar(&readBuffer, "read-buffer-size", "", "largest request header block the HTTP API reads, e.g. 64Ki; a plain number is bytes, as in daprd; 1Ki to 8Mi (default 64Ki)")
	intVar(&readBufferSizeKB, "dapr-http-read-buffer-size", -1, readBufferKB, "largest request header block in `KB` (daprd's older flag; --read-buffer-size in KB)")
	intVar(&grace, "dapr-graceful-shutdown-seconds", defaultGraceSeconds, graceRange, "how many `seconds` in-flight calls may take to finish on shutdown")
	fs.DurationVar(&o.InternalStallTimeout, "internal-stall-timeout", 30*time.Second, "end a call on the internal port whose answer the peer has not accepted for this long (its flow-control window stays shut); 1s to 1h")
	intVar(&o.GRPCMaxStreamsPerConn, "grpc-max-streams-per-connection", grpcapi.DefaultMaxStreamsPerConn, grpcStreamsRange, "most `calls` one connection to the gRPC API carries at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); clients hold more until one ends")
	intVar(&o.GRPCMaxStreams, "grpc-max-streams", grpcapi.DefaultMaxStreams, grpcStreamsRange, "most `calls` in flight on the gRPC API over all connections; more end at once with ResourceExhausted")
	fs.DurationVar(&o.GRPCFirstMessageTimeout, "grpc-first-message-timeout", grpcapi.DefaultFirstMessageTimeout, "end a call to the gRPC API's own methods (Dapr's, health) that has not sent its request this long after its headers; proxied calls have no such bound; 1s to 1h")
	fs.BoolVar(&o.EnableMTLS, "enable-mtls", false, "mutual TLS with SPIFFE identities on every hop between sidecars; default on in standalone mode, off in kubernetes mode")
	fs.BoolVar(&o.AllowPlaintextPeers, "allow-plaintext-peers", false, "during a rollout, accept calls from peers without mutual TLS (counted in tandem_hop_plaintext_calls_total) and call peers that do not speak TLS in plaintext")
	fs.StringVar(&o.TrustDomain, "trust-domain", "public", "trust domain of this sidecar's SPIFFE ID")
	fs.StringVar(&o.TrustAnchorsFile, "trust-anchors-file", "", "PEM file of the roots to trust for peers' certificates, reloaded when it changes (standalone default: the local CA's trust-bundle.pem)")
	fs.StringVar(&o.SentryAddress, "sentry-address", "", "https://host:port of the control plane's certificate authority (kubernetes mode)")
	fs.StringVar(&o.SentryTokenFile, "sentry-token-file", "/var/run/secrets/tandem.io/sentry/token", "projected service-account token (audience tandem-ca) sent to the certificate authority; read at every renewal")
	fs.DurationVar(&o.CertTTL, "workload-cert-ttl", 24*time.Hour, "how long this sidecar's certificate is valid; it is renewed at two thirds of that (10s to 720h)")
	fs.StringVar(&o.RegistryDir, "registry-dir", getenv("TANDEM_REGISTRY_DIR"), "standalone: registry folder of running sidecars (env TANDEM_REGISTRY_DIR)")
	fs.StringVar(&o.ClusterDomain, "kubernetes-cluster-domain", "cluster.local", "kubernetes: the cluster's DNS domain")
	fs.StringVar(&o.DNSServer, "kubernetes-dns-server", "", "kubernetes: DNS server host:port (default: the system's)")
	fs.StringVar(&o.UnixDomainSocket, "unix-domain-socket", "", "`folder` where the HTTP and gRPC APIs listen on Unix sockets (dapr-<app-id>-http.socket, dapr-<app-id>-grpc.socket) instead of their ports; mode 0600, whatever the umask")
	fs.StringVar(&o.UnixDomainSocketGroup, "unix-domain-socket-group", "", "`group` (name or numeric id) that may connect to the Unix sockets too: they become 0660 and belong to it")
	intVar(&o.MaxProcs, "max-procs", -1, maxProcsRange, "`CPUs` the sidecar's Go code runs on at once (GOMAXPROCS); GOMAXPROCS in the environment is taken when this is -1")
	fs.BoolVar(&o.EnableProfiling, "enable-profiling", false, "serve Go's pprof (/debug/pprof/) on --profile-port")
	intVar(&o.ProfilePort, "profile-port", -1, profilePortRange, "pprof `port` with --enable-profiling")
	fs.BoolVar(&healthOn, "enable-app-health-check", false, "probe the app's health; while it fails, the app is reported unhealthy and not called")
	fs.StringVar(&health.Path, "app-health-check-path", invoke.DefaultHealthPath, "path the health probe GETs (HTTP apps)")
	intVar(&healthInterval, "app-health-probe-interval", int(invoke.DefaultHealthInterval/time.Second), probeInterval, "`seconds` between health probes")
	intVar(&healthTimeout, "app-health-probe-timeout", int(invoke.DefaultHealthTimeout/time.Millisecond), probeTimeout, "`milliseconds` a health probe may take")
	intVar(&health.Threshold, "app-health-threshold", invoke.DefaultHealthThreshold, healthThreshold, "failed `probes` in a row that make the app unhealthy")
	fs.BoolVar(&o.EnableAPILogging, "enable-api-logging", false, "log every call to the HTTP and gRPC APIs")
	fs.DurationVar(&o.BlockShutdown, "dapr-block-shutdown-duration", 0, "on SIGTERM, keep serving this long (or until the app's health check fails) before shutting down; 0 to 1h")
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated origins browser pages may call the HTTP API from (CORS), e.g. https://app.example.com,http://localhost:*; pages on other origins may only GET and HEAD; default: loopback origins (http or https on localhost, *.localhost, 127.0.0.1, [::1]); * for every origin and no CORS headers, as daprd")
	fs.StringVar(&hosts, "allowed-hosts", "", "comma-separated names the HTTP API answers to in a request's Host, e.g. sidecar,*.example.internal, beyond localhost, *.localhost and IP addresses, which it always answers to; * for any, as daprd")
	fs.StringVar(&placement, "placement-host-address", "", "accepted without effect: this sidecar has no actors")
	fs.StringVar(&scheduler, "scheduler-host-address", "", "accepted without effect: this sidecar has no scheduler (jobs, reminders)")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	// An empty argument is skipped, and parsing goes on after it: the Dapr
	// CLI passes one where it blanked a flag it takes the runtime not to
	// know (--scheduler-host-address, for a runtime version before 1.14),
	// and leaves that flag's value after it, which is skipped too.
	var blanked []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
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
		if rest = fs.Args(); len(rest) == 0 {
			break
		}
		if rest[0] != "" {
			return o, fmt.Errorf("unexpected argument %q: every option is a flag (--name value)", rest[0])
		}
		if rest = rest[1:]; len(rest) > 0 && rest[0] != "" && !strings.HasPrefix(rest[0], "-") {
			blanked, rest = append(blanked, rest[0]), rest[1:]
		}
	}
	if showVersion {
		return o, &usageError{version + "\n"}
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
	case "http", "h2c", "https", "grpc", "grpcs":
	default:
		return o, fmt.Errorf("--app-protocol %q is not valid; accepted: http, grpc, h2c, https, grpcs", o.AppProtocol)
	}
	if appSSL {
		switch o.AppProtocol {
		case "http":
			o.AppProtocol = "https"
		case "grpc":
			o.AppProtocol = "grpcs"
		case "h2c":
			return o, errors.New("--app-ssl with --app-protocol h2c: h2c is HTTP/2 without TLS; for TLS use --app-protocol https")
		}
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
	if o.AllowedHosts, err = parseHosts(hosts, o.ListenAddresses); err != nil {
		return o, err
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
	if logLevel == "fatal" { // daprd's highest level: errors only, here
		logLevel = "error"
	}
	if err = o.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return o, fmt.Errorf("--log-level %q is not valid; accepted: debug, info, warn, error, fatal", logLevel)
	}
	o.APIToken, o.AppToken = getenv("DAPR_API_TOKEN"), getenv("APP_API_TOKEN")
	o.PodName = getenv("POD_NAME")

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
	if o.ResourcesMaxFileSize, err = parseSizeIn("--resources-max-file-size", resourcesMaxFile, minResourcesFileSize, maxResourcesFileSize, "1Ki to 1Gi, e.g. 4Mi (a plain number is bytes)"); err != nil {
		return o, err
	}
	if !given["enable-mtls"] {
		o.EnableMTLS = o.Mode == "standalone"
	}
	if o.CertTTL < 10*time.Second || o.CertTTL > 720*time.Hour {
		return o, fmt.Errorf("--workload-cert-ttl %s is not valid; accepted: 10s to 720h, e.g. 24h", o.CertTTL)
	}
	o.LocalCATTL = identity.DefaultRootTTL
	if v := getenv("TANDEM_LOCAL_CA_TTL"); v != "" {
		if o.LocalCATTL, err = time.ParseDuration(v); err != nil || o.LocalCATTL < time.Minute || o.LocalCATTL > 10*identity.DefaultRootTTL {
			return o, fmt.Errorf("TANDEM_LOCAL_CA_TTL %q is not valid; accepted: 1m to 87600h, e.g. 8760h (the life of a root the local CA makes)", v)
		}
	}
	if o.SecretPoll < time.Second || o.SecretPoll > time.Hour {
		return o, fmt.Errorf("--kubernetes-secret-poll %s is not valid; accepted: 1s to 1h, e.g. 30s", o.SecretPoll)
	}
	if o.InternalStallTimeout < time.Second || o.InternalStallTimeout > time.Hour {
		return o, fmt.Errorf("--internal-stall-timeout %s is not valid; accepted: 1s to 1h, e.g. 30s", o.InternalStallTimeout)
	}
	if o.GRPCFirstMessageTimeout < time.Second || o.GRPCFirstMessageTimeout > maxFirstMessage {
		return o, fmt.Errorf("--grpc-first-message-timeout %s is not valid; accepted: 1s to 1h, e.g. 30s", o.GRPCFirstMessageTimeout)
	}
	if grace < 0 {
		grace = defaultGraceSeconds
	}
	o.GracefulShutdown = time.Duration(grace) * time.Second

	profilePortSet := o.ProfilePort >= 0
	if !profilePortSet {
		o.ProfilePort = defaultProfilePort
	}
	if o.BlockShutdown < 0 || o.BlockShutdown > maxBlockShutdown {
		return o, fmt.Errorf("--dapr-block-shutdown-duration %s is not valid; accepted: 0 to 1h, e.g. 10s", o.BlockShutdown)
	}
	if g := o.UnixDomainSocketGroup; g != "" && strings.Trim(g, "0123456789") == "" {
		if _, err := gidRange.parse("--unix-domain-socket-group", g); err != nil {
			return o, err
		}
	} else if strings.ContainsAny(g, ": \t\n") {
		return o, fmt.Errorf("--unix-domain-socket-group %q is not valid; accepted: a group's name or numeric id", g)
	}
	if o.AllowedOrigins, err = parseOrigins(origins); err != nil {
		return o, err
	}
	if healthOn {
		health.Interval = time.Duration(healthInterval) * time.Second
		health.Timeout = time.Duration(healthTimeout) * time.Millisecond
		if health.Timeout > health.Interval {
			return o, fmt.Errorf("--app-health-probe-timeout %d ms is longer than --app-health-probe-interval %d s; a probe must end before the next", healthTimeout, healthInterval)
		}
		if u, perr := url.ParseRequestURI(health.Path); perr != nil || !strings.HasPrefix(health.Path, "/") || u.Fragment != "" || strings.ContainsAny(health.Path, " \t") {
			return o, fmt.Errorf("--app-health-check-path %q is not valid; accepted: a path from /, e.g. /healthz", health.Path)
		}
		o.AppHealth = &health
	}
	given["profile-port"] = profilePortSet // -1 is "not given"
	o.Unused = unused(given, blanked, o)
	return o, nil
}

// unused lists the flags given that have no effect here, each with why, and
// the values skipped after empty arguments.
func unused(given map[string]bool, blanked []string, o Options) []string {
	var out []string
	for _, f := range []struct{ name, why string }{
		{"placement-host-address", "this sidecar has no actors"},
		{"scheduler-host-address", "this sidecar has no scheduler (jobs, reminders)"},
	} {
		if given[f.name] {
			out = append(out, "--"+f.name+": "+f.why)
		}
	}
	if o.AppHealth == nil {
		for _, f := range []string{"app-health-check-path", "app-health-probe-interval", "app-health-probe-timeout", "app-health-threshold"} {
			if given[f] {
				out = append(out, "--"+f+": app health checks are off without --enable-app-health-check")
			}
		}
	}
	if given["unix-domain-socket-group"] && o.UnixDomainSocket == "" {
		out = append(out, "--unix-domain-socket-group: the APIs listen on ports without --unix-domain-socket")
	}
	if given["profile-port"] && !o.EnableProfiling {
		out = append(out, "--profile-port: profiling is off without --enable-profiling")
	}
	for _, v := range blanked {
		out = append(out, fmt.Sprintf("an empty argument and the value after it, %q: the Dapr CLI blanks --scheduler-host-address, not its value, for runtimes it takes for older than 1.14", v))
	}
	return out
}

// parseOrigins parses --allowed-origins: empty (the default) is the
// loopback origins; "*" is daprd's default and means every origin, no CORS
// headers; otherwise a comma-separated list of origins
// (scheme://host[:port]), each with at most one "*" wildcard.
func parseOrigins(s string) (httpapi.Origins, error) {
	switch strings.TrimSpace(s) {
	case "":
		return httpapi.Origins{}, nil
	case "*":
		return httpapi.Origins{Any: true}, nil
	}
	var out httpapi.Origins
	for o := range strings.SplitSeq(s, ",") {
		o = strings.TrimSpace(o)
		scheme, host, ok := strings.Cut(o, "://")
		if o == "*" {
			return out, fmt.Errorf("--allowed-origins %q mixes * with origins; give * alone (every origin, no CORS headers) or a list of origins", s)
		}
		if !ok || scheme == "" || host == "" || strings.ContainsAny(host, "/ \t") || strings.Count(o, "*") > 1 {
			return out, fmt.Errorf("--allowed-origins %q is not valid at %q; accepted: * or comma-separated origins such as https://app.example.com or https://*.example.com", s, o)
		}
		out.Patterns = append(out.Patterns, strings.ToLower(o))
	}
	return out, nil
}

// parseHosts parses --allowed-hosts: "*" (any Host) or comma-separated
// host names, each maybe starting "*." (every name under it). The names
// among the listen addresses are added: the API is called by them.
func parseHosts(s string, listen []string) (httpapi.Hosts, error) {
	var out httpapi.Hosts
	if strings.TrimSpace(s) == "*" {
		out.Any = true
		return out, nil
	}
	for h := range strings.SplitSeq(s, ",") {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		name := strings.TrimPrefix(h, "*.")
		if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != "" || strings.Contains(name, "..") {
			return out, fmt.Errorf("--allowed-hosts %q is not valid at %q; accepted: * or comma-separated host names without port, such as sidecar or *.example.internal", s, h)
		}
		out.Names = append(out.Names, strings.TrimSuffix(h, "."))
	}
	for _, a := range listen {
		if _, err := netip.ParseAddr(a); err != nil && a != "" {
			out.Names = append(out.Names, strings.TrimSuffix(strings.ToLower(a), "."))
		}
	}
	return out, nil
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

// usageError carries the text asked for with --help or --version, which
// main prints before it exits without running.
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
