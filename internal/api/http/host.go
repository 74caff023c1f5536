package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
)

// Hosts are the names the HTTP API answers to in a request's Host beyond
// those it always answers to (--allowed-hosts, and the names among
// --dapr-listen-addresses).
type Hosts struct {
	// Any answers to every Host, as daprd does ("*").
	Any bool
	// Names are host names in lower case, without port; "*.example.com"
	// matches every name under example.com.
	Names []string
}

// allowed reports whether host (lower case, no port, no brackets, no
// trailing dot) is a name of the sidecar.
func (hs Hosts) allowed(host string) bool {
	if hs.Any || host == "" || loopbackName(host) {
		return true
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	for _, n := range hs.Names {
		if n == host || strings.HasPrefix(n, "*.") && strings.HasSuffix(host, n[1:]) {
			return true
		}
	}
	return false
}

// CheckHost refuses a request to the API h whose Host is a name the
// sidecar was not told is its own: 403 ERR_FORBIDDEN_HOST.
//
// This is what stops DNS rebinding: a page on http://evil.example:3500
// whose name is then made to resolve to 127.0.0.1 calls the sidecar as its
// own origin, so the browser sends no Origin and shows the page every
// answer; but the Host it sends is evil.example:3500. Always answered:
// localhost and *.localhost (browsers resolve them to loopback
// themselves), no Host (HTTP/1.0), and every IP address, since an address
// cannot be rebound: that covers loopback, the pod IP (kubelet's probes),
// the --dapr-listen-addresses, every address of the machine's interfaces
// when the API listens on all of them (apps on other hosts calling it by
// IP), and addresses that reach it through NAT (a published container
// port). On a Unix socket every Host is answered: no browser connects to
// one.
func CheckHost(hosts Hosts, h http.Handler) http.Handler {
	if hosts.Any {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := hostName(r.Host)
		if hosts.allowed(name) || onUnixSocket(r) {
			h.ServeHTTP(w, r)
			return
		}
		apierr.Write(w, apierr.New(apierr.CodeForbiddenHost, http.StatusForbidden, codes.PermissionDenied,
			"the request's Host %q is not a name of this sidecar: it answers to localhost, *.localhost, IP addresses and the names in --allowed-hosts (a browser page whose name was pointed at this machine, DNS rebinding, sends its own name); to call it by this name, start the sidecar with --allowed-hosts %s",
			r.Host, name))
	})
}

// hostName is the host of a Host header, in lower case, without its port,
// brackets or trailing dot.
func hostName(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// onUnixSocket reports whether r came in on a Unix socket.
func onUnixSocket(r *http.Request) bool {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return ok && a.Network() == "unix"
}
