package pubsub

import (
	"bytes"
	"encoding/json"
	"net/http"

	"google.golang.org/grpc/codes"
)

// Status is what an app's answer to a delivery means, as daprd names it.
type Status string

// The statuses. SUCCESS and DROP acknowledge the event (a dropped event
// goes to the dead-letter topic first, when there is one); RETRY leaves it
// to be delivered again.
const (
	Success Status = "SUCCESS"
	Retry   Status = "RETRY"
	Drop    Status = "DROP"
)

// StatusFromHTTP is what an HTTP app's answer means, as daprd 1.14 reads
// it: a 2xx whose body is empty, is not a JSON object with a string
// "status", or has status "" or "SUCCESS" is SUCCESS; "RETRY" and any
// other status (case counts) are RETRY; "DROP" is DROP. A 404 is DROP (the
// app has no such route); any other status code is RETRY. Only the first
// JSON value of the body is read.
func StatusFromHTTP(code int, body []byte) Status {
	if code < 200 || code > 299 {
		if code == http.StatusNotFound {
			return Drop
		}
		return Retry
	}
	var answer struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&answer); err != nil {
		return Success
	}
	switch Status(answer.Status) {
	case "", Success:
		return Success
	case Drop:
		return Drop
	}
	return Retry
}

// The values of runtime.v1.TopicEventResponse.TopicEventResponseStatus.
const (
	grpcSuccess = 0
	grpcRetry   = 1
	grpcDrop    = 2
)

// StatusFromGRPC is what a gRPC app's answer to OnTopicEvent means, as
// daprd 1.14 reads it: code is the call's status code and status the
// response's TopicEventResponseStatus (read only when code is OK). The
// call failing with Unimplemented is DROP, with any other code RETRY;
// SUCCESS (also the value of an empty response), RETRY and DROP are
// themselves, and an unknown status is RETRY.
func StatusFromGRPC(code codes.Code, status int32) Status {
	if code != codes.OK {
		if code == codes.Unimplemented {
			return Drop
		}
		return Retry
	}
	switch status {
	case grpcSuccess:
		return Success
	case grpcDrop:
		return Drop
	}
	return Retry
}
