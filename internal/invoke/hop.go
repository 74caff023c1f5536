package invoke

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// newHopTransport returns the client side of the internal hop: HTTP/2 with
// prior knowledge over TCP, one multiplexed connection per peer, reused.
func newHopTransport(dialTimeout time.Duration) *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{
		Protocols:          &p,
		DialContext:        (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		DisableCompression: true, // bodies pass as they are
		IdleConnTimeout:    90 * time.Second,
		HTTP2: &http.HTTP2Config{
			// Room for a few frames in flight per stream keeps a 1 GiB
			// transfer fast while its memory stays bounded.
			MaxReceiveBufferPerStream:     1 << 20,
			MaxReceiveBufferPerConnection: 8 << 20,
			PingTimeout:                   15 * time.Second,
			SendPingTimeout:               30 * time.Second,
		},
	}
}

// HopProtocols are the protocols the internal port serves: h2c for peers, and
// HTTP/1.1 so that plain tools (curl) can reach it for diagnostics.
func HopProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// HopHeaderSlack is what the internal port accepts over the API's header
// limit (--read-buffer-size): the headers the caller's sidecar adds (caller
// id, Forwarded, trace context). No sidecar's internal port accepts less.
const HopHeaderSlack = 16 << 10

// HopMaxStreamsPerConn is how many calls one connection to the internal
// port carries at once; callers open more connections for more.
const HopMaxStreamsPerConn = 250

// HopHTTP2Config is the server side of the flow-control settings.
func HopHTTP2Config() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxReceiveBufferPerStream:     1 << 20,
		MaxReceiveBufferPerConnection: 8 << 20,
		MaxConcurrentStreams:          HopMaxStreamsPerConn,
	}
}

// HopHandler serves the internal port: calls from peer sidecars, forwarded to
// this sidecar's app.
func (inv *Invoker) HopHandler() http.Handler {
	return http.HandlerFunc(inv.serveHop)
}

func (inv *Invoker) serveHop(w http.ResponseWriter, r *http.Request) {
	if callee := r.Header.Get(HeaderCalleeAppID); callee != inv.cfg.AppID {
		writeHopError(w, http.StatusNotFound, KindWrongTarget,
			fmt.Sprintf("the sidecar at %s serves app %q, not %q; the resolver's answer is stale", inv.cfg.InternalAddress, inv.cfg.AppID, callee))
		return
	}
	if inv.isDraining() {
		writeHopError(w, http.StatusServiceUnavailable, KindShuttingDown,
			fmt.Sprintf("the sidecar of app %q is shutting down and accepts no new calls", inv.cfg.AppID))
		return
	}
	if n := inv.hopCalls.Add(1); n > int64(inv.cfg.MaxHopCalls) {
		inv.hopCalls.Add(-1)
		writeHopError(w, http.StatusServiceUnavailable, KindOverloaded,
			fmt.Sprintf("the sidecar of app %q has %d calls from peers in flight, its limit; try again later", inv.cfg.AppID, inv.cfg.MaxHopCalls))
		return
	}
	defer inv.hopCalls.Add(-1)
	method, err := ParseMethod(strings.TrimPrefix(r.URL.EscapedPath(), "/"))
	if err != nil {
		writeHopError(w, http.StatusBadRequest, KindBadRequest, err.Error())
		return
	}
	body := r.Body
	if r.ContentLength == 0 {
		body = nil
	}
	resp, ierr := inv.callApp(r.Context(), r.Method, method, r.URL.RawQuery, r.Header, body, r.ContentLength)
	if ierr != nil {
		writeHopError(w, http.StatusBadGateway, ierr.Kind, ierr.Error())
		return
	}
	defer resp.Body.Close()
	if err := writeResponse(w, resp, inv.cfg.StallTimeout); err != nil {
		inv.cfg.Logger.Debug("answer to a peer cut short", "app", inv.cfg.AppID, "err", err)
	}
}

// WriteHopError answers a peer sidecar with an error of this sidecar (not of
// the app), which the peer turns into an *Error of that kind.
func WriteHopError(w http.ResponseWriter, status int, kind Kind, msg string) {
	writeHopError(w, status, kind, msg)
}

func writeHopError(w http.ResponseWriter, status int, kind Kind, msg string) {
	h := w.Header()
	h.Set(HeaderHopError, string(kind))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

var teTrailers = []string{"trailers"}

// callApp sends the call to this sidecar's app.
func (inv *Invoker) callApp(ctx context.Context, verb, method, rawQuery string, h http.Header, body io.ReadCloser, contentLength int64) (*http.Response, *Error) {
	if inv.cfg.AppAddress == "" {
		closeBody(body)
		return nil, errorf(KindNoApp, inv.cfg.AppID, "", nil, "app %q has no app port: its sidecar was started without --app-port", inv.cfg.AppID)
	}
	release, ierr := inv.acquireApp(ctx)
	if ierr != nil {
		closeBody(body)
		return nil, ierr
	}
	resp, ierr := inv.sendToApp(ctx, verb, method, rawQuery, h, body, contentLength)
	if ierr != nil || resp == nil {
		release()
		return resp, ierr
	}
	// The slot is the app's until its answer has been read or dropped.
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
	return resp, nil
}

// acquireApp takes a slot of --app-max-concurrency, waiting for one while
// ctx lasts; release gives it back (once).
func (inv *Invoker) acquireApp(ctx context.Context) (release func(), _ *Error) {
	if inv.appSlots == nil {
		return func() {}, nil
	}
	select {
	case inv.appSlots <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-inv.appSlots }) }, nil
	case <-ctx.Done():
		return nil, errorf(KindAppUnreachable, inv.cfg.AppID, inv.cfg.AppAddress, ctx.Err(),
			"app %q is at its --app-max-concurrency of %d calls and none ended in time", inv.cfg.AppID, cap(inv.appSlots))
	}
}

// releasingBody gives the app's slot back when the answer is closed.
type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

// sendToApp makes the call to the app over its protocol.
func (inv *Invoker) sendToApp(ctx context.Context, verb, method, rawQuery string, h http.Header, body io.ReadCloser, contentLength int64) (*http.Response, *Error) {
	// The app sees its own token or none: never a caller's or a peer's.
	if inv.appToken != nil {
		h[HeaderAPIToken] = inv.appToken
	} else {
		delete(h, HeaderAPIToken)
	}
	grpcCall := IsGRPCProxy(h)
	delete(h, HeaderCallKind)
	switch {
	case inv.grpcApp != nil && !grpcCall:
		return inv.onInvoke(ctx, verb, method, rawQuery, h, body)
	case grpcCall && (inv.cfg.AppProtocol == "http" || inv.cfg.AppProtocol == ""):
		closeBody(body)
		return nil, errorf(KindBadRequest, inv.cfg.AppID, inv.cfg.AppAddress, nil,
			"app %q is not a gRPC app: its sidecar runs with --app-protocol http; gRPC calls need --app-protocol grpc (or h2c)", inv.cfg.AppID)
	}
	scheme := "http"
	if inv.cfg.AppProtocol == "https" {
		scheme = "https"
	}
	u, err := methodURL(scheme, inv.cfg.AppAddress, method, rawQuery)
	if err != nil {
		closeBody(body)
		return nil, errorf(KindBadRequest, inv.cfg.AppID, inv.cfg.AppAddress, err, "cannot build the call to app %q", inv.cfg.AppID)
	}
	removeHopByHop(h)
	if grpcCall {
		h["Te"] = teTrailers // gRPC servers require it
	}
	if body == nil {
		contentLength = 0
	}
	req := newRequest(ctx, verb, u, h, body, contentLength)
	if body != nil && contentLength == 0 {
		closeBody(body) // a known empty body is sent as none
	}
	resp, err := inv.app.RoundTrip(req)
	if err != nil {
		if errors.Is(err, ErrBodyTooLarge) {
			return nil, errorf(KindBodyTooLarge, inv.cfg.AppID, inv.cfg.AppAddress, err, "request body is over the limit")
		}
		return nil, errorf(KindAppUnreachable, inv.cfg.AppID, inv.cfg.AppAddress, err,
			"app %q does not answer at %s://%s", inv.cfg.AppID, scheme, inv.cfg.AppAddress)
	}
	inv.appReady.set()
	return resp, nil
}

// newAppTransport returns the client for the local app channel.
func newAppTransport(protocol string, dialTimeout time.Duration) (*http.Transport, error) {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		DisableCompression:  true,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	var p http.Protocols
	switch protocol {
	case "", "http":
		p.SetHTTP1(true)
	case "h2c", "grpc":
		p.SetUnencryptedHTTP2(true)
	case "https":
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		// Like Dapr, the app's certificate is not verified: the app is on
		// the same host or pod, and its channel is loopback.
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback app channel
	default:
		return nil, fmt.Errorf("app protocol %q is not supported; use http, h2c, https or grpc", protocol)
	}
	t.Protocols = &p
	return t, nil
}
