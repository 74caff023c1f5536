package e2e

import (
	"encoding/json"
	"testing"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// InvokeService: a query string in the method is the call's query (the JS
// SDK sends it so), joined with http_extension.querystring; what cannot go
// on the wire is refused at once naming the field, never sent to a peer.
func TestGRPCInvokeQueryAndBadFields(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("httpapp")
	callee := w.sidecar("httpapp", appPort)
	caller := w.sidecar("client", 0)
	callee.waitHealthy(t)
	api := runtimev1pb.NewDaprClient(grpcConn(t, caller))
	ctx := ctxT(t)

	for _, c := range []struct {
		method, query   string
		wantPath, wantQ string
	}{
		{"echo/x?x=1&y=2", "", "/echo/x", "x=1&y=2"},
		{"echo/x?x=1&y=2", "z=3", "/echo/x", "x=1&y=2&z=3"},
		{"echo/x", "z=3", "/echo/x", "z=3"},
		{"echo/x?", "", "/echo/x", ""},
	} {
		out, err := api.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{Id: "httpapp", Message: &commonv1pb.InvokeRequest{
			Method: c.method, HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET, Querystring: c.query}}})
		if err != nil {
			t.Errorf("%q + %q: %v", c.method, c.query, err)
			continue
		}
		var echo struct{ Path, Query string }
		if err := json.Unmarshal(out.GetData().GetValue(), &echo); err != nil || echo.Path != c.wantPath || echo.Query != c.wantQ {
			t.Errorf("%q + %q: the app saw %+v (%v), want path %q query %q", c.method, c.query, echo, err, c.wantPath, c.wantQ)
		}
	}

	// Binary metadata passes, base64 on the wire as gRPC sends it.
	mctx := metadata.AppendToOutgoingContext(ctx, "x-blob-bin", "\x00\x01\xff")
	out, err := api.InvokeService(mctx, &runtimev1pb.InvokeServiceRequest{Id: "httpapp", Message: invokeRequest("echo/bin")})
	if err != nil {
		t.Fatal(err)
	}
	var echo struct{ Headers map[string][]string }
	if err := json.Unmarshal(out.GetData().GetValue(), &echo); err != nil {
		t.Fatal(err)
	}
	if got := echo.Headers["X-Blob-Bin"]; len(got) != 1 || got[0] != "AAH/" {
		t.Errorf("binary metadata reached the app as %q, want base64 AAH/", got)
	}

	for _, c := range []struct {
		name  string
		msg   *commonv1pb.InvokeRequest
		field string
	}{
		{"control character in querystring", &commonv1pb.InvokeRequest{Method: "echo/x",
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET, Querystring: "a=\x01"}}, "http_extension.querystring"},
		{"newline in querystring", &commonv1pb.InvokeRequest{Method: "echo/x",
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET, Querystring: "a=1\r\nx: y"}}, "http_extension.querystring"},
		{"space in the method's query", &commonv1pb.InvokeRequest{Method: "echo/x?a=b c",
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET}}, "message.method"},
		{"control character in content type", &commonv1pb.InvokeRequest{Method: "echo/x", ContentType: "text/plain\x00",
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET}}, "content_type"},
		{"unknown verb", &commonv1pb.InvokeRequest{Method: "echo/x",
			HttpExtension: &commonv1pb.HTTPExtension{Verb: 99}}, "verb"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// No deadline of its own: a call that looped would hang here.
			_, err := api.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{Id: "httpapp", Message: c.msg})
			wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", c.field)
		})
	}
}
