package state

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"
)

// StoreConfig names a store and says how its keys are prefixed.
type StoreConfig struct {
	Name  string
	Type  string // e.g. state.redis, for metadata
	Store Store
	// KeyPrefix: "appid" (default, "<app-id>||key"), "name" (the store's
	// name), "namespace" ("<namespace>.<app-id>"), "none", or any other
	// string as a literal prefix.
	KeyPrefix string
	// DefaultTTL applies to saves that name no TTL; 0 means none.
	DefaultTTL time.Duration
}

// Service is the state API over the named stores. It is safe for concurrent use.
type Service struct {
	appID, namespace string
	stores           map[string]*named
}

type named struct {
	StoreConfig
	prefix string // "" or "<prefix>||"
	orig   Store  // the store as added, before WrapStores
}

// NewService returns a Service with no stores.
func NewService(appID, namespace string) *Service {
	return &Service{appID: appID, namespace: namespace, stores: map[string]*named{}}
}

// Add registers a store.
func (s *Service) Add(c StoreConfig) error {
	if _, dup := s.stores[c.Name]; dup {
		return fmt.Errorf("state store %q is defined twice", c.Name)
	}
	n := &named{StoreConfig: c, orig: c.Store}
	switch c.KeyPrefix {
	case "", "appid":
		n.prefix = s.appID
	case "name":
		n.prefix = c.Name
	case "namespace":
		n.prefix = s.appID
		if s.namespace != "" {
			n.prefix = s.namespace + "." + s.appID
		}
	case "none":
	default:
		if strings.Contains(c.KeyPrefix, "||") {
			return fmt.Errorf("state store %q: keyPrefix %q must not contain \"||\"", c.Name, c.KeyPrefix)
		}
		n.prefix = c.KeyPrefix
	}
	if n.prefix != "" {
		n.prefix += "||"
	}
	s.stores[c.Name] = n
	return nil
}

// Stores lists the stores by name.
func (s *Service) Stores() []StoreConfig {
	out := make([]StoreConfig, 0, len(s.stores))
	for _, n := range s.stores {
		out = append(out, n.StoreConfig)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// WrapStores replaces every store with wrap's answer for it, for
// middleware such as tracing. A wrapper of a Transactional store should be
// Transactional too. Call it before serving.
func (s *Service) WrapStores(wrap func(StoreConfig) Store) {
	for _, n := range s.stores {
		n.Store = wrap(n.StoreConfig)
	}
}

// Close closes every store that holds resources.
func (s *Service) Close() error {
	var errs []error
	for _, n := range s.stores {
		if c, ok := n.orig.(interface{ Close() error }); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

func (s *Service) store(name string) (*named, error) {
	n, ok := s.stores[name]
	if ok {
		return n, nil
	}
	names := make([]string, 0, len(s.stores))
	for k := range s.stores {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("state store %q is not configured; no state stores are: add a Component of a state.* type to --resources-path: %w", name, ErrStoreNotFound)
	}
	return nil, fmt.Errorf("state store %q is not configured; configured: %s: %w", name, strings.Join(names, ", "), ErrStoreNotFound)
}

// key validates a key and returns it prefixed.
func (n *named) key(k string) (string, error) {
	if k == "" {
		return "", fmt.Errorf("key is empty: %w", ErrBadRequest)
	}
	if !utf8.ValidString(k) {
		return "", fmt.Errorf("key %q is not valid UTF-8: %w", k, ErrBadRequest)
	}
	if strings.Contains(k, "||") {
		return "", fmt.Errorf("key %q contains \"||\", which separates the key prefix: %w", k, ErrBadRequest)
	}
	return n.prefix + k, nil
}

// ttl resolves a request's TTL against the store's default.
func (n *named) ttl(d time.Duration) time.Duration {
	switch {
	case d < 0:
		return 0
	case d == 0:
		return n.DefaultTTL
	}
	return d
}

// Get returns key's value, or nil when it is missing.
func (s *Service) Get(ctx context.Context, store, key string) (*Item, error) {
	n, err := s.store(store)
	if err != nil {
		return nil, err
	}
	k, err := n.key(key)
	if err != nil {
		return nil, err
	}
	it, err := n.Store.Get(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("state store %q: get %q: %w", store, key, err)
	}
	return it, nil
}

// Save saves the items in order; the first failure stops it.
func (s *Service) Save(ctx context.Context, store string, items []SetRequest) error {
	n, err := s.store(store)
	if err != nil {
		return err
	}
	for i := range items {
		if items[i].Key, err = n.key(items[i].Key); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		items[i].TTL = n.ttl(items[i].TTL)
	}
	for _, it := range items {
		if err := n.Store.Set(ctx, it); err != nil {
			return fmt.Errorf("state store %q: save %q: %w", store, strings.TrimPrefix(it.Key, n.prefix), err)
		}
	}
	return nil
}

// Delete deletes one key.
func (s *Service) Delete(ctx context.Context, store string, req DeleteRequest) error {
	n, err := s.store(store)
	if err != nil {
		return err
	}
	key := req.Key
	if req.Key, err = n.key(req.Key); err != nil {
		return err
	}
	if err := n.Store.Delete(ctx, req); err != nil {
		return fmt.Errorf("state store %q: delete %q: %w", store, key, err)
	}
	return nil
}

// BulkItem is one answer of BulkGet: Value nil when the key is missing, Err
// set when reading it failed.
type BulkItem struct {
	Key   string
	Value []byte
	ETag  string
	Err   error
}

// BulkGet reads keys with at most parallelism reads at once (0: 10).
func (s *Service) BulkGet(ctx context.Context, store string, keys []string, parallelism int) ([]BulkItem, error) {
	n, err := s.store(store)
	if err != nil {
		return nil, err
	}
	if parallelism < 0 {
		return nil, fmt.Errorf("parallelism %d is negative: %w", parallelism, ErrBadRequest)
	}
	if parallelism == 0 {
		parallelism = 10
	}
	prefixed := make([]string, len(keys))
	for i, k := range keys {
		if prefixed[i], err = n.key(k); err != nil {
			return nil, err
		}
	}
	out := make([]BulkItem, len(keys))
	var g errgroup.Group
	g.SetLimit(parallelism)
	for i := range keys {
		g.Go(func() error {
			out[i].Key = keys[i]
			it, err := n.Store.Get(ctx, prefixed[i])
			switch {
			case err != nil:
				out[i].Err = err
			case it != nil:
				out[i].Value, out[i].ETag = it.Value, it.ETag
			}
			return nil
		})
	}
	_ = g.Wait()
	return out, nil
}

// Transact applies ops atomically, in order.
func (s *Service) Transact(ctx context.Context, store string, ops []Op) error {
	n, err := s.store(store)
	if err != nil {
		return err
	}
	tx, ok := n.Store.(Transactional)
	if !ok {
		return fmt.Errorf("state store %q (%s) does not support transactions: %w", store, n.Type, ErrBadRequest)
	}
	for i, op := range ops {
		switch {
		case op.Set != nil && op.Delete == nil:
			if op.Set.Key, err = n.key(op.Set.Key); err != nil {
				return fmt.Errorf("operation %d: %w", i, err)
			}
			op.Set.TTL = n.ttl(op.Set.TTL)
		case op.Delete != nil && op.Set == nil:
			if op.Delete.Key, err = n.key(op.Delete.Key); err != nil {
				return fmt.Errorf("operation %d: %w", i, err)
			}
		default:
			return fmt.Errorf("operation %d is neither an upsert nor a delete: %w", i, ErrBadRequest)
		}
	}
	if err := tx.Transact(ctx, ops); err != nil {
		return fmt.Errorf("state store %q: transaction: %w", store, err)
	}
	return nil
}
