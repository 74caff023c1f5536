package telemetry

import (
	"context"
	"strings"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// mdCarrier lets the propagator read and write gRPC metadata.
type mdCarrier metadata.MD

func (c mdCarrier) Get(k string) string {
	if v := metadata.MD(c).Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (c mdCarrier) Set(k, v string) { metadata.MD(c).Set(k, v) }
func (c mdCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// GRPCServerOptions are the interceptors that give every call of the gRPC
// API a server span: Dapr's methods by their full name (InvokeService as
// CallLocal/<app-id>/<method>), and proxied calls as
// CallLocal/<app-id>/<service/method>. None when tracing is off.
func (t *Tracing) GRPCServerOptions() []grpc.ServerOption {
	if !t.wraps() {
		return nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			p := t.provider()
			if p == nil {
				return h(ctx, req)
			}
			name := info.FullMethod
			var extra []attribute.KeyValue
			if in, ok := req.(*runtimev1pb.InvokeServiceRequest); ok {
				name = InvokeSpanName(in.GetId(), in.GetMessage().GetMethod())
				extra = append(extra, attribute.String(attrDaprMethod, in.GetMessage().GetMethod()), attribute.String(attrPeerService, in.GetId()))
			}
			ctx, span := t.startGRPCServer(ctx, p, name, info.FullMethod, extra...)
			resp, err := h(ctx, req)
			endGRPC(span, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			p := t.provider()
			if p == nil {
				return h(srv, ss)
			}
			name := info.FullMethod
			md, _ := metadata.FromIncomingContext(ss.Context())
			var extra []attribute.KeyValue
			if ids := md.Get("dapr-app-id"); len(ids) > 0 {
				name = InvokeSpanName(ids[0], info.FullMethod)
				extra = append(extra, attribute.String(attrPeerService, ids[0]))
			}
			ctx, span := t.startGRPCServer(ss.Context(), p, name, info.FullMethod, extra...)
			err := h(srv, &ctxStream{ServerStream: ss, ctx: ctx})
			endGRPC(span, err)
			return err
		}),
	}
}

func (t *Tracing) startGRPCServer(ctx context.Context, p *provider, name, fullMethod string, extra ...attribute.KeyValue) (context.Context, trace.Span) {
	md, _ := metadata.FromIncomingContext(ctx)
	ctx = t.prop.Extract(ctx, mdCarrier(md))
	ctx, sp := p.tracer.Start(ctx, name, serverKind)
	if s, ok := sp.(*span); ok { // sampled
		service, method := splitMethod(fullMethod)
		s.SetAttributes(
			attribute.String(attrDaprProtocol, "grpc"),
			attribute.String(attrDaprAPI, fullMethod),
			attribute.String(attrRPCSystem, "grpc"),
			attribute.String(attrRPCService, service),
			attribute.String(attrRPCMethod, method))
		s.SetAttributes(extra...)
	}
	return ctx, sp
}

func endGRPC(span trace.Span, err error) {
	st := status.Convert(err)
	span.SetAttributes(attribute.Int(attrGRPCStatus, int(st.Code())))
	if err != nil {
		span.SetStatus(codes.Error, st.Code().String()+": "+st.Message())
	}
	span.End()
}

// GRPCClientOptions are the dial options that give each call to a gRPC app
// a client span named by name, and send its context as W3C metadata. While
// tracing is off they send the caller's trace context, or a new one, as
// daprd does (untracedHeader).
func (t *Tracing) GRPCClientOptions(name func(fullMethod string) string) []grpc.DialOption {
	if !t.wraps() {
		return []grpc.DialOption{grpc.WithChainUnaryInterceptor(untracedUnary)}
	}
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		p := t.provider()
		if p == nil {
			return untracedUnary(ctx, method, req, reply, cc, invoker, opts...)
		}
		ctx, sp := p.tracer.Start(ctx, name(method), clientKind)
		if s, ok := sp.(*span); ok { // sampled
			service, m := splitMethod(method)
			s.SetAttributes(attribute.String(attrRPCSystem, "grpc"), attribute.String(attrRPCService, service), attribute.String(attrRPCMethod, m))
		}
		md, _ := metadata.FromOutgoingContext(ctx)
		md = md.Copy()
		t.prop.Inject(ctx, mdCarrier(md))
		err := invoker(metadata.NewOutgoingContext(ctx, md), method, req, reply, cc, opts...)
		endGRPC(sp, err)
		return err
	})}
}

// ctxStream is a ServerStream whose context carries the span.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "", full
}
