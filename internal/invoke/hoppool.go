package invoke

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
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
type hopPool struct {
	t *http.Transport

	mu    sync.Mutex
	peers map[string]*peerConns
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

func newHopPool(dialTimeout time.Duration) *hopPool {
	return &hopPool{t: newHopTransport(dialTimeout), peers: map[string]*peerConns{}}
}

// RoundTrip sends req on a connection to req.URL.Host.
func (p *hopPool) RoundTrip(req *http.Request) (*http.Response, error) {
	addr := req.URL.Host
	cc, fresh, err := p.get(req.Context(), addr)
	if err != nil {
		return nil, err
	}
	resp, err := cc.RoundTrip(req)
	if err == nil || fresh || !unsent(err) || (req.Body != nil && req.Body != http.NoBody) {
		return resp, err
	}
	// The connection was going away and refused the call unsent: once
	// more on a new connection.
	p.forget(addr, cc)
	if cc, _, err = p.dial(req.Context(), addr, nil); err != nil {
		return nil, err
	}
	return cc.RoundTrip(req)
}

// get returns a connection to addr with a stream reserved for one call,
// dialling one when none has room. fresh reports a new connection.
func (p *hopPool) get(ctx context.Context, addr string) (cc *http.ClientConn, fresh bool, err error) {
	for {
		p.mu.Lock()
		pc := p.peers[addr]
		if pc == nil {
			pc = &peerConns{}
			p.peers[addr] = pc
		}
		live := pc.conns[:0]
		for _, c := range pc.conns {
			if c.Err() == nil {
				live = append(live, c)
			}
		}
		clear(pc.conns[len(live):])
		pc.conns = live
		for _, c := range pc.conns {
			if c.Reserve() == nil {
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
		return p.dial(ctx, addr, d)
	}
}

// dial opens a new connection to addr, adds it to the pool and reserves a
// stream on it. d, when not nil, is the pool's dial under way, ended here.
func (p *hopPool) dial(ctx context.Context, addr string, d *dialing) (*http.ClientConn, bool, error) {
	cc, err := p.t.NewClientConn(ctx, "http", addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	pc := p.peers[addr]
	if pc == nil {
		pc = &peerConns{}
		p.peers[addr] = pc
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
	return cc, true, nil
}

func (p *hopPool) forget(addr string, cc *http.ClientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc := p.peers[addr]; pc != nil {
		for i, c := range pc.conns {
			if c == cc {
				pc.conns = append(pc.conns[:i], pc.conns[i+1:]...)
				break
			}
		}
	}
	_ = cc.Close()
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
	"http2: Transport received Server's graceful shutdown GOAWAY",
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
