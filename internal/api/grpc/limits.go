package grpcapi

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/tap"

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

// The bounds of the API port's calls, by default.
const (
	// DefaultMaxStreamsPerConn is how many calls one connection carries at
	// once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS): clients hold further
	// calls until one ends, or open another connection. Streams a client
	// opens past it are refused (RST_STREAM REFUSED_STREAM).
	DefaultMaxStreamsPerConn = 1000
	// DefaultMaxStreams bounds the calls in flight over all connections,
	// as the internal port's bound does (invoke.DefaultMaxHopCalls).
	DefaultMaxStreams = 4096
	// DefaultFirstMessageTimeout is how long a call to the sidecar's own
	// services may take to send its request after its headers, as long as
	// a buffered HTTP body may take to arrive.
	DefaultFirstMessageTimeout = 30 * time.Second
)

// admission decides on each call from its headers, as they arrive and
// before anything else of the call is read or a goroutine started for it:
// admit (the API token) must say yes, and the calls in flight over all
// connections must be fewer than max; past it a call ends at once with
// ResourceExhausted. A call counts until its stream ends, however it ends.
type admission struct {
	admit    func(*tap.Info) error
	max      int64
	inFlight atomic.Int64
	full     *apierr.Error
	release  func()
}

func newAdmission(admit func(*tap.Info) error, limit int) *admission {
	a := &admission{admit: admit, max: int64(limit)}
	a.full = apierr.New(apierr.CodeTooManyRequests, http.StatusServiceUnavailable, codes.ResourceExhausted,
		"the sidecar's gRPC API has %d calls in flight, its limit (--grpc-max-streams); try again later", limit)
	a.release = func() { a.inFlight.Add(-1) }
	return a
}

// tap is the grpc.InTapHandle of the API port. ctx is the call's, which
// gRPC cancels when the stream ends.
func (a *admission) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if a.admit != nil {
		if err := a.admit(info); err != nil {
			return ctx, err
		}
	}
	if a.inFlight.Add(1) > a.max {
		a.inFlight.Add(-1)
		return ctx, a.full
	}
	context.AfterFunc(ctx, a.release)
	return ctx, nil
}
