// Package standalone finds sidecars running on this machine with no daemon
// and no configuration: every sidecar writes an entry into a registry folder
// and holds an exclusive lock on it while it lives. A crashed sidecar's lock
// goes with its process, so readers recognise and remove stale entries; PID
// reuse cannot fool them.
//
// Layout: <dir>/<app-id>/<pid>.json, one file per running sidecar.
package standalone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tandem-run/tandem/pkg/resolver"
)

// DefaultDir is $TANDEM_REGISTRY_DIR, else <user cache dir>/tandem/registry.
func DefaultDir() (string, error) {
	if d := os.Getenv("TANDEM_REGISTRY_DIR"); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no registry folder: set TANDEM_REGISTRY_DIR or --registry-dir (%w)", err)
	}
	return filepath.Join(c, "tandem", "registry"), nil
}

// Entry describes a running sidecar.
type Entry struct {
	AppID           string `json:"appId"`
	Namespace       string `json:"namespace,omitempty"`
	PID             int    `json:"pid"`
	InternalAddress string `json:"internalAddress"`
	HTTPPort        int    `json:"httpPort"`
	GRPCPort        int    `json:"grpcPort"`
	// MetricsPort serves the sidecar's metrics and its read-only
	// dashboard route; 0: metrics are off.
	MetricsPort int       `json:"metricsPort,omitempty"`
	StartedAt   time.Time `json:"startedAt"`
}

// Registration is a sidecar's own entry, held until Close.
type Registration struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// Register writes e into dir and locks it for the life of the process.
func Register(dir string, e Entry) (*Registration, error) {
	if err := resolver.ValidateID(e.AppID); err != nil {
		return nil, err
	}
	appDir := filepath.Join(dir, e.AppID)
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(appDir, fmt.Sprintf("%d.json", e.PID))
	var tmp *os.File
	// The app folder can vanish between MkdirAll and CreateTemp when the
	// last other entry of the app closes; try again then.
	for range 3 {
		if err = os.MkdirAll(appDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating registry folder: %w", err)
		}
		if tmp, err = os.CreateTemp(appDir, ".tmp-*"); !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("writing registry entry: %w", err)
	}
	// Lock before the entry becomes visible, so no reader ever sees it unlocked.
	if err := syscall.Flock(int(tmp.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("locking registry entry: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	return &Registration{f: tmp, path: path}, nil
}

// Close removes the entry and releases its lock. It is idempotent.
func (r *Registration) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := os.Remove(r.path)
	_ = os.Remove(filepath.Dir(r.path)) // only succeeds when empty
	r.f.Close()
	r.f = nil
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return err
}

// Resolver resolves app ids from a registry folder.
type Resolver struct {
	dir string
	// CacheTTL is how long an answer is reused; a crashed peer is noticed
	// by the failed connection in the meantime.
	CacheTTL time.Duration
	mu       sync.Mutex
	cache    map[string]cached
	next     atomic.Uint32
	// hits and misses count the calls Resolve answered from its cache
	// and those that read the registry folder (see CacheLookups).
	hits, misses atomic.Uint64
}

type cached struct {
	addrs []string
	until time.Time
}

// NewResolver returns a resolver over dir with a one-second cache.
func NewResolver(dir string) *Resolver {
	return &Resolver{dir: dir, CacheTTL: time.Second, cache: map[string]cached{}}
}

// Resolve returns the internal addresses of the live sidecars of target.ID,
// rotated on each call so that load spreads over them.
func (r *Resolver) Resolve(_ context.Context, target resolver.Target) ([]string, error) {
	now := time.Now()
	r.mu.Lock()
	c, ok := r.cache[target.String()]
	r.mu.Unlock()
	if ok && !now.After(c.until) {
		r.hits.Add(1)
	} else {
		r.misses.Add(1)
		entries, err := readApp(filepath.Join(r.dir, target.ID))
		if err != nil {
			return nil, err
		}
		c = cached{until: now.Add(r.CacheTTL)}
		for _, e := range entries {
			if target.Namespace == "" || e.Namespace == "" || e.Namespace == target.Namespace {
				c.addrs = append(c.addrs, e.InternalAddress)
			}
		}
		if len(c.addrs) == 0 {
			return nil, r.notFound(target)
		}
		if r.CacheTTL > 0 {
			r.mu.Lock()
			r.cache[target.String()] = c
			r.mu.Unlock()
		}
	}
	return resolver.Rotate(c.addrs, r.next.Add(1)), nil
}

// CacheLookups returns how many calls of Resolve so far were answered from
// the cache (hits) and how many read the registry folder (misses: an app
// id not cached, or cached longer than CacheTTL ago).
func (r *Resolver) CacheLookups() (hits, misses uint64) {
	return r.hits.Load(), r.misses.Load()
}

func (r *Resolver) notFound(target resolver.Target) error {
	entries, _ := List(r.dir)
	seen := map[string]bool{}
	var ids []string
	for _, e := range entries {
		if !seen[e.AppID] {
			seen[e.AppID] = true
			ids = append(ids, e.AppID)
		}
	}
	sort.Strings(ids)
	if len(ids) == 0 {
		return fmt.Errorf("app id %q is not running on this machine; no sidecars are running (registry: %s): %w", target.String(), r.dir, resolver.ErrNotFound)
	}
	return fmt.Errorf("app id %q is not running on this machine; running: %s: %w", target.String(), strings.Join(ids, ", "), resolver.ErrNotFound)
}

// List returns every live entry in dir.
func List(dir string) ([]Entry, error) {
	apps, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var all []Entry
	for _, a := range apps {
		if a.IsDir() {
			es, err := readApp(filepath.Join(dir, a.Name()))
			if err != nil {
				return nil, err
			}
			all = append(all, es...)
		}
	}
	return all, nil
}

// readApp reads the live entries of one app folder, removing stale ones.
func readApp(appDir string) ([]Entry, error) {
	files, err := os.ReadDir(appDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading registry: %w", err)
	}
	var out []Entry
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".json") {
			continue
		}
		if e, ok := readEntry(filepath.Join(appDir, f.Name())); ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// readEntry reads a live entry; a stale one (nobody holds its lock) is removed.
func readEntry(path string) (Entry, bool) {
	f, err := os.Open(path)
	if err != nil {
		return Entry{}, false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		// Nobody holds the exclusive lock: its sidecar is gone.
		_ = os.Remove(path)
		_ = os.Remove(filepath.Dir(path))
		return Entry{}, false
	}
	var e Entry
	if err := json.NewDecoder(f).Decode(&e); err != nil || e.InternalAddress == "" {
		return Entry{}, false
	}
	return e, true
}

var _ resolver.Resolver = (*Resolver)(nil)
