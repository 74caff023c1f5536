package invoke

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/pkg/resolver"
)

// staticResolver maps app ids to fixed addresses.
type staticResolver map[string][]string

func (s staticResolver) Resolve(_ context.Context, t resolver.Target) ([]string, error) {
	if a, ok := s[t.ID]; ok {
		return a, nil
	}
	return nil, resolver.ErrNotFound
}

// hopServer serves inv's internal port over h2c in the test.
func hopServer(t *testing.T, inv *Invoker) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(inv.HopHandler())
	srv.Config.Protocols = HopProtocols()
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func newPair(t *testing.T, app http.Handler) (caller *Invoker) {
	t.Helper()
	appSrv := httptest.NewServer(app)
	t.Cleanup(appSrv.Close)
	callee, err := New(Config{AppID: "callee", AppAddress: appSrv.Listener.Addr().String()}, staticResolver{})
	if err != nil {
		t.Fatal(err)
	}
	addr := hopServer(t, callee)
	caller, err = New(Config{AppID: "caller"}, staticResolver{"callee": {addr}})
	if err != nil {
		t.Fatal(err)
	}
	return caller
}

func TestInvokeThroughHop(t *testing.T) {
	caller := newPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get(wire.CallerAppID)+" "+string(b))
		w.WriteHeader(http.StatusAccepted)
	}))
	resp, err := caller.Invoke(context.Background(), &Call{
		Target: resolver.Target{ID: "callee"}, Method: "a/b", Verb: "PUT", RawQuery: "q=1",
		Header: http.Header{wire.CallerAppID: {"forged"}}, Body: io.NopCloser(strings.NewReader("xyz")), ContentLength: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Seen") != "PUT /a/b?q=1 caller xyz" {
		t.Errorf("got %d %q", resp.StatusCode, resp.Header.Get("X-Seen"))
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("hop used HTTP/%d, want HTTP/2", resp.ProtoMajor)
	}
}

func TestInvokeErrorKinds(t *testing.T) {
	// A callee whose app port has nothing listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	deadApp := ln.Addr().String()
	ln.Close()
	noApp, _ := New(Config{AppID: "noapp"}, staticResolver{})
	dead, _ := New(Config{AppID: "dead", AppAddress: deadApp}, staticResolver{})
	other, _ := New(Config{AppID: "other"}, staticResolver{})
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPeer := ln2.Addr().String()
	ln2.Close()
	caller, _ := New(Config{AppID: "caller", MaxBodySize: 10}, staticResolver{
		"noapp":  {hopServer(t, noApp)},
		"dead":   {hopServer(t, dead)},
		"wrong":  {hopServer(t, other)},
		"closed": {closedPeer},
	})
	cases := []struct {
		target string
		body   string
		want   wire.Kind
		msg    string
	}{
		{"missing", "", wire.KindNotFound, "missing"},
		{"noapp", "", wire.KindNoApp, "--app-port"},
		{"dead", "", wire.KindAppUnreachable, deadApp},
		{"wrong", "", wire.KindWrongTarget, "serves app \"other\""},
		{"closed", "", wire.KindUnreachable, closedPeer},
		{"dead", strings.Repeat("x", 11), wire.KindBodyTooLarge, "limit"},
	}
	for _, c := range cases {
		t.Run(c.target+string(c.want), func(t *testing.T) {
			call := &Call{Target: resolver.Target{ID: c.target}, Method: "m", Verb: "POST", Header: http.Header{}}
			if c.body != "" {
				call.Body, call.ContentLength = io.NopCloser(strings.NewReader(c.body)), int64(len(c.body))
			}
			_, err := caller.Invoke(context.Background(), call)
			var ie *Error
			if !errors.As(err, &ie) || ie.Kind != c.want || !strings.Contains(ie.Error(), c.msg) {
				t.Errorf("got %v (%#v), want kind %s mentioning %q", err, ie, c.want, c.msg)
			}
		})
	}
}

func TestDrainRefusesNewCalls(t *testing.T) {
	caller := newPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	caller.StartDrain()
	_, err := caller.Invoke(context.Background(), &Call{Target: resolver.Target{ID: "callee"}, Method: "m", Verb: "GET", Header: http.Header{}})
	var ie *Error
	if !errors.As(err, &ie) || ie.Kind != wire.KindShuttingDown {
		t.Errorf("got %v, want shutting-down", err)
	}
}
