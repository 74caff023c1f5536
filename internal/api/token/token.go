// Package token guards the sidecar's APIs with the API token
// (DAPR_API_TOKEN): every HTTP request and gRPC call must carry it in the
// dapr-api-token header or metadata, compared in constant time. The only
// exemptions are GET /v1.0/healthz and GET /v1.0/healthz/outbound, matched
// exactly, so that probes work, and only when the router serves the request
// with a health route: a request that is an invocation (the dapr-app-id
// header on any path) needs the token whatever its path. Nothing else in a
// path, query or header exempts a request.
package token

import (
	"crypto/subtle"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/tap"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// Guard checks tokens against one expected value.
type Guard struct{ want []byte }

// New returns a Guard, or nil when token is empty (no guard).
func New(token string) *Guard {
	if token == "" {
		return nil
	}
	return &Guard{want: []byte(token)}
}

func (g *Guard) ok(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), g.want) == 1
}

func unauthorized() *apierr.Error {
	return apierr.New(apierr.CodeInvalidToken, http.StatusUnauthorized, codes.Unauthenticated,
		"invalid api token: send the dapr-api-token header (gRPC metadata) with the value of the sidecar's DAPR_API_TOKEN")
}

// probe reports whether r looks like a health probe: a GET of exactly one of
// the two health paths, as sent (no cleaning, no decoding).
func probe(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	p := r.URL.EscapedPath()
	return (p == "/v1.0/healthz" || p == "/v1.0/healthz/outbound") && r.URL.Path == p
}

// HTTP wraps an API handler. public reports whether next serves a request
// with a public route (the router decides; see httpapi.Router.Public); a
// request is exempt only when it is a probe and public says so. A nil Guard
// returns next as it is.
func (g *Guard) HTTP(next http.Handler, public func(*http.Request) bool) http.Handler {
	if g == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !probe(r) || !public(r) {
			vv := r.Header[wire.APIToken]
			if len(vv) != 1 || !g.ok(vv[0]) {
				apierr.Write(w, unauthorized())
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// GRPC checks a gRPC call's token in its headers. The gRPC API runs it on
// every call as the call's headers arrive (see grpcapi.Config.Admit),
// proxied calls included, before anything of the call is read: a call
// without the token ends Unauthenticated at once, whether or not it ever
// sends a message. The health service's Check and Watch are exempt. A nil
// Guard admits every call.
func (g *Guard) GRPC(info *tap.Info) error {
	if g == nil || info.FullMethodName == "/grpc.health.v1.Health/Check" || info.FullMethodName == "/grpc.health.v1.Health/Watch" {
		return nil
	}
	vv := info.Header.Get(wire.APIToken) // Get lower-cases the key, as metadata keys are
	if len(vv) != 1 || !g.ok(vv[0]) {
		return unauthorized()
	}
	return nil
}
