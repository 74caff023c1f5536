package main

import (
	"strings"
	"testing"
	"time"
)

// fixed is a round whose every latency is d, with cpu and rss.
func fixed(d time.Duration, procs int, cpu time.Duration, rssMiB int64, maxRate int) *sample {
	s := &stats{Elapsed: time.Second, Requests: 1000}
	for range 1000 {
		s.Latencies = append(s.Latencies, d)
	}
	return &sample{Fixed: s, Max: &stats{Requests: maxRate, Elapsed: time.Second}, CPU: cpu, PeakRSS: rssMiB << 20, IdleRSS: rssMiB << 19, Procs: procs}
}

func TestSpread(t *testing.T) {
	us := time.Microsecond
	r := &result{path: path{name: "x"}}
	for _, d := range []time.Duration{500 * us, 100 * us, 300 * us, 900 * us, 200 * us} {
		r.Rounds = append(r.Rounds, fixed(d, 0, 0, 0, 0))
	}
	s, ok := over(r, latencyAt(.9))
	if !ok || s != (spread{med: 300, lo: 100, hi: 900}) {
		t.Fatalf("odd rounds: %+v %v", s, ok)
	}
	if got := s.show(fmtUS); got != "300 µs (100–900)" {
		t.Errorf("show = %q", got)
	}
	r.Rounds = r.Rounds[:4]
	if s, _ := over(r, latencyAt(.9)); s.med != 400 {
		t.Errorf("even rounds: median %v, want 400 (the mean of the middle two)", s.med)
	}
	if _, ok := over(r, cpuPer1000); ok {
		t.Error("a path without processes has a CPU figure")
	}
}

func TestTargetCheck(t *testing.T) {
	us := time.Microsecond
	direct := &result{path: path{name: "http-direct", baseline: true}}
	floor := &result{path: path{name: "http-floor"}, base: direct}
	ours := &result{path: path{name: "http-sidecars"}, base: direct}
	// Added p90 per round: floor 400, 300, 500 (median 400); ours 500,
	// 460, 900 (median 500): 1.25x, which the median, not the mean, gives.
	for i, d := range []time.Duration{100 * us, 200 * us, 100 * us} {
		direct.Rounds = append(direct.Rounds, fixed(d, 0, 0, 0, 40000))
		floor.Rounds = append(floor.Rounds, fixed(d+[]time.Duration{400 * us, 300 * us, 500 * us}[i], 2, 500*time.Millisecond, 20, 4000))
		ours.Rounds = append(ours.Rounds, fixed(d+[]time.Duration{500 * us, 460 * us, 900 * us}[i], 2, 550*time.Millisecond, 30, 4400))
	}
	by := map[string]*result{"http-direct": direct, "http-floor": floor, "http-sidecars": ours}
	for _, tc := range []struct {
		t    target
		want string
	}{
		{target{what: "p90", ours: "http-sidecars", against: "http-floor", m: added(.9), limit: 1.2},
			"**not met**: p90 (target at most 1.2x http-floor's): http-sidecars 500 µs (460–900) / http-floor 400 µs (300–500) = 1.25x."},
		{target{what: "p90", ours: "http-sidecars", against: "http-floor", m: added(.9), limit: 1.3}, "**met**: "},
		{target{what: "p90", ours: "http-sidecars", against: "http-floor", m: added(.9), limit: 1.15}, "**not met**: p90 (target at most 1.15x http-floor's)"},
		{target{what: "p99.9", ours: "http-sidecars", against: "http-floor", m: added(.999)}, "p99.9 (reported): http-sidecars 500 µs"},
		{target{what: "CPU", ours: "http-sidecars", against: "http-floor", m: cpuPer1000, limit: 1.2}, "**met**: CPU (target at most 1.2x http-floor's): http-sidecars 0.550 s (0.550–0.550) / http-floor 0.500 s (0.500–0.500) = 1.10x."},
		{target{what: "RSS", ours: "http-sidecars", against: "http-floor", m: peakRSS, limit: 1.2}, "**not met**: RSS"},
		{target{what: "idle", ours: "http-sidecars", m: idleRSS, limit: 16}, "**met**: idle (target at most 16.0 MiB): http-sidecars 15.0 MiB"},
		{target{what: "max", ours: "http-sidecars", against: "http-floor", m: maxRate, limit: 1, atLeast: true}, "**met**: max (target at least 1.0x http-floor's)"},
		{target{what: "max", ours: "http-floor", against: "http-sidecars", m: maxRate, limit: 1, atLeast: true}, "**not met**: max"},
		{target{what: "mTLS", ours: "http-sidecars-mtls", against: "http-floor-tls", m: added(.9), limit: 1.2}, "mTLS (target at most 1.2x http-floor-tls's): http-sidecars-mtls not measured in this run."},
	} {
		if got := tc.t.check(by); !strings.HasPrefix(got, tc.want) {
			t.Errorf("check:\n got %s\nwant %s...", got, tc.want)
		}
	}
	if got, want := ratioLine(by, "http-sidecars", "http-floor", .99), "http-sidecars added p99 / http-floor added p99 = 500 µs / 400 µs = 1.25"; got != want {
		t.Errorf("ratio line %q, want %q", got, want)
	}
	// Noise larger than the hop: the floor's added latency below zero.
	neg := &result{path: path{name: "http-floor"}, base: direct}
	for _, s := range direct.Rounds {
		neg.Rounds = append(neg.Rounds, fixed(s.Fixed.quantile(.9)-50*us, 2, 0, 20, 4000))
	}
	by["http-floor"] = neg
	if got := (target{what: "p90", ours: "http-sidecars", against: "http-floor", m: added(.9), limit: 1.2}).check(by); !strings.Contains(got, "no ratio") || strings.Contains(got, "met") {
		t.Errorf("against a negative floor: %s", got)
	}
	if got := ratioLine(by, "http-sidecars", "http-floor", .9); !strings.HasSuffix(got, "(no ratio: the floor's is not positive)") {
		t.Errorf("ratio line against a negative floor: %s", got)
	}
}

// The state targets hold the sidecar to 1.1x its floor's added p90, on
// Redis and on the embedded store, each against the floor of its own
// group (the same baseline subtracted from both).
func TestStateTargets(t *testing.T) {
	want := map[string]string{
		"state-get-sidecar":           "state-get-floor",
		"state-save-sidecar":          "state-save-floor",
		"state-get-sidecar-embedded":  "state-get-floor-embedded",
		"state-save-sidecar-embedded": "state-save-floor-embedded",
	}
	for _, tg := range targets() {
		floor, ok := want[tg.ours]
		if !ok || tg.against != floor || tg.m.name != "added p90" {
			continue
		}
		delete(want, tg.ours)
		if tg.limit != 1.1 || tg.atLeast {
			t.Errorf("%s: limit %v (at least %v), want at most 1.1x", tg.what, tg.limit, tg.atLeast)
		}
		o, _ := pathNamed(tg.ours)
		f, _ := pathNamed(tg.against)
		if o.group != f.group {
			t.Errorf("%s: %s is in group %q, %s in %q: their added latencies are over different baselines", tg.what, o.name, o.group, f.name, f.group)
		}
	}
	for ours, floor := range want {
		t.Errorf("no added p90 target of %s against %s", ours, floor)
	}
}
