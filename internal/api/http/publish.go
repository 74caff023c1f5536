package httpapi

import (
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/api"
	"github.com/tandem-run/tandem/internal/apierr"
)

const publishPrefix = "/v1.0/publish/"

// metadataPrefix marks the query parameters that are the request's
// metadata, as daprd reads them (metadata.rawPayload=true).
const metadataPrefix = "metadata."

// PublishRoutes is the publish API: POST or PUT
// /v1.0/publish/{pubsubname}/{topic}, the topic being the rest of the path
// (it may hold '/'), as daprd routes it; 204 once the broker holds the
// event. Bodies are read up to maxBody bytes. The route reads its path
// itself, so that an empty name or topic gets daprd's answer rather than a
// redirect.
func PublishRoutes(p api.Publisher, maxBody int64) []Route {
	h := &publishHandler{p: p, maxBody: maxBody}
	return []Route{
		{Pattern: publishPrefix, Raw: true, Name: "PublishEvent", Handler: h.publish},
		{Pattern: bulkPublishPrefix, Raw: true, Name: "BulkPublishEvent", Handler: h.bulkPublish},
	}
}

type publishHandler struct {
	p       api.Publisher
	maxBody int64
}

func (h *publishHandler) publish(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		apierr.Write(w, apierr.New(apierr.CodeMalformedRequest, http.StatusMethodNotAllowed, codes.Unimplemented,
			"%s is not a method of the publish API; use POST (or PUT) /v1.0/publish/<pubsub>/<topic>", r.Method))
		return
	}
	name, topic, err := publishPath(r.URL.EscapedPath())
	if err == nil {
		err = h.p.Check(name, topic)
	}
	var md map[string]string
	if err == nil {
		md, err = queryMetadata(r.URL.RawQuery)
	}
	if err != nil {
		apierr.Write(w, err)
		return
	}
	body, ok := readBody(w, r, h.maxBody)
	if !ok {
		return
	}
	err = h.p.Publish(r.Context(), api.PublishRequest{PubsubName: name, Topic: topic, Data: body,
		ContentType: r.Header.Get("Content-Type"), Metadata: md})
	if err != nil {
		apierr.Write(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// publishPath reads the pub/sub name and the topic of an escaped publish
// or bulk publish path: the segment after the prefix, and the rest.
func publishPath(escaped string) (name, topic string, err error) {
	rest := strings.TrimPrefix(strings.TrimPrefix(escaped, publishPrefix), bulkPublishPrefix)
	n, t, _ := strings.Cut(rest, "/")
	if name, err = url.PathUnescape(n); err == nil {
		topic, err = url.PathUnescape(t)
	}
	if err != nil {
		return "", "", apierr.Malformed("the path %q is not escaped as a URL path must be: %v", escaped, err)
	}
	return name, topic, nil
}

// queryMetadata is the request's metadata: the query parameters
// metadata.<key>, the last value of each, as daprd reads them.
func queryMetadata(rawQuery string) (map[string]string, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, apierr.New(apierr.CodePubSubRequestMetadata, http.StatusBadRequest, codes.InvalidArgument,
			"the query string is not valid: %v", err)
	}
	md := map[string]string{}
	for k, vv := range q {
		if key, ok := strings.CutPrefix(k, metadataPrefix); ok && key != "" && len(vv) > 0 {
			md[key] = vv[len(vv)-1]
		}
	}
	return md, nil
}
