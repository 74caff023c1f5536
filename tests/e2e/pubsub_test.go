package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// pubsubSidecar starts a sidecar for appID with the files (name, content)
// in its resources folder, and returns it and the folder.
func (w *world) pubsubSidecar(appID string, files map[string][]byte, extra ...string) (*sidecar, string) {
	w.t.Helper()
	return w.pubsubSidecarApp(appID, 0, files, extra...)
}

// pubsubSidecarApp is pubsubSidecar for the app on appPort (0: none).
func (w *world) pubsubSidecarApp(appID string, appPort int, files map[string][]byte, extra ...string) (*sidecar, string) {
	w.t.Helper()
	dir := w.t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
	return w.sidecar(appID, appPort, append([]string{"--resources-path", dir}, extra...)...), dir
}

// errorBody is the API's error body.
type errorBody struct{ ErrorCode, Message string }

// wantError checks an HTTP error answer: its status, code, and that its
// message has each of parts.
func wantError(t *testing.T, what string, resp *http.Response, b []byte, status int, code string, parts ...string) {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != status || e.ErrorCode != code {
		t.Errorf("%s: %d %s; want %d %s", what, resp.StatusCode, b, status, code)
		return
	}
	for _, p := range parts {
		if !strings.Contains(e.Message, p) {
			t.Errorf("%s: message %q does not say %q", what, e.Message, p)
		}
	}
}

// A pubsub.in-memory Component: publishing over HTTP, gRPC and the Go SDK
// answers once the event is in the broker; every refusal has daprd's code;
// the metadata lists the component; one added while the sidecar serves
// comes into use.
func TestPublishInMemory(t *testing.T) {
	w := newWorld(t)
	s, dir := w.pubsubSidecar("checkout", map[string][]byte{
		"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.in-memory"),
		"scoped.yaml": resources.PubSubYAML("scoped", "pubsub.in-memory", "publishingScopes", "checkout=audit", "protectedTopics", "payments"),
	}, "--max-body-size", "1Ki")

	resp, b := do(t, "POST", s.url+"/v1.0/publish/pubsub/orders", strings.NewReader(`{"orderId":1}`), http.Header{"Content-Type": {"application/json"}})
	if resp.StatusCode != http.StatusNoContent || len(b) != 0 {
		t.Fatalf("publish: %d %s", resp.StatusCode, b)
	}
	for _, c := range []struct {
		what, method, path, body string
		status                   int
		code                     string
		says                     []string
	}{
		{"unknown pubsub", "POST", "/v1.0/publish/nope/orders", "x", 404, "ERR_PUBSUB_NOT_FOUND", []string{`"nope"`}},
		{"no pubsub name", "POST", "/v1.0/publish//orders", "x", 404, "ERR_PUBSUB_EMPTY", nil},
		{"no topic", "POST", "/v1.0/publish/pubsub/", "x", 404, "ERR_TOPIC_NAME_EMPTY", nil},
		{"control character in the topic", "POST", "/v1.0/publish/pubsub/or%0Aders", "x", 400, "ERR_MALFORMED_REQUEST", []string{"control character"}},
		{"bad rawPayload", "POST", "/v1.0/publish/pubsub/orders?metadata.rawPayload=sometimes", "x", 400, "ERR_PUBSUB_REQUEST_METADATA", []string{"rawPayload"}},
		{"bad ttl", "POST", "/v1.0/publish/pubsub/orders?metadata.ttlInSeconds=-5", "x", 400, "ERR_PUBSUB_REQUEST_METADATA", []string{"ttlInSeconds"}},
		{"out of scope", "POST", "/v1.0/publish/scoped/orders", "x", 403, "ERR_PUBSUB_FORBIDDEN", []string{"publishingScopes", `"checkout"`}},
		{"body over --max-body-size", "POST", "/v1.0/publish/pubsub/orders", strings.Repeat("x", 1025), 413, "ERR_BODY_TOO_LARGE", []string{"1024"}},
	} {
		resp, b := do(t, c.method, s.url+c.path, strings.NewReader(c.body), nil)
		wantError(t, c.what, resp, b, c.status, c.code, c.says...)
	}
	resp, b = do(t, "POST", s.url+"/v1.0/publish/pubsub/orders", strings.NewReader(`{"no":`), http.Header{"Content-Type": {"application/cloudevents+json"}})
	wantError(t, "a cloud event that is not one", resp, b, 400, "ERR_PUBSUB_CLOUD_EVENTS_SER")

	// gRPC, as the SDKs call it.
	dc := runtimev1pb.NewDaprClient(grpcConn(t, s))
	if _, err := dc.PublishEvent(ctxT(t), &runtimev1pb.PublishEventRequest{PubsubName: "pubsub", Topic: "orders", Data: []byte("x")}); err != nil {
		t.Errorf("gRPC PublishEvent: %v", err)
	}
	_, err := dc.PublishEvent(ctxT(t), &runtimev1pb.PublishEventRequest{PubsubName: "nope", Topic: "orders"})
	wantStatus(t, err, codes.InvalidArgument, "DAPR_PUBSUB_NOT_FOUND", `"nope"`)
	_, err = dc.PublishEvent(ctxT(t), &runtimev1pb.PublishEventRequest{PubsubName: "scoped", Topic: "payments"})
	wantStatus(t, err, codes.PermissionDenied, "DAPR_PUBSUB_FORBIDDEN", "publishingScopes")
	_, err = dc.PublishEvent(ctxT(t), &runtimev1pb.PublishEventRequest{PubsubName: "pubsub", Topic: "orders", Metadata: map[string]string{"rawPayload": "sometimes"}})
	wantStatus(t, err, codes.InvalidArgument, "DAPR_PUBSUB_METADATA_DESERIALIZATION", "rawPayload")
	_, err = dc.PublishEvent(ctxT(t), &runtimev1pb.PublishEventRequest{PubsubName: "pubsub", Topic: "orders", Data: []byte(strings.Repeat("x", 2048))})
	wantStatus(t, err, codes.ResourceExhausted, "")

	sdk := sdkClient(t, s)
	if err := sdk.PublishEvent(ctxT(t), "pubsub", "orders", map[string]int{"orderId": 2}); err != nil {
		t.Errorf("SDK PublishEvent: %v", err)
	}
	if err := sdk.PublishEvent(ctxT(t), "scoped", "audit", []byte("x"), dapr.PublishEventWithMetadata(map[string]string{"ttlInSeconds": "60"})); err != nil {
		t.Errorf("SDK PublishEvent in scope: %v", err)
	}

	_, b = do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	for _, want := range []string{`{"name":"pubsub","type":"pubsub.in-memory","version":"v1"}`, `{"name":"scoped","type":"pubsub.in-memory","version":"v1"}`, `"subscriptions":[]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metadata does not list %s: %s", want, b)
		}
	}
	md, err := dc.GetMetadata(ctxT(t), &runtimev1pb.GetMetadataRequest{})
	if err != nil || len(md.GetRegisteredComponents()) < 2 {
		t.Errorf("gRPC metadata: %v, %v", md, err)
	}

	// Hot reload: a Component added while serving comes into use.
	if err := os.WriteFile(filepath.Join(dir, "more.yaml"), resources.PubSubYAML("more", "pubsub.in-memory"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, b := do(t, "POST", s.url+"/v1.0/publish/more/orders", strings.NewReader("x"), nil)
		if resp.StatusCode == http.StatusNoContent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a pub/sub added while serving is not in use: %d %s", resp.StatusCode, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
