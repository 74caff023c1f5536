package dashboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/pkg/resolver/standalone"
)

func TestParseTraceQuery(t *testing.T) {
	for _, c := range []struct {
		q       string
		want    TraceQuery
		wantErr string
	}{
		{q: "app=front", want: TraceQuery{App: "front", Window: DefaultWindow}},
		{q: "app=front&status=error&minDuration=10ms&window=1h", want: TraceQuery{App: "front", Errors: true, MinDuration: 10 * time.Millisecond, Window: time.Hour}},
		{q: "app=front&status=any", want: TraceQuery{App: "front", Window: DefaultWindow}},
		{q: "", wantErr: "app:"},
		{q: "app=Front", wantErr: "app:"},
		{q: "app=" + url.QueryEscape("<script>"), wantErr: "app:"},
		{q: "app=front&status=ok", wantErr: `status "ok"`},
		{q: "app=front&minDuration=2h", wantErr: "minDuration"},
		{q: "app=front&minDuration=-1s", wantErr: "minDuration"},
		{q: "app=front&window=1s", wantErr: "window"},
	} {
		v, _ := url.ParseQuery(c.q)
		got, err := ParseTraceQuery(v)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: error %v, want one containing %q", c.q, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %+v, %v; want %+v", c.q, got, err, c.want)
		}
	}
}

// A trace the store answers twice (in parts) is listed once, whole.
func TestFullest(t *testing.T) {
	part := jaegerTrace{TraceID: "a", Spans: make([]jaegerSpan, 1)}
	whole := jaegerTrace{TraceID: "a", Spans: make([]jaegerSpan, 3)}
	other := jaegerTrace{TraceID: "b", Spans: make([]jaegerSpan, 2)}
	got := fullest([]jaegerTrace{part, other, whole, part})
	if len(got) != 2 || got[0].TraceID != "a" || len(got[0].Spans) != 3 || got[1].TraceID != "b" {
		t.Errorf("fullest: %+v; want a (3 spans), b", got)
	}
}

// TestReadsUnsampled: every read of a sidecar carries a traceparent with
// the sampled flag off and fresh ids, so a sidecar that follows its
// parent's decision traces none of them.
func TestReadsUnsampled(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Traceparent"))
		mu.Unlock()
		if r.URL.Path == "/v1.0/healthz" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		_, _ = w.Write([]byte(`{"id":"front"}`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	port, _ := strconv.Atoi(srv.URL[strings.LastIndex(srv.URL, ":")+1:])
	reg, err := standalone.Register(dir, standalone.Entry{AppID: "front", PID: os.Getpid(), InternalAddress: "127.0.0.1:1", HTTPPort: port})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if _, err := New(Config{RegistryDir: dir}).Apps(context.Background()); err != nil {
		t.Fatal(err)
	}
	form := regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-00$`)
	if len(seen) != 2 || seen[0] == seen[1] {
		t.Fatalf("traceparents %q; want two, distinct", seen)
	}
	for _, tp := range seen {
		if !form.MatchString(tp) || strings.Contains(tp, strings.Repeat("0", 16)) {
			t.Errorf("traceparent %q: want 00-<trace id>-<span id>-00 with non-zero ids", tp)
		}
	}
}

// TestFromZipkin: a Zipkin v2 span reads as the Jaeger span the map and
// the lists are written for: its kind, its remote service as peer.service,
// its parent, its error tag and its service.
func TestFromZipkin(t *testing.T) {
	tr := fromZipkin([]zipkinSpan{{
		TraceID: "463ac35c9f6413ad48485a3953bb6124", ID: "a2fb4a1d1a96d312", ParentID: "0020000000000001",
		Name: "calllocal/orders/echo", Kind: "CLIENT", Timestamp: 1700000000000000, Duration: 1500,
		LocalEndpoint: &zipkinEndpoint{"front"}, RemoteEndpoint: &zipkinEndpoint{"orders"},
		Tags: map[string]string{"error": "500"},
	}})
	s := tr.Spans[0]
	if !s.hop() || !s.failed() || s.parent() != "0020000000000001" || tr.Processes[s.ProcessID].ServiceName != "front" {
		t.Fatalf("span %+v (processes %v): want a failed hop of front, child of 0020000000000001", s, tr.Processes)
	}
	if peer, _ := s.tag("peer.service"); peer != "orders" {
		t.Errorf("peer.service %q, want orders from the remote endpoint", peer)
	}
}
