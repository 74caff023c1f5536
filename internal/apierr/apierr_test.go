package apierr

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/pkg/state"
)

// errorInfo returns the ErrorInfo of e's gRPC status.
func errorInfo(t *testing.T, e *Error) *errdetails.ErrorInfo {
	t.Helper()
	for _, d := range e.GRPCStatus().Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	t.Fatalf("%s: no ErrorInfo in the gRPC status", e.Code)
	return nil
}

// The ErrorInfo reason of every code in the catalog: daprd's (1.14,
// pkg/api/errors) where daprd sends one, the code itself where daprd sends
// no ErrorInfo. SDKs match on these, so a change here is a change users
// see.
func TestErrorInfoReasons(t *testing.T) {
	for _, c := range []struct{ code, reason string }{
		{CodeStateStoreNotFound, "DAPR_STATE_NOT_FOUND"},
		{CodeStateTooManyTransactions, "DAPR_STATE_TOO_MANY_TRANSACTIONS"},
		{CodeMalformedRequest, "ERR_MALFORMED_REQUEST"},
		{CodeDirectInvoke, "ERR_DIRECT_INVOKE"},
		{CodeBodyTooLarge, "ERR_BODY_TOO_LARGE"},
		{CodeHealthNotReady, "ERR_HEALTH_NOT_READY"},
		{CodeStateGet, "ERR_STATE_GET"},
		{CodeStateSave, "ERR_STATE_SAVE"},
		{CodeStateDelete, "ERR_STATE_DELETE"},
		{CodeStateBulkGet, "ERR_STATE_BULK_GET"},
		{CodeStateTransaction, "ERR_STATE_TRANSACTION"},
		{CodeStateUnsupportedOp, "ERR_NOT_SUPPORTED_STATE_OPERATION"},
		{CodeNotFound, "ERR_NOT_FOUND"},
		{CodeShuttingDown, "ERR_SHUTTING_DOWN"},
		{CodePermissionDenied, "ERR_PERMISSION_DENIED"},
		{CodeInvalidToken, "invalid api token"},
		{CodePubSubNotFound, "DAPR_PUBSUB_NOT_FOUND"},
		{CodePubSubEmpty, "DAPR_PUBSUB_NAME_EMPTY"},
		{CodeTopicNameEmpty, "DAPR_PUBSUB_TOPIC_NAME_EMPTY"},
		{CodePubSubRequestMetadata, "DAPR_PUBSUB_METADATA_DESERIALIZATION"},
		{CodePubSubCloudEventsSer, "DAPR_PUBSUB_CLOUD_EVENT_CREATION"},
		{CodePubSubForbidden, "DAPR_PUBSUB_FORBIDDEN"},
		{CodePubSubPublishMessage, "DAPR_PUBSUB_PUBLISH_MESSAGE"},
	} {
		t.Run(c.code, func(t *testing.T) {
			e := New(c.code, http.StatusBadRequest, codes.InvalidArgument, "m")
			info := errorInfo(t, e)
			if info.GetReason() != c.reason || info.GetDomain() != "dapr.io" {
				t.Errorf("ErrorInfo %s/%s, want dapr.io/%s", info.GetDomain(), info.GetReason(), c.reason)
			}
		})
	}
}

// State failures carry daprd's HTTP code and gRPC code, and daprd's
// ErrorInfo reason where it has one.
func TestStateErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		op     string // the operation's code
		err    error
		code   string
		status int
		grpc   codes.Code
		reason string
	}{
		{"unknown store", CodeStateGet, fmt.Errorf("state store %q is not configured: %w", "x", state.ErrStoreNotFound), CodeStateStoreNotFound, 400, codes.InvalidArgument, "DAPR_STATE_NOT_FOUND"},
		{"too many operations", CodeStateTransaction, fmt.Errorf("1001 operations: %w", state.ErrTooManyOperations), CodeStateTooManyTransactions, 400, codes.InvalidArgument, "DAPR_STATE_TOO_MANY_TRANSACTIONS"},
		{"key with ||", CodeStateSave, fmt.Errorf(`key "a||b": %w`, state.ErrIllegalKey), CodeMalformedRequest, 400, codes.InvalidArgument, "DAPR_STATE_ILLEGAL_KEY"},
		{"empty key", CodeStateGet, fmt.Errorf("key is empty: %w", state.ErrBadRequest), CodeMalformedRequest, 400, codes.InvalidArgument, "ERR_MALFORMED_REQUEST"},
		{"etag mismatch", CodeStateSave, fmt.Errorf("k: %w", state.ErrETagMismatch), CodeStateSave, 409, codes.Aborted, "ERR_STATE_SAVE"},
		{"keys of several hash slots", CodeStateTransaction, fmt.Errorf(`keys "a" (slot 1); "b" (slot 2): %w`, state.ErrNotAtomic), CodeStateTransaction, 400, codes.InvalidArgument, "ERR_STATE_TRANSACTION"},
		{"store failure", CodeStateGet, errors.New("connection refused"), CodeStateGet, 500, codes.Internal, "ERR_STATE_GET"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := State(c.op, c.err)
			if e.Code != c.code || e.HTTPStatus != c.status || e.GRPCCode != c.grpc {
				t.Errorf("%s %d %s, want %s %d %s", e.Code, e.HTTPStatus, e.GRPCCode, c.code, c.status, c.grpc)
			}
			if r := errorInfo(t, e).GetReason(); r != c.reason {
				t.Errorf("ErrorInfo reason %s, want %s", r, c.reason)
			}
		})
	}
}
