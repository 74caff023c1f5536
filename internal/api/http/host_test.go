package httpapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// TestCheckHost: the API answers to localhost, *.localhost, IP addresses,
// no Host and the names it is given, and to any Host on a Unix socket; any
// other name (a page's own, after DNS rebinding) is refused with the flag
// that allows it. Any is daprd's: every Host.
func TestCheckHost(t *testing.T) {
	given := Hosts{Names: []string{"sidecar", "*.example.internal"}}
	for _, c := range []struct {
		name, host string
		hosts      Hosts
		unix       bool
		status     int
	}{
		{"localhost", "localhost:3500", given, false, 418},
		{"localhost, no port", "localhost", given, false, 418},
		{"localhost, other case, root dot", "LocalHost.:3500", given, false, 418},
		{"*.localhost", "app.localhost:3500", given, false, 418},
		{"127.0.0.1", "127.0.0.1:3500", given, false, 418},
		{"other loopback address", "127.0.0.2:3500", given, false, 418},
		{"[::1]", "[::1]:3500", given, false, 418},
		{"a pod IP", "10.244.1.7:3501", given, false, 418},
		{"an interface's IPv6 address", "[fd00::5]:3500", given, false, 418},
		{"an address without port", "192.168.1.5", given, false, 418},
		{"no Host (HTTP/1.0)", "", given, false, 418},
		{"a given name", "sidecar:3500", given, false, 418},
		{"a given name, other case", "SIDECAR", given, false, 418},
		{"under a given wildcard", "a.b.example.internal:3500", given, false, 418},
		{"the wildcard's own name", "example.internal:3500", given, false, 403},
		{"another name", "evil.example:3500", given, false, 403},
		{"a name that starts like localhost", "localhost.evil.example:3500", given, false, 403},
		{"a name that starts like an address", "127.0.0.1.evil.example", given, false, 403},
		{"a name that ends like a given one", "evilsidecar:3500", given, false, 403},
		{"by default, another name", "evil.example:3500", Hosts{}, false, 403},
		{"by default, the machine's name", "devbox:3500", Hosts{}, false, 403},
		{"any Host on a Unix socket", "evil.example", Hosts{}, true, 418},
		{"*: any name", "evil.example:3500", Hosts{Any: true}, false, 418},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := CheckHost(c.hosts, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
			req := httptest.NewRequest("GET", "/v1.0/metadata", nil)
			req.Host = c.host
			var local net.Addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3500}
			if c.unix {
				local = &net.UnixAddr{Name: "/tmp/dapr-a-http.socket", Net: "unix"}
			}
			req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, local))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.status {
				t.Fatalf("%d %s; want %d", rec.Code, rec.Body, c.status)
			}
			if c.status == 403 {
				var body struct{ ErrorCode, Message string }
				name, _, _ := strings.Cut(strings.ToLower(c.host), ":")
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.ErrorCode != "ERR_FORBIDDEN_HOST" ||
					!strings.Contains(body.Message, strconv.Quote(c.host)) || !strings.Contains(body.Message, "--allowed-hosts "+name) {
					t.Errorf("refusal %s", rec.Body)
				}
			}
		})
	}
}
