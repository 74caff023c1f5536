package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// metric is one figure of a path in one round.
type metric struct {
	name   string
	format func(float64) string
	of     func(r *result, i int) (float64, bool)
}

func fmtUS(v float64) string   { return fmt.Sprintf("%.0f µs", v) }
func fmtMiB(v float64) string  { return fmt.Sprintf("%.1f MiB", v) }
func fmtRate(v float64) string { return fmt.Sprintf("%.0f req/s", v) }
func fmtCPU(v float64) string  { return fmt.Sprintf("%.3f s", v) }

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// latencyAt is the latency at quantile q, in µs.
func latencyAt(q float64) metric {
	return metric{name: "p" + pct(q), format: fmtUS, of: func(r *result, i int) (float64, bool) {
		return micros(r.Rounds[i].Fixed.quantile(q)), true
	}}
}

// added is the latency at quantile q minus the group baseline's at the
// same quantile in the same round, in µs.
func added(q float64) metric {
	return metric{name: "added p" + pct(q), format: fmtUS, of: func(r *result, i int) (float64, bool) {
		if r.base == nil || i >= len(r.base.Rounds) {
			return 0, false
		}
		return micros(r.Rounds[i].Fixed.quantile(q) - r.base.Rounds[i].Fixed.quantile(q)), true
	}}
}

// procsOnly is a metric of the path's own processes: none for a path
// without any.
func procsOnly(name string, format func(float64) string, f func(s *sample) float64) metric {
	return metric{name: name, format: format, of: func(r *result, i int) (float64, bool) {
		if r.Rounds[i].Procs == 0 {
			return 0, false
		}
		return f(r.Rounds[i]), true
	}}
}

var (
	cpuPer1000 = procsOnly("CPU s / 1000 req", fmtCPU, func(s *sample) float64 {
		return s.CPU.Seconds() * 1000 / float64(max(s.Fixed.Requests, 1))
	})
	peakRSS  = procsOnly("peak RSS", fmtMiB, func(s *sample) float64 { return float64(s.PeakRSS) / (1 << 20) })
	idleRSS  = procsOnly("idle RSS", fmtMiB, func(s *sample) float64 { return float64(s.IdleRSS) / (1 << 20) })
	idleAnon = procsOnly("idle private", fmtMiB, func(s *sample) float64 { return float64(s.IdleAnon) / (1 << 20) })
	maxRate  = metric{name: "max req/s", format: fmtRate, of: func(r *result, i int) (float64, bool) { return r.Rounds[i].Max.rate(), true }}
)

// spread is a metric's median over the rounds and its range.
type spread struct{ med, lo, hi float64 }

// over is m's spread over r's rounds; false when m does not apply to r.
func over(r *result, m metric) (spread, bool) {
	var vs []float64
	for i := range r.Rounds {
		v, ok := m.of(r, i)
		if !ok {
			return spread{}, false
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return spread{}, false
	}
	return spreadOf(vs), true
}

// spreadOf is the median and range of vs, which it sorts; vs is not empty.
func spreadOf(vs []float64) spread {
	slices.Sort(vs)
	n := len(vs)
	med := vs[n/2]
	if n%2 == 0 {
		med = (vs[n/2-1] + vs[n/2]) / 2
	}
	return spread{med: med, lo: vs[0], hi: vs[n-1]}
}

// show is "median (min–max)" in format's units, the range without them.
func (s spread) show(format func(float64) string) string {
	unit := strings.TrimLeft(format(s.med), "-0123456789.")
	return fmt.Sprintf("%s (%s–%s)", format(s.med), strings.TrimSuffix(format(s.lo), unit), strings.TrimSuffix(format(s.hi), unit))
}

// target is one of issue 22's: ours against a path of the same run (a
// ratio of medians), or against an absolute limit.
type target struct {
	what    string
	ours    string
	against string // "": limit is absolute, in m's units
	m       metric
	limit   float64 // 0: reported, no target
	atLeast bool    // ours must be at least the limit, not at most
}

// targets for the plaintext pair, then for the pair with mTLS against the
// TLS floor, then what is reported only.
func targets() []target {
	var ts []target
	for _, v := range []struct{ tag, suffix, floor string }{{"", "", "http-floor"}, {", mTLS", "-mtls", "http-floor-tls"}} {
		pair := "http-sidecars" + v.suffix
		ts = append(ts,
			target{what: "HTTP two hops" + v.tag + ", added p90", ours: pair, against: v.floor, m: added(.9), limit: 1.2},
			target{what: "HTTP two hops" + v.tag + ", added p99", ours: pair, against: v.floor, m: added(.99), limit: 1.5},
			target{what: "HTTP two hops" + v.tag + ", added p99.9", ours: pair, against: v.floor, m: added(.999)},
			target{what: "gRPC InvokeService" + v.tag + ", added p90 against the HTTP floor's", ours: "grpc-invoke" + v.suffix, against: v.floor, m: added(.9), limit: 1.3},
			target{what: "gRPC proxying" + v.tag + ", added p90 against the HTTP floor's", ours: "grpc-proxy" + v.suffix, against: v.floor, m: added(.9), limit: 1.3},
			target{what: "Peak RSS per sidecar" + v.tag + " at the fixed rate, against a floor proxy's", ours: pair, against: v.floor, m: peakRSS, limit: 1.2},
			target{what: "Idle RSS per sidecar" + v.tag + ", after start", ours: pair, m: idleRSS, limit: 16},
			target{what: "CPU per 1,000 requests of the pair" + v.tag + ", against the floor pair's", ours: pair, against: v.floor, m: cpuPer1000, limit: 1.2},
			target{what: "Maximum throughput of the pair" + v.tag + ", at least the floor pair's", ours: pair, against: v.floor, m: maxRate, limit: 1, atLeast: true},
		)
	}
	return append(ts,
		target{what: "State get, at p90 over go-redis GET", ours: "state-get-sidecar", m: added(.9), limit: 100},
		target{what: "State save, at p90 over go-redis SET", ours: "state-save-sidecar", m: added(.9), limit: 100},
		target{what: "State get floor (a bare HTTP front to Redis), at p90 over go-redis GET", ours: "state-get-floor", m: added(.9)},
		target{what: "State save floor, at p90 over go-redis SET", ours: "state-save-floor", m: added(.9)},
		target{what: "State get through the sidecar against the floor's, added p90", ours: "state-get-sidecar", against: "state-get-floor", m: added(.9), limit: 1.1},
		target{what: "State save through the sidecar against the floor's, added p90", ours: "state-save-sidecar", against: "state-save-floor", m: added(.9), limit: 1.1},
		target{what: "State get floor on a map (the same front, no Redis), at p90 over the map read in the harness", ours: "state-get-floor-embedded", m: added(.9)},
		target{what: "State save floor on a map, at p90 over the map write in the harness", ours: "state-save-floor-embedded", m: added(.9)},
		target{what: "State get through the sidecar on its embedded store against the floor on a map, added p90", ours: "state-get-sidecar-embedded", against: "state-get-floor-embedded", m: added(.9), limit: 1.1},
		target{what: "State save through the sidecar on its embedded store against the floor on a map, added p90", ours: "state-save-sidecar-embedded", against: "state-save-floor-embedded", m: added(.9), limit: 1.1},
		target{what: "State get on the embedded store against the floor on a map, CPU per 1,000 requests", ours: "state-get-sidecar-embedded", against: "state-get-floor-embedded", m: cpuPer1000},
		target{what: "State save on the embedded store against the floor on a map, CPU per 1,000 requests", ours: "state-save-sidecar-embedded", against: "state-save-floor-embedded", m: cpuPer1000},
		target{what: "gRPC floor (two bare grpc-go proxies), added p90 against the HTTP floor's", ours: "grpc-floor", against: "http-floor", m: added(.9)},
		target{what: "gRPC proxying against the gRPC floor, added p90", ours: "grpc-proxy", against: "grpc-floor", m: added(.9)},
		target{what: "gRPC proxying against the gRPC floor, added p99", ours: "grpc-proxy", against: "grpc-floor", m: added(.99)},
		target{what: "gRPC proxying against the gRPC floor, CPU per 1,000 requests", ours: "grpc-proxy", against: "grpc-floor", m: cpuPer1000},
		target{what: "gRPC floor on one CPU per proxy against the gRPC floor (Go's default, both CPUs), added p90", ours: "grpc-floor-1cpu", against: "grpc-floor", m: added(.9)},
		target{what: "gRPC proxying against the gRPC floor on one CPU, added p90", ours: "grpc-proxy", against: "grpc-floor-1cpu", m: added(.9), limit: 1.15},
		target{what: "gRPC proxying against the gRPC floor on one CPU, added p99", ours: "grpc-proxy", against: "grpc-floor-1cpu", m: added(.99), limit: 1.15},
		target{what: "gRPC InvokeService against the gRPC floor on one CPU, added p90", ours: "grpc-invoke", against: "grpc-floor-1cpu", m: added(.9), limit: 1.15},
		target{what: "gRPC InvokeService against the gRPC floor on one CPU, added p99", ours: "grpc-invoke", against: "grpc-floor-1cpu", m: added(.99), limit: 1.15},
		target{what: "gRPC proxying against the gRPC floor on one CPU, CPU per 1,000 requests", ours: "grpc-proxy", against: "grpc-floor-1cpu", m: cpuPer1000},
		target{what: "One sidecar (gRPC API proxy and app channel, no hop) against one grpc-go proxy, added p90", ours: "grpc-sidecar", against: "grpc-floor-one", m: added(.9)},
		target{what: "One sidecar against one grpc-go proxy, CPU per 1,000 requests", ours: "grpc-sidecar", against: "grpc-floor-one", m: cpuPer1000},
		target{what: "One CPU per sidecar (the default) against two (`--max-procs 2`), added p90", ours: "http-sidecars", against: "http-sidecars-2cpu", m: added(.9)},
		target{what: "One CPU against two, added p99", ours: "http-sidecars", against: "http-sidecars-2cpu", m: added(.99)},
		target{what: "One CPU against two, CPU per 1,000 requests of the pair", ours: "http-sidecars", against: "http-sidecars-2cpu", m: cpuPer1000},
		target{what: "One CPU against two, maximum throughput of the pair", ours: "http-sidecars", against: "http-sidecars-2cpu", m: maxRate},
		target{what: "GOGC=200 (the default) against Go's 100, added p90", ours: "http-sidecars", against: "http-sidecars-gogc100", m: added(.9)},
		target{what: "GOGC=200 against 100, added p99", ours: "http-sidecars", against: "http-sidecars-gogc100", m: added(.99)},
		target{what: "GOGC=200 against 100, CPU per 1,000 requests of the pair", ours: "http-sidecars", against: "http-sidecars-gogc100", m: cpuPer1000},
		target{what: "GOGC=200 against 100, maximum throughput of the pair", ours: "http-sidecars", against: "http-sidecars-gogc100", m: maxRate},
		target{what: "GOGC=200 against 100, peak RSS per sidecar", ours: "http-sidecars", against: "http-sidecars-gogc100", m: peakRSS},
		target{what: "Tracing on (calculator's sampling), added p90 against the untraced mTLS pair's", ours: "http-sidecars-traced", against: "http-sidecars-mtls", m: added(.9), limit: 1.05},
		target{what: "Tracing on, added p99 against the untraced mTLS pair's", ours: "http-sidecars-traced", against: "http-sidecars-mtls", m: added(.99), limit: 1.2},
		target{what: "Tracing on, added p99.9 against the untraced mTLS pair's", ours: "http-sidecars-traced", against: "http-sidecars-mtls", m: added(.999)},
	)
}

// limitText is a ratio's limit as written: 1.0, 1.2, 1.05, 1.15.
func limitText(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// check says whether t is met, with the numbers.
func (t target) check(by map[string]*result) string {
	limit := ""
	switch {
	case t.limit == 0:
		limit = "reported"
	case t.against != "" && t.atLeast:
		limit = fmt.Sprintf("target at least %sx %s's", limitText(t.limit), t.against)
	case t.against != "":
		limit = fmt.Sprintf("target at most %sx %s's", limitText(t.limit), t.against)
	default:
		limit = "target at most " + t.m.format(t.limit)
	}
	head := fmt.Sprintf("%s (%s)", t.what, limit)
	ours, ok1 := measured(by, t.ours, t.m)
	if !ok1 {
		return fmt.Sprintf("%s: %s not measured in this run.", head, t.ours)
	}
	value, v := fmt.Sprintf("%s %s", t.ours, ours.show(t.m.format)), ours.med
	if t.against != "" {
		ref, ok := measured(by, t.against, t.m)
		if !ok {
			return fmt.Sprintf("%s: %s; %s not measured in this run.", head, value, t.against)
		}
		if ref.med <= 0 {
			return fmt.Sprintf("%s: %s / %s %s: no ratio to a median that is not positive (noise larger than the hop).", head, value, t.against, ref.show(t.m.format))
		}
		value += fmt.Sprintf(" / %s %s = %.2fx", t.against, ref.show(t.m.format), ours.med/ref.med)
		v = ours.med / ref.med
	}
	met := v <= t.limit
	if t.atLeast {
		met = v >= t.limit
	}
	switch {
	case t.limit == 0:
		return fmt.Sprintf("%s: %s.", head, value)
	case met:
		return fmt.Sprintf("**met**: %s: %s.", head, value)
	default:
		return fmt.Sprintf("**not met**: %s: %s.", head, value)
	}
}

func measured(by map[string]*result, name string, m metric) (spread, bool) {
	r := by[name]
	if r == nil {
		return spread{}, false
	}
	return over(r, m)
}

// ratioLine is "our added pNN / floor added pNN = a / b = r" of medians,
// or "" when either is missing.
func ratioLine(by map[string]*result, ours, floor string, q float64) string {
	o, ok1 := measured(by, ours, added(q))
	f, ok2 := measured(by, floor, added(q))
	if !ok1 || !ok2 {
		return ""
	}
	line := fmt.Sprintf("%s added p%s / %s added p%s = %s / %s", ours, pct(q), floor, pct(q), fmtUS(o.med), fmtUS(f.med))
	if f.med <= 0 {
		return line + " (no ratio: the floor's is not positive)"
	}
	return fmt.Sprintf("%s = %.2f", line, o.med/f.med)
}

// pct is q as a percentile's name: .9 -> "90", .999 -> "99.9".
func pct(q float64) string { return strings.TrimSuffix(fmt.Sprintf("%.1f", q*100), ".0") }
