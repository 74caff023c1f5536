package main

import (
	"fmt"
	"image/color"
	"runtime"
	"strings"
	"time"

	"github.com/tandem-run/tandem/internal/invoke"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// scaleTitle is the heading of the section -scale writes.
const scaleTitle = "## How cost grows"

// scaleRun is what the report says of the run beside its results.
type scaleRun struct {
	o              options
	short          bool // a -short run: said plainly at the top
	load0, load1   float64
	files          fileLimit
	latPNG, rssPNG string // the charts' file names, beside the report; "" none
	date           time.Time
}

// scaleCell is the median and range of f over r's rounds, "-" when none.
func scaleCell(r *scaleResult, format func(float64) string, f func(*scaleSample) (float64, bool)) string {
	if r == nil {
		return "-"
	}
	vs := roundsOf(r, f)
	if len(vs) == 0 {
		return "-"
	}
	return spreadOf(vs).show(format)
}

// scaleMedian is the median of f over r's rounds; false when none.
func scaleMedian(r *scaleResult, f func(*scaleSample) (float64, bool)) (float64, bool) {
	if r == nil {
		return 0, false
	}
	vs := roundsOf(r, f)
	if len(vs) == 0 {
		return 0, false
	}
	return spreadOf(vs).med, true
}

func fmtKiB(v float64) string { return fmt.Sprintf("%.1f KiB", v) }
func fmtMBs(v float64) string { return fmt.Sprintf("%.1f MB/s", v) }
func fmtRatio(v float64) string {
	return fmt.Sprintf("%.0f%%", 100*v)
}

var (
	scaleP50 = func(s *scaleSample) (float64, bool) { return micros(s.P50), s.Requests > s.Errors }
	scaleP99 = func(s *scaleSample) (float64, bool) { return micros(s.P99), s.Requests > s.Errors }
	// scaleCPU is CPU seconds per 1,000 calls.
	scaleCPU = func(s *scaleSample) (float64, bool) {
		return s.CPU.Seconds() * 1000 / float64(max(s.Requests, 1)), s.Requests > 0
	}
	// scaleCPUCall is CPU µs per call.
	scaleCPUCall = func(s *scaleSample) (float64, bool) {
		return micros(s.CPU) / float64(max(s.Requests, 1)), s.Requests > 0
	}
	scaleRSS  = func(s *scaleSample) (float64, bool) { return float64(s.RSS) / (1 << 20), s.RSS > 0 }
	scalePeak = func(s *scaleSample) (float64, bool) { return float64(s.PeakRSS) / (1 << 20), s.PeakRSS > 0 }
	// scalePeakOver is the most a process's peak rose over its RSS
	// before the run, MiB.
	scalePeakOver = func(s *scaleSample) (float64, bool) {
		return float64(s.PeakOver) / (1 << 20), s.PeakRSS > 0 && s.IdleRSS > 0
	}
	// scaleMBs is body megabytes (10^6) a second, each way.
	scaleMBs = func(s *scaleSample) (float64, bool) {
		return float64(s.Bytes) / 1e6 / s.Elapsed.Seconds(), s.Elapsed > 0
	}
	// scaleHitRatio is the resolver's cache hits over its lookups.
	scaleHitRatio = func(s *scaleSample) (float64, bool) {
		all := s.Hits + s.Renewals + s.Misses
		return float64(s.Hits) / float64(all), all > 0
	}
	// scaleRenewedRatio is its answers renewed by a look at the app's
	// folder over its lookups.
	scaleRenewedRatio = func(s *scaleSample) (float64, bool) {
		all := s.Hits + s.Renewals + s.Misses
		return float64(s.Renewals) / float64(all), all > 0
	}
)

// scalePerConn is the memory per idle connection at n connections, KiB:
// the path's private memory with them open and idle less before, over n.
func scalePerConn(n int) func(*scaleSample) (float64, bool) {
	return func(s *scaleSample) (float64, bool) {
		return float64(s.ConnPrivate-s.IdlePrivate) / 1024 / float64(n), s.ConnPrivate > 0 && s.IdlePrivate > 0
	}
}

// scalePerConnNow is scalePerConn read right after the connections'
// calls.
func scalePerConnNow(n int) func(*scaleSample) (float64, bool) {
	return func(s *scaleSample) (float64, bool) {
		return float64(s.ConnPrivateNow-s.IdlePrivate) / 1024 / float64(n), s.ConnPrivateNow > 0 && s.IdlePrivate > 0
	}
}

// bodyLabel is 1 KB, 64 KB, 1 MB, 16 MB (binary multiples).
func bodyLabel(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// thousands is n with a comma between thousands: 4,000.
func thousands(n int) string {
	s := itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// find is the result of part at path and n; nil when not run.
func find(results []*scaleResult, part scalePart, path string, n int) *scaleResult {
	for _, r := range results {
		if r.part == part && r.path == path && r.n == n && len(r.Rounds) > 0 {
			return r
		}
	}
	return nil
}

// errorsOf is the errors and refusals of r over its rounds.
func errorsOf(r *scaleResult) (errs, refused int) {
	for _, s := range r.Rounds {
		errs += s.Errors
		refused += s.Refused
	}
	return errs, refused
}

func scaleReport(run scaleRun, results []*scaleResult) string {
	o := run.o
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", scaleTitle)
	if run.short {
		b.WriteString("**A short run (`-short`): a few seconds per point. Its numbers show that the profile runs and what it reports; they are not results. Run `make bench-scale` on a quiet machine for those.**\n\n")
	}
	fmt.Fprintf(&b, "`go run ./bench -scale bench/RESULTS.md` (`make bench-scale`) on %s, %s. Rounds: %d; in each, every point below once, in order, its processes started afresh; each figure is the median of the rounds with their range.\n\n",
		machine(), run.date.Format("2006-01-02"), o.Rounds)
	fmt.Fprintf(&b, "Load average (1 min) %.1f at the start, %.1f at the end, on %d CPUs", run.load0, run.load1, runtime.NumCPU())
	if max(run.load0, run.load1) > float64(runtime.NumCPU()) {
		b.WriteString(": the machine was busy with other work, and these numbers are noise; run it again on a quiet machine before reading them")
	}
	b.WriteString(".\n\n")
	b.WriteString("Method. The paths are the floor, `http-floor` (two bare `httputil.ReverseProxy` processes with their defaults) and `http-floor-tls` (the same with TLS 1.3 and certificates both ways between them), and two sidecars with mutual TLS off (`http-sidecars`) and on (`http-sidecars-mtls`, the standalone default), all in front of a mirror app in the harness that answers each call with as many bytes as its body had, streamed both ways. " +
		"`http-floor`'s front proxy speaks HTTP/1.1 to its back and keeps Go's default of two idle connections to it (`MaxIdleConnsPerHost`): with many calls in flight it opens and closes connections, where `http-floor-tls` and the sidecars multiplex calls over HTTP/2 (a sidecar opens another connection to its peer past 250 calls in flight on one). " +
		"CPU is of the path's own processes from /proc (user and system), over the measured run; RSS is their VmRSS summed, peak RSS the larger process's VmHWM.\n\n")
	fmt.Fprintf(&b, "- Connections: at each count the harness opens that many keep-alive connections to the front process, one call of %d B on each, and reads the processes' private memory (RssAnon) before and after: memory per idle connection is the difference over the count, read once the processes have been idle for %s (before too: the first call, which sets up the hop, is made before), and beside it the same read right after the calls, with their garbage. Private memory, not RSS: a sidecar unmaps its binary's pages a second after it starts, and the first calls after that map some of them again, code shared by every process of the binary and no connection's. Then %s of warm-up and %s measured at %d calls/s, each call on the next connection in turn, so that every connection carries its share. "+
		"Answers 503 and 429 (the sidecar's bounds: a callee refuses calls from peers beyond %s in flight, as overloaded) are counted as refused, and among the errors.\n",
		o.Size, idleSettle, o.Warmup, o.Duration, o.Rate, thousands(invoke.DefaultMaxHopCalls))
	fmt.Fprintf(&b, "- Bodies: %d connections, as fast as they go for %s, each call a body of the size both ways; the request is sent from a generator and the answer read to nothing, so the harness holds no body either. MB/s is body bytes (10^6) a second, each way.\n", scaleBodyConns, o.MaxFor)
	fmt.Fprintf(&b, "- App ids: a registry folder with that many app ids, each entry held (locked) by the harness and pointing at a stand-in peer in the harness that speaks the internal port's protocol (HTTP/2 without TLS) for any app id and answers as the mirror app; one caller sidecar (mutual TLS off, metrics on) calls the ids in turn, %d calls/s over %d connections, %s measured after %s of warm-up. What grows is the caller's name resolution alone. Its CPU per call is weighed against one app id; the cache hit ratio is read from its `tandem_resolver_cache_lookups_total` before and after the run (the cache keeps an answer for one second; past it, for up to ten seconds from a read of the app's registry folder, one look at the folder, unchanged, renews it: \"renewed\"; the rest read the folder).\n",
		o.Rate, o.Conns, o.Duration, o.Warmup)
	fl := run.files
	switch {
	case fl.err != nil:
		fmt.Fprintf(&b, "- Open files: the harness could not raise RLIMIT_NOFILE (%v); it was %d, and points over it less 1,024 were skipped.\n", fl.err, fl.before)
	case fl.after < uint64(scaleConns[len(scaleConns)-1])+1024:
		fmt.Fprintf(&b, "- Open files: RLIMIT_NOFILE raised from %d to its hard limit, %d, which is too low for %s connections: points over %d were skipped. Raise the hard limit (`ulimit -Hn`) to run them.\n",
			fl.before, fl.after, thousands(scaleConns[len(scaleConns)-1]), fl.after-1024)
	default:
		fmt.Fprintf(&b, "- Open files: the harness set RLIMIT_NOFILE's soft limit to its hard one (%d, from %d), which the sidecars and floor proxies inherit.\n", fl.after, fl.before)
	}

	b.WriteString("\n### Connections\n\n| path | connections | p50 | p99 | CPU s / 1000 calls | RSS after | memory per idle connection | the same, right after its call | refused (503, 429) | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range scalePaths() {
		for _, n := range scaleConns {
			r := find(results, partConns, p.name, n)
			if r == nil {
				fmt.Fprintf(&b, "| %s | %s | not run | | | | | | | |\n", p.name, thousands(n))
				continue
			}
			errs, refused := errorsOf(r)
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %d | %d |\n", p.name, thousands(n),
				scaleCell(r, fmtUS, scaleP50), scaleCell(r, fmtUS, scaleP99), scaleCell(r, fmtCPU, scaleCPU),
				scaleCell(r, fmtMiB, scaleRSS), scaleCell(r, fmtKiB, scalePerConn(n)), scaleCell(r, fmtKiB, scalePerConnNow(n)), refused, errs)
		}
	}
	if run.latPNG != "" {
		fmt.Fprintf(&b, "\n![p50 and p99 against connections](%s)\n", run.latPNG)
	}

	kept := false
	for _, r := range results {
		for _, s := range r.Rounds {
			kept = kept || s.PeakKept
		}
	}
	b.WriteString("\n### Bodies\n\n")
	if kept {
		b.WriteString("The kernel would not reset the processes' VmHWM (`/proc/<pid>/clear_refs`) before some runs: their peaks include the processes' start.\n\n")
	} else {
		b.WriteString("Each process's VmHWM is reset (`/proc/<pid>/clear_refs`) before the run, so the peak is the run's; \"peak over RSS before\" is the most any process's peak rose over its RSS right before the run.\n\n")
	}
	b.WriteString("| path | body, each way | MB/s each way | peak RSS | peak over RSS before | errors |\n|---|---:|---:|---:|---:|---:|\n")
	for _, p := range scalePaths() {
		for _, n := range scaleBodies {
			r := find(results, partBodies, p.name, n)
			if r == nil {
				fmt.Fprintf(&b, "| %s | %s | not run | | | |\n", p.name, bodyLabel(n))
				continue
			}
			errs, _ := errorsOf(r)
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d |\n", p.name, bodyLabel(n), scaleCell(r, fmtMBs, scaleMBs),
				scaleCell(r, fmtMiB, scalePeak), scaleCell(r, fmtMiB, scalePeakOver), errs)
		}
	}
	if run.rssPNG != "" {
		fmt.Fprintf(&b, "\n![peak RSS against body size](%s)\n", run.rssPNG)
	}

	b.WriteString("\n### App ids in the registry\n\n| app ids | p50 | p99 | caller CPU µs / call | over 1 app id | cache hit ratio | renewed by a look at the folder | errors |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	base := find(results, partIDs, "", scaleIDs[0])
	baseCPU, baseOK := scaleMedian(base, scaleCPUCall)
	for _, n := range scaleIDs {
		r := find(results, partIDs, "", n)
		if r == nil {
			fmt.Fprintf(&b, "| %s | not run | | | | | | |\n", thousands(n))
			continue
		}
		overBase := "-"
		if c, ok := scaleMedian(r, scaleCPUCall); ok && baseOK && r != base {
			overBase = fmt.Sprintf("%+.0f µs", c-baseCPU)
		}
		errs, _ := errorsOf(r)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %d |\n", thousands(n), scaleCell(r, fmtUS, scaleP50), scaleCell(r, fmtUS, scaleP99),
			scaleCell(r, func(v float64) string { return fmt.Sprintf("%.0f µs", v) }, scaleCPUCall), overBase,
			scaleCell(r, fmtRatio, scaleHitRatio), scaleCell(r, fmtRatio, scaleRenewedRatio), errs)
	}

	b.WriteString("\n### Against the goals\n\nRatios of medians of this run; goals to read against, not checks.\n\n")
	b.WriteString(scaleGoals(results))
	for _, r := range results {
		for i, s := range r.Rounds {
			if s.FirstErr != "" {
				fmt.Fprintf(&b, "\nFirst error of %s %s %d in round %d: `%s`\n", r.part, r.path, r.n, i+1, strings.TrimSpace(s.FirstErr))
			}
		}
	}
	return b.String()
}

// scaleGoals are the lines against the goals: memory per idle connection
// at most the floor's, p99 at the most connections at most 1.2 times the
// floor's, peak RSS flat in body size.
func scaleGoals(results []*scaleResult) string {
	var b strings.Builder
	top := scaleConns[len(scaleConns)-1]
	ratio := func(what string, f func(*scaleSample) (float64, bool), ours, floor string, goal float64, unit func(float64) string) {
		o, ok1 := scaleMedian(find(results, partConns, ours, top), f)
		fv, ok2 := scaleMedian(find(results, partConns, floor, top), f)
		if !ok1 || !ok2 || fv <= 0 {
			fmt.Fprintf(&b, "- %s, `%s` against `%s`: not measured.\n", what, ours, floor)
			return
		}
		verdict := "within the goal"
		if o/fv > goal {
			verdict = "over the goal"
		}
		fmt.Fprintf(&b, "- %s, `%s` against `%s`: %s / %s = %.2f (goal at most %.1f): %s.\n", what, ours, floor, unit(o), unit(fv), o/fv, goal, verdict)
	}
	for _, ours := range []string{"http-sidecars", "http-sidecars-mtls"} {
		ratio(fmt.Sprintf("Memory per idle connection at %s", thousands(top)), scalePerConn(top), ours, "http-floor", 1, fmtKiB)
	}
	ratio(fmt.Sprintf("Memory per idle connection at %s", thousands(top)), scalePerConn(top), "http-sidecars-mtls", "http-floor-tls", 1, fmtKiB)
	for _, ours := range []string{"http-sidecars", "http-sidecars-mtls"} {
		ratio(fmt.Sprintf("p99 at %s connections", thousands(top)), scaleP99, ours, "http-floor", 1.2, fmtUS)
	}
	ratio(fmt.Sprintf("p99 at %s connections", thousands(top)), scaleP99, "http-sidecars-mtls", "http-floor-tls", 1.2, fmtUS)
	small, large := scaleBodies[0], scaleBodies[len(scaleBodies)-1]
	for _, p := range scalePaths() {
		a, ok1 := scaleMedian(find(results, partBodies, p.name, small), scalePeak)
		z, ok2 := scaleMedian(find(results, partBodies, p.name, large), scalePeak)
		if !ok1 || !ok2 {
			fmt.Fprintf(&b, "- Peak RSS in body size, `%s`: not measured.\n", p.name)
			continue
		}
		// Flat: what the largest bodies add is less than one of them,
		// with scaleBodyConns in flight: no body is held whole.
		verdict := "flat (it grows by less than one body: no body is held whole)"
		if (z-a)*(1<<20) >= float64(large) {
			verdict = "not flat (it grows by a body or more)"
		}
		fmt.Fprintf(&b, "- Peak RSS in body size, `%s`: %s at %s, %s at %s (%+.1f MiB): %s.\n", p.name, fmtMiB(a), bodyLabel(small), fmtMiB(z), bodyLabel(large), z-a, verdict)
	}
	return b.String()
}

var scalePalette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 255}, color.RGBA{0xff, 0x7f, 0x0e, 255},
	color.RGBA{0x2c, 0xa0, 0x2c, 255}, color.RGBA{0xd6, 0x27, 0x28, 255},
}

// scaleCharts draws p50 and p99 against connections into latFile, and
// peak RSS against body size into rssFile, a line per path.
func scaleCharts(latFile, rssFile string, results []*scaleResult) error {
	lat := plot.New()
	lat.Title.Text = "Latency against concurrent connections"
	lat.X.Label.Text = "connections"
	lat.Y.Label.Text = "latency (ms); p99 solid, p50 dashed"
	lat.X.Scale, lat.Y.Scale = plot.LogScale{}, plot.LogScale{}
	lat.X.Tick.Marker, lat.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	rss := plot.New()
	rss.Title.Text = "Peak RSS against body size (each way)"
	rss.X.Label.Text = "body (KiB)"
	rss.Y.Label.Text = "peak RSS over the run, larger process (MiB)"
	rss.X.Scale = plot.LogScale{}
	rss.Y.Min = 0 // from zero, so that flat looks flat
	rss.X.Tick.Marker = plot.LogTicks{Prec: -1}
	for _, pl := range []*plot.Plot{lat, rss} {
		pl.Legend.Top, pl.Legend.Left = true, true
		pl.Legend.TextStyle.Font.Size = vg.Points(9)
	}
	for i, p := range scalePaths() {
		c := scalePalette[i%len(scalePalette)]
		for _, q := range []struct {
			f      func(*scaleSample) (float64, bool)
			dashed bool
		}{{scaleP99, false}, {scaleP50, true}} {
			var pts plotter.XYs
			for _, n := range scaleConns {
				if v, ok := scaleMedian(find(results, partConns, p.name, n), q.f); ok && v > 0 {
					pts = append(pts, plotter.XY{X: float64(n), Y: v / 1000})
				}
			}
			if len(pts) == 0 {
				continue
			}
			l, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			l.Color, l.Width = c, vg.Points(1.5)
			if q.dashed {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			} else {
				lat.Legend.Add(p.name, l)
			}
			lat.Add(l)
		}
		var pts plotter.XYs
		for _, n := range scaleBodies {
			if v, ok := scaleMedian(find(results, partBodies, p.name, n), scalePeak); ok {
				pts = append(pts, plotter.XY{X: float64(n) / 1024, Y: v})
			}
		}
		if len(pts) > 0 {
			l, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			l.Color, l.Width = c, vg.Points(1.5)
			rss.Add(l)
			rss.Legend.Add(p.name, l)
		}
	}
	if err := lat.Save(8*vg.Inch, 5*vg.Inch, latFile); err != nil {
		return err
	}
	return rss.Save(8*vg.Inch, 5*vg.Inch, rssFile)
}
