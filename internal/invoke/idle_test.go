package invoke

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/pkg/resolver"
)

// closeWatch is a listener whose connections remember who closed them: the
// server (Close before any Read saw the peer's EOF) or the client.
type closeWatch struct {
	net.Listener
	byServer, byClient atomic.Int32
}

func (l *closeWatch) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: c, l: l}, nil
}

type watchedConn struct {
	net.Conn
	l       *closeWatch
	peerEOF atomic.Bool
	once    sync.Once
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if errors.Is(err, io.EOF) {
		c.peerEOF.Store(true)
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.once.Do(func() {
		if c.peerEOF.Load() {
			c.l.byClient.Add(1)
		} else {
			c.l.byServer.Add(1)
		}
	})
	return c.Conn.Close()
}

// TestAppConnectionsClosedBeforeTheAppsKeepAlive: an app server that closes
// a connection after five idle seconds (Node.js's default, and a Go server's
// ReadHeaderTimeout on a connection that carried nothing yet: a burst of
// calls leaves some dialled and unused) never has to: the sidecar closes its
// idle connections first, so none can be closed under a request. Takes 6 s.
func TestAppConnectionsClosedBeforeTheAppsKeepAlive(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	watch := &closeWatch{Listener: ln}
	app := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			time.Sleep(time.Millisecond)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       5 * time.Second,
	}
	go func() { _ = app.Serve(watch) }()
	t.Cleanup(func() { _ = app.Close() })
	callee, err := New(Config{AppID: "callee", AppAddress: ln.Addr().String()}, staticResolver{})
	if err != nil {
		t.Fatal(err)
	}
	caller, err := New(Config{AppID: "caller"}, staticResolver{"callee": {hopServer(t, callee)}})
	if err != nil {
		t.Fatal(err)
	}
	burst := func() {
		t.Helper()
		var wg sync.WaitGroup
		var failed atomic.Int32
		for range 64 {
			wg.Go(func() {
				resp, err := caller.Invoke(context.Background(), &Call{
					Target: resolver.Target{ID: "callee"}, Method: "m", Verb: "POST", Header: http.Header{},
					Body: io.NopCloser(strings.NewReader("x")), ContentLength: 1,
				})
				if err != nil {
					failed.Add(1)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			})
		}
		wg.Wait()
		if n := failed.Load(); n > 0 {
			t.Fatalf("%d of 64 calls failed", n)
		}
	}
	burst()
	time.Sleep(5*time.Second + 600*time.Millisecond)
	burst()
	if s, c := watch.byServer.Load(), watch.byClient.Load(); s > 0 || c == 0 {
		t.Errorf("connections the app closed itself after five idle seconds: %d (the sidecar closed %d): the sidecar kept them longer", s, c)
	}
}
