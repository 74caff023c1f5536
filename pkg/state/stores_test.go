package state_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
)

// tracked is a store that answers its name, can hold a Get until released,
// and knows whether it was closed, and whether it was called after.
type tracked struct {
	state.Store
	name    string
	hold    chan struct{} // nil: Get answers at once
	entered chan struct{} // a held Get has started
	closed  atomic.Bool
	late    atomic.Int32 // calls after Close
	closes  atomic.Int32
}

func newTracked(name string) *tracked { return &tracked{Store: memory.New(0), name: name} }

func (s *tracked) Get(ctx context.Context, key string) (*state.Item, error) {
	if s.closed.Load() {
		s.late.Add(1)
	}
	if s.hold != nil {
		close(s.entered)
		<-s.hold
	}
	return &state.Item{Value: []byte(s.name)}, nil
}

func (s *tracked) Close() error {
	s.closed.Store(true)
	s.closes.Add(1)
	return nil
}

func get(t *testing.T, svc *state.Service, store string) string {
	t.Helper()
	it, err := svc.Get(context.Background(), store, "k")
	if err != nil {
		t.Fatal(err)
	}
	return string(it.Value)
}

// A replaced store finishes the calls in flight on it, takes no new one,
// and is closed once they end.
func TestPutReplacesAfterCallsInFlight(t *testing.T) {
	svc := state.NewService("app", "")
	old, next := newTracked("old"), newTracked("new")
	old.hold, old.entered = make(chan struct{}), make(chan struct{})
	must(t, svc.Add(state.StoreConfig{Name: "s", Type: "state.test", Store: old}))
	inFlight := make(chan string)
	go func() {
		it, err := svc.Get(context.Background(), "s", "k")
		if err != nil {
			inFlight <- err.Error()
			return
		}
		inFlight <- string(it.Value)
	}()
	<-old.entered
	if err := svc.Add(state.StoreConfig{Name: "s", Store: next}); err == nil {
		t.Error("Add of a name already there: no error")
	}
	must(t, svc.Put(state.StoreConfig{Name: "s", Type: "state.test", Store: next}))
	if got := get(t, svc, "s"); got != "new" {
		t.Errorf("a call after Put answered from %q", got)
	}
	if old.closed.Load() {
		t.Fatal("the replaced store was closed with a call in flight")
	}
	close(old.hold)
	if got := <-inFlight; got != "old" {
		t.Errorf("the call in flight answered %q; want it finished on the old store", got)
	}
	waitClosed(t, old)
	if next.closed.Load() {
		t.Error("the new store was closed")
	}
	if err := svc.Put(state.StoreConfig{Name: "s", KeyPrefix: "a||b", Store: newTracked("bad")}); err == nil {
		t.Error("Put of a bad key prefix: no error")
	}
	if got := get(t, svc, "s"); got != "new" {
		t.Errorf("after a refused Put the store answers from %q", got)
	}
}

func TestRemove(t *testing.T) {
	svc := state.NewService("app", "")
	st := newTracked("s")
	must(t, svc.Add(state.StoreConfig{Name: "s", Store: st}))
	must(t, svc.Add(state.StoreConfig{Name: "other", Store: memory.New(0)}))
	if !svc.Remove("s") {
		t.Fatal("Remove of a store there: false")
	}
	if svc.Remove("s") {
		t.Error("Remove of a store already removed: true")
	}
	if _, err := svc.Get(context.Background(), "s", "k"); !errors.Is(err, state.ErrStoreNotFound) {
		t.Errorf("a removed store answers %v; want ErrStoreNotFound", err)
	}
	waitClosed(t, st)
	if got := svc.Stores(); len(got) != 1 || got[0].Name != "other" {
		t.Errorf("stores %v", got)
	}
}

func waitClosed(t *testing.T, s *tracked) {
	t.Helper()
	for range 1000 {
		if s.closed.Load() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("store %q was not closed once its calls ended", s.name)
}

// Under calls from many goroutines and a Put after another, every call is
// answered by a store not yet closed, and each store is closed once.
func TestPutUnderLoad(t *testing.T) {
	svc := state.NewService("app", "")
	first := newTracked("0")
	must(t, svc.Add(state.StoreConfig{Name: "s", Store: first}))
	stores := []*tracked{first}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var calls, failed atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				calls.Add(1)
				if _, err := svc.Get(context.Background(), "s", "k"); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	for i := 1; i <= 200; i++ {
		st := newTracked(fmt.Sprint(i))
		stores = append(stores, st)
		must(t, svc.Put(state.StoreConfig{Name: "s", Store: st}))
	}
	cancel()
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d calls failed", failed.Load(), calls.Load())
	}
	for _, st := range stores[:len(stores)-1] {
		waitClosed(t, st)
	}
	for _, st := range stores {
		if st.late.Load() != 0 || st.closes.Load() > 1 {
			t.Errorf("store %s: %d calls after Close, closed %d times", st.name, st.late.Load(), st.closes.Load())
		}
	}
	must(t, svc.Close())
	if last := stores[len(stores)-1]; !last.closed.Load() {
		t.Error("Close left the store in use open")
	}
}
