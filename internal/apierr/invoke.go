package apierr

import (
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// Invoke maps an invocation failure to its API error: the kind of a
// wire.Failure (an *invoke.Error) in err's chain says which; anything else is
// a 500 ERR_DIRECT_INVOKE.
func Invoke(err error) *Error { return As(err, CodeDirectInvoke) }

// invocation is how the API shows an invocation failure of kind k: the error
// code, HTTP status and gRPC code of its kind, and msg.
func invocation(k wire.Kind, msg string) *Error {
	switch k {
	case wire.KindBadRequest:
		return New(CodeMalformedRequest, http.StatusBadRequest, codes.InvalidArgument, "%s", msg)
	case wire.KindBodyTooLarge:
		return New(CodeBodyTooLarge, http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
			"%s; raise it with --max-body-size", msg)
	case wire.KindShuttingDown:
		return New(CodeShuttingDown, http.StatusServiceUnavailable, codes.Unavailable, "%s", msg)
	case wire.KindPermissionDenied:
		return New(CodePermissionDenied, http.StatusForbidden, codes.PermissionDenied, "%s", msg)
	case wire.KindHeadersTooLarge:
		return New(CodeMalformedRequest, http.StatusRequestHeaderFieldsTooLarge, codes.ResourceExhausted, "%s", msg)
	case wire.KindOverloaded:
		return New(CodeDirectInvoke, http.StatusServiceUnavailable, codes.ResourceExhausted, "%s", msg)
	case wire.KindAppUnhealthy: // as daprd
		return New(CodeDirectInvoke, http.StatusInternalServerError, codes.Internal, "%s", msg)
	case wire.KindNotFound:
		return New(CodeDirectInvoke, http.StatusInternalServerError, codes.NotFound, "%s", msg)
	}
	return New(CodeDirectInvoke, http.StatusInternalServerError, codes.Unavailable, "%s", msg)
}
