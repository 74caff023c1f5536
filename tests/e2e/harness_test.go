// Package e2e runs real sidecar processes and real apps on loopback and
// checks what an app sees when it calls another app through two sidecars.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
)

var sidecarBin, testappBin, grpcappBin, injectorBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sidecarBin = filepath.Join(dir, "sidecar")
	testappBin = filepath.Join(dir, "testapp")
	grpcappBin = filepath.Join(dir, "grpcapp")
	injectorBin = filepath.Join(dir, "injector")
	for bin, pkg := range map[string]string{
		injectorBin: "github.com/tandem-run/tandem/cmd/injector",
		sidecarBin:  "github.com/tandem-run/tandem/cmd/sidecar",
		testappBin:  "github.com/tandem-run/tandem/tests/e2e/testapp",
		grpcappBin:  "github.com/tandem-run/tandem/tests/e2e/grpcapp",
	} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running process of a test.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
	err  error
}

// startProc starts bin and stops it when the test ends; its output is
// logged when the test fails.
func startProc(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(5 * time.Second)
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits up to grace before killing.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// exited waits up to d for the process to end and returns its exit code.
func (p *proc) exited(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("%s did not exit within %s", p.name, d)
		return -1
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// world is a set of apps and sidecars that see each other through one
// registry folder.
type world struct {
	t        *testing.T
	registry string
}

func newWorld(t *testing.T) *world {
	return &world{t: t, registry: t.TempDir()}
}

// sidecar is a running sidecar process.
type sidecar struct {
	*proc
	appID    string
	httpPort int
	grpcPort int
	url      string // base URL of its HTTP API
}

// app starts a testapp and returns its port.
func (w *world) app(name string) (int, *proc) {
	return w.appBin(name, testappBin)
}

// grpcApp starts a grpcapp and returns its port.
func (w *world) grpcApp(name string) (int, *proc) {
	return w.appBin(name, grpcappBin)
}

func (w *world) appBin(name, bin string) (int, *proc) {
	port := freePort(w.t)
	p := startProc(w.t, name, bin, []string{"APP_PORT=" + strconv.Itoa(port)})
	waitTCP(w.t, port)
	return port, p
}

// sidecar starts a sidecar for appID; appPort 0 means no app.
func (w *world) sidecar(appID string, appPort int, extra ...string) *sidecar {
	w.t.Helper()
	return w.sidecarEnv(appID, appPort, nil, extra...)
}

// sidecarEnv is sidecar with environment variables for the process.
func (w *world) sidecarEnv(appID string, appPort int, env []string, extra ...string) *sidecar {
	w.t.Helper()
	httpPort, grpcPort := freePort(w.t), freePort(w.t)
	args := []string{
		"--app-id", appID,
		"--dapr-http-port", strconv.Itoa(httpPort),
		"--dapr-grpc-port", strconv.Itoa(grpcPort),
		"--dapr-internal-grpc-port", "0",
		"--metrics-port", "0",
		"--dapr-listen-addresses", "127.0.0.1",
		"--registry-dir", w.registry,
		"--log-level", "debug",
	}
	if appPort != 0 {
		args = append(args, "--app-port", strconv.Itoa(appPort))
	}
	args = append(args, extra...)
	s := &sidecar{
		proc:     startProc(w.t, "sidecar "+appID, sidecarBin, env, args...),
		appID:    appID,
		httpPort: httpPort,
		grpcPort: grpcPort,
		url:      "http://127.0.0.1:" + strconv.Itoa(httpPort),
	}
	waitTCP(w.t, httpPort)
	waitTCP(w.t, grpcPort)
	return s
}

// waitHealthy waits for GET /v1.0/healthz to answer 204.
func (s *sidecar) waitHealthy(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.url + "/v1.0/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("sidecar %s did not become healthy", s.appID)
}

func waitTCP(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on port %d", port)
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, method, url string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

// peakRSS returns the peak resident memory of pid in bytes (VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
