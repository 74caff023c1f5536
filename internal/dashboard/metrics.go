package dashboard

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The metric families the map reads of a sidecar's metrics
// (internal/telemetry, internal/subscribe).
const (
	mInvoke       = "tandem_invoke_requests_total"
	mInvokeTime   = "tandem_invoke_request_duration_seconds"
	mPublished    = "tandem_pubsub_published_total"
	mPublishTime  = "tandem_pubsub_publish_duration_seconds"
	mDelivered    = "tandem_pubsub_delivered_total"
	mDeliveryTime = "tandem_pubsub_delivery_duration_seconds"
	maxSeries     = 20000
)

// maxMetricsBytes bounds what is read of one sidecar's metrics (a variable
// for tests).
var maxMetricsBytes int64 = 8 << 20

// The kinds of a map edge.
const (
	EdgeInvoke  = "invoke"  // a sidecar's calls to a peer sidecar: caller → callee
	EdgePublish = "publish" // an app's publishes: app → <pubsub>/<topic>
	EdgeDeliver = "deliver" // a topic's deliveries to an app: <pubsub>/<topic> → app
)

// seriesKey names one series of a scrape the map reads: a counter's, or
// one bucket of a histogram (le; +Inf holds the count).
type seriesKey struct {
	name                  string
	target, pubsub, topic string
	status                string // status, or outcome
	le                    float64
}

// sample is one scrape of one sidecar.
type sample struct {
	at time.Time
	v  map[seriesKey]float64
}

// parseMetrics reads the series the map needs from a Prometheus text
// exposition (what a sidecar's metrics port answers).
func parseMetrics(r io.Reader, at time.Time) (sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return sample{}, fmt.Errorf("reading the metrics: %w", err)
	}
	s := sample{at: at, v: map[seriesKey]float64{}}
	for _, name := range []string{mInvoke, mInvokeTime, mPublished, mPublishTime, mDelivered, mDeliveryTime} {
		f := fams[name]
		if f == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			k := seriesKey{name: name}
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "target":
					k.target = l.GetValue()
				case "pubsub":
					k.pubsub = l.GetValue()
				case "topic":
					k.topic = l.GetValue()
				case "status", "outcome":
					k.status = l.GetValue()
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s.v[k] = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					bk := k
					bk.le = b.GetUpperBound()
					s.v[bk] = float64(b.GetCumulativeCount())
				}
				k.le = math.Inf(1)
				s.v[k] = float64(h.GetSampleCount())
			}
			if len(s.v) > maxSeries {
				return sample{}, fmt.Errorf("reading the metrics: more than %d series of the service map's metrics", maxSeries)
			}
		}
	}
	return s, nil
}

// delta is what the counters of s grew by since base: a series missing
// from base started at zero, one lower than in base was reset and counts
// from zero (as Prometheus' rate does).
func delta(base, s sample) map[seriesKey]float64 {
	out := make(map[seriesKey]float64, len(s.v))
	for k, v := range s.v {
		d := v - base.v[k]
		if d < 0 {
			d = v
		}
		out[k] = d
	}
	return out
}

// flow sums one edge's series over the sidecars that report it.
type flow struct {
	calls, errors, perSecond float64
	buckets                  map[float64]float64 // le → cumulative count
	seconds                  float64             // the longest span of time counted
}

type flowKey struct{ kind, caller, callee, pubsub, topic string }

// addDelta adds one sidecar's (app's) growth over seconds to flows.
func addDelta(flows map[flowKey]*flow, app string, d map[seriesKey]float64, seconds float64) {
	get := func(k flowKey) *flow {
		f := flows[k]
		if f == nil {
			f = &flow{buckets: map[float64]float64{}}
			flows[k] = f
		}
		f.seconds = max(f.seconds, seconds)
		return f
	}
	for k, v := range d {
		var fk flowKey
		topicNode := k.pubsub + "/" + k.topic
		switch k.name {
		case mInvoke, mInvokeTime:
			fk = flowKey{kind: EdgeInvoke, caller: app, callee: k.target}
		case mPublished, mPublishTime:
			fk = flowKey{kind: EdgePublish, caller: app, callee: topicNode, pubsub: k.pubsub, topic: k.topic}
		case mDelivered, mDeliveryTime:
			fk = flowKey{kind: EdgeDeliver, caller: topicNode, callee: app, pubsub: k.pubsub, topic: k.topic}
		}
		f := get(fk)
		switch k.name {
		case mInvoke, mPublished, mDelivered:
			f.calls += v
			f.perSecond += v / seconds
			if failed(k.name, k.status) {
				f.errors += v
			}
		default:
			f.buckets[k.le] += v
		}
	}
}

// failed reports whether a call counted under status is an error: a hop
// answered 5xx or failed (its status is the failure's kind), a publish
// or a delivery that did not succeed.
func failed(name, status string) bool {
	if name != mInvoke {
		return status != "success"
	}
	n, err := strconv.Atoi(status)
	return err != nil || n >= 500
}

// edges turns flows into the map's edges, sorted by kind, caller and
// callee; an edge with no call in the window is left out.
func edges(flows map[flowKey]*flow) []Edge {
	out := []Edge{}
	for k, f := range flows {
		if f.calls <= 0 {
			continue
		}
		e := Edge{Kind: k.kind, Caller: k.caller, Callee: k.callee, Pubsub: k.pubsub, Topic: k.topic,
			Calls: int(math.Round(f.calls)), Errors: int(math.Round(f.errors)),
			PerSecond: round(f.perSecond, 1e4), ErrorRate: round(f.errors/f.calls, 1e4),
			P50Ms:   round(histogramQuantile(0.5, f.buckets)*1000, 1e3),
			P99Ms:   round(histogramQuantile(0.99, f.buckets)*1000, 1e3),
			Seconds: round(f.seconds, 1e3)}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Caller < b.Caller || a.Caller == b.Caller && a.Callee < b.Callee
	})
	return out
}

func round(v, scale float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return math.Round(v*scale) / scale
}

// histogramQuantile is the q-quantile of a histogram given as cumulative
// counts by upper bound (+Inf holding the total), as Prometheus'
// histogram_quantile estimates it: linear within the bucket the rank falls
// in, the highest finite bound when it falls in +Inf. 0 when empty.
func histogramQuantile(q float64, buckets map[float64]float64) float64 {
	les := make([]float64, 0, len(buckets))
	for le := range buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) == 0 || !math.IsInf(les[len(les)-1], 1) {
		return 0
	}
	total := buckets[les[len(les)-1]]
	if total <= 0 {
		return 0
	}
	rank := q * total
	for i, le := range les {
		cum := buckets[le]
		if cum < rank {
			continue
		}
		if math.IsInf(le, 1) {
			if i == 0 {
				return 0
			}
			return les[i-1]
		}
		lower, prev := 0.0, 0.0
		if i > 0 {
			lower, prev = les[i-1], buckets[les[i-1]]
		}
		if le <= 0 || cum == prev {
			return le
		}
		return lower + (le-lower)*(rank-prev)/(cum-prev)
	}
	return les[len(les)-1]
}
