package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tandem-run/tandem/internal/testutil/clistandin"
	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// unixClient is an HTTP client whose every connection goes to sock.
func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

// waitUnix waits until sock accepts a connection.
func waitUnix(t *testing.T, sock string) {
	t.Helper()
	deadline := time.Now().Add(listenWait)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnixDomainSockets: with --unix-domain-socket, the HTTP and gRPC APIs
// listen on dapr-<app-id>-http.socket and dapr-<app-id>-grpc.socket in that
// folder instead of their ports, as daprd's; the CLI's list reads the
// metadata there; a socket a killed sidecar left is replaced, one in use is
// an error, and a clean stop removes them.
func TestUnixDomainSockets(t *testing.T) {
	w := newWorld(t)
	pt := proc.For(t)
	dir := t.TempDir()
	httpSock, grpcSock := filepath.Join(dir, "dapr-udsapp-http.socket"), filepath.Join(dir, "dapr-udsapp-grpc.socket")
	// A socket file nothing answers on, as a killed sidecar leaves it.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: httpSock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	httpPort := pt.FreePort()
	args := []string{"--app-id", "udsapp", "--unix-domain-socket", dir, "--dapr-http-port", itoa(httpPort), "--dapr-grpc-port", "0",
		"--dapr-internal-grpc-port", "0", "--metrics-port", "0", "--registry-dir", w.registry}
	s := pt.Start("sidecar udsapp", sidecarBin, nil, args...)
	waitUnix(t, httpSock)
	waitUnix(t, grpcSock)

	resp, err := unixClient(httpSock).Get("http://unix/v1.0/metadata")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var m daprdMetadata
	if err := json.Unmarshal(b, &m); err != nil || m.ID != "udsapp" || m.Ports["http"] != 0 || m.Ports["grpc"] != 0 {
		t.Errorf("metadata over the socket: %s", b)
	}
	if c, err := net.Dial("tcp", "127.0.0.1:"+itoa(httpPort)); err == nil {
		c.Close()
		t.Errorf("the HTTP API listens on its port %d too", httpPort)
	}
	conn, err := grpc.NewClient("unix://"+grpcSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if md, err := runtimev1pb.NewDaprClient(conn).GetMetadata(ctxT(t), &runtimev1pb.GetMetadataRequest{}); err != nil || md.GetId() != "udsapp" {
		t.Errorf("gRPC over the socket: %v %v", md, err)
	}

	// The CLI: `dapr run -u` puts its metadata over the socket, `dapr list`
	// reads it there.
	if err := clistandin.Put(0, "udsapp", dir, "appCommand", "./app"); err != nil {
		t.Fatal(err)
	}
	apps, err := clistandin.List(filepath.Base(sidecarBin))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range apps {
		if a.AppID == "udsapp" && a.DaprdPID == s.Cmd.Process.Pid {
			found = a.Command == "./app"
		}
	}
	if !found {
		t.Errorf("dapr list does not show udsapp with its command: %+v", apps)
	}

	second := pt.Start("sidecar udsapp (second)", sidecarBin, nil, append(args[:len(args):len(args)], "--dapr-public-port", "0")...)
	if code := pt.ExitCode(second, 15*time.Second); code == 0 || !strings.Contains(second.Out.String(), "is in use") {
		t.Errorf("a second sidecar on the same sockets: exit %d\n%s", code, second.Out.String())
	}

	if err := s.Stop(sigterm, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, sock := range []string{httpSock, grpcSock} {
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("%s is left after a clean stop: %v", sock, err)
		}
	}
}

// TestUnixDomainSocketModes: under umask 000, which would leave a socket
// bound in place open to every local user, the API sockets are 0600; with
// --unix-domain-socket-group (here the test's own group, by name and by id)
// they are 0660 and belong to that group. An unknown group stops the sidecar
// with a message naming the flag.
func TestUnixDomainSocketModes(t *testing.T) {
	w := newWorld(t)
	pt := proc.For(t)
	gid := os.Getgid()
	grp, err := user.LookupGroupId(itoa(gid))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		extra []string
		mode  os.FileMode
	}{
		{"no group", nil, 0o600},
		{"group by name", []string{"--unix-domain-socket-group", grp.Name}, 0o660},
		{"group by id", []string{"--unix-domain-socket-group", itoa(gid)}, 0o660},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"-c", `umask 000; exec "$0" "$@"`, sidecarBin, "--app-id", "modeapp", "--unix-domain-socket", dir,
				"--dapr-internal-grpc-port", "0", "--metrics-port", "0", "--registry-dir", w.registry}, c.extra...)
			s := pt.Start("sidecar modeapp", "/bin/sh", nil, args...)
			for _, api := range []string{"http", "grpc"} {
				sock := filepath.Join(dir, "dapr-modeapp-"+api+".socket")
				waitUnix(t, sock)
				fi, err := os.Stat(sock)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != c.mode {
					t.Errorf("%s: mode %v, want a socket with %v", sock, fi.Mode(), c.mode)
				}
				if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != gid {
					t.Errorf("%s: group %d, want %d", sock, st.Gid, gid)
				}
			}
			// Nothing but the two sockets is left in the folder.
			if ents, _ := os.ReadDir(dir); len(ents) != 2 {
				t.Errorf("the folder holds %v", ents)
			}
			if resp, err := unixClient(filepath.Join(dir, "dapr-modeapp-http.socket")).Get("http://unix/v1.0/healthz/outbound"); err != nil || resp.StatusCode != 204 {
				t.Errorf("healthz over the socket: %v %v", resp, err)
			}
			if err := s.Stop(sigterm, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("left after a clean stop: %v", ents)
			}
		})
	}
	bad := pt.Start("sidecar badgroup", sidecarBin, nil, "--app-id", "modeapp", "--unix-domain-socket", t.TempDir(),
		"--unix-domain-socket-group", "no-such-group-here", "--dapr-internal-grpc-port", "0", "--metrics-port", "0", "--registry-dir", w.registry)
	if code := pt.ExitCode(bad, 15*time.Second); code == 0 || !strings.Contains(bad.Out.String(), `--unix-domain-socket-group "no-such-group-here"`) {
		t.Errorf("an unknown group: exit %d\n%s", code, bad.Out.String())
	}
}

// TestProfiling: --enable-profiling serves Go's pprof on --profile-port
// (here 0: a free one, shown in the metadata), on loopback; without it
// nothing listens, whatever --profile-port says.
func TestProfiling(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar("profiled", 0, "--enable-profiling", "--profile-port", "0")
	port := getMetadata(t, s).Ports["profile"]
	if port == 0 {
		t.Fatal("no profile port in the metadata")
	}
	resp, b := do(t, "GET", "http://127.0.0.1:"+itoa(port)+"/debug/pprof/cmdline", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "--enable-profiling") {
		t.Errorf("pprof cmdline: %d %q", resp.StatusCode, b)
	}
	if resp, _ := do(t, "GET", "http://127.0.0.1:"+itoa(port)+"/debug/pprof/heap?debug=1", nil, nil); resp.StatusCode != 200 {
		t.Errorf("pprof heap: %d", resp.StatusCode)
	}
	off := w.sidecar("unprofiled", 0, "--profile-port", "-1")
	if p := getMetadata(t, off).Ports["profile"]; p != 0 {
		t.Errorf("without --enable-profiling, profile port %d", p)
	}
}

// TestCORS: with --allowed-origins, a browser's preflight from an allowed
// origin is answered without the API token it cannot send, and calls from
// it carry Access-Control-Allow-Origin; other origins' preflights are
// refused, and so are loopback origins' when the list does not name them.
func TestCORS(t *testing.T) {
	w := newWorld(t)
	s := w.sidecarEnv("corsapp", 0, []string{"DAPR_API_TOKEN=secret"}, "--allowed-origins", "https://app.example,http://localhost:*")
	preflight := func(s *sidecar, origin string) *http.Response {
		resp, _ := do(t, "OPTIONS", s.url+"/v1.0/state/statestore", nil, http.Header{"Origin": {origin},
			"Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"content-type,dapr-api-token"}})
		return resp
	}
	for origin, allowed := range map[string]bool{"https://app.example": true, "http://localhost:8080": true, "https://evil.example": false, "http://127.0.0.1:8080": false} {
		resp := preflight(s, origin)
		got := resp.Header.Get("Access-Control-Allow-Origin")
		if want := map[bool]int{true: 204, false: 403}[allowed]; resp.StatusCode != want || (got == origin) != allowed || (got != "" && got != origin) {
			t.Errorf("preflight from %s: %d allow-origin %q", origin, resp.StatusCode, got)
		}
	}
	resp, b := do(t, "POST", s.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"k","value":1}]`),
		http.Header{"Origin": {"https://app.example"}, "Dapr-Api-Token": {"secret"}, "Content-Type": {"application/json"}})
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("save from an allowed origin: %d %s %v", resp.StatusCode, b, resp.Header)
	}
	if resp, _ := do(t, "POST", s.url+"/v1.0/state/statestore", strings.NewReader(`[]`), http.Header{"Origin": {"https://app.example"}}); resp.StatusCode != 401 {
		t.Errorf("a call without the token from an allowed origin: %d", resp.StatusCode)
	}
}

// TestBrowserRequests: what a page in the developer's browser can send to
// the sidecar on localhost. A simple cross-origin POST (text/plain, no
// preflight) to /v1.0/shutdown or the state API is refused, 403
// ERR_FORBIDDEN_ORIGIN naming the origin and the flag, and the sidecar goes
// on serving; a page on a loopback origin is answered and may read it; a
// Host that is not the sidecar's (DNS rebinding) is refused, 403
// ERR_FORBIDDEN_HOST. --allowed-origins '*' and --allowed-hosts '*' are
// daprd's behaviour: nothing checked.
func TestBrowserRequests(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar("browserapp", 0)
	browser := func(s *sidecar, method, path, host, origin, body string) (*http.Response, apiError) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctxT(t), method, s.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var e apiError
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &e)
		return resp, e
	}
	refused := func(what string, resp *http.Response, e apiError, code string, inMessage ...string) {
		t.Helper()
		if resp.StatusCode != 403 || e.ErrorCode != code {
			t.Errorf("%s: %d %+v; want 403 %s", what, resp.StatusCode, e, code)
		}
		for _, m := range inMessage {
			if !strings.Contains(e.Message, m) {
				t.Errorf("%s: message %q lacks %q", what, e.Message, m)
			}
		}
	}

	resp, e := browser(s, "POST", "/v1.0/shutdown", "", "http://evil.example", "")
	refused("shutdown from another origin", resp, e, "ERR_FORBIDDEN_ORIGIN", `"http://evil.example"`, "--allowed-origins http://evil.example")
	resp, e = browser(s, "POST", "/v1.0/state/statestore", "", "http://evil.example", `[{"key":"k","value":"evil"}]`)
	refused("state write from another origin", resp, e, "ERR_FORBIDDEN_ORIGIN")
	resp, e = browser(s, "GET", "/v1.0/metadata", "evil.example:"+itoa(s.httpPort), "", "")
	refused("a rebound name", resp, e, "ERR_FORBIDDEN_HOST", `"evil.example:`+itoa(s.httpPort)+`"`, "--allowed-hosts evil.example")
	resp, e = browser(s, "POST", "/v1.0/shutdown", "evil.example:"+itoa(s.httpPort), "http://evil.example:"+itoa(s.httpPort), "")
	refused("shutdown through a rebound name", resp, e, "ERR_FORBIDDEN_HOST")

	// Still serving, and nothing was written.
	select {
	case <-s.Done():
		t.Fatalf("the sidecar stopped:\n%s", s.Out.String())
	default:
	}
	if resp, b := do(t, "GET", s.url+"/v1.0/state/statestore/k", nil, nil); resp.StatusCode != 204 {
		t.Errorf("state after the refused write: %d %s", resp.StatusCode, b)
	}

	// A page on a loopback origin, and the sidecar by localhost.
	resp, e = browser(s, "POST", "/v1.0/state/statestore", "localhost:"+itoa(s.httpPort), "http://localhost:5173", `[{"key":"k","value":"local"}]`)
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" {
		t.Errorf("state write from a loopback origin: %d %+v %v", resp.StatusCode, e, resp.Header)
	}
	if resp, b := do(t, "GET", s.url+"/v1.0/state/statestore/k", nil, http.Header{"Origin": {"http://[::1]:8080"}}); resp.StatusCode != 200 ||
		string(b) != `"local"` || resp.Header.Get("Access-Control-Allow-Origin") != "http://[::1]:8080" {
		t.Errorf("state read from a loopback origin: %d %s %v", resp.StatusCode, b, resp.Header)
	}

	// daprd's behaviour, asked for.
	open := w.sidecar("openapp", 0, "--allowed-origins", "*", "--allowed-hosts", "*")
	resp, e = browser(open, "POST", "/v1.0/state/statestore", "evil.example:"+itoa(open.httpPort), "http://evil.example", `[{"key":"k","value":"any"}]`)
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("with * and *: %d %+v %v", resp.StatusCode, e, resp.Header)
	}
	named := w.sidecar("namedapp", 0, "--allowed-hosts", "sidecar.test")
	if resp, e := browser(named, "GET", "/v1.0/metadata", "sidecar.test:"+itoa(named.httpPort), "", ""); resp.StatusCode != 200 {
		t.Errorf("a name in --allowed-hosts: %d %+v", resp.StatusCode, e)
	}

	resp, e = browser(s, "POST", "/v1.0/shutdown", "", "http://localhost:5173", "")
	if resp.StatusCode != 204 {
		t.Errorf("shutdown from a loopback origin: %d %+v", resp.StatusCode, e)
	}
	if code := proc.For(t).ExitCode(s.Proc, 20*time.Second); code != 0 {
		t.Errorf("after the shutdown from a loopback origin: exit %d", code)
	}
}

// TestAPILogging: --enable-api-logging logs every call of the HTTP and gRPC
// APIs, as daprd's "HTTP API Called" and "gRPC API Called", but not the
// health checks; without it, none.
func TestAPILogging(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar("logged", 0, "--enable-api-logging")
	do(t, "GET", s.url+"/v1.0/metadata", nil, http.Header{"User-Agent": {"e2e-agent"}})
	do(t, "GET", s.url+"/v1.0/state/statestore/nokey", nil, nil)
	do(t, "GET", s.url+"/v1.0/healthz", nil, nil)
	if _, err := runtimev1pb.NewDaprClient(grpcConn(t, s)).GetMetadata(ctxT(t), &runtimev1pb.GetMetadataRequest{}); err != nil {
		t.Fatal(err)
	}
	waitLog(t, s, `msg="gRPC API Called" app_id=logged component=api method=/dapr.proto.runtime.v1.Dapr/GetMetadata code=OK`)
	out := s.Out.String()
	for _, want := range []string{
		`msg="HTTP API Called" app_id=logged component=api method="GET /v1.0/metadata" route=GetMetadata code=200`,
		"useragent=e2e-agent",
		`method="GET /v1.0/state/statestore/nokey" route=GetState code=204`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "/v1.0/healthz") {
		t.Errorf("a health check is logged:\n%s", out)
	}
	quiet := w.sidecar("quiet", 0)
	do(t, "GET", quiet.url+"/v1.0/metadata", nil, nil)
	if strings.Contains(quiet.Out.String(), "API Called") {
		t.Errorf("API calls logged without --enable-api-logging:\n%s", quiet.Out.String())
	}
}
