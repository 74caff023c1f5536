package pubsub

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Publish metadata (metadata.* query parameters, gRPC metadata) that the
// envelope reads, as daprd names them.
const (
	// MetadataRawPayload "true" publishes the body as it is, with no
	// envelope; on a subscription, it delivers what was published wrapped
	// in an envelope of its own.
	MetadataRawPayload = "rawPayload"
	// MetadataTTL is how long the event lives: whole seconds, or a Go
	// duration. "ttl" is an alias, as in daprd; both any case.
	MetadataTTL = "ttlInSeconds"
)

// CloudEvent values daprd writes.
const (
	// EventType is the type of an event the sidecar wraps.
	EventType = "com.dapr.event.sent"
	// SpecVersion is the CloudEvents version.
	SpecVersion = "1.0"
	// DefaultSource is the source of an app's own envelope that names none
	// (an envelope the sidecar writes has the app id).
	DefaultSource = "Dapr"
	// DefaultDataContentType is the datacontenttype of a body published
	// without a Content-Type.
	DefaultDataContentType = "text/plain"
	// ContentTypeCloudEvent is the Content-Type of a body that is already
	// a CloudEvent (it is completed, not wrapped) and of a delivery.
	ContentTypeCloudEvent = "application/cloudevents+json"
)

// Publication is a publish request as the envelope needs it.
type Publication struct {
	AppID      string // the publisher: the event's source
	PubsubName string
	Topic      string
	Data       []byte // the request's body
	// ContentType is the body's Content-Type (gRPC: data_content_type);
	// "" is text/plain.
	ContentType string
	// TraceParent and TraceState are the publish span's W3C trace context;
	// they become traceid, traceparent and tracestate.
	TraceParent, TraceState string
	// Metadata is the request's metadata: rawPayload, ttlInSeconds and the
	// cloudevent.* overrides (cloudevent.id, .source, .type, .traceid,
	// .traceparent, .tracestate; any case).
	Metadata map[string]string
	// Now is the event's time; zero means time.Now().
	Now time.Time
	// ID is the event's id unless metadata overrides it; "" means a new
	// random UUID.
	ID string
}

// Envelope returns the bytes to publish for p: p.Data as it is when its
// metadata says rawPayload, otherwise the CloudEvent JSON that daprd 1.14
// writes for the same request. An error wraps ErrBadMetadata (rawPayload
// or ttlInSeconds unreadable) or ErrBadCloudEvent (an
// application/cloudevents+json body that is not a JSON object).
func Envelope(p Publication) ([]byte, error) {
	raw, err := RawPayload(p.Metadata)
	if err != nil {
		return nil, err
	}
	if raw {
		return p.Data, nil
	}
	ttl, hasTTL, err := TTL(p.Metadata)
	if err != nil {
		return nil, err
	}
	if p.Now.IsZero() {
		p.Now = time.Now()
	}
	var ce map[string]any
	if isContentType(p.ContentType, ContentTypeCloudEvent) {
		ce, err = completeEvent(p)
		if err != nil {
			return nil, err
		}
	} else {
		ce = newEvent(p)
	}
	if hasTTL {
		ce["expiration"] = expiration(p.Now, ttl)
	}
	b, err := json.Marshal(ce)
	if err != nil {
		return nil, fmt.Errorf("encoding the cloud event: %w", err)
	}
	return b, nil
}

// newEvent wraps p's body in a new envelope.
func newEvent(p Publication) map[string]any {
	o := overrides(p.Metadata)
	id := cmpOr(o["cloudevent.id"], p.ID)
	if id == "" {
		id = NewUUID()
	}
	source, typ := p.AppID, EventType
	traceID, traceState := p.TraceParent, p.TraceState
	setIf(&source, o, "cloudevent.source")
	setIf(&typ, o, "cloudevent.type")
	setIf(&traceID, o, "cloudevent.traceid")
	setIf(&traceState, o, "cloudevent.tracestate")
	if tp := o["cloudevent.traceparent"]; tp != "" {
		traceID = tp
	}
	// An override given empty means the default, as in daprd.
	source, typ = cmpOr(source, DefaultSource), cmpOr(typ, EventType)
	ct := cmpOr(p.ContentType, DefaultDataContentType)
	ce := map[string]any{
		"id":              id,
		"specversion":     SpecVersion,
		"datacontenttype": ct,
		"source":          source,
		"type":            typ,
		"topic":           p.Topic,
		"pubsubname":      p.PubsubName,
		"traceid":         traceID,
		"traceparent":     traceID,
		"tracestate":      traceState,
		"time":            p.Now.Format(time.RFC3339),
	}
	field, data := eventData(ct, p.Data)
	ce[field] = data
	return ce
}

// eventData is the data of a new envelope and the field it goes in: JSON
// embedded as JSON when the content type is JSON and the body parses (the
// first value, numbers exact, as daprd reads it); base64 in data_base64
// when the content type is binary; otherwise the body as a string. A body
// that is not UTF-8 goes in data_base64 whatever its type (daprd writes it
// as a string, which loses its bytes).
func eventData(contentType string, data []byte) (string, any) {
	switch {
	case isContentType(contentType, "application/json"):
		if v, err := decodePrecise(data); err == nil {
			return "data", v
		}
	case isContentType(contentType, "application/octet-stream"),
		isContentType(contentType, "application/cloudevents+protobuf"),
		isContentType(contentType, "application/x-protobuf"):
		return "data_base64", base64.StdEncoding.EncodeToString(data)
	}
	if !utf8.Valid(data) {
		return "data_base64", base64.StdEncoding.EncodeToString(data)
	}
	return "data", string(data)
}

// completeEvent completes the app's own envelope, as daprd does: it keeps
// every field the app gave but topic and pubsubname, and adds time, trace
// context, source, type and specversion when missing.
func completeEvent(p Publication) (map[string]any, error) {
	v, err := decodePrecise(p.Data)
	ce, ok := v.(map[string]any)
	if err != nil || !ok {
		return nil, fmt.Errorf("the body is published as %s and is not a JSON object: %w", ContentTypeCloudEvent, ErrBadCloudEvent)
	}
	if _, ok := ce["time"]; !ok {
		ce["time"] = p.Now.Format(time.RFC3339)
	}
	if _, ok := ce["traceid"]; !ok {
		ce["traceid"] = p.TraceParent
		ce["traceparent"] = p.TraceParent
	}
	if _, ok := ce["tracestate"]; !ok {
		ce["tracestate"] = p.TraceState
	}
	ce["topic"] = p.Topic
	ce["pubsubname"] = p.PubsubName
	for k, def := range map[string]string{"source": DefaultSource, "type": EventType, "specversion": SpecVersion} {
		if ce[k] == nil {
			ce[k] = def
		}
	}
	return ce, nil
}

// RawPayload reads metadata rawPayload: false when absent or empty. Any
// other value than a Go boolean is an error wrapping ErrBadMetadata.
func RawPayload(md map[string]string) (bool, error) {
	v := md[MetadataRawPayload]
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("metadata %s %q: want true or false: %w", MetadataRawPayload, v, ErrBadMetadata)
	}
	return b, nil
}

// TTL reads metadata ttlInSeconds (or ttl; keys any case, ttl first, as
// daprd reads them): whole seconds from 1, or a positive Go duration. It
// reports whether there is one. Any other value is an error wrapping
// ErrBadMetadata (daprd ignores a value it cannot read, and publishes an
// event that never expires; it takes "0" and negative durations as
// expired at once).
func TTL(md map[string]string) (time.Duration, bool, error) {
	v, found := "", false
	for _, name := range []string{"ttl", MetadataTTL} { // daprd's order
		for k, val := range md {
			if !found && strings.EqualFold(k, name) {
				v, found = val, true
			}
		}
	}
	if v == "" {
		return 0, false, nil
	}
	bad := fmt.Errorf("metadata %s %q: want whole seconds from 1, or a positive Go duration such as 90s: %w", MetadataTTL, v, ErrBadMetadata)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, false, bad
		}
		return d, true, nil
	}
	if n <= 0 {
		return 0, false, bad
	}
	if n > math.MaxInt64/int64(time.Second) {
		return math.MaxInt64, true, nil
	}
	return time.Duration(n) * time.Second, true, nil
}

// expiration is the event's expiration field for a TTL from now.
func expiration(now time.Time, ttl time.Duration) string {
	return now.UTC().Add(ttl).Format(time.RFC3339)
}

// overrides are the cloudevent.* metadata, keys lower-cased (daprd matches
// them in any case).
func overrides(md map[string]string) map[string]string {
	o := map[string]string{}
	for k, v := range md {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "cloudevent.") {
			o[lk] = v
		}
	}
	return o
}

// setIf sets *dst to o[key] when o has key (even empty).
func setIf(dst *string, o map[string]string, key string) {
	if v, ok := o[key]; ok {
		*dst = v
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// isContentType reports whether contentType is want, ignoring case and
// parameters, as daprd compares them.
func isContentType(contentType, want string) bool {
	ct := strings.ToLower(contentType)
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return ct == want
}

// decodePrecise decodes the first JSON value of b, numbers kept exact.
func decodePrecise(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// NewUUID returns a random (version 4) UUID.
func NewUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
