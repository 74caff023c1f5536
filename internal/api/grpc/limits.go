package grpcapi

import (
	"context"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tandem-run/tandem/internal/apierr"
)

// headerLimit refuses calls whose metadata is over max bytes, counted as
// HTTP/2 counts a header list (name, value and 32 bytes a field), with
// ResourceExhausted naming the size. The transport takes up to four times
// max, so that such calls reach the check and get a clear answer; past that
// gRPC resets them itself.
func headerLimit(max int) []grpc.ServerOption {
	check := func(ctx context.Context) error {
		md, _ := metadata.FromIncomingContext(ctx)
		n := 0
		for k, vv := range md {
			for _, v := range vv {
				n += len(k) + len(v) + 32
			}
		}
		if n > max {
			return apierr.New(apierr.CodeMalformedRequest, http.StatusRequestHeaderFieldsTooLarge, codes.ResourceExhausted,
				"the call's metadata is %d bytes, over the sidecar's limit of %d (--read-buffer-size)", n, max)
		}
		return nil
	}
	return []grpc.ServerOption{
		grpc.MaxHeaderListSize(uint32(min(4*max, 1<<30))),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}
