package grpcapi

import (
	"context"
	"reflect"

	"google.golang.org/grpc"
)

// reader reads the requests of the sidecar's own services (Dapr's and the
// health service; proxied calls pass as frames and are not read here):
// every message must be protobuf of the method's type. A call whose request
// is not gets its answer through the server's interceptors, as any other
// answer (so it is counted, traced and logged): InvalidArgument, naming the
// type and the field.
type reader struct{}

func newReader() *reader { return &reader{} }

// bounded returns desc with its handlers reading their requests through r.
func (r *reader) bounded(desc *grpc.ServiceDesc) *grpc.ServiceDesc {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, m := range desc.Methods {
		m.Handler = r.unary(m.Handler)
		d.Methods[i] = m
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, st := range desc.Streams {
		st.Handler = r.stream(st.Handler)
		d.Streams[i] = st
	}
	return &d
}

// unary wraps a unary method's handler. The handler decodes the request
// before it calls the interceptors; a request r refuses is decoded as
// successful, and the interceptors are then given a handler that answers
// with the refusal.
func (r *reader) unary(h grpc.MethodHandler) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, next grpc.UnaryServerInterceptor) (any, error) {
		var refused error
		read := func(m any) error {
			var err error
			refused, err = r.recv(dec, m)
			return err
		}
		intercept := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if refused != nil {
				req = reflect.New(reflect.TypeOf(req).Elem()).Interface()
				h = func(context.Context, any) (any, error) { return nil, refused }
			}
			if next == nil {
				return h(ctx, req)
			}
			return next(ctx, req, info, h)
		}
		return h(srv, ctx, read, intercept)
	}
}

// stream wraps a streaming method's handler: its stream reads through r.
func (r *reader) stream(h grpc.StreamHandler) grpc.StreamHandler {
	return func(srv any, ss grpc.ServerStream) error {
		return h(srv, &readStream{ServerStream: ss, r: r})
	}
}

type readStream struct {
	grpc.ServerStream
	r *reader
}

func (s *readStream) RecvMsg(m any) error {
	refused, err := s.r.recv(s.ServerStream.RecvMsg, m)
	if refused != nil {
		return refused
	}
	return err
}

// recv reads a message into m with read (the call's RecvMsg). refused is
// the answer for a request at fault (not protobuf of m's type); err is
// read's own failure (the client went away, or broke the protocol), which
// gRPC has answered.
func (r *reader) recv(read func(any) error, m any) (refused, err error) {
	in := &request{m: m}
	if err := read(in); err != nil {
		return nil, err
	}
	if in.err != nil {
		return in.err, nil
	}
	return nil, nil
}
