package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/components"
)

// mwSample is a sample whose fixed-rate latencies are all d, with cpu spent
// over 1,000 requests by procs processes.
func mwSample(d time.Duration, cpu time.Duration, procs int) *sample {
	return &sample{Fixed: &stats{Latencies: []time.Duration{d}, Requests: 1000}, Max: &stats{Requests: 10, Elapsed: time.Second}, CPU: cpu, Procs: procs}
}

func TestMiddlewarePaths(t *testing.T) {
	ps := middlewarePaths()
	if ps[0].name != "http-direct" || !ps[0].baseline || ps[1].name != "mw-none" {
		t.Fatalf("paths %v: want http-direct (the baseline), then mw-none first", pathNames(ps))
	}
	if len(ps) != 2+len(middlewareCases) {
		t.Errorf("paths %v: want one per middleware", pathNames(ps))
	}
	for _, c := range middlewareCases {
		y := c.component(&env{redis: "127.0.0.1:1"})
		// Each Component is one the sidecar builds, named mw.
		cs, err := components.Parse(y, c.name+".yaml")
		if err != nil || len(cs) != 1 || cs[0].Metadata.Name != "mw" {
			t.Fatalf("%s: %v, Component\n%s", c.name, err, y)
		}
		if _, err := components.BuildMiddleware(cs[0], nil); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if c.redis != strings.Contains(string(y), "redisHost") {
			t.Errorf("%s: redis %v, Component\n%s", c.name, c.redis, y)
		}
		if strings.HasPrefix(c.name, "ratelimit") && !strings.Contains(string(y), `value: "`+mwUnlimited+`"`) {
			t.Errorf("%s: a limit that may refuse calls:\n%s", c.name, y)
		}
	}
}

// The report weighs each middleware against mw-none of the same round:
// its p90 over mw-none's (median and range of the rounds' differences)
// and the ratios of medians; a busy machine is said to be one.
func TestMiddlewareReport(t *testing.T) {
	ps := middlewarePaths()
	direct := &result{path: ps[0]}
	none := &result{path: ps[1], base: direct}
	mem := &result{path: ps[2], base: direct}
	ms := time.Millisecond
	for _, v := range []struct{ direct, none, mem time.Duration }{{1 * ms, 4 * ms, 5 * ms}, {1 * ms, 6 * ms, 6 * ms}, {2 * ms, 5 * ms, 8 * ms}} {
		direct.Rounds = append(direct.Rounds, mwSample(v.direct, 0, 0))
		none.Rounds = append(none.Rounds, mwSample(v.none, time.Second, 2))
		mem.Rounds = append(mem.Rounds, mwSample(v.mem, 1500*time.Millisecond, 2))
	}
	got := middlewareReport(options{Rounds: 3, load: load{Rate: 1000, Conns: 16}}, []*result{direct, none, mem}, 99, 99, profile{})
	for _, want := range []string{
		middlewareTitle + "\n",
		// p90 over mw-none: 1 ms, 0, 3 ms: median 1 ms; p90 medians 6 / 5 ms.
		"| mw-ratelimit-memory | 6000 µs (5000–8000) | 6000 µs (5000–8000) | 6000 µs (5000–8000) | 5000 µs (4000–6000) | 1000 µs (0–3000) | 1.20 | 1.500 s (1.500–1.500) | 1.50 |",
		"| mw-none | 5000 µs (4000–6000) |",
		"the machine was busy",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if quiet := middlewareReport(options{Rounds: 3}, []*result{direct, none, mem}, 0.1, 0.2, profile{}); strings.Contains(quiet, "busy") {
		t.Errorf("a quiet machine called busy:\n%s", quiet)
	}
}
