package telemetry

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openzipkin/zipkin-go/model"
	"github.com/openzipkin/zipkin-go/reporter"
	zipkinhttp "github.com/openzipkin/zipkin-go/reporter/http"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Zipkin export. OpenTelemetry's own Zipkin exporter is deprecated, so the
// export is built on zipkin-go: its span model, and its HTTP reporter, which
// batches and posts to the collector and keeps a bounded backlog when the
// collector is down. This file is the whole of the conversion.

const (
	zipkinQueue      = 2048 // ended spans waiting for conversion
	zipkinBacklog    = 4096 // spans the reporter keeps while the collector is down
	zipkinBatchSize  = 256
	zipkinBatchEvery = time.Second
	zipkinTimeout    = 5 * time.Second
	warnEvery        = 30 * time.Second
)

// zipkinProcessor hands each ended, sampled span to a bounded queue; one
// goroutine converts queued spans and gives them to the reporter. A request
// never waits on it: when the queue is full the span is dropped and counted.
type zipkinProcessor struct {
	endpoint string
	queue    chan sdktrace.ReadOnlySpan
	stop     chan struct{}
	done     chan struct{}
	closed   atomic.Bool
	once     sync.Once
	rep      reporter.Reporter
	drops    *drops
}

func newZipkinProcessor(endpoint string, logger *slog.Logger, reg prometheus.Registerer) (*zipkinProcessor, error) {
	d := newDrops(endpoint, logger, reg)
	p := &zipkinProcessor{
		endpoint: endpoint,
		queue:    make(chan sdktrace.ReadOnlySpan, zipkinQueue),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		drops:    d,
		rep: zipkinhttp.NewReporter(endpoint,
			zipkinhttp.BatchSize(zipkinBatchSize),
			zipkinhttp.BatchInterval(zipkinBatchEvery),
			zipkinhttp.MaxBacklog(zipkinBacklog),
			zipkinhttp.Timeout(zipkinTimeout),
			zipkinhttp.Client(&http.Client{Transport: rejectCounter{d: d, rt: &http.Transport{
				DialContext:     (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
				MaxIdleConns:    2,
				IdleConnTimeout: 90 * time.Second,
			}}}),
			// The reporter says what it drops only in its log: read it.
			zipkinhttp.Logger(log.New(d, "", 0)),
			zipkinhttp.Serializer(zipkinJSON{}),
		),
	}
	go p.run()
	return p, nil
}

func (p *zipkinProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (p *zipkinProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() || p.closed.Load() {
		return
	}
	select {
	case p.queue <- s:
	default:
		p.drops.add("queue_full", 1, "the export queue is full")
	}
}

func (p *zipkinProcessor) run() {
	defer close(p.done)
	for {
		select {
		case s := <-p.queue:
			p.rep.Send(zipkinSpan(s))
		case <-p.stop:
			for {
				select {
				case s := <-p.queue:
					p.rep.Send(zipkinSpan(s))
				default:
					return
				}
			}
		}
	}
}

// Shutdown sends what is queued and stops; the reporter makes one last post.
func (p *zipkinProcessor) Shutdown(ctx context.Context) error {
	var err error
	p.once.Do(func() {
		p.closed.Store(true)
		close(p.stop)
		select {
		case <-p.done:
		case <-ctx.Done():
			err = ctx.Err()
			return
		}
		closed := make(chan error, 1)
		go func() { closed <- p.rep.Close() }()
		select {
		case err = <-closed:
		case <-ctx.Done():
			err = ctx.Err()
		}
	})
	return err
}

// ForceFlush waits until the queue has been handed to the reporter.
func (p *zipkinProcessor) ForceFlush(ctx context.Context) error {
	for len(p.queue) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// zipkinSpan converts an OpenTelemetry span to Zipkin's model.
func zipkinSpan(s sdktrace.ReadOnlySpan) model.SpanModel {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	m := model.SpanModel{
		SpanContext: model.SpanContext{
			TraceID: model.TraceID{High: binary.BigEndian.Uint64(tid[:8]), Low: binary.BigEndian.Uint64(tid[8:])},
			ID:      model.ID(binary.BigEndian.Uint64(sid[:])),
		},
		Name:      s.Name(),
		Kind:      zipkinKind(s.SpanKind()),
		Timestamp: s.StartTime(),
		Duration:  max(s.EndTime().Sub(s.StartTime()), time.Microsecond),
		Tags:      make(map[string]string, len(s.Attributes())+2),
	}
	if p := s.Parent(); p.IsValid() {
		psid := p.SpanID()
		id := model.ID(binary.BigEndian.Uint64(psid[:]))
		m.ParentID = &id
	}
	service := ""
	for _, kv := range s.Resource().Attributes() {
		if kv.Key == "service.name" {
			service = kv.Value.AsString()
		}
	}
	m.LocalEndpoint = &model.Endpoint{ServiceName: service}
	var remote model.Endpoint
	for _, kv := range s.Attributes() {
		v := kv.Value.Emit()
		m.Tags[string(kv.Key)] = v
		switch kv.Key {
		case "peer.service":
			remote.ServiceName = v
		case "server.address", "network.peer.address":
			if ip := net.ParseIP(v); ip != nil {
				if ip.To4() != nil {
					remote.IPv4 = ip
				} else {
					remote.IPv6 = ip
				}
			}
		case "server.port", "network.peer.port":
			if n, err := strconv.ParseUint(v, 10, 16); err == nil {
				remote.Port = uint16(n)
			}
		}
	}
	if remote.ServiceName != "" || remote.IPv4 != nil || remote.IPv6 != nil {
		m.RemoteEndpoint = &remote
	}
	switch st := s.Status(); st.Code {
	case codes.Error:
		m.Tags["otel.status_code"] = "ERROR"
		m.Tags["error"] = st.Description
		if st.Description == "" {
			m.Tags["error"] = "true"
		}
	case codes.Ok:
		m.Tags["otel.status_code"] = "OK"
	}
	for _, e := range s.Events() {
		m.Annotations = append(m.Annotations, model.Annotation{Timestamp: e.Time, Value: eventValue(e.Name, e.Attributes)})
	}
	return m
}

func eventValue(name string, attrs []attribute.KeyValue) string {
	if len(attrs) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name)
	for i, kv := range attrs {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%s", kv.Key, kv.Value.Emit())
	}
	return b.String()
}

func zipkinKind(k trace.SpanKind) model.Kind {
	switch k {
	case trace.SpanKindClient:
		return model.Client
	case trace.SpanKindServer:
		return model.Server
	case trace.SpanKindProducer:
		return model.Producer
	case trace.SpanKindConsumer:
		return model.Consumer
	}
	return model.Undetermined
}

// drops counts the spans an exporter drops, by reason, and logs them, at
// most once every warnEvery per reason so a collector outage does not flood
// the log. It is also the io.Writer of the Zipkin reporter's log, from which
// it learns of failed posts and of spans the reporter discards.
type drops struct {
	endpoint string
	log      *slog.Logger
	counter  *prometheus.CounterVec
	mu       sync.Mutex
	total    map[string]int64
	lastWarn map[string]time.Time
	lastErr  string
}

func newDrops(endpoint string, logger *slog.Logger, reg prometheus.Registerer) *drops {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_trace_spans_dropped_total",
		Help: "Spans dropped before export, by reason (queue_full, collector_unreachable, collector_rejected).",
	}, []string{"reason"})
	if reg != nil {
		if err := reg.Register(c); err != nil {
			if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
				c = are.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	return &drops{endpoint: endpoint, log: logger, counter: c, total: map[string]int64{}, lastWarn: map[string]time.Time{}}
}

func (d *drops) add(reason string, n int, why string) {
	d.counter.WithLabelValues(reason).Add(float64(n))
	d.mu.Lock()
	d.total[reason] += int64(n)
	total := d.total[reason]
	warn := time.Since(d.lastWarn[reason]) >= warnEvery
	if warn {
		d.lastWarn[reason] = time.Now()
	}
	d.mu.Unlock()
	if warn {
		d.log.Warn("dropping spans", "reason", reason, "why", why, "dropped_total", total, "collector", d.endpoint)
	}
}

// Total returns how many spans were dropped for reason.
func (d *drops) Total(reason string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total[reason]
}

// Write reads the reporter's log lines.
func (d *drops) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "backlog too long, disposing "):
			var n int
			if _, err := fmt.Sscanf(line, "backlog too long, disposing %d spans", &n); err == nil {
				d.mu.Lock()
				why := d.lastErr
				d.mu.Unlock()
				d.add("collector_unreachable", n, "the collector does not accept spans ("+why+") and the backlog is full")
			}
		case strings.HasPrefix(line, "failed"):
			d.mu.Lock()
			d.lastErr = line
			warn := time.Since(d.lastWarn["post"]) >= warnEvery
			if warn {
				d.lastWarn["post"] = time.Now()
			}
			d.mu.Unlock()
			if warn {
				d.log.Warn("cannot post spans to the collector; keeping up to a backlog, then dropping", "collector", d.endpoint, "err", line, "backlog", zipkinBacklog)
			}
		default:
			d.log.Warn("zipkin reporter", "msg", line)
		}
	}
	return len(p), nil
}

var _ io.Writer = (*drops)(nil)

// rejectCounter counts the spans of posts the collector refuses: the
// reporter drops such a batch, saying only the status in its log.
type rejectCounter struct {
	d  *drops
	rt http.RoundTripper
}

func (c rejectCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err == nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
		n := 1
		if req.GetBody != nil {
			if body, gerr := req.GetBody(); gerr == nil {
				var spans []json.RawMessage
				if json.NewDecoder(body).Decode(&spans) == nil {
					n = len(spans)
				}
			}
		}
		c.d.add("collector_rejected", n, "the collector answered "+resp.Status)
	}
	return resp, err
}
