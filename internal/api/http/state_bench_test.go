package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
)

// BenchmarkStateHandlers measures the state API's handlers alone, on the
// embedded store and without a connection: a save of one item of 1 KiB,
// and a get of it. What a change to decoding or answering costs per call:
//
//	go test -run '^$' -bench StateHandlers -benchmem ./internal/api/http
func BenchmarkStateHandlers(b *testing.B) {
	svc := state.NewService("myapp", "")
	if err := svc.Add(state.StoreConfig{Name: "statestore", Type: "state.in-memory", Store: memory.New(0)}); err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	r := NewRouter(nil)
	r.Add(StateRoutes(svc, 4<<20)...)
	body := []byte(`[{"key":"k","value":"` + strings.Repeat("x", 1022) + `"}]`)
	serve := func(req *http.Request, want int) {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != want {
			b.Fatalf("%s %s: %d %s", req.Method, req.URL, w.Code, w.Body)
		}
	}
	save := func() {
		serve(httptest.NewRequest(http.MethodPost, "/v1.0/state/statestore", bytes.NewReader(body)), http.StatusNoContent)
	}
	save()
	b.Run("save", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			save()
		}
	})
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			serve(httptest.NewRequest(http.MethodGet, "/v1.0/state/statestore/k", nil), http.StatusOK)
		}
	})
}
