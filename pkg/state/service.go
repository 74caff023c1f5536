package state

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tandem-run/tandem/internal/inflight"
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
	// MaxTransactionOperations bounds the operations of one transaction:
	// 0 means DefaultMaxTransactionOperations, at most
	// HighestMaxTransactionOperations (Component metadata
	// maxTransactionOperations).
	MaxTransactionOperations int
}

// Bounds of one transaction.
const (
	// DefaultMaxTransactionOperations is how many operations a transaction
	// may have unless the store's Component says otherwise. A transaction
	// runs as one atomic step of the store (one script on Redis), during
	// which the store serves no one else: 1,000 operations hold Redis for a
	// few milliseconds (bench/TRANSACTIONS.md), and are already more than
	// the 4 MiB default body limit holds with values of more than 4 KB.
	DefaultMaxTransactionOperations = 1000
	// HighestMaxTransactionOperations is the most maxTransactionOperations
	// may be set to.
	HighestMaxTransactionOperations = 100_000
)

// Service is the state API over the named stores. It is safe for
// concurrent use, and its stores may be added, replaced and removed while
// it serves (see Put).
type Service struct {
	appID, namespace string
	stores           atomic.Pointer[map[string]*named] // replaced whole, never changed
	mu               sync.Mutex                        // held by writers of stores
	mw               []Middleware                      // around every store call, the first outermost
}

type named struct {
	StoreConfig
	prefix string        // "" or "<prefix>||"
	maxOps int           // operations a transaction may have
	use    inflight.Gate // calls in flight, and whether it was replaced
}

// NewService returns a Service with no stores.
func NewService(appID, namespace string) *Service {
	s := &Service{appID: appID, namespace: namespace}
	s.stores.Store(&map[string]*named{})
	return s
}

// Add registers a store; a store of the same name is an error.
func (s *Service) Add(c StoreConfig) error {
	n, err := s.newNamed(c)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := (*s.stores.Load())[c.Name]; dup {
		return fmt.Errorf("state store %q is defined twice", c.Name)
	}
	s.swap(c.Name, n)
	return nil
}

// newNamed checks c and returns its store as the Service keeps it.
func (s *Service) newNamed(c StoreConfig) (*named, error) {
	n := &named{StoreConfig: c, maxOps: cmp.Or(c.MaxTransactionOperations, DefaultMaxTransactionOperations)}
	n.use.Init()
	if c.MaxTransactionOperations < 0 || c.MaxTransactionOperations > HighestMaxTransactionOperations {
		return nil, fmt.Errorf("state store %q: maxTransactionOperations %d: want 1 to %d", c.Name, c.MaxTransactionOperations, HighestMaxTransactionOperations)
	}
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
			return nil, fmt.Errorf("state store %q: keyPrefix %q must not contain \"||\"", c.Name, c.KeyPrefix)
		}
		n.prefix = c.KeyPrefix
	}
	if n.prefix != "" {
		n.prefix += "||"
	}
	return n, nil
}

// Stores lists the stores by name.
func (s *Service) Stores() []StoreConfig {
	m := *s.stores.Load()
	out := make([]StoreConfig, 0, len(m))
	for _, n := range m {
		out = append(out, n.StoreConfig)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close closes every store that holds resources (a store replaced or
// removed is closed when its last call ends). Call it once the Service
// serves no more calls.
func (s *Service) Close() error {
	s.mu.Lock()
	m := *s.stores.Load()
	s.stores.Store(&map[string]*named{})
	s.mu.Unlock()
	var errs []error
	for _, n := range m {
		errs = append(errs, n.close())
	}
	return errors.Join(errs...)
}

// store returns the store called name, counted as in use until the caller
// releases it.
func (s *Service) store(name string) (*named, error) {
	for {
		m := *s.stores.Load()
		n, ok := m[name]
		if !ok {
			return nil, notConfigured(name, m)
		}
		if n.use.Acquire() {
			return n, nil
		}
		// Replaced or removed since the map was read: read it again.
	}
}

func notConfigured(name string, m map[string]*named) error {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return fmt.Errorf("state store %q is not configured; no state stores are: add a Component of a state.* type to --resources-path: %w", name, ErrStoreNotFound)
	}
	return fmt.Errorf("state store %q is not configured; configured: %s: %w", name, strings.Join(names, ", "), ErrStoreNotFound)
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
		return "", fmt.Errorf("key %q contains \"||\", which separates the key prefix: %w", k, ErrIllegalKey)
	}
	return n.prefix + k, nil
}

// hide removes the store's key prefix from err's text. Keys reach stores
// prefixed, and stores may name them in errors, but no answer may show how
// keys are stored. errors.Is and errors.As still see the cause.
func (n *named) hide(err error) error {
	if err == nil || n.prefix == "" {
		return err
	}
	return &unprefixed{err: err, prefix: n.prefix}
}

// unprefixed is an error whose text has a key prefix taken out, as it is
// and as %q quotes it. Keys cannot contain "||", so only prefixes match.
type unprefixed struct {
	err    error
	prefix string
}

func (e *unprefixed) Error() string {
	msg := strings.ReplaceAll(e.err.Error(), e.prefix, "")
	if q := strconv.Quote(e.prefix); q[1:len(q)-1] != e.prefix {
		msg = strings.ReplaceAll(msg, q[1:len(q)-1], "")
	}
	return msg
}

func (e *unprefixed) Unwrap() error { return e.err }

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
	defer n.use.Release()
	k, err := n.key(key)
	if err != nil {
		return nil, err
	}
	var it *Item
	err = s.call(ctx, &Call{Store: n.StoreConfig, Kind: KindGet, Key: k}, func(ctx context.Context) error {
		var err error
		it, err = n.Store.Get(ctx, k)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("state store %q: get %q: %w", store, key, n.hide(err))
	}
	return it, nil
}

// Save saves the items in order; the first failure stops it.
func (s *Service) Save(ctx context.Context, store string, items []SetRequest) error {
	n, err := s.store(store)
	if err != nil {
		return err
	}
	defer n.use.Release()
	for i := range items {
		if items[i].Key, err = n.key(items[i].Key); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		items[i].TTL = n.ttl(items[i].TTL)
	}
	for _, it := range items {
		err := s.call(ctx, &Call{Store: n.StoreConfig, Kind: KindSet, Set: &it}, func(ctx context.Context) error {
			return n.Store.Set(ctx, it)
		})
		if err != nil {
			return fmt.Errorf("state store %q: save %q: %w", store, strings.TrimPrefix(it.Key, n.prefix), n.hide(err))
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
	defer n.use.Release()
	key := req.Key
	if req.Key, err = n.key(req.Key); err != nil {
		return err
	}
	err = s.call(ctx, &Call{Store: n.StoreConfig, Kind: KindDelete, Delete: &req}, func(ctx context.Context) error {
		return n.Store.Delete(ctx, req)
	})
	if err != nil {
		return fmt.Errorf("state store %q: delete %q: %w", store, key, n.hide(err))
	}
	return nil
}

// Transact applies ops atomically, in order. A transaction of more
// operations than the store's MaxTransactionOperations is refused before
// it reaches the store: the store serves no one else while it runs.
func (s *Service) Transact(ctx context.Context, store string, ops []Op) error {
	n, err := s.store(store)
	if err != nil {
		return err
	}
	defer n.use.Release()
	tx, ok := n.Store.(Transactional)
	if !ok {
		return fmt.Errorf("state store %q (%s) does not support transactions: %w", store, n.Type, ErrBadRequest)
	}
	if len(ops) > n.maxOps {
		return fmt.Errorf("the transaction has %d operations, over the limit of %d of state store %q; raise it with the Component's metadata maxTransactionOperations (1 to %d): %w",
			len(ops), n.maxOps, store, HighestMaxTransactionOperations, ErrTooManyOperations)
	}
	if len(ops) == 0 {
		return nil
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
	err = s.call(ctx, &Call{Store: n.StoreConfig, Kind: KindTransaction, Ops: ops}, func(ctx context.Context) error {
		return tx.Transact(ctx, ops)
	})
	if err != nil {
		return fmt.Errorf("state store %q: transaction: %w", store, n.hide(err))
	}
	return nil
}
