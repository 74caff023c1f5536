package telemetry

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/openzipkin/zipkin-go/model"
)

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
		yieldEvery(i)
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
