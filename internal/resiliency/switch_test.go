package resiliency

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/pkg/resolver"
	"github.com/tandem-run/tandem/pkg/state"
)

// A Switch applies the policies set last to the calls that start after,
// and keeps the breaker of a target whose policy has not changed.
func TestSwitch(t *testing.T) {
	rs, err := Parse([]byte(doc), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewSet(rs, "front")
	if err != nil {
		t.Fatal(err)
	}
	next := &refusingCaller{kind: wire.KindUnreachable}
	sw := NewSwitch(next, nil)
	tries := func() int32 {
		before := next.calls.Load()
		_, _ = sw.Invoke(context.Background(), &invoke.Call{Target: resolver.Target{ID: "addapp"}, Verb: "GET", Header: http.Header{}})
		return next.calls.Load() - before
	}
	if got := tries(); got != 1 {
		t.Errorf("no policies: %d tries", got)
	}
	sw.Set(set)
	if got := tries(); got != 3 {
		t.Errorf("with retry quick: %d tries, want 3", got)
	}
	// The breaker has counted 3 failures and is open; a Set of the same
	// policies keeps it open.
	same, _ := NewSet(rs, "front")
	sw.Set(same)
	if _, err := sw.Invoke(context.Background(), &invoke.Call{Target: resolver.Target{ID: "addapp"}, Verb: "GET", Header: http.Header{}}); !errors.Is(err, ErrOpen) {
		t.Errorf("after a Set of the same policies: %v; want the breaker still open", err)
	}
	changed, err := Parse([]byte(strings.Replace(doc, "maxRetries: 2", "maxRetries: 1", 1)), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := NewSet(changed, "front")
	sw.Set(cs)
	if got := tries(); got != 2 {
		t.Errorf("with a changed policy: %d tries, want 2 (a new breaker, closed)", got)
	}
	sw.Set(nil)
	if got := tries(); got != 1 {
		t.Errorf("policies taken out: %d tries", got)
	}

	// Store calls.
	calls := 0
	failing := func(context.Context) error { calls++; return errors.New("down") }
	mw := sw.StateMiddleware()
	call := &state.Call{Store: state.StoreConfig{Name: "statestore"}, Kind: state.KindGet}
	_ = mw(context.Background(), call, failing)
	if calls != 1 {
		t.Errorf("no policies: %d tries of a store call", calls)
	}
	sw.Set(set)
	calls = 0
	_ = mw(context.Background(), call, failing)
	if calls != 3 {
		t.Errorf("with retry quick: %d tries of a store call, want 3", calls)
	}
	if sw.Policies() != set {
		t.Error("Policies is not the set in force")
	}
}
