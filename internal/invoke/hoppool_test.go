package invoke

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/pkg/resolver"
)

// countingHop serves h over h2c and counts the connections it accepts.
func countingHop(t *testing.T, h http.Handler, maxHeader int) (addr string, conns *atomic.Int64) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = HopProtocols()
	srv.Config.MaxHeaderBytes = maxHeader
	conns = new(atomic.Int64)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), conns
}

// A peer that resets a call as malformed gets it once: net/http's own
// client would repeat it on new connections until the deadline.
func TestHopPoolNoRetryOnProtocolError(t *testing.T) {
	addr, conns := countingHop(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), 0)
	p := newHopPool(time.Second, nil, false)
	defer p.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// A control character in the query: Go's server resets the stream.
	u := &url.URL{Scheme: "http", Host: addr, Path: "/m", RawQuery: "a=\x01"}
	start := time.Now()
	_, err := p.RoundTrip(newRequest(ctx, "GET", u, http.Header{}, nil, 0))
	if err == nil {
		t.Fatal("a call the peer refused succeeded")
	}
	if kerr := refused(err, http.Header{}, "callee", addr); kerr == nil || kerr.Kind != wire.KindBadRequest {
		t.Errorf("refusal %v is not a bad request: %v", kerr, err)
	}
	if n := conns.Load(); n > 2 {
		t.Errorf("the peer accepted %d connections for one refused call; want at most 2", n)
	}
	if ctx.Err() != nil {
		t.Errorf("the refused call ran until its deadline (%v)", time.Since(start))
	}
}

func TestHopPoolReusesConnections(t *testing.T) {
	addr, conns := countingHop(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}), 0)
	p := newHopPool(time.Second, nil, false)
	defer p.CloseIdleConnections()
	u := &url.URL{Scheme: "http", Host: addr, Path: "/m"}
	for range 20 {
		resp, err := p.RoundTrip(newRequest(context.Background(), "GET", u, http.Header{}, nil, 0))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 calls in a row used %d connections, want 1", n)
	}
	// A connection closed by the peer is replaced, and the call succeeds.
	p.CloseIdleConnections()
	resp, err := p.RoundTrip(newRequest(context.Background(), "GET", u, http.Header{}, nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// The texts that unsent and headerListTooLarge look for are the ones
// net/http produces.
func TestUnsentErrorsKnown(t *testing.T) {
	addr, _ := countingHop(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), 1<<10)
	p := newHopPool(time.Second, nil, false)
	cc, _, err := p.dial(context.Background(), addr, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	u := &url.URL{Scheme: "http", Host: addr, Path: "/m"}
	// A first call, so that the peer's settings (its limit) have arrived.
	resp, err := cc.RoundTrip(newRequest(context.Background(), "GET", u, http.Header{}, nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	big := http.Header{"X-Big": {strings.Repeat("a", 8<<10)}}
	_, err = cc.RoundTrip(newRequest(context.Background(), "GET", u, big, nil, 0))
	if !headerListTooLarge(err) {
		t.Errorf("over the peer's header limit: %v, not recognised", err)
	}
	cc.Close()
	_, err = cc.RoundTrip(newRequest(context.Background(), "GET", u, http.Header{}, nil, 0))
	if !unsent(err) {
		t.Errorf("on a closed connection: %v, not recognised as unsent", err)
	}
}

// Everything that becomes part of the request to the app is checked before
// the hop: the call fails at once as a bad request, and no peer is asked.
func TestInvokeChecksBeforeHop(t *testing.T) {
	addr, conns := countingHop(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), 0)
	caller, err := New(Config{AppID: "caller"}, staticResolver{"callee": {addr}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		call  Call
		field string
	}{
		{"control in query", Call{Verb: "GET", RawQuery: "a=\x01"}, "query string"},
		{"space in query", Call{Verb: "GET", RawQuery: "a=b c"}, "space"},
		{"hash in query", Call{Verb: "GET", RawQuery: "a#b"}, "%23"},
		{"newline in header", Call{Verb: "GET", Header: http.Header{"X-A": {"1\r\nX-B: 2"}}}, `header "X-A"`},
		{"bad header name", Call{Verb: "GET", Header: http.Header{"X A": {"1"}}}, `header name "X A"`},
		{"bad verb", Call{Verb: "GE T"}, "verb"},
	} {
		t.Run(c.name, func(t *testing.T) {
			call := c.call
			call.Target, call.Method = resolver.Target{ID: "callee"}, "m"
			if call.Header == nil {
				call.Header = http.Header{}
			}
			_, err := caller.Invoke(context.Background(), &call)
			var ie *Error
			if !errors.As(err, &ie) || ie.Kind != wire.KindBadRequest || !strings.Contains(err.Error(), c.field) {
				t.Errorf("got %v, want a bad request naming %s", err, c.field)
			}
		})
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("the peer was contacted %d times", n)
	}
}

// A peer that refuses the connection (a pod going away) gets nothing of the
// call, so the call goes to the next address, body and all.
func TestInvokeMovesOnFromAPeerGoingAway(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	gone := ln.Addr().String()
	ln.Close()
	addr, _ := countingHop(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), 0)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}))
	defer app.Close()
	callee, _ := New(Config{AppID: "callee", AppAddress: app.Listener.Addr().String()}, staticResolver{})
	live := hopServer(t, callee)
	_ = addr
	caller, err := New(Config{AppID: "caller"}, staticResolver{"callee": {gone, live}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := caller.Invoke(context.Background(), &Call{Target: resolver.Target{ID: "callee"}, Method: "m", Verb: "POST",
		Header: http.Header{}, Body: io.NopCloser(strings.NewReader("payload")), ContentLength: 7})
	if err != nil {
		t.Fatalf("the call did not move on to the live peer: %v", err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "payload" {
		t.Errorf("the app got %q", b)
	}
}

// staleResolver answers with stale addresses until it is told to forget
// them (a test double of the kubernetes resolver's 5 s cache).
type staleResolver struct {
	stale, fresh []string
	forgot       bool
}

func (r *staleResolver) Resolve(context.Context, resolver.Target) ([]string, error) {
	if r.forgot {
		return r.fresh, nil
	}
	return r.stale, nil
}

func (r *staleResolver) Forget(resolver.Target) { r.forgot = true }

// When every cached address refuses the connection (the pods went away),
// the call asks the resolver again and goes to the new pod.
func TestInvokeResolvesAgainWhenEveryAddressRefuses(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	gone := ln.Addr().String()
	ln.Close()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "new pod") }))
	defer app.Close()
	callee, _ := New(Config{AppID: "callee", AppAddress: app.Listener.Addr().String()}, staticResolver{})
	live := hopServer(t, callee)
	res := &staleResolver{stale: []string{gone}, fresh: []string{live}}
	caller, _ := New(Config{AppID: "caller"}, res)
	resp, err := caller.Invoke(context.Background(), &Call{Target: resolver.Target{ID: "callee"}, Method: "m", Verb: "POST",
		Header: http.Header{}, Body: io.NopCloser(strings.NewReader("x")), ContentLength: 1})
	if err != nil {
		t.Fatalf("the call did not resolve again: %v", err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "new pod" || !res.forgot {
		t.Errorf("got %q, forgot %v", b, res.forgot)
	}
}
