package main

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	testproc "github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/resources"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	goredis "github.com/redis/go-redis/v9"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
)

// result is one measured path.
type result struct {
	Name     string
	Group    string // paths of a group are compared with its baseline
	Baseline bool
	Fixed    *stats // at the fixed rate
	Max      *stats // as fast as it goes
	CPU      time.Duration
	RSS      int64 // peak of the path's own processes (sidecars, proxies)
	Procs    int
}

// env is what the paths share: binaries, apps, Redis.
type env struct {
	o        options
	dir      string
	sidecar  string
	self     string
	appAddr  string
	grpcAddr string
	redis    string
	payload  []byte
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

	var results []*result
	measure := func(r *result, procs []*proc, fixed, fastest func(load) *stats) {
		if !selected(o.Only, r.Name) {
			return
		}
		log.Printf("%s: warming up for %s", r.Name, o.Warmup)
		fixed(load{Rate: o.Rate, Conns: o.Conns, Duration: o.Warmup})
		cpu0 := cpuOf(procs)
		log.Printf("%s: %d req/s for %s", r.Name, o.Rate, o.Duration)
		r.Fixed = fixed(load{Rate: o.Rate, Conns: o.Conns, Duration: o.Duration})
		r.CPU = cpuOf(procs) - cpu0
		for _, p := range procs {
			r.RSS = max(r.RSS, p.peakRSS())
		}
		r.Procs = len(procs)
		log.Printf("%s: as fast as it goes for %s", r.Name, o.MaxFor)
		r.Max = fastest(load{Conns: o.Conns, Duration: o.MaxFor})
		log.Printf("%s: p50 %s p90 %s p99 %s, %d errors; max %.0f req/s", r.Name,
			r.Fixed.quantile(.5), r.Fixed.quantile(.9), r.Fixed.quantile(.99), r.Fixed.Errors+r.Max.Errors, r.Max.rate())
		results = append(results, r)
	}
	httpPath := func(url string, h2c bool) (func(load) *stats, func(load) *stats) {
		tgt := vegeta.Target{Method: "POST", URL: url, Body: e.payload, Header: http.Header{"Content-Type": {"application/octet-stream"}}}
		f := func(l load) *stats { return attackHTTP(tgt, l, h2c) }
		return f, f
	}

	// HTTP: direct, floor, two sidecars.
	f, m := httpPath("http://"+e.appAddr+"/echo", false)
	measure(&result{Name: "http-direct", Group: "HTTP", Baseline: true}, nil, f, m)

	if selected(o.Only, "http-floor") {
		procs, front, err := e.floor()
		if err != nil {
			return err
		}
		f, m = httpPath("http://"+front+"/echo", false)
		measure(&result{Name: "http-floor", Group: "HTTP"}, procs, f, m)
		stopAll(procs)
	}
	if selected(o.Only, "http-sidecars") {
		procs, caller, err := e.sidecarPair("http", e.appAddr)
		if err != nil {
			return err
		}
		f, m = httpPath(caller.httpURL+"/v1.0/invoke/bench-app/method/echo", false)
		measure(&result{Name: "http-sidecars", Group: "HTTP"}, procs, f, m)
		stopAll(procs)
	}

	// gRPC: direct unary call, InvokeService (to the HTTP app), proxied call.
	direct, err := grpc.NewClient(e.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer direct.Close()
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: e.payload}}
	unary := func(c testpb.TestServiceClient, md metadata.MD) func(load) *stats {
		return func(l load) *stats {
			return attackFunc(func(ctx context.Context) error {
				if md != nil {
					ctx = metadata.NewOutgoingContext(ctx, md)
				}
				_, err := c.UnaryCall(ctx, req)
				return err
			}, l)
		}
	}
	g := unary(testpb.NewTestServiceClient(direct), nil)
	measure(&result{Name: "grpc-direct", Group: "gRPC", Baseline: true}, nil, g, g)
	if selected(o.Only, "grpc-invoke") || selected(o.Only, "grpc-proxy") {
		procs, caller, err := e.sidecarPair("grpc", e.grpcAddr)
		if err != nil {
			return err
		}
		// InvokeService reaches the gRPC app through AppCallback; this one
		// has none, so call the HTTP app's sidecar pair instead.
		hprocs, hcaller, err := e.sidecarPair("http", e.appAddr)
		if err != nil {
			return err
		}
		conn, err := grpc.NewClient(hcaller.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		api := runtimev1pb.NewDaprClient(conn)
		inv := &runtimev1pb.InvokeServiceRequest{Id: "bench-app", Message: &commonv1pb.InvokeRequest{
			Method: "echo", Data: &anypb.Any{Value: e.payload}, ContentType: "application/octet-stream",
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_POST},
		}}
		gi := func(l load) *stats {
			return attackFunc(func(ctx context.Context) error { _, err := api.InvokeService(ctx, inv); return err }, l)
		}
		measure(&result{Name: "grpc-invoke", Group: "gRPC"}, hprocs, gi, gi)
		conn.Close()
		stopAll(hprocs)

		pconn, err := grpc.NewClient(caller.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		gp := unary(testpb.NewTestServiceClient(pconn), metadata.Pairs("dapr-app-id", "bench-app"))
		measure(&result{Name: "grpc-proxy", Group: "gRPC"}, procs, gp, gp)
		pconn.Close()
		stopAll(procs)
	}

	// State: a sidecar in front of Redis, against go-redis straight to it.
	if selected(o.Only, "state-get-direct") || selected(o.Only, "state-get-sidecar") || selected(o.Only, "state-save-direct") || selected(o.Only, "state-save-sidecar") {
		rp, err := e.startRedis()
		if err != nil {
			return err
		}
		defer rp.stop()
		rdb := goredis.NewClient(&goredis.Options{Addr: e.redis, PoolSize: o.Conns})
		defer rdb.Close()
		if err := rdb.Set(context.Background(), "direct", e.payload, 0).Err(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		dget := func(l load) *stats {
			return attackFunc(func(ctx context.Context) error { return rdb.Get(ctx, "direct").Err() }, l)
		}
		dset := func(l load) *stats {
			return attackFunc(func(ctx context.Context) error { return rdb.Set(ctx, "direct", e.payload, 0).Err() }, l)
		}
		measure(&result{Name: "state-get-direct", Group: "state get", Baseline: true}, nil, dget, dget)
		measure(&result{Name: "state-save-direct", Group: "state save", Baseline: true}, nil, dset, dset)

		procs, s, err := e.stateSidecar()
		if err != nil {
			return err
		}
		value := []byte(`"` + strings.Repeat("x", o.Size-2) + `"`)
		save := append(append([]byte(`[{"key":"k","value":`), value...), `}]`...)
		if err := httpCall(http.DefaultClient, vegeta.Target{Method: "POST", URL: s.httpURL + "/v1.0/state/statestore", Body: save}); err != nil {
			return fmt.Errorf("state save through the sidecar: %w", err)
		}
		get := vegeta.Target{Method: "GET", URL: s.httpURL + "/v1.0/state/statestore/k"}
		sg := func(l load) *stats { return attackHTTP(get, l, false) }
		measure(&result{Name: "state-get-sidecar", Group: "state get"}, procs, sg, sg)
		st := vegeta.Target{Method: "POST", URL: s.httpURL + "/v1.0/state/statestore", Body: save, Header: http.Header{"Content-Type": {"application/json"}}}
		ss := func(l load) *stats { return attackHTTP(st, l, false) }
		measure(&result{Name: "state-save-sidecar", Group: "state save"}, procs, ss, ss)
		stopAll(procs)
	}

	return report(o, results)
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

// floor starts two bare ReverseProxy processes in a row in front of the app.
func (e *env) floor() ([]*proc, string, error) {
	p2port, err := testproc.FreePort()
	if err != nil {
		return nil, "", err
	}
	p1port, err := testproc.FreePort()
	if err != nil {
		return nil, "", err
	}
	back := "127.0.0.1:" + itoa(p2port)
	front := "127.0.0.1:" + itoa(p1port)
	p2, err := start("floor-2", e.self, nil, "-floor-proxy", back, "http://"+e.appAddr)
	if err != nil {
		return nil, "", err
	}
	p1, err := start("floor-1", e.self, nil, "-floor-proxy", front, "http://"+back)
	if err != nil {
		p2.stop()
		return nil, "", err
	}
	procs := []*proc{p1, p2}
	for _, a := range []string{back, front} {
		if err := testproc.WaitTCP(a, 10*time.Second); err != nil {
			stopAll(procs)
			return nil, "", err
		}
	}
	return procs, front, nil
}

// sidecarAddrs are where a started sidecar listens.
type sidecarAddrs struct{ httpURL, grpcAddr string }

// startSidecar starts one sidecar; appAddr "" means no app.
func (e *env) startSidecar(id, appAddr, protocol, registry string, extra ...string) (*proc, sidecarAddrs, error) {
	hp, err := testproc.FreePort()
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	gp, err := testproc.FreePort()
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	args := []string{"--app-id", id, "--dapr-http-port", itoa(hp), "--dapr-grpc-port", itoa(gp),
		"--dapr-internal-grpc-port", "0", "--enable-metrics=false", "--dapr-listen-addresses", "127.0.0.1",
		"--registry-dir", registry, "--log-level", "warn", "--app-protocol", protocol}
	if appAddr != "" {
		args = append(args, "--app-port", appAddr[strings.LastIndexByte(appAddr, ':')+1:])
	}
	p, err := start("sidecar "+id, e.sidecar, nil, append(args, extra...)...)
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	a := sidecarAddrs{httpURL: "http://127.0.0.1:" + itoa(hp), grpcAddr: "127.0.0.1:" + itoa(gp)}
	if err := waitHealthy(a.httpURL, 15*time.Second); err != nil {
		p.stop()
		return nil, sidecarAddrs{}, fmt.Errorf("%w\n%s", err, p.Out.String())
	}
	return p, a, nil
}

// sidecarPair starts the app's sidecar and a caller's sidecar.
func (e *env) sidecarPair(protocol, appAddr string) ([]*proc, sidecarAddrs, error) {
	reg, err := os.MkdirTemp(e.dir, "registry-")
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	callee, _, err := e.startSidecar("bench-app", appAddr, protocol, reg)
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	caller, a, err := e.startSidecar("bench-client", "", "http", reg)
	if err != nil {
		callee.stop()
		return nil, sidecarAddrs{}, err
	}
	return []*proc{caller, callee}, a, nil
}

func (e *env) startRedis() (*proc, error) {
	port, err := testproc.FreePort()
	if err != nil {
		return nil, err
	}
	e.redis = "127.0.0.1:" + itoa(port)
	p, err := start("redis", e.o.Redis, nil, "--port", itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", e.dir)
	if err != nil {
		return nil, fmt.Errorf("%w (the state paths need redis-server: apt-get install redis-server)", err)
	}
	return p, testproc.WaitTCP(e.redis, 10*time.Second)
}

// stateSidecar starts a sidecar whose statestore is the Redis.
func (e *env) stateSidecar() ([]*proc, sidecarAddrs, error) {
	res := filepath.Join(e.dir, "resources")
	if err := os.MkdirAll(res, 0o755); err != nil {
		return nil, sidecarAddrs{}, err
	}
	if err := os.WriteFile(filepath.Join(res, "statestore.yaml"), resources.RedisYAML("statestore", e.redis), 0o644); err != nil {
		return nil, sidecarAddrs{}, err
	}
	reg, err := os.MkdirTemp(e.dir, "registry-")
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	p, a, err := e.startSidecar("bench-state", "", "http", reg, "--resources-path", res)
	if err != nil {
		return nil, sidecarAddrs{}, err
	}
	return []*proc{p}, a, nil
}

// echoGRPC answers UnaryCall with a payload of the configured size.
type echoGRPC struct {
	testpb.UnimplementedTestServiceServer
	size int
}

func (s echoGRPC) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, s.size)}}, nil
}
