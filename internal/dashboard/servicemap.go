package dashboard

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// The service map's window: what GET /api/map?window= accepts.
const (
	DefaultWindow = 5 * time.Minute
	MaxWindow     = 24 * time.Hour
	minWindow     = 10 * time.Second
)

// tracesPerService bounds the traces read of each service in a window;
// maxServices bounds the services read.
const (
	tracesPerService = 1000
	maxServices      = 200
	maxTraceBytes    = 64 << 20
)

// Map is what GET /api/map answers: one edge per caller→callee of the
// window, from the sidecars' metrics (MetricsMap), or from the spans in the
// trace store (ServiceMap, ?source=traces).
type Map struct {
	Source string    `json:"source"` // "metrics", or the trace store's query API as configured
	Window string    `json:"window"`
	At     time.Time `json:"at"`
	Edges  []Edge    `json:"edges"`
	Spans  int       `json:"spans,omitempty"`  // the spans read
	Capped bool      `json:"capped,omitempty"` // a service had more traces than were read
	// Sidecars is the number of sidecars whose metrics were read; Unread
	// those that could not be, with why.
	Sidecars int           `json:"sidecars,omitempty"`
	Unread   []Unread      `json:"unread,omitempty"`
	window   time.Duration // parsed
}

// Unread is a sidecar whose metrics the map could not read.
type Unread struct {
	AppID string `json:"appId"`
	PID   int    `json:"pid"`
	Pod   string `json:"pod,omitempty"` // namespace/name, in Kubernetes mode
	Error string `json:"error"`
}

// Edge is the calls of one app to another in the window (Kind invoke), an
// app's publishes to a topic (publish: Callee is <pubsub>/<topic>) or a
// topic's deliveries to an app (deliver: Caller is <pubsub>/<topic>).
// From the sidecars' metrics it counts every call; from the caller's
// client spans, the sampled ones.
type Edge struct {
	Kind      string  `json:"kind"`
	Caller    string  `json:"caller"`
	Callee    string  `json:"callee"`
	Pubsub    string  `json:"pubsub,omitempty"`
	Topic     string  `json:"topic,omitempty"`
	Calls     int     `json:"calls"`
	Errors    int     `json:"errors"`
	PerSecond float64 `json:"perSecond"` // calls a second
	ErrorRate float64 `json:"errorRate"` // Errors / Calls
	P50Ms     float64 `json:"p50Ms"`
	P99Ms     float64 `json:"p99Ms"`
	// Seconds is the time the metrics counted cover, when less than the
	// window: a sidecar read for a shorter time than the window.
	Seconds float64 `json:"seconds,omitempty"`
}

// ParseWindow reads a window such as 30s, 5m or 1h, from 10 s to 24 h.
func ParseWindow(s string) (time.Duration, error) {
	if s == "" {
		return DefaultWindow, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < minWindow || d > MaxWindow {
		return 0, fmt.Errorf("window %q: want a duration from %s to %s, such as 5m", s, minWindow, MaxWindow)
	}
	return d, nil
}

// jaegerSpan is a span as Jaeger's query API returns it.
type jaegerSpan struct {
	TraceID   string `json:"traceID"`
	SpanID    string `json:"spanID"`
	Operation string `json:"operationName"`
	ProcessID string `json:"processID"`
	StartTime int64  `json:"startTime"` // Unix µs
	Duration  int64  `json:"duration"`  // µs
	Tags      []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	References []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
}

// parent is the span id of the span's parent, or "".
func (s jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (s jaegerSpan) tag(k string) (string, bool) {
	for _, t := range s.Tags {
		if t.Key == k {
			return fmt.Sprint(t.Value), true
		}
	}
	return "", false
}

// hop reports whether s is the caller's side of a call between two
// sidecars: a client span CallLocal/<callee>/<method> (Zipkin lower-cases
// the name), whose peer.service is the callee. The sidecar's call to its
// own app (CallApp/...) is not an edge.
func (s jaegerSpan) hop() bool {
	k, _ := s.tag("span.kind")
	return k == "client" && len(s.Operation) > len("calllocal/") && strings.EqualFold(s.Operation[:len("calllocal/")], "calllocal/")
}

// failed reports whether the span ended in error, as OpenTelemetry's
// status reaches Jaeger over Zipkin or OTLP.
func (s jaegerSpan) failed() bool {
	if v, ok := s.tag("error"); ok && v != "false" {
		return true
	}
	v, _ := s.tag("otel.status_code")
	return v == "ERROR"
}

// ServiceMap reads the spans of the window from the trace store and
// counts the hops between sidecars in them (jaegerSpan.hop).
func (d *Dashboard) ServiceMap(ctx context.Context, window time.Duration) (Map, error) {
	m := Map{Source: d.storeBase(), Window: window.String(), At: time.Now().UTC(), Edges: []Edge{}, window: window}
	if m.Source == "" {
		return m, errNoTraceStore
	}
	services, err := d.services(ctx)
	if err != nil {
		return m, err
	}
	if len(services) > maxServices {
		services, m.Capped = services[:maxServices], true
	}
	end := m.At
	start := end.Add(-window)
	type key struct{ caller, callee string }
	var (
		mu    sync.Mutex
		seen  = map[string]bool{} // trace id + span id
		durs  = map[key][]float64{}
		errs  = map[key]int{}
		first error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 4)
	)
	for _, svc := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			traces, err := d.findTraces(ctx, traceFilter{service: svc, start: start, end: end, limit: tracesPerService})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			if len(traces) >= tracesPerService {
				m.Capped = true
			}
			for _, tr := range traces {
				for _, s := range tr.Spans {
					if !s.hop() {
						continue
					}
					callee, ok := s.tag("peer.service")
					if !ok || callee == "" || seen[s.TraceID+s.SpanID] {
						continue
					}
					seen[s.TraceID+s.SpanID] = true
					m.Spans++
					e := key{tr.Processes[s.ProcessID].ServiceName, callee}
					durs[e] = append(durs[e], float64(s.Duration)/1000)
					if s.failed() {
						errs[e]++
					}
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return m, first
	}
	for k, ds := range durs {
		sort.Float64s(ds)
		e := Edge{Kind: EdgeInvoke, Caller: k.caller, Callee: k.callee, Calls: len(ds), Errors: errs[k],
			P50Ms: quantile(ds, 0.5), P99Ms: quantile(ds, 0.99)}
		e.PerSecond = float64(e.Calls) / window.Seconds()
		e.ErrorRate = float64(e.Errors) / float64(e.Calls)
		m.Edges = append(m.Edges, e)
	}
	sort.Slice(m.Edges, func(i, j int) bool {
		a, b := m.Edges[i], m.Edges[j]
		return a.Caller < b.Caller || a.Caller == b.Caller && a.Callee < b.Callee
	})
	return m, nil
}

// quantile is the q-quantile of sorted (nearest rank), rounded to µs.
func quantile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return math.Round(sorted[i]*1000) / 1000
}
