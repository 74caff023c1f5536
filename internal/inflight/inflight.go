// Package inflight keeps named things that are replaced or removed while
// they serve (pkg/state's stores, pkg/pubsub's brokers): a Gate counts the
// calls in flight on one and says when the last has ended once it is
// retired, and Swap replaces one in a copy-on-write map that readers load
// without a lock.
package inflight

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Gate counts the calls in flight on one thing. Once retired it takes no
// new call, and the channel Retire returns is closed when the last call in
// flight ends. Init it before use.
type Gate struct {
	n         atomic.Int64 // calls in flight, plus retired once retired
	idle      chan struct{}
	idleOnce  sync.Once
	closeOnce sync.Once
}

// retired is added to Gate.n when the thing is retired.
const retired = 1 << 62

// Init makes g ready for use.
func (g *Gate) Init() { g.idle = make(chan struct{}) }

// Acquire counts a new call, unless the thing is retired.
func (g *Gate) Acquire() bool {
	if g.n.Add(1)&retired != 0 {
		g.Release()
		return false
	}
	return true
}

// Release ends a call counted by Acquire.
func (g *Gate) Release() {
	if g.n.Add(-1) == retired {
		g.idleOnce.Do(func() { close(g.idle) })
	}
}

// Retire takes the thing out of use; it is called once. The channel is
// closed when no call is in flight.
func (g *Gate) Retire() <-chan struct{} {
	if g.n.Add(retired) == retired {
		g.idleOnce.Do(func() { close(g.idle) })
	}
	return g.idle
}

// CloseOnce runs close the first time it is called, and returns its error
// (nil on later calls).
func (g *Gate) CloseOnce(close func() error) error {
	var err error
	g.closeOnce.Do(func() { err = close() })
	return err
}

// Swap makes n (nil: none) the value of name in the map p points at, by
// storing a changed copy, and returns the value it replaced (nil: none).
// Writers hold a lock of their own; readers Load p.
func Swap[T any](p *atomic.Pointer[map[string]*T], name string, n *T) (prev *T) {
	m := maps.Clone(*p.Load())
	if m == nil {
		m = map[string]*T{}
	}
	prev = m[name]
	if n != nil {
		m[name] = n
	} else {
		delete(m, name)
	}
	p.Store(&m)
	return prev
}
