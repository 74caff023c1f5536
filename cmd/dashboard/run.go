package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tandem-run/tandem/internal/dashboard"
	"github.com/tandem-run/tandem/internal/kubeclient"
)

// run serves the dashboard, and reads the sidecars' metrics for its map,
// until ctx ends, then stops within 5 s. It prints the URL it serves once
// it listens.
func run(ctx context.Context, o Options, out io.Writer) error {
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.Listen, err)
	}
	cfg := dashboard.Config{RegistryDir: o.RegistryDir, Remote: o.AllowRemote, JaegerQuery: o.JaegerQuery, ZipkinQuery: o.ZipkinQuery, Namespace: o.Namespace}
	from := "registry " + o.RegistryDir
	if o.Kubernetes {
		if cfg.Kube, err = kubeclient.New(o.Kubeconfig, "tandem-dashboard"); err != nil {
			_ = ln.Close()
			return fmt.Errorf("--kubernetes: %w", err)
		}
		from = "the pods of every namespace"
		if o.Namespace != "" {
			from = "the pods of namespace " + o.Namespace
		}
	}
	d := dashboard.New(cfg)
	srv := &http.Server{
		Handler:           d.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	fmt.Fprintf(out, "dashboard: http://%s/ (%s)\n", ln.Addr(), from)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	go func() { _ = d.Run(ctx) }() // reads the sidecars' metrics until ctx ends
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
