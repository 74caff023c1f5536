package main

import (
	"errors"
	"fmt"
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
	"github.com/tandem-run/tandem/internal/sidecarflag"
	"github.com/tandem-run/tandem/pkg/resolver"
)

// Options is everything the command line and environment say. It is filled
// once, by parseOptions, and handed to run. Every number in it has been
// range-checked against its bounds in internal/sidecarflag, which the
// injector checks pod annotations against too: run never sees a port past
// 65535, a negative size or a duration that wrapped.
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
	// or Config, in bytes: within sidecarflag.ResourcesMaxFileSize,
	// default 4 MiB.
	ResourcesMaxFileSize int64

	LogLevel slog.Level
	LogJSON  bool

	AppMaxConcurrency int // 0: no bound; within sidecarflag.AppMaxConcurrency

	MaxBodySize    int64 // bytes, within sidecarflag.MaxBodySize; default 4 MiB
	MaxBodySizeSet bool  // streamed invocation is limited only when set
	// ReadBufferSize is the largest request header block the HTTP API
	// reads, in bytes (daprd's read buffer): within
	// sidecarflag.ReadBufferSize, default 64 KiB.
	ReadBufferSize   int
	GracefulShutdown time.Duration // within sidecarflag.GracefulShutdown; default 5 s

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

// parseOptions parses the sidecar's flags (daprd's names) and environment.
// It is pure: tests call it with any args and getenv. Each group of options
// defines its flags on one flag set and returns its check, which, once the
// command line is parsed, checks the group's flags and fills its part of
// Options; the first refusal is the error.
func parseOptions(args []string, getenv func(string) string) (Options, error) {
	var o Options
	fs := newFlagSet()
	checks := []func() error{
		appOptions(fs, &o),
		listenOptions(fs, &o),
		modeOptions(fs, &o, getenv),
		logOptions(fs, &o),
		limitOptions(fs, &o),
		identityOptions(fs, &o, getenv),
		shutdownOptions(fs, &o),
		profilingOptions(fs, &o),
		healthOptions(fs, &o),
	}
	var placement, scheduler string
	var showVersion bool
	fs.StringVar(&placement, "placement-host-address", "", "accepted without effect: this sidecar has no actors")
	fs.StringVar(&scheduler, "scheduler-host-address", "", "accepted without effect: this sidecar has no scheduler (jobs, reminders)")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	blanked, err := fs.parse(args)
	if err != nil {
		return o, err
	}
	if showVersion {
		return o, &usageError{version + "\n"}
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return o, err
		}
	}
	o.Unused = unused(fs.given, blanked, o)
	return o, nil
}

// appOptions are the app's: its id, and where and how the sidecar calls it.
func appOptions(fs *flagSet, o *Options) func() error {
	var port string
	var ssl bool
	fs.StringVar(&o.AppID, "app-id", "", "this app's id (required): a DNS-1123 label")
	fs.StringVar(&port, "app-port", "", "port the app listens on; none or 0: outbound-only sidecar")
	fs.StringVar(&o.AppProtocol, "app-protocol", sidecarflag.DefaultAppProtocol, "protocol of the app: http, grpc, h2c, https or grpcs")
	fs.BoolVar(&ssl, "app-ssl", false, "TLS to the app: --app-protocol http becomes https, grpc grpcs (daprd's older flag)")
	fs.StringVar(&o.AppChannelAddress, "app-channel-address", "127.0.0.1", "host of the app")
	fs.int(&o.AppMaxConcurrency, "app-max-concurrency", -1, sidecarflag.AppMaxConcurrency, "most `calls` in flight to the app; more wait for a free slot")
	return func() error {
		if err := resolver.ValidateID(o.AppID); err != nil {
			return fmt.Errorf("--app-id: %w", err)
		}
		if port != "" {
			var err error
			if o.AppPort, err = sidecarflag.AppPort.Parse("--app-port", port); err != nil {
				return err
			}
		}
		switch o.AppProtocol {
		case "http", "h2c", "https", "grpc", "grpcs":
		default:
			return fmt.Errorf("--app-protocol %q is not valid; accepted: http, grpc, h2c, https, grpcs", o.AppProtocol)
		}
		if ssl {
			switch o.AppProtocol {
			case "http":
				o.AppProtocol = "https"
			case "grpc":
				o.AppProtocol = "grpcs"
			case "h2c":
				return errors.New("--app-ssl with --app-protocol h2c: h2c is HTTP/2 without TLS; for TLS use --app-protocol https")
			}
		}
		if sidecarflag.AppMaxConcurrency.IsUnset(o.AppMaxConcurrency) {
			o.AppMaxConcurrency = 0 // no bound
		}
		if o.AppChannelAddress == "" {
			return errors.New("--app-channel-address is empty; give the app's host, e.g. 127.0.0.1")
		}
		return nil
	}
}

// listenOptions are where the sidecar listens, and whom its HTTP API
// answers.
func listenOptions(fs *flagSet, o *Options) func() error {
	var public, listen, origins, hosts string
	fs.int(&o.HTTPPort, "dapr-http-port", ports.HTTP, sidecarflag.ListenPort, "HTTP API `port`")
	fs.int(&o.GRPCPort, "dapr-grpc-port", ports.GRPC, sidecarflag.ListenPort, "gRPC API `port`")
	fs.int(&o.InternalPort, "dapr-internal-grpc-port", ports.Internal, sidecarflag.ListenPort, "sidecar-to-sidecar `port`")
	fs.StringVar(&o.InternalAddress, "dapr-internal-grpc-listen-address", "", "address the sidecar-to-sidecar port binds; default 127.0.0.1 in standalone mode (peers run on this host), all interfaces in kubernetes mode; 0.0.0.0 or :: for all")
	fs.StringVar(&o.InternalAddress, "dapr-internal-listen-address", "", "alias of --dapr-internal-grpc-listen-address")
	fs.StringVar(&public, "dapr-public-port", "", "port for the two health routes only; none by default")
	fs.int(&o.MetricsPort, "metrics-port", ports.Metrics, sidecarflag.ListenPort, "Prometheus metrics `port`")
	fs.BoolVar(&o.EnableMetrics, "enable-metrics", true, "serve Prometheus metrics on --metrics-port")
	fs.StringVar(&listen, "dapr-listen-addresses", "", "comma-separated addresses the APIs bind to; default all")
	fs.StringVar(&o.UnixDomainSocket, "unix-domain-socket", "", "`folder` where the HTTP and gRPC APIs listen on Unix sockets (dapr-<app-id>-http.socket, dapr-<app-id>-grpc.socket) instead of their ports; mode 0600, whatever the umask")
	fs.StringVar(&o.UnixDomainSocketGroup, "unix-domain-socket-group", "", "`group` (name or numeric id) that may connect to the Unix sockets too: they become 0660 and belong to it")
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated origins browser pages may call the HTTP API from (CORS), e.g. https://app.example.com,http://localhost:*; pages on other origins may only GET and HEAD; default: loopback origins (http or https on localhost, *.localhost, 127.0.0.1, [::1]); * for every origin and no CORS headers, as daprd")
	fs.StringVar(&hosts, "allowed-hosts", "", "comma-separated names the HTTP API answers to in a request's Host, e.g. sidecar,*.example.internal, beyond localhost, *.localhost and IP addresses, which it always answers to; * for any, as daprd")
	return func() error {
		var err error
		o.PublicPort = -1
		if public != "" {
			if o.PublicPort, err = sidecarflag.PublicPort.Parse("--dapr-public-port", public); err != nil {
				return err
			}
		}
		for a := range strings.SplitSeq(listen, ",") {
			if a = strings.TrimSpace(a); a != "" {
				o.ListenAddresses = append(o.ListenAddresses, strings.Trim(a, "[]"))
			}
		}
		if o.AllowedHosts, err = parseHosts(hosts, o.ListenAddresses); err != nil {
			return err
		}
		if g := o.UnixDomainSocketGroup; g != "" && strings.Trim(g, "0123456789") == "" {
			if _, err := sidecarflag.SocketGroupID.Parse("--unix-domain-socket-group", g); err != nil {
				return err
			}
		} else if strings.ContainsAny(g, ": \t\n") {
			return fmt.Errorf("--unix-domain-socket-group %q is not valid; accepted: a group's name or numeric id", g)
		}
		o.AllowedOrigins, err = parseOrigins(origins)
		return err
	}
}

// modeOptions are the mode, and in it, where the sidecar finds its
// resources and its peers.
func modeOptions(fs *flagSet, o *Options, getenv func(string) string) func() error {
	var maxFile string
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
	fs.StringVar(&maxFile, "resources-max-file-size", sidecarflag.DefaultResourcesMaxFileSize, "largest resource file read, in --resources-path and --config, e.g. 4Mi; 1Ki to 1Gi; a larger file, or one that is not a regular file, is refused")
	fs.BoolVar(&o.HotReload, "enable-hot-reload", true, "apply changed Components, Configuration and Resiliency without a restart (off also when the Configuration disables its HotReload feature)")
	fs.DurationVar(&o.SecretPoll, "kubernetes-secret-poll", 30*time.Second, "kubernetes: how often the Secrets that Components read are got again, to apply their changes (1s to 1h)")
	fs.StringVar(&o.RegistryDir, "registry-dir", getenv("TANDEM_REGISTRY_DIR"), "standalone: registry folder of running sidecars (env TANDEM_REGISTRY_DIR)")
	fs.StringVar(&o.ClusterDomain, "kubernetes-cluster-domain", "cluster.local", "kubernetes: the cluster's DNS domain")
	fs.StringVar(&o.DNSServer, "kubernetes-dns-server", "", "kubernetes: DNS server host:port (default: the system's)")
	return func() error {
		o.PodName = getenv("POD_NAME")
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
				return errors.New("--mode kubernetes needs the NAMESPACE environment variable (the injector sets it)")
			}
		default:
			return fmt.Errorf("--mode %q is not valid; accepted: standalone, kubernetes", o.Mode)
		}
		if o.DNSServer != "" {
			_, port, err := net.SplitHostPort(o.DNSServer)
			if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 1 || p > math.MaxUint16 {
				return fmt.Errorf("--kubernetes-dns-server %q is not valid; accepted: host:port with a port from 1 to 65535, e.g. 10.96.0.10:53", o.DNSServer)
			}
		}
		var err error
		if o.ResourcesMaxFileSize, err = sidecarflag.ResourcesMaxFileSize.Parse("--resources-max-file-size", maxFile); err != nil {
			return err
		}
		return sidecarflag.SecretPoll.Check("--kubernetes-secret-poll", o.SecretPoll)
	}
}

// logOptions are what the sidecar logs, and how.
func logOptions(fs *flagSet, o *Options) func() error {
	var level string
	fs.StringVar(&level, "log-level", sidecarflag.DefaultLogLevel, "debug, info, warn or error")
	fs.BoolVar(&o.LogJSON, "log-as-json", false, "log as JSON")
	fs.BoolVar(&o.EnableAPILogging, "enable-api-logging", false, "log every call to the HTTP and gRPC APIs")
	return func() error {
		if level == "fatal" { // daprd's highest level: errors only, here
			level = "error"
		}
		if err := o.LogLevel.UnmarshalText([]byte(level)); err != nil {
			return fmt.Errorf("--log-level %q is not valid; accepted: debug, info, warn, error, fatal", level)
		}
		return nil
	}
}

// limitOptions bound what a call may bring, and how many calls the APIs
// take at once.
func limitOptions(fs *flagSet, o *Options) func() error {
	var maxBody, readBuffer string
	var maxRequestMB, readBufferKB int
	fs.StringVar(&maxBody, "max-body-size", "", "largest request body, e.g. 4Mi, up to 1Ti (default 4Mi for buffered APIs; invocation unlimited unless set)")
	fs.int(&maxRequestMB, "dapr-http-max-request-size", -1, sidecarflag.MaxRequestSizeMB, "largest request body in `MB` (daprd's older flag; --max-body-size in MB)")
	fs.StringVar(&readBuffer, "read-buffer-size", "", "largest request header block the HTTP API reads, e.g. 64Ki; a plain number is bytes, as in daprd; 1Ki to 8Mi (default 64Ki)")
	fs.int(&readBufferKB, "dapr-http-read-buffer-size", -1, sidecarflag.ReadBufferSizeKB, "largest request header block in `KB` (daprd's older flag; --read-buffer-size in KB)")
	fs.DurationVar(&o.InternalStallTimeout, "internal-stall-timeout", 30*time.Second, "end a call on the internal port whose answer the peer has not accepted for this long (its flow-control window stays shut); 1s to 1h")
	fs.int(&o.GRPCMaxStreamsPerConn, "grpc-max-streams-per-connection", grpcapi.DefaultMaxStreamsPerConn, sidecarflag.GRPCStreams, "most `calls` one connection to the gRPC API carries at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); clients hold more until one ends")
	fs.int(&o.GRPCMaxStreams, "grpc-max-streams", grpcapi.DefaultMaxStreams, sidecarflag.GRPCStreams, "most `calls` in flight on the gRPC API over all connections; more end at once with ResourceExhausted")
	fs.DurationVar(&o.GRPCFirstMessageTimeout, "grpc-first-message-timeout", grpcapi.DefaultFirstMessageTimeout, "end a call to the gRPC API's own methods (Dapr's, health) that has not sent its request this long after its headers; proxied calls have no such bound; 1s to 1h")
	fs.int(&o.MaxProcs, "max-procs", -1, sidecarflag.MaxProcs, "`CPUs` the sidecar's Go code runs on at once (GOMAXPROCS); GOMAXPROCS in the environment is taken when this is -1")
	return func() error {
		var err error
		o.MaxBodySize = sidecarflag.DefaultMaxBodySize
		requestSet := !sidecarflag.MaxRequestSizeMB.IsUnset(maxRequestMB)
		switch {
		case maxBody != "" && requestSet:
			return errors.New("--max-body-size and --dapr-http-max-request-size set the same limit; give one")
		case maxBody != "":
			if o.MaxBodySize, err = sidecarflag.MaxBodySize.Parse("--max-body-size", maxBody); err != nil {
				return err
			}
			o.MaxBodySizeSet = true
		case requestSet:
			o.MaxBodySize, o.MaxBodySizeSet = int64(maxRequestMB)<<20, true
		}
		o.ReadBufferSize = sidecarflag.DefaultReadBufferSize
		switch bufferSet := !sidecarflag.ReadBufferSizeKB.IsUnset(readBufferKB); {
		case readBuffer != "" && bufferSet:
			return errors.New("--read-buffer-size and --dapr-http-read-buffer-size set the same limit; give one")
		case readBuffer != "":
			n, err := sidecarflag.ReadBufferSize.Parse("--read-buffer-size", readBuffer)
			if err != nil {
				return err
			}
			o.ReadBufferSize = int(n)
		case bufferSet:
			o.ReadBufferSize = readBufferKB << 10
		}
		if err := sidecarflag.InternalStallTimeout.Check("--internal-stall-timeout", o.InternalStallTimeout); err != nil {
			return err
		}
		return sidecarflag.GRPCFirstMessageTimeout.Check("--grpc-first-message-timeout", o.GRPCFirstMessageTimeout)
	}
}

// identityOptions are the sidecar's identity between sidecars, and the
// tokens of its API and its app.
func identityOptions(fs *flagSet, o *Options, getenv func(string) string) func() error {
	fs.BoolVar(&o.EnableMTLS, "enable-mtls", false, "mutual TLS with SPIFFE identities on every hop between sidecars; default on in standalone mode, off in kubernetes mode")
	fs.BoolVar(&o.AllowPlaintextPeers, "allow-plaintext-peers", false, "during a rollout, accept calls from peers without mutual TLS (counted in tandem_hop_plaintext_calls_total) and call peers that do not speak TLS in plaintext")
	fs.StringVar(&o.TrustDomain, "trust-domain", "public", "trust domain of this sidecar's SPIFFE ID")
	fs.StringVar(&o.TrustAnchorsFile, "trust-anchors-file", "", "PEM file of the roots to trust for peers' certificates, reloaded when it changes (standalone default: the local CA's trust-bundle.pem)")
	fs.StringVar(&o.SentryAddress, "sentry-address", "", "https://host:port of the control plane's certificate authority (kubernetes mode)")
	fs.StringVar(&o.SentryTokenFile, "sentry-token-file", "/var/run/secrets/tandem.io/sentry/token", "projected service-account token (audience tandem-ca) sent to the certificate authority; read at every renewal")
	fs.DurationVar(&o.CertTTL, "workload-cert-ttl", 24*time.Hour, "how long this sidecar's certificate is valid; it is renewed at two thirds of that (10s to 720h)")
	return func() error {
		o.APIToken, o.AppToken = getenv("DAPR_API_TOKEN"), getenv("APP_API_TOKEN")
		if !fs.given["enable-mtls"] {
			o.EnableMTLS = o.Mode == "standalone"
		}
		if err := sidecarflag.WorkloadCertTTL.Check("--workload-cert-ttl", o.CertTTL); err != nil {
			return err
		}
		o.LocalCATTL = identity.DefaultRootTTL
		if v := getenv("TANDEM_LOCAL_CA_TTL"); v != "" {
			var err error
			if o.LocalCATTL, err = time.ParseDuration(v); err != nil || o.LocalCATTL < time.Minute || o.LocalCATTL > 10*identity.DefaultRootTTL {
				return fmt.Errorf("TANDEM_LOCAL_CA_TTL %q is not valid; accepted: 1m to 87600h, e.g. 8760h (the life of a root the local CA makes)", v)
			}
		}
		return nil
	}
}

// shutdownOptions are how the sidecar ends: how long it goes on serving
// after SIGTERM, and how long in-flight calls then have.
func shutdownOptions(fs *flagSet, o *Options) func() error {
	var grace int
	fs.int(&grace, "dapr-graceful-shutdown-seconds", sidecarflag.DefaultGracefulShutdown, sidecarflag.GracefulShutdown, "how many `seconds` in-flight calls may take to finish on shutdown")
	fs.DurationVar(&o.BlockShutdown, "dapr-block-shutdown-duration", 0, "on SIGTERM, keep serving this long (or until the app's health check fails) before shutting down; 0 to 1h")
	return func() error {
		if sidecarflag.GracefulShutdown.IsUnset(grace) {
			grace = sidecarflag.DefaultGracefulShutdown
		}
		o.GracefulShutdown = time.Duration(grace) * time.Second
		return sidecarflag.BlockShutdown.Check("--dapr-block-shutdown-duration", o.BlockShutdown)
	}
}

// profilingOptions serve Go's pprof.
func profilingOptions(fs *flagSet, o *Options) func() error {
	fs.BoolVar(&o.EnableProfiling, "enable-profiling", false, "serve Go's pprof (/debug/pprof/) on --profile-port")
	fs.int(&o.ProfilePort, "profile-port", -1, sidecarflag.ProfilePort, "pprof `port` with --enable-profiling")
	return func() error {
		if sidecarflag.ProfilePort.IsUnset(o.ProfilePort) {
			o.ProfilePort = sidecarflag.DefaultProfilePort
			fs.given["profile-port"] = false // -1 is "not given"
		}
		return nil
	}
}

// healthOptions probe the app's health.
func healthOptions(fs *flagSet, o *Options) func() error {
	var health invoke.HealthCheck
	var on bool
	var interval, timeout int
	fs.BoolVar(&on, "enable-app-health-check", false, "probe the app's health; while it fails, the app is reported unhealthy and not called")
	fs.StringVar(&health.Path, "app-health-check-path", invoke.DefaultHealthPath, "path the health probe GETs (HTTP apps)")
	fs.int(&interval, "app-health-probe-interval", int(invoke.DefaultHealthInterval/time.Second), sidecarflag.HealthProbeInterval, "`seconds` between health probes")
	fs.int(&timeout, "app-health-probe-timeout", int(invoke.DefaultHealthTimeout/time.Millisecond), sidecarflag.HealthProbeTimeout, "`milliseconds` a health probe may take")
	fs.int(&health.Threshold, "app-health-threshold", invoke.DefaultHealthThreshold, sidecarflag.HealthThreshold, "failed `probes` in a row that make the app unhealthy")
	return func() error {
		if !on {
			return nil
		}
		health.Interval = time.Duration(interval) * time.Second
		health.Timeout = time.Duration(timeout) * time.Millisecond
		if health.Timeout > health.Interval {
			return fmt.Errorf("--app-health-probe-timeout %d ms is longer than --app-health-probe-interval %d s; a probe must end before the next", timeout, interval)
		}
		if u, err := url.ParseRequestURI(health.Path); err != nil || !strings.HasPrefix(health.Path, "/") || u.Fragment != "" || strings.ContainsAny(health.Path, " \t") {
			return fmt.Errorf("--app-health-check-path %q is not valid; accepted: a path from /, e.g. /healthz", health.Path)
		}
		o.AppHealth = &health
		return nil
	}
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
