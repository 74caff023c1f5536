package state

import (
	"context"
	"fmt"
)

// Bounds of one bulk read.
const (
	// DefaultBulkParallelism is how many keys a bulk read reads at once
	// when the request says 0, as daprd.
	DefaultBulkParallelism = 10
	// MaxBulkParallelism caps a request's parallelism. A request for more
	// is served at the cap, not refused, so that clients asking for more
	// keep working: more reads at once gain nothing against one store's
	// connection pool (go-redis keeps 10 connections per CPU), and would
	// only hold connections, goroutines and memory other requests need.
	MaxBulkParallelism = 100
	// MaxBulkKeys bounds the keys of one bulk read; a request for more is
	// refused, naming the bound. 10,000 keys is a large page, and what one
	// request can make the store do stays a few hundred milliseconds.
	MaxBulkKeys = 10_000
)

// BulkItem is one answer of BulkGet: Value nil when the key is missing, Err
// set when reading it failed.
type BulkItem struct {
	Key   string
	Value []byte
	ETag  string
	Err   error
}

// BulkGet reads keys and hands each answer to emit, in the order of keys.
// It reads at most parallelism keys at once (0: DefaultBulkParallelism;
// over MaxBulkParallelism: MaxBulkParallelism), and holds no more answers
// than that between reading and emitting them, so its memory is bounded by
// parallelism values whatever the number of keys: emit writes them out.
//
// The request is checked whole before the first read: an unknown store, a
// bad key, more than MaxBulkKeys keys or a negative parallelism is an
// error returned before emit is ever called. After that BulkGet returns
// only emit's first error, or ctx's, and stops reading; a key whose read
// fails has its error in its item. BulkGet returns once every read it
// started has ended.
func (s *Service) BulkGet(ctx context.Context, store string, keys []string, parallelism int, emit func(BulkItem) error) error {
	n, err := s.store(store)
	if err != nil {
		return err
	}
	defer n.use.Release()
	switch {
	case parallelism < 0:
		return fmt.Errorf("parallelism %d is negative; 0 means the default, %d: %w", parallelism, DefaultBulkParallelism, ErrBadRequest)
	case parallelism == 0:
		parallelism = DefaultBulkParallelism
	}
	parallelism = min(parallelism, MaxBulkParallelism)
	if len(keys) > MaxBulkKeys {
		return fmt.Errorf("the bulk read asks for %d keys, over the limit of %d: ask for them in several requests: %w", len(keys), MaxBulkKeys, ErrTooLarge)
	}
	prefixed := make([]string, len(keys))
	for i, k := range keys {
		if prefixed[i], err = n.key(k); err != nil {
			return fmt.Errorf("keys[%d]: %w", i, err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A read takes a slot of sem until its answer is emitted, and queues
	// the channel its answer comes on, in key order; queue never holds
	// more than sem's slots, so sending on it never blocks.
	sem := make(chan struct{}, parallelism)
	queue := make(chan chan BulkItem, parallelism)
	go func() {
		defer close(queue)
		for i := range keys {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			if ctx.Err() != nil {
				return
			}
			c := make(chan BulkItem, 1)
			queue <- c
			go func() { c <- s.read(ctx, n, keys[i], prefixed[i]) }()
		}
	}()
	var failed error
	for c := range queue {
		it := <-c
		if failed == nil {
			if failed = ctx.Err(); failed == nil {
				failed = emit(it)
			}
			if failed != nil {
				cancel()
			}
		}
		<-sem
	}
	return failed
}

// read is one key of a bulk read of n; prefixed is the key as stored.
func (s *Service) read(ctx context.Context, n *named, key, prefixed string) BulkItem {
	var it *Item
	err := s.call(ctx, &Call{Store: n.StoreConfig, Kind: KindGet, Key: prefixed}, func(ctx context.Context) error {
		var err error
		it, err = n.Store.Get(ctx, prefixed)
		return err
	})
	switch {
	case err != nil:
		return BulkItem{Key: key, Err: n.hide(err)}
	case it == nil:
		return BulkItem{Key: key}
	}
	return BulkItem{Key: key, Value: it.Value, ETag: it.ETag}
}
