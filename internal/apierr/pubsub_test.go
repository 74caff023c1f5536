package apierr

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Publish failures carry daprd's error code, HTTP status, gRPC code and
// ErrorInfo reason, but for a body that is not the CloudEvent it says it
// is (400 here, 500 in daprd) and a topic name with control characters
// (daprd takes it).
func TestPubSubErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		e      *Error
		code   string
		status int
		grpc   codes.Code
		reason string
	}{
		{"unknown pubsub", PubSub(fmt.Errorf("pubsub %q is not configured: %w", "x", pubsub.ErrNotFound)), CodePubSubNotFound, 404, codes.InvalidArgument, "DAPR_PUBSUB_NOT_FOUND"},
		{"no pubsub name", PubSubNameEmpty(), CodePubSubEmpty, 404, codes.InvalidArgument, "DAPR_PUBSUB_NAME_EMPTY"},
		{"no topic", TopicNameEmpty("pubsub"), CodeTopicNameEmpty, 404, codes.InvalidArgument, "DAPR_PUBSUB_TOPIC_NAME_EMPTY"},
		{"bad topic", PubSub(fmt.Errorf("topic %q holds a control character: %w", "a\n", pubsub.ErrBadTopic)), CodeMalformedRequest, 400, codes.InvalidArgument, "ERR_MALFORMED_REQUEST"},
		{"bad metadata", PubSub(fmt.Errorf("metadata rawPayload %q: %w", "yes please", pubsub.ErrBadMetadata)), CodePubSubRequestMetadata, 400, codes.InvalidArgument, "DAPR_PUBSUB_METADATA_DESERIALIZATION"},
		{"bad cloud event", PubSub(fmt.Errorf("not an object: %w", pubsub.ErrBadCloudEvent)), CodePubSubCloudEventsSer, 400, codes.InvalidArgument, "DAPR_PUBSUB_CLOUD_EVENT_CREATION"},
		{"forbidden", PubSub(fmt.Errorf("topic %q is not allowed: %w", "t", pubsub.ErrForbidden)), CodePubSubForbidden, 403, codes.PermissionDenied, "DAPR_PUBSUB_FORBIDDEN"},
		{"broker failure", PubSub(errors.New(`pubsub "p": publish to topic "t": dial tcp 127.0.0.1:1: connection refused`)), CodePubSubPublishMessage, 500, codes.Internal, "DAPR_PUBSUB_PUBLISH_MESSAGE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.e.Code != c.code || c.e.HTTPStatus != c.status || c.e.GRPCCode != c.grpc {
				t.Errorf("%s %d %s, want %s %d %s", c.e.Code, c.e.HTTPStatus, c.e.GRPCCode, c.code, c.status, c.grpc)
			}
			if r := errorInfo(t, c.e).GetReason(); r != c.reason {
				t.Errorf("ErrorInfo reason %s, want %s", r, c.reason)
			}
		})
	}
}
