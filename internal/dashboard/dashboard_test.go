package dashboard

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestHostChecked: without Remote, a request for a host name other than
// localhost or a loopback address (a rebound DNS name) is refused.
func TestHostChecked(t *testing.T) {
	for _, c := range []struct {
		host   string
		remote bool
		want   int
	}{
		{"127.0.0.1:8081", false, http.StatusOK},
		{"localhost:8081", false, http.StatusOK},
		{"[::1]:8081", false, http.StatusOK},
		{"localhost", false, http.StatusOK},
		{"attacker.example:8081", false, http.StatusForbidden},
		{"10.0.0.1:8081", false, http.StatusForbidden},
		{"attacker.example:8081", true, http.StatusOK},
	} {
		h := New(Config{RegistryDir: t.TempDir(), Remote: c.remote}).Handler()
		for _, path := range []string{"/", "/api/apps"} {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Host = c.host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Errorf("host %s remote %v %s: %d, want %d (%s)", c.host, c.remote, path, rec.Code, c.want, rec.Body)
			}
			if got := rec.Header().Get("Content-Security-Policy"); !strings.Contains(got, "default-src 'self'") {
				t.Errorf("%s: Content-Security-Policy %q", path, got)
			}
		}
	}
}

// TestPageWritesTextOnly: the page's script never puts data into the DOM
// as HTML; values go through textContent.
func TestPageWritesTextOnly(t *testing.T) {
	b, err := os.ReadFile("static/dashboard.js")
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(js, bad) {
			t.Errorf("dashboard.js uses %s: build the DOM with textContent", bad)
		}
	}
	if !strings.Contains(js, ".textContent =") {
		t.Error("dashboard.js sets no textContent")
	}
}
