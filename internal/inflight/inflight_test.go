package inflight

import (
	"sync/atomic"
	"testing"
)

// A retired Gate takes no new call, and says idle once the last call in
// flight ends, not before.
func TestGate(t *testing.T) {
	var g Gate
	g.Init()
	if !g.Acquire() || !g.Acquire() {
		t.Fatal("a Gate in use refused a call")
	}
	idle := g.Retire()
	if g.Acquire() {
		t.Fatal("a retired Gate took a call")
	}
	g.Release()
	select {
	case <-idle:
		t.Fatal("idle with a call in flight")
	default:
	}
	g.Release()
	<-idle
	closes := 0
	for range 2 {
		_ = g.CloseOnce(func() error { closes++; return nil })
	}
	if closes != 1 {
		t.Errorf("closed %d times", closes)
	}
}

// Swap stores a changed copy: a map loaded before is not changed.
func TestSwap(t *testing.T) {
	var p atomic.Pointer[map[string]*int]
	p.Store(&map[string]*int{})
	one, two := 1, 2
	if prev := Swap(&p, "a", &one); prev != nil {
		t.Errorf("replaced %v in an empty map", *prev)
	}
	before := *p.Load()
	if prev := Swap(&p, "a", &two); prev != &one {
		t.Errorf("replaced %v, want the first value", prev)
	}
	if *before["a"] != 1 || *(*p.Load())["a"] != 2 {
		t.Error("the map loaded before changed, or the new one did not")
	}
	if prev := Swap(&p, "a", nil); prev != &two || len(*p.Load()) != 0 {
		t.Errorf("remove: replaced %v, left %v", prev, *p.Load())
	}
}
