package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tandem-run/tandem/internal/acl"
	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/internal/middleware"
	"github.com/tandem-run/tandem/internal/resiliency"
	"github.com/tandem-run/tandem/internal/telemetry"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
	"github.com/tandem-run/tandem/pkg/state"
)

// save writes a file as editors save: a new file renamed over the old.
func save(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func memoryYAML(name string, md ...string) []byte {
	b := fmt.Appendf(nil, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: state.in-memory\n  version: v1\n", name)
	if len(md) == 0 {
		return append(b, "  metadata: []\n"...)
	}
	b = append(b, "  metadata:\n"...)
	for i := 0; i+1 < len(md); i += 2 {
		b = fmt.Appendf(b, "  - name: %s\n    value: %q\n", md[i], md[i+1])
	}
	return b
}

// rig is a Reloader running on a folder, and what it puts resources in
// force on.
type rig struct {
	r       *Reloader
	dir     string
	state   *state.Service
	tracing *telemetry.Tracing
	acl     *acl.Switch
	res     *resiliency.Switch
	mw      *middleware.Switch
	reg     *prometheus.Registry
	logs    *syncbuf.Buffer
}

func start(t *testing.T, src Sources) *rig {
	t.Helper()
	g := &rig{reg: prometheus.NewRegistry(), logs: &syncbuf.Buffer{}}
	src.AppID = "front"
	src.Poll = 20 * time.Millisecond
	src.Resync = 50 * time.Millisecond
	src.PingTimeout = time.Second
	src.Logger = slog.New(slog.NewTextHandler(g.logs, nil))
	src.Registerer = g.reg
	if len(src.Dirs) > 0 {
		g.dir = src.Dirs[0]
	}
	r, err := Load(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := r.Configuration().TracingSettings()
	if err != nil {
		t.Fatal(err)
	}
	g.tracing, err = telemetry.NewTracing(ts, telemetry.Options{AppID: "front", Reloadable: true, Drain: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g.r, g.state, g.acl = r, state.NewService("front", ""), &acl.Switch{}
	g.res = resiliency.NewSwitch(nil, nil)
	g.mw = middleware.NewSwitch("front", nil, nil)
	if err := r.Apply(context.Background(), Targets{State: g.state, Tracing: g.tracing, ACL: g.acl, Resiliency: g.res, Middleware: g.mw}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		_ = g.state.Close()
		if t.Failed() {
			t.Logf("reloader's log:\n%s", g.logs.String())
		}
	})
	return g
}

// eventually waits for cond, and fails naming what did not happen.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (g *rig) inUse(kind, name string) (Resource, bool) {
	for _, r := range g.r.Status().InUse {
		if r.Kind == kind && r.Name == name {
			return r, true
		}
	}
	return Resource{}, false
}

func (g *rig) rejected(source string) (Rejection, bool) {
	for _, r := range g.r.Status().Rejected {
		if r.Source == source {
			return r, true
		}
	}
	return Rejection{}, false
}

func (g *rig) counter(kind, outcome string) float64 {
	return testutil.ToFloat64(g.r.m.reloads.WithLabelValues(kind, outcome))
}

func (g *rig) storeType(name string) string {
	for _, s := range g.state.Stores() {
		if s.Name == name {
			return s.Type
		}
	}
	return ""
}

func (g *rig) keyPrefixOf(name string) string {
	for _, s := range g.state.Stores() {
		if s.Name == name {
			return s.KeyPrefix
		}
	}
	return ""
}

// Components: a change is put in force, a broken one is refused and the
// version in force stays, a removed one is gone, and a clash of names
// waits for the other to go.
func TestComponents(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "statestore.yaml")
	save(t, store, memoryYAML("statestore"))
	g := start(t, Sources{Dirs: []string{dir}})
	first, ok := g.inUse(kindComponent, "statestore")
	if !ok || first.Source != store || !strings.HasPrefix(first.Version, "sha256:") {
		t.Fatalf("in use: %+v", g.r.Status())
	}
	eventually(t, "status says hot reload is on", func() bool { return g.r.Status().HotReload })

	// A change.
	save(t, store, memoryYAML("statestore", "keyPrefix", "name"))
	// The store changes first, then the status says so.
	eventually(t, "the changed Component in force, and in the status", func() bool {
		got, _ := g.inUse(kindComponent, "statestore")
		return g.keyPrefixOf("statestore") == "name" && got.Version != first.Version
	})
	if g.counter(kindComponent, "applied") != 1 {
		t.Errorf("applied %v", g.counter(kindComponent, "applied"))
	}

	// A broken change: refused, named, counted; the store stays.
	inForce, _ := g.inUse(kindComponent, "statestore")
	save(t, store, memoryYAML("statestore", "keyPrefix", "name", "maxTransactionOperations", "0"))
	eventually(t, "the broken change rejected", func() bool { _, ok := g.rejected(store); return ok })
	rej, _ := g.rejected(store)
	if !strings.Contains(rej.Error, "maxTransactionOperations") || rej.Kind != kindComponent || rej.Version == inForce.Version {
		t.Errorf("rejection %+v", rej)
	}
	if got, _ := g.inUse(kindComponent, "statestore"); got != inForce || g.keyPrefixOf("statestore") != "name" {
		t.Errorf("after a rejected change, in use %+v, want %+v", got, inForce)
	}
	if g.counter(kindComponent, "rejected") != 1 || testutil.ToFloat64(g.r.m.rejected.WithLabelValues(kindComponent)) != 1 {
		t.Errorf("rejected %v, gauge %v", g.counter(kindComponent, "rejected"), testutil.ToFloat64(g.r.m.rejected.WithLabelValues(kindComponent)))
	}
	if l := g.logs.String(); !strings.Contains(l, "rejected") || !strings.Contains(l, store) || !strings.Contains(l, "maxTransactionOperations") {
		t.Errorf("log does not name the file and the field:\n%s", l)
	}
	// Not YAML at all.
	save(t, store, []byte("apiVersion: [\n"))
	eventually(t, "the file that is not YAML rejected", func() bool { r, _ := g.rejected(store); return strings.Contains(r.Error, "YAML") })
	// Fixed: the rejection goes.
	save(t, store, memoryYAML("statestore"))
	eventually(t, "the fixed file in force", func() bool { _, rejected := g.rejected(store); return !rejected && g.keyPrefixOf("statestore") == "" })
	if testutil.ToFloat64(g.r.m.rejected.WithLabelValues(kindComponent)) != 0 {
		t.Error("the gauge still counts a rejection")
	}

	// The same name in another file waits for the first to go.
	other := filepath.Join(dir, "other.yaml")
	save(t, other, memoryYAML("statestore", "keyPrefix", "none"))
	eventually(t, "the clash rejected", func() bool { r, _ := g.rejected(other); return strings.Contains(r.Error, "names must be unique") })
	if err := os.Remove(store); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the other file in force once the first is gone", func() bool {
		r, ok := g.inUse(kindComponent, "statestore")
		return ok && r.Source == other && g.keyPrefixOf("statestore") == "none"
	})

	// Removed: not found from then on.
	if err := os.Remove(other); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the store removed", func() bool { return len(g.state.Stores()) == 0 })
	if _, err := g.state.Get(context.Background(), "statestore", "k"); !errors.Is(err, state.ErrStoreNotFound) {
		t.Errorf("a removed store: %v", err)
	}
}

// Scopes keep applying: a Component scoped to another app is not loaded,
// and is once its scopes name this one.
func TestScopes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.yaml")
	scoped := func(app string) []byte { return append(memoryYAML("cache"), "scopes: ["+app+"]\n"...) }
	save(t, path, scoped("other"))
	g := start(t, Sources{Dirs: []string{dir}})
	if g.storeType("cache") != "" {
		t.Fatal("a Component scoped to another app is loaded")
	}
	save(t, path, scoped("front"))
	eventually(t, "the Component scoped to this app loaded", func() bool { return g.storeType("cache") == "state.in-memory" })
	save(t, path, scoped("other"))
	eventually(t, "the Component scoped away removed", func() bool { return g.storeType("cache") == "" })
}

// The embedded default store, there when a sidecar starts without state
// Components, stays until a Component of its name replaces it, and does not
// come back.
func TestDefaultStore(t *testing.T) {
	dir := t.TempDir()
	g := start(t, Sources{Dirs: []string{dir}, DefaultStore: true})
	if g.storeType("statestore") != "state.in-memory" {
		t.Fatal("no default store")
	}
	save(t, filepath.Join(dir, "cache.yaml"), memoryYAML("cache"))
	eventually(t, "cache loaded", func() bool { return g.storeType("cache") != "" })
	if g.storeType("statestore") == "" {
		t.Error("the default store went when a Component of another name came")
	}
	path := filepath.Join(dir, "statestore.yaml")
	save(t, path, memoryYAML("statestore", "keyPrefix", "name"))
	eventually(t, "the default replaced by the Component", func() bool { return g.keyPrefixOf("statestore") == "name" })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "statestore removed", func() bool { return g.storeType("statestore") == "" })
	time.Sleep(100 * time.Millisecond)
	if _, err := g.state.Get(context.Background(), "statestore", "k"); !errors.Is(err, state.ErrStoreNotFound) {
		t.Errorf("the default came back: %v", err)
	}
}

// A store that parses but does not answer does not replace the one in
// force; it is tried again, and put in force once its server answers.
func TestStoreThatCannotConnect(t *testing.T) {
	a, b := redisserver.Start(t), redisserver.Start(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "statestore.yaml")
	save(t, path, resources.RedisYAML("statestore", a.Addr))
	g := start(t, Sources{Dirs: []string{dir}})
	ctx := context.Background()
	if err := g.state.Save(ctx, "statestore", []state.SetRequest{{Key: "k", Value: []byte("on a")}}); err != nil {
		t.Fatal(err)
	}
	b.Stop()
	save(t, path, resources.RedisYAML("statestore", b.Addr, "dialTimeout", "200ms"))
	eventually(t, "the store that does not answer reported", func() bool {
		for _, r := range g.r.Status().Rejected {
			if r.Name == "statestore" && strings.Contains(r.Error, "does not answer") && strings.Contains(r.Error, b.Addr) {
				return true
			}
		}
		return false
	})
	if it, err := g.state.Get(ctx, "statestore", "k"); err != nil || string(it.Value) != "on a" {
		t.Fatalf("the store in force: %v %v; want a still serving", it, err)
	}
	if g.counter(kindComponent, "rejected") != 1 {
		t.Errorf("rejected %v, want 1 (counted once, not at every try)", g.counter(kindComponent, "rejected"))
	}
	inUse, _ := g.inUse(kindComponent, "statestore")
	b.Restart(t)
	eventually(t, "the store in force once its server answers", func() bool {
		r, _ := g.inUse(kindComponent, "statestore")
		return r.Version != inUse.Version
	})
	if len(g.r.Status().Rejected) != 0 {
		t.Errorf("rejected %+v", g.r.Status().Rejected)
	}
	if it, err := g.state.Get(ctx, "statestore", "k"); err != nil || it != nil {
		t.Errorf("the new store: %v %v; want b, without the key", it, err)
	}
}

// The Configuration: tracing and access control change for new calls; a
// bad change and a deleted file are refused, and the last one read stays.
func TestConfiguration(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	conf := func(spec string) []byte {
		return []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: appconfig\nspec:\n" + spec)
	}
	save(t, path, conf("  tracing:\n    samplingRate: \"0\"\n    stdout: true\n"))
	g := start(t, Sources{ConfigFile: path})
	if g.tracing.Enabled() {
		t.Fatal("tracing on at start")
	}
	save(t, path, conf("  tracing:\n    samplingRate: \"1\"\n    stdout: true\n  accessControl:\n    defaultAction: deny\n"))
	// Tracing is put in force as the version is committed, access control
	// when the kinds apply theirs, just after: each switches whole.
	eventually(t, "tracing on, and access control denying all", func() bool { return g.tracing.Enabled() && hopStatus(g.acl) == 403 })
	save(t, path, conf("  tracing:\n    samplingRate: \"2\"\n"))
	eventually(t, "the bad rate rejected", func() bool { r, _ := g.rejected(path); return strings.Contains(r.Error, "samplingRate") })
	if !g.tracing.Enabled() || hopStatus(g.acl) != 403 {
		t.Error("a rejected Configuration changed what is in force")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted file reported", func() bool { r, _ := g.rejected("--config"); return strings.Contains(r.Error, "no such file") })
	save(t, path, conf("  tracing:\n    samplingRate: \"0\"\n"))
	eventually(t, "tracing off, access control allowing, nothing rejected", func() bool {
		return !g.tracing.Enabled() && hopStatus(g.acl) == 204 && len(g.r.Status().Rejected) == 0
	})
	if g.counter(kindConfiguration, "applied") != 2 || g.counter(kindConfiguration, "rejected") != 1 || g.counter(kindFile, "rejected") != 1 {
		t.Errorf("counters: applied %v, rejected %v, file %v", g.counter(kindConfiguration, "applied"), g.counter(kindConfiguration, "rejected"), g.counter(kindFile, "rejected"))
	}
	if c, _ := g.inUse(kindConfiguration, "appconfig"); c.Source != path {
		t.Errorf("status %+v", g.r.Status())
	}
}

// Resiliency policies switch whole; a clash between two files is refused.
func TestResiliency(t *testing.T) {
	dir := t.TempDir()
	res := func(name string, retries int) []byte {
		return fmt.Appendf(nil, `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: %s
spec:
  policies:
    retries:
      quick: {policy: constant, duration: 1ms, maxRetries: %d}
  targets:
    apps:
      addapp: {retry: quick}
`, name, retries)
	}
	path := filepath.Join(dir, "resiliency.yaml")
	save(t, path, res("myresiliency", 1))
	g := start(t, Sources{Dirs: []string{dir}})
	if p := g.res.Policies().App("addapp"); p == nil || p.Retry.MaxRetries != 1 {
		t.Fatalf("policies at start: %+v", p)
	}
	save(t, path, res("myresiliency", 3))
	eventually(t, "the changed policy in force", func() bool { p := g.res.Policies().App("addapp"); return p != nil && p.Retry.MaxRetries == 3 })
	other := filepath.Join(dir, "other.yaml")
	save(t, other, res("another", 5))
	eventually(t, "the clash rejected", func() bool { r, _ := g.rejected(other); return strings.Contains(r.Error, "two Resiliency resources") })
	if p := g.res.Policies().App("addapp"); p.Retry.MaxRetries != 3 {
		t.Errorf("a rejected resource changed the policy: %+v", p)
	}
	if r, ok := g.inUse(kindResiliency, "myresiliency"); !ok || r.Source != path {
		t.Errorf("status %+v", g.r.Status())
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the other in force once the first is gone", func() bool { p := g.res.Policies().App("addapp"); return p != nil && p.Retry.MaxRetries == 5 })
	if err := os.Remove(other); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no policy once both are gone", func() bool { return g.res.Policies().App("addapp") == nil })
}

// A file being written is taken once it has settled: a half-written
// version that does not parse is not counted as a rejection.
func TestHalfWrittenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "statestore.yaml")
	save(t, path, memoryYAML("statestore"))
	g := start(t, Sources{Dirs: []string{dir}})
	full := memoryYAML("statestore", "keyPrefix", "name")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(full[:len(full)/2]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // well within one poll
	if _, err := f.Write(full[len(full)/2:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	eventually(t, "the written file in force", func() bool { return g.keyPrefixOf("statestore") == "name" })
	if n := g.counter(kindComponent, "rejected") + g.counter(kindFile, "rejected"); n != 0 {
		t.Errorf("%v rejections of a file being written", n)
	}
}

// hopStatus is the status access control gives a call from "addapp".
func hopStatus(sw *acl.Switch) int {
	h := sw.Hop(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	r := httptest.NewRequest("GET", "/method", nil)
	r.Header.Set(wire.CallerAppID, "addapp")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// A file that is not a regular file, or is larger than the bound, is
// refused on its own, named, counted and listed, and never waited on nor
// read whole; the other files' changes apply, and the version in force of
// a refused file stays.
func TestFilesThatCannotBeRead(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	save(t, path("cache.yaml"), memoryYAML("cache"))
	save(t, path("orders.yaml"), memoryYAML("orders"))
	g := start(t, Sources{Dirs: []string{dir}, MaxFileSize: 1 << 10})

	if err := syscall.Mkfifo(path("pipe.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", path("zero.yaml")); err != nil {
		t.Fatal(err)
	}
	save(t, path("big.yaml"), append(memoryYAML("big"), strings.Repeat("#\n", 1<<10)...))
	// In force, then a named pipe in its place.
	if err := syscall.Mkfifo(path(".orders.fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path(".orders.fifo"), path("orders.yaml")); err != nil {
		t.Fatal(err)
	}
	save(t, path("cache.yaml"), memoryYAML("cache", "keyPrefix", "name"))
	save(t, path("new.yaml"), memoryYAML("new"))
	eventually(t, "the changes of the other files in force", func() bool {
		return g.keyPrefixOf("cache") == "name" && g.storeType("new") == "state.in-memory"
	})
	eventually(t, "the files that cannot be read refused", func() bool { return len(g.r.Status().Rejected) == 4 })
	for name, says := range map[string]string{
		"pipe.yaml":   "not a regular file but a named pipe (FIFO)",
		"orders.yaml": "not a regular file but a named pipe (FIFO)",
		"zero.yaml":   "not a regular file but a character device",
		"big.yaml":    "file too large: more than 1Ki, the most read of a resource file (--resources-max-file-size)",
	} {
		rej, ok := g.rejected(path(name))
		if !ok || !strings.Contains(rej.Error, path(name)+": "+says) {
			t.Errorf("%s: rejection %+v, want one saying %q", name, rej, says)
		}
		if l := g.logs.String(); !strings.Contains(l, path(name)+": "+says) {
			t.Errorf("the log does not say %q of %s", says, name)
		}
	}
	if g.storeType("orders") != "state.in-memory" || g.storeType("big") != "" {
		t.Errorf("stores %+v: want orders still in force, no big", g.state.Stores())
	}
	if n := g.counter(kindFile, "rejected"); n != 4 {
		t.Errorf("rejected files counted %v, want 4", n)
	}

	// Each goes once it is a file again, or removed; the refusals go.
	for _, name := range []string{"pipe.yaml", "zero.yaml", "big.yaml"} {
		if err := os.Remove(path(name)); err != nil {
			t.Fatal(err)
		}
	}
	save(t, path("orders.yaml"), memoryYAML("orders", "keyPrefix", "none"))
	eventually(t, "the refusals gone", func() bool { return len(g.r.Status().Rejected) == 0 })
	eventually(t, "orders changed", func() bool { return g.keyPrefixOf("orders") == "none" })
	if n := g.counter(kindFile, "rejected"); n != 4 {
		t.Errorf("rejected files counted %v, want 4 (each once)", n)
	}
}

// At start, a file that is not a regular file or is larger than the bound
// stops the sidecar, as any error there does, naming the file and why.
func TestLoadRefusesFilesThatCannotBeRead(t *testing.T) {
	for _, c := range []struct {
		name   string
		make   func(path string) error
		config bool
		says   string
	}{
		{"pipe", func(p string) error { return syscall.Mkfifo(p, 0o644) }, false, "not a regular file but a named pipe (FIFO); only regular files, or links to them, are read"},
		{"zero", func(p string) error { return os.Symlink("/dev/zero", p) }, false, "not a regular file but a character device"},
		{"big", func(p string) error { return os.WriteFile(p, make([]byte, 1<<10+1), 0o644) }, false, "file too large: more than 1Ki, the most read of a resource file (--resources-max-file-size)"},
		{"config pipe", func(p string) error { return syscall.Mkfifo(p, 0o644) }, true, "not a regular file but a named pipe (FIFO)"},
		{"config big", func(p string) error { return os.WriteFile(p, make([]byte, 1<<10+1), 0o644) }, true, "file too large: more than 1Ki"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "x.yaml")
			if err := c.make(path); err != nil {
				t.Fatal(err)
			}
			src := Sources{Dirs: []string{dir}, MaxFileSize: 1 << 10}
			if c.config {
				src = Sources{ConfigFile: path, MaxFileSize: 1 << 10}
			}
			_, err := Load(context.Background(), src)
			if err == nil || !strings.Contains(err.Error(), path+": "+c.says) {
				t.Fatalf("Load: %v; want an error saying %q of %s", err, c.says, path)
			}
		})
	}
}

// A refused version of the --config file stays refused, and the
// Configuration in force stays, when a resource file changes meanwhile:
// refused versions are tried again as what they are.
func TestRefusedConfigurationStaysRefused(t *testing.T) {
	dir, confDir := t.TempDir(), t.TempDir()
	store := filepath.Join(dir, "statestore.yaml")
	save(t, store, memoryYAML("statestore"))
	path := filepath.Join(confDir, "config.yaml")
	conf := func(rate string) []byte {
		return []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: appconfig\nspec:\n  tracing:\n    samplingRate: \"" + rate + "\"\n    stdout: true\n")
	}
	save(t, path, conf("1"))
	g := start(t, Sources{Dirs: []string{dir}, ConfigFile: path})
	save(t, path, conf("2"))
	eventually(t, "the bad rate rejected", func() bool { r, _ := g.rejected(path); return strings.Contains(r.Error, "samplingRate") })
	save(t, store, memoryYAML("statestore", "keyPrefix", "name"))
	eventually(t, "the changed Component in force", func() bool { return g.keyPrefixOf("statestore") == "name" })
	if r, ok := g.rejected(path); !ok || !strings.Contains(r.Error, "samplingRate") {
		t.Errorf("the refused Configuration is no longer listed: %+v", g.r.Status())
	}
	if n := g.counter(kindFile, "applied"); n != 0 {
		t.Errorf("%v versions taken as a file of no kind", n)
	}
	if !g.tracing.Enabled() {
		t.Error("tracing changed")
	}
}
