package state_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
)

func TestParseTTL(t *testing.T) {
	for _, c := range []struct {
		v    string // "" for no ttlInSeconds at all
		want time.Duration
		ok   bool
	}{
		{"", 0, true},
		{"1", time.Second, true},
		{"3600", time.Hour, true},
		{"-1", -1, true},
		{"9223372036", 9223372036 * time.Second, true}, // the most a Duration holds
		{"9223372037", 0, false},
		{"18446744074", 0, false}, // was saved with a 1 s life
		{"99999999999999999999", 0, false},
		{"0", 0, false},
		{"-2", 0, false},
		{"1.5", 0, false},
		{"1e3", 0, false},
		{"soon", 0, false},
		{" 5", 0, false},
		{"0x10", 0, false},
	} {
		t.Run(c.v, func(t *testing.T) {
			md := map[string]string{}
			if c.v != "" {
				md[state.MetadataTTL] = c.v
			}
			got, err := state.ParseTTL("k", md)
			if !c.ok {
				if !errors.Is(err, state.ErrBadRequest) || !strings.Contains(err.Error(), "ttlInSeconds") || !strings.Contains(err.Error(), "1 to 9223372036, or -1") {
					t.Fatalf("ParseTTL(%q) = %v, %v; want ErrBadRequest naming ttlInSeconds and the range", c.v, got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("ParseTTL(%q) = %v, %v; want %v", c.v, got, err, c.want)
			}
		})
	}
}

func TestParseDefaultTTL(t *testing.T) {
	for _, c := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"-1", 0, true},
		{"60", time.Minute, true},
		{"9223372036", 9223372036 * time.Second, true},
		{"9223372037", 0, false},
		{"18446744074", 0, false},
		{"-3", 0, false},
		{"1.5", 0, false},
		{"", 0, false},
	} {
		t.Run(c.v, func(t *testing.T) {
			got, err := state.ParseDefaultTTL(c.v)
			if !c.ok {
				if err == nil || !strings.Contains(err.Error(), "ttlInSeconds") || !strings.Contains(err.Error(), "0 to 9223372036") {
					t.Fatalf("ParseDefaultTTL(%q) = %v, %v; want an error naming ttlInSeconds and the range", c.v, got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("ParseDefaultTTL(%q) = %v, %v; want %v", c.v, got, err, c.want)
			}
		})
	}
}

// service returns a Service of app "myapp" with st as store "s".
func service(t *testing.T, st state.Store, maxOps int) *state.Service {
	t.Helper()
	svc := state.NewService("myapp", "")
	if err := svc.Add(state.StoreConfig{Name: "s", Type: "test", Store: st, MaxTransactionOperations: maxOps}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	return svc
}

func deletes(n int) []state.Op {
	ops := make([]state.Op, n)
	for i := range ops {
		ops[i].Delete = &state.DeleteRequest{Key: fmt.Sprint("k", i)}
	}
	return ops
}

func TestTransactionLimit(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		maxOps   int // of the store; 0: the default
		ops      int
		wantErr  bool
		limitMsg string
	}{
		{"default, at the limit", 0, state.DefaultMaxTransactionOperations, false, ""},
		{"default, one over", 0, state.DefaultMaxTransactionOperations + 1, true, "limit of 1000"},
		{"default, the reported 85,000", 0, 85000, true, "limit of 1000"},
		{"raised, at the limit", 5000, 5000, false, ""},
		{"lowered, one over", 2, 3, true, "limit of 2"},
		{"empty", 0, 0, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := service(t, memory.New(0), c.maxOps)
			err := svc.Transact(ctx, "s", deletes(c.ops))
			if !c.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, state.ErrTooLarge) || !strings.Contains(err.Error(), c.limitMsg) || !strings.Contains(err.Error(), "maxTransactionOperations") {
				t.Fatalf("%d operations: %v; want ErrTooLarge naming the %q and maxTransactionOperations", c.ops, err, c.limitMsg)
			}
		})
	}
	for _, bad := range []int{-1, state.HighestMaxTransactionOperations + 1} {
		err := state.NewService("a", "").Add(state.StoreConfig{Name: "s", Store: memory.New(0), MaxTransactionOperations: bad})
		if err == nil || !strings.Contains(err.Error(), "maxTransactionOperations") {
			t.Errorf("MaxTransactionOperations %d: %v", bad, err)
		}
	}
}

// gated is a store whose Gets count how many run at once, wait a moment,
// and fail for keys ending in "-bad", naming the key as stored.
type gated struct {
	state.Store
	now, most, calls atomic.Int32
}

func (g *gated) Get(ctx context.Context, key string) (*state.Item, error) {
	g.calls.Add(1)
	n := g.now.Add(1)
	defer g.now.Add(-1)
	for m := g.most.Load(); n > m && !g.most.CompareAndSwap(m, n); m = g.most.Load() {
	}
	time.Sleep(time.Millisecond)
	if strings.HasSuffix(key, "-bad") {
		return nil, fmt.Errorf("redis at 127.0.0.1:1: get %q: WRONGTYPE", key)
	}
	return &state.Item{Value: []byte(key), ETag: "1"}, nil
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint("k", i)
	}
	return out
}

func TestBulkGetBounds(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name              string
		keys, parallelism int
		wantMost          int32 // reads at once, at most
	}{
		{"default parallelism", 300, 0, state.DefaultBulkParallelism},
		{"asked for one", 50, 1, 1},
		{"a million is served at the cap", 1000, 1_000_000, state.MaxBulkParallelism},
		{"the most keys", state.MaxBulkKeys, 1_000_000, state.MaxBulkParallelism},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := &gated{Store: memory.New(0)}
			svc := service(t, g, 0)
			var got []string
			err := svc.BulkGet(ctx, "s", keys(c.keys), c.parallelism, func(it state.BulkItem) error {
				if it.Err != nil || string(it.Value) != "myapp||"+it.Key {
					return fmt.Errorf("item %+v", it)
				}
				got = append(got, it.Key)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != c.keys || got[0] != "k0" || got[c.keys-1] != fmt.Sprint("k", c.keys-1) {
				t.Fatalf("%d answers, first %q last %q; want all %d in key order", len(got), got[0], got[len(got)-1], c.keys)
			}
			for i, k := range got {
				if k != fmt.Sprint("k", i) {
					t.Fatalf("answer %d is %q: out of order", i, k)
				}
			}
			if m := g.most.Load(); m > c.wantMost {
				t.Errorf("%d reads ran at once; want at most %d", m, c.wantMost)
			}
		})
	}
}

func TestBulkGetRefusals(t *testing.T) {
	for _, c := range []struct {
		name        string
		store       string
		keys        []string
		parallelism int
		is          error
		msg         string
	}{
		{"one key over the bound", "s", keys(state.MaxBulkKeys + 1), 0, state.ErrTooLarge, "limit of 10000"},
		{"negative parallelism", "s", keys(3), -1, state.ErrBadRequest, "parallelism -1"},
		{"a bad key last", "s", append(keys(5), "a||b"), 0, state.ErrBadRequest, "keys[5]"},
		{"unknown store", "nope", keys(1), 0, state.ErrStoreNotFound, "nope"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := &gated{Store: memory.New(0)}
			svc := service(t, g, 0)
			emitted := 0
			err := svc.BulkGet(context.Background(), c.store, c.keys, c.parallelism, func(state.BulkItem) error { emitted++; return nil })
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v; want %v mentioning %q", err, c.is, c.msg)
			}
			if emitted != 0 || g.calls.Load() != 0 {
				t.Errorf("%d items emitted and %d reads before the refusal", emitted, g.calls.Load())
			}
		})
	}
}

func TestBulkGetStopsAtEmitError(t *testing.T) {
	g := &gated{Store: memory.New(0)}
	svc := service(t, g, 0)
	stop := errors.New("client gone")
	emitted := 0
	err := svc.BulkGet(context.Background(), "s", keys(5000), 50, func(state.BulkItem) error {
		emitted++
		if emitted == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || emitted != 5 {
		t.Fatalf("got %v after %d items; want the emit error after 5", err, emitted)
	}
	// What was already started finishes; nothing more starts.
	if n := g.calls.Load(); n > 5+50 {
		t.Errorf("%d reads after the answer stopped at 5 with parallelism 50", n)
	}
	if n := g.now.Load(); n != 0 {
		t.Errorf("%d reads still running after BulkGet returned", n)
	}
}

// TestErrorsHideThePrefix: a store's error text names keys as stored;
// nothing the Service returns may show the prefix.
func TestErrorsHideThePrefix(t *testing.T) {
	ctx := context.Background()
	st := &failing{}
	for _, prefix := range []string{"appid", "name", `lit"eral`} {
		t.Run(prefix, func(t *testing.T) {
			svc := state.NewService("myapp", "")
			if err := svc.Add(state.StoreConfig{Name: "s", Store: st, KeyPrefix: prefix}); err != nil {
				t.Fatal(err)
			}
			var errs []error
			_, err := svc.Get(ctx, "s", "k")
			errs = append(errs, err)
			errs = append(errs, svc.Save(ctx, "s", []state.SetRequest{{Key: "k"}}))
			errs = append(errs, svc.Delete(ctx, "s", state.DeleteRequest{Key: "k"}))
			errs = append(errs, svc.Transact(ctx, "s", []state.Op{{Delete: &state.DeleteRequest{Key: "k"}}}))
			must(t, svc.BulkGet(ctx, "s", []string{"k"}, 0, func(it state.BulkItem) error {
				errs = append(errs, it.Err)
				return nil
			}))
			for i, err := range errs {
				if err == nil || strings.Contains(err.Error(), "||") || !strings.Contains(err.Error(), `"k"`) || !errors.Is(err, errBoom) {
					t.Errorf("error %d: %v; want the cause, naming \"k\" without its prefix", i, err)
				}
			}
		})
	}
}

var errBoom = errors.New("boom")

// failing fails everything, naming the key it was given.
type failing struct{}

func (f *failing) Get(_ context.Context, key string) (*state.Item, error) {
	return nil, fmt.Errorf("get %q: %w", key, errBoom)
}

func (f *failing) Set(_ context.Context, req state.SetRequest) error {
	return fmt.Errorf("set %q: %w", req.Key, errBoom)
}

func (f *failing) Delete(_ context.Context, req state.DeleteRequest) error {
	return fmt.Errorf("delete %q: %w", req.Key, errBoom)
}

func (f *failing) Transact(_ context.Context, ops []state.Op) error {
	return fmt.Errorf("operation 0: key %q: %w", ops[0].Delete.Key, errBoom)
}

func TestUnsupportedOperation(t *testing.T) {
	err := state.UnsupportedOperation("merge")
	if !errors.Is(err, state.ErrUnsupportedOperation) || !strings.Contains(err.Error(), `"merge"`) || !strings.Contains(err.Error(), "upsert, delete") {
		t.Errorf("got %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
