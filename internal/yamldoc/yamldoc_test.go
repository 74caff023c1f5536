package yamldoc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// Files lists YAML files by name, and leaves out folders, other files and
// hidden ones (an editor's lock file is a link to nowhere).
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"b.yaml", "a.yml", "notes.txt", ".hidden.yaml", "statestore.yaml~", ".statestore.yaml.swp"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("kind: Component\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("user@host.1234:1700000000", filepath.Join(dir, ".#b.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yaml")}
	if !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
}

// ReadFile reads a regular file, or a link to one, up to its bound, and
// refuses anything else at once, naming the file and what it is: a named
// pipe is not waited on, a device is not read.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	body := []byte("kind: Component\n") // 16 bytes
	for _, f := range []string{"file.yaml", "link.yaml"} {
		if err := os.WriteFile(path(f), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(path("link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file.yaml", path("link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path("pipe.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", path("zero.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path("folder.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		limit int64
		is    error    // nil: read
		says  []string // of the error
	}{
		{name: "file.yaml", limit: 16},
		{name: "link.yaml", limit: 1 << 20},
		{name: "file.yaml", limit: 15, is: ErrTooLarge, says: []string{path("file.yaml"), "file too large: more than 15 bytes"}},
		{name: "file.yaml", limit: 0, is: ErrTooLarge, says: []string{"file too large: more than 0 bytes"}},
		{name: "pipe.yaml", limit: 1 << 20, is: ErrNotRegular, says: []string{path("pipe.yaml"), "named pipe", "only regular files"}},
		{name: "zero.yaml", limit: 4 << 20, is: ErrNotRegular, says: []string{path("zero.yaml"), "character device"}},
		{name: "folder.yaml", limit: 1 << 20, is: ErrNotRegular, says: []string{"a folder"}},
	} {
		t.Run(fmt.Sprintf("%s/%d", c.name, c.limit), func(t *testing.T) {
			b, err := ReadFile(path(c.name), c.limit)
			if c.is == nil {
				if err != nil || !bytes.Equal(b, body) {
					t.Fatalf("read %q, %v; want %q", b, err, body)
				}
				return
			}
			if !errors.Is(err, c.is) {
				t.Fatalf("error %v, want %v", err, c.is)
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// size writes a bound as the size flags take it.
func TestSize(t *testing.T) {
	for n, want := range map[int64]string{1000: "1000 bytes", 1 << 10: "1Ki", 4 << 20: "4Mi", 1 << 30: "1Gi", 3 << 9: "1536 bytes", 1<<20 + 1<<10: "1025Ki"} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
}
