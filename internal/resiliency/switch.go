package resiliency

import (
	"context"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/state"
)

// Switch holds the policies in force, replaced whole when the Resiliency
// resources change: each call (an invocation, a store call) runs under the
// policies in force when it starts, and goes on under them to its end. A
// target whose policy is the same before and after a change keeps its
// circuit breaker, with what it has counted.
type Switch struct {
	next invoke.Caller
	mu   sync.Mutex // held by Set
	cur  atomic.Pointer[inForce]
}

// inForce is what one Set puts in force.
type inForce struct {
	set     *Set
	inv     invoke.Caller     // next when no app has a policy
	state   state.Middleware  // nil when no component has a policy
	pubsub  pubsub.Middleware // nil when no component has a policy
	runners map[string]*runner
}

// NewSwitch returns a Switch that applies set (nil: none) to the calls to
// next.
func NewSwitch(next invoke.Caller, set *Set) *Switch {
	s := &Switch{next: next}
	s.Set(set)
	return s
}

// Set puts set in force (nil: no policies).
func (s *Switch) Set(set *Set) {
	if set == nil {
		set = newSet()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.cur.Load()
	f := &inForce{set: set, inv: s.next, runners: map[string]*runner{}}
	// Runners are kept by "app/<id>" and "component/<name>"; one whose
	// policy has not changed carries over.
	reuse := func(key string) func(*Policy) *runner {
		return func(p *Policy) *runner {
			if prev != nil {
				if r := prev.runners[key]; r != nil && reflect.DeepEqual(r.p, p) {
					f.runners[key] = r
					return r
				}
			}
			r := newRunner(p)
			f.runners[key] = r
			return r
		}
	}
	if len(set.Apps) > 0 {
		w := &Invoker{next: s.next, set: set, runners: map[string]*runner{}}
		for id, p := range set.Apps {
			w.runners[id] = reuse("app/" + id)(p)
		}
		f.inv = w
	}
	if len(set.Components) > 0 {
		runners := map[string]*runner{}
		for name, p := range set.Components {
			runners[name] = reuse("component/" + name)(p)
		}
		f.state = stateMiddleware(runners)
		f.pubsub = pubsubMiddleware(runners)
	}
	s.cur.Store(f)
}

// Policies is the Set in force.
func (s *Switch) Policies() *Set { return s.cur.Load().set }

// Invoke implements invoke.Caller.
func (s *Switch) Invoke(ctx context.Context, c *invoke.Call) (*http.Response, error) {
	return s.cur.Load().inv.Invoke(ctx, c)
}

// StateMiddleware applies the component policies in force (see
// Set.StateMiddleware).
func (s *Switch) StateMiddleware() state.Middleware {
	return func(ctx context.Context, c *state.Call, next func(context.Context) error) error {
		m := s.cur.Load().state
		if m == nil {
			return next(ctx)
		}
		return m(ctx, c, next)
	}
}

var _ invoke.Caller = (*Switch)(nil)

// PubsubMiddleware applies the component policies in force to publishes
// (see Set.PubsubMiddleware).
func (s *Switch) PubsubMiddleware() pubsub.Middleware {
	return func(ctx context.Context, c *pubsub.Call, next func(context.Context) error) error {
		m := s.cur.Load().pubsub
		if m == nil {
			return next(ctx)
		}
		return m(ctx, c, next)
	}
}
