package main

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// pubsubTitle is the heading of the pub/sub profile's section.
const pubsubTitle = "## Pub/sub: publish to handler through Redis Streams"

// psOf is f's spread over the rounds ss.
func psOf(ss []*psSample, f func(*psSample) float64) spread {
	vs := make([]float64, len(ss))
	for i, s := range ss {
		vs[i] = f(s)
	}
	return spreadOf(vs)
}

func psLatency(q float64) func(*psSample) float64 {
	return func(s *psSample) float64 { return micros(s.Deliver.quantile(q)) }
}

// per1000 is CPU seconds per 1,000 events received at the fixed rate.
func per1000(cpu func(*psSample) time.Duration) func(*psSample) float64 {
	return func(s *psSample) float64 {
		if s.Deliver.Requests == 0 {
			return 0
		}
		return cpu(s).Seconds() * 1000 / float64(s.Deliver.Requests)
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func pubsubReport(o options, ways []*psWay, slow []slowSample, prof profile) string {
	var b strings.Builder
	b.WriteString(pubsubTitle + "\n\n")
	cmd := fmt.Sprintf("go run ./bench -pubsub bench/RESULTS.md -rounds %d -rate %d -duration %s -warmup %s -max-duration %s", o.Rounds, o.Rate, o.Duration, o.Warmup, o.MaxFor)
	if o.Profile != "" {
		cmd += " -profile " + o.Profile
	}
	fmt.Fprintf(&b, "`%s` on %s, %s. "+
		"%d interleaved rounds; in each, every way in the order below, its processes and topic afresh: events of %d B (JSON carrying their send time) published at %d a second over %d connections for %s after %s of warm-up, then for %s as fast as the connections go. "+
		"Latency is from just before the publish call to the subscribing app's handler (in the harness, one clock), over every event of the fixed rate; each figure is the median of the rounds with their range. Redis is one `redis-server` the harness started.\n\n",
		cmd, machine(), time.Now().UTC().Format("2006-01-02"),
		o.Rounds, o.Size, o.Rate, o.Conns, o.Duration, o.Warmup, o.MaxFor)
	for _, w := range ways {
		fmt.Fprintf(&b, "- `%s`: %s.\n", w.name, w.about)
		if len(w.rounds) == 0 {
			return b.String() + "\nNo rounds ran.\n"
		}
	}
	b.WriteString("\n| way | p50 | p90 | p99 | p99.9 | publish call p90 | events lost | max events/s |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, w := range ways {
		lost := 0
		for _, s := range w.rounds {
			lost += s.Lost
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %d | %s |\n", w.name,
			psOf(w.rounds, psLatency(.5)).show(fmtUS), psOf(w.rounds, psLatency(.9)).show(fmtUS), psOf(w.rounds, psLatency(.99)).show(fmtUS), psOf(w.rounds, psLatency(.999)).show(fmtUS),
			psOf(w.rounds, func(s *psSample) float64 { return micros(s.Publish.quantile(.9)) }).show(fmtUS), lost,
			psOf(w.rounds, func(s *psSample) float64 { return s.MaxRate }).show(fmtEvents))
	}
	b.WriteString("\n| way | CPU s / 1000 events: publisher | subscriber | both | Redis | subscriber peak RSS |\n|---|---:|---:|---:|---:|---:|\n")
	for _, w := range ways {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", w.name,
			psOf(w.rounds, per1000(func(s *psSample) time.Duration { return s.PubCPU })).show(fmtCPU),
			psOf(w.rounds, per1000(func(s *psSample) time.Duration { return s.SubCPU })).show(fmtCPU),
			psOf(w.rounds, per1000(func(s *psSample) time.Duration { return s.PubCPU + s.SubCPU })).show(fmtCPU),
			psOf(w.rounds, per1000(func(s *psSample) time.Duration { return s.RedisCPU })).show(fmtCPU),
			psOf(w.rounds, func(s *psSample) float64 { return mib(s.PeakRSS) }).show(fmtMiB))
	}
	b.WriteString("\nRedis commands per event at the fixed rate (INFO commandstats, every round's calls over every round's events):\n\n")
	for _, w := range ways {
		fmt.Fprintf(&b, "- %s: %s\n", w.name, commandsPerEvent(w.rounds))
	}
	side := ways[0].rounds
	b.WriteString("\n")
	for _, f := range ways[1:] {
		ratio := func(m func(*psSample) float64) float64 { return psOf(side, m).med / psOf(f.rounds, m).med }
		p90 := ratio(psLatency(.9))
		met := "met"
		if p90 > 1.3 {
			met = "not met"
		}
		fmt.Fprintf(&b, "- %s over %s (ratios of medians): p90 **%.2fx** (target at most 1.3x: %s), p50 %.2fx, p99 %.2fx; maximum throughput %.2fx; CPU per event %.2fx (publisher %.2fx, subscriber %.2fx); Redis's CPU per event %.2fx.\n",
			ways[0].name, f.name, p90, met, ratio(psLatency(.5)), ratio(psLatency(.99)), ratio(func(s *psSample) float64 { return s.MaxRate }),
			ratio(per1000(func(s *psSample) time.Duration { return s.PubCPU + s.SubCPU })),
			ratio(per1000(func(s *psSample) time.Duration { return s.PubCPU })), ratio(per1000(func(s *psSample) time.Duration { return s.SubCPU })),
			ratio(per1000(func(s *psSample) time.Duration { return s.RedisCPU })))
	}
	if len(slow) > 0 {
		s0 := slow[0]
		fmt.Fprintf(&b, "\n### A subscriber ten times slower than its publisher\n\nThrough the sidecars: %d events a second published for %s to a subscriber whose handler takes %s an event, 10 at once (concurrency's default): %.0f a second. "+
			"The subscriber sidecar's RSS (`/proc`, sampled every 100 ms) after its first event, at each quarter of the run and its peak (VmHWM); then, in Redis, the group's pending entries (read by the sidecar, not acknowledged) and its lag (in the stream, not yet read): where the backlog is.\n\n",
			s0.Rate, o.Duration, s0.Delay, float64(10*time.Second)/float64(s0.Delay))
		b.WriteString("| queueDepth | published | handled | RSS idle | at 1/4 | 1/2 | 3/4 | end | peak | pending in Redis | lag in Redis |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, s := range slow {
			qd := itoa(s.QueueDepth)
			if s.QueueDepth == 0 {
				qd = "100 (default)"
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %.1f MiB ", qd, s.Published, s.Received, mib(s.IdleRSS))
			for i := range 4 {
				if i < len(s.RSS) {
					fmt.Fprintf(&b, "| %.1f ", mib(s.RSS[i]))
				} else {
					b.WriteString("| - ")
				}
			}
			fmt.Fprintf(&b, "| %.1f MiB | %d | %d |\n", mib(s.PeakRSS), s.Pending, s.Lag)
		}
	}
	if prof.path != "" {
		b.WriteString(strings.NewReplacer("## Where the time goes", "### Where the subscriber sidecar's time goes", "'s first sidecar", "'s subscriber sidecar").Replace(whereTimeGoes(prof)))
	}
	return b.String()
}

func fmtEvents(v float64) string { return fmt.Sprintf("%.0f /s", v) }

// writeSection puts section into file in place of the one under title (up
// to the next heading of its level), or at the end when there is none; the
// rest of the file stays as it is. A missing file is created.
func writeSection(file, title, section string) error {
	old, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(file, []byte(replaceSection(string(old), title, section)), 0o644)
}

func replaceSection(doc, title, section string) string {
	section = strings.TrimRight(section, "\n") + "\n"
	start := -1
	if strings.HasPrefix(doc, title+"\n") {
		start = 0
	} else if i := strings.Index(doc, "\n"+title+"\n"); i >= 0 {
		start = i + 1
	}
	if start < 0 {
		if doc != "" {
			doc = strings.TrimRight(doc, "\n") + "\n\n"
		}
		return doc + section
	}
	rest := doc[start+len(title)+1:]
	end := len(doc)
	if i := strings.Index(rest, "\n## "); i >= 0 {
		end = start + len(title) + 1 + i + 1
		section += "\n"
	}
	return doc[:start] + section + doc[end:]
}

// commandsPerEvent is "XADD 1.00, XREADGROUP 2.01, ..." over the rounds ss,
// the most called first.
func commandsPerEvent(ss []*psSample) string {
	calls := map[string]int64{}
	events := 0
	for _, s := range ss {
		for c, n := range s.Commands {
			calls[c] += n
		}
		events += s.Deliver.Requests
	}
	if events == 0 || len(calls) == 0 {
		return "none counted"
	}
	names := slices.Collect(maps.Keys(calls))
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(calls[b], calls[a]), cmp.Compare(a, b)) })
	parts := make([]string, len(names))
	for i, c := range names {
		parts[i] = fmt.Sprintf("%s %.2f", c, float64(calls[c])/float64(events))
	}
	return strings.Join(parts, ", ")
}
