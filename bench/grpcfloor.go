package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
)

// The gRPC floor is two bare gRPC proxies in a row, this binary re-run in
// gRPC floor proxy mode:
//
//	bench -grpc-floor-proxy LISTEN TARGET
//
// LISTEN and TARGET are host:port, plaintext. Each proxy is grpc-go with
// its defaults: a server whose unknown-service handler opens the same
// method on a client connection to TARGET and passes messages both ways as
// raw bytes, with the metadata, the header, the trailer and the status. It
// is what proxying a gRPC call costs with grpc-go's own transport and no
// other work, as two ReverseProxy processes are for HTTP.
func serveGRPCFloorProxy(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: -grpc-floor-proxy LISTEN TARGET, got %q", args)
	}
	srv, conn, err := newGRPCFloorProxy(args[1])
	if err != nil {
		return err
	}
	defer conn.Close()
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	announce(ln)
	return srv.Serve(ln)
}

// newGRPCFloorProxy is one hop of the gRPC floor, and its connection to
// target.
func newGRPCFloorProxy(target string) (*grpc.Server, *grpc.ClientConn, error) {
	conn, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		return nil, nil, err
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		return forwardGRPC(ss, conn)
	}))
	return srv, conn, nil
}

var anyStream = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// forwardGRPC passes the call on ss to the same method on conn.
func forwardGRPC(ss grpc.ServerStream, conn *grpc.ClientConn) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	method, _ := grpc.MethodFromServerStream(ss)
	md, _ := metadata.FromIncomingContext(ctx)
	md = md.Copy()
	delete(md, ":authority")
	cs, err := conn.NewStream(metadata.NewOutgoingContext(ctx, md), anyStream, method)
	if err != nil {
		return err
	}
	go func() {
		for {
			var m rawMessage
			if err := ss.RecvMsg(&m); err != nil {
				if errors.Is(err, io.EOF) {
					_ = cs.CloseSend()
				} else {
					cancel()
				}
				return
			}
			if cs.SendMsg(&m) != nil {
				return // RecvMsg below gives the status
			}
		}
	}()
	// The app's header goes out with its first message, or its status.
	var m rawMessage
	err = cs.RecvMsg(&m)
	if h, herr := cs.Header(); herr == nil {
		_ = ss.SetHeader(h)
	}
	for ; err == nil; err = cs.RecvMsg(&m) {
		if err := ss.SendMsg(&m); err != nil {
			return err
		}
	}
	ss.SetTrailer(cs.Trailer())
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// rawMessage is a message passed on as the bytes it came as.
type rawMessage struct{ b []byte }

// rawCodec passes rawMessages through without decoding them.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMessage)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMessage)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	m.b = data.Materialize()
	return nil
}
