package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/tandem-run/tandem/internal/invoke"
)

// serve runs the sidecar's servers until ctx ends, a server fails, or the app
// asks for shutdown; then it drains calls in flight and closes everything.
func (s *sidecar) serve(ctx context.Context) error {
	defer s.close()
	p := s.ports
	s.log.Info("sidecar started", "mode", s.o.Mode, "version", version, "api_token", s.o.APIToken != "", "app_token", s.o.AppToken != "",
		"http_port", p.HTTP, "grpc_port", p.GRPC, "internal_port", p.Internal,
		"public_port", p.Public, "metrics_port", p.Metrics, "app_address", s.appAddr)

	g, gctx := errgroup.WithContext(ctx)
	for _, srv := range s.servers {
		for _, ln := range srv.lns {
			g.Go(func() error {
				if err := srv.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
					return fmt.Errorf("%s server on %s: %w", srv.name, ln.Addr(), err)
				}
				return nil
			})
		}
	}
	for _, ln := range s.lns.grpc {
		g.Go(func() error {
			if err := s.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("grpc server on %s: %w", ln.Addr(), err)
			}
			return nil
		})
	}
	// The background work ends with the servers: on ctx's end, a failure,
	// or the app's shutdown request.
	bg, stopBG := context.WithCancel(gctx)
	if s.ident != nil {
		g.Go(func() error { return s.ident.Run(bg) })
	}
	if s.appAddr != "" {
		g.Go(func() error {
			if err := s.inv.WaitAppReady(bg); err == nil {
				s.log.Info("app is ready", "app_address", s.appAddr)
			}
			return nil
		})
	}
	g.Go(func() error {
		select {
		case <-gctx.Done():
		case <-s.stop:
		}
		stopBG()
		s.log.Info("shutting down: refusing new calls, draining calls in flight", "grace", s.o.GracefulShutdown)
		if s.reg != nil {
			_ = s.reg.Close()
		}
		s.inv.StartDrain()
		drain(s.o.GracefulShutdown, s.servers, s.grpc)
		return nil
	})
	err := g.Wait()
	s.log.Info("sidecar stopped")
	return err
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
