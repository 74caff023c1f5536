package grpcapi

import (
	"context"
	"net/http"
	"reflect"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
)

// reader reads the requests of the sidecar's own services (Dapr's and the
// health service; proxied calls pass as frames and are not read here): a
// call's first message must arrive within timeout of its headers, and every
// message must be protobuf of the method's type. A call that breaks either
// rule gets its answer through the server's interceptors, as any other
// answer (so it is counted, traced and logged): DeadlineExceeded or
// InvalidArgument, naming the bound or the field.
type reader struct {
	timeout time.Duration
	late    *apierr.Error
}

func newReader(timeout time.Duration) *reader {
	return &reader{timeout: timeout, late: apierr.New(apierr.CodeMalformedRequest, http.StatusRequestTimeout, codes.DeadlineExceeded,
		"no request message within %s of the call's headers (--grpc-first-message-timeout); a call to the sidecar's own methods sends its request as it starts", timeout)}
}

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
			refused, err = r.recv(dec, m, true)
			return err
		}
		intercept := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if refused != nil {
				// A late request may still be being decoded into req.
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
	r    *reader
	read bool // a message has been asked for
}

func (s *readStream) RecvMsg(m any) error {
	refused, err := s.r.recv(s.ServerStream.RecvMsg, m, !s.read)
	s.read = true
	if refused != nil {
		return refused
	}
	return err
}

// recv reads a message into m with read (the call's RecvMsg), within the
// timeout when it is the call's first. refused is the answer for a request
// at fault (late, or not protobuf of m's type); err is read's own failure
// (the client went away, or broke the protocol), which gRPC has answered.
func (r *reader) recv(read func(any) error, m any, first bool) (refused, err error) {
	in := &request{m: m}
	if !first {
		err = read(in)
	} else {
		// The read cannot be interrupted but by the stream's end, which
		// the call's answer brings: it runs beside the timer.
		done := make(chan error, 1)
		go func() { done <- read(in) }()
		t := time.NewTimer(r.timeout)
		select {
		case err = <-done:
			t.Stop()
		case <-t.C:
			return r.late, nil
		}
	}
	if err != nil {
		return nil, err
	}
	if in.err != nil {
		return in.err, nil
	}
	return nil, nil
}
