package apierr

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// failure is an invocation failure of a kind, as *invoke.Error is one.
type failure struct {
	kind wire.Kind
	msg  string
}

func (f *failure) Error() string          { return f.msg }
func (f *failure) FailureKind() wire.Kind { return f.kind }

var _ wire.Failure = (*failure)(nil)

// Every kind of invocation failure shows as the error code, HTTP status
// and gRPC code users see, with the failure's own message, wherever in the
// chain it is.
func TestInvokeErrors(t *testing.T) {
	for _, c := range []struct {
		kind   wire.Kind
		code   string
		status int
		grpc   codes.Code
		msg    string
	}{
		{wire.KindBadRequest, CodeMalformedRequest, 400, codes.InvalidArgument, "m"},
		{wire.KindBodyTooLarge, CodeBodyTooLarge, 413, codes.ResourceExhausted, "m; raise it with --max-body-size"},
		{wire.KindShuttingDown, CodeShuttingDown, 503, codes.Unavailable, "m"},
		{wire.KindPermissionDenied, CodePermissionDenied, 403, codes.PermissionDenied, "m"},
		{wire.KindHeadersTooLarge, CodeMalformedRequest, 431, codes.ResourceExhausted, "m"},
		{wire.KindOverloaded, CodeDirectInvoke, 503, codes.ResourceExhausted, "m"},
		{wire.KindAppUnhealthy, CodeDirectInvoke, 500, codes.Internal, "m"},
		{wire.KindNotFound, CodeDirectInvoke, 500, codes.NotFound, "m"},
		{wire.KindUnreachable, CodeDirectInvoke, 500, codes.Unavailable, "m"},
		{wire.KindAppUnreachable, CodeDirectInvoke, 500, codes.Unavailable, "m"},
		{wire.KindNoApp, CodeDirectInvoke, 500, codes.Unavailable, "m"},
		{wire.KindWrongTarget, CodeDirectInvoke, 500, codes.Unavailable, "m"},
		{wire.KindMTLS, CodeDirectInvoke, 500, codes.Unavailable, "m"},
		{"from-a-newer-peer", CodeDirectInvoke, 500, codes.Unavailable, "m"},
	} {
		t.Run(string(c.kind), func(t *testing.T) {
			for _, err := range []error{&failure{c.kind, "m"}, fmt.Errorf("wrapped: %w", &failure{c.kind, "m"})} {
				e := Invoke(err)
				if e.Code != c.code || e.HTTPStatus != c.status || e.GRPCCode != c.grpc || e.Message != c.msg {
					t.Errorf("Invoke(%v) = %s %d %s %q, want %s %d %s %q", err, e.Code, e.HTTPStatus, e.GRPCCode, e.Message, c.code, c.status, c.grpc, c.msg)
				}
				if w := As(err, "ERR_INTERNAL"); w.Code != c.code || w.HTTPStatus != c.status {
					t.Errorf("As(%v) = %s %d, want %s %d", err, w.Code, w.HTTPStatus, c.code, c.status)
				}
			}
		})
	}
	if e := Invoke(errors.New("reading the answer: EOF")); e.Code != CodeDirectInvoke || e.HTTPStatus != 500 || e.GRPCCode != codes.Internal {
		t.Errorf("Invoke of a plain error = %s %d %s, want ERR_DIRECT_INVOKE 500 Internal", e.Code, e.HTTPStatus, e.GRPCCode)
	}
}
