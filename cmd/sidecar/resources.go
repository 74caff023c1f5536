package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tandem-run/tandem/internal/api"
	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/identity"
	"github.com/tandem-run/tandem/internal/middleware"
	"github.com/tandem-run/tandem/internal/subscribe"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/resolver"
	"github.com/tandem-run/tandem/pkg/resolver/kubernetes"
	"github.com/tandem-run/tandem/pkg/resolver/standalone"
	"github.com/tandem-run/tandem/pkg/state"
)

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

// resolverCacheMetrics registers with reg tandem_resolver_cache_lookups_total
// {app_id, result="hit"|"miss"}, read from res when scraped, when res is
// the standalone resolver (the Kubernetes one asks DNS, whose cache is
// not the sidecar's). A second registration (two sidecars in one
// process) is ignored.
func resolverCacheMetrics(appID string, res resolver.Resolver, reg prometheus.Registerer) {
	sr, ok := res.(*standalone.Resolver)
	if !ok || reg == nil {
		return
	}
	for _, result := range []string{"hit", "renewed", "miss"} {
		_ = reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tandem_resolver_cache_lookups_total",
			Help: "App ids the standalone resolver looked up, by result: hit (answered from its cache of one second), " +
				"renewed (the app's registry folder unchanged: one stat) or miss (the folder read).",
			ConstLabels: prometheus.Labels{"app_id": appID, "result": result},
		}, func() float64 {
			hits, renewals, misses := sr.CacheLookups()
			switch result {
			case "hit":
				return float64(hits)
			case "renewed":
				return float64(renewals)
			}
			return float64(misses)
		}))
	}
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
		MetricsPort:     p.Metrics,
		StartedAt:       time.Now(),
	})
	if err != nil {
		return nil, fmt.Errorf("registering app %q in %s: %w", o.AppID, dir, err)
	}
	return reg, nil
}

// metadata is the sidecar's metadata in daprd's shape, with extended (what
// apps and the CLI set) and daprRuntimeVersion under "extended".
func metadata(o Options, p api.Ports, st *state.Service, ps *pubsub.Service, mw *middleware.Switch, sub *subscribe.Subscriber, extended map[string]string) api.Metadata {
	if extended == nil {
		extended = map[string]string{}
	}
	extended[api.RuntimeVersionKey] = version
	m := api.Metadata{
		ID:              o.AppID,
		RuntimeVersion:  version,
		EnabledFeatures: []string{},
		Actors:          []any{},
		Components:      []api.Component{},
		Subscriptions:   []api.Subscription{},
		HTTPEndpoints:   []any{},
		Extended:        extended,
		AppConnectionProperties: api.AppConnection{Port: o.AppPort, Protocol: o.AppProtocol,
			ChannelAddress: o.AppChannelAddress, MaxConcurrency: o.AppMaxConcurrency},
		ActorRuntime: api.ActorsDisabled,
		Ports:        p,
		Mode:         o.Mode,
		Namespace:    o.Namespace,
		PID:          os.Getpid(),
	}
	for _, c := range st.Stores() {
		m.Components = append(m.Components, api.Component{Name: c.Name, Type: c.Type, Version: components.TypeVersion(c.Type),
			Capabilities: []string{"ETAG", "TRANSACTIONAL", "TTL"}})
	}
	// Pub/sub brokers have none of daprd's pub/sub features (daprd's
	// pubsub.redis lists none either).
	for _, c := range ps.Brokers() {
		m.Components = append(m.Components, api.Component{Name: c.Name, Type: c.Type, Version: "v1"})
	}
	for _, c := range mw.Components() {
		m.Components = append(m.Components, api.Component{Name: c.Name, Type: c.Type, Version: "v1"})
	}
	if sub != nil {
		for _, s := range sub.Subscriptions() {
			out := api.Subscription{PubsubName: s.PubsubName, Topic: s.Topic, Metadata: s.Metadata,
				DeadLetterTopic: s.DeadLetterTopic, Type: string(s.Type)}
			for _, r := range s.Rules {
				out.Rules = append(out.Rules, api.SubscriptionRule{Match: r.Match, Path: r.Path})
			}
			m.Subscriptions = append(m.Subscriptions, out)
		}
	}
	if h := o.AppHealth; h != nil {
		m.AppConnectionProperties.Health = &api.AppHealth{HealthProbeInterval: h.Interval.String(),
			HealthProbeTimeout: h.Timeout.String(), HealthThreshold: h.Threshold}
		if !strings.HasPrefix(o.AppProtocol, "grpc") { // the path is for HTTP apps only, as daprd shows it
			m.AppConnectionProperties.Health.HealthCheckPath = h.Path
		}
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

// newIdentity is the sidecar's workload identity when mutual TLS is on: in
// standalone mode a certificate from the local CA in the registry folder.
func newIdentity(ctx context.Context, o Options, log *slog.Logger) (*identity.Source, error) {
	if !o.EnableMTLS {
		log.Warn("mutual TLS between sidecars is off (--enable-mtls=false): peers are trusted by the network that reaches the internal port")
		return nil, nil
	}
	id := identity.ID{TrustDomain: o.TrustDomain, Namespace: cmp.Or(o.Namespace, identity.DefaultNamespace), AppID: o.AppID}
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("--trust-domain: %w", err)
	}
	if o.Mode == "kubernetes" {
		if o.SentryAddress == "" || o.TrustAnchorsFile == "" {
			return nil, errors.New("mutual TLS in kubernetes mode needs the control plane's certificate authority: give --sentry-address and --trust-anchors-file (the injector does), or run with --enable-mtls=false")
		}
		issue, err := identity.RemoteIssuer(o.SentryAddress, o.SentryTokenFile, o.TrustAnchorsFile, id)
		if err != nil {
			return nil, err
		}
		// A CA that is down is waited for, not died of: a restart would not
		// bring it back (liveness never depends on it).
		return identity.NewSource(ctx, identity.SourceConfig{ID: id, Issue: issue, TTL: o.CertTTL, Patient: true,
			Bundle: identity.BundleSource{File: o.TrustAnchorsFile}, Logger: log.With("component", "identity"), Registerer: prometheus.DefaultRegisterer})
	}
	dir, err := registryDir(o)
	if err != nil {
		return nil, err
	}
	local := identity.LocalCA{Dir: filepath.Join(dir, "ca"), RootTTL: o.LocalCATTL, Logger: log.With("component", "identity")}
	if _, err := local.Load(); err != nil {
		return nil, err
	}
	// The folder's trust bundle is re-read every second and its CA at every
	// certificate, so that its root rotates with no restart.
	bundle := identity.BundleSource{File: o.TrustAnchorsFile}
	if bundle.File == "" {
		bundle.File = local.BundleFile()
	}
	issue := local.Issuer(id, o.CertTTL, o.TrustAnchorsFile)
	return identity.NewSource(ctx, identity.SourceConfig{
		ID:         id,
		Issue:      issue,
		TTL:        o.CertTTL,
		Bundle:     bundle,
		Logger:     log.With("component", "identity"),
		Registerer: prometheus.DefaultRegisterer,
	})
}
