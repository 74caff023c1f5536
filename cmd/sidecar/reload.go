package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/kube"
	"github.com/tandem-run/tandem/internal/reload"
)

// loadResources reads the Components, the Configuration and the
// Resiliency resources: in standalone mode from the --resources-path
// folders (all of them, watched) and the
// --config file; in kubernetes mode from the API server (the namespace's
// Components and Resiliency resources, the Configuration --config names),
// plus any files in --resources-path. Nothing is in force until Apply.
func loadResources(ctx context.Context, o Options, log *slog.Logger) (*reload.Reloader, error) {
	src := reload.Sources{
		AppID:           o.AppID,
		Namespace:       o.Namespace,
		PodName:         o.PodName,
		DefaultStore:    o.Mode == "standalone",
		SecretPoll:      o.SecretPoll,
		MaxFileSize:     o.ResourcesMaxFileSize,
		Logger:          log.With("component", "resources"),
		ComponentLogger: log,
		Registerer:      prometheus.DefaultRegisterer,
	}
	src.Dirs = o.ResourcesPaths
	if o.Mode == "kubernetes" {
		kc, err := kube.InCluster(o.Namespace, os.Getenv)
		if err != nil {
			return nil, err
		}
		src.Kube, src.ConfigName = kc, o.Config
	} else {
		src.ConfigFile = o.Config
	}
	return reload.Load(ctx, src)
}

// hotReload reports whether changed resources are applied while serving:
// --enable-hot-reload, unless the Configuration disables its HotReload
// feature (read at start only, as Dapr names it).
func hotReload(o Options, conf *config.Configuration, log *slog.Logger) bool {
	if !o.HotReload {
		log.Info("hot reload off (--enable-hot-reload=false): resources are read at start only")
		return false
	}
	if on, set := conf.HotReload(); set && !on {
		log.Info("hot reload off: the Configuration's " + config.FeatureHotReload + " feature is disabled; resources are read at start only")
		return false
	}
	return true
}
