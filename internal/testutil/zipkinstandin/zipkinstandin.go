// Package zipkinstandin plays a Zipkin server in tests, where Zipkin itself
// (a Java server) cannot be installed: it takes spans on Zipkin's v2
// collector route (POST /api/v2/spans, JSON) and answers Zipkin's v2 query
// routes (GET /api/v2/services, /api/v2/traces, /api/v2/trace/{id}) as
// their specification (openzipkin/zipkin-api, and zipkin-server's
// ZipkinQueryApiV2) says: service names lower-cased, endTs and lookback in
// milliseconds, minDuration in microseconds, annotationQuery terms joined
// by " and " (a word matches a tag key or an annotation's value, k=v a
// tag), the newest traces first. It is a stand-in: the spans it holds are
// what real sidecars sent, and the dashboard reads them as it would read
// a real Zipkin's; a real Zipkin's behaviour beyond the specification
// (clock-skew adjustment, merging of shared spans) is not played.
package zipkinstandin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Span is a span in Zipkin's v2 JSON, as much as the stand-in reads.
type Span struct {
	TraceID        string            `json:"traceId"`
	ID             string            `json:"id"`
	ParentID       string            `json:"parentId,omitempty"`
	Name           string            `json:"name,omitempty"`
	Kind           string            `json:"kind,omitempty"`
	Timestamp      int64             `json:"timestamp,omitempty"`
	Duration       int64             `json:"duration,omitempty"`
	LocalEndpoint  *Endpoint         `json:"localEndpoint,omitempty"`
	RemoteEndpoint *Endpoint         `json:"remoteEndpoint,omitempty"`
	Annotations    []Annotation      `json:"annotations,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
	Shared         bool              `json:"shared,omitempty"`
}

// Endpoint is a span's local or remote endpoint.
type Endpoint struct {
	ServiceName string `json:"serviceName,omitempty"`
	IPv4        string `json:"ipv4,omitempty"`
	IPv6        string `json:"ipv6,omitempty"`
	Port        int    `json:"port,omitempty"`
}

// Annotation is a timed event of a span.
type Annotation struct {
	Timestamp int64  `json:"timestamp"`
	Value     string `json:"value"`
}

// Server is the stand-in.
type Server struct {
	*httptest.Server
	mu     sync.Mutex
	traces map[string][]Span // by trace id
}

// Start starts a stand-in on a free loopback port; Close stops it.
func Start() *Server {
	s := &Server{traces: map[string][]Span{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/spans", s.collect)
	mux.HandleFunc("GET /api/v2/services", s.services)
	mux.HandleFunc("GET /api/v2/traces", s.search)
	mux.HandleFunc("GET /api/v2/trace/{id}", s.trace)
	s.Server = httptest.NewServer(mux)
	return s
}

// Spans is the number of spans held.
func (s *Server) Spans() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.traces {
		n += len(t)
	}
	return n
}

func (s *Server) collect(w http.ResponseWriter, r *http.Request) {
	var spans []Span
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<20)).Decode(&spans); err != nil {
		http.Error(w, "Expected a JSON list of spans: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range spans {
		if sp.TraceID == "" || sp.ID == "" {
			http.Error(w, "a span needs traceId and id", http.StatusBadRequest)
			return
		}
		sp.TraceID = strings.ToLower(sp.TraceID)
		for _, e := range []*Endpoint{sp.LocalEndpoint, sp.RemoteEndpoint} {
			if e != nil {
				e.ServiceName = strings.ToLower(e.ServiceName)
			}
		}
		sp.Name = strings.ToLower(sp.Name)
		s.traces[sp.TraceID] = append(s.traces[sp.TraceID], sp)
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) services(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	seen := map[string]bool{}
	for _, t := range s.traces {
		for _, sp := range t {
			if sp.LocalEndpoint != nil && sp.LocalEndpoint.ServiceName != "" {
				seen[sp.LocalEndpoint.ServiceName] = true
			}
		}
	}
	s.mu.Unlock()
	out := []string{}
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	writeJSON(w, out)
}

// query is a parsed GET /api/v2/traces.
type query struct {
	service, spanName string
	terms             []string
	minDur, maxDur    int64 // µs; 0: none
	from, to          int64 // µs
	limit             int
}

func parseQuery(r *http.Request) (query, string) {
	v := r.URL.Query()
	q := query{service: strings.ToLower(v.Get("serviceName")), spanName: strings.ToLower(v.Get("spanName")), limit: 10}
	num := func(name string, def int64) (int64, bool) {
		s := v.Get(name)
		if s == "" {
			return def, true
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil && n >= 0
	}
	endTs, ok := num("endTs", time.Now().UnixMilli())
	if !ok {
		return q, "endTs should be a number of milliseconds"
	}
	lookback, ok := num("lookback", endTs)
	if !ok {
		return q, "lookback should be a number of milliseconds"
	}
	if q.minDur, ok = num("minDuration", 0); !ok {
		return q, "minDuration should be a number of microseconds"
	}
	if q.maxDur, ok = num("maxDuration", 0); !ok || q.maxDur > 0 && q.minDur == 0 {
		return q, "maxDuration is only valid with minDuration"
	}
	limit, ok := num("limit", 10)
	if !ok || limit <= 0 {
		return q, "limit should be greater than 0"
	}
	q.limit = int(limit)
	if a := strings.TrimSpace(v.Get("annotationQuery")); a != "" {
		for _, t := range strings.Split(a, " and ") {
			if t = strings.TrimSpace(t); t != "" {
				q.terms = append(q.terms, t)
			}
		}
	}
	if (q.spanName != "" || len(q.terms) > 0) && q.service == "" {
		return q, "serviceName is required when constraining on spanName or annotationQuery"
	}
	q.to = endTs * 1000
	q.from = (endTs - lookback) * 1000
	return q, ""
}

// matches reports whether trace t has a span in the time range of q, and
// the spans of q.service (all, without one) meet every constraint.
func (q query) matches(t []Span) bool {
	inRange := false
	for _, sp := range t {
		inRange = inRange || sp.Timestamp >= q.from && sp.Timestamp <= q.to
	}
	if !inRange {
		return false
	}
	var mine []Span
	for _, sp := range t {
		if q.service == "" || sp.LocalEndpoint != nil && sp.LocalEndpoint.ServiceName == q.service {
			mine = append(mine, sp)
		}
	}
	if len(mine) == 0 {
		return false
	}
	any := func(ok func(Span) bool) bool {
		for _, sp := range mine {
			if ok(sp) {
				return true
			}
		}
		return false
	}
	if q.spanName != "" && !any(func(sp Span) bool { return sp.Name == q.spanName }) {
		return false
	}
	for _, term := range q.terms {
		k, val, isTag := strings.Cut(term, "=")
		if !any(func(sp Span) bool {
			if isTag {
				v, ok := sp.Tags[k]
				return ok && v == val
			}
			if _, ok := sp.Tags[term]; ok {
				return true
			}
			for _, a := range sp.Annotations {
				if a.Value == term {
					return true
				}
			}
			return false
		}) {
			return false
		}
	}
	if q.minDur > 0 && !any(func(sp Span) bool {
		return sp.Duration >= q.minDur && (q.maxDur == 0 || sp.Duration <= q.maxDur)
	}) {
		return false
	}
	return true
}

func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	q, bad := parseQuery(r)
	if bad != "" {
		http.Error(w, bad, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	var found [][]Span
	for _, t := range s.traces {
		if q.matches(t) {
			found = append(found, sorted(t))
		}
	}
	s.mu.Unlock()
	newest := func(t []Span) int64 { return t[0].Timestamp }
	sort.Slice(found, func(i, j int) bool { return newest(found[i]) > newest(found[j]) })
	if len(found) > q.limit {
		found = found[:q.limit]
	}
	if found == nil {
		found = [][]Span{}
	}
	writeJSON(w, found)
}

func (s *Server) trace(w http.ResponseWriter, r *http.Request) {
	id := strings.ToLower(r.PathValue("id"))
	s.mu.Lock()
	t := sorted(s.traces[id])
	s.mu.Unlock()
	if len(t) == 0 {
		http.Error(w, "Cannot find trace "+id, http.StatusNotFound)
		return
	}
	writeJSON(w, t)
}

// sorted is a copy of t by timestamp, as the query routes answer traces.
func sorted(t []Span) []Span {
	out := append([]Span(nil), t...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Timestamp < out[j].Timestamp })
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
