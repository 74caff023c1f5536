package invoke

import (
	"net"
	"net/http"
	"net/textproto"
	"strings"
)

// hopByHop lists the headers of one connection, which a proxy must not forward
// (RFC 9110, section 7.6.1).
var hopByHop = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopByHop deletes hop-by-hop headers, including those that Connection names.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
}

// setForwarded replaces X-Forwarded-For, X-Forwarded-Host and Forwarded with
// what this sidecar saw of its app: the app's address and the Host it used.
func setForwarded(h http.Header, remoteAddr, host, by string) {
	ip := remoteAddr
	if hst, _, err := net.SplitHostPort(remoteAddr); err == nil {
		ip = hst
	}
	delete(h, "X-Forwarded-For")
	delete(h, "X-Forwarded-Host")
	delete(h, "X-Forwarded-Proto")
	delete(h, "Forwarded")
	if ip == "" {
		return
	}
	var b strings.Builder
	b.Grow(16 + len(ip) + len(by) + len(host))
	b.WriteString("for=")
	writeNode(&b, ip)
	if by != "" {
		b.WriteString(";by=")
		writeNode(&b, by)
	}
	if host != "" {
		b.WriteString(";host=")
		writeQuotedIfNeeded(&b, host)
	}
	// One backing array for the two values that are set every time.
	vals := [2]string{ip, b.String()}
	h["X-Forwarded-For"] = vals[0:1:1]
	h["Forwarded"] = vals[1:2:2]
	if host != "" {
		h["X-Forwarded-Host"] = []string{host}
	}
}

// writeNode writes an address, with or without a port, as a Forwarded node
// (RFC 7239): IPv6 addresses are bracketed, and anything with a colon or
// bracket is quoted.
func writeNode(b *strings.Builder, addr string) {
	if host, port, err := net.SplitHostPort(addr); err == nil {
		b.WriteByte('"')
		if strings.Contains(host, ":") {
			b.WriteByte('[')
			b.WriteString(host)
			b.WriteByte(']')
		} else {
			b.WriteString(host)
		}
		b.WriteByte(':')
		b.WriteString(port)
		b.WriteByte('"')
		return
	}
	if strings.Contains(addr, ":") && !strings.HasPrefix(addr, "[") {
		b.WriteString(`"[`)
		b.WriteString(addr)
		b.WriteString(`]"`)
		return
	}
	writeQuotedIfNeeded(b, addr)
}

func writeQuotedIfNeeded(b *strings.Builder, s string) {
	if strings.ContainsAny(s, ":[]") {
		b.WriteByte('"')
		b.WriteString(s)
		b.WriteByte('"')
		return
	}
	b.WriteString(s)
}

// copyHeader adds every value of src to dst. A name dst does not have yet
// takes src's slice as it is: src is a response header that nothing else
// reads or changes afterwards, and sharing it saves a copy per header.
func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		if old, ok := dst[k]; ok {
			dst[k] = append(old, vv...)
		} else {
			dst[k] = vv
		}
	}
}
