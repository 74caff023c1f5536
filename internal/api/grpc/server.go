// Package grpcapi is the gRPC adapter of the sidecar: the Dapr service
// dapr.proto.runtime.v1.Dapr (types generated from Dapr's own protos, the
// module Dapr's SDKs use, so the wire format is Dapr's by construction), and
// the gRPC proxy that forwards any other service, called with dapr-app-id
// metadata, to that app. The behaviour lives in internal/invoke, pkg/state and
// the publish API (api.Publisher); errors are rendered by internal/apierr,
// the same catalog as HTTP.
package grpcapi

import (
	"context"
	"log/slog"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tandem-run/tandem/internal/api"
	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/internal/subscribe"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/state"
)

// Server implements the Dapr gRPC service. Methods it does not implement
// answer Unimplemented with the method's name.
type Server struct {
	runtimev1pb.UnimplementedDaprServer

	inv     invoke.Caller
	state   *state.Service
	pub     api.Publisher
	life    api.Lifecycle
	maxBody int64
	maxHdr  int
	perConn int
	adm     *admission
	reader  *reader
	subs    *subscribe.Subscriber
	log     *slog.Logger
}

// Config is what the gRPC API serves.
type Config struct {
	Invoker invoke.Caller
	State   *state.Service
	// Publisher publishes (PublishEvent); with no PubSub, every pub/sub
	// is not found.
	Publisher api.Publisher
	Lifecycle api.Lifecycle
	// MaxBodySize bounds the messages of unary calls, as it bounds the
	// buffered HTTP APIs.
	MaxBodySize int64
	// MaxHeaderBytes bounds a call's metadata, counted as HTTP/2 counts a
	// header list; over it a call fails with ResourceExhausted. 0: no bound
	// of ours.
	MaxHeaderBytes int
	// MaxStreamsPerConn bounds the calls one connection carries at once;
	// 0: DefaultMaxStreamsPerConn.
	MaxStreamsPerConn int
	// MaxStreams bounds the calls in flight over all connections; past it
	// a call ends at once with ResourceExhausted. 0: DefaultMaxStreams.
	MaxStreams int
	// FirstMessageTimeout ends a call to the sidecar's own services (Dapr's
	// and the health service) that has sent no request this long after its
	// headers. Proxied calls have no such bound: an app's stream may wait
	// for its server to speak first. 0: DefaultFirstMessageTimeout.
	FirstMessageTimeout time.Duration
	// Admit, when set, decides from a call's headers, as they arrive and
	// before anything of the call is read, whether it is served (the API
	// token, token.Guard.GRPC); its error is the call's answer.
	Admit func(*tap.Info) error
	// Subscriber serves streaming subscriptions
	// (SubscribeTopicEventsAlpha1); nil: Unimplemented.
	Subscriber *subscribe.Subscriber
	Logger     *slog.Logger
}

// New returns the gRPC API server, ready to register.
func New(c Config) *Server {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxStreamsPerConn <= 0 {
		c.MaxStreamsPerConn = DefaultMaxStreamsPerConn
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.FirstMessageTimeout <= 0 {
		c.FirstMessageTimeout = DefaultFirstMessageTimeout
	}
	if c.Publisher.PubSub == nil {
		c.Publisher.PubSub = pubsub.NewService()
	}
	return &Server{
		inv: c.Invoker, state: c.State, pub: c.Publisher, life: c.Lifecycle, maxBody: c.MaxBodySize, maxHdr: c.MaxHeaderBytes,
		perConn: c.MaxStreamsPerConn, adm: newAdmission(c.Admit, c.MaxStreams), reader: newReader(c.FirstMessageTimeout),
		subs: c.Subscriber, log: c.Logger,
	}
}

// ServerOptions are the options the grpc.Server of the API port needs: the
// codec that lets proxied calls pass as raw bytes, the proxy for unknown
// services, the bounds of calls (per connection and in all, decided with
// the API token as a call's headers arrive), and message and metadata
// limits.
func (s *Server) ServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(codec{}),
		grpc.UnknownServiceHandler(s.proxy),
		grpc.MaxRecvMsgSize(int(min(s.maxBody, 1<<31-1))),
		grpc.MaxConcurrentStreams(uint32(s.perConn)),
		grpc.InTapHandle(s.adm.tap),
	}
	if s.maxHdr > 0 {
		opts = append(opts, headerLimit(s.maxHdr)...)
	}
	return opts
}

// Register registers the Dapr service and gRPC's health service on g,
// their requests read within the first-message bound and answered
// InvalidArgument when they are not protobuf of their type.
func (s *Server) Register(g *grpc.Server) {
	g.RegisterService(s.reader.bounded(&runtimev1pb.Dapr_ServiceDesc), s)
	g.RegisterService(s.reader.bounded(&healthpb.Health_ServiceDesc), health.NewServer())
}

// GetMetadata returns the sidecar's metadata.
func (s *Server) GetMetadata(context.Context, *runtimev1pb.GetMetadataRequest) (*runtimev1pb.GetMetadataResponse, error) {
	m := s.life.Metadata()
	out := &runtimev1pb.GetMetadataResponse{
		Id:               m.ID,
		RuntimeVersion:   m.RuntimeVersion,
		EnabledFeatures:  m.EnabledFeatures,
		ExtendedMetadata: m.Extended,
		ActorRuntime: &runtimev1pb.ActorRuntime{
			RuntimeStatus: runtimev1pb.ActorRuntime_ActorRuntimeStatus(runtimev1pb.ActorRuntime_ActorRuntimeStatus_value[m.ActorRuntime.RuntimeStatus]),
			HostReady:     m.ActorRuntime.HostReady,
			Placement:     m.ActorRuntime.Placement,
		},
	}
	for _, c := range m.Components {
		out.RegisteredComponents = append(out.RegisteredComponents, &runtimev1pb.RegisteredComponents{
			Name: c.Name, Type: c.Type, Version: c.Version, Capabilities: c.Capabilities,
		})
	}
	for _, sb := range m.Subscriptions {
		ps := &runtimev1pb.PubsubSubscription{PubsubName: sb.PubsubName, Topic: sb.Topic, Metadata: sb.Metadata,
			DeadLetterTopic: sb.DeadLetterTopic, Rules: &runtimev1pb.PubsubSubscriptionRules{},
			Type: runtimev1pb.PubsubSubscriptionType(runtimev1pb.PubsubSubscriptionType_value[sb.Type])}
		for _, r := range sb.Rules {
			ps.Rules.Rules = append(ps.Rules.Rules, &runtimev1pb.PubsubSubscriptionRule{Match: r.Match, Path: r.Path})
		}
		out.Subscriptions = append(out.Subscriptions, ps)
	}
	a := m.AppConnectionProperties
	out.AppConnectionProperties = &runtimev1pb.AppConnectionProperties{
		Port: int32(a.Port), Protocol: a.Protocol, ChannelAddress: a.ChannelAddress, MaxConcurrency: int32(a.MaxConcurrency),
	}
	if h := a.Health; h != nil {
		out.AppConnectionProperties.Health = &runtimev1pb.AppConnectionHealthProperties{
			HealthCheckPath: h.HealthCheckPath, HealthProbeInterval: h.HealthProbeInterval,
			HealthProbeTimeout: h.HealthProbeTimeout, HealthThreshold: int32(h.HealthThreshold),
		}
	}
	return out, nil
}

// SetMetadata sets a key of the sidecar's extended metadata.
func (s *Server) SetMetadata(_ context.Context, in *runtimev1pb.SetMetadataRequest) (*emptypb.Empty, error) {
	if err := s.life.SetMetadata(in.GetKey(), in.GetValue()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Shutdown asks the sidecar to stop gracefully.
func (s *Server) Shutdown(context.Context, *runtimev1pb.ShutdownRequest) (*emptypb.Empty, error) {
	s.life.Shutdown()
	return &emptypb.Empty{}, nil
}
