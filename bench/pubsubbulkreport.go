package main

import (
	"fmt"
	"strings"
	"time"
)

// pubsubBulkTitle is the heading of the bulk pub/sub profile's section.
const pubsubBulkTitle = "## Pub/sub: bulk publish and bulk delivery against single events"

// spreadOver is f's spread over n rounds.
func spreadOver(n int, f func(i int) float64) spread {
	vs := make([]float64, n)
	for i := range vs {
		vs[i] = f(i)
	}
	return spreadOf(vs)
}

// cpuPerKEvents is CPU seconds per 1,000 events.
func cpuPerKEvents(cpu time.Duration, events int) float64 {
	if events == 0 {
		return 0
	}
	return cpu.Seconds() * 1000 / float64(events)
}

func eventRate(events int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(events) / d.Seconds()
}

// column is a figure of a round's sample S in a table: its name, its
// value in a round, and how it shows.
type column[S any] struct {
	name string
	of   func(S) float64
	show func(float64) string
}

// medianTable writes the table of ways (rows: rounds[w] are way w's,
// name(w) its name) by cols, each cell the median of the way's rounds with
// their range; med(w, c) is way w's median of column c.
func medianTable[S any](b *strings.Builder, cols []column[S], rounds [][]S, name func(w int) string) (med func(w, c int) float64) {
	cell := func(w, c int) spread {
		return spreadOver(len(rounds[w]), func(r int) float64 { return cols[c].of(rounds[w][r]) })
	}
	b.WriteString("\n| way |")
	for _, c := range cols {
		b.WriteString(" " + c.name + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(cols)) + "\n")
	for w := range rounds {
		fmt.Fprintf(b, "| %s |", name(w))
		for c, col := range cols {
			b.WriteString(" " + cell(w, c).show(col.show) + " |")
		}
		b.WriteString("\n")
	}
	return func(w, c int) float64 { return cell(w, c).med }
}

func fmtMS(v float64) string { return fmt.Sprintf("%.1f ms", v) }

// bulkPubMetrics are the publish table's columns: name and value of a
// round.
var bulkPubMetrics = []column[*bulkPubSample]{
	{"100 events p50", func(s *bulkPubSample) float64 { return float64(s.PerBatch.quantile(.5)) / float64(time.Millisecond) }, fmtMS},
	{"p90", func(s *bulkPubSample) float64 { return float64(s.PerBatch.quantile(.9)) / float64(time.Millisecond) }, fmtMS},
	{"events/s", func(s *bulkPubSample) float64 { return eventRate(s.Events, s.Elapsed) }, fmtEvents},
	{"publisher CPU s / 1000 events", func(s *bulkPubSample) float64 { return cpuPerKEvents(s.CPU, s.Events) }, fmtCPU},
}

var bulkSubMetrics = []column[*bulkSubSample]{
	{"events/s delivered and acknowledged", func(s *bulkSubSample) float64 { return eventRate(s.Events, s.Elapsed) }, fmtEvents},
	{"subscriber CPU s / 1000 events", func(s *bulkSubSample) float64 { return cpuPerKEvents(s.CPU, s.Events) }, fmtCPU},
	{"events per request", func(s *bulkSubSample) float64 { return float64(s.Events) / float64(max(1, s.Requests)) }, fmtPerRequest},
}

func fmtPerRequest(v float64) string { return fmt.Sprintf("%.1f", v) }

func pubsubBulkReport(o options, pubs []*bulkPubWay, subs []*bulkSubWay) string {
	var b strings.Builder
	b.WriteString(pubsubBulkTitle + "\n\n")
	cmd := fmt.Sprintf("go run ./bench -pubsub-bulk bench/RESULTS.md -rounds %d -backlog %d -size %d -conns %d", o.Rounds, o.Backlog, o.Size, o.Conns)
	fmt.Fprintf(&b, "`%s` on %s, %s. "+
		"%d interleaved rounds; in each, every way in the order below, its sidecar and topic afresh, on `pubsub.redis` with one `redis-server` the harness started. Events are %d B of JSON. "+
		"Each figure is the median of the rounds with their range; the ratios are of medians. "+
		"The machine is shared with other work: the numbers are noisy (see the ranges), and the ratios are rough.\n\n",
		cmd, machine(), time.Now().UTC().Format("2006-01-02"), o.Rounds, o.Size)

	batches := (o.Backlog + bulkBatch - 1) / bulkBatch
	fmt.Fprintf(&b, "### Publish\n\nThrough a publisher sidecar (no app) into Redis: %d times 100 events, one 100 after another (after 100 of warm-up); the time of each 100 from the first call to the last answer (204: Redis holds them), events a second over the run, and the sidecar's CPU.\n\n", batches)
	for _, w := range pubs {
		fmt.Fprintf(&b, "- `%s`: %s.\n", w.name, w.about)
		if len(w.rounds) == 0 {
			return b.String() + "\nNo rounds ran.\n"
		}
	}
	pubRounds := make([][]*bulkPubSample, len(pubs))
	for i, w := range pubs {
		pubRounds[i] = w.rounds
	}
	pubMed := medianTable(&b, bulkPubMetrics, pubRounds, func(i int) string { return pubs[i].name })
	if len(pubs) == 2 {
		r := func(i int) float64 { return pubMed(0, i) / pubMed(1, i) }
		fmt.Fprintf(&b, "\n%s over %s: time per 100 events p50 **%.2fx**, p90 %.2fx; events/s **%.2fx**; publisher CPU per event **%.2fx**.\n",
			pubs[0].name, pubs[1].name, r(0), r(1), r(2), r(3))
	}

	fmt.Fprintf(&b, "\n### Delivery\n\nA backlog of %d events in the stream (published in bulk by a sidecar of its own beforehand), then a subscriber sidecar started with the app subscribed to it: events a second from the app's first request to when Redis holds none of them pending or unread for the group (`XPENDING`, `XINFO GROUPS` lag, polled every 2 ms), not counting the first request's events; the subscriber sidecar's CPU over the same time.\n\n", o.Backlog)
	for _, w := range subs {
		fmt.Fprintf(&b, "- `%s`: %s.\n", w.name, w.about)
		if len(w.rounds) == 0 {
			return b.String() + "\nNo rounds ran.\n"
		}
	}
	subRounds := make([][]*bulkSubSample, len(subs))
	for i, w := range subs {
		subRounds[i] = w.rounds
	}
	subMed := medianTable(&b, bulkSubMetrics, subRounds, func(i int) string { return subs[i].name })
	b.WriteString("\n")
	for i, w := range subs[1:] {
		if w.bulk {
			continue
		}
		fmt.Fprintf(&b, "- %s over %s (ratios of medians): events/s **%.2fx**; subscriber CPU per event **%.2fx**.\n",
			subs[0].name, w.name, subMed(0, 0)/subMed(i+1, 0), subMed(0, 1)/subMed(i+1, 1))
	}
	for i, w := range subs[1:] {
		if !w.bulk {
			continue
		}
		for j, s := range subs[1:] {
			if !s.bulk {
				fmt.Fprintf(&b, "- %s over %s: events/s %.2fx; subscriber CPU per event %.2fx.\n",
					w.name, s.name, subMed(i+1, 0)/subMed(j+1, 0), subMed(i+1, 1)/subMed(j+1, 1))
			}
		}
	}
	return b.String()
}
