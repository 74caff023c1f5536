package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/emptypb"
)

// InvokeService: a query string in the method is the call's query (the JS
// SDK sends it so), joined with http_extension.querystring; what cannot go
// on the wire is refused at once naming the field, never sent to a peer.
func TestGRPCInvokeQueryAndBadFields(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("httpapp")
	callee := w.sidecar("httpapp", appPort)
	caller := w.sidecar("client", 0)
	callee.waitHealthy(t)
	api := runtimev1pb.NewDaprClient(grpcConn(t, caller))
	ctx := ctxT(t)

	for _, c := range []struct {
		method, query   string
		wantPath, wantQ string
	}{
		{"echo/x?x=1&y=2", "", "/echo/x", "x=1&y=2"},
		{"echo/x?x=1&y=2", "z=3", "/echo/x", "x=1&y=2&z=3"},
		{"echo/x", "z=3", "/echo/x", "z=3"},
		{"echo/x?", "", "/echo/x", ""},
	} {
		out, err := api.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{Id: "httpapp", Message: &commonv1pb.InvokeRequest{
			Method: c.method, HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET, Querystring: c.query}}})
		if err != nil {
			t.Errorf("%q + %q: %v", c.method, c.query, err)
			continue
		}
		var echo struct{ Path, Query string }
		if err := json.Unmarshal(out.GetData().GetValue(), &echo); err != nil || echo.Path != c.wantPath || echo.Query != c.wantQ {
			t.Errorf("%q + %q: the app saw %+v (%v), want path %q query %q", c.method, c.query, echo, err, c.wantPath, c.wantQ)
		}
	}

	// Binary metadata passes, base64 on the wire as gRPC sends it.
	mctx := metadata.AppendToOutgoingContext(ctx, "x-blob-bin", "\x00\x01\xff")
	out, err := api.InvokeService(mctx, &runtimev1pb.InvokeServiceRequest{Id: "httpapp", Message: invokeRequest("echo/bin")})
	if err != nil {
		t.Fatal(err)
	}
	var echo struct{ Headers map[string][]string }
	if err := json.Unmarshal(out.GetData().GetValue(), &echo); err != nil {
		t.Fatal(err)
	}
	if got := echo.Headers["X-Blob-Bin"]; len(got) != 1 || got[0] != "AAH/" {
		t.Errorf("binary metadata reached the app as %q, want base64 AAH/", got)
	}

	for _, c := range []struct {
		name  string
		msg   *commonv1pb.InvokeRequest
		field string
	}{
		{"control character in querystring", &commonv1pb.InvokeRequest{Method: "echo/x",
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET, Querystring: "a=\x01"}}, "http_extension.querystring"},
		{"newline in querystring", &commonv1pb.InvokeRequest{Method: "echo/x",
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET, Querystring: "a=1\r\nx: y"}}, "http_extension.querystring"},
		{"space in the method's query", &commonv1pb.InvokeRequest{Method: "echo/x?a=b c",
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET}}, "message.method"},
		{"control character in content type", &commonv1pb.InvokeRequest{Method: "echo/x", ContentType: "text/plain\x00",
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET}}, "content_type"},
		{"unknown verb", &commonv1pb.InvokeRequest{Method: "echo/x",
			HttpExtension: &commonv1pb.HTTPExtension{Verb: 99}}, "verb"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// No deadline of its own: a call that looped would hang here.
			_, err := api.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{Id: "httpapp", Message: c.msg})
			wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", c.field)
		})
	}
}

// rawGRPC is a hostile gRPC client on one HTTP/2 connection: it opens
// streams with HEADERS frames and sends no message, ignoring the server's
// SETTINGS_MAX_CONCURRENT_STREAMS, and counts how the server answers: with
// RST_STREAM REFUSED_STREAM, or with a status (by gRPC code).
type rawGRPC struct {
	t       *testing.T
	c       net.Conn
	fr      *http2.Framer
	mu      sync.Mutex // a Framer's writes are not safe for concurrent use
	next    uint32     // the next stream id
	pings   chan struct{}
	refused atomic.Int64
	smu     sync.Mutex
	codes   map[codes.Code]int
	msgs    map[codes.Code]string // the last message of each code
}

func dialRawGRPC(t *testing.T, port int) *rawGRPC {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawGRPC{t: t, c: c, fr: http2.NewFramer(c, c), next: 1, pings: make(chan struct{}, 1), codes: map[codes.Code]int{}, msgs: map[codes.Code]string{}}
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go r.read()
	return r
}

func (r *rawGRPC) read() {
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if s := f.PseudoValue("status"); s != "" && f.StreamEnded() {
				n, _ := strconv.Atoi(headerValue(f, "grpc-status"))
				msg, _ := url.PathUnescape(headerValue(f, "grpc-message"))
				r.smu.Lock()
				r.codes[codes.Code(n)]++
				r.msgs[codes.Code(n)] = msg
				r.smu.Unlock()
			}
		case *http2.RSTStreamFrame:
			if f.ErrCode == http2.ErrCodeRefusedStream {
				r.refused.Add(1)
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				r.mu.Lock()
				_ = r.fr.WriteSettingsAck()
				r.mu.Unlock()
			}
		case *http2.PingFrame:
			if f.IsAck() {
				r.pings <- struct{}{}
			} else {
				r.mu.Lock()
				_ = r.fr.WritePing(true, f.Data)
				r.mu.Unlock()
			}
		}
	}
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// open opens n streams to the gRPC method path with the metadata md and no
// message, then waits for the server to have read them all (the answer to a
// PING sent after them: the server answers frames in order).
func (r *rawGRPC) open(n int, path string, md ...string) {
	r.t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for range n {
		hb.Reset()
		fields := []string{":method", "POST", ":scheme", "http", ":authority", "sidecar", ":path", path,
			"content-type", "application/grpc", "te", "trailers"}
		for i := 0; i+1 < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		for i := 0; i+1 < len(md); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: md[i], Value: md[i+1]})
		}
		r.mu.Lock()
		err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: r.next, BlockFragment: hb.Bytes(), EndHeaders: true})
		r.next += 2
		r.mu.Unlock()
		if err != nil {
			r.t.Fatalf("stream %d: %v", r.next/2, err)
		}
	}
	r.mu.Lock()
	err := r.fr.WritePing(false, [8]byte{1})
	r.mu.Unlock()
	if err != nil {
		r.t.Fatal(err)
	}
	select {
	case <-r.pings:
	case <-time.After(30 * time.Second):
		r.t.Fatal("the server did not answer a PING after the streams")
	}
}

// answered returns how many streams were answered with code, and the last
// such answer's message.
func (r *rawGRPC) answered(code codes.Code) (int, string) {
	r.smu.Lock()
	defer r.smu.Unlock()
	return r.codes[code], r.msgs[code]
}

// The attack of a finding: one connection opens 20,000 gRPC streams that
// send headers and no message. The sidecar takes the per-connection bound of
// them (1,000 by default) and refuses the rest at once, so its goroutines
// (two a stream while its request is awaited) and memory stay bounded; and
// it serves other callers meanwhile.
func TestGRPCAPIHeadersOnlyStreams(t *testing.T) {
	w := newWorld(t)
	// The streams are held open for as long as the test looks at them.
	s := w.sidecar("target", 0, "--grpc-first-message-timeout", "1h")
	_, metrics := sidecarPorts(t, s)
	base := goroutines(t, metrics)

	const streams, perConn = 20000, 1000
	c := dialRawGRPC(t, s.grpcPort)
	c.open(streams, "/dapr.proto.runtime.v1.Dapr/GetState")
	during := goroutines(t, metrics)
	rss := peakRSS(t, s.Proc)
	t.Logf("goroutines: %d before, %d with the streams open; %d streams refused; peak RSS %d MiB", base, during, c.refused.Load(), rss>>20)
	if n := c.refused.Load(); n != streams-perConn {
		t.Errorf("the sidecar refused %d of %d streams on one connection; its bound is %d, so %d should be", n, streams, perConn, streams-perConn)
	}
	if during > base+2*perConn+50 {
		t.Errorf("goroutines %d before, %d with %d headers-only streams open: not bounded by the %d streams a connection may have", base, during, streams, perConn)
	}
	if during < base+perConn {
		t.Errorf("the streams hold no goroutines (%d before, %d during): the test did not take hold", base, during)
	}
	if rss > 128<<20 { // unbounded, the 20,000 streams took 240 MiB
		t.Errorf("peak RSS %d MiB with %d headers-only streams on one connection", rss>>20, streams)
	}
	// Meanwhile the sidecar serves others.
	if _, err := runtimev1pb.NewDaprClient(grpcConn(t, s)).GetMetadata(ctxT(t), &runtimev1pb.GetMetadataRequest{}); err != nil {
		t.Errorf("a call beside the attack: %v", err)
	}
}

// Past the per-connection bound a stream is refused (RST_STREAM
// REFUSED_STREAM, which clients retry); past the bound in all, the call ends
// with ResourceExhausted naming the bound. Streams that end give their
// place back.
func TestGRPCAPIStreamBounds(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar("target", 0, "--grpc-max-streams-per-connection", "50", "--grpc-max-streams", "120",
		"--grpc-first-message-timeout", "1h")
	_, metrics := sidecarPorts(t, s)
	base := goroutines(t, metrics)

	var conns []*rawGRPC
	for range 3 {
		c := dialRawGRPC(t, s.grpcPort)
		c.open(100, "/dapr.proto.runtime.v1.Dapr/GetState")
		conns = append(conns, c)
	}
	refused, exhausted := 0, 0
	var msg string
	for _, c := range conns {
		refused += int(c.refused.Load())
		n, m := c.answered(codes.ResourceExhausted)
		exhausted += n
		if m != "" {
			msg = m
		}
	}
	during := goroutines(t, metrics)
	t.Logf("goroutines: %d before, %d with the streams open; %d refused, %d ResourceExhausted (%q)", base, during, refused, exhausted, msg)
	// The first two connections hold 50 streams each and have 50 refused;
	// the third holds the 20 left of the 120 and has the rest answered
	// ResourceExhausted (streams so answered do not count on a connection).
	if refused != 100 {
		t.Errorf("%d streams refused by the connections' bound of 50 each; want 100", refused)
	}
	if exhausted != 80 {
		t.Errorf("%d streams answered ResourceExhausted; want 80 (120 in flight in all)", exhausted)
	}
	for _, p := range []string{"120", "--grpc-max-streams"} {
		if !strings.Contains(msg, p) {
			t.Errorf("the ResourceExhausted message %q does not name %q", msg, p)
		}
	}
	if during > base+2*120+50 {
		t.Errorf("goroutines %d before, %d during: more than the 120 streams in flight hold", base, during)
	}
	// A client that keeps to the bounds is served once the streams end.
	for _, c := range conns {
		c.c.Close()
	}
	api := runtimev1pb.NewDaprClient(grpcConn(t, s))
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err = api.GetMetadata(ctxT(t), &runtimev1pb.GetMetadataRequest{}); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("a call after the streams ended: %v", err)
	}
}

// With an API token, a stream without the right one ends Unauthenticated
// from its headers, before and without any message: a Dapr method and a
// proxied call alike.
func TestGRPCAPITokenBeforeMessage(t *testing.T) {
	w := newWorld(t)
	s := w.sidecarEnv("target", 0, []string{"DAPR_API_TOKEN=s3cret"}, "--grpc-first-message-timeout", "1h")
	conn := grpcConn(t, s)
	for _, c := range []struct {
		method string
		md     []string
	}{
		{"/dapr.proto.runtime.v1.Dapr/GetState", nil},
		{"/dapr.proto.runtime.v1.Dapr/InvokeService", []string{"dapr-api-token", "wrong"}},
		{"/grpc.testing.TestService/FullDuplexCall", []string{"dapr-app-id", "target"}},
		{"/grpc.testing.TestService/FullDuplexCall", []string{"dapr-app-id", "target", "dapr-api-token", "wrong"}},
	} {
		t.Run(c.method, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(ctxT(t), c.md...)
			cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, c.method)
			if err != nil {
				t.Fatal(err)
			}
			// Nothing sent: the answer comes from the headers alone.
			err = cs.RecvMsg(&emptypb.Empty{})
			wantStatus(t, err, codes.Unauthenticated, "invalid api token", "dapr-api-token")
		})
	}
}

// A call to the Dapr service's own methods that sends its headers and no
// request is ended after --grpc-first-message-timeout, naming it; a call
// that sends its request is not, and a proxied stream keeps no deadline:
// it may be idle for longer.
func TestGRPCAPIFirstMessageTimeout(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.grpcApp("grpcapp")
	callee := w.sidecar("grpcapp", appPort, "--app-protocol", "grpc")
	s := w.sidecar("client", 0, "--grpc-first-message-timeout", "1s")
	callee.waitHealthy(t)
	conn := grpcConn(t, s)
	for _, method := range []string{
		"/dapr.proto.runtime.v1.Dapr/GetState",
		"/dapr.proto.runtime.v1.Dapr/SubscribeConfiguration", // server streaming: reads its request first
		"/grpc.health.v1.Health/Check",
	} {
		t.Run(method, func(t *testing.T) {
			cs, err := conn.NewStream(ctxT(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
			if err != nil {
				t.Fatal(err)
			}
			err = cs.RecvMsg(&emptypb.Empty{})
			wantStatus(t, err, codes.DeadlineExceeded, "ERR_MALFORMED_REQUEST", "1s", "--grpc-first-message-timeout")
		})
	}

	ts := testpb.NewTestServiceClient(conn)
	bs, err := ts.FullDuplexCall(metadata.AppendToOutgoingContext(ctxT(t), "dapr-app-id", "grpcapp"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // idle for more than the bound
	if err := bs.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("abc")}}); err != nil {
		t.Fatal(err)
	}
	if m, err := bs.Recv(); err != nil || string(m.GetPayload().GetBody()) != "cba" {
		t.Errorf("a proxied stream idle past the bound: %v %v", m, err)
	}
	if _, err := runtimev1pb.NewDaprClient(conn).GetMetadata(ctxT(t), &runtimev1pb.GetMetadataRequest{}); err != nil {
		t.Errorf("a call that sends its request: %v", err)
	}
}

// rawCodec sends and receives messages as the bytes they are, so a test can
// send what no generated client would.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// A request that is not protobuf of the method's type, or whose string
// field is not UTF-8, is the caller's fault: InvalidArgument naming the
// message type and, where there is one, the field, as HTTP answers 400.
func TestGRPCAPIMalformedMessages(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar("client", 0)
	conn := grpcConn(t, s)
	str := func(num protowire.Number, v string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	msg := func(num protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	for _, c := range []struct {
		name, method string
		body         []byte
		parts        []string
	}{
		{"key not UTF-8", "GetState", append(str(1, "statestore"), str(2, "k\xff")...),
			[]string{"dapr.proto.runtime.v1.GetStateRequest", "field key", "UTF-8"}},
		{"nested key not UTF-8", "SaveState", append(str(1, "statestore"), msg(2, str(1, "\xc3("))...),
			[]string{"dapr.proto.runtime.v1.SaveStateRequest", "field states.key", "UTF-8"}},
		{"method not UTF-8", "InvokeService", append(str(1, "app"), msg(3, str(1, "m\xfe"))...),
			[]string{"dapr.proto.runtime.v1.InvokeServiceRequest", "field message.method", "UTF-8"}},
		{"metadata value not UTF-8", "GetState", append(str(2, "k"), msg(4, append(str(1, "a"), str(2, "\xff")...))...),
			[]string{"dapr.proto.runtime.v1.GetStateRequest", "field metadata.value", "UTF-8"}},
		{"not protobuf", "GetState", []byte("GET /v1.0/state HTTP/1.1\r\n"),
			[]string{"dapr.proto.runtime.v1.GetStateRequest", "not valid protobuf"}},
		{"truncated field", "GetState", []byte{0x12, 0x10, 'k'},
			[]string{"dapr.proto.runtime.v1.GetStateRequest", "field key", "not valid protobuf"}},
		{"health check", "/grpc.health.v1.Health/Check", []byte{0x0a, 0x01, 0xff},
			[]string{"grpc.health.v1.HealthCheckRequest", "field service", "UTF-8"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			method := c.method
			if !strings.HasPrefix(method, "/") {
				method = "/dapr.proto.runtime.v1.Dapr/" + method
			}
			var out []byte
			err := conn.Invoke(ctxT(t), method, &c.body, &out, grpc.ForceCodecV2(rawCodec{}))
			wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", c.parts...)
		})
	}
}
