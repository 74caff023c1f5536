package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tandem-run/tandem/internal/release"
	testproc "github.com/tandem-run/tandem/internal/testutil/proc"
)

// proc is a process the harness started: a sidecar, a floor proxy, Redis.
type proc struct{ *testproc.Proc }

func start(name, bin string, env []string, args ...string) (*proc, error) {
	p, err := testproc.Start(name, bin, env, args...)
	if err != nil {
		return nil, err
	}
	return &proc{Proc: p}, nil
}

// stop sends SIGTERM and kills the process if it has not exited 5 s later.
func (p *proc) stop() { _ = p.Stop(syscall.SIGTERM, 5*time.Second) }

// cpu returns the process's user+system CPU time so far, from /proc.
func (p *proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// peakRSS returns the process's peak resident memory (VmHWM), in bytes.
func (p *proc) peakRSS() int64 { return p.memory("VmHWM") }

// memory returns a memory field of the process's /proc/<pid>/status (see
// Proc.Memory), in bytes; 0 when it cannot be read.
func (p *proc) memory(field string) int64 {
	n, _ := p.Memory(field)
	return n
}

// buildSidecar builds the sidecar into dir as its image has it.
func buildSidecar(dir string) (string, error) {
	bin := filepath.Join(dir, "sidecar")
	cmd := release.Command(context.Background(), "", "github.com/tandem-run/tandem/cmd/sidecar", bin, "")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the sidecar: %w", err)
	}
	return bin, nil
}

func waitHealthy(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url + "/v1.0/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s is not healthy after %s", url, d)
}
