package proc

import (
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFreePortAndWaitTCP(t *testing.T) {
	port := For(t).FreePort()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := WaitTCP(addr, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("nothing listening: %v, want an error naming %s", err, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the free port %d cannot be listened on: %v", port, err)
	}
	defer ln.Close()
	For(t).WaitTCP(addr, time.Second)
}

// TestFreePorts: the ports are distinct and each can be listened on once
// they are returned.
func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(50)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 50 {
		t.Fatalf("%d ports, want 50", len(ports))
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d given twice in %v", p, ports)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d cannot be listened on: %v", p, err)
		}
		ln.Close()
	}
}

func TestStartStop(t *testing.T) {
	cases := []struct {
		name   string
		script string
		sig    syscall.Signal
		check  func(error) bool
	}{
		{"exits on the signal", `trap 'echo bye; exit 0' TERM; echo "hi $GREETING"; while :; do sleep 0.05; done`, syscall.SIGTERM,
			func(err error) bool { return err == nil }},
		{"exit code", `trap 'exit 3' INT; echo "hi $GREETING"; while :; do sleep 0.05; done`, syscall.SIGINT,
			func(err error) bool { var ee *exec.ExitError; return errors.As(err, &ee) && ee.ExitCode() == 3 }},
		{"killed after the grace", `trap '' TERM; echo "hi $GREETING"; while :; do sleep 0.05; done`, syscall.SIGTERM,
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "killed") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Start("sh", "/bin/sh", []string{"GREETING=there"}, "-c", c.script)
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(p.Out.String(), "hi there") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if rss, err := p.Memory("VmRSS"); err != nil || rss <= 0 {
				t.Errorf("VmRSS %d, %v", rss, err)
			}
			if err := p.Stop(c.sig, 300*time.Millisecond); !c.check(err) {
				t.Errorf("Stop: %v; output %q", err, p.Out.String())
			}
			select {
			case <-p.Done():
			default:
				t.Error("Done is open after Stop")
			}
			if !strings.Contains(p.Out.String(), "hi there") {
				t.Errorf("output %q, want the environment's greeting", p.Out.String())
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	p := For(t).Start("sh", "/bin/sh", nil, "-c", "exit 7")
	if code := For(t).ExitCode(p, 5*time.Second); code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
	if _, err := Start("missing", "/nonexistent/bin", nil); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Start of a missing binary: %v", err)
	}
}
