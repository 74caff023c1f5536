package grpcapi

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Where a request goes wrong, as the InvalidArgument names it.
func TestBadField(t *testing.T) {
	str := func(num protowire.Number, v string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	msg := func(num protowire.Number, b ...[]byte) []byte {
		var in []byte
		for _, p := range b {
			in = append(in, p...)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), in)
	}
	varint := protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 1)
	for _, c := range []struct {
		name    string
		m       proto.Message
		b       []byte
		path    string
		badUTF8 bool
		found   bool
	}{
		{"valid", &runtimev1pb.GetStateRequest{}, append(str(1, "s"), str(2, "k")...), "", false, false},
		{"string", &runtimev1pb.GetStateRequest{}, append(str(1, "s"), str(2, "k\xff")...), "key", true, true},
		{"the first of two", &runtimev1pb.GetStateRequest{}, append(str(1, "\xff"), str(2, "\xff")...), "store_name", true, true},
		{"after a varint", &runtimev1pb.GetStateRequest{}, append(varint, str(2, "\xc3\x28")...), "key", true, true},
		{"map value", &runtimev1pb.GetStateRequest{}, msg(4, str(1, "a"), str(2, "\xff")), "metadata.value", true, true},
		{"map key", &runtimev1pb.GetStateRequest{}, msg(4, str(1, "\xff"), str(2, "b")), "metadata.key", true, true},
		{"repeated message", &runtimev1pb.SaveStateRequest{}, append(msg(2, str(1, "ok")), msg(2, str(1, "\xff"))...), "states.key", true, true},
		{"two levels", &runtimev1pb.InvokeServiceRequest{}, msg(3, msg(4, str(2, "q\xff"))), "message.http_extension.querystring", true, true},
		{"bytes are not strings", &runtimev1pb.SaveStateRequest{}, msg(2, str(1, "k"), str(2, "\xff")), "", false, false},
		{"unknown field", &runtimev1pb.GetStateRequest{}, str(99, "\xff"), "", false, false},
		{"truncated value", &runtimev1pb.GetStateRequest{}, []byte{0x12, 0x10, 'k'}, "key", false, true},
		{"truncated nested", &runtimev1pb.SaveStateRequest{}, msg(2, []byte{0x0a, 0x05}), "states.key", false, true},
		{"bad nested tag", &runtimev1pb.SaveStateRequest{}, msg(2, []byte{0x00}), "states", false, true},
		{"bad wire type", &runtimev1pb.SaveStateRequest{}, msg(2, []byte{0x0f}), "states.key", false, true},
		{"bad tag", &runtimev1pb.GetStateRequest{}, []byte("GET / HTTP/1.1"), "", false, true},
		{"truncated unknown field", &runtimev1pb.GetStateRequest{}, []byte{0xfa, 0x01, 0x10}, "", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, badUTF8, found := badField(c.m.ProtoReflect().Descriptor(), c.b, 0)
			if path != c.path || badUTF8 != c.badUTF8 || found != c.found {
				t.Errorf("badField = %q, %v, %v; want %q, %v, %v", path, badUTF8, found, c.path, c.badUTF8, c.found)
			}
			// Every case the walk finds, protobuf refuses too.
			if err := proto.Unmarshal(c.b, c.m); (err != nil) != c.found {
				t.Errorf("proto.Unmarshal: %v; the walk found %v", err, c.found)
			}
		})
	}
}

// rawCodec sends messages as the bytes they are.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// apiConn serves s as the sidecar does (its options, one interceptor that
// records every answer's code) and returns a connection to it.
func apiConn(t *testing.T, s *Server) (*grpc.ClientConn, func() []codes.Code) {
	t.Helper()
	var mu sync.Mutex
	var seen []codes.Code
	record := func(err error) {
		mu.Lock()
		seen = append(seen, status.Code(err))
		mu.Unlock()
	}
	opts := append(s.ServerOptions(),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			record(err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			err := h(srv, ss)
			record(err)
			return err
		}))
	g := grpc.NewServer(opts...)
	s.Register(g)
	ln := bufconn.Listen(1 << 20)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///api", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, func() []codes.Code {
		mu.Lock()
		defer mu.Unlock()
		return append([]codes.Code(nil), seen...)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A request that is not protobuf of its type is InvalidArgument naming the
// field, answered through the interceptors; a valid one is served.
func TestMalformedRequest(t *testing.T) {
	s := stateServer(t, 1<<20)
	conn, seen := apiConn(t, s)
	body := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "statestore")
	body = protowire.AppendString(protowire.AppendTag(body, 2, protowire.BytesType), "k\xff")
	var out []byte
	err := conn.Invoke(testCtx(t), "/dapr.proto.runtime.v1.Dapr/GetState", &body, &out, grpc.ForceCodecV2(rawCodec{}))
	wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "dapr.proto.runtime.v1.GetStateRequest", "field key", "UTF-8")

	api := runtimev1pb.NewDaprClient(conn)
	if _, err := api.SaveState(testCtx(t), &runtimev1pb.SaveStateRequest{StoreName: "statestore", States: []*commonv1pb.StateItem{{Key: "k", Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	if got := seen(); len(got) != 2 || got[0] != codes.InvalidArgument || got[1] != codes.OK {
		t.Errorf("the interceptors saw %v; want [InvalidArgument OK]", got)
	}
}

// A call to the sidecar's own methods that sends no request is ended after
// the bound, unary or streaming, through the interceptors; a proxied call
// is not read here, and has no such bound.
func TestFirstMessageTimeout(t *testing.T) {
	s := New(Config{FirstMessageTimeout: 100 * time.Millisecond})
	conn, seen := apiConn(t, s)
	for _, method := range []string{
		"/dapr.proto.runtime.v1.Dapr/GetState",
		"/dapr.proto.runtime.v1.Dapr/SubscribeConfiguration",
		"/grpc.health.v1.Health/Check",
	} {
		cs, err := conn.NewStream(testCtx(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
		if err != nil {
			t.Fatal(err)
		}
		err = cs.RecvMsg(&emptypb.Empty{})
		wantStatus(t, err, codes.DeadlineExceeded, "ERR_MALFORMED_REQUEST", "100ms", "--grpc-first-message-timeout")
	}
	if got := seen(); len(got) != 3 || got[0] != codes.DeadlineExceeded || got[1] != codes.DeadlineExceeded || got[2] != codes.DeadlineExceeded {
		t.Errorf("the interceptors saw %v; want three DeadlineExceeded", got)
	}
	// A call that sends its request is served.
	cs, err := conn.NewStream(testCtx(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/grpc.health.v1.Health/Check")
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(&emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	_ = cs.CloseSend()
	if err := cs.RecvMsg(&emptypb.Empty{}); err != nil {
		t.Errorf("a health check: %v", err)
	}
}
