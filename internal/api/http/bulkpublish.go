package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/tandem-run/tandem/internal/api"
	"github.com/tandem-run/tandem/internal/apierr"
)

const bulkPublishPrefix = "/v1.0-alpha1/publish/bulk/"

// bulkEntry is an entry of a bulk publish's body, as daprd reads it.
type bulkEntry struct {
	EntryID     string            `json:"entryId"`
	Event       json.RawMessage   `json:"event"`
	ContentType string            `json:"contentType"`
	Metadata    map[string]string `json:"metadata"`
}

// bulkPublishResponse is daprd's body for a bulk publish some entries of
// which failed.
type bulkPublishResponse struct {
	FailedEntries []bulkFailedEntry `json:"failedEntries"`
	ErrorCode     string            `json:"errorCode,omitempty"`
}

type bulkFailedEntry struct {
	EntryID string `json:"entryId"`
	// EntryIDJS repeats EntryID under the name the JavaScript SDK (3.x)
	// looks for, which daprd does not write: with daprd, that SDK reports
	// no failed message at all when some failed (dapr/js-sdk#703).
	EntryIDJS string `json:"entryID"`
	Error     string `json:"error,omitempty"`
}

// bulkPublish is POST or PUT /v1.0-alpha1/publish/bulk/{pubsubname}/{topic}:
// a JSON array of {entryId, event, contentType, metadata}, each entry its
// own event. 204 when the broker holds every one; otherwise daprd's 500
// with the failed entries.
func (h *publishHandler) bulkPublish(w http.ResponseWriter, r *http.Request) {
	pr, ok := h.read(w, r, "the bulk publish API", bulkPublishPrefix)
	if !ok {
		return
	}
	req, err := readBulkEntries(pr.name, pr.topic, pr.body)
	if err != nil {
		apierr.Write(w, err)
		return
	}
	req.Metadata = pr.md
	failed, err := h.p.BulkPublish(r.Context(), req)
	if err == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	ae := apierr.PubSub(err)
	if len(failed) == 0 || ae.Code != apierr.CodePubSubPublishMessage {
		apierr.Write(w, ae)
		return
	}
	res := bulkPublishResponse{ErrorCode: ae.Code, FailedEntries: make([]bulkFailedEntry, len(failed))}
	for i, f := range failed {
		res.FailedEntries[i] = bulkFailedEntry{EntryID: f.EntryID, EntryIDJS: f.EntryID, Error: f.Err.Error()}
	}
	b, _ := json.Marshal(res)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.HTTPStatus)
	_, _ = w.Write(b)
}

// readBulkEntries decodes a bulk publish's body: a JSON array of entries,
// each event turned into bytes by its contentType as daprd does (the
// error names the entry).
func readBulkEntries(name, topic string, body []byte) (api.BulkPublishRequest, error) {
	req := api.BulkPublishRequest{PubsubName: name, Topic: topic}
	var entries []bulkEntry
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&entries); err != nil {
		return req, api.BulkEventsError(name, topic, "UNMARSHAL_EVENTS",
			fmt.Sprintf("the body is not a JSON array of entries {entryId, event, contentType, metadata}: %v", err))
	}
	if dec.More() {
		return req, api.BulkEventsError(name, topic, "UNMARSHAL_EVENTS", "the body holds more than one JSON value")
	}
	req.Entries = make([]api.BulkEntry, len(entries))
	for i, e := range entries {
		data, err := eventBytes(e.Event, e.ContentType)
		if err != nil {
			return req, api.BulkEventsError(name, topic, "MARSHAL_ENVELOPE", fmt.Sprintf("entry %q: %v", e.EntryID, err))
		}
		req.Entries[i] = api.BulkEntry{EntryID: e.EntryID, Event: data, ContentType: e.ContentType, Metadata: e.Metadata}
	}
	return req, nil
}

// eventBytes is an entry's event as the bytes to publish, by its content
// type, as daprd converts it: binary data is a base64 string, text a JSON
// string, JSON (and a CloudEvent) the JSON value as it was written.
func eventBytes(event json.RawMessage, contentType string) ([]byte, error) {
	if len(event) == 0 {
		return nil, fmt.Errorf("it has no event")
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.Split(contentType, ";")[0]))
	}
	var s string
	switch {
	case mt == "":
		return nil, fmt.Errorf("its contentType is empty: say what the event is (application/json, text/plain, application/octet-stream for base64 data, application/cloudevents+json)")
	case mt == "application/octet-stream":
		if json.Unmarshal(event, &s) != nil {
			return nil, fmt.Errorf("contentType %s takes the data base64-encoded in a JSON string", contentType)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("contentType %s: the event is not base64: %v", contentType, err)
		}
		return b, nil
	case strings.HasPrefix(mt, "text/") || mt == "application/xml" || strings.HasSuffix(mt, "+xml"):
		if json.Unmarshal(event, &s) != nil {
			return nil, fmt.Errorf("contentType %s takes the event as a JSON string", contentType)
		}
		return []byte(s), nil
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		var b bytes.Buffer
		if err := json.Compact(&b, event); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	return nil, fmt.Errorf("contentType %q is none the bulk publish API converts: JSON (application/json, +json), text (text/*, XML) or application/octet-stream", contentType)
}
