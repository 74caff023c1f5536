package state

import (
	"context"
	"io"

	"github.com/tandem-run/tandem/internal/inflight"
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

// swap makes n (nil: none) the store called name, and retires the one it
// replaces: closed once its calls in flight end. s.mu is held.
func (s *Service) swap(name string, n *named) {
	if prev := inflight.Swap(&s.stores, name, n); prev != nil {
		idle := prev.use.Retire()
		go func() {
			<-idle
			_ = prev.close()
		}()
	}
}

// close closes the store, once.
func (n *named) close() error {
	return n.use.CloseOnce(func() error {
		if c, ok := n.Store.(io.Closer); ok {
			return c.Close()
		}
		return nil
	})
}
