package httpapi

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
)

// Origins are the origins browser pages may call the HTTP API from
// (--allowed-origins).
type Origins struct {
	// Any allows every origin, as daprd's "*": no CORS headers and nothing
	// refused.
	Any bool
	// Patterns are origins, scheme://host[:port] in lower case, each with at
	// most one "*" that matches any run of characters
	// (https://*.example.com). None, and not Any: the loopback origins,
	// http or https on localhost, *.localhost or a loopback address, with
	// any port or none.
	Patterns []string
}

// allowed reports whether origin (as a browser sends it) is allowed.
func (o Origins) allowed(origin string) bool {
	origin = strings.ToLower(origin)
	if len(o.Patterns) == 0 {
		return loopbackOrigin(origin)
	}
	for _, p := range o.Patterns {
		if pre, suf, wild := strings.Cut(p, "*"); wild {
			if len(origin) >= len(pre)+len(suf) && strings.HasPrefix(origin, pre) && strings.HasSuffix(origin, suf) {
				return true
			}
		} else if origin == p {
			return true
		}
	}
	return false
}

// loopbackOrigin reports whether origin is http or https on a loopback
// name or address: a page served from this machine.
func loopbackOrigin(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	return loopbackName(u.Hostname())
}

// loopbackName reports whether host (lower case, no port, no brackets) is
// localhost, a name under .localhost (which browsers resolve to loopback
// themselves) or a loopback address.
func loopbackName(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// CORS applies origins to the API h. A request without an Origin header
// (curl, SDKs, apps: anything but a browser) passes as it is.
//
// A browser page may make a "simple" request to any address without asking
// first: a POST with a text/plain body is one. So a page the developer
// visits could shut the sidecar down, write state or invoke apps through
// it, though it could not read the answers. Such a request carries the
// page's Origin: from an origin not allowed, anything but GET and HEAD is
// refused, 403 ERR_FORBIDDEN_ORIGIN, before h. GET and HEAD are served,
// without CORS headers, so the browser does not show the page the answer.
//
// A preflight (OPTIONS with Origin and Access-Control-Request-Method) is
// answered here, before h and its API token check, which a browser's
// preflight cannot pass: for an allowed origin 204 with the method and
// headers it asks for; for another, refused. Other requests from an
// allowed origin get Access-Control-Allow-Origin. With origins.Any, h is
// returned as it is: no CORS headers and no refusals, daprd's "*".
func CORS(origins Origins, h http.Handler) http.Handler {
	if origins.Any {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vv := r.Header["Origin"]
		if len(vv) == 0 {
			h.ServeHTTP(w, r)
			return
		}
		origin := vv[0]
		ok := len(vv) == 1 && origins.allowed(origin)
		hdr := w.Header()
		hdr.Add("Vary", "Origin")
		method := r.Header.Get("Access-Control-Request-Method")
		if r.Method == http.MethodOptions && method != "" {
			hdr.Add("Vary", "Access-Control-Request-Method")
			hdr.Add("Vary", "Access-Control-Request-Headers")
			if !ok {
				apierr.Write(w, forbiddenOrigin(origin))
				return
			}
			if httpguts.ValidHeaderFieldName(method) {
				hdr.Set("Access-Control-Allow-Origin", origin)
				hdr.Set("Access-Control-Allow-Methods", method)
				if reqHdr := r.Header.Get("Access-Control-Request-Headers"); reqHdr != "" && httpguts.ValidHeaderFieldValue(reqHdr) {
					hdr.Set("Access-Control-Allow-Headers", reqHdr)
				}
				hdr.Set("Access-Control-Max-Age", "600")
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		switch {
		case ok:
			hdr.Set("Access-Control-Allow-Origin", origin)
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			apierr.Write(w, forbiddenOrigin(origin))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func forbiddenOrigin(origin string) *apierr.Error {
	return apierr.New(apierr.CodeForbiddenOrigin, http.StatusForbidden, codes.PermissionDenied,
		"a browser page on origin %q may not call this sidecar: pages on origins not in --allowed-origins (by default loopback origins only, such as http://localhost:8080) may only GET and HEAD, and cannot read the answers; to allow this origin, start the sidecar with --allowed-origins %s (or * for every origin, as daprd)",
		origin, origin)
}
