package invoke

import (
	"errors"
	"fmt"

	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// ErrBodyTooLarge is returned, wrapped, when a request body exceeds the limit.
var ErrBodyTooLarge = errors.New("request body too large")

// Error is an invocation failure. Its kind says what went wrong; the API
// edge (internal/apierr) picks the status and error code from it.
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

// FailureKind is e's kind (wire.Failure).
func (e *Error) FailureKind() wire.Kind { return e.Kind }

func errorf(kind wire.Kind, appID, addr string, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, AppID: appID, Addr: addr, Err: err, Msg: fmt.Sprintf(format, args...)}
}

var _ wire.Failure = (*Error)(nil)
