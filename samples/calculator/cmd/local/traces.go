package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/samples/calculator/dashboard"
)

// traces is what -traces runs: Jaeger all-in-one, the collector the
// end-to-end tests use too, and the page that reads it.
type traces struct {
	zipkin  string       // Jaeger's Zipkin receiver, where the sidecars send spans
	query   string       // Jaeger's query API
	pageURL string       // the traces page
	page    *http.Server // serves the page
	pageErr <-chan error // the page server's error, should it stop
}

// listenTracesPage takes the page's port on the loopback interface before
// anything is built, so a taken port is the first thing the user hears of.
func listenTracesPage(port int) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("port %d for the traces page is taken (%v): stop what uses it or pick another with -traces-port", port, err)
	}
	return ln, nil
}

// startTraces builds Jaeger (once; tools/build caches it), starts it in g
// with every port of it on the loopback interface, waits until its query API
// answers, and serves the page on ln.
func startTraces(ctx context.Context, g *group, ln net.Listener) (*traces, error) {
	bin, err := buildJaeger(ctx)
	if err != nil {
		return nil, err
	}
	// Jaeger's receivers and servers, each on a free port: Zipkin's span API,
	// the query API the page reads, and the rest, which nothing here uses.
	flags := []string{
		"collector.zipkin.host-port", "query.http-server.host-port", "query.grpc-server.host-port",
		"collector.grpc-server.host-port", "collector.http-server.host-port",
		"collector.otlp.grpc.host-port", "collector.otlp.http.host-port", "admin.http.host-port",
	}
	addrs := make([]string, len(flags))
	args := []string{"--log-level=warn", "--memory.max-traces=10000"}
	ports, err := proc.FreePorts(len(flags))
	if err != nil {
		return nil, err
	}
	for i, f := range flags {
		addrs[i] = "127.0.0.1:" + strconv.Itoa(ports[i])
		args = append(args, "--"+f+"="+addrs[i])
	}
	// Jaeger traces itself to localhost:4317 unless told not to, which would
	// send its spans to whatever else listens there, or log that nothing does.
	env := []string{"OTEL_TRACES_SAMPLER=always_off"}
	if err := g.startTo(&prefixWriter{name: "jaeger", skip: (&jaegerNoise{}).skip}, "jaeger", bin, env, args...); err != nil {
		return nil, err
	}
	query := &url.URL{Scheme: "http", Host: addrs[1]}
	if err := waitQueryAPI(ctx, g, query); err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: dashboard.Handler(query), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	t := &traces{
		zipkin:  "http://" + addrs[0] + "/api/v2/spans",
		query:   query.String(),
		pageURL: "http://" + ln.Addr().String(),
		page:    srv,
		pageErr: errc,
	}
	logf("runner", "traces: Jaeger all-in-one takes Zipkin spans at %s; its query API is %s", t.zipkin, query)
	return t, nil
}

// buildJaeger runs the repository's tools/build, which builds Jaeger
// all-in-one from its pinned module the first time (minutes) and prints the
// cached binary's path after that.
func buildJaeger(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	script := filepath.Join(filepath.Dir(gomod), "tools", "build")
	if _, serr := os.Stat(script); err != nil || gomod == "" || serr != nil {
		return "", errors.New("-traces builds Jaeger with the Tandem repository's tools/build: run the runner from inside the repository")
	}
	logf("runner", "traces: Jaeger all-in-one from tools/build (built once, which takes minutes; cached after that)")
	cmd := exec.CommandContext(ctx, script, "jaeger")
	cmd.Stderr = &prefixWriter{name: "tools/build"}
	// The script's go build is in its process group: Ctrl-C stops it too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err = cmd.Output()
	if err != nil {
		return "", fmt.Errorf("tools/build jaeger: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// waitQueryAPI waits until Jaeger's query API lists services.
func waitQueryAPI(ctx context.Context, g *group, query *url.URL) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(query.String() + "/api/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Jaeger's query API at %s did not answer within 30s", query)
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

// jaegerNoise is what Jaeger v1 prints at every start that tells the
// runner's user nothing: blank lines, its end-of-life banner (a block between two lines of
// asterisks), its version and GOMAXPROCS lines, and the warning that its own
// UI is not built in (the traces page takes its place).
type jaegerNoise struct{ inBanner bool }

func (n *jaegerNoise) skip(line []byte) bool {
	if len(bytes.TrimSpace(line)) == 0 {
		return true
	}
	if len(line) >= 20 && len(bytes.Trim(line, "*")) == 0 {
		n.inBanner = !n.inBanner
		return true
	}
	return n.inBanner ||
		bytes.Contains(line, []byte("maxprocs: Leaving GOMAXPROCS")) ||
		bytes.Contains(line, []byte("application version: git-commit=")) ||
		bytes.Contains(line, []byte("ui assets not embedded in the binary"))
}
