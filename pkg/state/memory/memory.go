// Package memory is the embedded state store: values in this process's
// memory, with ETags, first-write, TTLs and atomic transactions. It is the
// default store of a standalone sidecar with no components.
package memory

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/tandem-run/tandem/pkg/state"
)

type entry struct {
	value   []byte
	version uint64
	expires time.Time // zero: never
}

// Store is the in-memory store. It is safe for concurrent use.
type Store struct {
	mu      sync.RWMutex
	items   map[string]entry
	version uint64 // store-wide, so an ETag is never reused for a key
	stop    chan struct{}
	once    sync.Once
	now     func() time.Time
}

// New returns an empty store that sweeps expired values every sweep
// interval (default one minute) until Close.
func New(sweep time.Duration) *Store {
	if sweep <= 0 {
		sweep = time.Minute
	}
	s := &Store{items: map[string]entry{}, stop: make(chan struct{}), now: time.Now}
	go s.sweepLoop(sweep)
	return s
}

func (s *Store) sweepLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			now := s.now()
			s.mu.Lock()
			for k, e := range s.items {
				if e.expired(now) {
					delete(s.items, k)
				}
			}
			s.mu.Unlock()
		}
	}
}

func (e entry) expired(now time.Time) bool { return !e.expires.IsZero() && !now.Before(e.expires) }

// Close stops the sweeper.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.stop) })
	return nil
}

// Get returns the value of key, or nil when it is missing or expired.
func (s *Store) Get(_ context.Context, key string) (*state.Item, error) {
	s.mu.RLock()
	e, ok := s.items[key]
	s.mu.RUnlock()
	if !ok || e.expired(s.now()) {
		return nil, nil
	}
	return &state.Item{Value: e.value, ETag: strconv.FormatUint(e.version, 10)}, nil
}

// Set saves a value, checking the ETag or first-write.
func (s *Store) Set(_ context.Context, req state.SetRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkSet(req); err != nil {
		return err
	}
	s.apply(state.Op{Set: &req})
	return nil
}

// Delete deletes a value, checking the ETag.
func (s *Store) Delete(_ context.Context, req state.DeleteRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkETag(req.Key, req.ETag); err != nil {
		return err
	}
	delete(s.items, req.Key)
	return nil
}

// Transact checks every operation against the key as the operations
// before it in the transaction leave it, then applies them all in order.
// A key written earlier in the same transaction matches no ETag.
func (s *Store) Transact(_ context.Context, ops []state.Op) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	written := map[string]bool{} // keys set (true) or deleted (false) by an earlier operation
	for i, op := range ops {
		var key string
		var err error
		switch {
		case op.Set != nil:
			key = op.Set.Key
			err = s.checkSet(*op.Set)
			if w, ok := written[key]; ok {
				err = checkAfter(w, key, op.Set.ETag, op.Set.FirstWrite)
			}
		case op.Delete != nil:
			key = op.Delete.Key
			err = s.checkETag(key, op.Delete.ETag)
			if w, ok := written[key]; ok {
				err = checkAfter(w, key, op.Delete.ETag, false)
			}
		}
		if err != nil {
			return fmt.Errorf("operation %d: %w", i, err)
		}
		written[key] = op.Set != nil
	}
	for _, op := range ops {
		s.apply(op)
	}
	return nil
}

// checkSet checks req against the stored value; s.mu is held.
func (s *Store) checkSet(req state.SetRequest) error {
	if req.ETag == nil && req.FirstWrite {
		if e, ok := s.items[req.Key]; ok && !e.expired(s.now()) {
			return fmt.Errorf("key %q exists and first-write needs an etag to update it: %w", req.Key, state.ErrETagMismatch)
		}
		return nil
	}
	return s.checkETag(req.Key, req.ETag)
}

// checkETag checks an optional ETag against key's version; s.mu is held.
func (s *Store) checkETag(key string, etag *string) error {
	if etag == nil {
		return nil
	}
	v, err := strconv.ParseUint(*etag, 10, 64)
	if err != nil {
		return fmt.Errorf("etag %q is not one this store issued (a decimal version): %w", *etag, state.ErrETagInvalid)
	}
	e, ok := s.items[key]
	if !ok || e.expired(s.now()) || e.version != v {
		return fmt.Errorf("key %q: etag %q does not match: %w", key, *etag, state.ErrETagMismatch)
	}
	return nil
}

// checkAfter checks an operation on a key an earlier operation of the same
// transaction set (set) or deleted: no ETag matches either, and first-write
// finds a set key there.
func checkAfter(set bool, key string, etag *string, firstWrite bool) error {
	if etag != nil {
		if _, err := strconv.ParseUint(*etag, 10, 64); err != nil {
			return fmt.Errorf("etag %q is not one this store issued (a decimal version): %w", *etag, state.ErrETagInvalid)
		}
		return fmt.Errorf("key %q: etag %q does not match a value this transaction wrote or deleted: %w", key, *etag, state.ErrETagMismatch)
	}
	if firstWrite && set {
		return fmt.Errorf("key %q exists (this transaction set it) and first-write needs an etag to update it: %w", key, state.ErrETagMismatch)
	}
	return nil
}

// apply performs op; s.mu is held and op was checked.
func (s *Store) apply(op state.Op) {
	if op.Delete != nil {
		delete(s.items, op.Delete.Key)
		return
	}
	s.version++
	e := entry{value: append([]byte(nil), op.Set.Value...), version: s.version}
	if op.Set.TTL > 0 {
		e.expires = s.now().Add(op.Set.TTL)
	}
	s.items[op.Set.Key] = e
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
)
