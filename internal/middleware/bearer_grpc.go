package middleware

import (
	"context"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// withMetadata is ctx whose incoming gRPC metadata is h, the call's
// headers as the pipeline left them (a middleware may set or remove
// some: a token, verified claims), so that the handler and the calls it
// makes see them.
func withMetadata(ctx context.Context, h http.Header) context.Context {
	md := make(metadata.MD, len(h))
	for k, v := range h {
		md[strings.ToLower(k)] = v
	}
	return metadata.NewIncomingContext(ctx, md)
}

// streamContext is a server stream whose context is ctx.
type streamContext struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *streamContext) Context() context.Context { return s.ctx }
