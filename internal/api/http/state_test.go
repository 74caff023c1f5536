package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/counter"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
	"github.com/tandem-run/tandem/pkg/state/redis"
)

// stateAPI serves the state routes over st as store "statestore".
func stateAPI(t *testing.T, st state.Store) *httptest.Server {
	t.Helper()
	return stateAPIWith(t, state.StoreConfig{Store: st}, 1024)
}

// stateAPIWith serves the state routes over the store of c, named
// "statestore", with a body limit.
func stateAPIWith(t *testing.T, c state.StoreConfig, maxBody int64) *httptest.Server {
	t.Helper()
	svc := state.NewService("myapp", "")
	c.Name, c.Type = "statestore", "test"
	if err := svc.Add(c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	r := NewRouter(nil)
	r.Add(StateRoutes(svc, maxBody)...)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, method, url, body string, h map[string]string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestStateRoundTrip(t *testing.T) {
	base := stateAPI(t, memory.New(0)).URL + "/v1.0/state/statestore"
	code, _, body := call(t, "POST", base, `[{"key":"calculatorState","value":{"total":"54","next":null,"operation":null}},{"key":"n","value":5}]`, nil)
	if code != 204 {
		t.Fatalf("save: %d %s", code, body)
	}
	code, h, body := call(t, "GET", base+"/calculatorState", "", nil)
	if code != 200 || body != `{"total":"54","next":null,"operation":null}` || h.Get("ETag") == "" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("get: %d %q %v", code, body, h)
	}
	etag := h.Get("ETag")
	if code, _, _ := call(t, "GET", base+"/missing", "", nil); code != 204 {
		t.Errorf("missing key: %d, want 204", code)
	}
	// Stale ETag on save and delete: 409.
	call(t, "PUT", base, `[{"key":"calculatorState","value":1,"etag":"`+etag+`"}]`, nil)
	code, _, body = call(t, "POST", base, `[{"key":"calculatorState","value":2,"etag":"`+etag+`"}]`, nil)
	if code != 409 || !strings.Contains(body, "ERR_STATE_SAVE") {
		t.Errorf("stale save: %d %s", code, body)
	}
	code, _, body = call(t, "DELETE", base+"/calculatorState", "", map[string]string{"If-Match": etag})
	if code != 409 || !strings.Contains(body, "ERR_STATE_DELETE") {
		t.Errorf("stale delete: %d %s", code, body)
	}
	_, h, _ = call(t, "GET", base+"/calculatorState", "", nil)
	if code, _, body := call(t, "DELETE", base+"/calculatorState", "", map[string]string{"If-Match": h.Get("ETag")}); code != 204 {
		t.Errorf("delete: %d %s", code, body)
	}
	// Bulk: present and missing keys.
	code, _, body = call(t, "POST", base+"/bulk", `{"keys":["n","calculatorState"],"parallelism":2}`, nil)
	var items []map[string]any
	if err := json.Unmarshal([]byte(body), &items); err != nil || code != 200 || len(items) != 2 {
		t.Fatalf("bulk: %d %s", code, body)
	}
	if items[0]["key"] != "n" || items[0]["data"] != 5.0 || items[0]["etag"] == nil || items[1]["key"] != "calculatorState" || items[1]["data"] != nil {
		t.Errorf("bulk items %v", items)
	}
	// GET of a key named "bulk" is a get, not a bulk request.
	if code, _, _ := call(t, "GET", base+"/bulk", "", nil); code != 204 {
		t.Errorf("GET .../bulk: %d, want 204", code)
	}
	// Transaction.
	code, _, body = call(t, "POST", base+"/transaction", `{"operations":[{"operation":"upsert","request":{"key":"t1","value":"x"}},{"operation":"delete","request":{"key":"n"}}]}`, nil)
	if code != 204 {
		t.Fatalf("transaction: %d %s", code, body)
	}
	if _, _, v := call(t, "GET", base+"/t1", "", nil); v != `"x"` {
		t.Errorf("t1 = %q", v)
	}
	if code, _, _ := call(t, "GET", base+"/n", "", nil); code != 204 {
		t.Errorf("n not deleted")
	}
}

func TestStateBadInput(t *testing.T) {
	srv := stateAPI(t, memory.New(0))
	base := srv.URL + "/v1.0/state/"
	cases := []struct {
		name, method, path, body string
		status                   int
		code, msgHas             string
	}{
		{"malformed json", "POST", "statestore", `[{"key":`, 400, "ERR_MALFORMED_REQUEST", "JSON"},
		{"object not array", "POST", "statestore", `{"key":"a","value":1}`, 400, "ERR_MALFORMED_REQUEST", "JSON"},
		{"empty body", "POST", "statestore", ``, 400, "ERR_MALFORMED_REQUEST", "empty"},
		{"missing key", "POST", "statestore", `[{"value":1}]`, 400, "ERR_MALFORMED_REQUEST", "key is missing"},
		{"missing value", "POST", "statestore", `[{"key":"a"}]`, 400, "ERR_MALFORMED_REQUEST", "value is missing"},
		{"key with ||", "POST", "statestore", `[{"key":"a||b","value":1}]`, 400, "ERR_MALFORMED_REQUEST", "||"},
		{"get key with ||", "GET", "statestore/a||b", ``, 400, "ERR_MALFORMED_REQUEST", "||"},
		{"unknown store", "POST", "nostore", `[{"key":"a","value":1}]`, 400, "ERR_STATE_STORE_NOT_FOUND", "statestore"},
		{"unknown store get", "GET", "nostore/a", ``, 400, "ERR_STATE_STORE_NOT_FOUND", "nostore"},
		{"bad etag", "POST", "statestore", `[{"key":"a","value":1,"etag":"xyz"}]`, 400, "ERR_STATE_SAVE", "xyz"},
		{"etag on missing key", "POST", "statestore", `[{"key":"zz","value":1,"etag":"1"}]`, 409, "ERR_STATE_SAVE", "etag"},
		{"bad ttl", "POST", "statestore", `[{"key":"a","value":1,"metadata":{"ttlInSeconds":"soon"}}]`, 400, "ERR_MALFORMED_REQUEST", "ttlInSeconds"},
		{"bad concurrency", "POST", "statestore", `[{"key":"a","value":1,"options":{"concurrency":"whoever"}}]`, 400, "ERR_MALFORMED_REQUEST", "first-write"},
		{"bad consistency", "GET", "statestore/a?consistency=maybe", ``, 400, "ERR_MALFORMED_REQUEST", "strong"},
		{"oversized body", "POST", "statestore", `[{"key":"a","value":"` + strings.Repeat("x", 2000) + `"}]`, 413, "ERR_BODY_TOO_LARGE", "--max-body-size"},
		{"deep nesting", "POST", "statestore", strings.Repeat("[", 1000), 400, "ERR_MALFORMED_REQUEST", "JSON"},
		{"bad operation", "POST", "statestore/transaction", `{"operations":[{"operation":"merge","request":{"key":"a"}}]}`, 400, "ERR_NOT_SUPPORTED_STATE_OPERATION", "upsert, delete"},
		{"empty operation", "POST", "statestore/transaction", `{"operations":[{"operation":"upsert","request":{"key":"a","value":1}},{"request":{"key":"a"}}]}`, 400, "ERR_NOT_SUPPORTED_STATE_OPERATION", `operation 1: operation type ""`},
		{"ttl past a Duration", "POST", "statestore", `[{"key":"a","value":1,"metadata":{"ttlInSeconds":"18446744074"}}]`, 400, "ERR_MALFORMED_REQUEST", "ttlInSeconds"},
		{"ttl just past a Duration", "POST", "statestore", `[{"key":"a","value":1,"metadata":{"ttlInSeconds":"9223372037"}}]`, 400, "ERR_MALFORMED_REQUEST", "from 1 to 9223372036, or -1"},
		{"ttl not whole", "POST", "statestore", `[{"key":"a","value":1,"metadata":{"ttlInSeconds":"1.5"}}]`, 400, "ERR_MALFORMED_REQUEST", "ttlInSeconds"},
		{"ttl zero", "POST", "statestore", `[{"key":"a","value":1,"metadata":{"ttlInSeconds":"0"}}]`, 400, "ERR_MALFORMED_REQUEST", "ttlInSeconds"},
		{"ttl in a transaction", "POST", "statestore/transaction", `{"operations":[{"operation":"upsert","request":{"key":"a","value":1,"metadata":{"ttlInSeconds":"18446744074"}}}]}`, 400, "ERR_MALFORMED_REQUEST", "ttlInSeconds"},
		{"negative parallelism", "POST", "statestore/bulk", `{"keys":["a"],"parallelism":-1}`, 400, "ERR_MALFORMED_REQUEST", "parallelism"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, _, body := call(t, c.method, base+c.path, c.body, nil)
			var e struct{ ErrorCode, Message string }
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("%d, body not JSON: %q", status, body)
			}
			if status != c.status || e.ErrorCode != c.code || !strings.Contains(e.Message, c.msgHas) {
				t.Errorf("got %d %s %q; want %d %s mentioning %q", status, e.ErrorCode, e.Message, c.status, c.code, c.msgHas)
			}
		})
	}
}

// TestConcurrentIncrements: 20 clients add to one counter with
// read-ETag-write retries; no increment may be lost.
func TestConcurrentIncrements(t *testing.T) {
	stores := map[string]func(t *testing.T) state.Store{
		"memory": func(t *testing.T) state.Store { return memory.New(0) },
		"redis": func(t *testing.T) state.Store {
			srv := redisserver.Start(t)
			return redis.New("statestore", goredis.NewClient(&goredis.Options{Addr: srv.Addr}))
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			base := stateAPI(t, newStore(t)).URL + "/v1.0/state/statestore"
			const clients, each = 20, 10
			if err := counter.Concurrently(base, "counter", clients, each); err != nil {
				t.Error(err)
			}
			_, _, v := call(t, "GET", base+"/counter", "", nil)
			if v != strconv.Itoa(clients*each) {
				t.Errorf("counter = %s, want %d", v, clients*each)
			}
		})
	}
}

func TestStateLimits(t *testing.T) {
	base := stateAPIWith(t, state.StoreConfig{Store: memory.New(0), MaxTransactionOperations: 2}, 1<<20).URL + "/v1.0/state/statestore"
	ops := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = `{"operation":"delete","request":{"key":"k` + strconv.Itoa(i) + `"}}`
		}
		return `{"operations":[` + strings.Join(parts, ",") + `]}`
	}
	bulk := func(n, parallelism int) string {
		keys, _ := json.Marshal(keysN(n))
		return `{"keys":` + string(keys) + `,"parallelism":` + strconv.Itoa(parallelism) + `}`
	}
	for _, c := range []struct {
		name, path, body string
		status           int
		code             string
		msgHas           []string
	}{
		{"transaction at the limit", "/transaction", ops(2), 204, "", nil},
		{"transaction over the limit", "/transaction", ops(3), 400, "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS", []string{"3 operations", "limit of 2", "maxTransactionOperations"}},
		{"bulk at the key bound, parallelism a million", "/bulk", bulk(state.MaxBulkKeys, 1_000_000), 200, "", nil},
		{"bulk one key over the bound", "/bulk", bulk(state.MaxBulkKeys+1, 10), 400, "ERR_MALFORMED_REQUEST", []string{"10001 keys", "limit of 10000"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, _, body := call(t, "POST", base+c.path, c.body, nil)
			if status != c.status {
				t.Fatalf("status %d, want %d: %.300s", status, c.status, body)
			}
			if c.code == "" {
				return
			}
			var e struct{ ErrorCode, Message string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.ErrorCode != c.code {
				t.Fatalf("body %q; want errorCode %s", body, c.code)
			}
			for _, m := range c.msgHas {
				if !strings.Contains(e.Message, m) {
					t.Errorf("message %q does not mention %q", e.Message, m)
				}
			}
		})
	}
}

func keysN(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	return keys
}

// TestBulkAnswer: the streamed answer is one JSON array of every key in
// order; an item whose read failed says why, without the key prefix.
func TestBulkAnswer(t *testing.T) {
	srv := redisserver.Start(t)
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer rc.Close()
	base := stateAPIWith(t, state.StoreConfig{Store: redis.New("statestore", goredis.NewClient(&goredis.Options{Addr: srv.Addr}))}, 1<<20).URL + "/v1.0/state/statestore"
	const n = 3000
	var save []string
	for i := 0; i < n; i += 2 { // even keys exist
		save = append(save, `{"key":"k`+strconv.Itoa(i)+`","value":`+strconv.Itoa(i)+`}`)
	}
	if status, _, body := call(t, "POST", base, "["+strings.Join(save, ",")+"]", nil); status != 204 {
		t.Fatalf("save: %d %s", status, body)
	}
	// k1 holds a Redis string, which the store cannot read as a value.
	if err := rc.Set(context.Background(), "myapp||k1", "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	keys, _ := json.Marshal(keysN(n))
	for _, parallelism := range []int{0, 7, 1_000_000} {
		t.Run(strconv.Itoa(parallelism), func(t *testing.T) {
			status, h, body := call(t, "POST", base+"/bulk", `{"keys":`+string(keys)+`,"parallelism":`+strconv.Itoa(parallelism)+`}`, nil)
			var items []struct {
				Key   string          `json:"key"`
				Data  json.RawMessage `json:"data"`
				ETag  string          `json:"etag"`
				Error string          `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &items); status != 200 || err != nil || h.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s %v: %.200s", status, h.Get("Content-Type"), err, body)
			}
			if len(items) != n {
				t.Fatalf("%d items, want %d", len(items), n)
			}
			for i, it := range items {
				switch {
				case it.Key != "k"+strconv.Itoa(i):
					t.Fatalf("item %d is %q", i, it.Key)
				case i == 1:
					if !strings.Contains(it.Error, "WRONGTYPE") || strings.Contains(it.Error, "||") || it.Data != nil {
						t.Errorf("item k1: %+v; want a WRONGTYPE error without the key prefix", it)
					}
				case i%2 == 0 && (string(it.Data) != strconv.Itoa(i) || it.ETag == "" || it.Error != ""):
					t.Errorf("item %d: %+v", i, it)
				case i%2 == 1 && (it.Data != nil || it.Error != ""):
					t.Errorf("missing item %d: %+v", i, it)
				}
			}
		})
	}
	if status, _, body := call(t, "POST", base+"/bulk", `{"keys":[]}`, nil); status != 200 || body != "[]" {
		t.Errorf("no keys: %d %q, want 200 []", status, body)
	}
}
