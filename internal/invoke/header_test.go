package invoke

import (
	"net/http"
	"testing"
)

func TestRemoveHopByHop(t *testing.T) {
	h := http.Header{
		"Connection":        {"X-A, x-b", "close"},
		"X-A":               {"1"},
		"X-B":               {"2"},
		"Keep-Alive":        {"timeout=5"},
		"Transfer-Encoding": {"chunked"},
		"Upgrade":           {"websocket"},
		"Te":                {"trailers"},
		"X-Keep":            {"yes"},
	}
	removeHopByHop(h)
	if len(h) != 1 || h.Get("X-Keep") != "yes" {
		t.Errorf("left %v, want only X-Keep", h)
	}
}

func TestSetForwarded(t *testing.T) {
	cases := []struct {
		remote, host, by string
		xff, fwd         string
	}{
		{"127.0.0.1:5555", "localhost:3500", "127.0.0.1:50002", "127.0.0.1", `for=127.0.0.1;by="127.0.0.1:50002";host="localhost:3500"`},
		{"[::1]:5555", "", "", "::1", `for="[::1]"`},
	}
	for _, c := range cases {
		h := http.Header{"X-Forwarded-For": {"6.6.6.6"}, "Forwarded": {"for=6.6.6.6"}, "X-Forwarded-Proto": {"https"}}
		setForwarded(h, c.remote, c.host, c.by)
		if h.Get("X-Forwarded-For") != c.xff || h.Get("Forwarded") != c.fwd || h.Get("X-Forwarded-Proto") != "" {
			t.Errorf("setForwarded(%q): XFF %q Forwarded %q, want %q %q", c.remote, h.Get("X-Forwarded-For"), h.Get("Forwarded"), c.xff, c.fwd)
		}
	}
}
