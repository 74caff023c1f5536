package telemetry

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// appendZipkinSpan appends s in Zipkin's v2 JSON, as zipkin-go's serializer
// writes its model of the span (names lower case, times in microseconds,
// tags in key order), straight from the span: no model, no map of tags,
// no reflection. The exporter writes each span so as it ends (zipkin.go).
func appendZipkinSpan(b []byte, s endedSpan) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = append(b, `{"traceId":"`...)
	if high := binary.BigEndian.Uint64(tid[:8]); high != 0 {
		b = appendHex64(b, high)
	}
	b = appendHex64(b, binary.BigEndian.Uint64(tid[8:]))
	b = append(b, `","id":"`...)
	b = appendHex64(b, binary.BigEndian.Uint64(sid[:]))
	b = append(b, '"')
	if p := s.Parent(); p.IsValid() {
		psid := p.SpanID()
		b = append(b, `,"parentId":"`...)
		b = appendHex64(b, binary.BigEndian.Uint64(psid[:]))
		b = append(b, '"')
	}
	if name := s.Name(); name != "" {
		b = append(b, `,"name":`...)
		b = appendLower(b, name)
	}
	if kind := zipkinKind(s.SpanKind()); kind != "" {
		b = append(b, `,"kind":"`...)
		b = append(b, kind...)
		b = append(b, '"')
	}
	start := s.StartTime()
	if !start.IsZero() {
		b = append(b, `,"timestamp":`...)
		b = strconv.AppendInt(b, start.Round(time.Microsecond).UnixMicro(), 10)
	}
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, max(s.EndTime().Sub(start).Round(time.Microsecond).Microseconds(), 1), 10)

	if v, ok := s.Resource().Set().Value("service.name"); ok && v.Emit() != "" {
		b = append(b, `,"localEndpoint":{"serviceName":`...)
		b = appendLower(b, v.Emit())
		b = append(b, '}')
	}

	attrs := s.Attributes()
	var remote remoteEndpoint
	for _, kv := range attrs {
		remote.take(kv)
	}
	if remote.service != "" || remote.ip4.IsValid() || remote.ip6.IsValid() {
		b = append(b, `,"remoteEndpoint":`...)
		b = remote.appendTo(b)
	}
	if events := s.Events(); len(events) > 0 {
		b = append(b, `,"annotations":[`...)
		for i, e := range events {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"timestamp":`...)
			b = strconv.AppendInt(b, e.Time.Round(time.Microsecond).UnixMicro(), 10)
			b = append(b, `,"value":`...)
			b = appendString(b, eventValue(e.Name, e.Attributes))
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(appendTags(b, attrs, s.Status()), '}')
}

// appendTags appends the span's tags, its attributes and its status, in
// key order, as zipkin-go writes its map of them; the status's tags win
// over attributes of the same names. It sorts indices, not the tags: a
// span ends on the goroutine of the call it traces, often one just
// started, and a sort of the tags themselves (an array of them on the
// stack, and copies of two in every comparison) outgrew its starting
// stack, which the runtime then copied whole on every traced call.
func appendTags(b []byte, attrs []attribute.KeyValue, st sdktrace.Status) []byte {
	var code, errTag string
	switch st.Code {
	case codes.Error:
		code, errTag = "ERROR", st.Description
		if errTag == "" {
			errTag = "true"
		}
	case codes.Ok:
		code = "OK"
	}
	// order is the tags to write: an attribute's index, or statusCodeTag
	// and errorTag.
	var arr [24]int
	order := arr[:0]
	if len(attrs)+2 > len(arr) {
		order = make([]int, 0, len(attrs)+2)
	}
	for i := range attrs {
		if k := attrs[i].Key; code != "" && k == "otel.status_code" || errTag != "" && k == "error" {
			continue
		}
		order = append(order, i)
	}
	if code != "" {
		order = append(order, statusCodeTag)
	}
	if errTag != "" {
		order = append(order, errorTag)
	}
	if len(order) == 0 {
		return b
	}
	key := func(i int) string {
		switch i {
		case statusCodeTag:
			return "otel.status_code"
		case errorTag:
			return "error"
		}
		return string(attrs[i].Key)
	}
	for i := 1; i < len(order); i++ { // a span has a dozen tags at most
		for j := i; j > 0 && key(order[j]) < key(order[j-1]); j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	b = append(b, `,"tags":{`...)
	for n, i := range order {
		if n > 0 {
			b = append(b, ',')
		}
		b = appendString(b, key(i))
		b = append(b, ':')
		switch i {
		case statusCodeTag:
			b = appendString(b, code)
		case errorTag:
			b = appendString(b, errTag)
		default:
			b = appendValue(b, attrs[i].Value)
		}
	}
	return append(b, '}')
}

// The status's tags in appendTags's order of tags.
const (
	statusCodeTag = -1
	errorTag      = -2
)

// appendValue appends v as a JSON string of what Value.Emit returns,
// without Emit's allocation for the kinds a sidecar's spans carry.
func appendValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.STRING:
		return appendString(b, v.AsString())
	case attribute.INT64:
		b = append(b, '"')
		b = strconv.AppendInt(b, v.AsInt64(), 10)
		return append(b, '"')
	case attribute.BOOL:
		b = append(b, '"')
		b = strconv.AppendBool(b, v.AsBool())
		return append(b, '"')
	}
	return appendString(b, v.Emit())
}

// remoteEndpoint is a span's Zipkin remote endpoint, from its attributes.
type remoteEndpoint struct {
	service  string
	ip4, ip6 netip.Addr
	port     uint16
}

func (r *remoteEndpoint) take(kv attribute.KeyValue) {
	switch kv.Key {
	case "peer.service":
		r.service = kv.Value.Emit()
	case "server.address", "network.peer.address":
		// As net.ParseIP reads it: no zone.
		if ip, err := netip.ParseAddr(kv.Value.Emit()); err == nil && ip.Zone() == "" {
			if ip.Is4() || ip.Is4In6() {
				r.ip4 = ip.Unmap()
			} else {
				r.ip6 = ip
			}
		}
	case "server.port", "network.peer.port":
		if kv.Value.Type() == attribute.INT64 {
			if n := kv.Value.AsInt64(); n >= 0 && n <= 0xffff {
				r.port = uint16(n)
			}
		} else if n, err := strconv.ParseUint(kv.Value.Emit(), 10, 16); err == nil {
			r.port = uint16(n)
		}
	}
}

func (r *remoteEndpoint) appendTo(b []byte) []byte {
	b = append(b, '{')
	n := len(b)
	sep := func() {
		if len(b) > n {
			b = append(b, ',')
		}
	}
	if r.service != "" {
		b = append(b, `"serviceName":`...)
		b = appendLower(b, r.service)
	}
	if r.ip4.IsValid() {
		sep()
		b = append(b, `"ipv4":"`...)
		b = r.ip4.AppendTo(b)
		b = append(b, '"')
	}
	if r.ip6.IsValid() {
		sep()
		b = append(b, `"ipv6":"`...)
		b = r.ip6.AppendTo(b)
		b = append(b, '"')
	}
	if r.port != 0 {
		sep()
		b = append(b, `"port":`...)
		b = strconv.AppendUint(b, uint64(r.port), 10)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendHex64 appends v as 16 lower-case hex digits, as Zipkin's ids are
// written (fmt's %016x, without its allocations).
func appendHex64(b []byte, v uint64) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hexDigits[(v>>uint(shift))&0xf])
	}
	return b
}

// appendLower appends s lower-cased as a JSON string, as zipkin-go writes
// names (strings.ToLower), without a copy when s is ASCII.
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return appendString(b, strings.ToLower(s))
		}
	}
	n := len(b)
	b = appendString(b, s)
	for i := n; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return b
}

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c >= 0x20:
				b = append(b, c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
