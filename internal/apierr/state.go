package apierr

import (
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/pkg/state"
)

// State maps a state API failure to its API error; code is the operation's
// error code (CodeStateGet, CodeStateSave, ...).
func State(code string, err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, state.ErrStoreNotFound):
		return New(CodeStateStoreNotFound, http.StatusBadRequest, codes.InvalidArgument, "%v", err)
	case errors.Is(err, state.ErrTooManyOperations):
		return New(CodeStateTooManyTransactions, http.StatusBadRequest, codes.InvalidArgument, "%v", err)
	case errors.Is(err, state.ErrIllegalKey):
		e := Malformed("%v", err)
		e.Reason = ReasonStateIllegalKey
		return e
	case errors.Is(err, state.ErrBadRequest), errors.Is(err, state.ErrTooLarge):
		return New(CodeMalformedRequest, http.StatusBadRequest, codes.InvalidArgument, "%v", err)
	case errors.Is(err, state.ErrUnsupportedOperation):
		return New(CodeStateUnsupportedOp, http.StatusBadRequest, codes.InvalidArgument, "%v", err)
	case errors.Is(err, state.ErrETagMismatch):
		return New(code, http.StatusConflict, codes.Aborted, "%v", err)
	case errors.Is(err, state.ErrETagInvalid), errors.Is(err, state.ErrNotAtomic):
		return New(code, http.StatusBadRequest, codes.InvalidArgument, "%v", err)
	default:
		return New(code, http.StatusInternalServerError, codes.Internal, "%v", err)
	}
}
