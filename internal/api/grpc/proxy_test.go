package grpcapi

import (
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestEncodeTimeout(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "1n"},
		{0, "1n"},
		{1500 * time.Nanosecond, "1500n"},
		{99999999 * time.Nanosecond, "99999999n"},
		{100 * time.Millisecond, "100000u"},
		{5 * time.Minute, "300000m"},
		{30 * time.Hour, "108000S"},
	} {
		if got := encodeTimeout(c.d); got != c.want {
			t.Errorf("encodeTimeout(%s) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestEscapeMethod(t *testing.T) {
	for in, want := range map[string]string{
		"echo":          "echo",
		"/orders/42":    "orders/42",
		"a b":           "a%20b",
		"what?x=1":      "what%3Fx=1",
		"100%":          "100%25",
		"a/../b":        "a/../b", // left for ParseMethod to refuse
		"nul\x00inside": "nul%00inside",
	} {
		if got := escapeMethod(in); got != want {
			t.Errorf("escapeMethod(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGRPCStatusFromTrailers(t *testing.T) {
	if err := grpcStatus(http.Header{"Grpc-Status": {"0"}}, "a"); err != nil {
		t.Errorf("status 0: %v", err)
	}
	err := grpcStatus(http.Header{"Grpc-Status": {"5"}, "Grpc-Message": {"no%20such%20thing%"}}, "a")
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no%20such%20thing%" {
		// A malformed escape is left as it came.
		t.Errorf("got %v", err)
	}
	err = grpcStatus(http.Header{"Grpc-Status": {"9"}, "Grpc-Message": {"caf%C3%A9 closed"}}, "a")
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != "café closed" {
		t.Errorf("got %v", err)
	}
	details, _ := proto.Marshal(status.New(codes.Aborted, "with details").Proto())
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		err = grpcStatus(http.Header{"Grpc-Status": {"10"}, "Grpc-Status-Details-Bin": {enc.EncodeToString(details)}}, "a")
		if st := status.Convert(err); st.Code() != codes.Aborted || st.Message() != "with details" {
			t.Errorf("details: got %v", err)
		}
	}
	for _, h := range []http.Header{{}, {"Grpc-Status": {"x"}}} {
		if st := status.Convert(grpcStatus(h, "a")); st.Code() != codes.Internal {
			t.Errorf("%v: got %v, want Internal", h, st)
		}
	}
}
