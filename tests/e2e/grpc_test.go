package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// sdkClient connects the Dapr Go SDK to a sidecar's gRPC port.
func sdkClient(t *testing.T, s *sidecar) dapr.Client {
	t.Helper()
	c, err := dapr.NewClientWithAddress("127.0.0.1:" + strconv.Itoa(s.grpcPort))
	if err != nil {
		t.Fatalf("Dapr SDK client for %s: %v", s.appID, err)
	}
	t.Cleanup(c.Close)
	return c
}

// grpcConn is a plain gRPC connection to a sidecar's gRPC port.
func grpcConn(t *testing.T, s *sidecar) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(s.grpcPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantStatus checks err's gRPC code, that its message contains each of
// parts, and, when reason is not empty, its ErrorInfo reason.
func wantStatus(t *testing.T, err error, code codes.Code, reason string, parts ...string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a gRPC status", err)
	}
	if st.Code() != code {
		t.Errorf("code %s, want %s (message %q)", st.Code(), code, st.Message())
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Errorf("message %q does not contain %q", st.Message(), p)
		}
	}
	if reason == "" {
		return
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.GetReason() != reason {
				t.Errorf("ErrorInfo reason %q, want %q", info.GetReason(), reason)
			}
			return
		}
	}
	t.Errorf("no ErrorInfo in %v; want reason %q", st.Details(), reason)
}

func TestGRPCInvokeHTTPAppWithSDK(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("httpapp")
	callee := w.sidecar("httpapp", appPort)
	caller := w.sidecar("client", 0)
	callee.waitHealthy(t)
	c := sdkClient(t, caller)
	ctx := ctxT(t)

	out, err := c.InvokeMethodWithContent(ctx, "httpapp", "echo/a%20b?x=1&y=2", "put",
		&dapr.DataContent{ContentType: "text/plain", Data: []byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	var echo struct {
		Method, Path, Query, Body string
		Headers                   map[string][]string
	}
	if err := json.Unmarshal(out, &echo); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if echo.Method != "PUT" || echo.Path != "/echo/a%2520b" || echo.Query != "x=1&y=2" || echo.Body != "hello" {
		t.Errorf("the app saw %+v", echo)
	}
	if ct := echo.Headers["Content-Type"]; len(ct) != 1 || ct[0] != "text/plain" {
		t.Errorf("content type at the app: %v", ct)
	}
	if id := echo.Headers["Dapr-Caller-App-Id"]; len(id) != 1 || id[0] != "client" {
		t.Errorf("caller id at the app: %v", id)
	}

	// The app's status and headers come back as header metadata; a
	// non-2xx status is an error with the status in its ErrorInfo.
	api := runtimev1pb.NewDaprClient(grpcConn(t, caller))
	var hdr metadata.MD
	_, err = api.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{Id: "httpapp", Message: invokeRequest("status/404")}, grpc.Header(&hdr))
	wantStatus(t, err, codes.NotFound, "Not Found", "httpapp", "404")
	if got := hdr.Get("dapr-http-status"); len(got) != 1 || got[0] != "404" {
		t.Errorf("dapr-http-status %v, want 404", got)
	}
	if got := hdr.Get("x-test"); len(got) != 1 || got[0] != "status-404" {
		t.Errorf("the app's header X-Test came back as %v", got)
	}
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && (info.GetMetadata()["http.code"] != "404" || info.GetMetadata()["http.error_message"] != "status body") {
			t.Errorf("ErrorInfo metadata %v", info.GetMetadata())
		}
	}
	hdr = nil
	if _, err := api.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{Id: "httpapp", Message: invokeRequest("status/201")}, grpc.Header(&hdr)); err != nil {
		t.Errorf("201: %v", err)
	}
	if got := hdr.Get("dapr-http-status"); len(got) != 1 || got[0] != "201" {
		t.Errorf("dapr-http-status %v, want 201", got)
	}

	// Bad input.
	_, err = c.InvokeMethod(ctx, "nosuchapp", "echo", "get")
	wantStatus(t, err, codes.NotFound, "ERR_DIRECT_INVOKE", "nosuchapp")
	_, err = c.InvokeMethod(ctx, "httpapp", "a/../admin", "get")
	wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "..")
	_, err = c.InvokeMethod(ctx, "Bad_ID", "echo", "get")
	wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "app id")
	_, err = api.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{Id: "httpapp"})
	wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "message.method")
}

func invokeRequest(method string) *commonv1pb.InvokeRequest {
	return &commonv1pb.InvokeRequest{Method: method, HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET}}
}

func TestGRPCInvokeGRPCAppWithSDK(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.grpcApp("grpcapp")
	callee := w.sidecar("grpcapp", appPort, "--app-protocol", "grpc")
	caller := w.sidecar("client", 0)
	callee.waitHealthy(t)
	c := sdkClient(t, caller)
	ctx := ctxT(t)

	out, err := c.InvokeMethodWithContent(ctx, "grpcapp", "echo?q=1", "post",
		&dapr.DataContent{ContentType: "application/json", Data: []byte(`{"n":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	var echo struct {
		Data, ContentType, Verb, Query string
		Caller                         []string
	}
	if err := json.Unmarshal(out, &echo); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if echo.Data != `{"n":1}` || echo.ContentType != "application/json" || echo.Verb != "POST" || echo.Query != "q=1" ||
		len(echo.Caller) != 1 || echo.Caller[0] != "client" {
		t.Errorf("the gRPC app saw %+v", echo)
	}
	_, err = c.InvokeMethod(ctx, "grpcapp", "fail", "get")
	wantStatus(t, err, codes.NotFound, "", "no such thing")

	// The HTTP API reaches the same gRPC app.
	resp, b := do(t, "POST", caller.url+"/v1.0/invoke/grpcapp/method/echo?q=2", strings.NewReader("plain"), map[string][]string{"Content-Type": {"text/plain"}})
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"data":"plain"`) || !strings.Contains(string(b), `"query":"q=2"`) {
		t.Errorf("HTTP invoke of the gRPC app: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", caller.url+"/v1.0/invoke/grpcapp/method/fail", nil, nil)
	if resp.StatusCode != 404 || !strings.Contains(string(b), "no such thing") {
		t.Errorf("HTTP invoke of a failing gRPC method: %d %s", resp.StatusCode, b)
	}
}

func TestGRPCStateWithSDK(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar("stateapp", 0)
	c := sdkClient(t, s)
	ctx := ctxT(t)
	const store = "statestore"

	if err := c.SaveState(ctx, store, "k1", []byte(`{"v":1}`), nil); err != nil {
		t.Fatal(err)
	}
	it, err := c.GetState(ctx, store, "k1", nil)
	if err != nil || string(it.Value) != `{"v":1}` || it.Etag == "" {
		t.Fatalf("get k1: %+v %v", it, err)
	}
	// The same value through the HTTP API: one state service behind both.
	resp, b := do(t, "GET", s.url+"/v1.0/state/statestore/k1", nil, nil)
	if resp.StatusCode != 200 || string(b) != `{"v":1}` || resp.Header.Get("ETag") != it.Etag {
		t.Errorf("HTTP get: %d %s etag %q, want etag %q", resp.StatusCode, b, resp.Header.Get("ETag"), it.Etag)
	}

	// ETags: a stale one is refused, the current one accepted.
	if err := c.SaveStateWithETag(ctx, store, "k1", []byte(`{"v":2}`), it.Etag, nil); err != nil {
		t.Fatalf("save with the current etag: %v", err)
	}
	err = c.SaveStateWithETag(ctx, store, "k1", []byte(`{"v":3}`), it.Etag, nil)
	wantStatus(t, err, codes.Aborted, "ERR_STATE_SAVE", "etag")
	it2, _ := c.GetState(ctx, store, "k1", nil)
	if string(it2.Value) != `{"v":2}` {
		t.Errorf("after a refused save the value is %s", it2.Value)
	}
	err = c.DeleteStateWithETag(ctx, store, "k1", &dapr.ETag{Value: it.Etag}, nil, nil)
	wantStatus(t, err, codes.Aborted, "ERR_STATE_DELETE", "etag")
	if err := c.DeleteStateWithETag(ctx, store, "k1", &dapr.ETag{Value: it2.Etag}, nil, nil); err != nil {
		t.Fatalf("delete with the current etag: %v", err)
	}
	it3, err := c.GetState(ctx, store, "k1", nil)
	if err != nil || len(it3.Value) != 0 || it3.Etag != "" {
		t.Errorf("a deleted key reads as %+v %v", it3, err)
	}

	// Transactions and bulk.
	err = c.ExecuteStateTransaction(ctx, store, nil, []*dapr.StateOperation{
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: "a", Value: []byte("1")}},
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: "b", Value: []byte("2")}},
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: "c", Value: []byte("3")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A transaction with a stale ETag applies nothing.
	err = c.ExecuteStateTransaction(ctx, store, nil, []*dapr.StateOperation{
		{Type: dapr.StateOperationTypeDelete, Item: &dapr.SetStateItem{Key: "a"}},
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: "b", Value: []byte("x"), Etag: &dapr.ETag{Value: "999999"}}},
	})
	wantStatus(t, err, codes.Aborted, "ERR_STATE_TRANSACTION", "etag")
	items, err := c.GetBulkState(ctx, store, []string{"a", "b", "c", "missing"}, nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, it := range items {
		got[it.Key] = string(it.Value)
		if it.Error != "" {
			t.Errorf("bulk item %s: %s", it.Key, it.Error)
		}
	}
	if got["a"] != "1" || got["b"] != "2" || got["c"] != "3" || got["missing"] != "" || len(got) != 4 {
		t.Errorf("bulk: %v", got)
	}
	if err := c.DeleteBulkState(ctx, store, []string{"a", "b"}, nil); err != nil {
		t.Fatal(err)
	}
	items, _ = c.GetBulkState(ctx, store, []string{"a", "b", "c"}, nil, 0)
	for _, it := range items {
		if (it.Key == "c") != (len(it.Value) > 0) {
			t.Errorf("after bulk delete: %s=%q", it.Key, it.Value)
		}
	}

	// Bad input gets the gRPC codes daprd gives it, with daprd's ErrorInfo
	// reason where daprd has one (SDKs match on it), else the HTTP code.
	err = c.SaveState(ctx, "nostore", "k", []byte("v"), nil)
	wantStatus(t, err, codes.InvalidArgument, "DAPR_STATE_NOT_FOUND", "nostore", "statestore")
	_, err = c.GetState(ctx, store, "a||b", nil)
	wantStatus(t, err, codes.InvalidArgument, "DAPR_STATE_ILLEGAL_KEY", "||")
	err = c.SaveState(ctx, store, "k", []byte("v"), map[string]string{"ttlInSeconds": "soon"})
	wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "ttlInSeconds")
	err = c.SaveState(ctx, store, "", []byte("v"), nil)
	if err == nil {
		t.Error("a save with an empty key succeeded")
	}
	api := runtimev1pb.NewDaprClient(grpcConn(t, s))
	_, err = api.ExecuteStateTransaction(ctx, &runtimev1pb.ExecuteStateTransactionRequest{StoreName: store,
		Operations: []*runtimev1pb.TransactionalStateOperation{{OperationType: "merge", Request: &commonv1pb.StateItem{Key: "a"}}}})
	wantStatus(t, err, codes.InvalidArgument, "ERR_NOT_SUPPORTED_STATE_OPERATION", "merge", "upsert, delete")
	_, err = api.InvokeBinding(ctx, &runtimev1pb.InvokeBindingRequest{Name: "b", Operation: "create"})
	wantStatus(t, err, codes.Unimplemented, "", "InvokeBinding")

	md, err := c.GetMetadata(ctx)
	if err != nil || md.ID != "stateapp" || len(md.RegisteredComponents) != 1 || md.RegisteredComponents[0].Name != store {
		t.Errorf("metadata: %+v %v", md, err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := proc.For(t).ExitCode(s.Proc, 10*time.Second); code != 0 {
		t.Errorf("sidecar exit code after Shutdown: %d", code)
	}
}

func TestGRPCProxyThroughTwoSidecars(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.grpcApp("grpcapp")
	callee := w.sidecar("grpcapp", appPort, "--app-protocol", "grpc")
	caller := w.sidecar("client", 0)
	callee.waitHealthy(t)
	conn := grpcConn(t, caller)
	ts := testpb.NewTestServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "dapr-app-id", "grpcapp")

	// Unary, with the app's header and trailer metadata.
	var hdr, trl metadata.MD
	r, err := ts.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}}, grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		t.Fatal(err)
	}
	if string(r.GetPayload().GetBody()) != "ping" {
		t.Errorf("unary answer %q", r.GetPayload().GetBody())
	}
	if hdr.Get("x-app-header")[0] != "h" || hdr.Get("x-seen-app-id")[0] != "client" || len(trl.Get("x-app-trailer")) != 1 {
		t.Errorf("header %v trailer %v", hdr, trl)
	}
	_, err = ts.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("fail")}})
	wantStatus(t, err, codes.FailedPrecondition, "", "asked to fail")

	// Client streaming.
	cs, err := ts.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 1000, 70000} {
		if err := cs.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, n)}}); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := cs.CloseAndRecv()
	if err != nil || sum.GetAggregatedPayloadSize() != 71001 {
		t.Errorf("client stream: %v %v", sum, err)
	}

	// Server streaming, with a message of 1 MiB.
	ss, err := ts.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 3}, {Size: 1 << 20}, {Size: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for {
		m, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(m.GetPayload().GetBody()))
	}
	if len(sizes) != 3 || sizes[0] != 3 || sizes[1] != 1<<20 || sizes[2] != 5 {
		t.Errorf("server stream sizes %v", sizes)
	}

	// Bidirectional: each answer arrives before the next message is sent,
	// so nothing is buffered to the end of the call on either hop.
	bs, err := ts.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, word := range []string{"abc", "hello", "sidecar"} {
		if err := bs.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(word)}}); err != nil {
			t.Fatal(err)
		}
		m, err := bs.Recv()
		if err != nil {
			t.Fatal(err)
		}
		want := []byte(word)
		for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
			want[i], want[j] = want[j], want[i]
		}
		if string(m.GetPayload().GetBody()) != string(want) {
			t.Errorf("bidi answer %q, want %q", m.GetPayload().GetBody(), want)
		}
	}
	if err := bs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("bidi end: %v", err)
	}

	// Without dapr-app-id, an unknown service says what to send.
	_, err = ts.UnaryCall(ctxT(t), &testpb.SimpleRequest{})
	wantStatus(t, err, codes.Unimplemented, "", "dapr-app-id", "grpc.testing.TestService/UnaryCall")
	// An unknown app id names it.
	_, err = ts.UnaryCall(metadata.AppendToOutgoingContext(ctxT(t), "dapr-app-id", "nosuchapp"), &testpb.SimpleRequest{})
	wantStatus(t, err, codes.NotFound, "ERR_DIRECT_INVOKE", "nosuchapp")
}

func TestGRPCProxyToHTTPAppIsRefused(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("httpapp")
	callee := w.sidecar("httpapp", appPort)
	caller := w.sidecar("client", 0)
	callee.waitHealthy(t)
	ts := testpb.NewTestServiceClient(grpcConn(t, caller))
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "dapr-app-id", "httpapp")
	_, err := ts.UnaryCall(ctx, &testpb.SimpleRequest{})
	wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "--app-protocol grpc")
}
