package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// scaleFixture is a run of every point over two rounds: at 4,000
// connections the floor's idle connections take 20 KiB each and its p99
// is 10 ms; http-sidecars takes 10 KiB and 11 ms (within both goals),
// http-sidecars-mtls 30 KiB and 13 ms (over both against http-floor);
// http-floor-tls 40 KiB and 12 ms; each path 5 KiB more a connection
// right after the calls. Every path's peak RSS stays at 20 MiB
// with the body size but http-sidecars-mtls's, which reaches 60 MiB at
// 16 MB. The caller spends 100 µs a call with one app id, 150 µs with
// more, and hits its cache 6 times in 10, renews 3 times in 10.
func scaleFixture() []*scaleResult {
	const mib = 1 << 20
	perConn := map[string]int64{"http-floor": 20, "http-floor-tls": 40, "http-sidecars": 10, "http-sidecars-mtls": 30}
	p99 := map[string]time.Duration{"http-floor": 10, "http-floor-tls": 12, "http-sidecars": 11, "http-sidecars-mtls": 13}
	var rs []*scaleResult
	for _, pt := range scalePoints() {
		r := &scaleResult{scalePoint: pt}
		for range 2 {
			s := &scaleSample{Requests: 1000, Elapsed: time.Second, IdleRSS: 10 * mib, RSS: 12 * mib, PeakRSS: 20 * mib,
				P50: time.Millisecond, P99: 2 * time.Millisecond, CPU: 100 * time.Millisecond}
			switch pt.part {
			case partConns:
				s.IdlePrivate = 3 * mib
				s.ConnPrivate = s.IdlePrivate + int64(pt.n)*perConn[pt.path]<<10
				s.ConnPrivateNow = s.IdlePrivate + int64(pt.n)*(perConn[pt.path]+5)<<10
				if pt.n == 4000 {
					s.P99 = p99[pt.path] * time.Millisecond
				}
			case partBodies:
				s.Bytes, s.PeakOver = int64(pt.n)*100, 10*mib
				if pt.path == "http-sidecars-mtls" && pt.n == 16<<20 {
					s.PeakRSS, s.PeakOver = 60*mib, 50*mib
				}
			case partIDs:
				if pt.n > 1 {
					s.CPU = 150 * time.Millisecond
				}
				s.Hits, s.Renewals, s.Misses = 600, 300, 100
			}
			r.Rounds = append(r.Rounds, s)
		}
		rs = append(rs, r)
	}
	find(rs, partConns, "http-sidecars", 4000).Rounds[0].Refused = 3
	find(rs, partConns, "http-sidecars", 4000).Rounds[0].Errors = 5
	find(rs, partConns, "http-sidecars", 4000).Rounds[0].FirstErr = "HTTP 503: overloaded"
	return rs
}

func TestScaleReport(t *testing.T) {
	run := scaleRun{o: options{Rounds: 2, load: load{Rate: 1000, Conns: 16, Duration: 2 * time.Second}, Warmup: time.Second, MaxFor: time.Second, Size: 1024},
		short: true, load0: 99, load1: 99, files: fileLimit{before: 1024, after: 20000}, latPNG: "scale-latency.png", rssPNG: "scale-rss.png",
		date: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)}
	got := scaleReport(run, scaleFixture())
	for _, want := range []string{
		scaleTitle + "\n\n**A short run (`-short`)",
		"2026-12-07. Rounds: 2;",
		"the machine was busy with other work",
		"RLIMIT_NOFILE's soft limit to its hard one (20000, from 1024)",
		// memory per idle connection, refusals and errors at 4,000
		"| http-sidecars | 4,000 | 1000 µs (1000–1000) | 11000 µs (11000–11000) | 0.100 s (0.100–0.100) | 12.0 MiB (12.0–12.0) | 10.0 KiB (10.0–10.0) | 15.0 KiB (15.0–15.0) | 3 | 5 |",
		"| http-floor | 1 | 1000 µs",
		"![p50 and p99 against connections](scale-latency.png)",
		"Each process's VmHWM is reset (`/proc/<pid>/clear_refs`) before the run",
		"| http-floor | 16 MB | 1677.7 MB/s (1677.7–1677.7) | 20.0 MiB (20.0–20.0) | 10.0 MiB (10.0–10.0) | 0 |",
		"| http-sidecars-mtls | 16 MB | 1677.7 MB/s (1677.7–1677.7) | 60.0 MiB (60.0–60.0) | 50.0 MiB (50.0–50.0) | 0 |",
		"![peak RSS against body size](scale-rss.png)",
		"| 1 | 1000 µs (1000–1000) | 2000 µs (2000–2000) | 100 µs (100–100) | - | 60% (60–60) | 30% (30–30) | 0 |",
		"| 1,000 | 1000 µs (1000–1000) | 2000 µs (2000–2000) | 150 µs (150–150) | +50 µs | 60% (60–60) | 30% (30–30) | 0 |",
		"- Memory per idle connection at 4,000, `http-sidecars` against `http-floor`: 10.0 KiB / 20.0 KiB = 0.50 (goal at most 1.0): within the goal.",
		"- Memory per idle connection at 4,000, `http-sidecars-mtls` against `http-floor`: 30.0 KiB / 20.0 KiB = 1.50 (goal at most 1.0): over the goal.",
		"- Memory per idle connection at 4,000, `http-sidecars-mtls` against `http-floor-tls`: 30.0 KiB / 40.0 KiB = 0.75 (goal at most 1.0): within the goal.",
		"- p99 at 4,000 connections, `http-sidecars` against `http-floor`: 11000 µs / 10000 µs = 1.10 (goal at most 1.2): within the goal.",
		"- p99 at 4,000 connections, `http-sidecars-mtls` against `http-floor`: 13000 µs / 10000 µs = 1.30 (goal at most 1.2): over the goal.",
		"- Peak RSS in body size, `http-sidecars`: 20.0 MiB at 1 KB, 20.0 MiB at 16 MB (+0.0 MiB): flat",
		"- Peak RSS in body size, `http-sidecars-mtls`: 20.0 MiB at 1 KB, 60.0 MiB at 16 MB (+40.0 MiB): not flat",
		"First error of connections http-sidecars 4000 in round 1: `HTTP 503: overloaded`",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the report lacks %q:\n%s", want, got)
		}
	}
	// A peak the kernel would not reset is said to include the start.
	rs := scaleFixture()
	find(rs, partBodies, "http-floor", 1<<10).Rounds[1].PeakKept = true
	if got := scaleReport(run, rs); !strings.Contains(got, "their peaks include the processes' start") {
		t.Errorf("a peak not reset is not said to be:\n%s", got)
	}
	// A full run on a quiet machine says neither.
	run.short, run.load0, run.load1 = false, 0.1, 0.1
	got = scaleReport(run, scaleFixture())
	for _, not := range []string{"short run", "busy"} {
		if strings.Contains(got, not) {
			t.Errorf("a full run on a quiet machine says %q:\n%s", not, got)
		}
	}
}

// Points not run (over the file limit) are said to be, and the goals
// they feed are not measured.
func TestScaleReportSkipped(t *testing.T) {
	var rs []*scaleResult
	for _, r := range scaleFixture() {
		if r.part != partConns || r.n < 4000 {
			rs = append(rs, r)
		}
	}
	run := scaleRun{o: options{Rounds: 2}, files: fileLimit{before: 1024, after: 4096}}
	got := scaleReport(run, rs)
	for _, want := range []string{
		"| http-sidecars | 4,000 | not run |",
		"too low for 4,000 connections: points over 3072 were skipped",
		"- p99 at 4,000 connections, `http-sidecars` against `http-floor`: not measured.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the report lacks %q:\n%s", want, got)
		}
	}
	if (fileLimit{after: 4096}).connsWithin(4000) || !(fileLimit{after: 20000}).connsWithin(4000) {
		t.Error("connsWithin: 4,000 connections want 5,024 files")
	}
}

func TestScaleLabels(t *testing.T) {
	for n, want := range map[int]string{1 << 10: "1 KB", 64 << 10: "64 KB", 1 << 20: "1 MB", 16 << 20: "16 MB", 1000: "1000 B"} {
		if got := bodyLabel(n); got != want {
			t.Errorf("bodyLabel(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int]string{1: "1", 999: "999", 4000: "4,000", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseCacheLookups(t *testing.T) {
	text := `# HELP tandem_resolver_cache_lookups_total App ids ...
# TYPE tandem_resolver_cache_lookups_total counter
tandem_resolver_cache_lookups_total{app_id="bench-client",result="hit"} 1234
tandem_resolver_cache_lookups_total{app_id="bench-client",result="miss"} 56
go_goroutines 12
`
	l, err := parseCacheLookups(strings.NewReader(text))
	if err != nil || l != (lookups{hits: 1234, misses: 56}) {
		t.Fatalf("parseCacheLookups = %+v, %v; want 1234 hits, 56 misses", l, err)
	}
	l, err = parseCacheLookups(strings.NewReader(text + `tandem_resolver_cache_lookups_total{app_id="bench-client",result="renewed"} 78` + "\n"))
	if err != nil || l != (lookups{hits: 1234, renewals: 78, misses: 56}) {
		t.Fatalf("parseCacheLookups with renewals = %+v, %v; want 1234, 78, 56", l, err)
	}
	if _, err := parseCacheLookups(strings.NewReader("go_goroutines 12\n")); err == nil || !strings.Contains(err.Error(), "no tandem_resolver_cache_lookups_total") {
		t.Fatalf("metrics without the series: %v", err)
	}
}

// The mirror app answers with as many bytes as the body it was sent,
// which the harness sends from a generator.
func TestMirrorApp(t *testing.T) {
	srv := httptest.NewServer(mirrorApp())
	defer srv.Close()
	var refused atomic.Int64
	for _, size := range []int{0, 1, 100 << 10} {
		n, err := scaleCall(context.Background(), srv.Client(), srv.URL, size, &refused)
		if err != nil || n != int64(size) {
			t.Errorf("a body of %d: answer of %d, %v", size, n, err)
		}
	}
}
