// Package invoke is service invocation: an app's call to another app by id,
// the hop from this sidecar to the target's sidecar, and the target sidecar's
// call to its app.
//
// The hop is HTTP/2 over cleartext TCP (h2c, prior knowledge) on the internal
// port. HTTP/2 rather than gRPC because an invocation IS an HTTP exchange:
// verb, path, headers, status, trailers and a body of any size map one to one
// onto an HTTP/2 stream, so nothing is re-encoded, bodies stream both ways with
// HTTP/2 flow control bounding memory, server-sent events pass frame by frame,
// and all calls to one peer share a multiplexed connection. gRPC would wrap
// each chunk into a protobuf message and back for no gain. Both API adapters
// (HTTP and gRPC) reach the hop through Invoker.Invoke.
package invoke

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/tandem-run/tandem/internal/identity"
	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/pkg/resolver"
)

// Config is the invocation component's configuration.
type Config struct {
	AppID     string
	Namespace string
	// AppAddress is host:port of the app; empty when the sidecar has no app.
	AppAddress string
	// AppProtocol is "http", "h2c", "https" or "grpc".
	AppProtocol string
	// MaxBodySize limits request bodies of invocations; 0 means no limit.
	MaxBodySize int64
	// InternalAddress is how peers reach this sidecar (for Forwarded "by").
	InternalAddress string
	// DialTimeout bounds connecting to a peer sidecar or the app (default 5s).
	DialTimeout time.Duration
	Logger      *slog.Logger

	// WrapHop and WrapApp, when set, wrap the clients of the hop to peer
	// sidecars and of the app channel (tracing hooks in here).
	WrapHop, WrapApp func(http.RoundTripper) http.RoundTripper
	// AppDialOptions are added to the gRPC channel to a gRPC app.
	AppDialOptions []grpc.DialOption
	// AppToken, when set, goes to this sidecar's own app, and only to it,
	// in the dapr-api-token header (APP_API_TOKEN).
	AppToken string
	// AppMaxConcurrency bounds the calls in flight to the app; more wait
	// for a free slot (or their deadline). 0: no bound.
	AppMaxConcurrency int
	// MaxHopCalls bounds the calls from peers in flight on the internal
	// port, over all connections (each also carries at most
	// HopMaxStreamsPerConn); more are refused at once as overloaded.
	// 0: DefaultMaxHopCalls.
	MaxHopCalls int
	// StallTimeout ends a call from a peer whose answer the peer has not
	// accepted for this long (its flow-control window stays shut). 0: 30s.
	StallTimeout time.Duration
	// Health, when set, checks the app's health (RunHealthChecks): the app
	// is not called while it fails.
	Health *HealthCheck
	// Identity, when set, runs every hop on mutual TLS: calls to peers
	// present its certificate and check that the peer's is the target
	// app's; a caller's app id and namespace come from its verified
	// certificate (Authenticate), never from a header.
	Identity *identity.Source
	// AllowPlaintextPeers lets calls to peers that do not speak TLS fall
	// back to h2c (a rollout window; each such call is counted).
	AllowPlaintextPeers bool
}

// DefaultMaxHopCalls is the default bound of calls from peers in flight.
const DefaultMaxHopCalls = 4096

// Caller makes invocations: an *Invoker, or middleware around one (such as
// resiliency policies). The API adapters take a Caller.
type Caller interface {
	Invoke(ctx context.Context, c *Call) (*http.Response, error)
}

var _ Caller = (*Invoker)(nil)

// Invoker carries out invocations. It is safe for concurrent use.
type Invoker struct {
	cfg      Config
	resolver resolver.Resolver
	pool     *hopPool
	hop      http.RoundTripper // to peer sidecars: pool, wrapped by Config.WrapHop
	app      appChannel        // nil: no app
	appReady readiness
	health   *appHealth // nil: no health checks
	draining chan struct{}
	// Header values set on every call, made once: nothing changes them.
	callerID, callerNS, appToken []string
	appSlots                     chan struct{} // nil: no bound
	hopCalls                     atomic.Int64  // calls from peers in flight
}

// New returns an Invoker that finds peers with r.
func New(cfg Config, r resolver.Resolver) (*Invoker, error) {
	if err := resolver.ValidateID(cfg.AppID); err != nil {
		return nil, err
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.MaxHopCalls <= 0 {
		cfg.MaxHopCalls = DefaultMaxHopCalls
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	app, err := newAppChannel(cfg)
	if err != nil {
		return nil, err
	}
	inv := &Invoker{
		cfg:      cfg,
		resolver: r,
		pool:     newHopPool(cfg.DialTimeout, cfg.Identity, cfg.AllowPlaintextPeers),
		app:      app,
		draining: make(chan struct{}),
		callerID: []string{cfg.AppID},
		callerNS: []string{cfg.Namespace},
	}
	inv.hop = inv.pool
	if cfg.WrapHop != nil {
		inv.hop = cfg.WrapHop(inv.pool)
	}
	if cfg.AppToken != "" {
		inv.appToken = []string{cfg.AppToken}
	}
	if cfg.AppMaxConcurrency > 0 {
		inv.appSlots = make(chan struct{}, cfg.AppMaxConcurrency)
	}
	if app == nil {
		inv.appReady.set()
	}
	if cfg.Health != nil && app != nil {
		if inv.health, err = newAppHealth(*cfg.Health, app, cfg.Logger); err != nil {
			return nil, err
		}
	}
	return inv, nil
}

// Call is one invocation as an app asked for it.
type Call struct {
	Target resolver.Target
	// Method is the escaped method path without its leading slash, as
	// returned by ParseMethod.
	Method   string
	Verb     string
	RawQuery string
	// Header is the app's request header. Invoke takes ownership of it.
	Header http.Header
	// Body is the request body, or nil. Invoke closes it.
	Body          io.ReadCloser
	ContentLength int64 // -1 when unknown
	RemoteAddr    string
	Host          string
	// GRPCProxy marks a gRPC call proxied from the gRPC port (dapr-app-id
	// metadata); access control has no verb for it. Only the gRPC adapter
	// sets it: a Content-Type an app sends makes no call a gRPC one.
	GRPCProxy bool
}

// Invoke sends c to the target app and returns its response, whose body
// streams from the app; the caller must close it. A non-2xx status of an
// HTTP app is a response, not an error; a gRPC app's error status is an
// *AppError; every other error is an *Error. Invoke owns c.Body and closes
// it (see withBody).
func (inv *Invoker) Invoke(ctx context.Context, c *Call) (*http.Response, error) {
	return withBody(c, func() (*http.Response, error) { return inv.invoke(ctx, c) })
}

func (inv *Invoker) invoke(ctx context.Context, c *Call) (*http.Response, error) {
	if inv.isDraining() {
		return nil, errorf(wire.KindShuttingDown, c.Target.ID, "", nil, "sidecar %q is shutting down and accepts no new calls", inv.cfg.AppID)
	}
	if err := inv.checkSize(c); err != nil {
		return nil, err
	}
	if err := checkCall(c); err != nil {
		return nil, errorf(wire.KindBadRequest, c.Target.ID, "", nil, "%v", err)
	}
	h := c.Header
	removeHopByHop(h)
	delete(h, wire.APIToken)
	delete(h, wire.AppID)
	setForwarded(h, c.RemoteAddr, c.Host, inv.cfg.InternalAddress)
	h[wire.CallerAppID] = inv.callerID
	h[wire.CalleeAppID] = []string{c.Target.ID}
	wire.SetCallKind(h, c.GRPCProxy)
	if inv.cfg.Namespace != "" {
		h[wire.CallerNamespace] = inv.callerNS
	} else {
		delete(h, wire.CallerNamespace)
	}

	if c.Target.ID == inv.cfg.AppID && (c.Target.Namespace == "" || c.Target.Namespace == inv.cfg.Namespace) {
		// An app calling itself needs no hop.
		return inv.callApp(ctx, c)
	}
	addrs, err := inv.resolver.Resolve(ctx, c.Target)
	if err != nil {
		if errors.Is(err, resolver.ErrNotFound) {
			return nil, errorf(wire.KindNotFound, c.Target.ID, "", err, "cannot invoke app %q", c.Target.String())
		}
		return nil, errorf(wire.KindUnreachable, c.Target.ID, "", err, "cannot resolve app %q", c.Target.String())
	}
	resp, err := inv.sendHop(ctx, c, addrs)
	if f, ok := inv.resolver.(resolver.Forgetter); ok && err != nil && allRefused(err) && bodyUntouched(c) {
		// Every address the resolver had refused the connection: its
		// answer is stale (pods went away). Once more with a fresh one.
		f.Forget(c.Target)
		if fresh, rerr := inv.resolver.Resolve(ctx, c.Target); rerr == nil && !sameAddrs(fresh, addrs) {
			inv.cfg.Logger.Debug("peer addresses refused; resolved again", "app", c.Target.ID, "stale", addrs, "fresh", fresh)
			return inv.sendHop(ctx, c, fresh)
		}
	}
	return resp, err
}

// allRefused reports a hop error whose last attempt could not connect.
func allRefused(err error) bool {
	var ie *Error
	var op *net.OpError
	return errors.As(err, &ie) && ie.Kind == wire.KindUnreachable && errors.As(err, &op) && op.Op == "dial"
}

func sameAddrs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[string]bool, len(a))
	for _, x := range a {
		seen[x] = true
	}
	for _, x := range b {
		if !seen[x] {
			return false
		}
	}
	return true
}

// withBody runs call, which owns c.Body: the one place where a call's request
// body is closed. The transports get the body behind keepOpen, so that their
// closing it does nothing (a try on another address still has it); it is
// closed here when the call fails, or when its answer is closed.
func withBody(c *Call, call func() (*http.Response, error)) (*http.Response, error) {
	owned := c.Body
	if owned == nil {
		return call()
	}
	c.Body = &keepOpen{r: owned}
	resp, err := call()
	if err != nil {
		_ = owned.Close()
		return nil, err
	}
	resp.Body = &onClose{ReadCloser: resp.Body, fn: func() { _ = owned.Close() }}
	return resp, nil
}

// sendHop sends the call to the first peer sidecar that accepts a connection.
// Another address is tried only when nothing of the body can have been sent.
func (inv *Invoker) sendHop(ctx context.Context, c *Call, addrs []string) (*http.Response, error) {
	var lastErr error
	var lastAddr string
	for i, addr := range addrs {
		req, err := inv.newHopRequest(ctx, c, addr)
		if err != nil {
			return nil, errorf(wire.KindBadRequest, c.Target.ID, addr, err, "cannot build the call to app %q", c.Target.ID)
		}
		resp, err := inv.hop.RoundTrip(req)
		if err == nil {
			if kind, msg, failed := wire.ReadError(resp); failed {
				return nil, &Error{Kind: kind, AppID: c.Target.ID, Addr: addr, Msg: msg}
			}
			if resp.Header.Get(wire.GRPCStatus) != "" {
				return nil, appError(resp, c.Target.ID)
			}
			return resp, nil
		}
		lastErr, lastAddr = err, addr
		if errors.Is(err, ErrBodyTooLarge) {
			return nil, errorf(wire.KindBodyTooLarge, c.Target.ID, addr, err, "request body is over the limit of %d bytes", inv.cfg.MaxBodySize)
		}
		if kerr := refused(err, c.Header, c.Target.ID, addr); kerr != nil {
			return nil, kerr
		}
		if ctx.Err() != nil || !canRetry(c, err) || i == len(addrs)-1 {
			break
		}
		inv.cfg.Logger.Debug("peer sidecar unreachable, trying the next", "app", c.Target.ID, "addr", addr, "err", err)
	}
	if ctx.Err() != nil {
		return nil, errorf(wire.KindUnreachable, c.Target.ID, lastAddr, ctx.Err(), "call to app %q via its sidecar at %s was cancelled", c.Target.ID, lastAddr)
	}
	return nil, errorf(wire.KindUnreachable, c.Target.ID, lastAddr, lastErr, "cannot reach the sidecar of app %q at %s", c.Target.ID, lastAddr)
}

func (inv *Invoker) newHopRequest(ctx context.Context, c *Call, addr string) (*http.Request, error) {
	if id := inv.cfg.Identity; id != nil {
		ctx = withWant(ctx, identity.ID{TrustDomain: id.ID().TrustDomain, AppID: c.Target.ID,
			Namespace: cmp.Or(c.Target.Namespace, inv.cfg.Namespace, identity.DefaultNamespace)})
	}
	u, err := methodURL("http", addr, c.Method, c.RawQuery)
	if err != nil {
		return nil, err
	}
	return newRequest(ctx, c.Verb, u, c.Header, c.Body, c.ContentLength), nil
}

// methodURL builds the URL of a call from its parts, without parsing a
// string: the method path is already checked (ParseMethod), and building it
// directly saves the parser's allocations on every call.
func methodURL(scheme, host, method, rawQuery string) (*url.URL, error) {
	u := &url.URL{Scheme: scheme, Host: host, Path: "/" + method, RawQuery: rawQuery}
	if strings.IndexByte(method, '%') >= 0 {
		p, err := url.PathUnescape(method)
		if err != nil {
			return nil, err
		}
		u.Path, u.RawPath = "/"+p, "/"+method
	}
	return u, nil
}

// newRequest is http.NewRequestWithContext for a URL already built. body
// nil or length 0 means no body.
func newRequest(ctx context.Context, verb string, u *url.URL, h http.Header, body io.ReadCloser, length int64) *http.Request {
	if body == nil || length == 0 {
		body, length = nil, 0
	}
	req := &http.Request{
		Method:        verb,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          body,
		ContentLength: length,
		Host:          u.Host,
	}
	return req.WithContext(ctx)
}

// checkCall checks what becomes part of the request to the app before it
// goes anywhere: verb, query and header fields as they go on the wire.
func checkCall(c *Call) error {
	if err := checkVerb(c.Verb); err != nil {
		return err
	}
	if err := CheckQuery(c.RawQuery); err != nil {
		return err
	}
	return CheckHeader(c.Header, "header")
}

// refused turns the peer's refusal of a call, as opposed to a failure to
// reach it, into an error of its own kind: these say nothing about the
// peer's health, so they do not count against circuit breakers.
func refused(err error, h http.Header, appID, addr string) *Error {
	if identity.IsPlaintextRefusal(err) {
		return errorf(wire.KindMTLS, appID, addr, nil,
			"the sidecar of app %q at %s requires mutual TLS, and this one runs without it (--enable-mtls=false): turn it on, or run the peer with --allow-plaintext-peers for a rollout", appID, addr)
	}
	size := headerListSize(h)
	// A peer's limit is known once its settings have arrived; before that,
	// on a new connection, it refuses a header list over it as malformed
	// (or as too large for its decoder). Every sidecar accepts at least
	// HopHeaderSlack, so below that such an error means something else.
	msg := err.Error()
	if headerListTooLarge(err) || (size > HopHeaderSlack && (strings.Contains(msg, "PROTOCOL_ERROR") || strings.Contains(msg, "COMPRESSION_ERROR"))) {
		return errorf(wire.KindHeadersTooLarge, appID, addr, nil,
			"the call's headers (%d bytes) are larger than the sidecar of app %q at %s accepts (its --read-buffer-size); send fewer or smaller headers", size, appID, addr)
	}
	if strings.Contains(err.Error(), "PROTOCOL_ERROR") {
		return errorf(wire.KindBadRequest, appID, addr, err, "the sidecar of app %q at %s refused the call as malformed", appID, addr)
	}
	return nil
}

// headerListSize is the size of h as HTTP/2 counts it (RFC 9113, 6.5.2).
func headerListSize(h http.Header) int {
	n := 0
	for k, vv := range h {
		for _, v := range vv {
			n += len(k) + len(v) + 32
		}
	}
	return n
}

// canRetry reports whether a failed attempt may be repeated on another
// address: only when the connection itself failed and no body was sent.
func canRetry(c *Call, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return c.Body == nil || c.ContentLength == 0 || bodyUntouched(c)
	}
	// A peer going away (a pod being deleted) refused the call before any
	// of it was sent: another address can take it, body and all.
	return unsent(err) && bodyUntouched(c)
}

// checkSize enforces MaxBodySize: at once when the length is known, while
// streaming otherwise.
func (inv *Invoker) checkSize(c *Call) error {
	limit := inv.cfg.MaxBodySize
	if limit <= 0 || c.Body == nil {
		return nil
	}
	if c.ContentLength > limit {
		return errorf(wire.KindBodyTooLarge, c.Target.ID, "", ErrBodyTooLarge, "request body of %d bytes is over the limit of %d bytes", c.ContentLength, limit)
	}
	c.Body = &limitedBody{rc: c.Body, left: limit}
	return nil
}

// StartDrain makes the Invoker refuse new calls; calls under way go on.
func (inv *Invoker) StartDrain() {
	select {
	case <-inv.draining:
	default:
		close(inv.draining)
	}
}

func (inv *Invoker) isDraining() bool {
	select {
	case <-inv.draining:
		return true
	default:
		return false
	}
}

// Close releases idle connections.
func (inv *Invoker) Close() {
	inv.pool.CloseIdleConnections()
	if inv.app != nil {
		inv.app.close()
	}
}

// limitedBody fails the read that passes the limit with ErrBodyTooLarge.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, ErrBodyTooLarge
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.rc.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return 0, ErrBodyTooLarge
	}
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }

// keepOpen is a call's body as the transports see it: their Close does
// nothing, as the body is withBody's to close.
// It notes whether anything was read, so that a call refused unsent can go
// to another peer.
type keepOpen struct {
	r    io.Reader
	read atomic.Bool
}

func (b *keepOpen) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.r.Read(p)
}

func (*keepOpen) Close() error { return nil }

// bodyUntouched reports whether nothing of c's body has been read.
func bodyUntouched(c *Call) bool {
	switch b := c.Body.(type) {
	case nil:
		return true
	case *keepOpen:
		return !b.read.Load()
	case *limitedBody:
		k, ok := b.rc.(*keepOpen)
		return ok && !k.read.Load()
	}
	return false
}
