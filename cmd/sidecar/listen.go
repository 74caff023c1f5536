package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// listeners are every socket the sidecar serves, bound before anything runs
// so that a taken port fails the start with a clear message.
type listeners struct {
	http, grpc []net.Listener
	internal   net.Listener
	public     net.Listener
	metrics    net.Listener
	profile    net.Listener // nil: profiling off
	all        []net.Listener
}

func listenAll(o Options) (*listeners, error) {
	l := &listeners{}
	var err error
	if o.UnixDomainSocket != "" {
		// The APIs on Unix sockets instead of their ports, named as daprd
		// names them (the Dapr CLI and SDKs find them so).
		if l.http, err = l.listenUnix("--unix-domain-socket", socketPath(o, "http")); err != nil {
			return nil, err
		}
		if l.grpc, err = l.listenUnix("--unix-domain-socket", socketPath(o, "grpc")); err != nil {
			return nil, err
		}
	} else {
		if l.http, err = l.listenAPI("--dapr-http-port", o.ListenAddresses, o.HTTPPort); err != nil {
			return nil, err
		}
		if l.grpc, err = l.listenAPI("--dapr-grpc-port", o.ListenAddresses, o.GRPCPort); err != nil {
			return nil, err
		}
	}
	// The internal port binds --dapr-internal-grpc-listen-address: loopback
	// by default in standalone mode (peers run on this host), every
	// interface in kubernetes mode (peers are other pods).
	if l.internal, err = l.listen("--dapr-internal-grpc-port", strings.Trim(o.InternalAddress, "[]"), o.InternalPort); err != nil {
		return nil, err
	}
	if o.PublicPort >= 0 {
		if l.public, err = l.listen("--dapr-public-port", "", o.PublicPort); err != nil {
			return nil, err
		}
	}
	if o.EnableMetrics {
		if l.metrics, err = l.listen("--metrics-port", "", o.MetricsPort); err != nil {
			return nil, err
		}
	}
	if o.EnableProfiling {
		// Loopback only: pprof shows the process's memory and stacks to
		// whoever reaches it (kubectl port-forward reaches loopback).
		if l.profile, err = l.listen("--profile-port", "127.0.0.1", o.ProfilePort); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// socketPath is the Unix socket of an API ("http" or "grpc") in
// --unix-domain-socket: dapr-<app-id>-<api>.socket, as daprd names it.
func socketPath(o Options, api string) string {
	return filepath.Join(o.UnixDomainSocket, "dapr-"+o.AppID+"-"+api+".socket")
}

// listenUnix listens on the Unix socket path. A socket file that nothing
// answers on is what a sidecar that was killed left: it is replaced. The
// file is removed when the listener closes.
func (l *listeners) listenUnix(flag, path string) ([]net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			l.close()
			return nil, fmt.Errorf("%s: %s exists and is not a socket; remove it or pick another folder", flag, path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			l.close()
			return nil, fmt.Errorf("%s: %s is in use, by another sidecar of this app id?; stop it or pick another folder", flag, path)
		}
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		l.close()
		return nil, fmt.Errorf("%s: cannot listen on %s: %w", flag, path, err)
	}
	l.all = append(l.all, ln)
	return []net.Listener{ln}, nil
}

// listenAPI binds port on every address; with port 0 the first address picks
// a free port and the others bind the same one.
func (l *listeners) listenAPI(flag string, addrs []string, port int) ([]net.Listener, error) {
	if len(addrs) == 0 {
		addrs = []string{""}
	}
	var out []net.Listener
	for _, a := range addrs {
		ln, err := l.listen(flag, a, port)
		if err != nil {
			return nil, err
		}
		port = ln.Addr().(*net.TCPAddr).Port
		out = append(out, ln)
	}
	return out, nil
}

func (l *listeners) listen(flag, host string, port int) (net.Listener, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		l.close()
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s: port %d is already in use on %q; stop what uses it or pick another port (0 picks a free one)", flag, port, host)
		}
		return nil, fmt.Errorf("%s: cannot listen on %s: %w", flag, addr, err)
	}
	l.all = append(l.all, ln)
	return ln, nil
}

// port returns the port of the first listener, or 0 (none, or a Unix
// socket).
func (l *listeners) port(lns ...net.Listener) int {
	if len(lns) == 0 || lns[0] == nil {
		return 0
	}
	if a, ok := lns[0].Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

func (l *listeners) close() {
	for _, ln := range l.all {
		_ = ln.Close()
	}
}
