package apierr

import (
	"net/http"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// The two tables between HTTP statuses and gRPC codes, as Dapr maps them. They
// are about apps' answers, not the sidecar's own errors (those carry both in
// an *Error): a gRPC app's status shown to an HTTP caller, and an HTTP app's
// status shown to a gRPC caller.

// HTTPStatusFromCode is the HTTP status Dapr gives a gRPC app's status code.
func HTTPStatusFromCode(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return http.StatusRequestTimeout
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// CodeFromHTTPStatus is the gRPC code Dapr gives an HTTP app's status. 400
// is Internal there, not InvalidArgument: the caller's request to the sidecar
// was fine; the app refused it.
func CodeFromHTTPStatus(status int) codes.Code {
	if status >= 200 && status < 300 {
		return codes.OK
	}
	switch status {
	case http.StatusRequestTimeout:
		return codes.Canceled
	case http.StatusBadRequest:
		return codes.Internal
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusConflict:
		return codes.AlreadyExists
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.Unknown
}

// WriteAppStatus renders a gRPC app's error status st for an HTTP caller, as
// Dapr shows it: the app's header metadata h, the HTTP status of its code
// and the status as JSON.
func WriteAppStatus(w http.ResponseWriter, st *status.Status, h http.Header) {
	b, err := protojson.Marshal(st.Proto())
	if err != nil {
		b = []byte(`{"code":` + strconv.Itoa(int(st.Code())) + `}`)
	}
	out := w.Header()
	for k, vv := range h {
		out[k] = append(out[k], vv...)
	}
	out.Set("Content-Type", "application/json")
	out.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(HTTPStatusFromCode(st.Code()))
	_, _ = w.Write(b)
}
