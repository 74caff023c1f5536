// Command local runs the distributed calculator on this machine: it builds
// the sidecar and the apps, starts the five apps each beside its own sidecar
// in standalone mode, and serves the page on http://localhost:8080. With
// -traces it also runs a trace collector (Jaeger all-in-one, built once by
// tools/build) that every sidecar sends its spans to, and a page of the
// traces on http://127.0.0.1:16686.
//
//	go run ./samples/calculator/cmd/local [-port 8080] [-redis host:port] [-zipkin URL | -traces [-traces-port 16686]]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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

	"github.com/tandem-run/tandem/internal/release"
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

// options are the runner's flags.
type options struct {
	port       int    // the page's port
	redis      string // host:port of a Redis server, or "" for the embedded store
	zipkin     string // a Zipkin span endpoint of the user's, or ""
	traces     bool   // run a collector and the traces page
	tracesPort int    // the traces page's port
	dashboard  bool   // run the mesh's dashboard (cmd/dashboard)
	dashPort   int    // the dashboard's port
}

// parseOptions reads the flags, taking defaults of -redis and -zipkin from
// the environment.
func parseOptions(args []string, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("calculator", flag.ContinueOnError)
	fs.IntVar(&o.port, "port", 8080, "port of the web front end")
	fs.StringVar(&o.redis, "redis", getenv("CALCULATOR_REDIS"), "host:port of a Redis server for the state store (env CALCULATOR_REDIS); default: the embedded store")
	fs.StringVar(&o.zipkin, "zipkin", getenv("CALCULATOR_ZIPKIN"), "Zipkin span endpoint of a collector of yours, e.g. http://localhost:9411/api/v2/spans, to trace every call (env CALCULATOR_ZIPKIN); default: no tracing")
	fs.BoolVar(&o.traces, "traces", false, "trace every call into a collector the runner starts (Jaeger all-in-one, built once by tools/build) and serve a page of the traces")
	fs.IntVar(&o.tracesPort, "traces-port", 16686, "port of the traces page, on 127.0.0.1 (with -traces)")
	fs.BoolVar(&o.dashboard, "dashboard", false, "also run the mesh's dashboard (cmd/dashboard): the apps, their health, components and subscriptions")
	fs.IntVar(&o.dashPort, "dashboard-port", 8081, "port of the dashboard, on 127.0.0.1 (with -dashboard)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q: the runner takes flags only (-h lists them)", fs.Arg(0))
	case o.port < 1 || o.port > 65535:
		return o, fmt.Errorf("-port %d: want a port from 1 to 65535", o.port)
	case o.tracesPort < 1 || o.tracesPort > 65535:
		return o, fmt.Errorf("-traces-port %d: want a port from 1 to 65535", o.tracesPort)
	case set["traces-port"] && !o.traces:
		return o, errors.New("-traces-port is the port of the traces page, which only -traces serves: add -traces")
	case o.traces && o.zipkin != "":
		return o, fmt.Errorf("-traces starts a collector of its own and -zipkin (or CALCULATOR_ZIPKIN) names yours, %s: use one of them", o.zipkin)
	case o.traces && o.tracesPort == o.port:
		return o, fmt.Errorf("-port and -traces-port are both %d: the calculator and the traces page need a port each", o.port)
	case o.dashPort < 1 || o.dashPort > 65535:
		return o, fmt.Errorf("-dashboard-port %d: want a port from 1 to 65535", o.dashPort)
	case set["dashboard-port"] && !o.dashboard:
		return o, errors.New("-dashboard-port is the port of the dashboard, which only -dashboard serves: add -dashboard")
	case o.dashboard && (o.dashPort == o.port || o.traces && o.dashPort == o.tracesPort):
		return o, fmt.Errorf("-dashboard-port %d is taken by -port or -traces-port: the dashboard needs a port of its own", o.dashPort)
	}
	return o, nil
}

func main() {
	o, err := parseOptions(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "calculator: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "calculator: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if ln, err := net.Listen("tcp", ":"+strconv.Itoa(o.port)); err != nil {
		return fmt.Errorf("port %d is taken (%v): stop what uses it or pick another with -port", o.port, err)
	} else {
		ln.Close()
	}
	var pageLn net.Listener
	if o.traces {
		var err error
		if pageLn, err = listenTracesPage(o.tracesPort); err != nil {
			return err
		}
		defer pageLn.Close()
	}
	work, err := os.MkdirTemp("", "calculator-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bins, err := build(ctx, work, o.dashboard)
	if err != nil {
		return err
	}
	// The collector stops after the apps and sidecars, which send it their
	// last spans as they stop.
	g, collector := &group{}, &group{}
	defer collector.stopAll()
	defer g.stopAll()
	args := []string{}
	if o.redis != "" {
		dir := filepath.Join(work, "resources")
		if err := writeRedisComponent(dir, o.redis); err != nil {
			return err
		}
		args = append(args, "--resources-path", dir)
		logf("runner", "state store: Redis at %s", o.redis)
	} else {
		logf("runner", "state store: the embedded in-memory store (use -redis host:port for Redis)")
	}
	zipkin, ready := o.zipkin, fmt.Sprintf("calculator ready: http://localhost:%d", o.port)
	var pageErr <-chan error // the traces page's server, once it stops
	var jaegerQuery string   // the collector's query API, for the dashboard's map
	if o.traces {
		tr, err := startTraces(ctx, collector, pageLn)
		if err != nil {
			return err
		}
		defer tr.page.Close()
		zipkin, pageErr, jaegerQuery = tr.zipkin, tr.pageErr, tr.query
		ready += "  traces: " + tr.pageURL
	}
	if zipkin != "" {
		conf := filepath.Join(work, "appconfig.yaml")
		if err := writeTracingConfig(conf, zipkin); err != nil {
			return err
		}
		args = append(args, "--config", conf)
		logf("runner", "tracing: every call, to Zipkin at %s", zipkin)
	}

	registry := filepath.Join(work, "registry")
	// Every port of every app and sidecar is chosen here, before any of
	// them starts, and none binds port 0: a process binding port 0 while
	// another is starting could be given the port chosen for that one.
	const portsEach = 5 // the app's, the sidecar's HTTP, gRPC, internal, metrics
	ports, err := proc.FreePorts(portsEach * len(apps))
	if err != nil {
		return err
	}
	var sidecarURLs []string
	for i, a := range apps {
		p := ports[portsEach*i : portsEach*(i+1)]
		appPort, httpPort := p[0], p[1]
		if a.id == "calculator-front-end" {
			appPort = o.port
		}
		env := []string{"APP_PORT=" + strconv.Itoa(appPort), "DAPR_HTTP_PORT=" + strconv.Itoa(httpPort)}
		if err := g.start(a.id, bins[a.bin], env, a.args...); err != nil {
			return err
		}
		sargs := append([]string{
			"--app-id", a.id, "--app-port", strconv.Itoa(appPort),
			"--dapr-http-port", strconv.Itoa(httpPort), "--dapr-grpc-port", strconv.Itoa(p[2]),
			"--dapr-internal-grpc-port", strconv.Itoa(p[3]), "--metrics-port", strconv.Itoa(p[4]),
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
	if o.dashboard {
		addr := "127.0.0.1:" + strconv.Itoa(o.dashPort)
		dargs := []string{"--listen", addr, "--registry-dir", registry}
		if jaegerQuery != "" {
			dargs = append(dargs, "--jaeger-query", jaegerQuery) // the service map
		}
		if err := g.start("dashboard", bins["dashboard"], nil, dargs...); err != nil {
			return err
		}
		ready += "  dashboard: http://" + addr + "/"
	}
	logf("runner", "%s  (Ctrl-C stops everything)", ready)
	select {
	case <-ctx.Done():
		logf("runner", "stopping")
		g.stopAll()
		collector.stopAll()
		return nil
	case name := <-g.exited:
		return fmt.Errorf("%s exited unexpectedly; stopping everything", name)
	case name := <-collector.exited:
		return fmt.Errorf("%s exited unexpectedly; stopping everything", name)
	case err := <-pageErr:
		return fmt.Errorf("the traces page stopped: %w; stopping everything", err)
	}
}

// build compiles the sidecar and the apps into work.
// With dashboard, the mesh's dashboard too.
func build(ctx context.Context, work string, dashboard bool) (map[string]string, error) {
	pkgs := map[string]string{
		"sidecar":  "github.com/tandem-run/tandem/cmd/sidecar",
		"operator": "github.com/tandem-run/tandem/samples/calculator/cmd/operator",
		"frontend": "github.com/tandem-run/tandem/samples/calculator/cmd/frontend",
	}
	if dashboard {
		pkgs["dashboard"] = "github.com/tandem-run/tandem/cmd/dashboard"
	}
	bins := map[string]string{}
	logf("runner", "building the sidecar and the apps")
	for name, pkg := range pkgs {
		bins[name] = filepath.Join(work, name)
		cmd := release.Command(ctx, "", pkg, bins[name], "")
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
	return g.startTo(&prefixWriter{name: name}, name, bin, env, args...)
}

// startTo starts a child that writes its output to out.
func (g *group) startTo(out io.Writer, name, bin string, env []string, args ...string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.exited == nil {
		g.exited = make(chan string, 16)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
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

// prefixWriter writes each line prefixed with the process's name, but
// those that skip (when set) is true of.
type prefixWriter struct {
	name string
	skip func(line []byte) bool
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
		if w.skip == nil || !w.skip(w.buf[:i]) {
			logf(w.name, "%s", w.buf[:i])
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func logf(name, format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(os.Stdout, "%-28s | %s\n", name, fmt.Sprintf(format, args...))
}
