package invoke

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tandem-run/tandem/internal/identity"
	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/pkg/resolver"
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

// HopProtocols are the protocols the internal port serves: HTTP/2 over
// mutual TLS or h2c for peers, and HTTP/1.1 so that plain tools (curl) can
// reach it for diagnostics.
func HopProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
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

// HopListener buffers the reads of the internal port's plaintext (h2c)
// connections. The HTTP/2 server reads each frame's 9-byte header and then
// its payload straight from the connection: four reads, four system calls,
// for a call's HEADERS and DATA frames. Through a buffer one read takes what
// has arrived, usually the whole call. (TLS connections buffer already.)
func HopListener(ln net.Listener) net.Listener { return bufferedListener{ln} }

type bufferedListener struct{ net.Listener }

func (l bufferedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, hopReadBuffer)}, nil
}

// hopReadBuffer holds a few calls' frames; a larger read (a big body's
// DATA) bypasses it.
const hopReadBuffer = 8 << 10

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// HopHandler serves the internal port: calls from peer sidecars, forwarded to
// this sidecar's app.
func (inv *Invoker) HopHandler() http.Handler {
	return http.HandlerFunc(inv.serveHop)
}

func (inv *Invoker) serveHop(w http.ResponseWriter, r *http.Request) {
	if callee := r.Header.Get(wire.CalleeAppID); callee != inv.cfg.AppID {
		wire.WriteError(w, http.StatusNotFound, wire.KindWrongTarget,
			fmt.Sprintf("the sidecar at %s serves app %q, not %q; the resolver's answer is stale", inv.cfg.InternalAddress, inv.cfg.AppID, callee))
		return
	}
	if inv.isDraining() {
		wire.WriteError(w, http.StatusServiceUnavailable, wire.KindShuttingDown,
			fmt.Sprintf("the sidecar of app %q is shutting down and accepts no new calls", inv.cfg.AppID))
		return
	}
	if n := inv.hopCalls.Add(1); n > int64(inv.cfg.MaxHopCalls) {
		inv.hopCalls.Add(-1)
		wire.WriteError(w, http.StatusServiceUnavailable, wire.KindOverloaded,
			fmt.Sprintf("the sidecar of app %q has %d calls from peers in flight, its limit; try again later", inv.cfg.AppID, inv.cfg.MaxHopCalls))
		return
	}
	defer inv.hopCalls.Add(-1)
	method, err := ParseMethod(strings.TrimPrefix(r.URL.EscapedPath(), "/"))
	if err != nil {
		wire.WriteError(w, http.StatusBadRequest, wire.KindBadRequest, err.Error())
		return
	}
	c := &Call{
		Target:        resolver.Target{ID: inv.cfg.AppID, Namespace: inv.cfg.Namespace},
		Method:        method,
		Verb:          r.Method,
		RawQuery:      r.URL.RawQuery,
		Header:        r.Header,
		Body:          r.Body,
		ContentLength: r.ContentLength,
		GRPCProxy:     wire.IsGRPCProxy(r.Header),
	}
	if r.ContentLength == 0 {
		c.Body = nil
	}
	resp, err := withBody(c, func() (*http.Response, error) { return inv.callApp(r.Context(), c) })
	if err != nil {
		var ae *AppError
		var ie *Error
		switch {
		case errors.As(err, &ae):
			writeAppError(w, ae)
		case errors.As(err, &ie):
			wire.WriteError(w, http.StatusBadGateway, ie.Kind, ie.Error())
		default:
			wire.WriteError(w, http.StatusBadGateway, wire.KindAppUnreachable, err.Error())
		}
		return
	}
	defer resp.Body.Close()
	if err := writeResponse(w, resp, inv.cfg.StallTimeout, r.ProtoMajor == 2); err != nil {
		inv.cfg.Logger.Debug("answer to a peer cut short", "app", inv.cfg.AppID, "err", err)
	}
}

// Authenticate wraps the internal port's handler (before access control):
// with an identity, the caller's app id and namespace are those of its
// verified certificate, whatever headers came on the wire, and its identity
// is in the request's context. A plaintext call (accepted only with
// --allow-plaintext-peers) is counted and has no identity: the app id and
// namespace its sidecar sent are taken out of the request, so neither access
// control nor the app can take them for the caller's, and the request's
// context marks it unverified (identity.Unverified). Without an identity,
// next is returned as it is.
func (inv *Invoker) Authenticate(next http.Handler) http.Handler {
	src := inv.cfg.Identity
	if src == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			src.CountPlaintext()
			claimed := r.Header.Get(wire.CallerAppID)
			delete(r.Header, wire.CallerAppID)
			delete(r.Header, wire.CallerNamespace)
			next.ServeHTTP(w, r.WithContext(identity.NewUnverifiedContext(r.Context(), claimed)))
			return
		}
		if len(r.TLS.PeerCertificates) == 0 {
			wire.WriteError(w, http.StatusForbidden, wire.KindPermissionDenied, "the caller presented no certificate")
			return
		}
		id, err := identity.FromCert(r.TLS.PeerCertificates[0])
		if err != nil {
			wire.WriteError(w, http.StatusForbidden, wire.KindPermissionDenied, "the caller's certificate: "+err.Error())
			return
		}
		r.Header[wire.CallerAppID] = []string{id.AppID}
		if inv.cfg.Namespace == "" && id.Namespace == identity.DefaultNamespace {
			delete(r.Header, wire.CallerNamespace) // standalone, as without mutual TLS
		} else {
			r.Header[wire.CallerNamespace] = []string{id.Namespace}
		}
		next.ServeHTTP(w, r.WithContext(identity.NewContext(r.Context(), id)))
	})
}
