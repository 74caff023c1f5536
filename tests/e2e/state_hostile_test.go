package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// bodyLimit is the sidecar's default --max-body-size.
const bodyLimit = 4 << 20

// redisSidecar starts a Redis and a sidecar for appID whose statestore is
// that Redis; it returns the sidecar and a client of the Redis.
func redisSidecar(t *testing.T, appID string) (*sidecar, *goredis.Client) {
	t.Helper()
	srv := redisserver.Start(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "statestore.yaml"), resources.RedisYAML("statestore", srv.Addr), 0o644); err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rc.Close() })
	return newWorld(t).sidecar(appID, 0, "--resources-path", dir), rc
}

// deletesBody is a transaction of n deletes with keys as short as they
// come, so that as many as possible fit the body limit.
func deletesBody(n int) string {
	var b strings.Builder
	b.WriteString(`{"operations":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"operation":"delete","request":{"key":"` + strconv.Itoa(i) + `"}}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

// bulkBody asks for keys k0... with the given parallelism; n < 0 fills the
// body limit with as many keys as it holds.
func bulkBody(n, parallelism int) string {
	var b strings.Builder
	b.WriteString(`{"parallelism":` + strconv.Itoa(parallelism) + `,"keys":[`)
	for i := 0; n < 0 || i < n; i++ {
		k := `"k` + strconv.Itoa(i) + `"`
		if n < 0 && b.Len()+len(k)+3 > bodyLimit { // a comma before, "]}" after
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
	}
	b.WriteString(`]}`)
	return b.String()
}

// TestStateHostile: hostile state requests against a real sidecar in front
// of a real Redis get their exact status and error code, over HTTP and
// gRPC, and leave nothing stored.
func TestStateHostile(t *testing.T) {
	s, rc := redisSidecar(t, "hostile-state")
	big := deletesBody(85000) // the reported attack: 85,000 deletes in 4 MB
	if len(big) >= bodyLimit {
		t.Fatalf("the 85,000-delete body is %d bytes, over the limit it must fit", len(big))
	}
	for _, c := range []struct {
		name, path, body string
		status           int
		code             string   // errorCode, when not 2xx
		msgHas           []string // in the message
	}{
		{"transaction of 85,000 deletes", "/transaction", big, 400, "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS", []string{"85000 operations", "limit of 1000", "maxTransactionOperations"}},
		{"transaction one over the limit", "/transaction", deletesBody(1001), 400, "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS", []string{"limit of 1000", "maxTransactionOperations"}},
		{"transaction at the limit", "/transaction", deletesBody(1000), 204, "", nil},
		{"unknown transaction operation", "/transaction", `{"operations":[{"operation":"upsert","request":{"key":"op","value":1}},{"operation":"merge","request":{"key":"a"}}]}`,
			400, "ERR_NOT_SUPPORTED_STATE_OPERATION", []string{`"merge"`, "upsert, delete"}},
		{"ttlInSeconds past a Duration", "", `[{"key":"ttl","value":1,"metadata":{"ttlInSeconds":"18446744074"}}]`, 400, "ERR_MALFORMED_REQUEST", []string{"ttlInSeconds", "1 to 9223372036, or -1"}},
		{"ttlInSeconds just past a Duration", "", `[{"key":"ttl","value":1,"metadata":{"ttlInSeconds":"9223372037"}}]`, 400, "ERR_MALFORMED_REQUEST", []string{"ttlInSeconds"}},
		{"ttlInSeconds not whole", "", `[{"key":"ttl","value":1,"metadata":{"ttlInSeconds":"1.5"}}]`, 400, "ERR_MALFORMED_REQUEST", []string{"ttlInSeconds"}},
		{"ttlInSeconds past a Duration in a transaction", "/transaction", `{"operations":[{"operation":"upsert","request":{"key":"ttl","value":1,"metadata":{"ttlInSeconds":"18446744074"}}}]}`,
			400, "ERR_MALFORMED_REQUEST", []string{"ttlInSeconds"}},
		{"ttlInSeconds -1: never expires", "", `[{"key":"forever","value":1,"metadata":{"ttlInSeconds":"-1"}}]`, 204, "", nil},
		{"ttlInSeconds the longest", "", `[{"key":"longest","value":1,"metadata":{"ttlInSeconds":"9223372036"}}]`, 204, "", nil},
		{"bulk of the most keys the body holds", "/bulk", bulkBody(-1, 1_000_000), 400, "ERR_MALFORMED_REQUEST", []string{"limit of 10000"}},
		{"bulk one key over the bound", "/bulk", bulkBody(10001, 10), 400, "ERR_MALFORMED_REQUEST", []string{"10001 keys", "limit of 10000"}},
		{"bulk with negative parallelism", "/bulk", bulkBody(3, -1), 400, "ERR_MALFORMED_REQUEST", []string{"parallelism"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := rawRequest(t, s.httpPort, post("/v1.0/state/statestore"+c.path, c.body))
			if status != c.status {
				t.Fatalf("status %d, want %d: %.300s", status, c.status, body)
			}
			if c.code == "" {
				return
			}
			var e struct{ ErrorCode, Message string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.ErrorCode != c.code {
				t.Fatalf("body %.300s; want errorCode %s", body, c.code)
			}
			for _, m := range c.msgHas {
				if !strings.Contains(e.Message, m) {
					t.Errorf("message %q does not mention %q", e.Message, m)
				}
			}
		})
	}

	api := runtimev1pb.NewDaprClient(grpcConn(t, s))
	ctx := ctxT(t)
	ops := func(n int) []*runtimev1pb.TransactionalStateOperation {
		out := make([]*runtimev1pb.TransactionalStateOperation, n)
		for i := range out {
			out[i] = &runtimev1pb.TransactionalStateOperation{OperationType: "delete", Request: &commonv1pb.StateItem{Key: strconv.Itoa(i)}}
		}
		return out
	}
	ttlItem := &commonv1pb.StateItem{Key: "ttl", Value: []byte("1"), Metadata: map[string]string{"ttlInSeconds": "18446744074"}}
	_, err := api.ExecuteStateTransaction(ctx, &runtimev1pb.ExecuteStateTransactionRequest{StoreName: "statestore", Operations: ops(1001)})
	wantStatus(t, err, codes.InvalidArgument, "DAPR_STATE_TOO_MANY_TRANSACTIONS", "limit of 1000", "maxTransactionOperations")
	_, err = api.ExecuteStateTransaction(ctx, &runtimev1pb.ExecuteStateTransactionRequest{StoreName: "statestore",
		Operations: append(ops(1), &runtimev1pb.TransactionalStateOperation{OperationType: "merge", Request: &commonv1pb.StateItem{Key: "a"}})})
	wantStatus(t, err, codes.InvalidArgument, "ERR_NOT_SUPPORTED_STATE_OPERATION", "operations[1]", `"merge"`, "upsert, delete")
	_, err = api.SaveState(ctx, &runtimev1pb.SaveStateRequest{StoreName: "statestore", States: []*commonv1pb.StateItem{ttlItem}})
	wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "ttlInSeconds", "1 to 9223372036, or -1")
	_, err = api.ExecuteStateTransaction(ctx, &runtimev1pb.ExecuteStateTransactionRequest{StoreName: "statestore",
		Operations: []*runtimev1pb.TransactionalStateOperation{{OperationType: "upsert", Request: ttlItem}}})
	wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "ttlInSeconds")
	keys := make([]string, 10001)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	_, err = api.GetBulkState(ctx, &runtimev1pb.GetBulkStateRequest{StoreName: "statestore", Keys: keys, Parallelism: 1_000_000})
	wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "limit of 10000")

	// Nothing of a refused request is stored; what was accepted is, as asked.
	for _, k := range []string{"ttl", "op"} {
		if n, err := rc.Exists(context.Background(), "hostile-state||"+k).Result(); err != nil || n != 0 {
			t.Errorf("%s is in Redis (%d, %v) after refused requests", k, n, err)
		}
	}
	for k, forever := range map[string]bool{"forever": true, "longest": false} {
		ttl, err := rc.TTL(context.Background(), "hostile-state||"+k).Result()
		if err != nil || (ttl < 0) != forever || ttl == -2 {
			t.Errorf("TTL of %s: %v, %v", k, ttl, err)
		}
	}
}

// TestBulkLargest: the largest bulk requests the body limit allows, with
// parallelism 1,000,000, against a real sidecar and Redis holding 4 KiB
// values. At the key bound the answer (40 MB) streams and is whole, in
// order; past it the request is refused naming the bound. The sidecar's
// peak resident memory stays under 128 MiB, and no item shows a key prefix.
func TestBulkLargest(t *testing.T) {
	s, rc := redisSidecar(t, "bulkapp")
	ctx := context.Background()
	const n, size = 10000, 4096
	value := `"` + strings.Repeat("v", size-2) + `"`
	p := rc.Pipeline()
	for i := range n {
		p.HSet(ctx, "bulkapp||k"+strconv.Itoa(i), "data", value, "version", 1)
	}
	p.Set(ctx, "bulkapp||k13", "a string, not a hash: its read fails", 0)
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	at := bulkBody(n, 1_000_000)
	resp, b := do(t, "POST", s.url+"/v1.0/state/statestore/bulk", strings.NewReader(at), nil)
	var items []struct {
		Key   string          `json:"key"`
		Data  json.RawMessage `json:"data"`
		ETag  string          `json:"etag"`
		Error string          `json:"error"`
	}
	if err := json.Unmarshal(b, &items); resp.StatusCode != 200 || err != nil || len(items) != n {
		t.Fatalf("bulk at the key bound: %d, %d items, %v: %.300s", resp.StatusCode, len(items), err, b)
	}
	for i, it := range items {
		switch {
		case it.Key != "k"+strconv.Itoa(i):
			t.Fatalf("item %d is %q", i, it.Key)
		case i == 13:
			if it.Error == "" || strings.Contains(it.Error, "||") || it.Data != nil {
				t.Errorf("the unreadable key's item: %+v; want its error, without the key prefix", it)
			}
		case string(it.Data) != value || it.ETag != "1" || it.Error != "":
			t.Fatalf("item %d: %d bytes, etag %q, error %q", i, len(it.Data), it.ETag, it.Error)
		}
	}

	over := bulkBody(-1, 1_000_000)
	resp, b = do(t, "POST", s.url+"/v1.0/state/statestore/bulk", strings.NewReader(over), nil)
	if resp.StatusCode != 400 || !strings.Contains(string(b), `"errorCode":"ERR_MALFORMED_REQUEST"`) || !strings.Contains(string(b), "limit of 10000") {
		t.Errorf("bulk of %d bytes of keys: %d %.300s", len(over), resp.StatusCode, b)
	}

	// The same at the key bound over gRPC, whose answer is one message: over
	// the body limit, refused once it gets there.
	api := runtimev1pb.NewDaprClient(grpcConn(t, s))
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	_, err := api.GetBulkState(ctxT(t), &runtimev1pb.GetBulkStateRequest{StoreName: "statestore", Keys: keys, Parallelism: 1_000_000})
	wantStatus(t, err, codes.ResourceExhausted, "ERR_STATE_BULK_GET", "--max-body-size")
	got, err := api.GetBulkState(ctxT(t), &runtimev1pb.GetBulkStateRequest{StoreName: "statestore", Keys: keys[:100], Parallelism: 1_000_000})
	if err != nil || len(got.GetItems()) != 100 {
		t.Fatalf("gRPC bulk of 100 keys: %v", err)
	}
	if e := got.GetItems()[13].GetError(); e == "" || strings.Contains(e, "||") {
		t.Errorf("gRPC: the unreadable key's error %q; want one without the key prefix", e)
	}

	if peak := peakRSS(t, s.Proc); peak > 128<<20 {
		t.Errorf("sidecar peak RSS %.1f MiB; want under 128 MiB", float64(peak)/(1<<20))
	} else {
		t.Logf("sidecar peak RSS %.1f MiB", float64(peak)/(1<<20))
	}
}
