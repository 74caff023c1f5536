package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/pkg/resolver"
	"google.golang.org/grpc/codes"
)

const invokePrefix = "/v1.0/invoke/"

// InvokeRoutes is the invocation API: /v1.0/invoke/{app-id}/method/{method...}
// with any verb, and the same call made on any path with a dapr-app-id header.
func InvokeRoutes(inv invoke.Caller) []Route {
	h := &invokeHandler{inv: inv}
	return []Route{
		{Pattern: invokePrefix, Raw: true, Name: "InvokeService", Handler: h.byPath},
		{Header: wire.AppID, Name: "InvokeService", Handler: h.byHeader},
	}
}

type invokeHandler struct{ inv invoke.Caller }

// byPath serves /v1.0/invoke/{app-id}/method/{method...}.
func (h *invokeHandler) byPath(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), invokePrefix)
	id, rest, _ := strings.Cut(rest, "/")
	if id == "" {
		apierr.Write(w, apierr.New(apierr.CodeDirectInvoke, http.StatusNotFound, codes.NotFound,
			"no app id in the request: call /v1.0/invoke/<app-id>/method/<method>"))
		return
	}
	method, ok := strings.CutPrefix(rest, "method/")
	if !ok {
		apierr.Write(w, apierr.New(apierr.CodeDirectInvoke, http.StatusNotFound, codes.NotFound,
			"no method in the request: call /v1.0/invoke/%s/method/<method>", id))
		return
	}
	h.serve(w, r, id, method)
}

// byHeader serves the dapr-app-id form: the whole path is the method.
func (h *invokeHandler) byHeader(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(wire.AppID)
	if id == "" {
		apierr.Write(w, apierr.New(apierr.CodeDirectInvoke, http.StatusNotFound, codes.NotFound,
			"the dapr-app-id header is empty: set it to the id of the app to call"))
		return
	}
	h.serve(w, r, id, strings.TrimPrefix(r.URL.EscapedPath(), "/"))
}

func (h *invokeHandler) serve(w http.ResponseWriter, r *http.Request, id, method string) {
	target, err := resolver.ParseTarget(id)
	if err != nil {
		apierr.Write(w, apierr.Malformed("invalid app id: %v", err))
		return
	}
	method, err = invoke.ParseMethod(method)
	if err != nil {
		apierr.Write(w, apierr.Malformed("invalid method path: %v", err))
		return
	}
	body := r.Body
	if r.ContentLength == 0 {
		body = nil
	}
	resp, err := h.inv.Invoke(r.Context(), &invoke.Call{
		Target:        target,
		Method:        method,
		Verb:          r.Method,
		RawQuery:      r.URL.RawQuery,
		Header:        r.Header, // the handler owns it; Invoke edits it in place
		Body:          body,
		ContentLength: r.ContentLength,
		RemoteAddr:    r.RemoteAddr,
		Host:          r.Host,
	})
	if ae := (*invoke.AppError)(nil); errors.As(err, &ae) {
		apierr.WriteAppStatus(w, ae.Status, ae.Header) // a gRPC app's status, as Dapr shows it
		return
	}
	if err != nil {
		apierr.Write(w, apierr.Invoke(err))
		return
	}
	defer resp.Body.Close()
	if body != nil {
		// Go on reading the request while the answer streams back
		// (HTTP/1.1). Only now: an error answered early, before the body
		// was read, must not leave the server reading ahead in full duplex.
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	_ = invoke.WriteResponse(w, resp)
}
