package httpapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// TestCORS: a browser page on an allowed origin may call the API and read
// its answers; one on another origin may only GET and HEAD (without CORS
// headers, so it cannot read them) and its preflights are refused; a
// request without Origin passes as it is. By default the loopback origins
// are the allowed ones; "*" (Any) is daprd's: no checks, no headers.
func TestCORS(t *testing.T) {
	listed := Origins{Patterns: []string{"https://app.example", "https://*.example.com"}}
	for _, c := range []struct {
		name, method, origin, reqMethod string
		origins                         Origins
		status                          int    // 418: reached the API
		allow                           string // Access-Control-Allow-Origin
	}{
		{"no origin", "POST", "", "", listed, 418, ""},
		{"allowed origin", "GET", "https://app.example", "", listed, 418, "https://app.example"},
		{"allowed, other case", "POST", "HTTPS://APP.example", "", listed, 418, "HTTPS://APP.example"},
		{"wildcard", "POST", "https://a.b.example.com", "", listed, 418, "https://a.b.example.com"},
		{"wildcard needs its suffix", "POST", "https://example.com", "", listed, 403, ""},
		{"other origin, GET", "GET", "https://evil.example", "", listed, 418, ""},
		{"other origin, HEAD", "HEAD", "https://evil.example", "", listed, 418, ""},
		{"other origin, POST", "POST", "https://evil.example", "", listed, 403, ""},
		{"other origin, PUT", "PUT", "https://evil.example", "", listed, 403, ""},
		{"other origin, DELETE", "DELETE", "https://evil.example", "", listed, 403, ""},
		{"other origin, OPTIONS that is no preflight", "OPTIONS", "https://evil.example", "", listed, 403, ""},
		{"origin null (a sandboxed page, a file)", "POST", "null", "", listed, 403, ""},
		{"preflight allowed", "OPTIONS", "https://app.example", "DELETE", listed, 204, "https://app.example"},
		{"preflight refused", "OPTIONS", "https://evil.example", "DELETE", listed, 403, ""},
		{"OPTIONS that is no preflight", "OPTIONS", "https://app.example", "", listed, 418, "https://app.example"},
		{"list without loopback", "POST", "http://localhost:8080", "", listed, 403, ""},

		{"default: localhost", "POST", "http://localhost:8080", "", Origins{}, 418, "http://localhost:8080"},
		{"default: localhost, no port", "POST", "http://localhost", "", Origins{}, 418, "http://localhost"},
		{"default: https", "POST", "https://localhost:8443", "", Origins{}, 418, "https://localhost:8443"},
		{"default: 127.0.0.1", "POST", "http://127.0.0.1:3000", "", Origins{}, 418, "http://127.0.0.1:3000"},
		{"default: [::1]", "POST", "http://[::1]:3000", "", Origins{}, 418, "http://[::1]:3000"},
		{"default: *.localhost", "POST", "http://app.localhost:5173", "", Origins{}, 418, "http://app.localhost:5173"},
		{"default: preflight from loopback", "OPTIONS", "http://localhost:5173", "PUT", Origins{}, 204, "http://localhost:5173"},
		{"default: other origin, POST", "POST", "http://evil.example", "", Origins{}, 403, ""},
		{"default: a name that only starts like localhost", "POST", "http://localhost.evil.example", "", Origins{}, 403, ""},
		{"default: 127.0.0.1 as a subdomain", "POST", "http://127.0.0.1.evil.example", "", Origins{}, 403, ""},
		{"default: another scheme", "POST", "file://localhost", "", Origins{}, 403, ""},
		{"default: a path is no origin", "POST", "http://localhost/x", "", Origins{}, 403, ""},
		{"default: other origin, GET", "GET", "http://evil.example", "", Origins{}, 418, ""},
		{"default: preflight refused", "OPTIONS", "http://evil.example", "POST", Origins{}, 403, ""},

		{"*: other origin, POST", "POST", "http://evil.example", "", Origins{Any: true}, 418, ""},
		{"*: preflight reaches the API", "OPTIONS", "http://evil.example", "POST", Origins{Any: true}, 418, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := CORS(c.origins, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
			req := httptest.NewRequest(c.method, "/v1.0/shutdown", strings.NewReader("x"))
			req.Header.Set("Content-Type", "text/plain")
			if c.origin != "" {
				req.Header.Set("Origin", c.origin)
			}
			if c.reqMethod != "" {
				req.Header.Set("Access-Control-Request-Method", c.reqMethod)
				req.Header.Set("Access-Control-Request-Headers", "content-type,dapr-api-token")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got := rec.Header().Get("Access-Control-Allow-Origin")
			if rec.Code != c.status || got != c.allow {
				t.Errorf("%d, allow-origin %q; want %d %q", rec.Code, got, c.status, c.allow)
			}
			if c.status == 204 && (rec.Header().Get("Access-Control-Allow-Methods") != c.reqMethod ||
				rec.Header().Get("Access-Control-Allow-Headers") != "content-type,dapr-api-token") {
				t.Errorf("preflight headers %v", rec.Header())
			}
			if c.status == 403 {
				var body struct{ ErrorCode, Message string }
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.ErrorCode != "ERR_FORBIDDEN_ORIGIN" ||
					!strings.Contains(body.Message, strconv.Quote(c.origin)) || !strings.Contains(body.Message, "--allowed-origins "+c.origin) {
					t.Errorf("refusal %s", rec.Body)
				}
			}
		})
	}
	t.Run("two Origin headers", func(t *testing.T) {
		h := CORS(Origins{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
		req := httptest.NewRequest("POST", "/v1.0/shutdown", nil)
		req.Header["Origin"] = []string{"http://localhost", "http://evil.example"}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 403 {
			t.Errorf("%d", rec.Code)
		}
	})
}

func TestLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	h := Logged(log, "GetState", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte("hello"))
		http.NewResponseController(w).Flush() // reaches the writer underneath
	}))
	req := httptest.NewRequest("GET", "/v1.0/state/s/k", nil)
	req.Header.Set("User-Agent", "dapr-sdk-js/3.4.0")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	line := buf.String()
	for _, want := range []string{`msg="HTTP API Called"`, `method="GET /v1.0/state/s/k"`, "route=GetState", "code=201", "size=5", "useragent=dapr-sdk-js/3.4.0"} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
	if !rec.Flushed {
		t.Error("Flush did not reach the writer")
	}
	buf.Reset()
	Logged(log, "Healthz", http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1.0/healthz", nil))
	if buf.Len() != 0 {
		t.Errorf("a health check was logged: %s", buf.String())
	}
}
