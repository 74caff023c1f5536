package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// ports of a sidecar, from its metadata.
func sidecarPorts(t *testing.T, s *sidecar) (internal, metrics int) {
	t.Helper()
	_, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	var m struct {
		Ports struct {
			Internal int `json:"internal"`
			Metrics  int `json:"metrics"`
		} `json:"ports"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Ports.Internal == 0 || m.Ports.Metrics == 0 {
		t.Fatalf("metadata has no internal or metrics port: %s", b)
	}
	return m.Ports.Internal, m.Ports.Metrics
}

// goroutines reads go_goroutines from a sidecar's metrics.
func goroutines(t *testing.T, metricsPort int) int {
	t.Helper()
	_, b := do(t, "GET", "http://127.0.0.1:"+strconv.Itoa(metricsPort)+"/metrics", nil, nil)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("no go_goroutines in the metrics")
	return 0
}

// The internal port cannot be used to exhaust the sidecar: one connection
// that opens 1,000 streams and never opens its flow-control window gets at
// most the per-connection bound of them, and those end after the stall
// timeout while the connection stays open, giving back their goroutines
// and app connections.
func TestInternalPortZeroWindowStreams(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("target")
	// Plaintext, so that this client can speak to the internal port at
	// all; with mutual TLS a peer needs a certificate first (mtls_test.go).
	callee := w.sidecar("target", appPort, "--internal-stall-timeout", "2s", "--enable-mtls=false")
	callee.waitHealthy(t)
	internal, metrics := sidecarPorts(t, callee)
	base := goroutines(t, metrics)

	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(internal))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	var answered, reset atomic.Int64
	var writeMu sync.Mutex // a Framer's writes are not safe for concurrent use
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.HeadersFrame:
				answered.Add(1)
			case *http2.RSTStreamFrame:
				reset.Add(1)
			case *http2.SettingsFrame:
				if !f.IsAck() {
					writeMu.Lock()
					_ = fr.WriteSettingsAck()
					writeMu.Unlock()
				}
			}
		}
	}()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	const streams = 1000
	for i := range streams {
		hb.Reset()
		for _, f := range [][2]string{
			{":method", "GET"}, {":scheme", "http"}, {":authority", "x"},
			{":path", "/download?n=1048576"},
			{"dapr-callee-app-id", "target"}, {"dapr-caller-app-id", "evil"},
		} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		writeMu.Lock()
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
		writeMu.Unlock()
		if err != nil {
			break // the sidecar may hang up on a peer that breaks its limits
		}
	}
	for wait := time.Now().Add(10 * time.Second); answered.Load()+reset.Load() < streams && time.Now().Before(wait); {
		time.Sleep(50 * time.Millisecond)
	}
	during := goroutines(t, metrics)
	if n := answered.Load(); n > 250 || n == 0 {
		t.Errorf("the sidecar took %d streams on one connection; its bound is 250", n)
	}
	if during < base+int(answered.Load()) {
		t.Fatalf("the streams hold no goroutines (%d before, %d during): the test did not take hold", base, during)
	}
	t.Logf("goroutines: %d before, %d with the streams open; %d streams answered, %d reset", base, during, answered.Load(), reset.Load())

	// After the stall timeout the streams are gone, the connection open.
	deadline := time.Now().Add(15 * time.Second)
	var after int
	for time.Now().Before(deadline) {
		if after = goroutines(t, metrics); after <= base+20 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if after > base+20 {
		t.Errorf("goroutines %d before, %d with the streams open, %d after the stall timeout: the stalled streams were not ended", base, during, after)
	}
	if _, err := c.Write(nil); err != nil {
		t.Errorf("the connection was closed: %v", err)
	}
	// And the sidecar serves its peers.
	front := w.sidecar("front", 0, "--enable-mtls=false")
	if resp, b := do(t, "GET", front.url+"/v1.0/invoke/target/method/echo/ok", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a call after the attack: %d %s", resp.StatusCode, b)
	}
}

// A stream that waits for its app (an idle event stream) is not stalled:
// it outlives the stall timeout.
func TestInternalPortIdleStreamIsNotStalled(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("backend")
	callee := w.sidecar("backend", appPort, "--internal-stall-timeout", "1s")
	caller := w.sidecar("front", 0)
	callee.waitHealthy(t)
	req, _ := http.NewRequestWithContext(ctxT(t), "GET", caller.url+"/v1.0/invoke/backend/method/sse?n=2", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if ev := readEvent(t, r); !strings.Contains(ev, "data: event 0") {
		t.Fatalf("first event %q", ev)
	}
	time.Sleep(2500 * time.Millisecond) // idle for more than the stall timeout
	if resp, _ := do(t, "GET", caller.url+"/v1.0/invoke/backend/method/release", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("release: %d", resp.StatusCode)
	}
	if ev := readEvent(t, r); !strings.Contains(ev, "data: event 1") {
		t.Fatalf("second event %q", ev)
	}
}

// Header limits: what the API port accepts fits through the hop; a peer
// whose limit is smaller refuses with a 431 naming the size, not a 500 that
// says it cannot be reached; the gRPC API answers ResourceExhausted.
func TestHeaderLimits(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("target")
	callee := w.sidecar("target", appPort)
	small := w.sidecar("small", appPort, "--read-buffer-size", "8Ki")
	caller := w.sidecar("front", 0)
	callee.waitHealthy(t)
	small.waitHealthy(t)

	// Just under the default 64 KiB: through two sidecars to the app.
	big := http.Header{"X-Big": {strings.Repeat("a", 60<<10)}}
	resp, b := do(t, "GET", caller.url+"/v1.0/invoke/target/method/echo/x", nil, big)
	if resp.StatusCode != 200 || !strings.Contains(string(b), strings.Repeat("a", 60<<10)) {
		t.Errorf("a 60 KiB header: %d %.200s", resp.StatusCode, b)
	}
	// A peer with a smaller limit.
	for range 2 { // a new connection, then one that knows the peer's limit
		resp, b = do(t, "GET", caller.url+"/v1.0/invoke/small/method/echo/x", nil, big)
		if resp.StatusCode != 431 || !strings.Contains(string(b), "--read-buffer-size") || !strings.Contains(string(b), "bytes") {
			t.Errorf("over the peer's limit: %d %.300s, want 431 naming the size and the flag", resp.StatusCode, b)
		}
	}
	if resp, b := do(t, "GET", caller.url+"/v1.0/invoke/small/method/echo/x", nil, nil); resp.StatusCode != 200 {
		t.Errorf("a small call to the same peer: %d %s", resp.StatusCode, b)
	}

	// gRPC: metadata over the limit.
	api := runtimev1pb.NewDaprClient(grpcConn(t, caller))
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-big", strings.Repeat("a", 70<<10))
	_, err := api.GetMetadata(ctx, &runtimev1pb.GetMetadataRequest{})
	wantStatus(t, err, codes.ResourceExhausted, "ERR_MALFORMED_REQUEST", "--read-buffer-size")
}
