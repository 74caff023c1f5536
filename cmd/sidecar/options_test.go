package main

import (
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
		ClusterDomain: "cluster.local",
	}
	if o.AppID != want.AppID || o.AppPort != want.AppPort || o.AppProtocol != want.AppProtocol ||
		o.AppChannelAddress != want.AppChannelAddress || o.HTTPPort != want.HTTPPort || o.GRPCPort != want.GRPCPort ||
		o.InternalPort != want.InternalPort || o.PublicPort != want.PublicPort || o.MetricsPort != want.MetricsPort ||
		o.EnableMetrics != want.EnableMetrics || o.Mode != want.Mode || o.MaxBodySize != want.MaxBodySize ||
		o.MaxBodySizeSet || o.GracefulShutdown != want.GracefulShutdown || o.ClusterDomain != want.ClusterDomain {
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
		{"app port zero", []string{"--app-id", "a", "--app-port", "0"}, nil, []string{"--app-port", "1 to 65535"}},
		{"http port range", []string{"--app-id", "a", "--dapr-http-port", "70000"}, nil, []string{"--dapr-http-port", "70000"}},
		{"http port text", []string{"--app-id", "a", "--dapr-http-port", "x"}, nil, []string{"dapr-http-port"}},
		{"protocol", []string{"--app-id", "a", "--app-protocol", "ftp"}, nil, []string{"--app-protocol", "ftp", "http, grpc, h2c, https"}},
		{"protocol grpcs", []string{"--app-id", "a", "--app-protocol", "grpcs"}, nil, []string{"--app-protocol grpcs", "use grpc"}},
		{"mode", []string{"--app-id", "a", "--mode", "cloud"}, nil, []string{"--mode", "standalone, kubernetes"}},
		{"kubernetes without namespace", []string{"--app-id", "a", "--mode", "kubernetes"}, nil, []string{"NAMESPACE"}},
		{"log level", []string{"--app-id", "a", "--log-level", "loud"}, nil, []string{"--log-level", "loud"}},
		{"size", []string{"--app-id", "a", "--max-body-size", "4MB"}, nil, []string{"--max-body-size", "Mi"}},
		{"unknown flag", []string{"--app-id", "a", "--no-such-flag"}, nil, []string{"unknown flag", "-no-such-flag"}},
		{"stray argument", []string{"--app-id", "a", "extra"}, nil, []string{`"extra"`}},
		{"negative grace", []string{"--app-id", "a", "--dapr-graceful-shutdown-seconds", "-1"}, nil, []string{"--dapr-graceful-shutdown-seconds"}},
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
