package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tandem-run/tandem/internal/acl"
	"github.com/tandem-run/tandem/internal/api"
	grpcapi "github.com/tandem-run/tandem/internal/api/grpc"
	httpapi "github.com/tandem-run/tandem/internal/api/http"
	"github.com/tandem-run/tandem/internal/api/token"
	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/kube"
	"github.com/tandem-run/tandem/internal/resiliency"
	"github.com/tandem-run/tandem/internal/telemetry"
	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/pkg/resolver"
	"github.com/tandem-run/tandem/pkg/resolver/kubernetes"
	"github.com/tandem-run/tandem/pkg/resolver/standalone"
	"github.com/tandem-run/tandem/pkg/state"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// run wires the sidecar's parts together and runs them until ctx ends, a
// part fails, or the app asks for shutdown; then it drains.
func run(ctx context.Context, o Options) error {
	log := newLogger(o)
	ctx, shutdown := context.WithCancel(ctx)
	defer shutdown()

	lns, err := listenAll(o)
	if err != nil {
		return err
	}
	defer lns.close()

	res, err := newResolver(o)
	if err != nil {
		return err
	}
	comps, conf, err := loadResources(ctx, o, log)
	if err != nil {
		return err
	}
	tset, err := conf.TracingSettings()
	if err != nil {
		return err
	}
	tracing, err := telemetry.NewTracing(tset, telemetry.Options{AppID: o.AppID, Logger: log.With("component", "tracing"), Registerer: prometheus.DefaultRegisterer})
	if err != nil {
		return err
	}
	metrics := telemetry.NewMetrics(o.AppID, prometheus.DefaultRegisterer)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracing.Shutdown(ctx); err != nil {
			log.Warn("flushing spans on shutdown", "err", err)
		}
	}()
	appAddr := ""
	if o.AppPort != 0 {
		appAddr = net.JoinHostPort(o.AppChannelAddress, strconv.Itoa(o.AppPort))
	}
	internalHost := "127.0.0.1"
	if h := strings.Trim(o.InternalAddress, "[]"); h != "" && h != "0.0.0.0" && h != "::" {
		internalHost = h
	}
	internalAddr := net.JoinHostPort(internalHost, strconv.Itoa(lns.port(lns.internal)))
	var invokeLimit int64
	if o.MaxBodySizeSet {
		invokeLimit = o.MaxBodySize
	}
	inv, err := invoke.New(invoke.Config{
		AppID:           o.AppID,
		Namespace:       o.Namespace,
		AppAddress:      appAddr,
		AppProtocol:     o.AppProtocol,
		MaxBodySize:     invokeLimit,
		InternalAddress: internalAddr,
		Logger:          log.With("component", "invoke"),
		WrapHop: func(rt http.RoundTripper) http.RoundTripper {
			return metrics.HopClient(tracing.HTTPClient(hopSpanName, hopSpanAttrs, rt))
		},
		WrapApp: func(rt http.RoundTripper) http.RoundTripper {
			return tracing.HTTPClient(func(r *http.Request) string { return appSpanName(o.AppID, r.URL.Path) },
				func(r *http.Request) []attribute.KeyValue { return peerAttrs(o.AppID, r.URL.Host) }, rt)
		},
		AppDialOptions:    tracing.GRPCClientOptions(func(m string) string { return appSpanName(o.AppID, m) }),
		AppToken:          o.AppToken,
		AppMaxConcurrency: o.AppMaxConcurrency,
		StallTimeout:      o.InternalStallTimeout,
	}, res)
	if err != nil {
		return err
	}
	defer inv.Close()

	stateSvc, err := components.StateService(comps, o.AppID, o.Namespace, o.Mode == "standalone", log.With("component", "state"))
	if err != nil {
		return err
	}
	defer stateSvc.Close()
	policies, err := resiliency.LoadDir(o.ResourcesPath, o.AppID)
	if err != nil {
		return err
	}
	stateSvc.Use(policies.StateMiddleware(), metrics.StateMiddleware(), tracing.StateMiddleware())
	caller := resiliency.WrapInvoker(inv, policies)

	ports := api.Ports{
		HTTP:     lns.port(lns.http...),
		GRPC:     lns.port(lns.grpc...),
		Internal: lns.port(lns.internal),
		Public:   lns.port(lns.public),
		Metrics:  lns.port(lns.metrics),
	}
	life := api.Lifecycle{
		AppReady: inv.AppReady,
		Shutdown: shutdown,
		Metadata: func() api.Metadata { return metadata(o, ports, stateSvc) },
	}
	router := httpapi.NewRouter(func(name string, h http.Handler) http.Handler {
		return tracing.HTTPServer(func(r *http.Request) string { return httpapi.SpanName(name, r) }, metrics.HTTP(name, h))
	})
	router.Add(httpapi.InvokeRoutes(caller)...)
	router.Add(httpapi.LifecycleRoutes(life)...)
	router.Add(httpapi.StateRoutes(stateSvc, o.MaxBodySize)...)

	guard := token.New(o.APIToken)
	servers := []*server{
		{name: "http", lns: lns.http, srv: newHTTPServer(o.ReadBufferSize, httpapi.LimitHeaders(o.ReadBufferSize, guard.HTTP(router, router.Public)))},
		{name: "internal", lns: []net.Listener{lns.internal}, srv: newHopServer(o.ReadBufferSize+invoke.HopHeaderSlack, tracing.HTTPServer(
			func(r *http.Request) string { return telemetry.InvokeSpanName(o.AppID, r.URL.Path) },
			acl.New(conf.AccessControlSpec(), o.Namespace).Hop(inv.HopHandler())))},
	}
	if lns.public != nil {
		public := httpapi.NewRouter(nil)
		public.Add(httpapi.HealthRoutes(life)...)
		servers = append(servers, &server{name: "public", lns: []net.Listener{lns.public}, srv: newHTTPServer(o.ReadBufferSize, httpapi.LimitHeaders(o.ReadBufferSize, guard.HTTP(public, public.Public)))})
	}
	if lns.metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.Handler())
		servers = append(servers, &server{name: "metrics", lns: []net.Listener{lns.metrics}, srv: newHTTPServer(o.ReadBufferSize, mux)})
	}
	grpcAPI := grpcapi.New(grpcapi.Config{
		Invoker:        caller,
		State:          stateSvc,
		Lifecycle:      life,
		MaxBodySize:    o.MaxBodySize,
		MaxHeaderBytes: o.ReadBufferSize,
		Logger:         log.With("component", "grpc"),
	})
	gopts := append(grpcAPI.ServerOptions(), guard.GRPCServerOptions()...)
	gopts = append(gopts, metrics.GRPCServerOptions()...)
	grpcSrv := grpc.NewServer(append(gopts, tracing.GRPCServerOptions()...)...)
	grpcAPI.Register(grpcSrv)
	healthpb.RegisterHealthServer(grpcSrv, health.NewServer())

	var reg interface{ Close() error }
	if o.Mode == "standalone" {
		if reg, err = register(o, internalAddr, ports); err != nil {
			return err
		}
		defer reg.Close()
	}

	log.Info("sidecar started", "mode", o.Mode, "version", version, "api_token", o.APIToken != "", "app_token", o.AppToken != "",
		"http_port", ports.HTTP, "grpc_port", ports.GRPC, "internal_port", ports.Internal,
		"public_port", ports.Public, "metrics_port", ports.Metrics, "app_address", appAddr)

	g, gctx := errgroup.WithContext(ctx)
	for _, s := range servers {
		for _, ln := range s.lns {
			g.Go(func() error {
				if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
					return fmt.Errorf("%s server on %s: %w", s.name, ln.Addr(), err)
				}
				return nil
			})
		}
	}
	for _, ln := range lns.grpc {
		g.Go(func() error {
			if err := grpcSrv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("grpc server on %s: %w", ln.Addr(), err)
			}
			return nil
		})
	}
	if appAddr != "" {
		g.Go(func() error {
			if err := inv.WaitAppReady(gctx); err == nil {
				log.Info("app is ready", "app_address", appAddr)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: refusing new calls, draining calls in flight", "grace", o.GracefulShutdown)
		if reg != nil {
			_ = reg.Close()
		}
		inv.StartDrain()
		drain(o.GracefulShutdown, servers, grpcSrv)
		return nil
	})
	err = g.Wait()
	log.Info("sidecar stopped")
	return err
}

// loadResources reads the Components and the Configuration: in standalone
// mode from --resources-path and the --config file; in kubernetes mode from
// the API server (the namespace's Components, the Configuration --config
// names), plus any files in --resources-path.
func loadResources(ctx context.Context, o Options, log *slog.Logger) ([]components.Component, *config.Configuration, error) {
	comps, err := components.LoadDir(o.ResourcesPath, o.AppID)
	if err != nil {
		return nil, nil, err
	}
	var conf *config.Configuration
	if o.Mode == "kubernetes" {
		kc, err := kube.InCluster(o.Namespace, os.Getenv)
		if err != nil {
			return nil, nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		fromAPI, err := kc.Components(ctx)
		if err != nil {
			return nil, nil, err
		}
		comps = append(comps, components.Scoped(fromAPI, o.AppID)...)
		if o.Config != "" {
			if conf, err = kc.Configuration(ctx, o.Config); err != nil {
				return nil, nil, err
			}
		}
	} else if o.Config != "" {
		if conf, err = config.LoadFile(o.Config); err != nil {
			return nil, nil, err
		}
	}
	if conf != nil && len(conf.Ignored) > 0 {
		log.Warn("configuration sections without effect in this sidecar", "config", conf.Metadata.Name, "sections", conf.Ignored)
	}
	return comps, conf, nil
}

// Span names of the hop and the app channel.
func hopSpanName(r *http.Request) string {
	return telemetry.InvokeSpanName(r.Header.Get(invoke.HeaderCalleeAppID), r.URL.Path)
}

func hopSpanAttrs(r *http.Request) []attribute.KeyValue {
	return peerAttrs(r.Header.Get(invoke.HeaderCalleeAppID), r.URL.Host)
}

func appSpanName(appID, method string) string {
	return "CallApp/" + appID + "/" + strings.TrimPrefix(method, "/")
}

func peerAttrs(peer, hostport string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.String("peer.service", peer)}
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		attrs = append(attrs, attribute.String("server.address", h))
		if n, err := strconv.Atoi(p); err == nil {
			attrs = append(attrs, attribute.Int("server.port", n))
		}
	}
	return attrs
}

// drain shuts every server down gracefully within grace, then forcibly.
func drain(grace time.Duration, servers []*server, grpcSrv *grpc.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	g := new(errgroup.Group)
	for _, s := range servers {
		g.Go(func() error {
			if err := s.srv.Shutdown(ctx); err != nil {
				_ = s.srv.Close()
			}
			return nil
		})
	}
	g.Go(func() error {
		done := make(chan struct{})
		go func() { grpcSrv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			grpcSrv.Stop()
		}
		return nil
	})
	_ = g.Wait()
}

type server struct {
	name string
	lns  []net.Listener
	srv  *http.Server
}

// newHTTPServer returns a server for h reading at most maxHeader bytes of
// request headers (--read-buffer-size; more is a 431).
func newHTTPServer(maxHeader int, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    maxHeader,
	}
}

// newHopServer serves the internal port: h2c for peer sidecars.
func newHopServer(maxHeader int, h http.Handler) *http.Server {
	s := newHTTPServer(maxHeader, h)
	s.Protocols = invoke.HopProtocols()
	s.HTTP2 = invoke.HopHTTP2Config()
	return s
}

func newResolver(o Options) (resolver.Resolver, error) {
	if o.Mode == "kubernetes" {
		return kubernetes.New(kubernetes.Config{
			Port:          o.InternalPort,
			Namespace:     o.Namespace,
			ClusterDomain: o.ClusterDomain,
			DNSServer:     o.DNSServer,
		})
	}
	dir, err := registryDir(o)
	if err != nil {
		return nil, err
	}
	return standalone.NewResolver(dir), nil
}

func registryDir(o Options) (string, error) {
	if o.RegistryDir != "" {
		return o.RegistryDir, nil
	}
	return standalone.DefaultDir()
}

func register(o Options, internalAddr string, p api.Ports) (*standalone.Registration, error) {
	dir, err := registryDir(o)
	if err != nil {
		return nil, err
	}
	reg, err := standalone.Register(dir, standalone.Entry{
		AppID:           o.AppID,
		Namespace:       o.Namespace,
		PID:             os.Getpid(),
		InternalAddress: internalAddr,
		HTTPPort:        p.HTTP,
		GRPCPort:        p.GRPC,
		StartedAt:       time.Now(),
	})
	if err != nil {
		return nil, fmt.Errorf("registering app %q in %s: %w", o.AppID, dir, err)
	}
	return reg, nil
}

func metadata(o Options, p api.Ports, st *state.Service) api.Metadata {
	m := api.Metadata{
		ID:              o.AppID,
		RuntimeVersion:  version,
		EnabledFeatures: []string{},
		Actors:          []any{},
		Components:      []api.Component{},
		Subscriptions:   []any{},
		HTTPEndpoints:   []any{},
		Extended: map[string]string{
			"mode":          o.Mode,
			"namespace":     o.Namespace,
			"http_port":     strconv.Itoa(p.HTTP),
			"grpc_port":     strconv.Itoa(p.GRPC),
			"internal_port": strconv.Itoa(p.Internal),
		},
		Ports: p,
	}
	for _, c := range st.Stores() {
		m.Components = append(m.Components, api.Component{Name: c.Name, Type: c.Type, Version: "v1",
			Capabilities: []string{"ETAG", "TRANSACTIONAL", "TTL"}})
	}
	if o.AppPort != 0 {
		m.AppConnectionProperties = api.AppConnection{Port: o.AppPort, Protocol: o.AppProtocol, ChannelAddress: o.AppChannelAddress, MaxConcurrency: o.AppMaxConcurrency}
	}
	return m
}

func newLogger(o Options) *slog.Logger {
	hopts := &slog.HandlerOptions{Level: o.LogLevel}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, hopts)
	if o.LogJSON {
		h = slog.NewJSONHandler(os.Stderr, hopts)
	}
	return slog.New(h).With("app_id", o.AppID)
}
