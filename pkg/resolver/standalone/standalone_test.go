package standalone

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/pkg/resolver"
)

func register(t *testing.T, dir, id string, pid int, addr string) *Registration {
	t.Helper()
	r, err := Register(dir, Entry{AppID: id, PID: pid, InternalAddress: addr, StartedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRegisterResolveClose(t *testing.T) {
	dir := t.TempDir()
	reg := register(t, dir, "addapp", 1, "127.0.0.1:1001")
	r := NewResolver(dir)
	r.CacheTTL = 0
	addrs, err := r.Resolve(context.Background(), resolver.Target{ID: "addapp"})
	if err != nil || len(addrs) != 1 || addrs[0] != "127.0.0.1:1001" {
		t.Fatalf("Resolve = %v, %v", addrs, err)
	}
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.Resolve(context.Background(), resolver.Target{ID: "addapp"}); !errors.Is(err, resolver.ErrNotFound) {
		t.Fatalf("after Close: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "addapp")); !os.IsNotExist(err) {
		t.Errorf("app folder left behind: %v", err)
	}
}

func TestReplicasRotate(t *testing.T) {
	dir := t.TempDir()
	register(t, dir, "addapp", 1, "127.0.0.1:1001")
	register(t, dir, "addapp", 2, "127.0.0.1:1002")
	r := NewResolver(dir)
	first := map[string]int{}
	for range 10 {
		addrs, err := r.Resolve(context.Background(), resolver.Target{ID: "addapp"})
		if err != nil || len(addrs) != 2 {
			t.Fatalf("Resolve = %v, %v", addrs, err)
		}
		first[addrs[0]]++
	}
	if first["127.0.0.1:1001"] != 5 || first["127.0.0.1:1002"] != 5 {
		t.Errorf("first addresses %v, want an even spread", first)
	}
}

func TestNotFoundListsRunningIDs(t *testing.T) {
	dir := t.TempDir()
	r := NewResolver(dir)
	_, err := r.Resolve(context.Background(), resolver.Target{ID: "nope"})
	if !errors.Is(err, resolver.ErrNotFound) || !strings.Contains(err.Error(), "no sidecars are running") {
		t.Errorf("empty registry: %v", err)
	}
	register(t, dir, "divideapp", 1, "127.0.0.1:1")
	register(t, dir, "addapp", 2, "127.0.0.1:2")
	_, err = r.Resolve(context.Background(), resolver.Target{ID: "nope"})
	if !errors.Is(err, resolver.ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), "running: addapp, divideapp") {
		t.Errorf("got %v", err)
	}
}

func TestNamespaces(t *testing.T) {
	dir := t.TempDir()
	if _, err := Register(dir, Entry{AppID: "a", Namespace: "prod", PID: 1, InternalAddress: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	r := NewResolver(dir)
	r.CacheTTL = 0
	for ns, found := range map[string]bool{"": true, "prod": true, "dev": false} {
		_, err := r.Resolve(context.Background(), resolver.Target{ID: "a", Namespace: ns})
		if (err == nil) != found {
			t.Errorf("namespace %q: err %v, want found=%v", ns, err, found)
		}
	}
}

func TestGarbageEntryIsSkipped(t *testing.T) {
	dir := t.TempDir()
	register(t, dir, "addapp", 1, "127.0.0.1:1001")
	// A garbage entry that nobody holds locked: skipped and removed.
	bad := filepath.Join(dir, "addapp", "99.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	addrs, err := NewResolver(dir).Resolve(context.Background(), resolver.Target{ID: "addapp"})
	if err != nil || len(addrs) != 1 {
		t.Errorf("Resolve = %v, %v; want the one good entry", addrs, err)
	}
}

// TestHelperProcess registers an entry and waits to be killed.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("STANDALONE_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process for TestCrashedSidecarIsForgotten")
	}
	if _, err := Register(dir, Entry{AppID: "crashy", PID: os.Getpid(), InternalAddress: "127.0.0.1:9"}); err != nil {
		os.Exit(3)
	}
	os.Stdout.WriteString("registered\n")
	time.Sleep(time.Minute)
}

// startHelper starts TestHelperProcess registered as "crashy" in dir and
// waits until it says it is.
func startHelper(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "STANDALONE_HELPER_DIR="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, _ := out.Read(buf); !strings.Contains(string(buf[:n]), "registered") {
		t.Fatalf("helper said %q", buf[:n])
	}
	return cmd
}

func TestCrashedSidecarIsForgotten(t *testing.T) {
	dir := t.TempDir()
	cmd := startHelper(t, dir)
	r := NewResolver(dir)
	r.CacheTTL = 0
	if _, err := r.Resolve(context.Background(), resolver.Target{ID: "crashy"}); err != nil {
		t.Fatalf("live helper not found: %v", err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if _, err := r.Resolve(context.Background(), resolver.Target{ID: "crashy"}); !errors.Is(err, resolver.ErrNotFound) {
		t.Fatalf("crashed sidecar still resolves: %v", err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "crashy", "*.json")); len(files) != 0 {
		t.Errorf("stale entries left: %v", files)
	}
}

func TestConcurrentResolveAndRegister(t *testing.T) {
	dir := t.TempDir()
	register(t, dir, "addapp", 1, "127.0.0.1:1")
	r := NewResolver(dir)
	r.CacheTTL = 0
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			reg, err := Register(dir, Entry{AppID: "other", PID: 100 + i, InternalAddress: "127.0.0.1:2"})
			if err != nil {
				t.Error(err)
				return
			}
			defer reg.Close()
			for range 20 {
				if _, err := r.Resolve(context.Background(), resolver.Target{ID: "addapp"}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

// CacheLookups counts the calls answered from the cache and those that
// read the folder: an app id's first call, and one after CacheTTL.
func TestCacheLookups(t *testing.T) {
	dir := t.TempDir()
	register(t, dir, "addapp", 1, "127.0.0.1:1001")
	r := NewResolver(dir)
	r.CacheTTL = time.Hour
	for range 3 {
		if _, err := r.Resolve(context.Background(), resolver.Target{ID: "addapp"}); err != nil {
			t.Fatal(err)
		}
	}
	if hits, _, misses := r.CacheLookups(); hits != 2 || misses != 1 {
		t.Fatalf("after 3 calls with an hour's cache: %d hits, %d misses; want 2 and 1", hits, misses)
	}
	r.CacheTTL = 0 // nothing cached from now on, and what is cached has expired
	r.mu.Lock()
	r.cache = map[string]cached{}
	r.mu.Unlock()
	for range 2 {
		if _, err := r.Resolve(context.Background(), resolver.Target{ID: "addapp"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Resolve(context.Background(), resolver.Target{ID: "nosuch"}); err == nil {
		t.Fatal("an app id not running resolved")
	}
	if hits, _, misses := r.CacheLookups(); hits != 2 || misses != 4 {
		t.Fatalf("then 3 calls without a cache: %d hits, %d misses; want 2 and 4", hits, misses)
	}
}

// An answer older than CacheTTL is renewed by a look at the app's folder
// while no sidecar of the app starts or stops, and read again when one
// does, when the folder was read longer than RenewFor ago, or after
// Forget.
func TestRenewedWhileTheFolderIsUnchanged(t *testing.T) {
	dir := t.TempDir()
	register(t, dir, "addapp", 1, "127.0.0.1:1001")
	// The folder's time older than racyWindow: a stamp of it is trusted.
	old := time.Now().Add(-time.Second)
	if err := os.Chtimes(filepath.Join(dir, "addapp"), old, old); err != nil {
		t.Fatal(err)
	}
	r := NewResolver(dir)
	r.CacheTTL = time.Nanosecond // every call past it
	target := resolver.Target{ID: "addapp"}
	resolve := func(want ...string) {
		t.Helper()
		addrs, err := r.Resolve(context.Background(), target)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(sorted(addrs), ",") != strings.Join(want, ",") {
			t.Fatalf("Resolve = %v; want %v", addrs, want)
		}
	}
	lookups := func(what string, hits, renewals, misses uint64) {
		t.Helper()
		if h, n, m := r.CacheLookups(); h != hits || n != renewals || m != misses {
			t.Fatalf("%s: %d hits, %d renewals, %d misses; want %d, %d, %d", what, h, n, m, hits, renewals, misses)
		}
	}
	resolve("127.0.0.1:1001")
	lookups("the first call", 0, 0, 1)
	for range 3 {
		time.Sleep(time.Millisecond)
		resolve("127.0.0.1:1001")
	}
	lookups("three calls, the folder unchanged", 0, 3, 1)

	// A second replica starts: the folder changed, and is read.
	register(t, dir, "addapp", 2, "127.0.0.1:1002")
	time.Sleep(time.Millisecond)
	resolve("127.0.0.1:1001", "127.0.0.1:1002")
	lookups("after a replica started", 0, 3, 2)
	// Its change is within racyWindow: not trusted, read again.
	time.Sleep(time.Millisecond)
	resolve("127.0.0.1:1001", "127.0.0.1:1002")
	lookups("a stamp too recent to trust", 0, 3, 3)
	if err := os.Chtimes(filepath.Join(dir, "addapp"), old, old); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	resolve("127.0.0.1:1001", "127.0.0.1:1002")
	time.Sleep(time.Millisecond)
	resolve("127.0.0.1:1001", "127.0.0.1:1002")
	lookups("a read, then a renewal", 0, 4, 4)

	// Forget: read again.
	r.Forget(target)
	resolve("127.0.0.1:1001", "127.0.0.1:1002")
	lookups("after Forget", 0, 4, 5)
	// Past RenewFor since the read: read again.
	r.RenewFor = time.Nanosecond
	time.Sleep(time.Millisecond)
	resolve("127.0.0.1:1001", "127.0.0.1:1002")
	lookups("past RenewFor", 0, 4, 6)
}

// A crashed sidecar's entry stays in an unchanged folder: a caller whose
// connection it refused forgets the answer and no longer finds it.
func TestCrashedReplicaForgotten(t *testing.T) {
	dir := t.TempDir()
	cmd := startHelper(t, dir)
	old := time.Now().Add(-time.Second)
	if err := os.Chtimes(filepath.Join(dir, "crashy"), old, old); err != nil {
		t.Fatal(err)
	}
	r := NewResolver(dir)
	r.CacheTTL = time.Nanosecond
	target := resolver.Target{ID: "crashy"}
	if _, err := r.Resolve(context.Background(), target); err != nil {
		t.Fatalf("live helper not found: %v", err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	time.Sleep(time.Millisecond)
	// The folder is as it was: renewed, stale.
	if addrs, err := r.Resolve(context.Background(), target); err != nil || len(addrs) != 1 {
		t.Fatalf("renewed answer: %v, %v", addrs, err)
	}
	r.Forget(target)
	if _, err := r.Resolve(context.Background(), target); !errors.Is(err, resolver.ErrNotFound) {
		t.Fatalf("after Forget the crashed sidecar still resolves: %v", err)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// BenchmarkResolve weighs an answer from the cache, one renewed by a look
// at the app's folder and one read from it (two replicas).
func BenchmarkResolve(b *testing.B) {
	dir := b.TempDir()
	for pid, addr := range []string{"127.0.0.1:1001", "127.0.0.1:1002"} {
		reg, err := Register(dir, Entry{AppID: "addapp", PID: pid + 1, InternalAddress: addr})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { reg.Close() })
	}
	old := time.Now().Add(-time.Second)
	if err := os.Chtimes(filepath.Join(dir, "addapp"), old, old); err != nil {
		b.Fatal(err)
	}
	target := resolver.Target{ID: "addapp"}
	for _, c := range []struct {
		name          string
		ttl, renewFor time.Duration
	}{
		{"hit", time.Hour, time.Hour},
		{"renewed", time.Nanosecond, time.Hour},
		{"read", time.Nanosecond, 0},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := NewResolver(dir)
			r.CacheTTL, r.RenewFor = c.ttl, c.renewFor
			if _, err := r.Resolve(context.Background(), target); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Resolve(context.Background(), target); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
