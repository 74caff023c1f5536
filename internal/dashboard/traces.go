package dashboard

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"time"

	"github.com/tandem-run/tandem/pkg/resolver"
)

// maxTraceList bounds the traces a list shows.
const maxTraceList = 50

// TraceQuery is what GET /api/traces filters on.
type TraceQuery struct {
	App         string        // the app whose spans the trace holds (required)
	Errors      bool          // only traces with a failed span
	MinDuration time.Duration // only traces with a span at least this long
	Window      time.Duration
}

// ParseTraceQuery reads app, status (any or error), minDuration and window.
func ParseTraceQuery(q url.Values) (TraceQuery, error) {
	tq := TraceQuery{App: q.Get("app")}
	if err := resolver.ValidateID(tq.App); err != nil {
		return tq, fmt.Errorf("app: %v", err)
	}
	switch q.Get("status") {
	case "", "any":
	case "error":
		tq.Errors = true
	default:
		return tq, fmt.Errorf("status %q: want any or error", q.Get("status"))
	}
	if s := q.Get("minDuration"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > time.Hour {
			return tq, fmt.Errorf("minDuration %q: want a duration from 0 to 1h, such as 10ms", s)
		}
		tq.MinDuration = d
	}
	w, err := ParseWindow(q.Get("window"))
	tq.Window = w
	return tq, err
}

// TraceSummary is a trace of the list.
type TraceSummary struct {
	TraceID    string    `json:"traceId"`
	Root       string    `json:"root"`  // the earliest span's service and name
	Start      time.Time `json:"start"` // the earliest span's start
	DurationMs float64   `json:"durationMs"`
	Spans      int       `json:"spans"`
	Errors     int       `json:"errors"` // failed spans
	Services   []string  `json:"services"`
}

// TraceSpan is a span of a trace's waterfall.
type TraceSpan struct {
	SpanID     string  `json:"spanId"`
	ParentID   string  `json:"parentId,omitempty"`
	Service    string  `json:"service"`
	Operation  string  `json:"operation"`
	Kind       string  `json:"kind,omitempty"`
	OffsetMs   float64 `json:"offsetMs"` // from the trace's start
	DurationMs float64 `json:"durationMs"`
	Error      bool    `json:"error"`
	Tags       []Tag   `json:"tags"`
}

// Tag is a span's attribute, as text.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// jaegerTrace is a trace as Jaeger's query API returns it.
type jaegerTrace struct {
	TraceID string       `json:"traceID"`
	Spans   []jaegerSpan `json:"spans"`
	// Processes name each span's service.
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// Traces lists the latest traces of q.App in the window, newest first.
func (d *Dashboard) Traces(ctx context.Context, q TraceQuery) ([]TraceSummary, error) {
	if d.storeBase() == "" {
		return nil, errNoTraceStore
	}
	end := time.Now()
	traces, err := d.findTraces(ctx, traceFilter{service: q.App, start: end.Add(-q.Window), end: end, limit: maxTraceList,
		errors: q.Errors, minDuration: q.MinDuration})
	if err != nil {
		return nil, err
	}
	out := []TraceSummary{}
	for _, tr := range fullest(traces) {
		if len(tr.Spans) == 0 {
			continue
		}
		out = append(out, summarize(tr))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	return out, nil
}

// fullest keeps one copy of each trace, the one with the most spans: a
// store may answer a trace more than once, in parts, while its spans are
// still arriving.
func fullest(traces []jaegerTrace) []jaegerTrace {
	at := make(map[string]int, len(traces))
	out := traces[:0:0]
	for _, tr := range traces {
		if i, ok := at[tr.TraceID]; ok {
			if len(tr.Spans) > len(out[i].Spans) {
				out[i] = tr
			}
			continue
		}
		at[tr.TraceID] = len(out)
		out = append(out, tr)
	}
	return out
}

func summarize(tr jaegerTrace) TraceSummary {
	s := TraceSummary{TraceID: tr.TraceID, Spans: len(tr.Spans)}
	first, last := tr.Spans[0], int64(0)
	seen := map[string]bool{}
	for _, sp := range tr.Spans {
		if sp.StartTime < first.StartTime {
			first = sp
		}
		last = max(last, sp.StartTime+sp.Duration)
		if sp.failed() {
			s.Errors++
		}
		if svc := tr.Processes[sp.ProcessID].ServiceName; !seen[svc] {
			seen[svc] = true
			s.Services = append(s.Services, svc)
		}
	}
	sort.Strings(s.Services)
	s.Root = tr.Processes[first.ProcessID].ServiceName + " " + first.Operation
	s.Start = time.UnixMicro(first.StartTime).UTC()
	s.DurationMs = float64(last-first.StartTime) / 1000
	return s
}

// traceID is a trace id as Jaeger takes it: 16 or 32 hex digits.
var traceID = regexp.MustCompile(`^([0-9a-f]{16}|[0-9a-f]{32})$`)

// Trace returns the spans of trace id in start order, for its waterfall.
func (d *Dashboard) Trace(ctx context.Context, id string) ([]TraceSpan, error) {
	if d.storeBase() == "" {
		return nil, errNoTraceStore
	}
	traces, err := d.readTrace(ctx, id)
	if err != nil {
		return nil, err
	}
	out := []TraceSpan{}
	var start int64
	for _, tr := range traces {
		for _, sp := range tr.Spans {
			if start == 0 || sp.StartTime < start {
				start = sp.StartTime
			}
		}
	}
	for _, tr := range traces {
		for _, sp := range tr.Spans {
			ts := TraceSpan{SpanID: sp.SpanID, ParentID: sp.parent(), Service: tr.Processes[sp.ProcessID].ServiceName,
				Operation: sp.Operation, OffsetMs: float64(sp.StartTime-start) / 1000, DurationMs: float64(sp.Duration) / 1000,
				Error: sp.failed(), Tags: []Tag{}}
			ts.Kind, _ = sp.tag("span.kind")
			for _, t := range sp.Tags {
				ts.Tags = append(ts.Tags, Tag{t.Key, fmt.Sprint(t.Value)})
			}
			out = append(out, ts)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].OffsetMs < out[j].OffsetMs })
	return out, nil
}
