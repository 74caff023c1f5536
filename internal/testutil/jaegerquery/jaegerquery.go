// Package jaegerquery reads traces back from Jaeger's query API
// (/api/traces), for the tests that check what the sidecars exported: the
// end-to-end tests and the real node's.
package jaegerquery

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Span is a span as the query API returns it, with its service filled in.
type Span struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	StartTime     int64  `json:"startTime"` // Unix microseconds
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	ProcessID string `json:"processID"`
	Tags      []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	// Service is the service name of the span's process.
	Service string `json:"-"`
}

// Parent is the span id of the span's parent, or "".
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Tag is the value of the span's tag k as text, or "".
func (s Span) Tag(k string) string {
	for _, t := range s.Tags {
		if t.Key == k {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

// Trace is one trace's spans.
type Trace []Span

// Get reads the traces of url, an /api/traces query or /api/traces/<id>.
func Get(url string) ([]Trace, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var body struct {
		Data []struct {
			Spans     []Span `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	traces := make([]Trace, 0, len(body.Data))
	for _, d := range body.Data {
		tr := make(Trace, 0, len(d.Spans))
		for _, s := range d.Spans {
			s.Service = d.Processes[s.ProcessID].ServiceName
			tr = append(tr, s)
		}
		traces = append(traces, tr)
	}
	return traces, nil
}
