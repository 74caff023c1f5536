package httpapi

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCORS(t *testing.T) {
	var reached int
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++; w.WriteHeader(http.StatusTeapot) })
	h := CORS([]string{"https://app.example", "https://*.example.com"}, next)
	for _, c := range []struct {
		name, method, origin, reqMethod string
		status                          int
		allow                           string // Access-Control-Allow-Origin
		reaches                         bool
	}{
		{"no origin", "GET", "", "", 418, "", true},
		{"allowed origin", "GET", "https://app.example", "", 418, "https://app.example", true},
		{"allowed, other case", "GET", "HTTPS://APP.example", "", 418, "HTTPS://APP.example", true},
		{"wildcard", "POST", "https://a.b.example.com", "", 418, "https://a.b.example.com", true},
		{"wildcard needs its suffix", "POST", "https://example.com", "", 418, "", true},
		{"other origin", "GET", "https://evil.example", "", 418, "", true},
		{"preflight allowed", "OPTIONS", "https://app.example", "DELETE", 204, "https://app.example", false},
		{"preflight refused", "OPTIONS", "https://evil.example", "DELETE", 204, "", false},
		{"OPTIONS that is no preflight", "OPTIONS", "https://app.example", "", 418, "https://app.example", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			reached = 0
			req := httptest.NewRequest(c.method, "/v1.0/state/statestore", nil)
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
			if rec.Code != c.status || got != c.allow || (reached == 1) != c.reaches {
				t.Errorf("%d, allow-origin %q, reached %v; want %d %q %v", rec.Code, got, reached == 1, c.status, c.allow, c.reaches)
			}
			if c.status == 204 && c.allow != "" && (rec.Header().Get("Access-Control-Allow-Methods") != c.reqMethod ||
				rec.Header().Get("Access-Control-Allow-Headers") != "content-type,dapr-api-token") {
				t.Errorf("preflight headers %v", rec.Header())
			}
		})
	}
	if CORS(nil, next) == nil {
		t.Fatal("nil handler")
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("OPTIONS", "/", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	CORS(nil, next).ServeHTTP(rec, req)
	if rec.Code != 418 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("without origins (daprd's *): %d %v", rec.Code, rec.Header())
	}
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
