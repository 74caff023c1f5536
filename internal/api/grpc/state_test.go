package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
)

// wantStatus checks err's gRPC code, ErrorInfo reason and that its message
// has each of parts.
func wantStatus(t *testing.T, err error, code codes.Code, reason string, parts ...string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("got %v; want code %s", err, code)
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Errorf("message %q does not contain %q", st.Message(), p)
		}
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == reason {
			return
		}
	}
	t.Errorf("details %v; want ErrorInfo reason %q", st.Details(), reason)
}

// badKey makes reads of keys ending in "bad" fail, naming the key as stored.
type badKey struct{ *memory.Store }

func (b badKey) Get(ctx context.Context, key string) (*state.Item, error) {
	if strings.HasSuffix(key, "bad") {
		return nil, fmt.Errorf("redis at 127.0.0.1:1: get %q: %w", key, errors.New("WRONGTYPE"))
	}
	return b.Store.Get(ctx, key)
}

func stateServer(t *testing.T, maxBody int64) *Server {
	t.Helper()
	svc := state.NewService("myapp", "")
	if err := svc.Add(state.StoreConfig{Name: "statestore", Store: badKey{memory.New(0)}, MaxTransactionOperations: 2}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	return New(Config{State: svc, MaxBodySize: maxBody})
}

func TestGetBulkStateBounds(t *testing.T) {
	ctx := context.Background()
	s := stateServer(t, 32<<10)
	var items []*commonv1pb.StateItem
	for i := range 20 {
		items = append(items, &commonv1pb.StateItem{Key: "k" + strconv.Itoa(i), Value: make([]byte, 1000)})
	}
	if _, err := s.SaveState(ctx, &runtimev1pb.SaveStateRequest{StoreName: "statestore", States: items}); err != nil {
		t.Fatal(err)
	}
	keys := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "k" + strconv.Itoa(i)
		}
		return out
	}

	resp, err := s.GetBulkState(ctx, &runtimev1pb.GetBulkStateRequest{StoreName: "statestore", Keys: append(keys(20), "bad"), Parallelism: 1_000_000})
	if err != nil || len(resp.GetItems()) != 21 {
		t.Fatalf("%d items, %v", len(resp.GetItems()), err)
	}
	for i, it := range resp.GetItems()[:20] {
		if it.GetKey() != "k"+strconv.Itoa(i) || len(it.GetData()) != 1000 || it.GetError() != "" {
			t.Errorf("item %d: key %q, %d bytes, error %q", i, it.GetKey(), len(it.GetData()), it.GetError())
		}
	}
	if e := resp.GetItems()[20].GetError(); !strings.Contains(e, "WRONGTYPE") || strings.Contains(e, "||") {
		t.Errorf("the failed item's error %q; want WRONGTYPE without the key prefix", e)
	}

	for _, c := range []struct {
		name   string
		req    *runtimev1pb.GetBulkStateRequest
		code   codes.Code
		reason string
		parts  []string
	}{
		{"keys over the bound", &runtimev1pb.GetBulkStateRequest{StoreName: "statestore", Keys: keys(state.MaxBulkKeys + 1)},
			codes.InvalidArgument, "ERR_MALFORMED_REQUEST", []string{"limit of 10000"}},
		{"negative parallelism", &runtimev1pb.GetBulkStateRequest{StoreName: "statestore", Keys: keys(1), Parallelism: -1},
			codes.InvalidArgument, "ERR_MALFORMED_REQUEST", []string{"parallelism"}},
		{"answer over the body limit", &runtimev1pb.GetBulkStateRequest{StoreName: "statestore", Keys: append(keys(20), keys(20)...)},
			codes.ResourceExhausted, "ERR_STATE_BULK_GET", []string{"32768 bytes", "--max-body-size", "HTTP API"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.GetBulkState(ctx, c.req)
			wantStatus(t, err, c.code, c.reason, c.parts...)
		})
	}
}

func TestExecuteStateTransactionRefusals(t *testing.T) {
	s := stateServer(t, 1<<20)
	upsert := func(key string, md map[string]string) *runtimev1pb.TransactionalStateOperation {
		return &runtimev1pb.TransactionalStateOperation{OperationType: "upsert", Request: &commonv1pb.StateItem{Key: key, Value: []byte("1"), Metadata: md}}
	}
	for _, c := range []struct {
		name   string
		ops    []*runtimev1pb.TransactionalStateOperation
		code   codes.Code
		reason string
		parts  []string
	}{
		{"unknown operation", []*runtimev1pb.TransactionalStateOperation{upsert("a", nil), {OperationType: "merge", Request: &commonv1pb.StateItem{Key: "a"}}},
			codes.InvalidArgument, "ERR_NOT_SUPPORTED_STATE_OPERATION", []string{"operations[1]", `"merge"`, "upsert, delete"}},
		{"over the store's limit", []*runtimev1pb.TransactionalStateOperation{upsert("a", nil), upsert("b", nil), upsert("c", nil)},
			codes.InvalidArgument, "DAPR_STATE_TOO_MANY_TRANSACTIONS", []string{"limit of 2", "maxTransactionOperations"}},
		{"ttl past a Duration", []*runtimev1pb.TransactionalStateOperation{upsert("a", map[string]string{"ttlInSeconds": "18446744074"})},
			codes.InvalidArgument, "ERR_MALFORMED_REQUEST", []string{"ttlInSeconds", "1 to 9223372036"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.ExecuteStateTransaction(context.Background(), &runtimev1pb.ExecuteStateTransactionRequest{StoreName: "statestore", Operations: c.ops})
			wantStatus(t, err, c.code, c.reason, c.parts...)
		})
	}
	_, err := s.SaveState(context.Background(), &runtimev1pb.SaveStateRequest{StoreName: "statestore", States: []*commonv1pb.StateItem{{Key: "a", Metadata: map[string]string{"ttlInSeconds": "18446744074"}}}})
	wantStatus(t, err, codes.InvalidArgument, "ERR_MALFORMED_REQUEST", "ttlInSeconds")
	if it, err := s.GetState(context.Background(), &runtimev1pb.GetStateRequest{StoreName: "statestore", Key: "a"}); err != nil || it.GetData() != nil {
		t.Errorf("a refused request wrote a: %v %v", it, err)
	}
}
