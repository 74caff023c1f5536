// Package statetest is the contract every state.Store meets. Run it from a
// store's tests with a constructor of fresh, empty stores:
//
//	statetest.Run(t, func(t *testing.T) state.Store { return memory.New(0) })
//
// A store that applies a transaction only when its keys live together (a
// Redis Cluster: one hash slot) runs it with OneSlotTransactions, and
// tests its refusal of the others itself.
package statetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/pkg/state"
)

// Run runs the contract suite. newStore returns an empty store; the suite
// closes it when a subtest ends if it is an io.Closer.
func Run(t *testing.T, newStore func(t *testing.T) state.Store, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	// tk is the name of a key of the transaction cases.
	tk := func(k string) string { return k }
	if o.oneSlot {
		tk = func(k string) string { return "{tx}" + k }
	}
	ctx := context.Background()
	fresh := func(t *testing.T) state.Store {
		s := newStore(t)
		if c, ok := s.(io.Closer); ok {
			t.Cleanup(func() { _ = c.Close() })
		}
		return s
	}
	etag := func(s string) *string { return &s }

	t.Run("get missing", func(t *testing.T) {
		s := fresh(t)
		it, err := s.Get(ctx, "nope")
		if err != nil || it != nil {
			t.Fatalf("Get(missing) = %v, %v; want nil, nil", it, err)
		}
	})

	t.Run("set and get every JSON type and raw bytes", func(t *testing.T) {
		s := fresh(t)
		values := []string{`"a string"`, `42`, `-1.5e3`, `true`, `false`, `null`, `{"a":[1,{"b":null}]}`, `[]`, "\x00\xff\xfe raw \n bytes", ""}
		for i, v := range values {
			key := fmt.Sprintf("k%d", i)
			if err := s.Set(ctx, state.SetRequest{Key: key, Value: []byte(v)}); err != nil {
				t.Fatalf("Set(%q): %v", v, err)
			}
			it, err := s.Get(ctx, key)
			if err != nil || it == nil || string(it.Value) != v || it.ETag == "" {
				t.Fatalf("Get after Set(%q) = %+v, %v", v, it, err)
			}
		}
	})

	t.Run("etag changes on every write", func(t *testing.T) {
		s := fresh(t)
		must(t, s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("1")}))
		a := get(t, s, "k").ETag
		must(t, s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("1")}))
		if b := get(t, s, "k").ETag; b == a {
			t.Errorf("ETag %q did not change on a write", a)
		}
	})

	t.Run("etag mismatch and success", func(t *testing.T) {
		s := fresh(t)
		must(t, s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v1")}))
		old := get(t, s, "k").ETag
		must(t, s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v2"), ETag: &old}))
		err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v3"), ETag: &old})
		if !errors.Is(err, state.ErrETagMismatch) {
			t.Fatalf("Set with a stale etag: %v, want ErrETagMismatch", err)
		}
		if v := string(get(t, s, "k").Value); v != "v2" {
			t.Errorf("value after a refused write = %q, want v2", v)
		}
		if err := s.Set(ctx, state.SetRequest{Key: "absent", Value: []byte("x"), ETag: etag("1")}); !errors.Is(err, state.ErrETagMismatch) {
			t.Errorf("Set of a missing key with an etag: %v, want ErrETagMismatch", err)
		}
		if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("x"), ETag: etag("not-a-version")}); !errors.Is(err, state.ErrETagInvalid) && !errors.Is(err, state.ErrETagMismatch) {
			t.Errorf("Set with a malformed etag: %v, want ErrETagInvalid or ErrETagMismatch", err)
		}
	})

	t.Run("first-write", func(t *testing.T) {
		s := fresh(t)
		must(t, s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("first"), FirstWrite: true}))
		err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("second"), FirstWrite: true})
		if !errors.Is(err, state.ErrETagMismatch) {
			t.Fatalf("second first-write without etag: %v, want ErrETagMismatch", err)
		}
		e := get(t, s, "k").ETag
		must(t, s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("third"), FirstWrite: true, ETag: &e}))
		if v := string(get(t, s, "k").Value); v != "third" {
			t.Errorf("value %q, want third", v)
		}
	})

	t.Run("delete with etag", func(t *testing.T) {
		s := fresh(t)
		must(t, s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v")}))
		e := get(t, s, "k").ETag
		if err := s.Delete(ctx, state.DeleteRequest{Key: "k", ETag: etag(e + "0")}); !errors.Is(err, state.ErrETagMismatch) {
			t.Fatalf("Delete with a wrong etag: %v", err)
		}
		must(t, s.Delete(ctx, state.DeleteRequest{Key: "k", ETag: &e}))
		if it, _ := s.Get(ctx, "k"); it != nil {
			t.Fatalf("value still there after Delete")
		}
		must(t, s.Delete(ctx, state.DeleteRequest{Key: "k"})) // deleting a missing key is fine
	})

	t.Run("transactions in order", func(t *testing.T) {
		s := fresh(t)
		tx, ok := s.(state.Transactional)
		if !ok {
			t.Skip("store is not transactional")
		}
		must(t, s.Set(ctx, state.SetRequest{Key: tk("gone"), Value: []byte("x")}))
		must(t, tx.Transact(ctx, []state.Op{
			{Set: &state.SetRequest{Key: tk("a"), Value: []byte("1")}},
			{Set: &state.SetRequest{Key: tk("a"), Value: []byte("2")}},
			{Delete: &state.DeleteRequest{Key: tk("gone")}},
			{Set: &state.SetRequest{Key: tk("b"), Value: []byte("3")}},
			{Delete: &state.DeleteRequest{Key: tk("b")}},
		}))
		if v := string(get(t, s, tk("a")).Value); v != "2" {
			t.Errorf("a = %q, want 2 (operations applied in order)", v)
		}
		for _, k := range []string{"gone", "b"} {
			if it, _ := s.Get(ctx, tk(k)); it != nil {
				t.Errorf("%s still there", k)
			}
		}
		// One failing ETag check: nothing applies.
		e := get(t, s, tk("a")).ETag
		err := tx.Transact(ctx, []state.Op{
			{Set: &state.SetRequest{Key: tk("c"), Value: []byte("new")}},
			{Set: &state.SetRequest{Key: tk("a"), Value: []byte("stale"), ETag: etag(e + "9")}},
		})
		if !errors.Is(err, state.ErrETagMismatch) {
			t.Fatalf("transaction with a stale etag: %v", err)
		}
		if it, _ := s.Get(ctx, tk("c")); it != nil {
			t.Errorf("a failed transaction wrote c")
		}
		if v := string(get(t, s, tk("a")).Value); v != "2" {
			t.Errorf("a failed transaction changed a to %q", v)
		}
	})

	t.Run("transactions check each operation after the ones before it", func(t *testing.T) {
		s := fresh(t)
		tx, ok := s.(state.Transactional)
		if !ok {
			t.Skip("store is not transactional")
		}
		must(t, s.Set(ctx, state.SetRequest{Key: tk("a"), Value: []byte("a1")}))
		ea := get(t, s, tk("a")).ETag
		for _, c := range []struct {
			name string
			ops  []state.Op
			ok   bool
		}{
			{"first-write of a key set before", []state.Op{
				{Set: &state.SetRequest{Key: tk("n"), Value: []byte("1")}},
				{Set: &state.SetRequest{Key: tk("n"), Value: []byte("2"), FirstWrite: true}},
			}, false},
			{"an etag of a key set before", []state.Op{
				{Set: &state.SetRequest{Key: tk("a"), Value: []byte("x")}},
				{Set: &state.SetRequest{Key: tk("a"), Value: []byte("y"), ETag: &ea}},
			}, false},
			{"an etag of a key deleted before", []state.Op{
				{Delete: &state.DeleteRequest{Key: tk("a")}},
				{Delete: &state.DeleteRequest{Key: tk("a"), ETag: &ea}},
			}, false},
			{"first-write of a key deleted before", []state.Op{
				{Delete: &state.DeleteRequest{Key: tk("a"), ETag: &ea}},
				{Set: &state.SetRequest{Key: tk("a"), Value: []byte("a2"), FirstWrite: true}},
			}, true},
		} {
			err := tx.Transact(ctx, c.ops)
			if c.ok {
				if err != nil {
					t.Errorf("%s: %v", c.name, err)
				}
				continue
			}
			if !errors.Is(err, state.ErrETagMismatch) {
				t.Errorf("%s: %v, want ErrETagMismatch", c.name, err)
			}
			if it, _ := s.Get(ctx, tk("n")); it != nil {
				t.Errorf("%s: a failed transaction wrote n", c.name)
			}
			if v := string(get(t, s, tk("a")).Value); v != "a1" {
				t.Errorf("%s: a failed transaction changed a to %q", c.name, v)
			}
		}
		if v := string(get(t, s, tk("a")).Value); v != "a2" {
			t.Errorf("a = %q after the last transaction, want a2", v)
		}
	})

	t.Run("ttl expiry", func(t *testing.T) {
		s := fresh(t)
		must(t, s.Set(ctx, state.SetRequest{Key: "short", Value: []byte("v"), TTL: time.Second}))
		must(t, s.Set(ctx, state.SetRequest{Key: "long", Value: []byte("v")}))
		if it, _ := s.Get(ctx, "short"); it == nil {
			t.Fatal("value with a TTL gone at once")
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			it, err := s.Get(ctx, "short")
			must(t, err)
			if it == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("value with a 1s TTL still there after 5s")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if it, _ := s.Get(ctx, "long"); it == nil {
			t.Error("value without TTL expired")
		}
		// A save without TTL makes a value permanent again.
		must(t, s.Set(ctx, state.SetRequest{Key: "p", Value: []byte("v"), TTL: time.Second}))
		must(t, s.Set(ctx, state.SetRequest{Key: "p", Value: []byte("v")}))
		time.Sleep(1500 * time.Millisecond)
		if it, _ := s.Get(ctx, "p"); it == nil {
			t.Error("value saved again without TTL expired")
		}
	})

	t.Run("concurrent check-and-set: exactly one writer wins", func(t *testing.T) {
		s := fresh(t)
		must(t, s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("0")}))
		e := get(t, s, "k").ETag
		var wins, losses atomic.Int32
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				err := s.Set(ctx, state.SetRequest{Key: "k", Value: fmt.Appendf(nil, "%d", i), ETag: &e})
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, state.ErrETagMismatch):
					losses.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || losses.Load() != 15 {
			t.Errorf("%d writers won and %d lost; want 1 and 15", wins.Load(), losses.Load())
		}
	})

	t.Run("prefixing through the service", func(t *testing.T) {
		st := fresh(t)
		svc := state.NewService("myapp", "prod")
		must(t, svc.Add(state.StoreConfig{Name: "s1", Type: "test", Store: st}))
		must(t, svc.Save(ctx, "s1", []state.SetRequest{{Key: "k", Value: []byte(`"v"`)}}))
		if it, _ := st.Get(ctx, "myapp||k"); it == nil || string(it.Value) != `"v"` {
			t.Errorf("store holds no myapp||k: %+v", it)
		}
		var items []state.BulkItem
		must(t, svc.BulkGet(ctx, "s1", []string{"k", "missing"}, 2, func(it state.BulkItem) error {
			items = append(items, it)
			return nil
		}))
		if len(items) != 2 || items[0].Key != "k" || string(items[0].Value) != `"v"` || items[1].Key != "missing" || items[1].Value != nil {
			t.Errorf("BulkGet = %+v", items)
		}
	})
}

// Option changes how Run runs.
type Option func(*options)

type options struct{ oneSlot bool }

// OneSlotTransactions gives the keys of each transaction case one Redis
// hash tag ({tx}), for stores that apply a transaction only when its keys
// share a hash slot.
func OneSlotTransactions() Option { return func(o *options) { o.oneSlot = true } }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, s state.Store, key string) *state.Item {
	t.Helper()
	it, err := s.Get(context.Background(), key)
	if err != nil || it == nil {
		t.Fatalf("Get(%q) = %v, %v", key, it, err)
	}
	return it
}
