// Package redisserver starts a real redis-server for tests, on a free
// loopback port, with persistence off, and stops it when the test ends.
package redisserver

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/netns"
	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// Server is a running redis-server.
type Server struct {
	Addr string
	// TLSAddr is where a server of StartTLS takes TLS connections.
	TLSAddr string
	port    int
	ns      *netns.Namespace // where it runs: nil for the test's own, on loopback
	first   []string         // before --port: a config file, --sentinel
	extra   []string
	mu      sync.Mutex
	cmd     *exec.Cmd
	out     bytes.Buffer
}

// Start starts redis-server for t. Without redis-server on PATH the test is
// skipped, unless CI is set, where it fails: CI installs it.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t)
}

// StartDurable starts a redis-server that writes every change to its
// append-only file before answering, so a restart loses no acknowledged
// write.
func StartDurable(t testing.TB) *Server {
	t.Helper()
	return start(t, "--appendonly", "yes", "--appendfsync", "always")
}

// StartTLS starts a redis-server that takes TLS connections on TLSAddr,
// with the certificate and key in the PEM files cert and key, and only
// from clients with a certificate that the CA in the PEM file ca signed
// (Addr stays plain, for the harness).
func StartTLS(t testing.TB, cert, key, ca string) *Server {
	t.Helper()
	port := proc.For(t).FreePort()
	s := start(t, "--tls-port", strconv.Itoa(port), "--tls-cert-file", cert, "--tls-key-file", key,
		"--tls-ca-cert-file", ca, "--tls-auth-clients", "yes")
	s.TLSAddr = "127.0.0.1:" + strconv.Itoa(port)
	return s
}

// StartReplica starts a redis-server that replicates primary.
func StartReplica(t testing.TB, primary *Server) *Server {
	t.Helper()
	return start(t, "--replicaof", primary.host(), strconv.Itoa(primary.port))
}

// host is the address the server listens on.
func (s *Server) host() string {
	if s.ns != nil {
		return s.ns.IP
	}
	return "127.0.0.1"
}

func start(t testing.TB, extra ...string) *Server {
	t.Helper()
	return startWith(t, nil, append([]string{"--dir", t.TempDir()}, extra...)...)
}

// requireRedis skips t without redis-server on PATH, unless CI is set,
// where it fails: CI installs it.
func requireRedis(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed; CI must install it (apt-get install -y redis-server)")
		}
		t.Skip("redis-server is not installed: apt-get install -y redis-server (or run make test)")
	}
}

// startWith starts redis-server with first before its port and extra
// after, on a free port. Each server needs its own folder (--dir): a
// replica writes the data it syncs as dump.rdb even with --save "", and
// that must not land in the package under test.
func startWith(t testing.TB, first []string, extra ...string) *Server {
	t.Helper()
	return startIn(t, nil, first, extra...)
}

// startIn is startWith in the namespace ns (nil: the test's own).
func startIn(t testing.TB, ns *netns.Namespace, first []string, extra ...string) *Server {
	t.Helper()
	requireRedis(t)
	port := proc.For(t).FreePort()
	s := &Server{port: port, ns: ns, first: first, extra: extra}
	s.Addr = net.JoinHostPort(s.host(), strconv.Itoa(port))
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("redis-server %s output:\n%s", s.Addr, s.out.String())
		}
	})
	return s
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command("redis-server", s.first...)
	if s.ns != nil {
		cmd = s.ns.Command("redis-server", s.first...)
	}
	cmd.Args = append(cmd.Args, "--port", strconv.Itoa(s.port), "--bind", s.host(),
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no")
	cmd.Args = append(cmd.Args, s.extra...)
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond); err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 16)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if bytes.HasPrefix(buf[:n], []byte("+PONG")) {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s did not answer PING", s.Addr)
}

// Stop stops the server; its data is gone.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Pause stops the server's process (SIGSTOP) until Resume, without
// closing its connections: it answers nothing, as a hung Redis, a server
// that lags or a link that stalls, and loses nothing. Stop kills it all
// the same.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume resumes a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Restart starts a stopped server again on the same port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}
