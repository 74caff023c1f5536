// Package wire is the vocabulary of service invocation on the wire: the
// headers a sidecar sets on a call, what kind of call it is, the kinds of
// invocation failure, and how the internal hop carries an error of the
// callee's sidecar back to the caller's.
//
// It imports no package of ours, so that what speaks it without making
// calls (access control, telemetry, the API token check, the error
// catalog) needs nothing of internal/invoke.
package wire

import (
	"io"
	"net/http"
	"strings"
)

// Headers the sidecar sets on every invocation. Values an app sends under
// these names are replaced, never trusted.
const (
	CallerAppID     = "Dapr-Caller-App-Id"
	CallerNamespace = "Dapr-Caller-Namespace"
	CalleeAppID     = "Dapr-Callee-App-Id"
	AppID           = "Dapr-App-Id" // the header form of invocation
	APIToken        = "Dapr-Api-Token"
	// HopError marks a response of the internal hop that carries an
	// error of the callee sidecar rather than the app's answer; its value
	// is the error's Kind.
	HopError = "Tandem-Hop-Error"
	// CallKind says on the hop what the caller's sidecar made the call
	// from: "grpc-proxy" for a gRPC call proxied from its gRPC port,
	// "http" for everything else. The callee's sidecar decides on it, not
	// on a Content-Type the calling app picks; it never reaches the app.
	CallKind = "Tandem-Call-Kind"
	// GRPCStatus carries, on an HTTP-shaped answer of a gRPC app, the
	// gRPC status code the app returned, so that a gRPC caller gets that
	// code back rather than one guessed from the HTTP status.
	GRPCStatus = "Tandem-Grpc-Status"
)

// The values of CallKind, one backing array each: setting them allocates
// nothing.
var (
	callKindGRPC = []string{"grpc-proxy"}
	callKindHTTP = []string{"http"}
)

// SetCallKind sets CallKind on h, the header of a call on the hop:
// "grpc-proxy" when grpcProxy, else "http".
func SetCallKind(h http.Header, grpcProxy bool) {
	if grpcProxy {
		h[CallKind] = callKindGRPC
	} else {
		h[CallKind] = callKindHTTP
	}
}

// IsGRPC reports whether a request or response header is that of a gRPC
// call: content type application/grpc, application/grpc+proto, ...
func IsGRPC(h http.Header) bool {
	ct := h.Get("Content-Type")
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// IsGRPCProxy reports whether h, the header of a call on the hop, is that of
// a gRPC call proxied from a caller's gRPC port. A peer of the previous
// release sends no CallKind; its calls are judged by Content-Type, as that
// release did.
func IsGRPCProxy(h http.Header) bool {
	switch v := h[CallKind]; {
	case len(v) == 0:
		return IsGRPC(h)
	case len(v) == 1 && v[0] == callKindGRPC[0]:
		return IsGRPC(h)
	}
	return false
}

// Kind says what went wrong with an invocation, so the API edge can pick the
// status and error code. A callee's sidecar sends it to the caller's in
// HopError.
type Kind string

// The kinds of invocation failure.
const (
	KindNotFound         Kind = "not-found"         // no sidecar of the app id is known
	KindUnreachable      Kind = "unreachable"       // the peer sidecar did not answer
	KindAppUnreachable   Kind = "app-unreachable"   // the target app did not answer its sidecar
	KindAppUnhealthy     Kind = "app-unhealthy"     // the target app fails its health checks
	KindNoApp            Kind = "no-app"            // the target sidecar has no app port
	KindWrongTarget      Kind = "wrong-target"      // the hop reached a sidecar of another app
	KindBadRequest       Kind = "bad-request"       // the call itself is malformed
	KindBodyTooLarge     Kind = "body-too-large"    // the request body is over the limit
	KindShuttingDown     Kind = "shutting-down"     // the sidecar is draining
	KindPermissionDenied Kind = "permission-denied" // the callee's access control refuses the call
	KindHeadersTooLarge  Kind = "headers-too-large" // the header list is over the peer's limit
	KindOverloaded       Kind = "overloaded"        // the callee's sidecar has too many calls in flight
	KindMTLS             Kind = "mtls"              // the peer requires mutual TLS, which this sidecar does not run
)

// Failure is an invocation failure that says its kind (*invoke.Error): how
// the error catalog finds the kind in an error's chain without importing
// the invoker.
type Failure interface {
	error
	FailureKind() Kind
}

// maxErrorMessage bounds the message of a hop error that ReadError reads.
const maxErrorMessage = 64 << 10

// WriteError answers a peer sidecar with an error of this sidecar (not of
// the app): status, HopError set to kind, and msg as plain text. The peer
// reads it with ReadError.
func WriteError(w http.ResponseWriter, status int, kind Kind, msg string) {
	h := w.Header()
	h.Set(HopError, string(kind))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

// ReadError reads the error of a callee's sidecar from resp, a response of
// the hop, and closes its body. ok is false, and resp left as it is, when
// resp is no such error (HopError is not set). Of the message, the first
// 64 KiB are read.
func ReadError(resp *http.Response) (kind Kind, msg string, ok bool) {
	kind = Kind(resp.Header.Get(HopError))
	if kind == "" {
		return "", "", false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorMessage))
	return kind, string(b), true
}
