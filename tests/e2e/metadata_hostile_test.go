package e2e

import (
	"fmt"
	"strings"
	"testing"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
)

// TestMetadataHostile: the extended metadata is bounded (keys of 256 bytes,
// values of 16 KiB, 100 keys, UTF-8, daprRuntimeVersion the sidecar's),
// each refusal is a 4xx (HTTP) or InvalidArgument / ResourceExhausted (gRPC)
// naming the bound, and the sidecar's metadata is unchanged by them.
func TestMetadataHostile(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar("metahostile", 0)
	put := func(key, body string) string {
		return fmt.Sprintf("PUT /v1.0/metadata/%s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", key, len(body), body)
	}
	for _, c := range []struct {
		name, raw string
		status    int
		code      string
		want      string
	}{
		{"key over 256 bytes", put(strings.Repeat("k", 257), "v"), 400, "ERR_MALFORMED_REQUEST", "at most 256"},
		{"value over 16 KiB", put("big", strings.Repeat("v", 16<<10+1)), 413, "ERR_BODY_TOO_LARGE", "at most 16384"},
		{"value of 1 GiB announced", "PUT /v1.0/metadata/huge HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1073741824\r\nConnection: close\r\n\r\n" + strings.Repeat("v", 17<<10), 413, "ERR_BODY_TOO_LARGE", "at most 16384"},
		{"value not UTF-8", put("k", "\xff\xfe"), 400, "ERR_MALFORMED_REQUEST", "UTF-8"},
		{"key not UTF-8", put("%FF", "v"), 400, "ERR_MALFORMED_REQUEST", "UTF-8"},
		{"key with NUL", put("a%00b", "v"), 400, "ERR_MALFORMED_REQUEST", "control character"},
		{"the runtime's version", put("daprRuntimeVersion", "9.9.9"), 400, "ERR_MALFORMED_REQUEST", "cannot be set"},
		{"the certificate's expiry", put("mtlsCertExpiry", "2099-01-01T00:00:00Z"), 400, "ERR_MALFORMED_REQUEST", "cannot be set"},
		{"no key", put("", "v"), 404, "ERR_NOT_FOUND", ""},
		{"POST is not PUT", "POST /v1.0/metadata/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nConnection: close\r\n\r\nv", 404, "ERR_NOT_FOUND", "PUT /v1.0/metadata/{key}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := rawRequest(t, s.httpPort, c.raw)
			if status != c.status || !strings.Contains(body, c.code) || !strings.Contains(body, c.want) {
				t.Errorf("%d %.300s; want %d %s naming %q", status, body, c.status, c.code, c.want)
			}
		})
	}
	for i := range 100 {
		if status, body := rawRequest(t, s.httpPort, put(fmt.Sprintf("k%d", i), "v")); status != 204 {
			t.Fatalf("key %d: %d %s", i, status, body)
		}
	}
	if status, body := rawRequest(t, s.httpPort, put("k100", "v")); status != 400 || !strings.Contains(body, "100 keys") {
		t.Errorf("key 101: %d %s", status, body)
	}

	api := runtimev1pb.NewDaprClient(grpcConn(t, s))
	for _, c := range []struct {
		name, key, value string
		code             codes.Code
		reason, want     string
	}{
		{"gRPC key over 256 bytes", strings.Repeat("k", 257), "v", codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "at most 256"},
		{"gRPC value over 16 KiB", "k0", strings.Repeat("v", 16<<10+1), codes.ResourceExhausted, "ERR_BODY_TOO_LARGE", "at most 16384"},
		{"gRPC runtime version", "daprRuntimeVersion", "9", codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "cannot be set"},
		{"gRPC mTLS identity", "mtlsSpiffeID", "spiffe://public/ns/default/other", codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "cannot be set"},
		{"gRPC key 101", "k100", "v", codes.ResourceExhausted, "ERR_MALFORMED_REQUEST", "100 keys"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := api.SetMetadata(ctxT(t), &runtimev1pb.SetMetadataRequest{Key: c.key, Value: c.value})
			wantStatus(t, err, c.code, c.reason, c.want)
		})
	}
	if _, err := api.SetMetadata(ctxT(t), &runtimev1pb.SetMetadataRequest{Key: "", Value: "ignored"}); err != nil {
		t.Errorf("an empty key (daprd ignores it): %v", err)
	}
	m := getMetadata(t, s)
	// 100 set, and the sidecar's own three: its version, its SPIFFE ID and
	// its certificate's expiry.
	if len(m.Extended) != 103 || m.Extended["k0"] != "v" || m.Extended["daprRuntimeVersion"] != m.RuntimeVersion ||
		m.Extended["mtlsSpiffeID"] != "spiffe://public/ns/default/metahostile" {
		t.Errorf("after the hostile requests: %d keys, k0 %q, version %q, identity %q", len(m.Extended), m.Extended["k0"], m.Extended["daprRuntimeVersion"], m.Extended["mtlsSpiffeID"])
	}
}
