package apierr

import (
	"testing"

	"google.golang.org/grpc/codes"
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
