package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/clistandin"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseOptionsDefaults(t *testing.T) {
	o, err := parseOptions([]string{"--app-id", "addapp", "--app-port", "6000"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Options{
		AppID: "addapp", AppPort: 6000, AppProtocol: "http", AppChannelAddress: "127.0.0.1",
		HTTPPort: 3500, GRPCPort: 50001, InternalPort: 50002, PublicPort: -1, MetricsPort: 9090,
		EnableMetrics: true, Mode: "standalone", MaxBodySize: 4 << 20, GracefulShutdown: 5 * time.Second,
		ClusterDomain: "cluster.local", InternalAddress: "127.0.0.1", ReadBufferSize: 64 << 10,
		ResourcesMaxFileSize: 4 << 20,
	}
	if o.AppID != want.AppID || o.AppPort != want.AppPort || o.AppProtocol != want.AppProtocol ||
		o.AppChannelAddress != want.AppChannelAddress || o.HTTPPort != want.HTTPPort || o.GRPCPort != want.GRPCPort ||
		o.InternalPort != want.InternalPort || o.PublicPort != want.PublicPort || o.MetricsPort != want.MetricsPort ||
		o.EnableMetrics != want.EnableMetrics || o.Mode != want.Mode || o.MaxBodySize != want.MaxBodySize ||
		o.MaxBodySizeSet || o.GracefulShutdown != want.GracefulShutdown || o.ClusterDomain != want.ClusterDomain ||
		o.InternalAddress != want.InternalAddress || o.ReadBufferSize != want.ReadBufferSize || o.AppMaxConcurrency != 0 ||
		o.GRPCMaxStreamsPerConn != 1000 || o.GRPCMaxStreams != 4096 || o.GRPCFirstMessageTimeout != 30*time.Second ||
		o.ResourcesMaxFileSize != want.ResourcesMaxFileSize {
		t.Errorf("defaults:\n got %+v\nwant %+v", o, want)
	}
}

func TestParseOptions(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(Options) bool
	}{
		{"ports zero", []string{"--app-id", "a", "--dapr-http-port", "0", "--dapr-grpc-port", "0", "--dapr-public-port", "0"}, nil,
			func(o Options) bool { return o.HTTPPort == 0 && o.GRPCPort == 0 && o.PublicPort == 0 }},
		{"listen addresses", []string{"--app-id", "a", "--dapr-listen-addresses", "[::1], 127.0.0.1"}, nil,
			func(o Options) bool { return strings.Join(o.ListenAddresses, "|") == "::1|127.0.0.1" }},
		{"max body size", []string{"--app-id", "a", "--max-body-size", "16Mi"}, nil,
			func(o Options) bool { return o.MaxBodySize == 16<<20 && o.MaxBodySizeSet }},
		{"resources max file size", []string{"--app-id", "a", "--resources-max-file-size", "64Ki"}, nil,
			func(o Options) bool { return o.ResourcesMaxFileSize == 64<<10 }},
		{"kubernetes namespace", []string{"--app-id", "a", "--mode", "kubernetes"}, map[string]string{"NAMESPACE": "prod"},
			func(o Options) bool { return o.Namespace == "prod" && o.Mode == "kubernetes" }},
		{"pod name from env", []string{"--app-id", "a", "--mode", "kubernetes"}, map[string]string{"NAMESPACE": "prod", "POD_NAME": "checkout-7d9f"},
			func(o Options) bool { return o.PodName == "checkout-7d9f" }},
		{"registry from env", []string{"--app-id", "a"}, map[string]string{"TANDEM_REGISTRY_DIR": "/tmp/r"},
			func(o Options) bool { return o.RegistryDir == "/tmp/r" }},
		{"single dash and log", []string{"-app-id", "a", "-log-level", "debug", "--log-as-json"}, nil,
			func(o Options) bool { return o.LogJSON && o.LogLevel.String() == "DEBUG" }},
		{"resources paths", []string{"--app-id", "a", "--resources-path", "/r1", "--components-path", "/r2", "--resources-path", "/r3"}, nil,
			func(o Options) bool { return slices.Equal(o.ResourcesPaths, []string{"/r1", "/r2", "/r3"}) }},
		{"h2c app", []string{"--app-id", "a", "--app-protocol", "h2c"}, nil,
			func(o Options) bool { return o.AppProtocol == "h2c" }},
		{"grace", []string{"--app-id", "a", "--dapr-graceful-shutdown-seconds", "0"}, nil,
			func(o Options) bool { return o.GracefulShutdown == 0 }},
		{"grace -1 is the default", []string{"--app-id", "a", "--dapr-graceful-shutdown-seconds", "-1"}, nil,
			func(o Options) bool { return o.GracefulShutdown == 5*time.Second }},
		{"grace at most an hour", []string{"--app-id", "a", "--dapr-graceful-shutdown-seconds", "3600"}, nil,
			func(o Options) bool { return o.GracefulShutdown == time.Hour }},
		{"app port 0 is no app", []string{"--app-id", "a", "--app-port", "0"}, nil,
			func(o Options) bool { return o.AppPort == 0 }},
		{"app port empty is no app", []string{"--app-id", "a", "--app-port", ""}, nil,
			func(o Options) bool { return o.AppPort == 0 }},
		{"concurrency -1 is no bound", []string{"--app-id", "a", "--app-max-concurrency", "-1"}, nil,
			func(o Options) bool { return o.AppMaxConcurrency == 0 }},
		{"concurrency 0 is no bound", []string{"--app-id", "a", "--app-max-concurrency", "0"}, nil,
			func(o Options) bool { return o.AppMaxConcurrency == 0 }},
		{"concurrency bound", []string{"--app-id", "a", "--app-max-concurrency", "1048576"}, nil,
			func(o Options) bool { return o.AppMaxConcurrency == 1<<20 }},
		{"max request size in MB", []string{"--app-id", "a", "--dapr-http-max-request-size", "16"}, nil,
			func(o Options) bool { return o.MaxBodySize == 16<<20 && o.MaxBodySizeSet }},
		{"max request size -1 is the default", []string{"--app-id", "a", "--dapr-http-max-request-size", "-1"}, nil,
			func(o Options) bool { return o.MaxBodySize == 4<<20 && !o.MaxBodySizeSet }},
		{"max request size -1 beside max body size", []string{"--app-id", "a", "--dapr-http-max-request-size", "-1", "--max-body-size", "1Ti"}, nil,
			func(o Options) bool { return o.MaxBodySize == 1<<40 && o.MaxBodySizeSet }},
		{"read buffer as a quantity", []string{"--app-id", "a", "--read-buffer-size", "16Ki"}, nil,
			func(o Options) bool { return o.ReadBufferSize == 16<<10 }},
		{"read buffer in bytes", []string{"--app-id", "a", "--read-buffer-size", "2048"}, nil,
			func(o Options) bool { return o.ReadBufferSize == 2048 }},
		{"read buffer in KB", []string{"--app-id", "a", "--dapr-http-read-buffer-size", "16"}, nil,
			func(o Options) bool { return o.ReadBufferSize == 16<<10 }},
		{"read buffer -1 is the default", []string{"--app-id", "a", "--dapr-http-read-buffer-size", "-1"}, nil,
			func(o Options) bool { return o.ReadBufferSize == 64<<10 }},
		{"read buffer largest", []string{"--app-id", "a", "--dapr-http-read-buffer-size", "8192"}, nil,
			func(o Options) bool { return o.ReadBufferSize == 8<<20 }},
		{"internal port on loopback in standalone", []string{"--app-id", "a"}, nil,
			func(o Options) bool { return o.InternalAddress == "127.0.0.1" }},
		{"internal port everywhere in kubernetes", []string{"--app-id", "a", "--mode", "kubernetes"}, map[string]string{"NAMESPACE": "prod"},
			func(o Options) bool { return o.InternalAddress == "" }},
		{"internal listen address, daprd's name", []string{"--app-id", "a", "--dapr-internal-grpc-listen-address", "0.0.0.0"}, nil,
			func(o Options) bool { return o.InternalAddress == "0.0.0.0" }},
		{"internal listen address, our name", []string{"--app-id", "a", "--dapr-internal-listen-address", "[::]"}, nil,
			func(o Options) bool { return o.InternalAddress == "[::]" }},
		{"internal listen address in kubernetes", []string{"--app-id", "a", "--mode", "kubernetes", "--dapr-internal-grpc-listen-address", "10.0.0.5"}, map[string]string{"NAMESPACE": "prod"},
			func(o Options) bool { return o.InternalAddress == "10.0.0.5" }},
		{"dns server", []string{"--app-id", "a", "--kubernetes-dns-server", "10.96.0.10:53"}, nil,
			func(o Options) bool { return o.DNSServer == "10.96.0.10:53" }},
		{"grpcs app", []string{"--app-id", "a", "--app-protocol", "grpcs"}, nil,
			func(o Options) bool { return o.AppProtocol == "grpcs" }},
		{"app ssl makes http https", []string{"--app-id", "a", "--app-ssl"}, nil,
			func(o Options) bool { return o.AppProtocol == "https" }},
		{"app ssl makes grpc grpcs", []string{"--app-id", "a", "--app-protocol", "grpc", "--app-ssl"}, nil,
			func(o Options) bool { return o.AppProtocol == "grpcs" }},
		{"an empty argument is ignored", []string{"", "--app-id", "a", "", "--log-level", "debug", ""}, nil,
			func(o Options) bool { return o.AppID == "a" && o.LogLevel.String() == "DEBUG" && len(o.Unused) == 0 }},
		{"the Dapr CLI's blanked scheduler flag", []string{"--app-id", "a", "", "localhost:50006", "--app-port", "0"}, nil,
			func(o Options) bool {
				return o.AppID == "a" && len(o.Unused) == 1 && strings.Contains(o.Unused[0], `"localhost:50006"`)
			}},
		{"flags without effect are listed", []string{"--app-id", "a", "--placement-host-address", "localhost:50005", "--scheduler-host-address", "localhost:50006"}, nil,
			func(o Options) bool {
				return len(o.Unused) == 2 && strings.HasPrefix(o.Unused[0], "--placement-host-address: ") && strings.HasPrefix(o.Unused[1], "--scheduler-host-address: ")
			}},
		{"health check defaults, daprd's", []string{"--app-id", "a", "--enable-app-health-check"}, nil,
			func(o Options) bool {
				h := o.AppHealth
				return h != nil && h.Path == "/healthz" && h.Interval == 5*time.Second && h.Timeout == 500*time.Millisecond && h.Threshold == 3
			}},
		{"health check flags", []string{"--app-id", "a", "--enable-app-health-check", "--app-health-check-path", "/ready?deep=1", "--app-health-probe-interval", "2", "--app-health-probe-timeout", "2000", "--app-health-threshold", "1"}, nil,
			func(o Options) bool {
				h := o.AppHealth
				return h != nil && h.Path == "/ready?deep=1" && h.Interval == 2*time.Second && h.Timeout == 2*time.Second && h.Threshold == 1
			}},
		{"health check off", []string{"--app-id", "a", "--app-health-threshold", "5"}, nil,
			func(o Options) bool { return o.AppHealth == nil && len(o.Unused) == 1 }},
		{"profiling on the default port", []string{"--app-id", "a", "--enable-profiling", "--profile-port", "-1"}, nil,
			func(o Options) bool { return o.EnableProfiling && o.ProfilePort == 7777 }},
		{"profiling off", []string{"--app-id", "a", "--profile-port", "-1"}, nil,
			func(o Options) bool { return !o.EnableProfiling }},
		{"origins", []string{"--app-id", "a", "--allowed-origins", "https://App.example, http://localhost:8080 ,https://*.example.com"}, nil,
			func(o Options) bool {
				return !o.AllowedOrigins.Any && strings.Join(o.AllowedOrigins.Patterns, "|") == "https://app.example|http://localhost:8080|https://*.example.com"
			}},
		{"origins by default: loopback", []string{"--app-id", "a"}, nil,
			func(o Options) bool { return !o.AllowedOrigins.Any && o.AllowedOrigins.Patterns == nil }},
		{"origins *, daprd's default: every origin, no CORS", []string{"--app-id", "a", "--allowed-origins", "*"}, nil,
			func(o Options) bool { return o.AllowedOrigins.Any }},
		{"hosts by default: none but loopback and addresses", []string{"--app-id", "a"}, nil,
			func(o Options) bool { return !o.AllowedHosts.Any && o.AllowedHosts.Names == nil }},
		{"hosts", []string{"--app-id", "a", "--allowed-hosts", "Sidecar, *.example.internal,my_svc.", "--dapr-listen-addresses", "127.0.0.1,[::1],devbox.lan"}, nil,
			func(o Options) bool {
				return !o.AllowedHosts.Any && strings.Join(o.AllowedHosts.Names, "|") == "sidecar|*.example.internal|my_svc|devbox.lan"
			}},
		{"hosts *, daprd's: any", []string{"--app-id", "a", "--allowed-hosts", "*"}, nil,
			func(o Options) bool { return o.AllowedHosts.Any }},
		{"block shutdown", []string{"--app-id", "a", "--dapr-block-shutdown-duration", "10s"}, nil,
			func(o Options) bool { return o.BlockShutdown == 10*time.Second }},
		{"unix domain socket", []string{"--app-id", "a", "--unix-domain-socket", "/tmp/sockets"}, nil,
			func(o Options) bool { return o.UnixDomainSocket == "/tmp/sockets" }},
		{"unix domain socket group by name", []string{"--app-id", "a", "--unix-domain-socket", "/tmp/sockets", "--unix-domain-socket-group", "dapr"}, nil,
			func(o Options) bool { return o.UnixDomainSocketGroup == "dapr" && len(o.Unused) == 0 }},
		{"unix domain socket group by id", []string{"--app-id", "a", "--unix-domain-socket", "/tmp/sockets", "--unix-domain-socket-group", "4294967294"}, nil,
			func(o Options) bool { return o.UnixDomainSocketGroup == "4294967294" }},
		{"unix domain socket group without sockets", []string{"--app-id", "a", "--unix-domain-socket-group", "dapr"}, nil,
			func(o Options) bool {
				return len(o.Unused) == 1 && strings.HasPrefix(o.Unused[0], "--unix-domain-socket-group: ")
			}},
		{"log level fatal, daprd's", []string{"--app-id", "a", "--log-level", "fatal"}, nil,
			func(o Options) bool { return o.LogLevel.String() == "ERROR" }},
		{"local CA root a year by default", []string{"--app-id", "a"}, nil,
			func(o Options) bool { return o.LocalCATTL == 365*24*time.Hour }},
		{"local CA root life from env", []string{"--app-id", "a"}, map[string]string{"TANDEM_LOCAL_CA_TTL": "90s"},
			func(o Options) bool { return o.LocalCATTL == 90*time.Second }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := parseOptions(c.args, env(c.env))
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(o) {
				t.Errorf("unexpected options %+v", o)
			}
		})
	}
}

func TestParseOptionsErrorsNameTheFlag(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"missing app id", nil, nil, []string{"--app-id", "empty"}},
		{"bad app id", []string{"--app-id", "Add_App"}, nil, []string{"--app-id", "Add_App", "DNS-1123"}},
		{"long app id", []string{"--app-id", strings.Repeat("a", 59)}, nil, []string{"--app-id", "at most 58"}},
		{"app port text", []string{"--app-id", "a", "--app-port", "http"}, nil, []string{"--app-port", `"http"`}},
		{"http port range", []string{"--app-id", "a", "--dapr-http-port", "70000"}, nil, []string{"--dapr-http-port", "70000", "0 to 65535"}},
		{"http port text", []string{"--app-id", "a", "--dapr-http-port", "x"}, nil, []string{"dapr-http-port"}},
		{"protocol", []string{"--app-id", "a", "--app-protocol", "ftp"}, nil, []string{"--app-protocol", "ftp", "http, grpc, h2c, https, grpcs"}},
		{"app ssl with h2c", []string{"--app-id", "a", "--app-protocol", "h2c", "--app-ssl"}, nil, []string{"--app-ssl", "h2c", "https"}},
		{"stray argument after an empty one", []string{"--app-id", "a", "", "--log-level", "info", "extra"}, nil, []string{`"extra"`}},
		{"probe timeout past the interval", []string{"--app-id", "a", "--enable-app-health-check", "--app-health-probe-interval", "1", "--app-health-probe-timeout", "1500"}, nil,
			[]string{"--app-health-probe-timeout 1500 ms", "--app-health-probe-interval 1 s"}},
		{"health path", []string{"--app-id", "a", "--enable-app-health-check", "--app-health-check-path", "healthz"}, nil, []string{"--app-health-check-path", `"healthz"`, "/healthz"}},
		{"block shutdown too long", []string{"--app-id", "a", "--dapr-block-shutdown-duration", "2h"}, nil, []string{"--dapr-block-shutdown-duration", "0 to 1h"}},
		{"block shutdown negative", []string{"--app-id", "a", "--dapr-block-shutdown-duration", "-1s"}, nil, []string{"--dapr-block-shutdown-duration", "0 to 1h"}},
		{"origin without scheme", []string{"--app-id", "a", "--allowed-origins", "example.com"}, nil, []string{"--allowed-origins", "example.com", "https://app.example.com"}},
		{"origins with *", []string{"--app-id", "a", "--allowed-origins", "https://a.example,*"}, nil, []string{"--allowed-origins", "* alone"}},
		{"host with a port", []string{"--app-id", "a", "--allowed-hosts", "sidecar:3500"}, nil, []string{"--allowed-hosts", `"sidecar:3500"`, "without port"}},
		{"host with a scheme", []string{"--app-id", "a", "--allowed-hosts", "http://sidecar"}, nil, []string{"--allowed-hosts", `"http://sidecar"`}},
		{"hosts with * in the middle", []string{"--app-id", "a", "--allowed-hosts", "a.*.example"}, nil, []string{"--allowed-hosts", `"a.*.example"`}},
		{"hosts mixing *", []string{"--app-id", "a", "--allowed-hosts", "sidecar,*"}, nil, []string{"--allowed-hosts", `at "*"`}},
		{"socket group id too large", []string{"--app-id", "a", "--unix-domain-socket", "/s", "--unix-domain-socket-group", "4294967295"}, nil,
			[]string{"--unix-domain-socket-group", `"4294967295"`, "0 to 4294967294"}},
		{"socket group with a colon", []string{"--app-id", "a", "--unix-domain-socket", "/s", "--unix-domain-socket-group", "a:b"}, nil,
			[]string{"--unix-domain-socket-group", `"a:b"`, "name or numeric id"}},
		{"mode", []string{"--app-id", "a", "--mode", "cloud"}, nil, []string{"--mode", "standalone, kubernetes"}},
		{"kubernetes without namespace", []string{"--app-id", "a", "--mode", "kubernetes"}, nil, []string{"NAMESPACE"}},
		{"log level", []string{"--app-id", "a", "--log-level", "loud"}, nil, []string{"--log-level", "loud"}},
		{"size", []string{"--app-id", "a", "--max-body-size", "4MB"}, nil, []string{"--max-body-size", "Mi"}},
		{"unknown flag", []string{"--app-id", "a", "--no-such-flag"}, nil, []string{"unknown flag", "-no-such-flag"}},
		{"stray argument", []string{"--app-id", "a", "extra"}, nil, []string{`"extra"`}},
		{"negative grace", []string{"--app-id", "a", "--dapr-graceful-shutdown-seconds", "-2"}, nil, []string{"--dapr-graceful-shutdown-seconds", "-1 for the default"}},
		{"stall timeout too short", []string{"--app-id", "a", "--internal-stall-timeout", "10ms"}, nil, []string{"--internal-stall-timeout", "1s to 1h"}},
		{"stall timeout too long", []string{"--app-id", "a", "--internal-stall-timeout", "2h"}, nil, []string{"--internal-stall-timeout", "1s to 1h"}},
		{"first message timeout too short", []string{"--app-id", "a", "--grpc-first-message-timeout", "500ms"}, nil, []string{"--grpc-first-message-timeout", "1s to 1h"}},
		{"first message timeout too long", []string{"--app-id", "a", "--grpc-first-message-timeout", "2h"}, nil, []string{"--grpc-first-message-timeout", "1s to 1h"}},
		{"secret poll too often", []string{"--app-id", "a", "--kubernetes-secret-poll", "100ms"}, nil, []string{"--kubernetes-secret-poll", "1s to 1h"}},
		{"secret poll too rare", []string{"--app-id", "a", "--kubernetes-secret-poll", "2h"}, nil, []string{"--kubernetes-secret-poll", "1s to 1h"}},
		{"two max body sizes", []string{"--app-id", "a", "--max-body-size", "4Mi", "--dapr-http-max-request-size", "4"}, nil, []string{"--max-body-size", "--dapr-http-max-request-size", "give one"}},
		{"two read buffer sizes", []string{"--app-id", "a", "--read-buffer-size", "4Ki", "--dapr-http-read-buffer-size", "4"}, nil, []string{"--read-buffer-size", "--dapr-http-read-buffer-size", "give one"}},
		{"dns server without port", []string{"--app-id", "a", "--kubernetes-dns-server", "10.96.0.10"}, nil, []string{"--kubernetes-dns-server", "host:port"}},
		{"dns server port", []string{"--app-id", "a", "--kubernetes-dns-server", "10.96.0.10:70000"}, nil, []string{"--kubernetes-dns-server", "1 to 65535"}},
		{"local CA root too short", []string{"--app-id", "a"}, map[string]string{"TANDEM_LOCAL_CA_TTL": "30s"}, []string{"TANDEM_LOCAL_CA_TTL", `"30s"`, "1m to 87600h"}},
		{"local CA root too long", []string{"--app-id", "a"}, map[string]string{"TANDEM_LOCAL_CA_TTL": "87601h"}, []string{"TANDEM_LOCAL_CA_TTL", "1m to 87600h"}},
		{"local CA root not a duration", []string{"--app-id", "a"}, map[string]string{"TANDEM_LOCAL_CA_TTL": "1y"}, []string{"TANDEM_LOCAL_CA_TTL", `"1y"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseOptions(c.args, env(c.env))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestNumericFlagRanges: every numeric flag takes its whole range (and -1
// where daprd gives it a meaning), and refuses anything past it, however
// large, with an error that names the flag, the value and what is accepted.
func TestNumericFlagRanges(t *testing.T) {
	const huge = "99999999999999999999" // past int64
	ports := []string{"-1", "65536", "9223372036854775807", huge, "x", "1.5", "0x10"}
	cases := []struct {
		flag     string
		ok, bad  []string
		accepted string
	}{
		{"--app-port", []string{"0", "1", "65535"}, ports, "0 to 65535 (0: no app port)"},
		{"--dapr-http-port", []string{"0", "65535"}, ports, "0 to 65535"},
		{"--dapr-grpc-port", []string{"0", "65535"}, ports, "0 to 65535"},
		{"--dapr-internal-grpc-port", []string{"0", "65535"}, ports, "0 to 65535"},
		{"--dapr-public-port", []string{"0", "65535"}, ports, "0 to 65535"},
		{"--metrics-port", []string{"0", "65535"}, ports, "0 to 65535"},
		{"--app-max-concurrency", []string{"-1", "0", "1", "1048576"}, []string{"-2", "1048577", "9223372036854775807", huge, "many"}, "-1 or 0 for no bound, or 1 to 1048576"},
		{"--dapr-graceful-shutdown-seconds", []string{"-1", "0", "3600"}, []string{"-2", "3601", "9223372036854775807", huge, "5s"}, "-1 for the default (5), or 0 to 3600 seconds"},
		{"--dapr-http-max-request-size", []string{"-1", "1", "1048576"}, []string{"0", "-2", "1048577", huge, "4Mi"}, "-1 for the default"},
		{"--dapr-http-read-buffer-size", []string{"-1", "1", "8192"}, []string{"0", "-2", "8193", huge, "4Ki"}, "-1 for the default (64 KB), or 1 to 8192 KB"},
		{"--max-body-size", []string{"1", "16Mi", "1Ti"}, []string{"0", "-1", "1099511627777", "1025Gi", "2Ti", "99999999999Ti", "4MB"}, "1 to 1Ti"},
		{"--read-buffer-size", []string{"1Ki", "1024", "64Ki", "8Mi"}, []string{"16", "1023", "9Mi", "0", "-1", "1Ti", huge, "x"}, "1Ki to 8Mi"},
		{"--resources-max-file-size", []string{"1Ki", "1024", "4Mi", "1Gi"}, []string{"1023", "1025Mi", "2Gi", "0", "-1", "", huge, "4MB"}, "1Ki to 1Gi, e.g. 4Mi"},
		{"--profile-port", []string{"-1", "0", "65535"}, []string{"-2", "65536", huge, "x"}, "-1 for the default (7777), 0 to pick a free port, or 1 to 65535"},
		{"--app-health-probe-interval", []string{"1", "3600"}, []string{"0", "-1", "3601", huge, "5s"}, "1 to 3600 seconds"},
		{"--app-health-probe-timeout", []string{"1", "3600000"}, []string{"0", "-1", "3600001", huge, "500ms"}, "1 to 3600000 milliseconds"},
		{"--max-procs", []string{"-1", "0", "1", "1024"}, []string{"-2", "1025", huge, "two"}, "-1 for the default (1, or the container's CPU limit when it has one), 0 for Go's default"},
		{"--app-health-threshold", []string{"1", "1000000"}, []string{"0", "-1", "1000001", huge, "x"}, "1 to 1000000"},
		{"--grpc-max-streams-per-connection", []string{"1", "1048576"}, []string{"0", "-1", "1048577", huge, "x"}, "1 to 1048576 calls"},
		{"--grpc-max-streams", []string{"1", "1048576"}, []string{"0", "-1", "1048577", huge, "x"}, "1 to 1048576 calls"},
	}
	for _, c := range cases {
		for _, v := range c.ok {
			t.Run(c.flag+"="+v, func(t *testing.T) {
				if _, err := parseOptions([]string{"--app-id", "a", c.flag, v}, env(nil)); err != nil {
					t.Errorf("refused: %v", err)
				}
			})
		}
		for _, v := range c.bad {
			t.Run(c.flag+"="+v, func(t *testing.T) {
				_, err := parseOptions([]string{"--app-id", "a", c.flag, v}, env(nil))
				if err == nil {
					t.Fatal("accepted")
				}
				for _, w := range []string{c.flag + " ", strconv.Quote(v), "accepted: " + c.accepted} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
			})
		}
	}
}

// TestVersion: --version prints one line, the version, and nothing runs:
// the Dapr CLI reads it as the runtime's version.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"--app-id", "a", "--version"}, {"-version", ""}} {
		_, err := parseOptions(args, env(nil))
		u, ok := err.(*usageError)
		if !ok || u.text != version+"\n" {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// TestDaprRunArgs: the argument lists the Dapr CLI (v1.14) passes its
// runtime parse, with daprd's meanings.
func TestDaprRunArgs(t *testing.T) {
	ports := clistandin.Ports{HTTP: 3500, GRPC: 34481, Metrics: 38163, Internal: 46615}
	for name, args := range clistandin.RunArgs("/home/u", "checkout", ports) {
		t.Run(name, func(t *testing.T) {
			o, err := parseOptions(args, env(nil))
			if err != nil {
				t.Fatal(err)
			}
			if o.AppID != "checkout" || o.AppPort != 0 || o.HTTPPort != 3500 || o.GRPCPort != 34481 || o.MetricsPort != 38163 ||
				o.InternalPort != 46615 || o.AppMaxConcurrency != 0 || o.MaxBodySize != 4<<20 || o.MaxBodySizeSet ||
				o.ReadBufferSize != 64<<10 || o.EnableProfiling || !slices.Equal(o.ResourcesPaths, []string{"/home/u/.dapr/components"}) ||
				o.Config != "/home/u/.dapr/config.yaml" || o.AppProtocol != "http" {
				t.Errorf("options %+v", o)
			}
			if want := map[bool]int{true: 1, false: 2}[name == "dapr run -f"]; len(o.Unused) != want {
				t.Errorf("unused %q; want the placement and the scheduler", o.Unused)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	_, err := parseOptions([]string{"--help"}, env(nil))
	u, ok := err.(*usageError)
	if !ok || !strings.Contains(u.text, "-dapr-http-port") {
		t.Errorf("--help: %v", err)
	}
}
