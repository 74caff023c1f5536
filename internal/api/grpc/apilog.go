package grpcapi

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// LoggingOptions log every call of the gRPC API as it ends
// (--enable-api-logging), as daprd does ("gRPC API Called"): the full
// method (a proxied call's is the app's method), the status code, the
// duration in milliseconds and the user agent. The health service is not
// logged.
func LoggingOptions(log *slog.Logger) []grpc.ServerOption {
	logCall := func(ctx context.Context, method string, start time.Time, err error) {
		if strings.HasPrefix(method, "/grpc.health.v1.Health/") {
			return
		}
		attrs := []any{"method", method, "code", status.Code(err).String(), "duration", time.Since(start).Milliseconds()}
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("user-agent")) > 0 {
			attrs = append(attrs, "useragent", md.Get("user-agent")[0])
		}
		log.Info("gRPC API Called", attrs...)
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			start := time.Now()
			resp, err := h(ctx, req)
			logCall(ctx, info.FullMethod, start, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			start := time.Now()
			err := h(srv, ss)
			logCall(ss.Context(), info.FullMethod, start, err)
			return err
		}),
	}
}
