package dashboard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// get asks h for method path and returns the status and the body.
func get(t *testing.T, h http.Handler, method, path string, header http.Header) (int, string, http.Header) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b), rec.Result().Header
}

func TestPage(t *testing.T) {
	h := Handler(&url.URL{Scheme: "http", Host: "127.0.0.1:1"})
	for _, c := range []struct{ path, ctype, has string }{
		{"/", "text/html", `<script src="dashboard.js">`},
		{"/dashboard.js", "javascript", "api/traces?limit=20&service="},
		{"/dashboard.css", "text/css", ".bar"},
	} {
		code, body, hdr := get(t, h, "GET", c.path, nil)
		if code != 200 || !strings.Contains(hdr.Get("Content-Type"), c.ctype) || !strings.Contains(body, c.has) {
			t.Errorf("GET %s = %d %q, want 200 %s with %q", c.path, code, hdr.Get("Content-Type"), c.ctype, c.has)
		}
	}
}

// The read routes of the query API reach the collector as they were asked;
// nothing else does.
func TestQueryAPIPassedThrough(t *testing.T) {
	var got []string
	jaeger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.RequestURI()+" cookie="+r.Header.Get("Cookie"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"data":["addapp"]}`)
	}))
	defer jaeger.Close()
	u, _ := url.Parse(jaeger.URL)
	h := Handler(u)

	for _, path := range []string{"/api/services", "/api/traces?limit=20&service=calculator-front-end", "/api/traces/5b8efff798038103d269b633813fc60c"} {
		code, body, _ := get(t, h, "GET", path, http.Header{"Cookie": {"session=1"}})
		if code != 200 || body != `{"data":["addapp"]}` {
			t.Errorf("GET %s = %d %q", path, code, body)
		}
	}
	want := []string{
		"GET /api/services cookie=",
		"GET /api/traces?limit=20&service=calculator-front-end cookie=",
		"GET /api/traces/5b8efff798038103d269b633813fc60c cookie=",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the collector got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	got = nil
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"POST", "/api/traces", http.StatusMethodNotAllowed},
		{"DELETE", "/api/traces/5b8efff798038103d269b633813fc60c", http.StatusMethodNotAllowed},
		{"GET", "/api/dependencies", http.StatusNotFound},
		{"GET", "/api/v3/traces", http.StatusNotFound},
	} {
		if code, _, _ := get(t, h, c.method, c.path, nil); code != c.code {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, code, c.code)
		}
	}
	if len(got) != 0 {
		t.Errorf("the collector got %q, want nothing", got)
	}
}

func TestCollectorDown(t *testing.T) {
	jaeger := httptest.NewServer(http.NotFoundHandler())
	u, _ := url.Parse(jaeger.URL)
	jaeger.Close()
	code, body, _ := get(t, Handler(u), "GET", "/api/services", nil)
	if code != http.StatusBadGateway || !strings.Contains(body, "query API at "+jaeger.URL+" does not answer") {
		t.Errorf("collector down: %d %q", code, body)
	}
}
