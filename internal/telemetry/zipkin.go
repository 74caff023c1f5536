package telemetry

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/openzipkin/zipkin-go/model"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Zipkin export (export.go has what it shares with OTLP): spans converted
// to zipkin-go's model, written in Zipkin's v2 JSON (zipkinjson.go) and
// posted to the collector's /api/v2/spans.

// newZipkinProcessor exports to the Zipkin collector at endpoint.
func newZipkinProcessor(endpoint string, logger *slog.Logger, reg prometheus.Registerer) (*exportProcessor, error) {
	exp, err := newZipkinExporter(endpoint, newDrops(endpoint, logger, reg))
	if err != nil {
		return nil, err
	}
	return newExportProcessor(exp, exp.drops), nil
}

// zipkinExporter posts spans to a Zipkin collector's v2 API.
type zipkinExporter struct {
	*backlog[*model.SpanModel]
	endpoint string
	client   *http.Client
}

func newZipkinExporter(endpoint string, d *drops) (*zipkinExporter, error) {
	if _, err := http.NewRequest(http.MethodPost, endpoint, nil); err != nil {
		return nil, fmt.Errorf("zipkin: %w", err)
	}
	e := &zipkinExporter{endpoint: endpoint, client: collectorClient()}
	e.backlog = &backlog[*model.SpanModel]{
		drops:   d,
		convert: func(s sdktrace.ReadOnlySpan) *model.SpanModel { m := zipkinSpan(s); return &m },
		post:    e.post,
		close:   e.client.CloseIdleConnections,
	}
	return e, nil
}

func (e *zipkinExporter) post(ctx context.Context, spans []*model.SpanModel) error {
	body, _ := zipkinJSON{}.Serialize(spans) // it does not fail
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("zipkin: %w", err)
	}
	req.Header.Set("Content-Type", zipkinJSON{}.ContentType())
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("zipkin: %w", err) // it names the endpoint
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &rejectedError{protocol: "zipkin", endpoint: e.endpoint, status: resp.Status, body: strings.TrimSpace(string(msg))}
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
