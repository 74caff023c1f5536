package apierr

import (
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// The pub/sub error codes, as daprd 1.14 names them (its pkg/api/errors
// pubsub.go).
const (
	CodePubSubNotFound = "ERR_PUBSUB_NOT_FOUND"
	CodePubSubEmpty    = "ERR_PUBSUB_EMPTY"
	CodeTopicNameEmpty = "ERR_TOPIC_NAME_EMPTY"
	// CodePubSubRequestMetadata: publish metadata with a bad value
	// (rawPayload, ttlInSeconds).
	CodePubSubRequestMetadata = "ERR_PUBSUB_REQUEST_METADATA"
	// CodePubSubCloudEventsSer: a body published as
	// application/cloudevents+json that is not a JSON object.
	CodePubSubCloudEventsSer = "ERR_PUBSUB_CLOUD_EVENTS_SER"
	CodePubSubForbidden      = "ERR_PUBSUB_FORBIDDEN"
	CodePubSubPublishMessage = "ERR_PUBSUB_PUBLISH_MESSAGE"
	// CodePubSubEventsSer: a bulk publish whose entries cannot be read
	// (its reason says which case: DAPR_PUBSUB_UNMARSHAL_EVENTS,
	// DAPR_PUBSUB_MARSHAL_EVENTS, DAPR_PUBSUB_MARSHAL_ENVELOPE).
	CodePubSubEventsSer = "ERR_PUBSUB_EVENTS_SER"
)

// daprd's ErrorInfo reasons of the pub/sub codes: "DAPR_PUBSUB_" and the
// case.
const (
	ReasonPubSubNotFound           = "DAPR_PUBSUB_NOT_FOUND"
	ReasonPubSubNameEmpty          = "DAPR_PUBSUB_NAME_EMPTY"
	ReasonPubSubTopicNameEmpty     = "DAPR_PUBSUB_TOPIC_NAME_EMPTY"
	ReasonPubSubMetadata           = "DAPR_PUBSUB_METADATA_DESERIALIZATION"
	ReasonPubSubCloudEventCreation = "DAPR_PUBSUB_CLOUD_EVENT_CREATION"
	ReasonPubSubForbidden          = "DAPR_PUBSUB_FORBIDDEN"
	ReasonPubSubPublishMessage     = "DAPR_PUBSUB_PUBLISH_MESSAGE"
)

// PubSubNameEmpty is daprd's answer to a publish that names no pub/sub
// component: a 404, as daprd's.
func PubSubNameEmpty() *Error {
	return New(CodePubSubEmpty, http.StatusNotFound, codes.InvalidArgument,
		"the pubsub name is empty: publish to /v1.0/publish/<pubsub>/<topic>")
}

// TopicNameEmpty is daprd's answer to a publish to pubsubName that names
// no topic: a 404, as daprd's.
func TopicNameEmpty(pubsubName string) *Error {
	return New(CodeTopicNameEmpty, http.StatusNotFound, codes.InvalidArgument,
		"the topic is empty: publish to /v1.0/publish/%s/<topic>", pubsubName)
}

// PubSub maps a publish failure to its API error, with daprd's HTTP status
// and gRPC code for each (404 for an unknown pub/sub, as daprd's), but for a body that is not the CloudEvent its Content-Type
// says: daprd answers that 500, this sidecar 400 (the request is at fault;
// the gRPC code is daprd's, InvalidArgument). A topic that is not a valid
// name (control characters, not UTF-8; daprd takes it) is
// ERR_MALFORMED_REQUEST; check for an empty one first (TopicNameEmpty). Any
// other failure is the broker's: 500 ERR_PUBSUB_PUBLISH_MESSAGE, whose
// message names the component, the topic and the cause.
func PubSub(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, pubsub.ErrNotFound):
		return New(CodePubSubNotFound, http.StatusNotFound, codes.InvalidArgument, "%v", err)
	case errors.Is(err, pubsub.ErrBadTopic):
		return Malformed("%v", err)
	case errors.Is(err, pubsub.ErrBadMetadata):
		return New(CodePubSubRequestMetadata, http.StatusBadRequest, codes.InvalidArgument, "%v", err)
	case errors.Is(err, pubsub.ErrBadCloudEvent):
		return New(CodePubSubCloudEventsSer, http.StatusBadRequest, codes.InvalidArgument, "%v", err)
	case errors.Is(err, pubsub.ErrForbidden):
		return New(CodePubSubForbidden, http.StatusForbidden, codes.PermissionDenied, "%v", err)
	}
	return New(CodePubSubPublishMessage, http.StatusInternalServerError, codes.Internal, "%v", err)
}
