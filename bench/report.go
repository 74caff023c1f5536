package main

import (
	"fmt"
	"image/color"
	"os"
	"runtime"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

var quantiles = []float64{.5, .9, .99, .999}

func report(o options, results []*result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmark results\n\n")
	fmt.Fprintf(&b, "`go run ./bench` on %s, %s. %d req/s, %d connections, %d B each way, %s measured after %s of warm-up per path; maximum throughput over %s with the same connections. Everything on loopback; the apps are in the harness's process, the sidecars, floor proxies and Redis are processes of their own.\n\n",
		machine(), time.Now().UTC().Format("2006-01-02"), o.Rate, o.Conns, o.Size, o.Duration, o.Warmup, o.MaxFor)
	b.WriteString("| path | p50 | p90 | p99 | p99.9 | added p90 | achieved req/s | errors | CPU s / 1000 req | peak RSS | max req/s |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	base := map[string]*result{}
	for _, r := range results {
		if r.Baseline {
			base[r.Group] = r
		}
	}
	for _, r := range results {
		added := "baseline"
		if bl := base[r.Group]; bl != nil && !r.Baseline {
			added = us(r.Fixed.quantile(.9) - bl.Fixed.quantile(.9))
		}
		cpu, rss := "-", "-"
		if r.Procs > 0 {
			cpu = fmt.Sprintf("%.3f", r.CPU.Seconds()*1000/float64(max(r.Fixed.Requests, 1)))
			rss = fmt.Sprintf("%.1f MiB", float64(r.RSS)/(1<<20))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %.0f | %d | %s | %s | %.0f |\n",
			r.Name, us(r.Fixed.quantile(.5)), us(r.Fixed.quantile(.9)), us(r.Fixed.quantile(.99)), us(r.Fixed.quantile(.999)),
			added, r.Fixed.rate(), r.Fixed.Errors+r.Max.Errors, cpu, rss, r.Max.rate())
	}
	b.WriteString("\nCPU and RSS are of the path's own processes: both sidecars (or both floor proxies, or the one state sidecar); RSS is the largest one's peak.\n")
	for _, r := range results {
		if r.Fixed.FirstErr != "" || r.Max.FirstErr != "" {
			fmt.Fprintf(&b, "\nFirst error of %s: `%s`\n", r.Name, strings.TrimSpace(r.Fixed.FirstErr+" "+r.Max.FirstErr))
		}
	}

	get := func(name string) *result {
		for _, r := range results {
			if r.Name == name {
				return r
			}
		}
		return nil
	}
	b.WriteString("\n## Against the targets\n\n")
	ratio := ""
	if d, f, s := get("http-direct"), get("http-floor"), get("http-sidecars"); d != nil && f != nil && s != nil {
		ours := s.Fixed.quantile(.9) - d.Fixed.quantile(.9)
		floor := f.Fixed.quantile(.9) - d.Fixed.quantile(.9)
		ratio = fmt.Sprintf("our added p90 / floor added p90 = %s / %s = %.2f", us(ours), us(floor), float64(ours)/float64(max(floor, 1)))
		fmt.Fprintf(&b, "- Added p90 over HTTP, target at most 1.5x the floor: %s.\n", ratio)
		fmt.Fprintf(&b, "- Sidecar peak RSS at %d req/s, target under 30 MiB: %.1f MiB.\n", o.Rate, float64(s.RSS)/(1<<20))
	}
	errs := 0
	for _, r := range results {
		errs += r.Fixed.Errors + r.Max.Errors
	}
	fmt.Fprintf(&b, "- Errors, target zero: %d.\n", errs)
	if d, s := get("state-get-direct"), get("state-get-sidecar"); d != nil && s != nil {
		fmt.Fprintf(&b, "- State get through the sidecar over direct go-redis at p90, target under 150 µs: %s.\n", us(s.Fixed.quantile(.9)-d.Fixed.quantile(.9)))
	}
	b.WriteString("- How long the largest state transaction holds Redis: [TRANSACTIONS.md](TRANSACTIONS.md) (`go run ./bench -transactions bench/TRANSACTIONS.md`).\n")
	if o.PNG != "" {
		if err := chart(o.PNG, results); err != nil {
			return err
		}
		fmt.Fprintf(&b, "\n![latency distributions](%s)\n", pathBase(o.PNG))
	}
	out := b.String()
	if o.Out != "" {
		if err := os.WriteFile(o.Out, []byte(out), 0o644); err != nil {
			return err
		}
	}
	fmt.Print(out)
	if ratio != "" {
		fmt.Printf("\n%s\n", ratio)
	}
	return nil
}

func us(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
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
		var pts plotter.XYs
		for q := 0.5; q < 0.9991; {
			lat := r.Fixed.quantile(q)
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
		if r.Baseline {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(r.Name, l)
	}
	p.Legend.ThumbnailWidth = vg.Points(20)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	return p.Save(9*vg.Inch, 5.5*vg.Inch, file)
}
