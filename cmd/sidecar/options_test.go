package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
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
	}
	if o.AppID != want.AppID || o.AppPort != want.AppPort || o.AppProtocol != want.AppProtocol ||
		o.AppChannelAddress != want.AppChannelAddress || o.HTTPPort != want.HTTPPort || o.GRPCPort != want.GRPCPort ||
		o.InternalPort != want.InternalPort || o.PublicPort != want.PublicPort || o.MetricsPort != want.MetricsPort ||
		o.EnableMetrics != want.EnableMetrics || o.Mode != want.Mode || o.MaxBodySize != want.MaxBodySize ||
		o.MaxBodySizeSet || o.GracefulShutdown != want.GracefulShutdown || o.ClusterDomain != want.ClusterDomain ||
		o.InternalAddress != want.InternalAddress || o.ReadBufferSize != want.ReadBufferSize || o.AppMaxConcurrency != 0 {
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
		{"kubernetes namespace", []string{"--app-id", "a", "--mode", "kubernetes"}, map[string]string{"NAMESPACE": "prod"},
			func(o Options) bool { return o.Namespace == "prod" && o.Mode == "kubernetes" }},
		{"registry from env", []string{"--app-id", "a"}, map[string]string{"TANDEM_REGISTRY_DIR": "/tmp/r"},
			func(o Options) bool { return o.RegistryDir == "/tmp/r" }},
		{"single dash and log", []string{"-app-id", "a", "-log-level", "debug", "--log-as-json"}, nil,
			func(o Options) bool { return o.LogJSON && o.LogLevel.String() == "DEBUG" }},
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
		{"protocol", []string{"--app-id", "a", "--app-protocol", "ftp"}, nil, []string{"--app-protocol", "ftp", "http, grpc, h2c, https"}},
		{"protocol grpcs", []string{"--app-id", "a", "--app-protocol", "grpcs"}, nil, []string{"--app-protocol grpcs", "use grpc"}},
		{"mode", []string{"--app-id", "a", "--mode", "cloud"}, nil, []string{"--mode", "standalone, kubernetes"}},
		{"kubernetes without namespace", []string{"--app-id", "a", "--mode", "kubernetes"}, nil, []string{"NAMESPACE"}},
		{"log level", []string{"--app-id", "a", "--log-level", "loud"}, nil, []string{"--log-level", "loud"}},
		{"size", []string{"--app-id", "a", "--max-body-size", "4MB"}, nil, []string{"--max-body-size", "Mi"}},
		{"unknown flag", []string{"--app-id", "a", "--no-such-flag"}, nil, []string{"unknown flag", "-no-such-flag"}},
		{"stray argument", []string{"--app-id", "a", "extra"}, nil, []string{`"extra"`}},
		{"negative grace", []string{"--app-id", "a", "--dapr-graceful-shutdown-seconds", "-2"}, nil, []string{"--dapr-graceful-shutdown-seconds", "-1 for the default"}},
		{"stall timeout too short", []string{"--app-id", "a", "--internal-stall-timeout", "10ms"}, nil, []string{"--internal-stall-timeout", "1s to 1h"}},
		{"stall timeout too long", []string{"--app-id", "a", "--internal-stall-timeout", "2h"}, nil, []string{"--internal-stall-timeout", "1s to 1h"}},
		{"two max body sizes", []string{"--app-id", "a", "--max-body-size", "4Mi", "--dapr-http-max-request-size", "4"}, nil, []string{"--max-body-size", "--dapr-http-max-request-size", "give one"}},
		{"two read buffer sizes", []string{"--app-id", "a", "--read-buffer-size", "4Ki", "--dapr-http-read-buffer-size", "4"}, nil, []string{"--read-buffer-size", "--dapr-http-read-buffer-size", "give one"}},
		{"dns server without port", []string{"--app-id", "a", "--kubernetes-dns-server", "10.96.0.10"}, nil, []string{"--kubernetes-dns-server", "host:port"}},
		{"dns server port", []string{"--app-id", "a", "--kubernetes-dns-server", "10.96.0.10:70000"}, nil, []string{"--kubernetes-dns-server", "1 to 65535"}},
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

func TestParseSize(t *testing.T) {
	cases := map[string]int64{"1": 1, "4Mi": 4 << 20, "16Ki": 16 << 10, "1Gi": 1 << 30, "2M": 2e6, "3k": 3000}
	for in, want := range cases {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "4MB", "Mi", "1.5Mi", "99999999999Ti"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q): no error", bad)
		}
	}
}

func TestHelp(t *testing.T) {
	_, err := parseOptions([]string{"--help"}, env(nil))
	u, ok := err.(*usageError)
	if !ok || !strings.Contains(u.text, "-dapr-http-port") {
		t.Errorf("--help: %v", err)
	}
}
