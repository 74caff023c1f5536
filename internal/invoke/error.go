package invoke

import (
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// ErrBodyTooLarge is returned, wrapped, when a request body exceeds the limit.
var ErrBodyTooLarge = errors.New("request body too large")

// Error is an invocation failure.
type Error struct {
	Kind  wire.Kind
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
	case wire.KindBadRequest:
		return apierr.New(apierr.CodeMalformedRequest, http.StatusBadRequest, codes.InvalidArgument, "%s", e.Error())
	case wire.KindBodyTooLarge:
		return apierr.New(apierr.CodeBodyTooLarge, http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
			"%s; raise it with --max-body-size", e.Error())
	case wire.KindShuttingDown:
		return apierr.New(apierr.CodeShuttingDown, http.StatusServiceUnavailable, codes.Unavailable, "%s", e.Error())
	case wire.KindPermissionDenied:
		return apierr.New(apierr.CodePermissionDenied, http.StatusForbidden, codes.PermissionDenied, "%s", e.Error())
	case wire.KindHeadersTooLarge:
		return apierr.New(apierr.CodeMalformedRequest, http.StatusRequestHeaderFieldsTooLarge, codes.ResourceExhausted, "%s", e.Error())
	case wire.KindOverloaded:
		return apierr.New(apierr.CodeDirectInvoke, http.StatusServiceUnavailable, codes.ResourceExhausted, "%s", e.Error())
	case wire.KindAppUnhealthy: // as daprd
		return apierr.New(apierr.CodeDirectInvoke, http.StatusInternalServerError, codes.Internal, "%s", e.Error())
	case wire.KindNotFound:
		return apierr.New(apierr.CodeDirectInvoke, http.StatusInternalServerError, codes.NotFound, "%s", e.Error())
	}
	return apierr.New(apierr.CodeDirectInvoke, http.StatusInternalServerError, codes.Unavailable, "%s", e.Error())
}

func errorf(kind wire.Kind, appID, addr string, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, AppID: appID, Addr: addr, Err: err, Msg: fmt.Sprintf(format, args...)}
}
