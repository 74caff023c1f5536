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
		"public_port", p.Public, "metrics_port", p.Metrics, "app_address", s.appAddr, "max_procs", s.o.procs, "max_procs_from", s.o.procsWhy,
		"gc_percent", s.o.gcPercent, "memory_limit", s.o.memoryLimit)
	if s.o.UnixDomainSocket != "" {
		s.log.Info("the HTTP and gRPC APIs listen on Unix sockets", "http", socketPath(s.o, "http"), "grpc", socketPath(s.o, "grpc"))
	}
	if p.Profile != 0 {
		s.log.Info("profiling: Go's pprof on 127.0.0.1", "profile_port", p.Profile)
	}

	// The binary's pages that only start-up touched are unmapped when the
	// sidecar begins to serve, and once more when its servers' goroutines
	// have started: growing their stacks reads the binary's function
	// tables: 135 page faults of up to 64 KiB each in one start (see
	// releaseStartPages).
	s.releaseStartPages()
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
	// or the app's shutdown request (after --dapr-block-shutdown-duration,
	// during which the app's health is still checked).
	bg, stopBG := context.WithCancel(context.WithoutCancel(gctx))
	g.Go(func() error { s.inv.RunHealthChecks(bg); return nil })
	if s.ident != nil {
		g.Go(func() error { return s.ident.Run(bg) })
	}
	if s.hotReload {
		g.Go(func() error { return s.reload.Run(bg) })
	}
	g.Go(func() error {
		select {
		case <-bg.Done():
			return nil
		case <-time.After(startSettle):
		}
		s.releaseStartPages()
		// From here a burst's memory goes back once the sidecar is idle
		// (start-up's is not a burst: collecting it held more than it
		// freed; see releaseStartPages). A collection reads the binary's
		// tables as it walks the stacks: their pages are unmapped again.
		reclaimIdle(bg, s.log, s.releaseStartPages)
		return nil
	})
	{
		// The subscriber starts once the app answers (with no app, at
		// once: only streaming subscriptions deliver). It stops with the
		// background work: it stops reading and lets its deliveries in
		// flight finish (within --dapr-graceful-shutdown-seconds) while
		// the servers drain; the brokers are closed after both (close).
		g.Go(func() error {
			if s.appAddr != "" {
				if err := s.inv.WaitAppReady(bg); err != nil {
					return nil
				}
				s.log.Info("app is ready", "app_address", s.appAddr)
			}
			if err := s.sub.Run(bg); err != nil {
				return fmt.Errorf("pub/sub subscriber: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		select {
		case <-gctx.Done():
		case <-s.stop:
		}
		if ctx.Err() != nil && s.o.BlockShutdown > 0 {
			s.blockShutdown()
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

// blockShutdown holds back the shutdown a signal asked for, while the
// sidecar serves as before, for --dapr-block-shutdown-duration or until the
// app fails its health check or asks for shutdown itself, as daprd does.
func (s *sidecar) blockShutdown() {
	s.log.Info("blocking graceful shutdown until the app reports unhealthy or the time is up", "block", s.o.BlockShutdown)
	t := time.NewTimer(s.o.BlockShutdown)
	defer t.Stop()
	select {
	case <-t.C:
		s.log.Info("block shutdown period expired, entering shutdown")
	case <-s.inv.AppUnhealthy():
		s.log.Info("app reported unhealthy, entering shutdown")
	case <-s.stop:
		s.log.Info("the app asked for shutdown, entering shutdown")
	}
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

// startSettle is how long after it begins to serve a sidecar unmaps its
// start-up's pages of the binary a second time.
const startSettle = time.Second

// releaseStartPages unmaps the binary's pages start-up touched (see the
// function of the same name) and logs how many.
func (s *sidecar) releaseStartPages() {
	if n := releaseStartPages(); n > 0 {
		s.log.Debug("the binary's pages start-up touched are unmapped", "bytes", n)
	}
}
