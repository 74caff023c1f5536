package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-run/tandem/internal/injector"
	"github.com/tandem-run/tandem/internal/kubeclient"
)

// run serves the webhook and runs the Services controller until ctx ends.
func run(ctx context.Context, o Options) error {
	hopts := &slog.HandlerOptions{Level: o.LogLevel}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, hopts)
	if o.LogJSON {
		h = slog.NewJSONHandler(os.Stderr, hopts)
	}
	log := slog.New(h)

	// The port is bound before anything else: the kubelet probes it as soon
	// as the container runs, and a connection made while the certificate
	// is being made waits in the listen queue instead of being refused.
	ln, err := net.Listen("tcp", o.ListenAddress)
	if err != nil {
		return fmt.Errorf("--listen-address %s: %w", o.ListenAddress, err)
	}
	defer ln.Close()

	client, err := kubeclient.New(o.Kubeconfig, "tandem-injector")
	if err != nil {
		return err
	}
	if err := decideNative(ctx, &o, client, log); err != nil {
		return err
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	var caPEM []byte
	if o.CertFile != "" {
		fc, err := injector.NewFileCert(o.CertFile, o.KeyFile, log)
		if err != nil {
			return err
		}
		tlsConf.GetCertificate = fc.GetCertificate
	} else {
		ss, err := injector.NewSelfSigned(o.TLSHosts)
		if err != nil {
			return fmt.Errorf("making the serving certificate: %w", err)
		}
		tlsConf.Certificates = []tls.Certificate{ss.Cert}
		caPEM = ss.CAPEM
		log.Info("serving with a certificate of a CA made at start", "hosts", o.TLSHosts)
	}
	g, gctx := errgroup.WithContext(ctx)
	var injected []func(string)
	if o.CA != nil {
		ensure, err := startCA(gctx, g, client, o.CA, log.With("component", "ca"))
		if err != nil {
			return fmt.Errorf("the sidecars' certificate authority: %w", err)
		}
		injected = append(injected, ensure)
	}
	srv := &http.Server{
		Handler:           injector.Handler(o.Injector, log.With("component", "webhook"), injected...),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(h, slog.LevelDebug),
	}
	log.Info("injector started", "address", ln.Addr().String(), "sidecar_image", o.Injector.SidecarImage, "allowed_users", o.Injector.AllowedUsers, "native_sidecars", o.Injector.Native)

	serveTLS(gctx, g, "webhook server", srv, ln)
	if caPEM != nil && o.WebhookConfig != "" {
		g.Go(func() error {
			// Failing to set it is logged and retried; the server runs on.
			_ = injector.PatchCABundle(gctx, client, o.WebhookConfig, caPEM, log.With("component", "tls"))
			return nil
		})
	}
	if o.Services {
		g.Go(func() error {
			return injector.NewServices(client, log.With("component", "services")).Run(gctx)
		})
	}
	err = g.Wait()
	log.Info("injector stopped")
	return err
}

// decideNative settles, once at start, whether the cluster runs native
// sidecars and whether they are the default: admission never asks the API
// server. A cluster whose version cannot be read in 10 s gets classic
// sidecars.
func decideNative(ctx context.Context, o *Options, client kubernetes.Interface, log *slog.Logger) error {
	if o.NativeSidecars == "true" {
		o.Injector.NativeSupported, o.Injector.Native = true, true
		log.Info("native sidecars by default (--native-sidecars=true)")
		return nil
	}
	var err error
	for start := time.Now(); time.Since(start) < 10*time.Second; {
		var v *version.Info
		if v, err = client.Discovery().ServerVersion(); err == nil {
			if o.Injector.NativeSupported, err = injector.NativeSidecarsSupported(v); err != nil {
				return err
			}
			o.Injector.Native = o.Injector.NativeSupported && o.NativeSidecars == "auto"
			log.Info("sidecars", "kubernetes", v.GitVersion, "native_supported", o.Injector.NativeSupported, "native_default", o.Injector.Native)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	log.Warn("the API server's version is unknown: classic sidecars only", "error", err)
	return nil
}
