package apierr

import (
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/invoke"
)

// Invoke maps an invocation failure to its API error.
func Invoke(err error) *Error {
	var ie *invoke.Error
	if !errors.As(err, &ie) {
		return As(err, CodeDirectInvoke)
	}
	switch ie.Kind {
	case invoke.KindBadRequest:
		return New(CodeMalformedRequest, http.StatusBadRequest, codes.InvalidArgument, "%s", ie.Error())
	case invoke.KindBodyTooLarge:
		return New(CodeBodyTooLarge, http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
			"%s; raise it with --max-body-size", ie.Error())
	case invoke.KindShuttingDown:
		return New(CodeShuttingDown, http.StatusServiceUnavailable, codes.Unavailable, "%s", ie.Error())
	case invoke.KindPermissionDenied:
		return New(CodePermissionDenied, http.StatusForbidden, codes.PermissionDenied, "%s", ie.Error())
	case invoke.KindHeadersTooLarge:
		return New(CodeMalformedRequest, http.StatusRequestHeaderFieldsTooLarge, codes.ResourceExhausted, "%s", ie.Error())
	case invoke.KindOverloaded:
		return New(CodeDirectInvoke, http.StatusServiceUnavailable, codes.ResourceExhausted, "%s", ie.Error())
	case invoke.KindNotFound:
		return New(CodeDirectInvoke, http.StatusInternalServerError, codes.NotFound, "%s", ie.Error())
	default:
		return New(CodeDirectInvoke, http.StatusInternalServerError, codes.Unavailable, "%s", ie.Error())
	}
}
