package wire

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestIsGRPC(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc":              true,
		"application/grpc+proto":        true,
		"application/grpc;charset=utf8": true,
		"application/grpcx":             false,
		"application/json":              false,
		"":                              false,
	} {
		if got := IsGRPC(http.Header{"Content-Type": {ct}}); got != want {
			t.Errorf("IsGRPC(%q) = %v, want %v", ct, got, want)
		}
	}
}

// The callee's sidecar takes a call for a proxied gRPC one only when the
// caller's sidecar said so, or, from a peer of the previous release that
// sends no CallKind, when its Content-Type is gRPC.
func TestIsGRPCProxy(t *testing.T) {
	for _, c := range []struct {
		name      string
		proxy     *bool // SetCallKind with it; nil: no CallKind
		kind      []string
		grpcCT    bool
		wantProxy bool
	}{
		{name: "grpc proxy", proxy: ptr(true), grpcCT: true, wantProxy: true},
		{name: "http call with a gRPC content type", proxy: ptr(false), grpcCT: true},
		{name: "grpc proxy kind without a gRPC content type", proxy: ptr(true)},
		{name: "previous release, gRPC", grpcCT: true, wantProxy: true},
		{name: "previous release, HTTP"},
		{name: "two values", kind: []string{"grpc-proxy", "grpc-proxy"}, grpcCT: true},
		{name: "unknown value", kind: []string{"other"}, grpcCT: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.grpcCT {
				h.Set("Content-Type", "application/grpc")
			}
			if c.proxy != nil {
				SetCallKind(h, *c.proxy)
			}
			if c.kind != nil {
				h[CallKind] = c.kind
			}
			if got := IsGRPCProxy(h); got != c.wantProxy {
				t.Errorf("IsGRPCProxy(%v) = %v, want %v", h, got, c.wantProxy)
			}
		})
	}
}

func ptr(b bool) *bool { return &b }

// An error of the callee's sidecar reaches the caller's with its kind and
// message; an answer of the app is no such error and stays unread.
func TestErrorOnTheHop(t *testing.T) {
	w := httptest.NewRecorder()
	WriteError(w, http.StatusForbidden, KindPermissionDenied, "access control denies the call")
	resp := w.Result()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get(HopError) != "permission-denied" {
		t.Fatalf("%d %v, want 403 with %s", resp.StatusCode, resp.Header, HopError)
	}
	kind, msg, ok := ReadError(resp)
	if !ok || kind != KindPermissionDenied || msg != "access control denies the call" {
		t.Errorf("ReadError = %q %q %v", kind, msg, ok)
	}

	app := &http.Response{StatusCode: 403, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("the app's own 403"))}
	if _, _, ok := ReadError(app); ok {
		t.Error("an answer of the app is read as an error of its sidecar")
	}
	if b, _ := io.ReadAll(app.Body); string(b) != "the app's own 403" {
		t.Errorf("the app's answer was read: %q left", b)
	}

	long := httptest.NewRecorder()
	WriteError(long, http.StatusBadGateway, KindAppUnreachable, strings.Repeat("x", 100<<10))
	if _, msg, _ := ReadError(long.Result()); len(msg) != 64<<10 {
		t.Errorf("read %d bytes of a long message, want 64 KiB", len(msg))
	}
}
