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

	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// Server is a running redis-server.
type Server struct {
	Addr  string
	port  int
	extra []string
	mu    sync.Mutex
	cmd   *exec.Cmd
	out   bytes.Buffer
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

// StartReplica starts a redis-server that replicates primary.
func StartReplica(t testing.TB, primary *Server) *Server {
	t.Helper()
	return start(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.port))
}

func start(t testing.TB, extra ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed; CI must install it (apt-get install -y redis-server)")
		}
		t.Skip("redis-server is not installed: apt-get install -y redis-server (or run make test)")
	}
	port := proc.For(t).FreePort()
	// Its own folder: a replica writes the data it syncs as dump.rdb even
	// with --save "", and that must not land in the package under test.
	extra = append([]string{"--dir", t.TempDir()}, extra...)
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), port: port, extra: extra}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("redis-server output:\n%s", s.out.String())
		}
	})
	return s
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
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

// Restart starts a stopped server again on the same port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// Pause stops the server's process (SIGSTOP) without closing its
// connections: a hung Redis, whose clients wait for answers that do not
// come. Resume wakes it; the test's end does too.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { s.Resume(t) })
}

// Resume wakes a paused server (SIGCONT).
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT)
}

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("redis-server: %s: %v", sig, err)
	}
}
