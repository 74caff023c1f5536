package main

import (
	"bytes"
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// probeApp echoes the request's x-probe metadata in its header and
// trailer, and fails a call whose payload is "fail".
type probeApp struct {
	testpb.UnimplementedTestServiceServer
}

func (probeApp) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	probe := md.Get("x-probe")
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-head", "h:"+first(probe)))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trail", "t:"+first(probe)))
	if string(in.GetPayload().GetBody()) == "fail" {
		return nil, status.Error(codes.FailedPrecondition, "asked to fail")
	}
	return &testpb.SimpleResponse{Payload: in.GetPayload()}, nil
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func serveGRPC(t testing.TB, srv *grpc.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// TestGRPCFloor runs the gRPC floor's two proxies in this process: a call
// through them reaches the app with its metadata, and the app's message,
// header, trailer and error status come back as the app sent them.
func TestGRPCFloor(t *testing.T) {
	app := grpc.NewServer()
	testpb.RegisterTestServiceServer(app, probeApp{})
	addr := serveGRPC(t, app)
	for range 2 {
		srv, conn, err := newGRPCFloorProxy(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		addr = serveGRPC(t, srv)
	}
	conn, err := dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := testpb.NewTestServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-probe", "p1")

	var hdr, trl metadata.MD
	resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hello")}}, grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.GetPayload().GetBody()); got != "hello" {
		t.Errorf("answer %q, want hello", got)
	}
	if first(hdr.Get("x-head")) != "h:p1" || first(trl.Get("x-trail")) != "t:p1" {
		t.Errorf("header %v, trailer %v; want the app's, with the metadata it was sent", hdr, trl)
	}

	_, err = c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("fail")}}, grpc.Trailer(&trl))
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != "asked to fail" {
		t.Errorf("failing call: %v, want the app's FailedPrecondition", err)
	}
	if first(trl.Get("x-trail")) != "t:p1" {
		t.Errorf("failing call's trailer %v, want the app's", trl)
	}

	if _, err := c.EmptyCall(ctx, &testpb.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("a method the app lacks: %v, want the app's Unimplemented", err)
	}
}

func TestGRPCFloorArguments(t *testing.T) {
	if err := serveGRPCFloorProxy([]string{"127.0.0.1:0"}); err == nil {
		t.Error("one argument: no error")
	}
}

// BenchmarkGRPCFloor is cmd/sidecar's BenchmarkGRPCProxy on the floor: one
// unary call, 1 KiB each way, from a client through the floor's two
// proxies in this process to an echo app, to set the sidecars' in-process
// cost per proxied call beside the floor's:
//
//	go test -run '^$' -bench GRPCFloor -benchmem -cpu 1 ./bench
func BenchmarkGRPCFloor(b *testing.B) {
	app := grpc.NewServer()
	testpb.RegisterTestServiceServer(app, probeApp{})
	addr := serveGRPC(b, app)
	for range 2 {
		srv, conn, err := newGRPCFloorProxy(addr)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		addr = serveGRPC(b, srv)
	}
	conn, err := dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := testpb.NewTestServiceClient(conn)
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: bytes.Repeat([]byte("x"), 1024)}}
	call := func() {
		resp, err := c.UnaryCall(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		if n := len(resp.GetPayload().GetBody()); n != 1024 {
			b.Fatalf("answer of %d bytes, want 1024", n)
		}
	}
	call() // warm the connections
	b.ReportAllocs()
	for b.Loop() {
		call()
	}
}
