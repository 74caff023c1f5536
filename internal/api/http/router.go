// Package httpapi is the HTTP adapter of the sidecar: route tables that decode
// requests, call internal/invoke, pkg/state or the publish API (api.Publisher),
// and encode the answer. Errors are rendered by internal/apierr.
package httpapi

import (
	"net/http"
	"strings"

	"github.com/tandem-run/tandem/internal/apierr"
	"google.golang.org/grpc/codes"
)

// Route is one entry of a route table. Name is the route's span and metric name.
type Route struct {
	Method  string // empty: any method
	Pattern string // a net/http ServeMux path pattern, e.g. "/v1.0/state/{store}/{key}"
	Name    string
	Handler http.HandlerFunc
	// Raw routes match Pattern as a prefix of the escaped path before
	// ServeMux cleans it, for handlers that validate the path themselves
	// (invocation must reject "..", not redirect it away).
	Raw bool
	// Header, when set, routes every request that carries this header here,
	// whatever its path (the dapr-app-id form of invocation).
	Header string
	// Public routes are served without the API token (the health probes).
	Public bool
}

// Router is the one HTTP mux of the public API. Feature files add their route
// tables to it; only cmd/sidecar owns listeners.
type Router struct {
	mux    *http.ServeMux
	wrap   func(name string, h http.Handler) http.Handler
	raw    []rawRoute
	header []headerRoute
	public map[string]bool // patterns of public routes
	served []string        // what it serves, for the 404's message
}

type rawRoute struct {
	prefix string
	h      http.Handler
}

type headerRoute struct {
	name string
	h    http.Handler
}

// NewRouter returns an empty router. wrap, when not nil, is applied to every
// handler with its route name (tracing, metrics and token checks hook in here).
func NewRouter(wrap func(name string, h http.Handler) http.Handler) *Router {
	r := &Router{mux: http.NewServeMux(), wrap: wrap, public: map[string]bool{}}
	r.mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		apierr.Write(w, apierr.New(apierr.CodeNotFound, http.StatusNotFound, codes.NotFound,
			"no API route for %s %s; this port serves %s", req.Method, req.URL.Path, strings.Join(r.served, ", ")))
	})
	return r
}

// Add registers routes.
func (r *Router) Add(routes ...Route) {
	for _, rt := range routes {
		r.served = append(r.served, routeLabel(rt))
		var h http.Handler = rt.Handler
		if r.wrap != nil {
			h = r.wrap(rt.Name, h)
		}
		switch {
		case rt.Header != "":
			r.header = append(r.header, headerRoute{http.CanonicalHeaderKey(rt.Header), h})
			continue
		case rt.Raw:
			r.raw = append(r.raw, rawRoute{rt.Pattern, h})
			continue
		}
		p := rt.Pattern
		if rt.Method != "" {
			p = rt.Method + " " + p
		}
		r.mux.Handle(p, h)
		if rt.Public {
			r.public[p] = true
		}
	}
}

// routeLabel is how a route is named in the 404's list of routes.
func routeLabel(rt Route) string {
	switch {
	case rt.Header != "":
		return "any path with a " + strings.ToLower(rt.Header) + " header"
	case rt.Raw:
		return rt.Pattern + "..."
	case rt.Method != "":
		return rt.Method + " " + rt.Pattern
	}
	return rt.Pattern
}

// Public reports whether req would be served by a public route. The route is
// decided as ServeHTTP decides it: a request with the dapr-app-id header is
// an invocation whatever its path, and never public.
func (r *Router) Public(req *http.Request) bool {
	for _, hr := range r.header {
		if _, ok := req.Header[hr.name]; ok {
			return false
		}
	}
	p := req.URL.EscapedPath()
	for _, rr := range r.raw {
		if strings.HasPrefix(p, rr.prefix) {
			return false
		}
	}
	_, pattern := r.mux.Handler(req)
	return r.public[pattern]
}

// ServeHTTP implements http.Handler.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	for _, hr := range r.header {
		if _, ok := req.Header[hr.name]; ok {
			hr.h.ServeHTTP(w, req)
			return
		}
	}
	if len(r.raw) > 0 {
		p := req.URL.EscapedPath()
		for _, rr := range r.raw {
			if strings.HasPrefix(p, rr.prefix) {
				rr.h.ServeHTTP(w, req)
				return
			}
		}
	}
	r.mux.ServeHTTP(w, req)
}

// SpanName is the span name of a request to the route named route, as Dapr
// names them: CallLocal/<app-id>/<method> for invocation,
// /v1.0/state/<store> (and .../bulk, .../transaction) for state, the path
// for publish (/v1.0/publish/<pubsub>/<topic>), and the route name
// otherwise.
func SpanName(route string, r *http.Request) string {
	switch route {
	case "InvokeService":
		if id := r.Header.Get("Dapr-App-Id"); id != "" {
			return "CallLocal/" + id + "/" + strings.TrimPrefix(r.URL.Path, "/")
		}
		rest := strings.TrimPrefix(r.URL.Path, invokePrefix)
		id, rest, _ := strings.Cut(rest, "/")
		return "CallLocal/" + id + "/" + strings.TrimPrefix(rest, "method/")
	case "GetState", "SaveState", "DeleteState":
		return "/v1.0/state/" + r.PathValue("storeName")
	case "GetBulkState":
		return "/v1.0/state/" + r.PathValue("storeName") + "/bulk"
	case "ExecuteStateTransaction":
		return "/v1.0/state/" + r.PathValue("storeName") + "/transaction"
	case "PublishEvent", "BulkPublishEvent":
		return r.URL.Path
	}
	return route
}
