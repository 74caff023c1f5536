// Package apierr is the error catalog of the API edge: it maps what went wrong
// to the error code Dapr users and SDKs recognise, an HTTP status and a gRPC
// code, and renders the one JSON body every error has:
//
//	{"errorCode":"ERR_...","message":"..."}
//
// Domain packages return plain, wrapped errors; only the adapters in
// internal/api turn them into *Error values, through the constructors and
// the mappings here (State, PubSub, Invoke). An invocation failure is known
// by its kind (internal/invoke/wire), so this package needs nothing of the
// invoker.
package apierr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// Error codes, as Dapr names them.
const (
	CodeMalformedRequest   = "ERR_MALFORMED_REQUEST"
	CodeDirectInvoke       = "ERR_DIRECT_INVOKE"
	CodeBodyTooLarge       = "ERR_BODY_TOO_LARGE"
	CodeHealthNotReady     = "ERR_HEALTH_NOT_READY"
	CodeStateStoreNotFound = "ERR_STATE_STORE_NOT_FOUND"
	CodeStateGet           = "ERR_STATE_GET"
	CodeStateSave          = "ERR_STATE_SAVE"
	CodeStateDelete        = "ERR_STATE_DELETE"
	CodeStateBulkGet       = "ERR_STATE_BULK_GET"
	CodeStateTransaction   = "ERR_STATE_TRANSACTION"
	CodeStateUnsupportedOp = "ERR_NOT_SUPPORTED_STATE_OPERATION"
	// CodeStateTooManyTransactions is daprd's code for a transaction over
	// its store's operation limit.
	CodeStateTooManyTransactions = "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS"
	CodeNotFound                 = "ERR_NOT_FOUND"
	CodeShuttingDown             = "ERR_SHUTTING_DOWN"
	CodePermissionDenied         = "ERR_PERMISSION_DENIED"
	// CodeForbiddenOrigin and CodeForbiddenHost are ours, in Dapr's style:
	// a browser page's request from an origin not in --allowed-origins,
	// and a request whose Host is not a name of the sidecar
	// (--allowed-hosts). Both are 403.
	CodeForbiddenOrigin = "ERR_FORBIDDEN_ORIGIN"
	CodeForbiddenHost   = "ERR_FORBIDDEN_HOST"
	CodeInvalidToken    = "invalid api token"
	// CodeTooManyRequests is ours (daprd has no bound of the kind): the
	// sidecar has as many calls in flight as it takes.
	CodeTooManyRequests = "ERR_TOO_MANY_REQUESTS"
)

// daprd's gRPC ErrorInfo reasons (its richer error model, daprd 1.14's
// pkg/api/errors), for the cases it gives one.
const (
	ReasonStateNotFound            = "DAPR_STATE_NOT_FOUND"
	ReasonStateTooManyTransactions = "DAPR_STATE_TOO_MANY_TRANSACTIONS"
	ReasonStateIllegalKey          = "DAPR_STATE_ILLEGAL_KEY"
)

// reasons maps the error codes for which daprd always sends an ErrorInfo
// to its reason. A code daprd shares between cases (ERR_MALFORMED_REQUEST,
// DAPR_STATE_ILLEGAL_KEY only for a key with "||") is not here: the case
// sets Error.Reason.
var reasons = map[string]string{
	CodeStateStoreNotFound:       ReasonStateNotFound,
	CodeStateTooManyTransactions: ReasonStateTooManyTransactions,
	CodePubSubNotFound:           ReasonPubSubNotFound,
	CodePubSubEmpty:              ReasonPubSubNameEmpty,
	CodeTopicNameEmpty:           ReasonPubSubTopicNameEmpty,
	CodePubSubRequestMetadata:    ReasonPubSubMetadata,
	CodePubSubCloudEventsSer:     ReasonPubSubCloudEventCreation,
	CodePubSubForbidden:          ReasonPubSubForbidden,
	CodePubSubPublishMessage:     ReasonPubSubPublishMessage,
}

// Error is an error as the API shows it.
type Error struct {
	Code       string
	HTTPStatus int
	GRPCCode   codes.Code
	Message    string
	// Reason, when set, is the gRPC ErrorInfo reason: daprd's for one case
	// of a code it shares between cases (a key with "||" is
	// ERR_MALFORMED_REQUEST and DAPR_STATE_ILLEGAL_KEY).
	Reason string
	Err    error // the cause, if any
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

// Domain is the ErrorInfo domain of gRPC errors, as Dapr sets it.
const Domain = "dapr.io"

// ErrorInfoReason is the reason of e's gRPC ErrorInfo: daprd's where daprd
// sends one (SDKs match on it: the Python SDK's error_code()), else the
// error code (ERR_STATE_GET, ERR_DIRECT_INVOKE, ...), where daprd sends no
// ErrorInfo at all.
func (e *Error) ErrorInfoReason() string {
	if e.Reason != "" {
		return e.Reason
	}
	if r, ok := reasons[e.Code]; ok {
		return r
	}
	return e.Code
}

// GRPCStatus renders the error for gRPC: its code and message, and an
// ErrorInfo of domain dapr.io whose reason is ErrorInfoReason (Dapr's
// richer error model). A gRPC handler can return an *Error as it is.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.GRPCCode, e.Message)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.ErrorInfoReason(), Domain: Domain}); err == nil {
		return d
	}
	return st
}

// New returns an Error whose message is formatted from format and args. When
// the last arg is an error it becomes the cause (it is also formatted).
func New(code string, status int, grpcCode codes.Code, format string, args ...any) *Error {
	e := &Error{Code: code, HTTPStatus: status, GRPCCode: grpcCode, Message: fmt.Sprintf(format, args...)}
	if len(args) > 0 {
		if cause, ok := args[len(args)-1].(error); ok {
			e.Err = cause
		}
	}
	return e
}

// Malformed is a 400 ERR_MALFORMED_REQUEST.
func Malformed(format string, args ...any) *Error {
	return New(CodeMalformedRequest, http.StatusBadRequest, codes.InvalidArgument, format, args...)
}

// BodyTooLarge is a 413 ERR_BODY_TOO_LARGE for a body over limit bytes.
func BodyTooLarge(limit int64) *Error {
	return New(CodeBodyTooLarge, http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
		"request body is larger than the limit of %d bytes; raise it with --max-body-size (for example --max-body-size 16Mi)", limit)
}

// As returns err as an *Error: itself, or the API error of an invocation
// failure in its chain (see Invoke). Any other error becomes a 500 with
// fallbackCode, so that nothing reaches the user without a code.
func As(err error, fallbackCode string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var f wire.Failure
	if errors.As(err, &f) {
		return invocation(f.FailureKind(), f.Error())
	}
	return New(fallbackCode, http.StatusInternalServerError, codes.Internal, "%v", err)
}

// body is the JSON shape of every error response.
type body struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

// Write renders err on w. Errors that are not *Error are 500 ERR_INTERNAL.
func Write(w http.ResponseWriter, err error) {
	e := As(err, "ERR_INTERNAL")
	b, _ := json.Marshal(body{ErrorCode: e.Code, Message: e.Message})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(e.HTTPStatus)
	_, _ = w.Write(b)
}
