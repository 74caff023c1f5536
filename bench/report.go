package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

func report(o options, results []*result, prof profile) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmark results\n\n")
	fmt.Fprintf(&b, "`go run ./bench` on %s, %s. %d interleaved rounds; in each, every path in the order below: %d req/s, %d connections, %d B each way, %s measured after %s of warm-up, then %s as fast as the same connections go. "+
		"Every path's processes are started afresh each round. Each figure is the median of the rounds, with their range in parentheses; ratios are of medians. Everything on loopback; the apps are in the harness's process, the sidecars, floor proxies, the stand-in Zipkin collector and Redis are processes of their own.\n\n",
		machine(), time.Now().UTC().Format("2006-01-02"), o.Rounds, o.Rate, o.Conns, o.Size, o.Duration, o.Warmup, o.MaxFor)
	for _, r := range results {
		fmt.Fprintf(&b, "- `%s`: %s.\n", r.name, r.about)
	}

	b.WriteString("\n## Latency at the fixed rate\n\n| path | p50 | p90 | p99 | p99.9 |\n|---|---:|---:|---:|---:|\n")
	for _, r := range results {
		row(&b, r, latencyAt(.5), latencyAt(.9), latencyAt(.99), latencyAt(.999))
	}
	b.WriteString("\nAdded: the path minus its group's direct call (`http-direct`, `grpc-direct`, `state-get-direct`, `state-save-direct`, and for the embedded state paths `state-get-direct-embedded`, `state-save-direct-embedded`) at the same percentile in the same round.\n\n")
	b.WriteString("| path | added p50 | added p90 | added p99 | added p99.9 |\n|---|---:|---:|---:|---:|\n")
	for _, r := range results {
		if !r.baseline {
			row(&b, r, added(.5), added(.9), added(.99), added(.999))
		}
	}
	b.WriteString("\n## Resources and throughput\n\n| path | errors (all rounds) | CPU s / 1000 req | idle RSS | idle private | peak RSS | max req/s |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		errs := 0
		for _, s := range r.Rounds {
			errs += s.Fixed.Errors + s.Max.Errors
		}
		fmt.Fprintf(&b, "| %s | %d ", r.name, errs)
		for _, m := range []metric{cpuPer1000, idleRSS, idleAnon, peakRSS, maxRate} {
			b.WriteString("| " + cell(r, m) + " ")
		}
		b.WriteString("|\n")
	}
	b.WriteString("\nCPU and RSS are of the path's own processes: both sidecars, both floor proxies, or the one state sidecar (the `-store` paths run in the harness). CPU is over the measured run at the fixed rate; RSS is the larger process's: idle right after it answers, before any request, and its peak (VmHWM) after the fixed rate. Idle private is the same process's RssAnon: its RSS less the program's file pages (mapped code and read-only data), which every process of the same binary shares through the page cache.\n")
	for _, r := range results {
		if r.Note != "" {
			fmt.Fprintf(&b, "\n%s: %s.\n", r.name, r.Note)
		}
		for i, s := range r.Rounds {
			if s.Fixed.FirstErr != "" || s.Max.FirstErr != "" {
				fmt.Fprintf(&b, "\nFirst error of %s in round %d: `%s`\n", r.name, i+1, strings.TrimSpace(s.Fixed.FirstErr+" "+s.Max.FirstErr))
			}
		}
	}

	by := map[string]*result{}
	errs := 0
	for _, r := range results {
		by[r.name] = r
		for _, s := range r.Rounds {
			errs += s.Fixed.Errors + s.Max.Errors
		}
	}
	b.WriteString("\n## Against the targets\n\nThe targets, medians against medians of the same run.\n\n")
	var skipped []string
	for _, t := range targets() {
		if by[t.ours] == nil {
			skipped = append(skipped, t.what)
			continue
		}
		b.WriteString("- " + t.check(by) + "\n")
	}
	if len(skipped) > 0 {
		fmt.Fprintf(&b, "- Not measured in this run (`-paths`): %s.\n", strings.Join(skipped, "; "))
	}
	fmt.Fprintf(&b, "- Errors (target zero): %d.\n", errs)
	b.WriteString(stateSplit(by))
	b.WriteString("- How long the largest state transaction holds Redis: [TRANSACTIONS.md](TRANSACTIONS.md) (`go run ./bench -transactions bench/TRANSACTIONS.md`).\n")
	var lines []string
	for _, l := range []string{
		ratioLine(by, "http-sidecars", "http-floor", .9), ratioLine(by, "http-sidecars", "http-floor", .99),
		ratioLine(by, "http-sidecars-mtls", "http-floor-tls", .9), ratioLine(by, "http-sidecars-mtls", "http-floor-tls", .99),
	} {
		if l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 0 {
		b.WriteString("\n```\n" + strings.Join(lines, "\n") + "\n```\n")
	}
	b.WriteString(whereTimeGoes(prof))
	for _, f := range []string{o.PNG, o.Out} {
		if f != "" {
			if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
				return err
			}
		}
	}
	if o.PNG != "" {
		if err := chart(o.PNG, results); err != nil {
			return err
		}
		fmt.Fprintf(&b, "\n![latency distributions, every round pooled](%s)\n", pathBase(o.PNG))
	}
	out := b.String()
	if o.Out != "" {
		if err := os.WriteFile(o.Out, []byte(out), 0o644); err != nil {
			return err
		}
	}
	fmt.Print(out)
	if len(lines) > 0 {
		fmt.Printf("\n%s\n", strings.Join(lines, "\n"))
	}
	return nil
}

// row is a table row of r: its name, then each metric's spread.
func row(b *strings.Builder, r *result, ms ...metric) {
	b.WriteString("| " + r.name + " ")
	for _, m := range ms {
		b.WriteString("| " + cell(r, m) + " ")
	}
	b.WriteString("|\n")
}

func cell(r *result, m metric) string {
	s, ok := over(r, m)
	if !ok {
		return "-"
	}
	return s.show(m.format)
}

// stateSplit tells command choice from sidecar overhead at p90: the store
// in the harness over plain GET/SET, and the sidecar over the store.
func stateSplit(by map[string]*result) string {
	var b strings.Builder
	for _, op := range []string{"get", "save"} {
		direct, store, side := by["state-"+op+"-direct"], by["state-"+op+"-store"], by["state-"+op+"-sidecar"]
		if direct == nil || store == nil || side == nil {
			continue
		}
		sideOverStore := metric{format: fmtUS, of: func(_ *result, i int) (float64, bool) {
			return micros(side.Rounds[i].Fixed.quantile(.9) - store.Rounds[i].Fixed.quantile(.9)), true
		}}
		c, _ := over(store, added(.9))
		s, _ := over(side, sideOverStore)
		fmt.Fprintf(&b, "- State %s at p90, told apart: the store's commands over plain go-redis %s (command choice), the sidecar over those same commands %s (sidecar overhead).\n",
			op, c.show(fmtUS), s.show(fmtUS))
	}
	return b.String()
}

func pathBase(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s", runtime.NumCPU(), model, strings.TrimSpace(string(kernel)), runtime.Version())
}

// chart draws each path's latency against percentile, on a scale that
// spreads the tail (x = 1/(1-q)), as HdrHistogram plots do.
func chart(file string, results []*result) error {
	p := plot.New()
	p.Title.Text = "Latency by percentile"
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (ms)"
	p.X.Scale = plot.LogScale{}
	p.Y.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 2, Label: "50%"}, {Value: 10, Label: "90%"}, {Value: 100, Label: "99%"}, {Value: 1000, Label: "99.9%"}})
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	palette := []color.Color{
		color.RGBA{0x1f, 0x77, 0xb4, 255}, color.RGBA{0xff, 0x7f, 0x0e, 255}, color.RGBA{0x2c, 0xa0, 0x2c, 255},
		color.RGBA{0xd6, 0x27, 0x28, 255}, color.RGBA{0x94, 0x67, 0xbd, 255}, color.RGBA{0x8c, 0x56, 0x4b, 255},
		color.RGBA{0xe3, 0x77, 0xc2, 255}, color.RGBA{0x7f, 0x7f, 0x7f, 255}, color.RGBA{0xbc, 0xbd, 0x22, 255},
		color.RGBA{0x17, 0xbe, 0xcf, 255},
	}
	for i, r := range results {
		pooled := &stats{}
		for _, s := range r.Rounds {
			pooled.Latencies = append(pooled.Latencies, s.Fixed.Latencies...)
		}
		slices.Sort(pooled.Latencies)
		var pts plotter.XYs
		for q := 0.5; q < 0.9991; {
			lat := pooled.quantile(q)
			if lat > 0 {
				pts = append(pts, plotter.XY{X: 1 / (1 - q), Y: float64(lat) / float64(time.Millisecond)})
			}
			q += (1 - q) / 20
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = palette[i%len(palette)]
		l.Width = vg.Points(1.5)
		switch {
		case r.baseline:
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		case i >= len(palette):
			l.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
		}
		p.Add(l)
		p.Legend.Add(r.name, l)
	}
	p.Legend.ThumbnailWidth = vg.Points(20)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	return p.Save(9*vg.Inch, 5.5*vg.Inch, file)
}
