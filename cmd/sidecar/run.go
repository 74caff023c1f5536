package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/tandem-run/tandem/internal/acl"
	"github.com/tandem-run/tandem/internal/api"
	grpcapi "github.com/tandem-run/tandem/internal/api/grpc"
	httpapi "github.com/tandem-run/tandem/internal/api/http"
	"github.com/tandem-run/tandem/internal/api/token"
	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/identity"
	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/internal/maxprocs"
	"github.com/tandem-run/tandem/internal/middleware"
	"github.com/tandem-run/tandem/internal/reload"
	"github.com/tandem-run/tandem/internal/resiliency"
	"github.com/tandem-run/tandem/internal/subscribe"
	"github.com/tandem-run/tandem/internal/telemetry"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/resolver"
	"github.com/tandem-run/tandem/pkg/state"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.0.0-dev"

// run builds the sidecar and serves until ctx ends, a part fails, or the app
// asks for shutdown.
func run(ctx context.Context, o Options) error {
	o.procs, o.procsWhy = maxprocs.Apply(o.MaxProcs)
	o.gcPercent, o.memoryLimit = setGC()
	s, err := newSidecar(ctx, o)
	if err != nil {
		return err
	}
	return s.serve(ctx)
}

// sidecar is the sidecar's parts, wired and ready to serve.
type sidecar struct {
	o       Options
	log     *slog.Logger
	lns     *listeners
	ports   api.Ports
	appAddr string // empty: no app
	inv     *invoke.Invoker
	ident   *identity.Source // nil: mutual TLS off
	state   *state.Service
	pubsub  *pubsub.Service
	sub     *subscribe.Subscriber // nil: no app
	servers []*server
	grpc    *grpc.Server
	reg     io.Closer // the standalone registration; nil in kubernetes mode
	// The resources in force, watched while serving when hotReload.
	reload    *reload.Reloader
	hotReload bool
	acl       acl.Switch         // access control in force on the internal port
	mw        *middleware.Switch // the Configuration's middleware pipelines

	stop     chan struct{} // closed when the app asks for shutdown
	stopOnce sync.Once
	closers  []func() // what newSidecar opened, closed in reverse by close
}

// newSidecar wires the sidecar's parts: listeners, resources, telemetry,
// invocation, state, pub/sub and the servers. On error it closes what it opened.
func newSidecar(ctx context.Context, o Options) (_ *sidecar, err error) {
	s := &sidecar{o: o, log: newLogger(o), stop: make(chan struct{})}
	if len(o.Unused) > 0 {
		s.log.Warn("flags accepted without effect in this sidecar", "flags", strings.Join(o.Unused, "; "))
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.lns, err = listenAll(o); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.lns.close)
	res, err := newResolver(o)
	if err != nil {
		return nil, err
	}
	resolverCacheMetrics(o.AppID, res, prometheus.DefaultRegisterer)
	if s.reload, err = loadResources(ctx, o, s.log); err != nil {
		return nil, err
	}
	conf := s.reload.Configuration()
	s.hotReload = hotReload(o, conf, s.log)
	tset, err := conf.TracingSettings()
	if err != nil {
		return nil, err
	}
	tracing, err := telemetry.NewTracing(tset, telemetry.Options{AppID: o.AppID, Logger: s.log.With("component", "tracing"), Registerer: prometheus.DefaultRegisterer, Reloadable: s.hotReload})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracing.Shutdown(ctx); err != nil {
			s.log.Warn("flushing spans on shutdown", "err", err)
		}
	})
	metrics := telemetry.NewMetrics(o.AppID, prometheus.DefaultRegisterer)
	if s.ident, err = newIdentity(ctx, o, s.log); err != nil {
		return nil, err
	}
	if s.inv, err = s.newInvoker(res, tracing, metrics); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.inv.Close)
	s.state = state.NewService(o.AppID, o.Namespace)
	s.closers = append(s.closers, func() { _ = s.state.Close() })
	// Closed once the servers are drained: the publishes in flight have
	// ended by then.
	s.pubsub = pubsub.NewService()
	s.closers = append(s.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), o.GracefulShutdown)
		defer cancel()
		if err := s.pubsub.Shutdown(ctx); err != nil {
			s.log.Warn("closing the pub/sub brokers", "err", err)
		}
	})
	policies := resiliency.NewSwitch(s.inv, nil)
	// Metrics outside resiliency: a publish counts once, with its last
	// outcome (an open circuit among them); each try is a span.
	s.pubsub.Use(metrics.PubsubMiddleware(), policies.PubsubMiddleware(), tracing.PubsubMiddleware())
	telemetry.Pending(o.AppID, s.pubsub, prometheus.DefaultRegisterer)
	telemetry.ReplicaDropped(o.AppID, s.pubsub, prometheus.DefaultRegisterer)
	if s.sub, err = s.newSubscriber(policies, tracing); err != nil {
		return nil, err
	}
	s.mw = middleware.NewSwitch(o.AppID, prometheus.DefaultRegisterer, s.log.With("component", "middleware"))
	tg := reload.Targets{State: s.state, PubSub: s.pubsub, Tracing: tracing, ACL: &s.acl, Resiliency: policies, Middleware: s.mw}
	if s.appAddr != "" {
		tg.Subscriptions = s.sub
	}
	if err := s.reload.Apply(ctx, tg); err != nil {
		return nil, err
	}
	s.state.Use(policies.StateMiddleware(), metrics.StateMiddleware(), tracing.StateMiddleware())

	s.ports = api.Ports{
		HTTP:     s.lns.port(s.lns.http...),
		GRPC:     s.lns.port(s.lns.grpc...),
		Internal: s.lns.port(s.lns.internal),
		Public:   s.lns.port(s.lns.public),
		Metrics:  s.lns.port(s.lns.metrics),
		Profile:  s.lns.port(s.lns.profile),
	}
	s.newServers(policies, conf, tracing, metrics)
	if o.Mode == "standalone" {
		reg, err := register(o, s.internalAddr(), s.ports)
		if err != nil {
			return nil, err
		}
		s.reg = reg
		s.closers = append(s.closers, func() { _ = reg.Close() })
	}
	return s, nil
}

// internalAddr is how peers reach this sidecar's internal port.
func (s *sidecar) internalAddr() string {
	host := "127.0.0.1"
	if h := strings.Trim(s.o.InternalAddress, "[]"); h != "" && h != "0.0.0.0" && h != "::" {
		host = h
	}
	return net.JoinHostPort(host, strconv.Itoa(s.lns.port(s.lns.internal)))
}

func (s *sidecar) newInvoker(res resolver.Resolver, tracing *telemetry.Tracing, metrics *telemetry.Metrics) (*invoke.Invoker, error) {
	o := s.o
	if o.AppPort != 0 {
		s.appAddr = net.JoinHostPort(o.AppChannelAddress, strconv.Itoa(o.AppPort))
	}
	var limit int64 // streamed invocation is limited only when the flag is given
	if o.MaxBodySizeSet {
		limit = o.MaxBodySize
	}
	return invoke.New(invoke.Config{
		AppID:               o.AppID,
		Namespace:           o.Namespace,
		AppAddress:          s.appAddr,
		AppProtocol:         o.AppProtocol,
		MaxBodySize:         limit,
		InternalAddress:     s.internalAddr(),
		Logger:              s.log.With("component", "invoke"),
		WrapHop:             func(rt http.RoundTripper) http.RoundTripper { return metrics.HopClient(tracing.HopClient(rt)) },
		WrapApp:             tracing.AppClient(o.AppID),
		AppDialOptions:      tracing.AppGRPCOptions(o.AppID),
		AppToken:            o.AppToken,
		AppMaxConcurrency:   o.AppMaxConcurrency,
		StallTimeout:        o.InternalStallTimeout,
		Health:              o.AppHealth,
		Identity:            s.ident,
		AllowPlaintextPeers: o.AllowPlaintextPeers,
	}, res)
}

// newSubscriber is the subscriber that delivers the app's subscriptions,
// and the declared ones the reloader gives it, to the app, and the
// streaming subscriptions of the gRPC API; with no app, only those.
func (s *sidecar) newSubscriber(policies *resiliency.Switch, tracing *telemetry.Tracing) (*subscribe.Subscriber, error) {
	o := s.o
	cfg := subscribe.Config{
		AppID:         o.AppID,
		PubSub:        s.pubsub,
		Inbound:       func(name string) *resiliency.Policy { return policies.Policies().ComponentInbound(name) },
		Metrics:       subscribe.NewMetrics(o.AppID, prometheus.DefaultRegisterer),
		Tracer:        tracing,
		Logger:        s.log.With("component", "subscribe"),
		ShutdownGrace: o.GracefulShutdown,
	}
	switch {
	case s.appAddr == "":
	case s.inv.AppTransport() != nil:
		cfg.HTTP, cfg.Health = s.inv.AppTransport(), s.inv
	default:
		cfg.GRPC, cfg.Health = s.inv.AppCallback(), s.inv
	}
	return subscribe.New(cfg)
}

// newServers makes the HTTP API, internal, public, metrics and gRPC servers.
func (s *sidecar) newServers(caller invoke.Caller, conf *config.Configuration, tracing *telemetry.Tracing, metrics *telemetry.Metrics) {
	o := s.o
	var extended api.Extended
	life := api.Lifecycle{
		// Ready: the app answers, and the sidecar has a valid certificate
		// (liveness, the outbound route, depends on neither).
		AppReady: func(ctx context.Context) bool {
			return (s.ident == nil || s.ident.Ready()) && s.inv.AppReady(ctx)
		},
		Shutdown: func() { s.stopOnce.Do(func() { close(s.stop) }) },
		Metadata: func() api.Metadata {
			m := metadata(o, s.ports, s.state, s.pubsub, s.mw, s.sub, extended.All())
			m.Resources = s.reload.Status()
			if s.ident != nil {
				m.Extended[api.MTLSSpiffeIDKey] = s.ident.ID().String()
				if t := s.ident.NotAfter(); !t.IsZero() {
					m.Extended[api.MTLSCertExpiryKey] = t.UTC().Format(time.RFC3339)
				}
			}
			return m
		},

		// What apps and the Dapr CLI set, bounded.
		SetMetadata: extended.Set,
	}
	apiLog := s.log.With("component", "api")
	router := httpapi.NewRouter(func(name string, h http.Handler) http.Handler {
		if o.EnableAPILogging {
			h = httpapi.Logged(apiLog, name, h)
		}
		return tracing.HTTPServer(func(r *http.Request) string { return httpapi.SpanName(name, r) }, metrics.HTTP(name, h))
	})
	router.Add(httpapi.InvokeRoutes(caller)...)
	router.Add(httpapi.LifecycleRoutes(life)...)
	router.Add(httpapi.StateRoutes(s.state, o.MaxBodySize)...)
	publisher := api.Publisher{PubSub: s.pubsub, AppID: o.AppID}
	router.Add(httpapi.PublishRoutes(publisher, o.MaxBodySize)...)

	// The API token is checked before httpPipeline, as daprd does and as
	// the gRPC API does: a call without it takes nothing from a rate
	// limit's bucket.
	guard := token.New(o.APIToken)
	api := func(r *httpapi.Router, pipeline func(http.Handler) http.Handler) http.Handler {
		return httpapi.LimitHeaders(o.ReadBufferSize, guard.HTTP(pipeline(r), r.Public))
	}
	// Browsers on the developer's machine reach the HTTP API too: its Host
	// and Origin are checked first. The public port is not: it serves the
	// two GET health routes only, whose answer is no secret, to kubelet
	// probes that send the pod IP or a Host of the probe's own.
	s.servers = []*server{
		{name: "http", lns: s.lns.http, srv: newHTTPServer(o.ReadBufferSize, httpapi.CheckHost(o.AllowedHosts, httpapi.CORS(o.AllowedOrigins, api(router, s.apiPipeline))))},
		{name: "internal", lns: []net.Listener{s.internalListener()}, srv: newHopServer(o.ReadBufferSize+invoke.HopHeaderSlack,
			tracing.HopServer(o.AppID, s.inv.Authenticate(s.acl.Hop(s.mw.Hop(middleware.App, s.inv.HopHandler())))))},
	}
	if s.lns.public != nil {
		public := httpapi.NewRouter(nil)
		public.Add(httpapi.HealthRoutes(life)...)
		s.servers = append(s.servers, &server{name: "public", lns: []net.Listener{s.lns.public}, srv: newHTTPServer(o.ReadBufferSize, api(public, func(h http.Handler) http.Handler { return h }))})
	}
	if s.lns.metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.Handler())
		// The dashboard's read-only view: in Kubernetes the HTTP API binds
		// loopback and may require a token, so the dashboard reads this
		// instead (docs/dashboard.md).
		mux.Handle("GET "+httpapi.DashboardPath, httpapi.Dashboard(life))
		s.servers = append(s.servers, &server{name: "metrics", lns: []net.Listener{s.lns.metrics}, srv: newHTTPServer(o.ReadBufferSize, mux)})
	}
	if s.lns.profile != nil {
		s.servers = append(s.servers, &server{name: "profile", lns: []net.Listener{s.lns.profile}, srv: newHTTPServer(o.ReadBufferSize, profileMux())})
	}

	grpcAPI := grpcapi.New(grpcapi.Config{
		Invoker:             caller,
		State:               s.state,
		Publisher:           publisher,
		Lifecycle:           life,
		MaxBodySize:         o.MaxBodySize,
		MaxHeaderBytes:      o.ReadBufferSize,
		MaxStreamsPerConn:   o.GRPCMaxStreamsPerConn,
		MaxStreams:          o.GRPCMaxStreams,
		FirstMessageTimeout: o.GRPCFirstMessageTimeout,
		Admit:               guard.GRPC,
		Subscriber:          s.sub,
		Logger:              s.log.With("component", "grpc"),
	})
	opts := append(grpcAPI.ServerOptions(), metrics.GRPCServerOptions()...)
	if o.EnableAPILogging {
		opts = append(opts, grpcapi.LoggingOptions(apiLog)...)
	}
	opts = append(opts, s.mw.GRPCServerOptions(middleware.API)...)
	s.grpc = grpc.NewServer(append(opts, tracing.GRPCServerOptions()...)...)
	grpcAPI.Register(s.grpc)
}

// apiPipeline runs spec.httpPipeline on the calls of the HTTP API but its
// health routes (/v1.0/healthz, /v1.0/healthz/outbound), which probes call
// and a limit must not fail.
func (s *sidecar) apiPipeline(next http.Handler) http.Handler {
	piped := s.mw.HTTP(middleware.API, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1.0/healthz" || r.URL.Path == "/v1.0/healthz/outbound" {
			next.ServeHTTP(w, r)
			return
		}
		piped.ServeHTTP(w, r)
	})
}

// internalListener is the internal port: with mutual TLS, TLS for every
// connection (plaintext only with --allow-plaintext-peers).
func (s *sidecar) internalListener() net.Listener {
	if s.ident == nil {
		return invoke.HopListener(s.lns.internal)
	}
	return identity.Listener(s.lns.internal, s.ident.ServerTLS(), s.o.AllowPlaintextPeers, 10*time.Second)
}

// close releases what newSidecar opened, last first.
func (s *sidecar) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}
