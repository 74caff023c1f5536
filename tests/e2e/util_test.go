package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
)

var sigterm = syscall.SIGTERM

func itoa(n int) string { return strconv.Itoa(n) }

// appAddrOf returns host:port of the app behind s, from its metadata.
func appAddrOf(t *testing.T, s *sidecar) string {
	t.Helper()
	_, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	var m struct {
		App struct {
			Port    int    `json:"port"`
			Address string `json:"channelAddress"`
		} `json:"appConnectionProperties"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.App.Port == 0 {
		t.Fatalf("metadata has no app connection: %s", b)
	}
	return m.App.Address + ":" + itoa(m.App.Port)
}

// recordingApp is an app in the test process that counts the requests it
// receives, so a test can assert that a refused call never reached it.
type recordingApp struct {
	port int
	n    atomic.Int64
}

func newRecordingApp(t *testing.T) *recordingApp {
	t.Helper()
	a := &recordingApp{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.n.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	// HTTP/1.1 and h2c, for sidecars with --app-protocol http or h2c.
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	a.port = srv.Listener.Addr().(*net.TCPAddr).Port
	return a
}

func (a *recordingApp) received() int64 { return a.n.Load() }
