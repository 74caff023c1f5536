package release

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// The shipped sidecar links neither grpc's request tracing and the
// templates it brings (they keep every exported method of the binary)
// nor a second YAML library: a dependency that brings them back fails
// here, not in the benchmark's memory figures.
func TestSidecarDependencies(t *testing.T) {
	deps := listDeps(t, module+"/cmd/sidecar")
	if !deps["google.golang.org/grpc"] || !deps["gopkg.in/yaml.v3"] {
		t.Fatalf("go list -deps does not list what the sidecar imports: %v", deps)
	}
	for _, p := range []string{"golang.org/x/net/trace", "html/template", "text/template", "sigs.k8s.io/yaml", "go.yaml.in/yaml/v2", "github.com/zitadel/oidc/v3/pkg/op"} {
		if deps[p] {
			t.Errorf("the sidecar links %s", p)
		}
	}
}

const module = "github.com/tandem-run/tandem"

// listDeps is the set of packages pkg imports, directly or not, and pkg.
func listDeps(t *testing.T, pkg string) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-tags", Tags, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	return deps
}

// Dependencies point the way the design says. What speaks invocation's
// wire vocabulary without making calls (access control, telemetry, the
// API token, the error catalog) needs internal/invoke/wire, not the
// invoker; the vocabulary imports no package of ours; the invoker renders
// no API.
func TestDependencyDirection(t *testing.T) {
	for _, c := range []struct {
		pkg       string
		forbidden string // a package, or a prefix ending in "/"
	}{
		{"internal/acl", "internal/invoke"},
		{"internal/telemetry", "internal/invoke"},
		{"internal/api/token", "internal/invoke"},
		{"internal/apierr", "internal/invoke"},
		{"internal/invoke/wire", ""}, // nothing of ours
		{"internal/invoke", "internal/api/"},
	} {
		t.Run(c.pkg, func(t *testing.T) {
			self := module + "/" + c.pkg
			deps := listDeps(t, self)
			if !deps[self] {
				t.Fatalf("go list -deps does not list %s itself: %v", self, deps)
			}
			forbidden := module + "/" + c.forbidden
			for p := range deps {
				if p == self {
					continue
				}
				if p == forbidden || strings.HasSuffix(forbidden, "/") && strings.HasPrefix(p, forbidden) {
					t.Errorf("%s imports %s", c.pkg, p)
				}
			}
		})
	}
}

// Command builds a static binary with the tags and the version.
func TestCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sidecar")
	}
	bin := sidecar(t)
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"-tags=" + Tags, "CGO_ENABLED=0", "-trimpath=true"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("go version -m has no %q:\n%s", want, out)
		}
	}
	v, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(v), "1.2.3-test") {
		t.Fatalf("--version: %v %s", err, v)
	}
}

// The shipped sidecar, idle (started on its defaults, standalone, with
// mutual TLS and metrics, ready, no call), holds at most 16 MiB resident:
// mostly its binary's pages, which start-up touches all over and the
// sidecar unmaps once it serves, and again a second later. It held 21.2
// MiB (18.4 of them file pages) before it did; since, 11.5 to 14 between
// the two (right after it answers ready) and 7.5 to 8 after the second,
// logging at debug level as here (5.5 at info level).
func TestSidecarIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the sidecar")
	}
	bin := sidecar(t)
	pt := proc.For(t)
	port := pt.FreePort()
	p := pt.Start("sidecar", bin, nil, "--app-id", "idle", "--dapr-http-port", strconv.Itoa(port),
		"--dapr-grpc-port", "0", "--dapr-internal-grpc-port", "0", "--metrics-port", "0",
		"--dapr-listen-addresses", "127.0.0.1", "--registry-dir", t.TempDir(), "--log-level", "debug")
	waitReady(t, p, "http://127.0.0.1:"+strconv.Itoa(port)+"/v1.0/healthz")
	ready := rss(t, p)
	// The second unmapping, which the sidecar logs (at debug level) as
	// it does the first.
	waitLog(t, p, "start-up touched are unmapped", 2)
	idle := rss(t, p)
	t.Logf("idle sidecar: right after it answers ready %s; settled %s", ready, idle)
	const bound = 16 << 20
	if idle.anon+idle.file > bound {
		t.Errorf("the idle sidecar holds %s; at most %.1f MiB wanted", idle, mib(bound))
	}
}

// TestSidecarReturnsIdleMemory holds the sidecar to giving back, once it
// is idle, what a burst of calls left behind: 800 connections that each
// made one call and then wait hold what the connections need, not the
// calls' garbage (GOGC=200 keeps up to three times the live heap).
func TestSidecarReturnsIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the sidecar")
	}
	const conns = 800
	bin := sidecar(t)
	app := echoApp(t)
	pt := proc.For(t)
	port := pt.FreePort()
	p := pt.Start("sidecar", bin, nil, "--app-id", "burst", "--app-port", app, "--dapr-http-port", strconv.Itoa(port),
		"--dapr-grpc-port", "0", "--dapr-internal-grpc-port", "0", "--metrics-port", "0",
		"--dapr-listen-addresses", "127.0.0.1", "--registry-dir", t.TempDir(), "--log-level", "debug")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	waitReady(t, p, base+"/v1.0/healthz")
	waitLog(t, p, "start-up touched are unmapped", 2)
	url := base + "/v1.0/invoke/burst/method/echo"
	body := strings.Repeat("x", 1024)
	call := func(c *http.Client) error {
		resp, err := c.Post(url, "text/plain", strings.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && (resp.StatusCode != http.StatusOK || string(b) != body) {
			err = fmt.Errorf("HTTP %d, %d bytes back", resp.StatusCode, len(b))
		}
		return err
	}
	if err := call(http.DefaultClient); err != nil {
		t.Fatal(err)
	}
	before := rss(t, p)
	clients := make([]*http.Client, conns)
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	// 64 calls at a time, as the benchmark opens them: the sidecar keeps
	// as many connections to its app as calls were in flight at once.
	sem := make(chan struct{}, 64)
	for i := range clients {
		clients[i] = &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
		sem <- struct{}{}
		wg.Go(func() { errs <- call(clients[i]); <-sem })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a call to open a connection: %v", err)
		}
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	busy := rss(t, p)
	waitLog(t, p, "freed memory returned to the system", 1)
	time.Sleep(200 * time.Millisecond)
	idle := rss(t, p)
	perConn := func(r resident) float64 { return float64(r.anon-before.anon) / 1024 / conns }
	t.Logf("private memory per connection: %.1f KiB right after the calls, %.1f KiB once idle (%s before, %s right after, %s idle)",
		perConn(busy), perConn(idle), before, busy, idle)
	// A bare reverse proxy's idle connections held 25-26 KiB each (its
	// calls' garbage among them); the sidecar's 35 right after their
	// calls, 24 once it gave the garbage back.
	const bound = 28
	if perConn(idle) > bound {
		t.Errorf("idle, the sidecar holds %.1f KiB a connection; at most %d KiB wanted", perConn(idle), bound)
	}
}

// echoApp serves an app that answers each call with its body, for the
// test's length, and returns its port.
func echoApp(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read whole before answering: HTTP/1.1's server may close the
		// request's body once the answer's header is written.
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// waitLog waits up to a minute for the sidecar to have logged what at
// least n times.
func waitLog(t *testing.T, p *proc.Proc, what string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for strings.Count(p.Out.String(), what) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the sidecar did not log %q %d times within a minute:\n%s", what, n, p.Out.String())
		}
		select {
		case <-p.Done():
			t.Fatalf("the sidecar exited: %v", p.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// resident is a process's resident memory, private and of files.
type resident struct{ anon, file int64 }

func (r resident) String() string {
	return fmt.Sprintf("%.1f MiB resident: %.1f private (RssAnon), %.1f of its binary (RssFile)", mib(r.anon+r.file), mib(r.anon), mib(r.file))
}

func rss(t *testing.T, p *proc.Proc) resident {
	t.Helper()
	a, errA := p.Memory("RssAnon")
	f, errF := p.Memory("RssFile")
	if errA != nil || errF != nil {
		t.Fatalf("reading the sidecar's memory: %v %v", errA, errF)
	}
	return resident{a, f}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// waitReady waits up to a minute for url to answer 204, failing t if p
// exits first.
func waitReady(t *testing.T, p *proc.Proc, url string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sidecar is not ready a minute after it started: %v", err)
		}
		select {
		case <-p.Done():
			t.Fatalf("the sidecar exited before it was ready: %v", p.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// sidecar builds the sidecar with Command (version 1.2.3-test) once for
// the package's tests and returns its path.
func sidecar(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "release-test-")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "sidecar")
		cmd := Command(context.Background(), "../..", "./cmd/sidecar", built, "1.2.3-test")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built != "" {
		_ = os.RemoveAll(filepath.Dir(built))
	}
	os.Exit(code)
}
