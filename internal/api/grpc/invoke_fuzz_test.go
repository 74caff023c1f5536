package grpcapi

import (
	"net/http"
	"net/url"
	"testing"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/metadata"

	"github.com/tandem-run/tandem/internal/invoke"
)

// FuzzInvokeRequest: whatever an InvokeServiceRequest holds, invokeCall
// either refuses it or returns a call that can go on the wire as it is: a
// method the app receives unchanged, a query and headers that no HTTP/2 peer
// resets as malformed.
func FuzzInvokeRequest(f *testing.F) {
	f.Add("echo", "", "", "text/plain", "v", 1)
	f.Add("echo?x=1&y=2", "z=3", "a b", "", "v", 3)
	f.Add("a/../b", "q=\x01", "k", "t\x00", "v\r\n", 0)
	f.Add("%2F?#", "#", "x-bin", "", "\x00\xff", 9)
	f.Fuzz(func(t *testing.T, method, query, mdKey, contentType, mdValue string, verb int) {
		in := &runtimev1pb.InvokeServiceRequest{Id: "app", Message: &commonv1pb.InvokeRequest{
			Method:        method,
			ContentType:   contentType,
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_Verb(verb), Querystring: query},
		}}
		md := metadata.MD{}
		if mdKey != "" {
			md[mdKey] = []string{mdValue}
		}
		call, err := invokeCall(in, md)
		if err != nil {
			return
		}
		if m, err := invoke.ParseMethod(call.Method); err != nil || m != call.Method {
			t.Fatalf("accepted method %q does not parse: %v", call.Method, err)
		}
		if err := invoke.CheckQuery(call.RawQuery); err != nil {
			t.Fatalf("accepted query: %v", err)
		}
		if err := invoke.CheckHeader(call.Header, "header"); err != nil {
			t.Fatalf("accepted header: %v", err)
		}
		u := "http://app/" + call.Method
		if call.RawQuery != "" {
			u += "?" + call.RawQuery
		}
		pu, err := url.ParseRequestURI(u)
		if err != nil {
			t.Fatalf("accepted call is no URL %q: %v", u, err)
		}
		if pu.RawQuery != call.RawQuery {
			t.Fatalf("query %q became %q on the wire", call.RawQuery, pu.RawQuery)
		}
		if _, err := http.NewRequest(call.Verb, u, nil); err != nil {
			t.Fatalf("accepted call is no request: %v", err)
		}
	})
}
