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
	// RenewFor is how long after reading an app's folder its answer may
	// be renewed for another CacheTTL by a look at the folder alone (one
	// stat: the folder unchanged, no sidecar of the app started or
	// stopped), before the folder is read again. A crashed sidecar leaves
	// its entry (the folder unchanged) until a read finds its lock gone:
	// a caller whose connections it refuses asks again at once (Forget);
	// one that reaches another replica, within RenewFor. 0: every answer
	// older than CacheTTL reads the folder.
	RenewFor time.Duration
	mu       sync.Mutex
	cache    map[string]cached
	next     atomic.Uint32
	// hits, renewals and misses count the calls Resolve answered from its
	// cache, renewed by a look at the folder and those that read it (see
	// CacheLookups).
	hits, renewals, misses atomic.Uint64
}

type cached struct {
	addrs  []string
	until  time.Time // answered from the cache until then
	readAt time.Time // when the app's folder was read
	// folder is the app's folder as it was before it was read; ok false:
	// not to be trusted (unreadable, or changed too recently to tell a
	// later change by its time).
	folder folderStamp
}

// folderStamp tells whether a folder changed: an entry added, renamed
// into it or removed changes its modification time, and a folder removed
// and made again has another inode.
type folderStamp struct {
	ino   uint64
	mtime time.Time
	ok    bool
}

// racyWindow: a folder's modification time comes from the kernel's coarse
// clock (a tick of up to 10 ms), so a change made in the same tick as the
// read that followed the stamp leaves the time as it was. A stamp taken
// within racyWindow of its time is not trusted.
const racyWindow = 100 * time.Millisecond

func stampOf(dir string, now time.Time) folderStamp {
	fi, err := os.Stat(dir)
	if err != nil {
		return folderStamp{}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return folderStamp{}
	}
	return folderStamp{ino: uint64(st.Ino), mtime: fi.ModTime(), ok: now.Sub(fi.ModTime()) > racyWindow}
}

func (a folderStamp) same(b folderStamp) bool {
	return a.ok && b.ok && a.ino == b.ino && a.mtime.Equal(b.mtime)
}

// NewResolver returns a resolver over dir with a one-second cache, renewed
// by a look at the app's folder for up to ten seconds.
func NewResolver(dir string) *Resolver {
	return &Resolver{dir: dir, CacheTTL: time.Second, RenewFor: 10 * time.Second, cache: map[string]cached{}}
}

// Resolve returns the internal addresses of the live sidecars of target.ID,
// rotated on each call so that load spreads over them.
func (r *Resolver) Resolve(_ context.Context, target resolver.Target) ([]string, error) {
	now := time.Now()
	key := target.String()
	r.mu.Lock()
	c, ok := r.cache[key]
	r.mu.Unlock()
	if ok && !now.After(c.until) {
		r.hits.Add(1)
		return resolver.Rotate(c.addrs, r.next.Add(1)), nil
	}
	appDir := filepath.Join(r.dir, target.ID)
	switch {
	case ok && r.CacheTTL > 0 && now.Sub(c.readAt) < r.RenewFor && c.folder.same(stampOf(appDir, now)):
		r.renewals.Add(1)
		c.until = now.Add(r.CacheTTL)
		r.mu.Lock()
		r.cache[key] = c
		r.mu.Unlock()
	default:
		r.misses.Add(1)
		// The stamp before the read: a change during it shows next time.
		folder := stampOf(appDir, now)
		entries, err := readApp(appDir)
		if err != nil {
			return nil, err
		}
		c = cached{until: now.Add(r.CacheTTL), readAt: now, folder: folder}
		for _, e := range entries {
			if target.Namespace == "" || e.Namespace == "" || e.Namespace == target.Namespace {
				c.addrs = append(c.addrs, e.InternalAddress)
			}
		}
		if len(c.addrs) == 0 {
			r.Forget(target)
			return nil, r.notFound(target)
		}
		if r.CacheTTL > 0 {
			r.mu.Lock()
			r.cache[key] = c
			r.mu.Unlock()
		}
	}
	return resolver.Rotate(c.addrs, r.next.Add(1)), nil
}

// Forget drops target's cached addresses (resolver.Forgetter): the next
// Resolve reads its folder.
func (r *Resolver) Forget(target resolver.Target) {
	r.mu.Lock()
	delete(r.cache, target.String())
	r.mu.Unlock()
}

// CacheLookups returns how many calls of Resolve so far were answered from
// the cache (hits), renewed by a look at the app's folder (renewals) and
// read the folder (misses: an app id not cached, its folder changed, or
// read longer than RenewFor ago).
func (r *Resolver) CacheLookups() (hits, renewals, misses uint64) {
	return r.hits.Load(), r.renewals.Load(), r.misses.Load()
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

var (
	_ resolver.Resolver  = (*Resolver)(nil)
	_ resolver.Forgetter = (*Resolver)(nil)
)
