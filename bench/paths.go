package main

import (
	"context"
	"net/http"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
)

// path is one way of making the call, measured once a round.
type path struct {
	name     string
	group    string // its figures are taken minus its group's baseline's, same round and percentile
	baseline bool
	sidecars bool // its processes are sidecars (it can be profiled)
	about    string
	setup    func(e *env, profile bool) (*rig, error)
}

// rig is a path set up for one round.
type rig struct {
	procs   []*proc // the path's own processes: sidecars or floor proxies, not the apps
	drive   func(load) *stats
	profile string // base URL of the first sidecar's pprof, when asked for
	undo    []func()
}

func (r *rig) stop() {
	for i := len(r.undo) - 1; i >= 0; i-- {
		r.undo[i]()
	}
	stopAll(r.procs)
}

// paths in the order a round runs them.
var paths = []path{
	{name: "http-direct", group: "HTTP", baseline: true, about: "the echo app, called directly", setup: httpDirect},
	{name: "http-floor", group: "HTTP", about: "two `httputil.ReverseProxy` processes with their defaults (HTTP/1.1 keep-alive)", setup: httpFloor(false)},
	{name: "http-floor-tls", group: "HTTP", about: "the same two proxies with TLS 1.3 between them, certificates both ways, HTTP/2 over one reused connection: the floor of the mTLS rows", setup: httpFloor(true)},
	{name: "http-sidecars", group: "HTTP", sidecars: true, about: "two sidecars, `--enable-mtls=false` (HTTP/2 cleartext hop)", setup: httpSidecars(pairOptions{})},
	{name: "http-sidecars-2cpu", group: "HTTP", sidecars: true, about: "`http-sidecars` with `--max-procs 2`: each sidecar's Go code on two CPUs, Go's default on this machine, against the sidecar's default of one", setup: httpSidecars(pairOptions{procs: 2})},
	{name: "http-sidecars-gogc100", group: "HTTP", sidecars: true, about: "`http-sidecars` with `GOGC=100`, Go's default, against the sidecar's default of 200", setup: httpSidecars(pairOptions{env: []string{"GOGC=100"}})},
	{name: "http-sidecars-mtls", group: "HTTP", sidecars: true, about: "two sidecars with mutual TLS, the standalone default", setup: httpSidecars(pairOptions{mtls: true})},
	{name: "http-sidecars-traced", group: "HTTP", sidecars: true, about: "two sidecars with mutual TLS and tracing at the calculator's sampling (its runner's `appconfig`: samplingRate 1, Zipkin, to a stand-in collector in a process of its own)", setup: httpSidecars(pairOptions{mtls: true, traced: true})},
	{name: "grpc-direct", group: "gRPC", baseline: true, about: "the gRPC echo app's UnaryCall, directly", setup: grpcDirect},
	{name: "grpc-floor", group: "gRPC", about: "two bare gRPC proxies (grpc-go with its defaults: an unknown-service handler passing messages as raw bytes to a client connection) in front of the gRPC echo app: what proxying a gRPC call costs with grpc-go's own transport and no other work", setup: grpcFloorPath(2, nil)},
	{name: "grpc-invoke", group: "gRPC", sidecars: true, about: "`InvokeService` on the caller sidecar's gRPC API to the HTTP echo app, mTLS off", setup: grpcInvoke(pairOptions{})},
	{name: "grpc-invoke-mtls", group: "gRPC", sidecars: true, about: "the same with mutual TLS", setup: grpcInvoke(pairOptions{mtls: true})},
	{name: "grpc-proxy", group: "gRPC", sidecars: true, about: "UnaryCall with `dapr-app-id` proxied through two sidecars to the gRPC echo app, mTLS off", setup: grpcProxy(pairOptions{})},
	{name: "grpc-floor-1cpu", group: "gRPC", about: "the gRPC floor's two proxies on one CPU each (`GOMAXPROCS=1`), as a sidecar runs by default", setup: grpcFloorPath(2, []string{"GOMAXPROCS=1"})},
	{name: "grpc-sidecar", group: "gRPC", sidecars: true, about: "UnaryCall with `dapr-app-id` naming the app's own id, on its sidecar: the gRPC API's proxy and the app channel without the hop between sidecars, mTLS off", setup: grpcSidecar},
	{name: "grpc-floor-one", group: "gRPC", about: "one of the gRPC floor's proxies alone in front of the gRPC echo app: the floor of `grpc-sidecar`", setup: grpcFloorPath(1, nil)},
	{name: "grpc-proxy-mtls", group: "gRPC", sidecars: true, about: "the same with mutual TLS", setup: grpcProxy(pairOptions{mtls: true})},
	{name: "state-get-direct", group: "state get", baseline: true, about: "go-redis `GET` of a 1 KB string", setup: stateDirect(false)},
	{name: "state-get-store", group: "state get", about: "go-redis through the sidecar's Redis store (`pkg/state/redis`) in the harness: `HMGET key data version`, the command the sidecar sends", setup: stateStore(false)},
	{name: "state-get-floor", group: "state get", about: "`GET /state/floor` on a bare HTTP front to Redis (net/http's server, go-redis `GET`, nothing decoded or checked): the least that reaching Redis through an HTTP process costs", setup: stateFloor(false)},
	{name: "state-get-sidecar", group: "state get", sidecars: true, about: "`GET /v1.0/state/statestore/k` on a sidecar", setup: stateSidecar(false)},
	{name: "state-save-direct", group: "state save", baseline: true, about: "go-redis `SET` of a 1 KB string", setup: stateDirect(true)},
	{name: "state-save-store", group: "state save", about: "go-redis through the Redis store in the harness: `EVALSHA` of its set script on a hash (`HGET` version, `HSET` data, `HINCRBY` version, `PERSIST`), as the sidecar sends", setup: stateStore(true)},
	{name: "state-save-floor", group: "state save", about: "`POST /state/floor` of 1 KB on the bare HTTP front, which stores the body as it is (`SET`)", setup: stateFloor(true)},
	{name: "state-save-sidecar", group: "state save", sidecars: true, about: "`POST /v1.0/state/statestore` of one item on a sidecar", setup: stateSidecar(true)},
	{name: "state-get-direct-embedded", group: "state get, embedded", baseline: true, about: "a read of a 1 KB value from a map under a mutex, in the harness: the embedded state paths' baseline", setup: stateDirectEmbedded(false)},
	{name: "state-get-floor-embedded", group: "state get, embedded", about: "`GET /state/floor` on the bare HTTP front over such a map in its own memory (net/http's server, nothing decoded or checked): the floor of a sidecar on its embedded store", setup: stateFloorEmbedded(false)},
	{name: "state-get-sidecar-embedded", group: "state get, embedded", sidecars: true, about: "`GET /v1.0/state/statestore/k` on a sidecar with no state store Component, so on its embedded in-memory store (`pkg/state/memory`)", setup: stateSidecarEmbedded(false)},
	{name: "state-save-direct-embedded", group: "state save, embedded", baseline: true, about: "a copy of a 1 KB value into that map, in the harness", setup: stateDirectEmbedded(true)},
	{name: "state-save-floor-embedded", group: "state save, embedded", about: "`POST /state/floor` of 1 KB on the bare front over a map, which stores the body as it is", setup: stateFloorEmbedded(true)},
	{name: "state-save-sidecar-embedded", group: "state save, embedded", sidecars: true, about: "`POST /v1.0/state/statestore` of one item on the sidecar on its embedded store", setup: stateSidecarEmbedded(true)},
}

func pathNamed(name string) (path, bool) { return pathIn(paths, name) }

// pathIn is the path of ps named name.
func pathIn(ps []path, name string) (path, bool) {
	for _, p := range ps {
		if p.name == name {
			return p, true
		}
	}
	return path{}, false
}

// pathNames are the names of ps.
func pathNames(ps []path) []string {
	var names []string
	for _, p := range ps {
		names = append(names, p.name)
	}
	return names
}

func sidecarPaths() []string {
	var names []string
	for _, p := range paths {
		if p.sidecars {
			names = append(names, p.name)
		}
	}
	return names
}

// selectPaths is the paths -paths names, with their groups' baselines.
func selectPaths(only string) []path {
	groups := map[string]bool{}
	for _, p := range paths {
		if selected(only, p.name) {
			groups[p.group] = true
		}
	}
	var out []path
	for _, p := range paths {
		if selected(only, p.name) || (p.baseline && groups[p.group]) {
			out = append(out, p)
		}
	}
	return out
}

func httpTarget(e *env, url string) func(load) *stats {
	tgt := vegeta.Target{Method: "POST", URL: url, Body: e.payload, Header: http.Header{"Content-Type": {"application/octet-stream"}}}
	return func(l load) *stats { return attackHTTP(tgt, l, false) }
}

func httpDirect(e *env, _ bool) (*rig, error) {
	return &rig{drive: httpTarget(e, "http://"+e.appAddr+"/echo")}, nil
}

func httpFloor(tls bool) func(*env, bool) (*rig, error) {
	return func(e *env, _ bool) (*rig, error) {
		procs, front, err := e.floor(tls)
		if err != nil {
			return nil, err
		}
		return &rig{procs: procs, drive: httpTarget(e, "http://"+front+"/echo")}, nil
	}
}

func httpSidecars(po pairOptions) func(*env, bool) (*rig, error) {
	return func(e *env, profile bool) (*rig, error) {
		po.profile = profile
		r, caller, err := e.sidecarPair("http", e.appAddr, po)
		if err != nil {
			return nil, err
		}
		r.drive = httpTarget(e, caller.httpURL+"/v1.0/invoke/bench-app/method/echo")
		return r, nil
	}
}

// unary drives UnaryCall on conn, with md as outgoing metadata.
func (e *env) unary(conn *grpc.ClientConn, md metadata.MD) func(load) *stats {
	c := testpb.NewTestServiceClient(conn)
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: e.payload}}
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

func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func grpcDirect(e *env, _ bool) (*rig, error) {
	conn, err := dial(e.grpcAddr)
	if err != nil {
		return nil, err
	}
	return &rig{drive: e.unary(conn, nil), undo: []func(){func() { _ = conn.Close() }}}, nil
}

// grpcFloorPath is n of the gRPC floor's proxies in a row, each with extraEnv
// added to its environment.
func grpcFloorPath(n int, extraEnv []string) func(*env, bool) (*rig, error) {
	return func(e *env, _ bool) (*rig, error) {
		procs, front, err := e.grpcFloor(n, extraEnv)
		if err != nil {
			return nil, err
		}
		conn, err := dial(front)
		if err != nil {
			stopAll(procs)
			return nil, err
		}
		return &rig{procs: procs, drive: e.unary(conn, metadata.Pairs("dapr-app-id", "bench-app")), undo: []func(){func() { _ = conn.Close() }}}, nil
	}
}

// grpcSidecar is one sidecar in front of the gRPC app, called with the
// app's own id: the gRPC API's proxy and the app channel, no hop.
func grpcSidecar(e *env, profile bool) (*rig, error) {
	r, a, err := e.soloSidecar("bench-app", e.grpcAddr, "grpc", profile, "--enable-mtls=false")
	if err != nil {
		return nil, err
	}
	conn, err := dial(a.grpcAddr)
	if err != nil {
		r.stop()
		return nil, err
	}
	r.undo = append(r.undo, func() { _ = conn.Close() })
	r.drive = e.unary(conn, metadata.Pairs("dapr-app-id", "bench-app"))
	return r, nil
}

// grpcPair starts a pair of sidecars for an app speaking protocol at
// appAddr and dials the caller's gRPC API; the rig closes the connection.
func (e *env) grpcPair(protocol, appAddr string, po pairOptions) (*rig, *grpc.ClientConn, error) {
	r, caller, err := e.sidecarPair(protocol, appAddr, po)
	if err != nil {
		return nil, nil, err
	}
	conn, err := dial(caller.grpcAddr)
	if err != nil {
		r.stop()
		return nil, nil, err
	}
	r.undo = append(r.undo, func() { _ = conn.Close() })
	return r, conn, nil
}

// grpcInvoke calls InvokeService. It reaches the gRPC app through
// AppCallback, which the echo app has not, so it calls the HTTP app.
func grpcInvoke(po pairOptions) func(*env, bool) (*rig, error) {
	return func(e *env, profile bool) (*rig, error) {
		po.profile = profile
		r, conn, err := e.grpcPair("http", e.appAddr, po)
		if err != nil {
			return nil, err
		}
		api := runtimev1pb.NewDaprClient(conn)
		inv := &runtimev1pb.InvokeServiceRequest{Id: "bench-app", Message: &commonv1pb.InvokeRequest{
			Method: "echo", Data: &anypb.Any{Value: e.payload}, ContentType: "application/octet-stream",
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_POST},
		}}
		r.drive = func(l load) *stats {
			return attackFunc(func(ctx context.Context) error { _, err := api.InvokeService(ctx, inv); return err }, l)
		}
		return r, nil
	}
}

func grpcProxy(po pairOptions) func(*env, bool) (*rig, error) {
	return func(e *env, profile bool) (*rig, error) {
		po.profile = profile
		r, conn, err := e.grpcPair("grpc", e.grpcAddr, po)
		if err != nil {
			return nil, err
		}
		r.drive = e.unary(conn, metadata.Pairs("dapr-app-id", "bench-app"))
		return r, nil
	}
}

// echoGRPC answers UnaryCall with a payload of the configured size.
type echoGRPC struct {
	testpb.UnimplementedTestServiceServer
	size int
}

func (s echoGRPC) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, s.size)}}, nil
}
