package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-run/tandem/internal/ca"
	"github.com/tandem-run/tandem/internal/identity"
)

// startCA serves the sidecars' certificate authority on o.ListenAddress
// with the root of o.Secret (made when missing), and keeps the trust
// bundle's ConfigMap in every namespace the webhook injects into. A change
// to the Secret (a rotation) takes effect within rootPoll, with no restart.
// It returns what the webhook calls for each injected pod's namespace.
func startCA(ctx context.Context, g *errgroup.Group, client kubernetes.Interface, o *CAOptions, log *slog.Logger) (func(string), error) {
	root, bundle, err := ca.Root(ctx, client, o.Namespace, o.Secret)
	if err != nil {
		return nil, err
	}
	var serving atomic.Pointer[tls.Certificate]
	issueServing := func(root *identity.CA) error {
		cert, err := root.ServingCert(o.Hosts, 365*24*time.Hour)
		if err == nil {
			serving.Store(&cert)
		}
		return err
	}
	if err := issueServing(root); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.ListenAddress)
	if err != nil {
		return nil, fmt.Errorf("--ca-listen-address %s: %w", o.ListenAddress, err)
	}
	authority := ca.New(ca.Config{TrustDomain: o.TrustDomain, TTL: o.TTL, Logger: log}, root, bundle, client)
	srv := &http.Server{
		Handler: authority,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return serving.Load(), nil
		}},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	bundles := ca.NewBundles(client, o.BundleConfigMap, bundle, log.With("component", "trust-bundle"))
	g.Go(func() error { return bundles.Run(ctx, 5*time.Minute) })
	g.Go(func() error {
		ca.WatchRoot(ctx, client, o.Namespace, o.Secret, rootPoll, root, bundle, log, func(root *identity.CA, bundle []byte) {
			bundles.SetBundle(bundle)
			if err := issueServing(root); err != nil {
				log.Error("no serving certificate from the new root; the previous one serves on", "err", err)
			}
			authority.SetRoot(root, bundle)
			log.Info("the root's Secret changed: signing with its root from now on", "root", root.Name(), "bundle_roots", strings.Count(string(bundle), "BEGIN CERTIFICATE"))
		})
		return nil
	})
	serveTLS(ctx, g, "certificate authority", srv, ln)
	log.Info("certificate authority serving", "address", ln.Addr().String(), "trust_domain", o.TrustDomain, "hosts", o.Hosts, "root", root.Name())
	return bundles.Ensure, nil
}

// rootPoll is how often the root's Secret is read for a change.
const rootPoll = 10 * time.Second

// serveTLS serves srv on ln in g until ctx ends, then shuts it down within
// five seconds.
func serveTLS(ctx context.Context, g *errgroup.Group, name string, srv *http.Server, ln net.Listener) {
	g.Go(func() error {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
}
