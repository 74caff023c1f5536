package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
)

// FuzzStateBodies sends any body to the save, bulk and transaction routes:
// the answer is a success or a client error with the one error body, never
// a panic or a 500, and nothing is half applied by a refused request.
func FuzzStateBodies(f *testing.F) {
	for _, s := range []string{
		`[{"key":"k","value":1}]`, `[{"key":"k","value":{"a":[1,2]},"etag":"1","options":{"concurrency":"first-write"}}]`,
		`{"keys":["a","b"],"parallelism":2}`, `{"operations":[{"operation":"upsert","request":{"key":"a","value":1}},{"operation":"delete","request":{"key":"b"}}]}`,
		`[{"key":"a||b","value":1}]`, `[{"key":"k"}]`, `[[[[[[[[[[]]]]]]]]]]`, `{"keys":"x"}`, "\xff\xfe", `[{"key":"k","value":1,"metadata":{"ttlInSeconds":"-7"}}]`,
	} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
		f.Add(s, uint8(2))
	}
	svc := state.NewService("myapp", "")
	if err := svc.Add(state.StoreConfig{Name: "statestore", Type: "state.in-memory", Store: memory.New(0)}); err != nil {
		f.Fatal(err)
	}
	r := NewRouter(nil)
	r.Add(StateRoutes(svc, 64<<10)...)
	paths := []string{"/v1.0/state/statestore", "/v1.0/state/statestore/bulk", "/v1.0/state/statestore/transaction"}
	f.Fuzz(func(t *testing.T, body string, route uint8) {
		path := paths[int(route)%len(paths)]
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, bytes.NewBufferString(body)))
		switch {
		case w.Code == http.StatusNoContent || w.Code == http.StatusOK:
		case w.Code >= 400 && w.Code < 500:
			var e struct{ ErrorCode, Message string }
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.ErrorCode == "" || e.Message == "" {
				t.Fatalf("%s %q: %d with body %q", path, body, w.Code, w.Body)
			}
		default:
			t.Fatalf("%s %q: %d %s", path, body, w.Code, w.Body)
		}
	})
}
