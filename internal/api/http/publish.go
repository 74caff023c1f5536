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
	pr, ok := h.read(w, r, "the publish API", publishPrefix)
	if !ok {
		return
	}
	err := h.p.Publish(r.Context(), api.PublishRequest{PubsubName: pr.name, Topic: pr.topic, Data: pr.body,
		ContentType: r.Header.Get("Content-Type"), Metadata: pr.md})
	if err != nil {
		apierr.Write(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// publishRead is what a publish and a bulk publish read before their own
// work: the names, the metadata and the body.
type publishRead struct {
	name, topic string
	md          map[string]string
	body        []byte
}

// read checks a publish request (to what, at prefix) in daprd's order: its
// method, the pub/sub name and topic of its path, its metadata.* query
// parameters, then reads its body up to maxBody. When it returns false it
// has answered the request.
func (h *publishHandler) read(w http.ResponseWriter, r *http.Request, what, prefix string) (publishRead, bool) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		apierr.Write(w, apierr.New(apierr.CodeMalformedRequest, http.StatusMethodNotAllowed, codes.Unimplemented,
			"%s is not a method of %s; use POST (or PUT) %s<pubsub>/<topic>", r.Method, what, prefix))
		return publishRead{}, false
	}
	var pr publishRead
	var err error
	pr.name, pr.topic, err = publishPath(r.URL.EscapedPath())
	if err == nil {
		err = h.p.Check(pr.name, pr.topic)
	}
	if err == nil {
		pr.md, err = queryMetadata(r.URL.RawQuery)
	}
	if err != nil {
		apierr.Write(w, err)
		return publishRead{}, false
	}
	var ok bool
	pr.body, ok = readBody(w, r, h.maxBody)
	return pr, ok
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
