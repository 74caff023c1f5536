// Package dashboard is a page of traces for the calculator's local runner. It
// reads the spans from the trace collector the sidecars export to, through
// Jaeger's query API (GET /api/services and /api/traces), so the page, the
// end-to-end tests and a developer's curl all read the one collector. The
// page lists recent traces and draws the one picked as a waterfall: a row per
// span, indented under its parent, with its service, name, kind, timing and
// attributes.
//
// The page is plain HTML, CSS and JavaScript embedded in the binary: no build
// step and nothing loaded from elsewhere. Only the read routes of the query
// API are passed through, unchanged, so the browser talks to one origin.
package dashboard

import (
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httputil"
	"net/url"
)

//go:embed static
var static embed.FS

// Handler serves the page at / and passes GET /api/services,
// /api/traces?service=… and /api/traces/{id} to the query API at query
// (such as http://127.0.0.1:16686). A collector that does not answer is a
// 502 naming it.
func Handler(query *url.URL) http.Handler {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(query)
			r.Out.Header.Del("Cookie")
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, fmt.Sprintf("the trace collector's query API at %s does not answer: %v", query, err), http.StatusBadGateway)
		},
	}
	sub, _ := fs.Sub(static, "static") // a valid name: cannot fail
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(sub))
	mux.Handle("GET /api/services", proxy)
	mux.Handle("GET /api/traces", proxy)
	mux.Handle("GET /api/traces/{id}", proxy)
	return mux
}
