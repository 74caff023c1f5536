// Package proc runs the processes of the end-to-end tests, the benchmarks
// and the calculator's runner on loopback: a free port to give one, a wait
// until it listens, and a child process whose output is kept and which is
// stopped with a signal and, after a grace period, killed.
//
// FreePort, WaitTCP and Start return errors, for programs. For(t) gives the
// same to a test: they fail the test instead, and what it starts is stopped
// when the test ends, its output logged if the test failed.
//
// A child is killed if this process dies first (Linux's parent-death
// signal), so that a test killed by its timeout leaves nothing running.
package proc

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
)

// FreePort returns a loopback TCP port that nothing listened on a moment
// ago.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePorts returns n distinct loopback TCP ports that nothing listened on
// a moment ago. It holds each open until it has them all, so that the
// kernel cannot give one twice; for processes started together it is
// FreePort's counterpart, with no process of theirs binding port 0 (the
// kernel could hand it a port chosen here before its owner binds it).
func FreePorts(n int) ([]int, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// WaitTCP waits up to d until addr (host:port) accepts a TCP connection.
func WaitTCP(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s", addr, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Proc is a running child process.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	// Out is what the process writes to stdout and stderr.
	Out syncbuf.Buffer

	done chan struct{}
	err  error
}

// Start starts bin with args, and with env added to this process's
// environment.
func Start(name, bin string, env []string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, Cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.Stdout, p.Cmd.Stderr = &p.Out, &p.Out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err waits for the process to exit and returns how it did: nil for exit
// code 0, an *exec.ExitError otherwise.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Stop sends sig, waits up to grace for the process to exit and kills it
// after that. It returns how the process exited (see Err), or an error
// saying it had to be killed. A process that has exited is sent nothing.
func (p *Proc) Stop(sig os.Signal, grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %s of %v, and was killed", p.Name, grace, sig)
	}
}

// Memory returns a memory field of the process's /proc/<pid>/status in
// bytes: VmHWM is its peak resident memory, VmRSS its resident memory now.
func (p *Proc) Memory(field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(v)), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: /proc status %s %q: %w", p.Name, field, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s in /proc status", p.Name, field)
}

// T is this package for a test; see For.
type T struct{ tb testing.TB }

// For returns the helpers for t: they fail t rather than return errors.
func For(t testing.TB) T { return T{t} }

// stopGrace is how long a test's process has to exit after SIGTERM when
// the test ends, before it is killed.
const stopGrace = 10 * time.Second

// logTail bounds the output logged of a failed test's process.
const logTail = 64 << 10

// FreePort is FreePort.
func (t T) FreePort() int {
	t.tb.Helper()
	port, err := FreePort()
	if err != nil {
		t.tb.Fatal(err)
	}
	return port
}

// WaitTCP is WaitTCP.
func (t T) WaitTCP(addr string, d time.Duration) {
	t.tb.Helper()
	if err := WaitTCP(addr, d); err != nil {
		t.tb.Fatal(err)
	}
}

// Start is Start; when the test ends the process is sent SIGTERM and, 10 s
// later, killed, and if the test failed the end of its output (64 KiB) is
// logged.
func (t T) Start(name, bin string, env []string, args ...string) *Proc {
	t.tb.Helper()
	p, err := Start(name, bin, env, args...)
	if err != nil {
		t.tb.Fatal(err)
	}
	t.tb.Cleanup(func() {
		_ = p.Stop(syscall.SIGTERM, stopGrace)
		if t.tb.Failed() {
			out := p.Out.String()
			if len(out) > logTail {
				out = "...\n" + out[len(out)-logTail:]
			}
			t.tb.Logf("--- output of %s ---\n%s", name, out)
		}
	})
	return p
}

// ExitCode waits up to d for p to exit and returns its exit code.
func (t T) ExitCode(p *Proc, d time.Duration) int {
	t.tb.Helper()
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.tb.Fatalf("%s did not exit within %s", p.Name, d)
		return -1
	}
}
