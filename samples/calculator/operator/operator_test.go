package operator

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestOperations(t *testing.T) {
	cases := []struct {
		op, body string
		status   int
		want     string
	}{
		{"add", `{"operandOne":"52","operandTwo":"34"}`, 200, "86"},
		{"subtract", `{"operandOne":"52","operandTwo":"34"}`, 200, "18"},
		{"multiply", `{"operandOne":"52","operandTwo":"34"}`, 200, "1768"},
		{"divide", `{"operandOne":"52","operandTwo":"34"}`, 200, "1.5294117647058822"},
		{"add", `{"operandOne":"0.1","operandTwo":"0.2"}`, 200, "0.30000000000000004"},
		{"add", `{"operandOne":1.5,"operandTwo":"-2"}`, 200, "-0.5"},
		{"divide", `{"operandOne":"1","operandTwo":"0"}`, 400, "divide by zero"},
		{"add", `{"operandOne":"abc","operandTwo":"1"}`, 400, "operandOne"},
		{"add", `{"operandOne":"1"}`, 400, "operandTwo is missing"},
		{"add", `{"operandOne":"1e400","operandTwo":"1"}`, 400, "operandOne"},
		{"multiply", `{"operandOne":"1e300","operandTwo":"1e300"}`, 400, "out of range"},
		{"add", `not json`, 400, "JSON"},
	}
	for _, c := range cases {
		t.Run(c.op+" "+c.body, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Handler(c.op).ServeHTTP(rec, httptest.NewRequest("POST", "/"+c.op, strings.NewReader(c.body)))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != c.status || !strings.Contains(string(body), c.want) {
				t.Errorf("got %d %q, want %d %q", rec.Code, body, c.status, c.want)
			}
			if c.status == 200 && strings.TrimSpace(string(body)) != c.want {
				t.Errorf("body %q, want exactly %q", body, c.want)
			}
		})
	}
	rec := httptest.NewRecorder()
	Handler("add").ServeHTTP(rec, httptest.NewRequest("GET", "/add", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", rec.Code)
	}
}
