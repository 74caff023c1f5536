package invoke

import (
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
)

// Kind says what went wrong with an invocation, so the API edge can pick the
// status and error code.
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

// ErrBodyTooLarge is returned, wrapped, when a request body exceeds the limit.
var ErrBodyTooLarge = errors.New("request body too large")

// Error is an invocation failure.
type Error struct {
	Kind  Kind
	AppID string // the target app id
	Addr  string // the address tried, if any
	Msg   string
	Err   error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// APIError is how the API shows e (apierr.Coded): the error code, HTTP
// status and gRPC code of its kind.
func (e *Error) APIError() *apierr.Error {
	switch e.Kind {
	case KindBadRequest:
		return apierr.New(apierr.CodeMalformedRequest, http.StatusBadRequest, codes.InvalidArgument, "%s", e.Error())
	case KindBodyTooLarge:
		return apierr.New(apierr.CodeBodyTooLarge, http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
			"%s; raise it with --max-body-size", e.Error())
	case KindShuttingDown:
		return apierr.New(apierr.CodeShuttingDown, http.StatusServiceUnavailable, codes.Unavailable, "%s", e.Error())
	case KindPermissionDenied:
		return apierr.New(apierr.CodePermissionDenied, http.StatusForbidden, codes.PermissionDenied, "%s", e.Error())
	case KindHeadersTooLarge:
		return apierr.New(apierr.CodeMalformedRequest, http.StatusRequestHeaderFieldsTooLarge, codes.ResourceExhausted, "%s", e.Error())
	case KindOverloaded:
		return apierr.New(apierr.CodeDirectInvoke, http.StatusServiceUnavailable, codes.ResourceExhausted, "%s", e.Error())
	case KindAppUnhealthy: // as daprd
		return apierr.New(apierr.CodeDirectInvoke, http.StatusInternalServerError, codes.Internal, "%s", e.Error())
	case KindNotFound:
		return apierr.New(apierr.CodeDirectInvoke, http.StatusInternalServerError, codes.NotFound, "%s", e.Error())
	}
	return apierr.New(apierr.CodeDirectInvoke, http.StatusInternalServerError, codes.Unavailable, "%s", e.Error())
}

func errorf(kind Kind, appID, addr string, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, AppID: appID, Addr: addr, Err: err, Msg: fmt.Sprintf(format, args...)}
}
