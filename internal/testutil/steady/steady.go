// Package steady is a steady load for the tests that count what a failure
// loses: writers call one after another, a pause between calls, and each
// call's id is kept when it is acknowledged, counted when it fails.
package steady

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Load is a running load. Its ids are "<prefix><writer>-<n>".
type Load struct {
	mu     sync.Mutex
	acked  [][]string // by writer
	failed int
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

// Start starts writers goroutines, each calling call(writer, id) every
// pause until Stop. A call that returns nil is acknowledged.
func Start(writers int, prefix string, pause time.Duration, call func(writer int, id string) error) *Load {
	ctx, stop := context.WithCancel(context.Background())
	l := &Load{acked: make([][]string, writers), stop: stop}
	for w := range writers {
		l.wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("%s%d-%d", prefix, w, i)
				err := call(w, id)
				l.mu.Lock()
				if err == nil {
					l.acked[w] = append(l.acked[w], id)
				} else {
					l.failed++
				}
				l.mu.Unlock()
				time.Sleep(pause)
			}
		})
	}
	return l
}

// Count is how many calls have been acknowledged.
func (l *Load) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.acked {
		n += len(a)
	}
	return n
}

// WaitAcked waits until n calls have been acknowledged, failing t after a
// minute.
func (l *Load) WaitAcked(t testing.TB, what string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for l.Count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d acknowledged, waiting for %d", what, l.Count(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the load and waits for the calls in flight; it may be called
// more than once.
func (l *Load) Stop() {
	l.stop()
	l.wg.Wait()
}

// Acked is the ids of the acknowledged calls of the writers (none: all),
// and Failed how many calls failed. Call them after Stop.
func (l *Load) Acked(writers ...int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(writers) == 0 {
		for w := range l.acked {
			writers = append(writers, w)
		}
	}
	var out []string
	for _, w := range writers {
		out = append(out, l.acked[w]...)
	}
	return out
}

func (l *Load) Failed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}
