// Command local runs the distributed calculator on this machine: it builds
// the sidecar and the apps, starts the five apps each beside its own sidecar
// in standalone mode, and serves the page on http://localhost:8080.
//
//	go run ./samples/calculator/cmd/local [-port 8080] [-redis host:port] [-zipkin URL]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// app is one of the calculator's services.
type app struct {
	id   string
	bin  string
	args []string
}

var apps = []app{
	{"addapp", "operator", []string{"-op", "add"}},
	{"subtractapp", "operator", []string{"-op", "subtract"}},
	{"multiplyapp", "operator", []string{"-op", "multiply"}},
	{"divideapp", "operator", []string{"-op", "divide"}},
	{"calculator-front-end", "frontend", nil},
}

func main() {
	port := flag.Int("port", 8080, "port of the web front end")
	redisAddr := flag.String("redis", os.Getenv("CALCULATOR_REDIS"), "host:port of a Redis server for the state store (env CALCULATOR_REDIS); default: the embedded store")
	zipkin := flag.String("zipkin", os.Getenv("CALCULATOR_ZIPKIN"), "Zipkin span endpoint, e.g. http://localhost:9411/api/v2/spans, to trace every call (env CALCULATOR_ZIPKIN); default: no tracing")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *port, *redisAddr, *zipkin); err != nil {
		fmt.Fprintf(os.Stderr, "calculator: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, port int, redisAddr, zipkin string) error {
	if ln, err := net.Listen("tcp", ":"+strconv.Itoa(port)); err != nil {
		return fmt.Errorf("port %d is taken (%v): stop what uses it or pick another with -port", port, err)
	} else {
		ln.Close()
	}
	work, err := os.MkdirTemp("", "calculator-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bins, err := build(ctx, work)
	if err != nil {
		return err
	}
	args := []string{}
	if redisAddr != "" {
		dir := filepath.Join(work, "resources")
		if err := writeRedisComponent(dir, redisAddr); err != nil {
			return err
		}
		args = append(args, "--resources-path", dir)
		logf("runner", "state store: Redis at %s", redisAddr)
	} else {
		logf("runner", "state store: the embedded in-memory store (use -redis host:port for Redis)")
	}
	if zipkin != "" {
		conf := filepath.Join(work, "appconfig.yaml")
		if err := writeTracingConfig(conf, zipkin); err != nil {
			return err
		}
		args = append(args, "--config", conf)
		logf("runner", "tracing: every call, to Zipkin at %s", zipkin)
	}

	g := &group{}
	defer g.stopAll()
	registry := filepath.Join(work, "registry")
	var sidecarURLs []string
	for _, a := range apps {
		appPort := port
		if a.id != "calculator-front-end" {
			if appPort, err = proc.FreePort(); err != nil {
				return err
			}
		}
		httpPort, err := proc.FreePort()
		if err != nil {
			return err
		}
		env := []string{"APP_PORT=" + strconv.Itoa(appPort), "DAPR_HTTP_PORT=" + strconv.Itoa(httpPort)}
		if err := g.start(a.id, bins[a.bin], env, a.args...); err != nil {
			return err
		}
		sargs := append([]string{
			"--app-id", a.id, "--app-port", strconv.Itoa(appPort),
			"--dapr-http-port", strconv.Itoa(httpPort), "--dapr-grpc-port", "0",
			"--dapr-internal-grpc-port", "0", "--metrics-port", "0",
			"--dapr-listen-addresses", "127.0.0.1", "--registry-dir", registry,
		}, args...)
		if err := g.start(a.id+" sidecar", bins["sidecar"], nil, sargs...); err != nil {
			return err
		}
		sidecarURLs = append(sidecarURLs, "http://127.0.0.1:"+strconv.Itoa(httpPort))
	}
	if err := waitHealthy(ctx, g, sidecarURLs); err != nil {
		return err
	}
	logf("runner", "calculator ready: http://localhost:%d  (Ctrl-C stops everything)", port)
	select {
	case <-ctx.Done():
		logf("runner", "stopping")
		g.stopAll()
		return nil
	case name := <-g.exited:
		return fmt.Errorf("%s exited unexpectedly; stopping everything", name)
	}
}

// build compiles the sidecar and the apps into work.
func build(ctx context.Context, work string) (map[string]string, error) {
	pkgs := map[string]string{
		"sidecar":  "github.com/tandem-run/tandem/cmd/sidecar",
		"operator": "github.com/tandem-run/tandem/samples/calculator/cmd/operator",
		"frontend": "github.com/tandem-run/tandem/samples/calculator/cmd/frontend",
	}
	bins := map[string]string{}
	logf("runner", "building the sidecar and the apps")
	for name, pkg := range pkgs {
		bins[name] = filepath.Join(work, name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bins[name], pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building %s: %v\n%s", pkg, err, out)
		}
	}
	return bins, nil
}

func writeRedisComponent(dir, addr string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "statestore.yaml"), resources.RedisYAML("statestore", addr), 0o644)
}

// writeTracingConfig writes the appconfig Configuration of the Kubernetes
// manifests, with the Zipkin endpoint given.
func writeTracingConfig(path, zipkin string) error {
	return os.WriteFile(path, resources.ZipkinYAML("appconfig", zipkin), 0o644)
}

func waitHealthy(ctx context.Context, g *group, urls []string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for _, u := range urls {
		for {
			resp, err := client.Get(u + "/v1.0/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusNoContent {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the sidecar at %s did not become healthy within 30s", u)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case name := <-g.exited:
				return fmt.Errorf("%s exited during start-up", name)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// group is the running child processes.
type group struct {
	mu       sync.Mutex
	procs    []*exec.Cmd
	done     []chan struct{}
	exited   chan string
	stopping bool
}

func (g *group) start(name, bin string, env []string, args ...string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.exited == nil {
		g.exited = make(chan string, 16)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = &prefixWriter{name: name}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
		g.mu.Lock()
		stopping := g.stopping
		g.mu.Unlock()
		if !stopping {
			g.exited <- name
		}
	}()
	g.procs = append(g.procs, cmd)
	g.done = append(g.done, done)
	return nil
}

// stopAll sends SIGTERM to every child and kills those still running after 5s.
func (g *group) stopAll() {
	g.mu.Lock()
	g.stopping = true
	procs, done := g.procs, g.done
	g.procs, g.done = nil, nil
	g.mu.Unlock()
	for _, p := range procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	timeout := time.After(5 * time.Second)
	for i, d := range done {
		select {
		case <-d:
		case <-timeout:
			_ = procs[i].Process.Kill()
			<-d
		}
	}
}

// prefixWriter writes each line prefixed with the process's name.
type prefixWriter struct {
	name string
	mu   sync.Mutex
	buf  []byte
}

var outMu sync.Mutex

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		logf(w.name, "%s", w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func logf(name, format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(os.Stdout, "%-28s | %s\n", name, fmt.Sprintf(format, args...))
}
