package main

import (
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want func(options) bool
		err  string
	}{
		{"defaults", nil, func(o options) bool {
			return o.Rounds == 5 && o.Duration == 20*time.Second && o.Rate == 1000 && o.Conns == 16 && o.Profile == ""
		}, ""},
		{"short", []string{"-short"}, func(o options) bool {
			return o.Rounds == 3 && o.Duration == 2*time.Second && o.Warmup == time.Second && o.MaxFor == time.Second &&
				!strings.HasPrefix(o.Out, "bench/") && !strings.HasPrefix(o.PNG, "bench/") && o.Out != "" && o.PNG != ""
		}, ""},
		{"short writes where it is told", []string{"-short", "-out", "bench/RESULTS.md"}, func(o options) bool { return o.Out == "bench/RESULTS.md" }, ""},
		{"short keeps what is given", []string{"-short", "-duration", "500ms", "-rounds", "2"}, func(o options) bool {
			return o.Rounds == 2 && o.Duration == 500*time.Millisecond && o.Warmup == time.Second
		}, ""},
		{"profile of a sidecar path", []string{"-profile", "grpc-proxy-mtls"}, func(o options) bool { return o.Profile == "grpc-proxy-mtls" }, ""},
		{"pubsub", []string{"-pubsub", "out.md", "-profile", "pubsub-sidecars"}, func(o options) bool { return o.PubSub == "out.md" && o.Profile == "pubsub-sidecars" }, ""},
		{"pubsub profiles its sidecars only", []string{"-pubsub", "out.md", "-profile", "http-sidecars"}, nil, `give pubsub-sidecars`},
		{"pubsub-bulk", []string{"-pubsub-bulk", "out.md", "-backlog", "2000"}, func(o options) bool { return o.PubSubBulk == "out.md" && o.Backlog == 2000 }, ""},
		{"pubsub-bulk's backlog of at least 100", []string{"-pubsub-bulk", "out.md", "-backlog", "99"}, nil, "-backlog 99: give 100 or more"},
		{"pubsub and pubsub-bulk", []string{"-pubsub", "a.md", "-pubsub-bulk", "b.md"}, nil, "give one of them"},
		{"state-backends", []string{"-state-backends", "out.md", "-short"}, func(o options) bool { return o.StateBackends == "out.md" && o.Rounds == 3 }, ""},
		{"state-backends and pubsub", []string{"-state-backends", "a.md", "-pubsub", "b.md"}, nil, "give one of them"},
		{"state-backends runs its own paths", []string{"-state-backends", "a.md", "-paths", "http-direct"}, nil, "leave out -profile and -paths"},
		{"middleware", []string{"-middleware", "out.md", "-profile", "mw-ratelimit-redis"}, func(o options) bool { return o.Middleware == "out.md" && o.Profile == "mw-ratelimit-redis" }, ""},
		{"middleware profiles its sidecar paths only", []string{"-middleware", "out.md", "-profile", "http-sidecars"}, nil, `-profile "http-sidecars" with -middleware`},
		{"middleware runs its own paths", []string{"-middleware", "out.md", "-paths", "mw-none"}, nil, "-paths with -middleware"},
		{"middleware and pubsub", []string{"-middleware", "a.md", "-pubsub", "b.md"}, nil, "give one of them"},
		{"scale", []string{"-scale", "bench/RESULTS.md"}, func(o options) bool { return o.Scale == "bench/RESULTS.md" && !o.ScaleShort && o.Rounds == 5 }, ""},
		{"short scale writes to the temporary folder", []string{"-scale", "bench/RESULTS.md", "-short"}, func(o options) bool {
			return o.ScaleShort && o.Rounds == 3 && strings.HasPrefix(o.Scale, os.TempDir()) && strings.HasSuffix(o.Scale, "/tandem-bench/RESULTS.md")
		}, ""},
		{"scale and middleware", []string{"-scale", "a.md", "-middleware", "b.md"}, nil, "give one of them"},
		{"scale runs its own paths", []string{"-scale", "a.md", "-paths", "http-floor"}, nil, "-scale runs its own paths (http-floor, http-floor-tls, http-sidecars, http-sidecars-mtls)"},
		{"scale profiles nothing", []string{"-scale", "a.md", "-profile", "http-sidecars"}, nil, "leave out -profile and -paths"},
		{"no rounds", []string{"-rounds", "0"}, nil, "-rounds 0"},
		{"negative rate", []string{"-rate", "-1"}, nil, "-rate -1"},
		{"profile of a path without sidecars", []string{"-profile", "http-floor"}, nil, `-profile "http-floor": give a path with sidecars`},
		{"profile of a path not run", []string{"-profile", "http-sidecars", "-paths", "grpc-proxy"}, nil, "not among -paths"},
		{"positional", []string{"http-sidecars"}, nil, `unexpected argument "http-sidecars"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseOptions(tc.args, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(o) {
				t.Errorf("options %+v", o)
			}
		})
	}
}

func TestSelectPaths(t *testing.T) {
	names := func(ps []path) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.name)
		}
		return out
	}
	for only, want := range map[string][]string{
		"http-sidecars-mtls,grpc-proxy": {"http-direct", "http-sidecars-mtls", "grpc-direct", "grpc-proxy"},
		"state-save-store":              {"state-save-direct", "state-save-store"},
		"http-direct":                   {"http-direct"},
		"state-get-sidecar-embedded":    {"state-get-direct-embedded", "state-get-sidecar-embedded"},
	} {
		if got := names(selectPaths(only)); !slices.Equal(got, want) {
			t.Errorf("-paths %s: %v, want %v", only, got, want)
		}
	}
	if got := len(selectPaths("")); got != len(paths) {
		t.Errorf("no -paths: %d paths, want all %d", got, len(paths))
	}
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p.name] {
			t.Errorf("two paths named %s", p.name)
		}
		seen[p.name] = true
		if p.about == "" || p.setup == nil {
			t.Errorf("%s: no description or no setup", p.name)
		}
	}
	for _, tg := range targets() {
		for _, name := range []string{tg.ours, tg.against} {
			if name != "" && !seen[name] {
				t.Errorf("target %q names path %q, which does not exist", tg.what, name)
			}
		}
	}
}
