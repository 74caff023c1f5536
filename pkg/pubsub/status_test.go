package pubsub

import (
	"testing"

	"google.golang.org/grpc/codes"
)

func TestStatusFromHTTP(t *testing.T) {
	for _, c := range []struct {
		code int
		body string
		want Status
	}{
		{200, "", Success},
		{204, "", Success},
		{299, "", Success},
		{200, `{"status":"SUCCESS"}`, Success},
		{200, `{"status":""}`, Success},
		{200, `{}`, Success},
		{200, `null`, Success},
		{200, `{"other":"field"}`, Success},
		{200, `{"Status":"DROP"}`, Drop}, // JSON keys match in any case
		{200, `{"status":"DROP"}`, Drop},
		{200, `{"status":"DROP"} and then garbage`, Drop},
		{200, `{"status":"RETRY"}`, Retry},
		{200, `{"status":"success"}`, Retry}, // values are case-sensitive: unknown
		{200, `{"status":"PAUSE"}`, Retry},
		{200, `{"status":5}`, Success}, // unparseable
		{200, `garbage`, Success},
		{200, `"DROP"`, Success},
		{200, `[{"status":"DROP"}]`, Success},
		{201, `{"status":"RETRY"}`, Retry},
		{404, `{"status":"SUCCESS"}`, Drop},
		{404, ``, Drop},
		{400, ``, Retry},
		{500, `{"status":"SUCCESS"}`, Retry},
		{503, ``, Retry},
		{302, ``, Retry},
		{100, ``, Retry},
	} {
		if got := StatusFromHTTP(c.code, []byte(c.body)); got != c.want {
			t.Errorf("StatusFromHTTP(%d, %q) = %s, want %s", c.code, c.body, got, c.want)
		}
	}
}

func TestStatusFromGRPC(t *testing.T) {
	for _, c := range []struct {
		code   codes.Code
		status int32
		want   Status
	}{
		{codes.OK, 0, Success},
		{codes.OK, 1, Retry},
		{codes.OK, 2, Drop},
		{codes.OK, 3, Retry},
		{codes.OK, -1, Retry},
		{codes.Unimplemented, 0, Drop},
		{codes.NotFound, 0, Retry},
		{codes.Unavailable, 2, Retry},
		{codes.Internal, 0, Retry},
		{codes.DeadlineExceeded, 0, Retry},
	} {
		if got := StatusFromGRPC(c.code, c.status); got != c.want {
			t.Errorf("StatusFromGRPC(%s, %d) = %s, want %s", c.code, c.status, got, c.want)
		}
	}
}
