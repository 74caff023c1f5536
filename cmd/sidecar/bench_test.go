package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	grpcmd "google.golang.org/grpc/metadata"

	"github.com/tandem-run/tandem/internal/api"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// BenchmarkInvoke measures one invocation through two in-process sidecars
// (HTTP API, h2c hop, app channel) to an app, with tracing off and with
// every call sampled and exported to a Zipkin endpoint. The difference of
// the two is what tracing costs per call:
//
//	go test -run '^$' -bench Invoke -benchmem ./cmd/sidecar
func BenchmarkInvoke(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1024)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(body)
	}))
	defer app.Close()
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer collector.Close()
	conf := filepath.Join(b.TempDir(), "tracing.yaml")
	if err := os.WriteFile(conf, resources.ZipkinYAML("tracing", collector.URL+"/api/v2/spans"), 0o644); err != nil {
		b.Fatal(err)
	}
	_, appPort, _ := net.SplitHostPort(app.Listener.Addr().String())

	for _, traced := range []bool{false, true} {
		b.Run(map[bool]string{false: "untraced", true: "traced"}[traced], func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			reg := b.TempDir()
			var extra []string
			if traced {
				extra = []string{"--config", conf}
			}
			callee := startInProcess(b, ctx, reg, append([]string{"--app-id", "bench-app", "--app-port", appPort}, extra...))
			caller := startInProcess(b, ctx, reg, append([]string{"--app-id", "bench-client"}, extra...))
			_ = callee
			url := "http://" + caller + "/v1.0/invoke/bench-app/method/echo"
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
			call := func() error {
				resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(payload))
				if err != nil {
					return err
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n != int64(len(payload)) {
					return fmt.Errorf("status %d, %d bytes", resp.StatusCode, n)
				}
				return nil
			}
			if err := call(); err != nil { // warm the connections
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := call(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// startInProcess builds a sidecar in this process with the binary's own
// builder, serves it, and returns its HTTP API address once it answers.
func startInProcess(b testing.TB, ctx context.Context, registry string, args []string) string {
	b.Helper()
	return "127.0.0.1:" + strconv.Itoa(startPorts(b, ctx, registry, args).HTTP)
}

// startPorts is startInProcess returning every port the sidecar serves.
func startPorts(b testing.TB, ctx context.Context, registry string, args []string) api.Ports {
	b.Helper()
	args = append(args, "--dapr-http-port", "0", "--dapr-grpc-port", "0", "--dapr-internal-grpc-port", "0",
		"--enable-metrics=false", "--dapr-listen-addresses", "127.0.0.1", "--registry-dir", registry, "--log-level", "error")
	o, err := parseOptions(args, func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	s, err := newSidecar(ctx, o)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx) }()
	b.Cleanup(func() { <-done })
	addr := "127.0.0.1:" + strconv.Itoa(s.ports.HTTP)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/v1.0/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return s.ports
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("in-process sidecar %v did not become healthy", args)
	return api.Ports{}
}

// BenchmarkGRPCProxy measures one unary call of an app's own gRPC service,
// made with dapr-app-id on the caller sidecar's gRPC API and proxied through
// two in-process sidecars to a gRPC app (1 KiB each way):
//
//	go test -run '^$' -bench GRPCProxy -benchmem -cpu 1 ./cmd/sidecar
func BenchmarkGRPCProxy(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	app := grpc.NewServer()
	testpb.RegisterTestServiceServer(app, echoService{})
	go func() { _ = app.Serve(ln) }()
	defer app.Stop()
	_, appPort, _ := net.SplitHostPort(ln.Addr().String())

	for _, mtls := range []bool{false, true} {
		b.Run(map[bool]string{false: "plaintext", true: "mtls"}[mtls], func(b *testing.B) {
			var extra []string
			if !mtls {
				extra = []string{"--enable-mtls=false"}
			}
			benchGRPCProxy(b, appPort, extra)
		})
	}
}

// benchGRPCProxy is BenchmarkGRPCProxy through two sidecars started with
// extra arguments.
func benchGRPCProxy(b *testing.B, appPort string, extra []string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := b.TempDir()
	startPorts(b, ctx, reg, append([]string{"--app-id", "bench-app", "--app-port", appPort, "--app-protocol", "grpc"}, extra...))
	caller := startPorts(b, ctx, reg, append([]string{"--app-id", "bench-client"}, extra...))
	conn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(caller.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)
	callCtx := grpcmd.AppendToOutgoingContext(ctx, "dapr-app-id", "bench-app")
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: bytes.Repeat([]byte("x"), 1024)}}
	call := func() error {
		resp, err := client.UnaryCall(callCtx, req)
		if err != nil {
			return err
		}
		if n := len(resp.GetPayload().GetBody()); n != 1024 {
			return fmt.Errorf("answer of %d bytes, want 1024", n)
		}
		return nil
	}
	if err := call(); err != nil { // warm the connections
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
}

// echoService answers UnaryCall with the request's payload.
type echoService struct {
	testpb.UnimplementedTestServiceServer
}

func (echoService) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: in.GetPayload()}, nil
}

// BenchmarkState measures one state save of one item of 1 KiB, and one get
// of it, through an in-process sidecar's HTTP API, on the embedded store
// and on a redis-server (the client counted too, as the process makes it):
//
//	go test -run '^$' -bench State -benchmem ./cmd/sidecar
func BenchmarkState(b *testing.B) {
	value := `"` + strings.Repeat("x", 1022) + `"`
	body := []byte(`[{"key":"k","value":` + value + `}]`)
	rs := redisserver.Start(b)
	redisDir := b.TempDir()
	if err := os.WriteFile(filepath.Join(redisDir, "statestore.yaml"), resources.RedisYAML("statestore", rs.Addr), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, store := range []struct{ name, resources string }{{"embedded", b.TempDir()}, {"redis", redisDir}} {
		ctx, cancel := context.WithCancel(context.Background())
		addr := startInProcess(b, ctx, b.TempDir(), []string{"--app-id", "bench-state", "--resources-path", store.resources})
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
		save := func() error {
			resp, err := client.Post("http://"+addr+"/v1.0/state/statestore", "application/json", bytes.NewReader(body))
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				return fmt.Errorf("save: status %d", resp.StatusCode)
			}
			return nil
		}
		get := func() error {
			resp, err := client.Get("http://" + addr + "/v1.0/state/statestore/k")
			if err != nil {
				return err
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || n != int64(len(value)) {
				return fmt.Errorf("get: status %d, %d bytes", resp.StatusCode, n)
			}
			return nil
		}
		if err := save(); err != nil {
			b.Fatal(err)
		}
		for _, op := range []struct {
			name string
			call func() error
		}{{"save", save}, {"get", get}} {
			b.Run(store.name+"/"+op.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := op.call(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		cancel()
	}
}
