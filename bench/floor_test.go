package main

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFloorTLS runs the TLS floor's two proxies in this process: a call
// through them reaches the app, and their hop is TLS 1.3 with HTTP/2 and a
// certificate asked of the client.
func TestFloorTLS(t *testing.T) {
	app := httptest.NewServer(echoApp(64))
	defer app.Close()
	certs := t.TempDir()
	if err := floorCerts(certs); err != nil {
		t.Fatal(err)
	}
	serve := func(listenScheme, target string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv, _, err := newFloorProxy(listenScheme+ln.Addr().String(), target, certs)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = serveFloor(srv, ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		return ln.Addr().String()
	}
	back := serve("https://", app.URL)
	front := serve("http://", "https://"+back)

	resp, err := http.Post("http://"+front+"/echo", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) != 64 {
		t.Fatalf("through the floor: %s, %d bytes", resp.Status, len(body))
	}

	// The front's own transport, as it calls the back.
	srv, _, err := newFloorProxy("http://127.0.0.1:0", "https://"+back, certs)
	if err != nil {
		t.Fatal(err)
	}
	tr := srv.Handler.(*httputil.ReverseProxy).Transport.(*http.Transport)
	defer tr.CloseIdleConnections()
	resp, err = (&http.Client{Transport: tr}).Get("https://" + back + "/echo")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("the hop: %s, TLS %+v; want HTTP/2 over TLS 1.3", resp.Proto, resp.TLS)
	}

	anon := tr.TLSClientConfig.Clone()
	anon.Certificates = nil
	anon.ClientSessionCache = nil // a resumed session would carry the certificate
	tr2 := &http.Transport{TLSClientConfig: anon, ForceAttemptHTTP2: true}
	defer tr2.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: tr2}).Get("https://" + back + "/echo"); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate got %s", resp.Status)
	}
}

func TestFloorProxyArguments(t *testing.T) {
	for _, args := range [][]string{
		{"127.0.0.1:1", "http://127.0.0.1:2"},
		{"http://127.0.0.1:1", "ftp://127.0.0.1:2"},
		{"https://127.0.0.1:1", "http://127.0.0.1:2"},
	} {
		if _, _, err := newFloorProxy(args[0], args[1], ""); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// TestFloorProcess reads the address a floor process announces, and fails
// clearly on one that exits or says something else first.
func TestFloorProcess(t *testing.T) {
	e := &env{self: "/bin/sh"}
	p, addr, err := e.floorProcess("ok", nil, "-c", "echo listening on 127.0.0.1:4321; exec sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	p.stop()
	if addr != "127.0.0.1:4321" {
		t.Errorf("address %q, want 127.0.0.1:4321", addr)
	}
	if _, _, err := e.floorProcess("exits", nil, "-c", "echo bad flag >&2; exit 2"); err == nil || !strings.Contains(err.Error(), "bad flag") {
		t.Errorf("a process that exits: %v, want an error with its output", err)
	}
	if _, _, err := e.floorProcess("other", nil, "-c", "echo something else; exec sleep 30"); err == nil || !strings.Contains(err.Error(), "something else") {
		t.Errorf("a process that says something else: %v, want an error with its output", err)
	}
}

// TestGRPCFloorChain starts the gRPC floor's proxies in a row: each is
// given the next one's address as its target (the last, the app's), and
// the environment it is asked for. The stand-in proxy announces its
// target with "+N" appended, N its GOMAXPROCS, so the returned address
// spells out the chain.
func TestGRPCFloorChain(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	dir := t.TempDir()
	self := filepath.Join(dir, "proxy")
	script := "#!/bin/sh\n[ \"$1\" = -grpc-floor-proxy ] && [ \"$2\" = 127.0.0.1:0 ] || exit 2\necho \"listening on $3+$GOMAXPROCS\"\nexec sleep 30\n"
	if err := os.WriteFile(self, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env{self: self, grpcAddr: "app"}
	for _, c := range []struct {
		n    int
		env  []string
		want string
	}{
		{1, nil, "app+"},
		{2, []string{"GOMAXPROCS=1"}, "app+1+1"},
	} {
		procs, addr, err := e.grpcFloor(c.n, c.env)
		if err != nil {
			t.Fatal(err)
		}
		stopAll(procs)
		if len(procs) != c.n || addr != c.want {
			t.Errorf("grpcFloor(%d, %q): %d processes at %q, want %d at %q", c.n, c.env, len(procs), addr, c.n, c.want)
		}
	}
}
