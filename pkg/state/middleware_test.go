package state_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
)

// A new concern is one function: this one records every store call, and
// sees each kind of operation with its request as the store receives it.
func TestMiddlewareSeesEveryStoreCall(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	record := func(ctx context.Context, c *state.Call, next func(context.Context) error) error {
		err := next(ctx)
		outcome := "ok"
		if err != nil {
			outcome = err.Error()
		}
		var what string
		switch c.Kind {
		case state.KindGet:
			what = c.Key
		case state.KindSet:
			what = fmt.Sprintf("%s=%s", c.Set.Key, c.Set.Value)
		case state.KindDelete:
			what = c.Delete.Key
		case state.KindTransaction:
			what = fmt.Sprint(len(c.Ops), " ops")
		}
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s %s %s: %s", c.Store.Name, c.Kind, what, outcome))
		return err
	}
	svc := service(t, memory.New(0), 0)
	svc.Use(record)
	ctx := context.Background()

	must(t, svc.Save(ctx, "s", []state.SetRequest{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}}))
	if it, err := svc.Get(ctx, "s", "a"); err != nil || it == nil || string(it.Value) != "1" {
		t.Fatalf("get through the middleware: %v, %v", it, err)
	}
	must(t, svc.BulkGet(ctx, "s", []string{"a", "b"}, 0, func(state.BulkItem) error { return nil }))
	must(t, svc.Delete(ctx, "s", state.DeleteRequest{Key: "a"}))
	must(t, svc.Transact(ctx, "s", []state.Op{{Delete: &state.DeleteRequest{Key: "b"}}}))
	stale := "999"
	if err := svc.Delete(ctx, "s", state.DeleteRequest{Key: "b", ETag: &stale}); !errors.Is(err, state.ErrETagMismatch) {
		t.Fatalf("delete with a stale ETag: %v", err)
	}

	slices.Sort(seen[3:5]) // a bulk read's keys are read in parallel
	want := []string{
		"s set myapp||a=1: ok",
		"s set myapp||b=2: ok",
		"s get myapp||a: ok",
		"s get myapp||a: ok",
		"s get myapp||b: ok",
		"s delete myapp||a: ok",
		"s transaction 1 ops: ok",
		`s delete myapp||b: key "myapp||b": etag "999" does not match: etag mismatch`, // the store's own error
	}
	if !slices.Equal(seen, want) {
		t.Errorf("the middleware saw\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

// counting is a store that counts its calls.
type counting struct {
	state.Store
	mu    sync.Mutex
	calls int
}

func (c *counting) Get(ctx context.Context, key string) (*state.Item, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return c.Store.Get(ctx, key)
}

// Middleware runs in the order given, the first outermost; each call of
// next is one more call of the store, and middleware that does not call it
// answers in the store's place.
func TestMiddlewareChain(t *testing.T) {
	var order []string
	around := func(name string) state.Middleware {
		return func(ctx context.Context, c *state.Call, next func(context.Context) error) error {
			order = append(order, name+">")
			err := next(ctx)
			order = append(order, "<"+name)
			return err
		}
	}
	twice := func(ctx context.Context, c *state.Call, next func(context.Context) error) error {
		if err := next(ctx); err != nil {
			return err
		}
		return next(ctx)
	}
	errClosed := errors.New("closed for the test")
	refuse := func(context.Context, *state.Call, func(context.Context) error) error { return errClosed }

	st := &counting{Store: memory.New(0)}
	svc := service(t, st, 0)
	svc.Use(around("a"), nil, around("b"), twice)
	if _, err := svc.Get(context.Background(), "s", "k"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a>", "b>", "<b", "<a"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	if st.calls != 2 {
		t.Errorf("the store was called %d times, want 2", st.calls)
	}

	svc.Use(refuse)
	_, err := svc.Get(context.Background(), "s", "k")
	if !errors.Is(err, errClosed) || !strings.Contains(err.Error(), `state store "s": get "k"`) {
		t.Errorf("a refusal by middleware: %v; want it, wrapped as a store error", err)
	}
	if st.calls != 2 {
		t.Errorf("the store was called %d times, want still 2", st.calls)
	}
}
