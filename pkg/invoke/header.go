package invoke

import (
	"net"
	"net/http"
	"net/textproto"
	"strings"
)

// Headers the sidecar sets on every invocation. Values an app sends under
// these names are replaced, never trusted.
const (
	HeaderCallerAppID     = "Dapr-Caller-App-Id"
	HeaderCallerNamespace = "Dapr-Caller-Namespace"
	HeaderCalleeAppID     = "Dapr-Callee-App-Id"
	HeaderAppID           = "Dapr-App-Id" // the header form of invocation
	HeaderAPIToken        = "Dapr-Api-Token"
	// HeaderHopError marks a response of the internal hop that carries an
	// error of the callee sidecar rather than the app's answer.
	HeaderHopError = "Tandem-Hop-Error"
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
	h["X-Forwarded-For"] = []string{ip}
	fwd := "for=" + forwardedNode(ip)
	if by != "" {
		fwd += ";by=" + forwardedNode(by)
	}
	if host != "" {
		h["X-Forwarded-Host"] = []string{host}
		fwd += ";host=" + quoteIfNeeded(host)
	}
	h["Forwarded"] = []string{fwd}
}

// forwardedNode formats an address, with or without a port, as a Forwarded
// node (RFC 7239): IPv6 addresses are bracketed, and anything with a colon
// or bracket is quoted.
func forwardedNode(addr string) string {
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		return `"` + host + ":" + port + `"`
	}
	if strings.Contains(addr, ":") && !strings.HasPrefix(addr, "[") {
		return `"[` + addr + `]"`
	}
	return quoteIfNeeded(addr)
}

func quoteIfNeeded(s string) string {
	if strings.ContainsAny(s, ":[]") {
		return `"` + s + `"`
	}
	return s
}

// copyHeader adds every value of src to dst.
func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		dst[k] = append(dst[k], vv...)
	}
}
