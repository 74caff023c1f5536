package invoke

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tandem-run/tandem/internal/identity"
)

// hopPool is the client side of the internal hop: HTTP/2 with prior
// knowledge over TCP, connections to each peer kept and shared by every call
// to it (each carries up to the peer's MaxConcurrentStreams).
//
// It is built on http.ClientConn rather than http.Transport.RoundTrip so that
// nothing is ever sent twice behind our back: net/http's HTTP/2 client
// silently repeats a request whose stream the peer reset with a protocol
// error, on new connections, until the caller's deadline (tens of thousands
// of connections a second against a peer that refuses the request). Here a
// call goes out once; the one repeat is ours, on a new connection, for a call
// that a connection going away (GOAWAY, a closed idle connection) refused
// before it was sent, and only when it has no body that could have been read.
//
// With an identity every connection is mutual TLS (HTTP/2 over TLS 1.3),
// and connections are kept by address and the peer's expected identity, so
// that a connection made to one app is never used for another.
type hopPool struct {
	t          *http.Transport
	ident      *identity.Source // nil: h2c
	allowPlain bool             // fall back to h2c for a peer that does not speak TLS

	mu    sync.Mutex
	peers map[string]*peerConns
	plain map[*http.ClientConn]bool   // connections made in plaintext by the fallback
	gen   map[*http.ClientConn]uint64 // the certificate generation each was made with
}

type peerConns struct {
	conns   []*http.ClientConn
	dialing *dialing // the dial under way; nil: none
}

// dialing is a dial under way, which calls that find no room wait for.
type dialing struct {
	done chan struct{}
	err  error // set before done is closed
}

func newHopPool(dialTimeout time.Duration, ident *identity.Source, allowPlain bool) *hopPool {
	p := &hopPool{t: newHopTransport(dialTimeout), ident: ident, allowPlain: allowPlain,
		peers: map[string]*peerConns{}, plain: map[*http.ClientConn]bool{}, gen: map[*http.ClientConn]uint64{}}
	if ident != nil {
		dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
		p.t.ForceAttemptHTTP2 = true
		p.t.Protocols.SetHTTP2(true)
		p.t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			want, _ := ctx.Value(wantKey{}).(identity.ID)
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(raw, ident.ClientTLS(want))
			if err := tc.HandshakeContext(ctx); err != nil {
				_ = raw.Close()
				if rh := (tls.RecordHeaderError{}); errors.As(err, &rh) {
					return nil, fmt.Errorf("%w: %v", errNotTLS, err)
				}
				return nil, fmt.Errorf("mutual TLS with %s at %s: %w", want, addr, err)
			}
			return tc, nil
		}
	}
	return p
}

// errNotTLS: the peer answered the TLS handshake with something else (a
// sidecar without mutual TLS).
var errNotTLS = errors.New("the peer does not speak TLS on its internal port: it runs without mutual TLS")

type wantKey struct{}

// withWant returns ctx saying which identity the peer of a call must have.
func withWant(ctx context.Context, id identity.ID) context.Context {
	return context.WithValue(ctx, wantKey{}, id)
}

// key is where the pool keeps the connections of a call: by address, and by
// the identity the peer must have.
func (p *hopPool) key(req *http.Request) string {
	if p.ident == nil {
		return req.URL.Host
	}
	want, _ := req.Context().Value(wantKey{}).(identity.ID)
	return req.URL.Host + "|" + want.String()
}

// RoundTrip sends req on a connection to req.URL.Host.
func (p *hopPool) RoundTrip(req *http.Request) (*http.Response, error) {
	key := p.key(req)
	cc, fresh, err := p.get(req.Context(), key, req.URL.Host)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	plain := p.plain[cc]
	p.mu.Unlock()
	if plain {
		p.ident.CountPlaintext()
	}
	resp, err := cc.RoundTrip(req)
	if err == nil || fresh || !unsent(err) || (req.Body != nil && req.Body != http.NoBody) {
		return resp, err
	}
	// The connection was going away and refused the call unsent: once
	// more on a new connection.
	p.forget(key, cc)
	if cc, _, err = p.dial(req.Context(), key, req.URL.Host, nil); err != nil {
		return nil, err
	}
	return cc.RoundTrip(req)
}

// newConn opens a connection to addr: mutual TLS with an identity (or h2c
// for a peer without TLS, when allowed), else h2c.
func (p *hopPool) newConn(ctx context.Context, addr string) (*http.ClientConn, bool, error) {
	if p.ident == nil {
		cc, err := p.t.NewClientConn(ctx, "http", addr)
		return cc, false, err
	}
	cc, err := p.t.NewClientConn(ctx, "https", addr)
	if err != nil && p.allowPlain && errors.Is(err, errNotTLS) {
		cc, err = p.t.NewClientConn(ctx, "http", addr)
		return cc, true, err
	}
	return cc, false, err
}

// get returns a connection to addr with a stream reserved for one call,
// dialling one when none has room. fresh reports a new connection.
func (p *hopPool) get(ctx context.Context, key, addr string) (cc *http.ClientConn, fresh bool, err error) {
	for {
		p.mu.Lock()
		pc := p.peers[key]
		if pc == nil {
			pc = &peerConns{}
			p.peers[key] = pc
		}
		live := pc.conns[:0]
		for _, c := range pc.conns {
			switch {
			case c.Err() != nil:
				p.drop(c)
			case p.stale(c):
				// Made with a certificate since renewed: no new
				// calls; closed once its calls are done.
				if c.InFlight() == 0 {
					_ = c.Close()
					p.drop(c)
				} else {
					live = append(live, c)
				}
			default:
				live = append(live, c)
			}
		}
		clear(pc.conns[len(live):])
		pc.conns = live
		for _, c := range pc.conns {
			if !p.stale(c) && c.Reserve() == nil {
				p.mu.Unlock()
				return c, false, nil
			}
		}
		if d := pc.dialing; d != nil {
			// Another call is dialling this peer: share its outcome.
			p.mu.Unlock()
			select {
			case <-d.done:
				if d.err != nil && ctx.Err() == nil && !isContextErr(d.err) {
					return nil, false, d.err
				}
				continue
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		}
		d := &dialing{done: make(chan struct{})}
		pc.dialing = d
		p.mu.Unlock()
		return p.dial(ctx, key, addr, d)
	}
}

// dial opens a new connection to addr, adds it to the pool and reserves a
// stream on it. d, when not nil, is the pool's dial under way, ended here.
func (p *hopPool) dial(ctx context.Context, key, addr string, d *dialing) (*http.ClientConn, bool, error) {
	var gen uint64
	if p.ident != nil {
		gen = p.ident.Generation()
	}
	cc, plain, err := p.newConn(ctx, addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	pc := p.peers[key]
	if pc == nil {
		pc = &peerConns{}
		p.peers[key] = pc
	}
	if d != nil {
		d.err = err
		close(d.done)
		if pc.dialing == d {
			pc.dialing = nil
		}
	}
	if err != nil {
		return nil, false, err
	}
	if err := cc.Reserve(); err != nil {
		_ = cc.Close()
		return nil, false, err
	}
	pc.conns = append(pc.conns, cc)
	if plain {
		p.plain[cc] = true
	}
	if p.ident != nil {
		p.gen[cc] = gen
	}
	return cc, true, nil
}

// forget takes cc, a connection going away, out of the pool. It is not
// closed: calls it still carries (a peer that said GOAWAY finishes those)
// end on it, and it closes itself after them.
func (p *hopPool) forget(key string, cc *http.ClientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop(cc)
	if pc := p.peers[key]; pc != nil {
		for i, c := range pc.conns {
			if c == cc {
				pc.conns = append(pc.conns[:i], pc.conns[i+1:]...)
				break
			}
		}
	}
}

// stale reports a TLS connection made with an older certificate than the
// current one. p.mu is held.
func (p *hopPool) stale(c *http.ClientConn) bool {
	return p.ident != nil && !p.plain[c] && p.gen[c] != p.ident.Generation()
}

// drop forgets what the pool knows of c. p.mu is held.
func (p *hopPool) drop(c *http.ClientConn) {
	delete(p.plain, c)
	delete(p.gen, c)
}

// CloseIdleConnections closes every connection with no call in flight.
func (p *hopPool) CloseIdleConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, pc := range p.peers {
		live := pc.conns[:0]
		for _, c := range pc.conns {
			if c.InFlight() == 0 || c.Err() != nil {
				_ = c.Close()
				p.drop(c)
				continue
			}
			live = append(live, c)
		}
		clear(pc.conns[len(live):])
		pc.conns = live
		if len(live) == 0 && pc.dialing == nil {
			delete(p.peers, addr)
		}
	}
}

// The errors of net/http's HTTP/2 client for a call that a connection
// refused before sending any of it; they are not exported, so they are
// known by their text (checked by TestUnsentErrorsKnown).
var unsentTexts = []string{
	"http2: client conn not usable",
	"http2: client conn is closed",
	"http2: client conn could not be established",
	"http2: Transport received Server's graceful shutdown GOAWAY",
	"connection is unavailable", // ClientConn.Reserve on a connection closing
}

func unsent(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		for _, t := range unsentTexts {
			if e.Error() == t {
				return true
			}
		}
	}
	return false
}

// errHeaderListTooLarge is net/http's error for a request whose header list
// is over the limit the peer advertised.
const headerListTooLargeText = "http2: request header list larger than peer's advertised limit"

func headerListTooLarge(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == headerListTooLargeText {
			return true
		}
	}
	return false
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
