package main

import (
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want options
		err  string
	}{
		{name: "defaults", want: options{port: 8080, tracesPort: 16686, dashPort: 8081}},
		{name: "traces", args: []string{"-traces"}, want: options{port: 8080, traces: true, tracesPort: 16686, dashPort: 8081}},
		{name: "traces on a port", args: []string{"-traces", "-traces-port", "9999", "-port", "8081"}, want: options{port: 8081, traces: true, tracesPort: 9999, dashPort: 8081}},
		{name: "environment", env: map[string]string{"CALCULATOR_REDIS": "r:6379", "CALCULATOR_ZIPKIN": "http://z:9411/api/v2/spans"},
			want: options{port: 8080, redis: "r:6379", zipkin: "http://z:9411/api/v2/spans", tracesPort: 16686, dashPort: 8081}},
		{name: "traces and zipkin", args: []string{"-traces", "-zipkin", "http://z:9411/api/v2/spans"}, err: "-traces starts a collector of its own and -zipkin"},
		{name: "traces and zipkin from the environment", args: []string{"-traces"}, env: map[string]string{"CALCULATOR_ZIPKIN": "http://z"}, err: "CALCULATOR_ZIPKIN"},
		{name: "traces-port without traces", args: []string{"-traces-port", "9999"}, err: "add -traces"},
		{name: "one port for both", args: []string{"-traces", "-traces-port", "8080"}, err: "both 8080"},
		{name: "port out of range", args: []string{"-port", "0"}, err: "-port 0: want a port from 1 to 65535"},
		{name: "traces-port out of range", args: []string{"-traces", "-traces-port", "65536"}, err: "-traces-port 65536: want a port from 1 to 65535"},
		{name: "dashboard", args: []string{"-dashboard"}, want: options{port: 8080, tracesPort: 16686, dashboard: true, dashPort: 8081}},
		{name: "dashboard on a port", args: []string{"-dashboard", "-dashboard-port", "9000"}, want: options{port: 8080, tracesPort: 16686, dashboard: true, dashPort: 9000}},
		{name: "dashboard-port without dashboard", args: []string{"-dashboard-port", "9000"}, err: "add -dashboard"},
		{name: "dashboard on the calculator's port", args: []string{"-dashboard", "-dashboard-port", "8080"}, err: "needs a port of its own"},
		{name: "dashboard on the traces page's port", args: []string{"-dashboard", "-traces", "-dashboard-port", "16686"}, err: "needs a port of its own"},
		{name: "dashboard-port out of range", args: []string{"-dashboard", "-dashboard-port", "0"}, err: "-dashboard-port 0: want a port from 1 to 65535"},
		{name: "argument", args: []string{"-traces", "now"}, err: `unexpected argument "now"`},
		{name: "unknown flag", args: []string{"-trace"}, err: "flag provided but not defined: -trace"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseOptions(c.args, env(c.env))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}
