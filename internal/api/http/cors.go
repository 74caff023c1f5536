package httpapi

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// CORS lets browsers on origins call h from another origin
// (--allowed-origins). An origin is scheme://host[:port], matched without
// regard to case; one "*" in it matches any run of characters
// (https://*.example.com). A preflight (OPTIONS with Origin and
// Access-Control-Request-Method) is answered here, 204, before h and its API
// token check, which a browser's preflight cannot pass: for an allowed
// origin with the method and headers it asks for, for another without CORS
// headers, so the browser refuses the call. Other requests from an allowed
// origin get Access-Control-Allow-Origin. With no origins, h is returned as
// it is: no CORS headers at all, daprd's default ("*").
func CORS(origins []string, h http.Handler) http.Handler {
	if len(origins) == 0 {
		return h
	}
	allowed := func(origin string) bool {
		origin = strings.ToLower(origin)
		for _, o := range origins {
			if pre, suf, wild := strings.Cut(o, "*"); wild {
				if len(origin) >= len(pre)+len(suf) && strings.HasPrefix(origin, pre) && strings.HasSuffix(origin, suf) {
					return true
				}
			} else if origin == o {
				return true
			}
		}
		return false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			h.ServeHTTP(w, r)
			return
		}
		hdr := w.Header()
		method := r.Header.Get("Access-Control-Request-Method")
		if r.Method == http.MethodOptions && method != "" {
			hdr.Add("Vary", "Origin")
			hdr.Add("Vary", "Access-Control-Request-Method")
			hdr.Add("Vary", "Access-Control-Request-Headers")
			if allowed(origin) && httpguts.ValidHeaderFieldName(method) {
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
		hdr.Add("Vary", "Origin")
		if allowed(origin) {
			hdr.Set("Access-Control-Allow-Origin", origin)
		}
		h.ServeHTTP(w, r)
	})
}
