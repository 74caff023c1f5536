// Package frontend is the calculator's web front end: it serves the page and
// calls the operator services and the state store only through its own
// sidecar at http://localhost:$DAPR_HTTP_PORT.
package frontend

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"time"
)

//go:embed static
var static embed.FS

// stateKey is where the calculator keeps its display state.
const stateKey = "calculatorState"

// Server is the front end.
type Server struct {
	sidecar string // e.g. http://localhost:3500
	client  *http.Client
}

// New returns a front end that talks to the sidecar on daprHTTPPort.
func New(daprHTTPPort string) *Server {
	return &Server{
		sidecar: "http://localhost:" + daprHTTPPort,
		client:  &http.Client{Timeout: 10 * time.Second},
	}
}

// Handler returns the front end's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	mux.Handle("GET /", http.FileServerFS(sub))
	mux.HandleFunc("POST /calculate/{op}", s.calculate)
	mux.HandleFunc("POST /persist", s.persist)
	mux.HandleFunc("GET /state", s.state)
	return mux
}

var services = map[string]string{"add": "addapp", "subtract": "subtractapp", "multiply": "multiplyapp", "divide": "divideapp"}

func (s *Server) calculate(w http.ResponseWriter, r *http.Request) {
	op := r.PathValue("op")
	app, ok := services[op]
	if !ok {
		http.Error(w, fmt.Sprintf("unknown operation %q; use add, subtract, multiply or divide", op), http.StatusNotFound)
		return
	}
	s.forward(w, r, "POST", "/v1.0/invoke/"+app+"/method/"+op, "")
}

func (s *Server) persist(w http.ResponseWriter, r *http.Request) {
	s.forward(w, r, "POST", "/v1.0/state/statestore", "")
}

func (s *Server) state(w http.ResponseWriter, r *http.Request) {
	s.forward(w, r, "GET", "/v1.0/state/statestore/"+stateKey, "{}")
}

// forward makes the call on the sidecar and copies the answer back. A 204
// becomes emptyAs when that is set (so /state always answers JSON), and a
// successful save answers an empty 200.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, method, path, emptyAs string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), method, s.sidecar+path, bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		http.Error(w, "the sidecar does not answer: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		http.Error(w, "reading the sidecar's answer: "+err.Error(), http.StatusBadGateway)
		return
	}
	switch {
	case resp.StatusCode == http.StatusNoContent && emptyAs != "":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, emptyAs)
	case resp.StatusCode == http.StatusNoContent:
		w.WriteHeader(http.StatusOK)
	default:
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(out)
	}
}
