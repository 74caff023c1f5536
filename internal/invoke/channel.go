package invoke

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// appChannel is how a sidecar reaches its app, chosen once at start from
// --app-protocol: an HTTP app (http, h2c, https) or a gRPC app.
type appChannel interface {
	// call sends c to the app. A gRPC app's error status is an *AppError;
	// a failure to reach the app is an *Error.
	call(ctx context.Context, c *Call) (*http.Response, error)
	close()
}

func newAppChannel(cfg Config) (appChannel, error) {
	if cfg.AppAddress == "" {
		return nil, nil
	}
	app, err := newHTTPApp(cfg, cfg.AppProtocol)
	if err != nil || (cfg.AppProtocol != "grpc" && cfg.AppProtocol != "grpcs") {
		return app, err
	}
	return newGRPCApp(cfg, app)
}

// callApp sends c to this sidecar's app, within --app-max-concurrency.
func (inv *Invoker) callApp(ctx context.Context, c *Call) (*http.Response, error) {
	if inv.app == nil {
		return nil, errorf(wire.KindNoApp, inv.cfg.AppID, "", nil, "app %q has no app port: its sidecar was started without --app-port", inv.cfg.AppID)
	}
	if err := inv.checkAppHealth(); err != nil {
		return nil, err
	}
	release, ierr := inv.acquireApp(ctx)
	if ierr != nil {
		return nil, ierr
	}
	// The app sees its own token or none: never a caller's or a peer's.
	if inv.appToken != nil {
		c.Header[wire.APIToken] = inv.appToken
	} else {
		delete(c.Header, wire.APIToken)
	}
	delete(c.Header, wire.CallKind)
	resp, err := inv.app.call(ctx, c)
	if err != nil {
		release()
		if _, answered := err.(*AppError); answered {
			inv.appReady.set()
		}
		return nil, err
	}
	inv.appReady.set()
	// The slot is the app's until its answer has been read or dropped.
	resp.Body = &onClose{ReadCloser: resp.Body, fn: release}
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
		return nil, errorf(wire.KindAppUnreachable, inv.cfg.AppID, inv.cfg.AppAddress, ctx.Err(),
			"app %q is at its --app-max-concurrency of %d calls and none ended in time", inv.cfg.AppID, cap(inv.appSlots))
	}
}

// httpApp is the channel to an app that speaks HTTP: HTTP/1.1 (http),
// HTTP/2 without TLS (h2c, and gRPC calls proxied to a gRPC app), or TLS
// (https; HTTP/2 only for gRPC calls proxied to a grpcs app).
type httpApp struct {
	appID, addr, protocol, scheme string
	t                             *http.Transport
	rt                            http.RoundTripper // t, wrapped by Config.WrapApp
}

// AppIdleTimeout is how long a connection to the app waits unused before
// the sidecar closes it: under the five seconds after which many app
// servers close an idle keep-alive connection (Node.js's keepAliveTimeout,
// uvicorn's timeout_keep_alive, a Go server's ReadHeaderTimeout on a
// connection that has carried no request yet). A server that closes first
// races the sidecar's next request on that connection, which then fails
// with EOF or a reset: a POST cannot be sent again, as the app may have
// read it. The sidecar closing first loses nothing but a loopback dial.
const AppIdleTimeout = 4 * time.Second

func newHTTPApp(cfg Config, protocol string) (*httpApp, error) {
	a := &httpApp{appID: cfg.AppID, addr: cfg.AppAddress, protocol: protocol, scheme: "http"}
	a.t = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		DisableCompression:  true,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     AppIdleTimeout,
	}
	var p http.Protocols
	switch protocol {
	case "", "http":
		p.SetHTTP1(true)
	case "h2c", "grpc":
		p.SetUnencryptedHTTP2(true)
	case "https", "grpcs":
		p.SetHTTP1(protocol == "https")
		p.SetHTTP2(true)
		a.scheme = "https"
		// Like Dapr, the app's certificate is not verified: the app is on
		// the same host or pod, and its channel is loopback.
		a.t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback app channel
	default:
		return nil, fmt.Errorf("app protocol %q is not supported; use http, h2c, https, grpc or grpcs", protocol)
	}
	a.t.Protocols = &p
	a.rt = a.t
	if cfg.WrapApp != nil {
		a.rt = cfg.WrapApp(a.t)
	}
	return a, nil
}

var teTrailers = []string{"trailers"}

// smallBody is the largest request body of known length that the app
// channel reads before it calls the app, to send it with the headers.
const smallBody = 16 << 10

func (a *httpApp) call(ctx context.Context, c *Call) (*http.Response, error) {
	if c.GRPCProxy && (a.protocol == "http" || a.protocol == "") {
		return nil, errorf(wire.KindBadRequest, a.appID, a.addr, nil,
			"app %q is not a gRPC app: its sidecar runs with --app-protocol http; gRPC calls need --app-protocol grpc or grpcs (or h2c)", a.appID)
	}
	u, err := methodURL(a.scheme, a.addr, c.Method, c.RawQuery)
	if err != nil {
		return nil, errorf(wire.KindBadRequest, a.appID, a.addr, err, "cannot build the call to app %q", a.appID)
	}
	removeHopByHop(c.Header)
	if c.GRPCProxy {
		c.Header["Te"] = teTrailers // gRPC servers require it
	}
	body := c.Body
	switch {
	case body == nil:
	case c.GRPCProxy:
		// The hop's request body gives the end of a unary call in a read
		// of its own; read ahead, so that the message and the end go to
		// the app in one DATA frame and one write.
		body = readAhead(body)
	case 0 < c.ContentLength && c.ContentLength <= smallBody:
		// A small body of known length is read first and goes out with
		// the headers in one write: net/http's HTTP/1.1 client sends the
		// headers of a body it cannot tell is in memory in a write of
		// their own, and the app then wakes twice for one call.
		b := make([]byte, c.ContentLength)
		if _, err := io.ReadFull(body, b); err != nil {
			if errors.Is(err, ErrBodyTooLarge) {
				return nil, errorf(wire.KindBodyTooLarge, a.appID, a.addr, err, "request body is over the limit")
			}
			return nil, errorf(wire.KindBadRequest, a.appID, a.addr, err, "the call's body of %d bytes for app %q could not be read", c.ContentLength, a.appID)
		}
		body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := a.rt.RoundTrip(newRequest(ctx, c.Verb, u, c.Header, body, c.ContentLength))
	if err != nil {
		if errors.Is(err, ErrBodyTooLarge) {
			return nil, errorf(wire.KindBodyTooLarge, a.appID, a.addr, err, "request body is over the limit")
		}
		return nil, errorf(wire.KindAppUnreachable, a.appID, a.addr, err, "app %q does not answer at %s://%s", a.appID, a.scheme, a.addr)
	}
	return resp, nil
}

func (a *httpApp) close() { a.t.CloseIdleConnections() }

// onClose runs fn once when the body is closed.
type onClose struct {
	io.ReadCloser
	fn   func()
	once sync.Once
}

func (b *onClose) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.fn)
	return err
}
