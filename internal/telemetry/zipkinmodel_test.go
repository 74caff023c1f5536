package telemetry

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/openzipkin/zipkin-go/model"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The reference the exporter's writer is checked against: a span
// converted to zipkin-go's model (as the exporter once did before writing
// it), which zipkin-go's own serializer writes, and which the model's
// writer below writes as that serializer does.

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
		Kind:      model.Kind(zipkinKind(s.SpanKind())),
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

// zipkinJSON writes batches in Zipkin's v2 JSON, as zipkin-go's own
// serializer does (names lower case, times in microseconds), by appending to
// one buffer instead of reflecting over each span: the reporter serializes
// every span it sends, and reflection made that most of the cost of
// tracing a call.
type zipkinJSON struct{}

func (zipkinJSON) ContentType() string { return "application/json" }

func (zipkinJSON) Serialize(spans []*model.SpanModel) ([]byte, error) {
	b := make([]byte, 0, 512*len(spans)+2)
	b = append(b, '[')
	for i, s := range spans {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendSpan(b, s)
	}
	return append(b, ']'), nil
}

func appendSpan(b []byte, s *model.SpanModel) []byte {
	b = append(b, `{"traceId":"`...)
	if s.TraceID.High != 0 {
		b = appendHex64(b, s.TraceID.High)
	}
	b = appendHex64(b, s.TraceID.Low)
	b = append(b, `","id":"`...)
	b = appendHex64(b, uint64(s.ID))
	b = append(b, '"')
	if s.ParentID != nil {
		b = append(b, `,"parentId":"`...)
		b = appendHex64(b, uint64(*s.ParentID))
		b = append(b, '"')
	}
	if s.Name != "" {
		b = append(b, `,"name":`...)
		b = appendLower(b, s.Name)
	}
	if s.Kind != model.Undetermined {
		b = append(b, `,"kind":"`...)
		b = append(b, s.Kind...)
		b = append(b, '"')
	}
	if !s.Timestamp.IsZero() {
		b = append(b, `,"timestamp":`...)
		b = strconv.AppendInt(b, s.Timestamp.Round(time.Microsecond).UnixMicro(), 10)
	}
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, max(s.Duration.Round(time.Microsecond).Microseconds(), 1), 10)
	if s.Debug {
		b = append(b, `,"debug":true`...)
	}
	if s.Shared {
		b = append(b, `,"shared":true`...)
	}
	if s.LocalEndpoint != nil {
		b = append(b, `,"localEndpoint":`...)
		b = appendEndpoint(b, s.LocalEndpoint)
	}
	if s.RemoteEndpoint != nil {
		b = append(b, `,"remoteEndpoint":`...)
		b = appendEndpoint(b, s.RemoteEndpoint)
	}
	if len(s.Annotations) > 0 {
		b = append(b, `,"annotations":[`...)
		for i, a := range s.Annotations {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"timestamp":`...)
			b = strconv.AppendInt(b, a.Timestamp.Round(time.Microsecond).UnixMicro(), 10)
			b = append(b, `,"value":`...)
			b = appendString(b, a.Value)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(s.Tags) > 0 {
		var arr [16]string
		keys := arr[:0]
		for k := range s.Tags {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `,"tags":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, s.Tags[k])
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendEndpoint(b []byte, e *model.Endpoint) []byte {
	b = append(b, '{')
	n := len(b)
	sep := func() {
		if len(b) > n {
			b = append(b, ',')
		}
	}
	if e.ServiceName != "" {
		b = append(b, `"serviceName":`...)
		b = appendLower(b, e.ServiceName)
	}
	if e.IPv4 != nil {
		sep()
		b = append(b, `"ipv4":"`...)
		b = appendIP(b, e.IPv4)
		b = append(b, '"')
	}
	if e.IPv6 != nil {
		sep()
		b = append(b, `"ipv6":"`...)
		b = appendIP(b, e.IPv6)
		b = append(b, '"')
	}
	if e.Port != 0 {
		sep()
		b = append(b, `"port":`...)
		b = strconv.AppendUint(b, uint64(e.Port), 10)
	}
	return append(b, '}')
}

// appendIP appends ip as net.IP's String writes it.
func appendIP(b []byte, ip net.IP) []byte {
	if a, ok := netip.AddrFromSlice(ip); ok {
		if ip.To4() != nil {
			a = a.Unmap()
		}
		return a.AppendTo(b)
	}
	return append(b, ip.String()...)
}
