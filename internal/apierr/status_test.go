package apierr

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCodeFromHTTPStatus(t *testing.T) {
	for status, want := range map[int]codes.Code{200: codes.OK, 204: codes.OK, 400: codes.Internal, 404: codes.NotFound, 409: codes.AlreadyExists, 418: codes.Unknown, 503: codes.Unavailable} {
		if got := CodeFromHTTPStatus(status); got != want {
			t.Errorf("CodeFromHTTPStatus(%d) = %s, want %s", status, got, want)
		}
	}
}

func TestHTTPStatusFromCode(t *testing.T) {
	for code, want := range map[codes.Code]int{codes.OK: 200, codes.InvalidArgument: 400, codes.NotFound: 404, codes.Aborted: 409, codes.Unavailable: 503, codes.DataLoss: 500} {
		if got := HTTPStatusFromCode(code); got != want {
			t.Errorf("HTTPStatusFromCode(%s) = %d, want %d", code, got, want)
		}
	}
}

// A gRPC app's error status reaches an HTTP caller as Dapr shows it: the
// HTTP status of its code, the app's header metadata, the status as JSON.
func TestWriteAppStatus(t *testing.T) {
	w := httptest.NewRecorder()
	WriteAppStatus(w, status.New(codes.NotFound, "no such order"), http.Header{"X-App": {"1"}})
	if w.Code != http.StatusNotFound || w.Header().Get("X-App") != "1" || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("%d %v, want 404 with X-App and JSON", w.Code, w.Header())
	}
	if got, want := w.Body.String(), `{"code":5,"message":"no such order"}`; strings.ReplaceAll(got, " ", "") != strings.ReplaceAll(want, " ", "") {
		t.Errorf("body %s, want %s", got, want)
	}
	if w.Header().Get("Content-Length") != strconv.Itoa(w.Body.Len()) {
		t.Errorf("Content-Length %s for %d bytes", w.Header().Get("Content-Length"), w.Body.Len())
	}
}
