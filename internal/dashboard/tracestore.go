package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The trace stores the dashboard reads: Jaeger's query API (/api/services,
// /api/traces, /api/traces/{id}) or Zipkin's v2 API (/api/v2/services,
// /api/v2/traces, /api/v2/trace/{id}). Zipkin's spans are read into
// Jaeger's shape, so the map and the trace list are written once.

// storeBase is the configured trace store's base URL, "" for none.
func (d *Dashboard) storeBase() string {
	if d.cfg.ZipkinQuery != "" {
		return d.cfg.ZipkinQuery
	}
	return d.cfg.JaegerQuery
}

var errNoTraceStore = fmt.Errorf("no trace store: start the dashboard with --jaeger-query, the base URL of Jaeger's query API (such as http://127.0.0.1:16686), or --zipkin-query, the base URL of Zipkin's (such as http://127.0.0.1:9411)")

// services lists the services the trace store has spans of.
func (d *Dashboard) services(ctx context.Context) ([]string, error) {
	if d.cfg.ZipkinQuery != "" {
		var out []string
		err := d.storeGet(ctx, "/api/v2/services", nil, &out)
		return out, err
	}
	var body struct {
		Data []string `json:"data"`
	}
	err := d.storeGet(ctx, "/api/services", nil, &body)
	return body.Data, err
}

// traceFilter is what a search of traces asks for.
type traceFilter struct {
	service     string
	start, end  time.Time
	limit       int
	errors      bool          // only traces with a failed span
	minDuration time.Duration // only traces with a span at least this long
}

// findTraces searches the traces of f.service in f's time range.
func (d *Dashboard) findTraces(ctx context.Context, f traceFilter) ([]jaegerTrace, error) {
	if d.cfg.ZipkinQuery != "" {
		v := url.Values{
			"serviceName": {f.service},
			"endTs":       {strconv.FormatInt(f.end.UnixMilli(), 10)},
			"lookback":    {strconv.FormatInt(max(f.end.Sub(f.start).Milliseconds(), 1), 10)},
			"limit":       {strconv.Itoa(f.limit)},
		}
		if f.errors {
			v.Set("annotationQuery", "error")
		}
		if f.minDuration > 0 {
			v.Set("minDuration", strconv.FormatInt(max(f.minDuration.Microseconds(), 1), 10))
		}
		var traces [][]zipkinSpan
		if err := d.storeGet(ctx, "/api/v2/traces", v, &traces); err != nil {
			return nil, err
		}
		out := make([]jaegerTrace, 0, len(traces))
		for _, t := range traces {
			if len(t) > 0 {
				out = append(out, fromZipkin(t))
			}
		}
		return out, nil
	}
	v := url.Values{
		"service": {f.service},
		"start":   {strconv.FormatInt(f.start.UnixMicro(), 10)},
		"end":     {strconv.FormatInt(f.end.UnixMicro(), 10)},
		"limit":   {strconv.Itoa(f.limit)},
	}
	if f.errors {
		v.Set("tags", `{"error":"true"}`)
	}
	if f.minDuration > 0 {
		v.Set("minDuration", f.minDuration.String())
	}
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	err := d.storeGet(ctx, "/api/traces", v, &body)
	return body.Data, err
}

// readTrace reads the spans of trace id (checked as hex by the caller).
func (d *Dashboard) readTrace(ctx context.Context, id string) ([]jaegerTrace, error) {
	if d.cfg.ZipkinQuery != "" {
		var spans []zipkinSpan
		if err := d.storeGet(ctx, "/api/v2/trace/"+id, nil, &spans); err != nil {
			return nil, err
		}
		if len(spans) == 0 {
			return nil, nil
		}
		return []jaegerTrace{fromZipkin(spans)}, nil
	}
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	err := d.storeGet(ctx, "/api/traces/"+id, nil, &body)
	return body.Data, err
}

// storeGet reads path?q of the configured trace store into v.
func (d *Dashboard) storeGet(ctx context.Context, path string, q url.Values, v any) error {
	base := d.storeBase()
	u := base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	resp, body, err := d.getWith(ctx, d.traceClient, u, maxTraceBytes, nil)
	if err != nil {
		return fmt.Errorf("the trace store's query API at %s: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the trace store's query API at %s: GET %s answered %s", base, path, resp.Status)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("the trace store's query API at %s: GET %s: %w", base, path, err)
	}
	return nil
}

// zipkinSpan is a span in Zipkin's v2 JSON.
type zipkinSpan struct {
	TraceID        string            `json:"traceId"`
	ID             string            `json:"id"`
	ParentID       string            `json:"parentId"`
	Name           string            `json:"name"`
	Kind           string            `json:"kind"`      // CLIENT, SERVER, PRODUCER, CONSUMER
	Timestamp      int64             `json:"timestamp"` // Unix µs
	Duration       int64             `json:"duration"`  // µs
	LocalEndpoint  *zipkinEndpoint   `json:"localEndpoint"`
	RemoteEndpoint *zipkinEndpoint   `json:"remoteEndpoint"`
	Tags           map[string]string `json:"tags"`
}

type zipkinEndpoint struct {
	ServiceName string `json:"serviceName"`
}

// fromZipkin reads a Zipkin trace into Jaeger's shape: the kind as the
// span.kind tag, the remote service as peer.service when the span has no
// such tag, the parent as a CHILD_OF reference, and a process a service.
func fromZipkin(spans []zipkinSpan) jaegerTrace {
	t := jaegerTrace{TraceID: spans[0].TraceID, Processes: map[string]struct {
		ServiceName string `json:"serviceName"`
	}{}}
	for _, z := range spans {
		svc := ""
		if z.LocalEndpoint != nil {
			svc = z.LocalEndpoint.ServiceName
		}
		pid := "p:" + svc
		t.Processes[pid] = struct {
			ServiceName string `json:"serviceName"`
		}{svc}
		s := jaegerSpan{TraceID: z.TraceID, SpanID: z.ID, Operation: z.Name, ProcessID: pid, StartTime: z.Timestamp, Duration: z.Duration}
		tag := func(k, v string) {
			s.Tags = append(s.Tags, struct {
				Key   string `json:"key"`
				Value any    `json:"value"`
			}{k, v})
		}
		if z.Kind != "" {
			tag("span.kind", strings.ToLower(z.Kind))
		}
		if _, ok := z.Tags["peer.service"]; !ok && z.RemoteEndpoint != nil && z.RemoteEndpoint.ServiceName != "" {
			tag("peer.service", z.RemoteEndpoint.ServiceName)
		}
		for _, k := range sortedKeys(z.Tags) {
			tag(k, z.Tags[k])
		}
		if z.ParentID != "" {
			s.References = append(s.References, struct {
				RefType string `json:"refType"`
				SpanID  string `json:"spanID"`
			}{"CHILD_OF", z.ParentID})
		}
		t.Spans = append(t.Spans, s)
	}
	return t
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
