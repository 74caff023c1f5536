package main

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
		gid, err := socketGroup(o.UnixDomainSocketGroup)
		if err != nil {
			return nil, err
		}
		if l.http, err = l.listenUnix("--unix-domain-socket", socketPath(o, "http"), gid); err != nil {
			return nil, err
		}
		if l.grpc, err = l.listenUnix("--unix-domain-socket", socketPath(o, "grpc"), gid); err != nil {
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
