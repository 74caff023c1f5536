// Package e2e runs real sidecar processes and real apps on loopback and
// checks what an app sees when it calls another app through two sidecars.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/release"
	"github.com/tandem-run/tandem/internal/testutil/proc"
)

var sidecarBin, testappBin, grpcappBin, injectorBin string

// binDir holds the binaries the tests build.
var binDir string

// listenWait bounds the wait for a process of a test to listen.
const listenWait = 15 * time.Second

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
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
		cmd := release.Command(context.Background(), "", pkg, bin, "")
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
	*proc.Proc
	appID    string
	httpPort int
	grpcPort int
	url      string // base URL of its HTTP API
}

// app starts a testapp and returns its port.
func (w *world) app(name string) (int, *proc.Proc) {
	return w.appBin(name, testappBin)
}

// grpcApp starts a grpcapp and returns its port.
func (w *world) grpcApp(name string) (int, *proc.Proc) {
	return w.appBin(name, grpcappBin)
}

func (w *world) appBin(name, bin string, env ...string) (int, *proc.Proc) {
	pt := proc.For(w.t)
	port := pt.FreePort()
	p := pt.Start(name, bin, append([]string{"APP_PORT=" + strconv.Itoa(port)}, env...))
	pt.WaitTCP("127.0.0.1:"+strconv.Itoa(port), listenWait)
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
	pt := proc.For(w.t)
	ports, err := proc.FreePorts(2) // distinct, as two FreePort calls might not be
	if err != nil {
		w.t.Fatal(err)
	}
	httpPort, grpcPort := ports[0], ports[1]
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
		Proc:     pt.Start("sidecar "+appID, sidecarBin, env, args...),
		appID:    appID,
		httpPort: httpPort,
		grpcPort: grpcPort,
		url:      "http://127.0.0.1:" + strconv.Itoa(httpPort),
	}
	pt.WaitTCP("127.0.0.1:"+strconv.Itoa(httpPort), listenWait)
	pt.WaitTCP("127.0.0.1:"+strconv.Itoa(grpcPort), listenWait)
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

// peakRSS returns the peak resident memory of p in bytes (VmHWM).
func peakRSS(t *testing.T, p *proc.Proc) int64 {
	t.Helper()
	n, err := p.Memory("VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	return n
}
