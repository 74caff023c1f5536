package telemetry

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
)

type emptyService struct {
	testpb.UnimplementedTestServiceServer
}

func (emptyService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

// A gRPC call through the client and server interceptors: two spans, the
// server's a child of the client's, each with its RPC attributes and the
// call's status.
func TestGRPCSpansCarryTheCall(t *testing.T) {
	tr, rec := recording(t, "front")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(tr.GRPCServerOptions()...)
	testpb.RegisterTestServiceServer(srv, emptyService{})
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), append(tr.GRPCClientOptions(appSpanNameOf("addapp")),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "dapr-app-id", "addapp")
	if _, err := testpb.NewTestServiceClient(conn).EmptyCall(ctx, &testpb.Empty{}); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans: %v", len(spans), names(spans))
	}
	server, client := spans[0], spans[1]
	if client.Name() != "CallApp/addapp/grpc.testing.TestService/EmptyCall" || server.Name() != "/grpc.testing.TestService/EmptyCall" {
		t.Errorf("spans %q and %q", client.Name(), server.Name())
	}
	if server.Parent().SpanID() != client.SpanContext().SpanID() || server.SpanContext().TraceID() != client.SpanContext().TraceID() {
		t.Errorf("the server's span is not the client's child: parent %v, client %v", server.Parent(), client.SpanContext())
	}
	for _, s := range spans {
		for k, want := range map[string]string{"rpc.system": "grpc", "rpc.service": "grpc.testing.TestService", "rpc.method": "EmptyCall", "rpc.grpc.status_code": "0"} {
			if got := attr(s, k); got != want {
				t.Errorf("%s: %s = %q, want %q", s.Name(), k, got, want)
			}
		}
	}
	if got := attr(server, "dapr.api"); got != "/grpc.testing.TestService/EmptyCall" || attr(server, "dapr.protocol") != "grpc" {
		t.Errorf("server span: dapr.api %q, dapr.protocol %q", got, attr(server, "dapr.protocol"))
	}
}

func appSpanNameOf(appID string) func(string) string {
	return func(m string) string { return appSpanName(appID, m) }
}
