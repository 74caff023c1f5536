package invoke

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// A gRPC app's error status crosses the hop in the previous release's
// form, the HTTP status of its code with wire.GRPCStatus, and comes out
// on the caller's side as the app returned it, with its header metadata.
func TestAppErrorOnTheHop(t *testing.T) {
	w := httptest.NewRecorder()
	writeAppError(w, &AppError{AppID: "orders", Status: status.New(codes.NotFound, "no such order"), Header: http.Header{"X-App": {"1"}}})
	resp := w.Result()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get(wire.GRPCStatus) != "5" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("on the hop: %d %v, want 404 with %s 5 and JSON", resp.StatusCode, resp.Header, wire.GRPCStatus)
	}
	ae := appError(resp, "orders")
	if ae.Status.Code() != codes.NotFound || ae.Status.Message() != "no such order" || ae.AppID != "orders" {
		t.Errorf("read back as %v", ae)
	}
	if len(ae.Header) != 1 || ae.Header.Get("X-App") != "1" {
		t.Errorf("header metadata read back as %v, want only X-App", ae.Header)
	}
}
