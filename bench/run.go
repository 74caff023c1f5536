package main

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tandem-run/tandem/pkg/resolver/standalone"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// result is one path measured over the rounds.
type result struct {
	path
	base   *result // its group's baseline; nil for a baseline
	Rounds []*sample
	Note   string
}

// sample is one round of one path.
type sample struct {
	Fixed   *stats // at the fixed rate
	Max     *stats // as fast as it goes; its latencies are not kept
	CPU     time.Duration
	PeakRSS int64 // the largest peak (VmHWM) of the path's own processes after the fixed rate
	IdleRSS int64 // the largest resident memory of its processes after start, before any request
	// IdleAnon is the same for their private memory (RssAnon): RSS less
	// the program's file pages, which processes of one binary share.
	IdleAnon int64
	Procs    int // how many processes of its own the path has
}

// env is what the paths share: binaries, apps, Redis, the collector.
type env struct {
	o         options
	dir       string
	sidecar   string
	self      string
	appAddr   string
	grpcAddr  string
	redis     string
	resources string // folder of the statestore Component
	// The state backends profile's PostgreSQL connection string and Redis
	// Cluster (its masters, comma-separated), and the folders of their
	// statestore Components.
	pgConn, pgResources       string
	cluster, clusterResources string
	floorCerts                string // folder of the TLS floor's certificates
	tracing                   string // the traced pair's Configuration file
	collector                 string // the Zipkin stand-in's base URL
	payload                   []byte
	profile                   profile // what -profile captured
}

// newEnv makes the work folder, builds the sidecar and starts the HTTP
// echo app; cleanup removes the folder.
func newEnv(o options) (e *env, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "tandem-bench-")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	e = &env{o: o, dir: dir, payload: bytes.Repeat([]byte("x"), o.Size)}
	if e.sidecar, err = buildSidecar(dir); err != nil {
		cleanup()
		return nil, nil, err
	}
	ln, addr, err := listenLocal()
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	e.appAddr = addr
	go func() { _ = (&http.Server{Handler: echoApp(o.Size)}).Serve(ln) }()
	return e, cleanup, nil
}

func run(o options) error {
	e, cleanup, err := newEnv(o)
	if err != nil {
		return err
	}
	defer cleanup()
	if e.self, err = os.Executable(); err != nil {
		return err
	}
	gln, gaddr, err := listenLocal()
	if err != nil {
		return err
	}
	e.grpcAddr = gaddr
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, echoGRPC{size: o.Size})
	go func() { _ = gs.Serve(gln) }()
	defer gs.Stop()
	stopCollector, err := e.startCollector()
	if err != nil {
		return err
	}
	defer stopCollector()

	var results []*result
	base := map[string]*result{}
	needRedis := false
	for _, p := range selectPaths(o.Only) {
		r := &result{path: p}
		if p.baseline {
			base[p.group] = r
		} else {
			r.base = base[p.group]
		}
		needRedis = needRedis || strings.HasPrefix(p.name, "state-") && !strings.HasSuffix(p.name, "-embedded")
		results = append(results, r)
	}
	if needRedis {
		rp, err := e.startRedis()
		if err != nil {
			return err
		}
		defer rp.stop()
	}
	if err := e.rounds(results, o.Profile); err != nil {
		return err
	}
	for _, r := range results {
		if r.name == "http-sidecars-traced" {
			n, err := e.collectedSpans()
			if err != nil {
				return fmt.Errorf("the collector's count of spans: %w", err)
			}
			r.Note = fmt.Sprintf("the collector received %d spans from it over the %d rounds", n, o.Rounds)
		}
	}
	return report(o, results, e.profile)
}

// measure sets p up, warms it up, and measures it at the fixed rate, then
// as fast as it goes.
func (e *env) measure(p path, label string, profiled bool) (*sample, error) {
	rg, err := p.setup(e, profiled)
	if err != nil {
		return nil, err
	}
	defer rg.stop()
	s := &sample{Procs: len(rg.procs)}
	for _, pr := range rg.procs {
		s.IdleRSS = max(s.IdleRSS, pr.memory("VmRSS"))
		s.IdleAnon = max(s.IdleAnon, pr.memory("RssAnon"))
	}
	o := e.o
	if o.Warmup > 0 {
		rg.drive(load{Rate: o.Rate, Conns: o.Conns, Duration: o.Warmup})
	}
	var captured <-chan profile
	if rg.profile != "" {
		captured = captureProfile(rg.profile, o.Duration, o.ProfileOut)
	}
	cpu0 := cpuOf(rg.procs)
	s.Fixed = rg.drive(load{Rate: o.Rate, Conns: o.Conns, Duration: o.Duration})
	s.CPU = cpuOf(rg.procs) - cpu0
	for _, pr := range rg.procs {
		s.PeakRSS = max(s.PeakRSS, pr.peakRSS())
	}
	if captured != nil {
		e.profile = <-captured
		e.profile.path = p.name
	}
	s.Max = rg.drive(load{Conns: o.Conns, Duration: o.MaxFor})
	s.Max.Latencies = nil
	log.Printf("%s: p50 %s p90 %s p99 %s p99.9 %s, %d errors; max %.0f req/s", label, s.Fixed.quantile(.5), s.Fixed.quantile(.9),
		s.Fixed.quantile(.99), s.Fixed.quantile(.999), s.Fixed.Errors+s.Max.Errors, s.Max.rate())
	return s, nil
}

func cpuOf(procs []*proc) time.Duration {
	var d time.Duration
	for _, p := range procs {
		d += p.cpu()
	}
	return d
}

func stopAll(procs []*proc) {
	for _, p := range procs {
		p.stop()
	}
}

// sidecarAddrs are where a started sidecar listens.
type sidecarAddrs struct {
	httpURL, grpcAddr string
	metricsURL        string // "" when its metrics are off
}

// startSidecar starts one sidecar; appAddr "" means no app.
func (e *env) startSidecar(id, appAddr, protocol, registry string, extra ...string) (*proc, sidecarAddrs, error) {
	return e.startSidecarEnv(nil, id, appAddr, protocol, registry, extra...)
}

// startSidecarEnv is startSidecar with environ added to the sidecar's
// environment.
func (e *env) startSidecarEnv(environ []string, id, appAddr, protocol, registry string, extra ...string) (*proc, sidecarAddrs, error) {
	// Port 0: each sidecar binds a free port itself and writes it into its
	// registry entry, so that no other process can take a port between
	// the harness choosing it and the sidecar binding it.
	args := []string{"--app-id", id, "--dapr-http-port", "0", "--dapr-grpc-port", "0",
		"--dapr-internal-grpc-port", "0", "--enable-metrics=false", "--dapr-listen-addresses", "127.0.0.1",
		"--registry-dir", registry, "--log-level", "warn", "--app-protocol", protocol}
	if appAddr != "" {
		args = append(args, "--app-port", appAddr[strings.LastIndexByte(appAddr, ':')+1:])
	}
	p, err := start("sidecar "+id, e.sidecar, environ, append(args, extra...)...)
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	entry, err := registered(registry, p.Cmd.Process.Pid, p.Done(), 15*time.Second)
	if err == nil {
		a := sidecarAddrs{httpURL: "http://127.0.0.1:" + itoa(entry.HTTPPort), grpcAddr: "127.0.0.1:" + itoa(entry.GRPCPort)}
		if entry.MetricsPort > 0 {
			a.metricsURL = "http://127.0.0.1:" + itoa(entry.MetricsPort)
		}
		if err = waitHealthy(a.httpURL, 15*time.Second); err == nil {
			return p, a, nil
		}
	}
	p.stop()
	return nil, sidecarAddrs{}, fmt.Errorf("sidecar %s: %w\n%s", id, err, p.Out.String())
}

// registered waits up to d for the registry entry of the sidecar with
// process id pid, which it writes once its ports are bound.
func registered(registry string, pid int, exited <-chan struct{}, d time.Duration) (standalone.Entry, error) {
	deadline := time.Now().Add(d)
	for {
		entries, err := standalone.List(registry)
		if err != nil {
			return standalone.Entry{}, err
		}
		for _, en := range entries {
			if en.PID == pid {
				return en, nil
			}
		}
		select {
		case <-exited:
			return standalone.Entry{}, errors.New("exited before it listened")
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return standalone.Entry{}, fmt.Errorf("no registry entry in %s after %s", registry, d)
		}
	}
}

// pairOptions say how a pair of sidecars runs.
type pairOptions struct {
	mtls    bool     // mutual TLS on the hop (the standalone default); else --enable-mtls=false
	traced  bool     // with the calculator's tracing Configuration
	profile bool     // the caller serves pprof
	procs   int      // --max-procs of both; 0: the sidecar's default
	env     []string // added to both's environment
	// callerArgs are flags of the caller's alone (its pipeline).
	callerArgs []string
}

// soloSidecar starts one sidecar with a registry folder of its own (and
// pprof when profile is set) and returns a rig holding it, with its
// addresses.
func (e *env) soloSidecar(id, appAddr, protocol string, profile bool, extra ...string) (*rig, sidecarAddrs, error) {
	flags, pprof, err := profileFlags(profile)
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	reg, err := os.MkdirTemp(e.dir, "registry-")
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	p, a, err := e.startSidecar(id, appAddr, protocol, reg, append(flags, extra...)...)
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	return &rig{procs: []*proc{p}, profile: pprof}, a, nil
}

// sidecarPair starts the app's sidecar and a caller's sidecar, which
// share a registry folder (and so, with mTLS, a CA). The rig's first
// process is the caller.
func (e *env) sidecarPair(protocol, appAddr string, po pairOptions) (*rig, sidecarAddrs, error) {
	reg, err := os.MkdirTemp(e.dir, "registry-")
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	var both []string
	if !po.mtls {
		both = append(both, "--enable-mtls=false")
	}
	if po.traced {
		both = append(both, "--config", e.tracing)
	}
	if po.procs > 0 {
		both = append(both, "--max-procs", itoa(po.procs))
	}
	callee, _, err := e.startSidecarEnv(po.env, "bench-app", appAddr, protocol, reg, both...)
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	extra, pprof, err := profileFlags(po.profile)
	if err != nil {
		callee.stop()
		return nil, sidecarAddrs{}, err
	}
	caller, a, err := e.startSidecarEnv(po.env, "bench-client", "", "http", reg, append(append(both, po.callerArgs...), extra...)...)
	if err != nil {
		callee.stop()
		return nil, sidecarAddrs{}, err
	}
	return &rig{procs: []*proc{caller, callee}, profile: pprof}, a, nil
}

// rounds runs each result's path once a round, in order, o.Rounds times,
// and keeps each round's sample; the path named profile ("": none) is
// profiled in the last round.
func (e *env) rounds(results []*result, profile string) error {
	for i := range e.o.Rounds {
		for _, r := range results {
			s, err := e.measure(r.path, fmt.Sprintf("round %d/%d %s", i+1, e.o.Rounds, r.name), profile == r.name && i == e.o.Rounds-1)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", r.name, i+1, err)
			}
			r.Rounds = append(r.Rounds, s)
		}
	}
	return nil
}
