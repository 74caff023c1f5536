package identity

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// plaintextRefused is the debug text of the GOAWAY a plaintext peer gets.
const plaintextRefused = "this sidecar requires mutual TLS on its internal port; the calling sidecar runs without it (--enable-mtls=false): turn it on, or let this sidecar accept plaintext peers for a rollout (--allow-plaintext-peers)"

// Listener wraps the internal port's listener: a connection that opens with
// a TLS handshake is served TLS with cfg; any other is plaintext, handed on
// only when allowPlaintext, else told why in an HTTP/2 GOAWAY
// (INADEQUATE_SECURITY) and closed before any request is read. The first
// byte is read in the background, within the handshake timeout, so a slow
// client holds up no other.
func Listener(ln net.Listener, cfg *tls.Config, allowPlaintext bool, handshakeTimeout time.Duration) net.Listener {
	l := &listener{Listener: ln, cfg: cfg, plain: allowPlaintext, timeout: handshakeTimeout,
		conns: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

type listener struct {
	net.Listener
	cfg     *tls.Config
	plain   bool
	timeout time.Duration

	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	err       error // of the underlying Accept, once conns is closed
}

func (l *listener) acceptLoop() {
	defer close(l.conns)
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			l.err = err
			return
		}
		go l.classify(c)
	}
}

// classify peeks at the first byte: 0x16 opens a TLS handshake record.
func (l *listener) classify(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(l.timeout))
	br := bufio.NewReaderSize(c, 64)
	first, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		_ = c.Close()
		return
	}
	pc := &peekedConn{Conn: c, r: br}
	var out net.Conn = pc
	switch {
	case first[0] == 0x16:
		out = tls.Server(pc, l.cfg)
	case !l.plain:
		refusePlaintext(pc)
		return
	default:
		out = &PlaintextConn{pc}
	}
	select {
	case l.conns <- out:
	case <-l.done:
		_ = out.Close()
	}
}

// refusePlaintext answers a plaintext HTTP/2 client with SETTINGS and a
// GOAWAY saying why, and closes the connection once the client has read
// them: the write side first, then what the client sent is drained until it
// hangs up (closing with unread data would reset the connection, and the
// client would never see the GOAWAY).
func refusePlaintext(c *peekedConn) {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	fr := http2.NewFramer(c, nil)
	_ = fr.WriteSettings()
	_ = fr.WriteGoAway(0, http2.ErrCodeInadequateSecurity, []byte(plaintextRefused))
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, c)
	_ = c.Close()
}

func (l *listener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
	return c, nil
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// peekedConn reads what was peeked first.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// PlaintextConn marks a connection a peer made without TLS (accepted only
// with --allow-plaintext-peers).
type PlaintextConn struct{ net.Conn }

// IsPlaintextRefusal reports whether err is a peer's refusal of a plaintext
// connection (its GOAWAY).
func IsPlaintextRefusal(err error) bool {
	return err != nil && strings.Contains(err.Error(), "INADEQUATE_SECURITY")
}
