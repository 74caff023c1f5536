package state

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
)

// Pinger is a store that can check that its server answers. A store
// without it is taken to be ready as soon as it is built (an embedded
// store).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Put adds the store c, or replaces the store of the same name. New calls
// go to c from the moment Put returns; calls in flight on the store it
// replaces finish on it, which is closed (when it is an io.Closer) once
// the last of them ends. A c that does not check out (its key prefix, its
// bounds) is an error, and nothing changes.
//
// Put does not check that c's server answers: see Pinger.
func (s *Service) Put(c StoreConfig) error {
	n, err := s.newNamed(c)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.swap(c.Name, n)
	return nil
}

// Check reports whether Put would take c.
func (s *Service) Check(c StoreConfig) error {
	_, err := s.newNamed(c)
	return err
}

// Remove removes the store called name, which then answers as a store that
// is not configured (ErrStoreNotFound). Calls in flight on it finish on it,
// and it is closed once the last of them ends. It reports whether there
// was such a store.
func (s *Service) Remove(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := (*s.stores.Load())[name]; !ok {
		return false
	}
	s.swap(name, nil)
	return true
}

// swap makes n (nil: none) the store called name, and retires the store it
// replaces. s.mu is held.
func (s *Service) swap(name string, n *named) {
	old := *s.stores.Load()
	m := make(map[string]*named, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	prev := m[name]
	if n != nil {
		m[name] = n
	} else {
		delete(m, name)
	}
	s.stores.Store(&m)
	if prev != nil {
		idle := prev.use.retire()
		go func() {
			<-idle
			_ = prev.close()
		}()
	}
}

// close closes the store, once.
func (n *named) close() error {
	var err error
	n.use.closeOnce.Do(func() {
		if c, ok := n.Store.(io.Closer); ok {
			err = c.Close()
		}
	})
	return err
}

// uses counts the calls in flight on a store. Once the store is retired
// (replaced or removed) it takes no new call, and idle is closed when the
// last call in flight ends.
type uses struct {
	n         atomic.Int64 // calls in flight, plus retired once retired
	idle      chan struct{}
	idleOnce  sync.Once
	closeOnce sync.Once
}

// retired is added to uses.n when the store is retired.
const retired = 1 << 62

func (u *uses) init() { u.idle = make(chan struct{}) }

// acquire counts a new call, unless the store is retired.
func (u *uses) acquire() bool {
	if u.n.Add(1)&retired != 0 {
		u.release()
		return false
	}
	return true
}

// release ends a call counted by acquire.
func (u *uses) release() {
	if u.n.Add(-1) == retired {
		u.idleOnce.Do(func() { close(u.idle) })
	}
}

// retire takes the store out of use; it is called once.
func (u *uses) retire() <-chan struct{} {
	if u.n.Add(retired) == retired {
		u.idleOnce.Do(func() { close(u.idle) })
	}
	return u.idle
}
